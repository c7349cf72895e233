"""Average linkage of the similar-pair graph, one connected component at a time.

The merge rule, shared by both engines (`dense`, `sparse`) and so by every path:
  repeatedly merge the two clusters at the smallest average cosine distance, as long as it is <= t; among pairs at
  the same distance, the one whose lower photo index is lowest, then whose higher photo index is lowest. A cluster
  carries the index of its first photo, so indexes never depend on the order of earlier merges.
Without ties this is exactly average linkage (the dendrogram of a reducible linkage is unique). With ties it is
one fixed choice, which scipy's nearest-neighbour chain does not make: scipy's choice depends on the order its
chain happens to visit clusters, across the whole data set.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .core import ClusterParams, paired_distances, unit64
from .dense import dense_merges
from .sparse import sparse_merges

log = logging.getLogger(__name__)


def pairs_within(rows, inv, first: np.ndarray, second: np.ndarray, t: float):
    """The pairs of rows whose float64 distance is <= t, with that distance."""
    distance = paired_distances(rows, inv, first, second)
    within = distance <= t
    return first[within], second[within], distance[within]


def cluster_pairs(rows, inv, members, first, second, t, params: ClusterParams) -> list[np.ndarray]:
    """Clusters (arrays of row indices, two or more) of the `members` rows, given every pair of them within t
    (and possibly more: `first`, `second` index into `members`)."""
    distance = paired_distances(rows, inv, members[first], members[second])
    within = distance <= t
    first, second, distance = first[within], second[within], distance[within]
    n = len(members)
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(n, n)).tocsr()
    n_components, component = connected_components(graph, directed=False)
    order = np.argsort(component, kind="stable")  # each component's photos in index order
    bounds = np.cumsum(np.bincount(component, minlength=n_components))[:-1]
    local = np.empty(n, np.int64)
    edge_component = component[first]
    edge_order = np.argsort(edge_component, kind="stable")
    edge_bounds = np.searchsorted(edge_component[edge_order], np.arange(1, n_components))
    groups, sizes = [], []
    for photos, edges in zip(np.split(order, bounds), np.split(edge_order, edge_bounds)):
        if len(photos) < 2:
            continue
        sizes.append(len(photos))
        local[photos] = np.arange(len(photos))
        unit = unit64(rows, inv, members[photos])
        roots = component_roots(unit, local[first[edges]], local[second[edges]], distance[edges], t, params)
        groups.extend(split_by(members[photos], roots))
    log.debug("%d photos: %d pairs within the cut, %d components, the largest %d", n, len(first), n_components,
              max(sizes, default=1))
    warn_oversized(sizes, params)
    return groups


def component_roots(unit, first, second, distance, t, params: ClusterParams) -> np.ndarray:
    """Each photo's cluster root in one connected component (photos 0..m-1, in the order that breaks ties)."""
    m = len(unit)
    if m == 2:
        return np.zeros(2, np.int64)  # connected means their one pair is within t
    if params.dense_min <= m <= params.dense_max:
        return dense_merges(unit, first, second, distance, t)
    return sparse_merges(unit, first, second, distance, t)


def split_by(members: np.ndarray, flat: np.ndarray) -> list[np.ndarray]:
    """Groups of `members` sharing a flat label, only those of two or more."""
    order = np.argsort(flat, kind="stable")
    parts = np.split(members[order], np.flatnonzero(np.diff(flat[order])) + 1)
    return [p for p in parts if len(p) > 1]


def warn_oversized(sizes: list[int], params: ClusterParams) -> None:
    big = [size for size in sizes if size > params.dense_max]
    if big:
        log.warning("%d group(s) of linked photos exceed the dense limit of %d (the largest: %d photos, for which "
                    "a distance matrix would need %.1f GB); clustered with the slower sparse exact method", len(big),
                    params.dense_max, max(big), 8 * max(big) ** 2 / 1e9)
