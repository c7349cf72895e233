"""Clustering on content and capture time together: imagecluster's `alpha` blend, for trips and events.

The distance of photos i and j is

    d = (1 - alpha) * d_content + alpha * d_time,   d_time = min(|t_i - t_j| / TIME_SPAN_SECONDS, 1)

with d_content their cosine distance, and the clusters are average linkage on d cut at t = 1 - cut, with the
package's merge rule (see the package docstring). Photos close in time join at a lower cosine than the cut asks
(d_content up to t / (1 - alpha)); photos a day or more apart pay the full penalty alpha, so at an alpha above t
they never join, and at a smaller one only when their content is closer than the cut alone would ask.

How it differs from imagecluster's `cluster(..., timestamps, alpha)`:
- imagecluster divides the time distances by their maximum over the photo set, and the content distances
  (Euclidean by default) by theirs. Then one photo from ten years ago shrinks every other time distance, and a
  photo's neighbours depend on photos unrelated to it. Here time is scaled by a fixed span and content is the
  plain cosine distance, so a pair's distance depends on that pair alone: the same photos group the same way in
  any library, and a new photo changes nothing about the pairs it is not in, which the component decomposition
  (and the daemon's incremental runs) rely on. The fixed span is one day: an event (a party, a hike, a day of a
  trip) lasts hours, so the time term tells one event from the next, and beyond a day the difference stops
  mattering (the penalty is clipped at alpha), so at a low alpha near-copies taken years apart still group.
- imagecluster cuts at a fraction of the largest mixed distance; here the cut is the cosine cut of --sim, so
  time_weight=0 is exactly `cluster()`.
- imagecluster falls back to the file's mtime when a photo has no EXIF time. Here an unknown time (NaN, or
  infinite) is unknown: a pair with an undated photo is judged on content alone (d = d_content), so an undated
  photo groups as it would without time mixing. Taking d_time as 0 would pull every undated photo towards every
  other; taking it as 1 would split even identical copies at a high alpha.

Only the dense engine can do this: the sparse engine recomputes a distance beyond t from per-cluster vector sums,
which holds for cosine distances only. So each connected component gets a full matrix of mixed distances, and a
component over `ClusterParams.dense_max` photos is refused (ClusterError).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import search
from .api import all_non_negative, as_rows, check_cut, cluster, number_groups
from .core import (GRAPH_MARGIN, ClusterError, ClusterParams, TooManyEdges, inverse_norms, paired_distances, snap,
                   unit64)
from .dense import dense_merges
from .linkage import split_by

TIME_SPAN_SECONDS = 86400.0  # one day: time differences are divided by this, and count as 1 from here on


def cluster_with_time(vectors: np.ndarray, seconds: np.ndarray, cut: float, alpha: float, min_size: int = 1,
                      params: ClusterParams | None = None) -> np.ndarray:
    """Label each row of `vectors` (n, dim) with its cluster on content and capture time (see the module docstring).

    `seconds`: each photo's capture time in seconds (any epoch; NaN when unknown). `alpha`: the weight of time,
    from 0 (content alone: exactly `cluster()`) up to but not including 1. Labels as `cluster()`'s: 0, 1, ...
    numbered by each cluster's first row, -1 for rows in clusters smaller than `min_size`.
    """
    params = params or ClusterParams()
    rows = as_rows(vectors)
    times = _as_times(seconds, len(rows))
    cut, alpha = check_cut(cut), _check_alpha(alpha)
    if alpha == 0:
        return cluster(rows, cut, min_size, params)
    inv = inverse_norms(rows)
    usable = np.flatnonzero(inv > 0)
    groups = _cluster_usable(rows, inv, times, usable, cut, alpha, params)
    return number_groups(groups, len(rows), min_size)


def mixed_distances(content: np.ndarray, times_a: np.ndarray, times_b: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * content + alpha * time distance, elementwise; content alone where a time is unknown (NaN)."""
    with np.errstate(invalid="ignore"):  # NaN - NaN: an unknown time, handled below
        time = np.minimum(np.abs(times_a - times_b) / TIME_SPAN_SECONDS, 1.0)
    return np.where(np.isnan(time), content, (1.0 - alpha) * content + alpha * time)


