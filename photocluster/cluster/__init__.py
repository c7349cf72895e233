"""Cluster fingerprints: average linkage on cosine distance, cut at an absolute cosine similarity.

Photos i and j are in one cluster when average linkage (the mean cosine distance over all member pairs) joins
them at a distance of at most t = 1 - cut: the partition of scipy's
``fcluster(linkage(X, method="average", metric="cosine"), t, criterion="distance")``, computed without the
N x N distance matrix. A merge at average distance <= t needs one member pair within t, so every cluster lies
inside one connected component of the graph of pairs within t; the components are clustered one by one
(`linkage`), and their union is the global answer. The graph comes from a pair search (`search`) at a slightly
lowered threshold, so float32 rounding never drops a pair; each pair is then measured in float64 and kept only
if within t. The search is exhaustive up to ``ClusterParams.exact_search_max`` photos and APPROXIMATE above
(an inverted file that can miss pairs, so a true cluster may come out split; scripts/bench_cluster.py measures
how often). Each component is clustered by one of two engines with the same merge rule and arithmetic: a dense
matrix (`dense`) or its pairs within t (`sparse`, for components too big for a matrix). `incremental` keeps the
graph and clusters of a changing photo set and re-clusters only the components a change touches.
`candidates` (`BandNeighbours`) proposes the pairs below the cut that the scenes stage verifies.
`timemix` (`cluster_with_time`) mixes capture time into the distance, for trips and events rather than
scenes; it has the same merge rule, on the dense engine only.

Exact, including ties. When two merges are equally close (duplicate photos, repeated distances), scipy's
result depends on the order in which its nearest-neighbour chain visits clusters across the whole data set, so
no component-wise method can reproduce it. Every path here uses one rule instead: merge the closest pair of
clusters, and among equally close pairs the one whose lower first-photo index is lowest, then whose higher one
is lowest (a cluster's index is that of its first row; for `IncrementalClusterer`, of its first path in sorted
order, which is the row order the pipeline gives `cluster()`). So the clusters are a function of the photos,
their order, and the cut only: the same for the dense and sparse engines, for any component decomposition, and
for any arrival order. Without ties the result is scipy's partition; with ties it can differ from scipy's
(tests/test_cluster.py shows four photos where it does). One more difference is rounding: a distance beyond t
is not held but recomputed from vector sums when a merge needs it, so it can differ from scipy's running
average in the last bit, which matters only where two merges are within ~1e-15 of each other.

Two more departures from scipy, both where scipy has no useful answer:
- A zero or non-finite fingerprint (cosine undefined; scipy gives NaN and refuses) is a singleton.
- Cosine distances within float64 rounding of zero (below ``ZERO_DISTANCE``) count as zero, so that at
  ``cut=1`` identical photos always group (scipy's own rounding leaves some apart).
"""
from .api import cluster, cut_for_sim
from .candidates import BandNeighbours
from .core import ZERO_DISTANCE, ClusterError, ClusterParams
from .incremental import IncrementalClusterer
from .timemix import TIME_SPAN_SECONDS, cluster_with_time

__all__ = ["TIME_SPAN_SECONDS", "ZERO_DISTANCE", "BandNeighbours", "ClusterError", "ClusterParams",
           "IncrementalClusterer", "cluster", "cluster_with_time", "cut_for_sim"]
