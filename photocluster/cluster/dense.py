"""The linkage of one component held as a dense distance matrix (numpy): for components with many similar pairs.

It follows the merge rule of `photocluster.cluster.linkage` step for step, with the same arithmetic as the
sparse engine (`photocluster.cluster.sparse`), so the two give bit-identical clusters; this one is faster when
most photos of a component are within the cut of each other, the sparse one when few are.
Memory: 8 x m^2 bytes for the matrix and 8 x m x dim for the unit-vector sums.
"""
from __future__ import annotations

import numpy as np

from .core import distances_from_sums, merged_distance


def dense_merges(unit: np.ndarray, first: np.ndarray, second: np.ndarray, distance: np.ndarray, t: float,
                 matrix: np.ndarray | None = None) -> np.ndarray:
    """Each photo's cluster root after all merges at distance <= t (the component's photos are 0..m-1).

    `first`, `second`, `distance`: the pairs within t. `matrix`: instead of the pairs, an m x m matrix of
    distances (inf where unknown or beyond t), used in place. `unit`: the photos' unit vectors, from whose sums a
    cosine distance beyond t is recomputed when a merge needs it; None for distances that are not cosines
    (time-mixed, `timemix`): then `matrix` must hold every distance, and every one is kept.
    """
    held = matrix if matrix is not None else _matrix_of(len(unit), first, second, distance)
    m = len(held)
    np.fill_diagonal(held, np.inf)
    sums = None if unit is None else unit.copy()
    size = np.ones(m)
    parent = np.arange(m)
    near = np.argmin(held, axis=1)  # argmin: the lowest index among equally near ones
    near_distance = held[np.arange(m), near]
    while True:
        keep = int(np.argmin(near_distance))  # the lowest photo index among the closest pairs
        if near_distance[keep] > t:
            break
        gone = int(near[keep])  # its lowest-index partner, so keep < gone
        if sums is None:
            row = _complete_row(held, size, keep, gone)
        else:
            row = _merged_row(held, sums, size, keep, gone, t)
            sums[keep] += sums[gone]
        size[keep] += size[gone]
        size[gone] = 0
        parent[gone] = keep
        held[gone, :] = held[:, gone] = np.inf
        held[keep, :] = held[:, keep] = row
        held[keep, keep] = np.inf
        near_distance[gone] = np.inf
        _update_nearest(held, near, near_distance, row, keep, gone)
    return _roots(parent)


def _matrix_of(m: int, first: np.ndarray, second: np.ndarray, distance: np.ndarray) -> np.ndarray:
    held = np.full((m, m), np.inf)
    held[first, second] = distance
    held[second, first] = distance
    return held


def _merged_row(held, sums, size, keep, gone, t) -> np.ndarray:
    """The union's distances to every cluster: from the held ones where known, from the sums where only the other
    side is known (a distance beyond t is never held, exactly as in the sparse engine)."""
    to_keep, to_gone = held[keep].copy(), held[gone].copy()
    known_keep, known_gone = np.isfinite(to_keep), np.isfinite(to_gone)
    known_keep[[keep, gone]] = known_gone[[keep, gone]] = False
    only_keep = np.flatnonzero(known_keep & ~known_gone)
    only_gone = np.flatnonzero(known_gone & ~known_keep)
    to_gone[only_keep] = distances_from_sums(sums, size, gone, only_keep)
    to_keep[only_gone] = distances_from_sums(sums, size, keep, only_gone)
    row = np.full(len(to_keep), np.inf)
    either = np.flatnonzero(known_keep | known_gone)
    row[either] = merged_distance(size[keep], to_keep[either], size[gone], to_gone[either])
    row[row > t] = np.inf
    return row


def _complete_row(held, size, keep, gone) -> np.ndarray:
    """The union's distances when every distance is held and there are no sums to recompute one from: none is
    dropped, however far (a dropped one could not come back when a later merge needs it)."""
    row = np.full(len(held), np.inf)
    alive = np.isfinite(held[keep]) & np.isfinite(held[gone])
    alive[[keep, gone]] = False
    row[alive] = merged_distance(size[keep], held[keep, alive], size[gone], held[gone, alive])
    return row


def _update_nearest(held, near, near_distance, row, keep, gone) -> None:
    """Keep each cluster's nearest neighbour (lowest index among ties) current after `gone` joined `keep`."""
    stale = np.flatnonzero((near == keep) | (near == gone))  # their nearest moved away or is gone
    closer = np.isfinite(row) & ((row < near_distance) | ((row == near_distance) & (keep < near)))
    closer[stale] = False
    near[closer] = keep
    near_distance[closer] = row[closer]
    stale = np.union1d(stale[np.isfinite(near_distance[stale])], [keep])
    if len(stale):
        near[stale] = np.argmin(held[stale], axis=1)
        near_distance[stale] = held[stale, near[stale]]
    near_distance[gone] = np.inf


def _roots(parent: np.ndarray) -> np.ndarray:
    roots = parent.copy()
    while True:
        up = roots[roots]
        if np.array_equal(up, roots):
            return roots
        roots = up