def _as_times(seconds, n: int) -> np.ndarray:
    times = np.asarray(seconds, dtype=np.float64)
    if times.shape != (n,):
        raise ValueError(f"seconds must hold one capture time per photo ({n}), got shape {times.shape}")
    return np.where(np.isfinite(times), times, np.nan)  # an infinite time is no time


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(alpha) and 0 <= alpha < 1):
        raise ValueError(f"alpha (the time weight) must be from 0 up to but not including 1, got {alpha!r}")
    return float(alpha)


def _cluster_usable(rows, inv, times, usable, cut, alpha, params) -> list[np.ndarray]:
    """Clusters (two or more rows) of the rows `usable`; zero or non-finite fingerprints stay singletons."""
    if len(usable) < 2:
        return []
    t = 1.0 - cut
    if cut <= 0 and all_non_negative(rows, usable):
        # Every content distance is <= 1 <= t and every time distance <= 1, so every mixed distance is too.
        return [usable]
    # d <= t needs (1 - alpha) * d_content <= t (the time term is never negative; an undated pair has d = d_content)
    content_floor = 1.0 - t / (1.0 - alpha)
    try:
        first, second = search.similar_pairs(rows, inv, usable, content_floor - GRAPH_MARGIN, params)
    except TooManyEdges:
        _refuse_if_too_big(len(usable), cut, alpha, params)
        return _cluster_component(rows, inv, times, usable, t, alpha)
    return _cluster_components(rows, inv, times, usable, first, second, t, alpha, params)


def _cluster_components(rows, inv, times, members, first, second, t, alpha, params) -> list[np.ndarray]:
    """Components of the pairs within t (`first`, `second` index into `members`), each clustered on its own."""
    ends_a, ends_b = members[first], members[second]
    distance = mixed_distances(paired_distances(rows, inv, ends_a, ends_b), times[ends_a], times[ends_b], alpha)
    within = distance <= t
    n = len(members)
    graph = coo_matrix((np.ones(int(within.sum()), np.int8), (first[within], second[within])), shape=(n, n))
    _, component = connected_components(graph.tocsr(), directed=False)
    sizes = np.bincount(component)
    _refuse_if_too_big(int(sizes.max()), 1.0 - t, alpha, params)  # before any work
    order = np.argsort(component, kind="stable")  # each component's photos in index order
    groups = []
    for photos in np.split(order, np.cumsum(sizes)[:-1]):
        if len(photos) == 2:
            groups.append(members[photos])  # connected: their one pair is within t
        elif len(photos) > 2:
            groups.extend(_cluster_component(rows, inv, times, members[photos], t, alpha))
    return groups


def _cluster_component(rows, inv, times, photos, t, alpha) -> list[np.ndarray]:
    """The dense engine on the full matrix of mixed distances of `photos` (row indices, in tie-breaking order).

    The content part comes from one BLAS product, whose last bit can differ from the pair-by-pair distances the
    component was found with; only the choice between two merges less than ~1e-16 apart can differ.
    """
    unit = unit64(rows, inv, photos)
    matrix = unit @ unit.T
    del unit
    snap(np.subtract(1.0, matrix, out=matrix))
    at = times[photos]
    for start in range(0, len(photos), 1024):  # row blocks: no second m x m temporary
        block = slice(start, start + 1024)
        matrix[block] = mixed_distances(matrix[block], at[block, None], at[None, :], alpha)
    return split_by(photos, dense_merges(None, None, None, None, t, matrix=matrix))


def _refuse_if_too_big(size: int, cut: float, alpha: float, params: ClusterParams) -> None:
    if size > params.dense_max:
        raise ClusterError(
            f"time weight {alpha:g} at cut {cut:.3f} links {size:,} photos into one group, more than the "
            f"{params.dense_max:,} that time mixing can cluster (it needs their full distance matrix): lower "
            "time_weight or raise sim")
