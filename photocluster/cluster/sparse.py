"""The linkage of one component held as its pairs within the cut: memory ~ pairs + photos x dim.

Written here because no library does it: scipy and fastcluster need the m^2 condensed matrix, and graph-
restricted average linkage (scikit-learn's `connectivity`) averages only over graph edges, which is not the same
clustering. It follows the merge rule of `photocluster.cluster.linkage` with the same arithmetic as the dense
engine, so the two give bit-identical clusters. It is exact for three reasons:
- With unit vectors the average cosine distance between clusters A and B is 1 - (sum A . sum B)/(|A||B|), so
  any distance that is not held can be computed from per-cluster vector sums.
- A pair of clusters at average distance <= t has a member pair within t, which is a held pair; after a merge, a
  cluster within t of the union was within t of one of the two parts. So holding, per cluster, only the
  distances within t loses nothing.
- Merges happen in one global order (closest pair first, ties by index), kept in a heap of the held pairs.
"""
from __future__ import annotations

import heapq

import numpy as np

from .core import distances_from_sums, merged_distance


def sparse_merges(unit: np.ndarray, first: np.ndarray, second: np.ndarray, distance: np.ndarray,
                  t: float) -> np.ndarray:
    """Each photo's cluster root after all merges at distance <= t (the component's photos are 0..m-1;
    `first`, `second`, `distance`: the pairs within t)."""
    m = len(unit)
    near: list[dict[int, float]] = [{} for _ in range(m)]
    heap = []
    for i, j, d in zip(first.tolist(), second.tolist(), distance.tolist()):
        i, j = min(i, j), max(i, j)
        near[i][j] = near[j][i] = d
        heap.append((d, i, j))
    heapq.heapify(heap)
    sums = unit.copy()
    size = np.ones(m)
    parent = np.arange(m)
    while heap:
        d, keep, gone = heapq.heappop(heap)
        if near[keep].get(gone) != d:
            continue  # outdated: one of the two has merged since, or their distance changed
        for k, merged in _merge(near, sums, size, keep, gone, t):
            heapq.heappush(heap, (merged, min(keep, k), max(keep, k)))
        parent[gone] = keep
    return _roots(parent)


def _merge(near, sums, size, keep, gone, t) -> list[tuple[int, float]]:
    """Join `gone` into `keep`; return the union's new distances within t."""
    near_keep, near_gone = near[keep], near[gone]
    del near_keep[gone], near_gone[keep]
    others = np.array(sorted(near_keep.keys() | near_gone.keys()), np.int64)
    to_keep = np.array([near_keep.get(k, np.inf) for k in others.tolist()])
    to_gone = np.array([near_gone.get(k, np.inf) for k in others.tolist()])
    only_keep, only_gone = np.isinf(to_gone), np.isinf(to_keep)
    to_gone[only_keep] = distances_from_sums(sums, size, gone, others[only_keep])
    to_keep[only_gone] = distances_from_sums(sums, size, keep, others[only_gone])
    merged = merged_distance(size[keep], to_keep, size[gone], to_gone)
    sums[keep] += sums[gone]
    size[keep] += size[gone]
    size[gone] = 0
    near[gone] = {}
    within = {k: d for k, d in zip(others.tolist(), merged.tolist()) if d <= t}
    near[keep] = within
    for k in others.tolist():
        near[k].pop(gone, None)
        if k in within:
            near[k][keep] = within[k]
        else:
            near[k].pop(keep, None)
    return list(within.items())


def _roots(parent: np.ndarray) -> np.ndarray:
    roots = parent.copy()
    for i in range(len(roots)):
        while roots[roots[i]] != roots[i]:
            roots[i] = roots[roots[i]]
    return roots
