"""Cluster fingerprints: average linkage on cosine distance, cut at an absolute cosine similarity.

The result is the partition that scipy gives with
``fcluster(linkage(X, method="average", metric="cosine"), t=1 - cut, criterion="distance")``, computed so that a
large library never needs the full N x N distance matrix (DESIGN.md, "Similarity"):

1. Every average-linkage cluster at cut ``t`` is connected in the graph joining the photos whose cosine
   similarity is at least ``t``: a merge at average similarity >= t needs one cross pair at >= t. So the graph's
   connected components can be clustered one by one, and the union is exactly the global answer.
2. The graph is found by a range search (`_similar_pairs`) at a slightly lowered threshold
   (``cut - GRAPH_MARGIN``), so float32 rounding can never drop a true edge; extra edges only make components
   larger, which keeps the result exact.
3. Each component runs scipy's linkage on float64 distances (`_dense_clusters`). A component too big for
   scipy's condensed matrix (``dense_max``) runs `_sparse_clusters`: the same average linkage, exact, in memory
   proportional to the graph's edges instead of m^2 (see there for why it is exact).

Two departures from scipy, both where scipy has no useful answer:
- A zero or non-finite fingerprint (cosine undefined; scipy gives NaN and refuses) is a singleton.
- Cosine distances within float64 rounding of zero (below ``ZERO_DISTANCE``) count as zero, so that at
  ``cut=1`` identical photos always group (scipy's own rounding leaves some apart).

The range search is exact (blocked float32 matrix products) up to ``exact_search_max`` photos. Above that it is
APPROXIMATE: an inverted-file search (faiss k-means cells, each photo compared with the photos of its
``nprobe`` nearest cells) that can miss a few similar pairs, so a true cluster may come out split. Its pair
recall is measured by scripts/bench_cluster.py. Every pair it does report is checked exactly.

`IncrementalClusterer` keeps the graph and the clusters of a changing photo set, and re-clusters only the
components that an addition or a removal touches.
"""
from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

log = logging.getLogger(__name__)

__all__ = ["ClusterError", "ClusterParams", "IncrementalClusterer", "cluster", "cut_for_sim"]

# The graph threshold is lowered by this much. float32 dot products of 4096-d unit vectors are off by about 1e-6
# at most in practice; 1e-4 leaves a wide safety factor and costs only the few extra pairs in [cut-1e-4, cut).
GRAPH_MARGIN = 1e-4
# Cosine distances below this are float64 rounding of zero (identical or parallel fingerprints).
ZERO_DISTANCE = 1e-12
_ROWS_PER_CHUNK = 8192
# k-means of the approximate search: the cells only need to be roughly right, so training is kept cheap
_TRAINING_PER_CELL = 24
_KMEANS_ITERATIONS = 8


class ClusterError(ValueError):
    """The clustering cannot be done as asked (a one-line message says why and what to change)."""


@dataclass(frozen=True)
class ClusterParams:
    """Knobs of the scalable path. The defaults suit a 2-core, 24 GB machine; tests shrink them to force paths."""

    exact_search_max: int = 30_000  # photos up to which the pair search is exact (it costs N^2 x dim)
    dense_max: int = 10_000  # components up to this size run scipy (memory ~8.5 x size^2 bytes)
    max_edges: int = 50_000_000  # similar pairs held at most (12 bytes each); beyond: a lower cut is refused
    cells: int = 0  # cells of the approximate search; 0: N / cell_size
    cell_size: int = 48  # photos per cell, on average
    nprobe: int = 48  # nearest cells each photo is compared with in the approximate search
    block: int = 2048  # rows per matrix-product block (memory ~ block x 4 x block x 4 bytes)
    seed: int = 0  # k-means seed of the approximate search, for repeatable results


class _TooManyEdges(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Public entry points


def cluster(vectors: np.ndarray, cut: float, min_size: int = 1, params: ClusterParams | None = None) -> np.ndarray:
    """Label each row of `vectors` (n, dim) with its cluster at cosine-similarity `cut`.

    Labels are 0, 1, ... numbered by each cluster's first row, so the same input always gives the same labels.
    Rows in clusters smaller than `min_size` get -1.
    """
    params = params or ClusterParams()
    rows = _as_rows(vectors)
    cut = _check_cut(cut)
    inv_norm = _inverse_norms(rows)
    usable = np.flatnonzero(inv_norm > 0)
    groups = _cluster_usable(rows, inv_norm, usable, cut, params)
    return _number_groups(groups, len(rows), min_size)


def cut_for_sim(points: Sequence[tuple[float, float]], sim: float) -> float:
    """The cosine cut for `sim` (0..1): piecewise-linear through a model's (sim, cut) calibration table.

    The table is anchored at (0, 0) and (1, 1) when it does not name those ends itself; its sims must rise and
    its cuts must not fall, so a higher sim never gives a lower cut.
    """
    if not isinstance(sim, numbers.Real) or isinstance(sim, bool) or not 0.0 <= sim <= 1.0:
        raise ValueError(f"sim must be a number from 0 to 1, got {sim!r}")
    try:
        table = sorted((float(s), float(c)) for s, c in points)
    except (TypeError, ValueError):
        raise ValueError(f"calibration table {points!r} is not a list of (sim, cut) pairs") from None
    if not table or table[0][0] > 0.0:
        table.insert(0, (0.0, 0.0))
    if table[-1][0] < 1.0:
        table.append((1.0, 1.0))
    sims, cuts = np.array(table).T
    if np.any(np.diff(sims) <= 0) or np.any(np.diff(cuts) < 0) or not np.all(np.isfinite(table)):
        raise ValueError(f"calibration table {list(points)!r} is not monotone")
    if sims[0] < 0.0 or sims[-1] > 1.0:
        raise ValueError(f"calibration table {list(points)!r} has sims outside 0..1")
    return float(np.interp(sim, sims, cuts))


# ---------------------------------------------------------------------------------------------------------------
# Input checks and small helpers


def _as_rows(vectors) -> np.ndarray:
    """float32 C-ordered rows; no copy when `vectors` already is that."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"fingerprints must be a 2-D array (photos x features), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"fingerprints must be numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_cut(cut) -> float:
    if isinstance(cut, bool) or not isinstance(cut, (int, float, np.floating, np.integer)) or not math.isfinite(cut):
        raise ValueError(f"cut must be a finite cosine similarity, got {cut!r}")
    return float(cut)


def _inverse_norms(rows: np.ndarray) -> np.ndarray:
    """1/|row| as float32; 0 for a zero or non-finite row, which then stays a singleton."""
    inv = np.zeros(len(rows), np.float32)
    for start in range(0, len(rows), _ROWS_PER_CHUNK):
        chunk = rows[start:start + _ROWS_PER_CHUNK].astype(np.float64)  # float64: no overflow in the squares
        with np.errstate(invalid="ignore", over="ignore"):
            norm = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        ok = np.isfinite(norm) & (norm > 0)
        inv[start:start + len(chunk)][ok] = 1.0 / norm[ok]
    bad = int(np.count_nonzero(inv == 0))
    if bad:
        log.warning("%d of %d fingerprints are zero or not finite; each stays a cluster of its own", bad, len(rows))
    return inv


def _unit64(rows: np.ndarray) -> np.ndarray:
    """Rows normalised in float64: the precision scipy's cosine distance works in."""
    unit = rows.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return unit


def _snap(distances: np.ndarray) -> np.ndarray:
    """Clip cosine distances into [0, 2] and zero the ones that are only rounding (in place)."""
    np.clip(distances, 0.0, 2.0, out=distances)
    distances[distances < ZERO_DISTANCE] = 0.0
    return distances


def _number_groups(groups: list[np.ndarray], n: int, min_size: int) -> np.ndarray:
    """Labels from groups of row indices (rows in no group are singletons), numbered by first row."""
    first = np.arange(n)
    for group in groups:
        first[group] = group.min()
    return _labels_from_first(first, min_size)


def _labels_from_first(first: np.ndarray, min_size: int) -> np.ndarray:
    """`first[i]`: the smallest row of i's cluster. Labels count clusters in order of that row."""
    if len(first) == 0:
        return np.zeros(0, np.intp)
    _, labels, sizes = np.unique(first, return_inverse=True, return_counts=True)
    keep = sizes >= min_size
    renumber = np.where(keep, np.cumsum(keep) - 1, -1)
    return renumber[labels].astype(np.intp)


# ---------------------------------------------------------------------------------------------------------------
# Clustering the usable (non-zero, finite) rows


def _cluster_usable(rows, inv_norm, usable, cut, params) -> list[np.ndarray]:
    """Clusters of the rows `usable` (row indices) with two or more members; the rest are singletons."""
    if len(usable) < 2:
        return []
    if cut <= 0 and _all_non_negative(rows, usable):
        # Non-negative fingerprints (ReLU features) have cosine >= 0 >= cut for every pair, so every average is
        # within the cut and all photos form one cluster; no search needed.
        return [usable]
    try:
        pair_i, pair_j = _similar_pairs(rows, inv_norm, usable, cut - GRAPH_MARGIN, params)
    except _TooManyEdges:
        if len(usable) <= params.dense_max:
            log.info("cut %.3f joins most of the %d photos; clustering them all in one piece", cut, len(usable))
            return _dense_clusters(rows, usable, 1.0 - cut)
        raise ClusterError(
            f"cut {cut:.3f} links more than {params.max_edges:,} pairs of the {len(usable):,} photos; "
            "average linkage that coarse needs the full distance matrix: use a higher sim") from None
    return _cluster_graph(rows, usable, pair_i, pair_j, cut, params)


def _all_non_negative(rows: np.ndarray, usable: np.ndarray) -> bool:
    return all(rows[usable[s:s + _ROWS_PER_CHUNK]].min() >= 0 for s in range(0, len(usable), _ROWS_PER_CHUNK))


def _cluster_graph(rows, members, pair_i, pair_j, cut, params) -> list[np.ndarray]:
    """Cluster each connected component of the graph (pair_i, pair_j index into `members`)."""
    n = len(members)
    graph = coo_matrix((np.ones(len(pair_i), np.int8), (pair_i, pair_j)), shape=(n, n)).tocsr()
    n_components, component = connected_components(graph, directed=False)
    order = np.argsort(component, kind="stable")
    bounds = np.cumsum(np.bincount(component, minlength=n_components))[:-1]
    groups: list[np.ndarray] = []
    sizes = []
    for local in np.split(order, bounds):
        if len(local) < 2:
            continue
        sizes.append(len(local))
        edges = _subgraph_edges(graph, local)
        groups.extend(_cluster_component(rows, members[local], 1.0 - cut, edges, params))
    log.debug("%d photos: %d similar pairs, %d components, the largest %d", n, len(pair_i), n_components,
              max(sizes, default=1))
    _warn_oversized(sizes, params)
    return groups


def _warn_oversized(sizes: list[int], params: ClusterParams) -> None:
    big = [size for size in sizes if size > params.dense_max]
    if big:
        log.warning("%d group(s) of linked photos exceed the dense limit of %d (the largest: %d photos, for which "
                    "scipy would need %.1f GB); clustered with the slower sparse exact method", len(big),
                    params.dense_max, max(big), 8.5 * max(big) ** 2 / 1e9)


def _subgraph_edges(graph, local: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """The component's own edges (local indices), computed only if the sparse path asks."""
    def edges():
        sub = graph[local][:, local].tocoo()
        return sub.row, sub.col
    return edges


def _cluster_component(rows, members, t, edges, params) -> list[np.ndarray]:
    """Clusters (arrays of row indices, two or more members) of one connected component at distance cut t."""
    if len(members) == 2:
        unit = _unit64(rows[members])
        distance = _snap(np.array([1.0 - unit[0] @ unit[1]]))[0]
        return [members] if distance <= t else []
    if len(members) <= params.dense_max:
        return _dense_clusters(rows, members, t)
    pair_i, pair_j = edges()
    return _sparse_clusters(rows, members, t, pair_i, pair_j)


def _split_by(members: np.ndarray, flat: np.ndarray) -> list[np.ndarray]:
    """Groups of `members` sharing a flat label, only those of two or more."""
    order = np.argsort(flat, kind="stable")
    parts = np.split(members[order], np.flatnonzero(np.diff(flat[order])) + 1)
    return [p for p in parts if len(p) > 1]


def _dense_clusters(rows, members, t) -> list[np.ndarray]:
    """scipy's average linkage on the members' float64 cosine distances, cut at distance t."""
    unit = _unit64(rows[members])
    flat = fcluster(linkage(_condensed_distances(unit), method="average"), t, criterion="distance")
    return _split_by(members, flat)


def _condensed_distances(unit: np.ndarray, block: int = 1024) -> np.ndarray:
    """pdist(unit, 'cosine') by blocked matrix products (BLAS, unlike pdist's per-pair loop)."""
    m = len(unit)
    condensed = np.empty(m * (m - 1) // 2)
    offset = 0
    for start in range(0, m, block):
        stop = min(start + block, m)
        sims = unit[start:stop] @ unit[start:].T
        for r in range(stop - start):
            row = sims[r, r + 1:]
            condensed[offset:offset + len(row)] = 1.0 - row
            offset += len(row)
    return _snap(condensed)


# ---------------------------------------------------------------------------------------------------------------
# Average linkage for components too big for scipy


def _sparse_clusters(rows, members, t, pair_i, pair_j) -> list[np.ndarray]:
    """Exact average-linkage clusters at distance cut t, in memory ~ edges + members x dim.

    Written here because no library does it: scipy and fastcluster need the m^2 condensed matrix, and graph-
    restricted average linkage (scikit-learn's `connectivity`) averages only over graph edges, which is not the
    same clustering. Three facts make this one exact:
    - With unit vectors, the average cosine distance between clusters A and B is 1 - (sum A . sum B)/(|A||B|),
      so any cluster pair's distance is computable from per-cluster vector sums.
    - A pair of clusters at average distance <= t has a member pair at distance <= t, which is a graph edge.
      So keeping, per cluster, only the neighbours within t (starting from the graph) loses nothing: after a
      merge, a neighbour within t of the union was within t of one of the two parts.
    - Average linkage is reducible, so the nearest-neighbour chain finds its merges in any order, and a cluster
      with no neighbour within t never merges below t again: it is final.
    Ties break as in scipy's nn_chain (the chain's previous cluster first, then the lowest index).
    """
    sums = _unit64(rows[members])  # becomes each cluster's vector sum, in its surviving slot
    size = np.ones(len(members))
    neighbours = _initial_neighbours(sums, pair_i, pair_j, t)
    parent = np.arange(len(members))
    _nn_chain(sums, size, neighbours, parent, t)
    roots = np.array([_root(parent, i) for i in range(len(members))])
    return _split_by(members, roots)


def _initial_neighbours(unit, pair_i, pair_j, t) -> list[dict[int, float]]:
    neighbours: list[dict[int, float]] = [{} for _ in range(len(unit))]
    keep = pair_i != pair_j
    pair_i, pair_j = pair_i[keep], pair_j[keep]
    for start in range(0, len(pair_i), 1024):
        a, b = pair_i[start:start + 1024], pair_j[start:start + 1024]
        distance = _snap(1.0 - np.einsum("ij,ij->i", unit[a], unit[b]))
        for i, j, dist in zip(a.tolist(), b.tolist(), distance.tolist()):
            if dist <= t:
                neighbours[i][j] = dist
                neighbours[j][i] = dist
    return neighbours


def _nn_chain(sums, size, neighbours, parent, t) -> None:
    """Merge clusters at average distance <= t until none is left (nearest-neighbour chain)."""
    chain: list[int] = []
    next_start = 0
    final = np.zeros(len(size), bool)
    while True:
        if not chain:
            while next_start < len(size) and (final[next_start] or size[next_start] == 0):
                next_start += 1
            if next_start == len(size):
                return
            chain.append(next_start)
        a = chain[-1]
        near = neighbours[a]
        if not near:  # nothing within t: a is a final cluster (only ever the chain's single element)
            final[a] = True
            chain.pop()
            continue
        previous = chain[-2] if len(chain) > 1 else -1
        b, dist = min(near.items(), key=lambda item: (item[1], item[0]))
        if previous in near and near[previous] <= dist:
            b = previous
        if b == previous:
            chain.pop()
            chain.pop()
            _merge(a, b, sums, size, neighbours, parent, t)
        else:
            chain.append(b)


def _merge(a, b, sums, size, neighbours, parent, t) -> None:
    keep, gone = (a, b) if len(neighbours[a]) >= len(neighbours[b]) else (b, a)
    near_keep, near_gone = neighbours[keep], neighbours[gone]
    del near_keep[gone], near_gone[keep]
    n_keep, n_gone = size[keep], size[gone]
    # distances the merge needs but only one side holds: from the vector sums
    only_keep = [k for k in near_keep if k not in near_gone]
    only_gone = [k for k in near_gone if k not in near_keep]
    from_sums = {}
    from_sums.update(zip(only_keep, _distances_from_sums(sums, size, gone, only_keep)))
    from_sums_keep = dict(zip(only_gone, _distances_from_sums(sums, size, keep, only_gone)))
    merged = {}
    total = n_keep + n_gone
    for k, d_keep in near_keep.items():
        d_gone = near_gone[k] if k in near_gone else from_sums[k]
        merged[k] = (n_keep * d_keep + n_gone * d_gone) / total
    for k in only_gone:
        merged[k] = (n_keep * from_sums_keep[k] + n_gone * near_gone[k]) / total
    sums[keep] += sums[gone]
    size[keep], size[gone] = total, 0
    parent[gone] = keep
    neighbours[gone] = {}
    within = {k: d for k, d in merged.items() if d <= t}
    neighbours[keep] = within
    for k in merged:
        near_k = neighbours[k]
        near_k.pop(gone, None)
        if k in within:
            near_k[keep] = within[k]
        else:
            near_k.pop(keep, None)


def _distances_from_sums(sums, size, cluster_slot, others: list[int]) -> list[float]:
    if not others:
        return []
    others_arr = np.array(others)
    dots = sums[others_arr] @ sums[cluster_slot]
    return _snap(1.0 - dots / (size[others_arr] * size[cluster_slot])).tolist()


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


# ---------------------------------------------------------------------------------------------------------------
# The range search: all pairs of `members` with cosine >= threshold


def _similar_pairs(rows, inv_norm, members, threshold, params) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j, into `members`) whose cosine similarity is >= threshold."""
    if len(members) <= params.exact_search_max:
        return _pairs_exact(rows, inv_norm, members, threshold, params)
    try:
        import faiss  # noqa: F401  (only the approximate search needs it)
    except ImportError:
        log.warning("faiss is not installed: searching %d photos exhaustively (slow; pip install faiss-cpu)",
                    len(members))
        return _pairs_exact(rows, inv_norm, members, threshold, params)
    return _pairs_inverted_file(rows, inv_norm, members, threshold, params)


class _PairCollector:
    def __init__(self, max_edges: int):
        self.first: list[np.ndarray] = []
        self.second: list[np.ndarray] = []
        self.count = 0
        self.max_edges = max_edges

    def add(self, first: np.ndarray, second: np.ndarray) -> None:
        self.count += len(first)
        if self.count > self.max_edges:
            raise _TooManyEdges
        self.first.append(first.astype(np.int32))
        self.second.append(second.astype(np.int32))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.first:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        return np.concatenate(self.first), np.concatenate(self.second)


def _pairs_exact(rows, inv_norm, members, threshold, params) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search by float32 matrix products in blocks (memory: a few block x 4*block tiles)."""
    if len(members) == len(rows):
        data, inv = rows, inv_norm  # no copy
    else:
        data, inv = rows[members], inv_norm[members]
    n, block, tile = len(members), params.block, 4 * params.block
    found = _PairCollector(params.max_edges)
    for start in range(0, n, block):
        stop = min(start + block, n)
        for col in range(start, n, tile):
            col_stop = min(col + tile, n)
            sims = data[start:stop] @ data[col:col_stop].T
            sims *= inv[start:stop, None]
            sims *= inv[None, col:col_stop]
            r, c = np.nonzero(sims >= threshold)
            i, j = r + start, c + col
            upper = i < j
            found.add(i[upper], j[upper])
    return found.pairs()


def _pairs_inverted_file(rows, inv_norm, members, threshold, params) -> tuple[np.ndarray, np.ndarray]:
    """APPROXIMATE search: the photos are split into small k-means cells, and each photo is compared exactly with
    the photos of its `nprobe` nearest cells. A pair is found when either photo probes the other's cell; a pair
    whose cells neither probes is missed, which is what makes this approximate.

    faiss does the k-means and the nearest-cell look-ups, in a 256-d PCA projection where they are 16x cheaper
    (cells only steer the search: every reported pair is verified on the full vectors). faiss's own
    IndexIVFFlat.range_search is not used: it compares one query at a time, which at 4096 dimensions is bound by
    memory bandwidth (measured 4x slower here); comparing all the photos probing a cell with the cell's photos in
    one matrix product (BLAS) is compute bound.
    """
    n, dim = len(members), rows.shape[1]
    cells = min(n, params.cells or int(np.clip(n // params.cell_size, 16, 16384)))
    nprobe = min(params.nprobe, cells)
    started = time.perf_counter()
    projected = _CoarseSpace(rows, inv_norm, members, params.seed).project_all()
    probes = _nearest_cells(projected, cells, nprobe, params.seed)
    del projected
    log.debug("cells found in %.1f s", time.perf_counter() - started)
    # unit vectors stored cell by cell, so that each cell's photos are one contiguous block
    order = np.argsort(probes[:, 0], kind="stable")
    cell_start = np.searchsorted(probes[order, 0], np.arange(cells + 1))
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    unit = np.empty((n, dim), np.float32)
    for start in range(0, n, _ROWS_PER_CHUNK):
        chunk = members[order[start:start + _ROWS_PER_CHUNK]]
        unit[start:start + len(chunk)] = rows[chunk] * inv_norm[chunk, None]
    # the photos probing each cell, as positions in `unit`
    probe_order = np.argsort(probes.ravel(), kind="stable")
    probe_start = np.searchsorted(probes.ravel()[probe_order], np.arange(cells + 1))
    probing = position[probe_order // nprobe]
    del probes, probe_order
    log.debug("cells laid out in %.1f s", time.perf_counter() - started)
    found = _PairCollector(params.max_edges)
    for cell in range(cells):
        lo, hi = cell_start[cell], cell_start[cell + 1]
        queries = np.sort(probing[probe_start[cell]:probe_start[cell + 1]])
        for q in range(0, len(queries) if hi > lo else 0, params.block):
            asking = queries[q:q + params.block]
            r, c = np.nonzero(unit[asking] @ unit[lo:hi].T >= threshold)
            i, j = asking[r], c + lo
            found.add(np.minimum(i, j)[i != j], np.maximum(i, j)[i != j])
    del unit
    first, second = found.pairs()
    codes = np.unique(first.astype(np.int64) * n + second)  # a pair can be found from both sides
    first, second = order[codes // n], order[codes % n]  # positions -> indices into members
    log.info("approximate pair search over %d photos: %d cells, %d probed each, %d similar pairs (%.1f s)",
             n, cells, nprobe, len(codes), time.perf_counter() - started)
    return np.minimum(first, second).astype(np.int32), np.maximum(first, second).astype(np.int32)


class _CoarseSpace:
    """The top principal directions of the unit fingerprints (of a sample): where the cells are computed."""

    DIMS = 256
    SAMPLE = 8192

    def __init__(self, rows, inv_norm, members, seed):
        import scipy.linalg

        self.rows, self.inv_norm, self.members = rows, inv_norm, members
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(len(members), min(len(members), self.SAMPLE), replace=False))
        unit = rows[members[sample]] * inv_norm[members[sample], None]
        self.mean = unit.mean(axis=0)
        if rows.shape[1] <= self.DIMS:
            self.basis = None  # already small
            return
        centred = unit - self.mean
        covariance = (centred.T @ centred).astype(np.float64)
        top = (rows.shape[1] - self.DIMS, rows.shape[1] - 1)
        self.basis = scipy.linalg.eigh(covariance, subset_by_index=top, driver="evr")[1].astype(np.float32)

    def project_all(self) -> np.ndarray:
        dims = self.rows.shape[1] if self.basis is None else self.DIMS
        out = np.empty((len(self.members), dims), np.float32)
        for start in range(0, len(self.members), _ROWS_PER_CHUNK):
            chunk = self.members[start:start + _ROWS_PER_CHUNK]
            centred = self.rows[chunk] * self.inv_norm[chunk, None] - self.mean
            out[start:start + len(chunk)] = centred if self.basis is None else centred @ self.basis
        return out


def _nearest_cells(projected: np.ndarray, cells: int, nprobe: int, seed: int) -> np.ndarray:
    """k-means (faiss) on the projected fingerprints; each photo's `nprobe` nearest cells, nearest first."""
    import faiss

    per_cell = _TRAINING_PER_CELL
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(projected), min(len(projected), per_cell * cells), replace=False))
    kmeans = faiss.Kmeans(projected.shape[1], cells, niter=_KMEANS_ITERATIONS, seed=seed, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=per_cell)
    kmeans.train(projected[sample])
    quantizer = faiss.IndexFlatL2(projected.shape[1])
    quantizer.add(kmeans.centroids)
    probes = np.empty((len(projected), nprobe), np.int64)
    for start in range(0, len(projected), _ROWS_PER_CHUNK):
        _, probes[start:start + _ROWS_PER_CHUNK] = quantizer.search(projected[start:start + _ROWS_PER_CHUNK], nprobe)
    return probes


def _pairs_between(queries, query_inv, rows, inv_norm, threshold, block) -> tuple[np.ndarray, np.ndarray]:
    """All (query index, row index) pairs with cosine >= threshold, exhaustively. Rows with inv_norm 0 never pair."""
    hits_q, hits_r = [], []
    usable = inv_norm > 0
    for start in range(0, len(rows), 4 * block):
        stop = min(start + 4 * block, len(rows))
        sims = queries @ rows[start:stop].T
        sims *= query_inv[:, None]
        sims *= inv_norm[None, start:stop]
        q, r = np.nonzero(sims >= threshold)
        r += start
        keep = usable[r]
        hits_q.append(q[keep])
        hits_r.append(r[keep])
    return np.concatenate(hits_q), np.concatenate(hits_r)


# ---------------------------------------------------------------------------------------------------------------
# Incremental clustering for the daemon


class IncrementalClusterer:
    """The clusters of a changing set of photos, kept current by re-clustering only what a change touches.

    Photos are keyed by their path (str). `update(added, removed)` takes new or changed fingerprints and the
    paths that are gone; it finds the new photos' similar pairs by one exhaustive pass over the stored
    fingerprints, and re-clusters only the graph components that gained or lost a photo (a removal can split
    a component; its remaining photos get their components recomputed). The result is always the partition that
    `cluster()` gives for the current photos at the same cut: `labels(paths)` returns exactly its labels.

    A cluster is named by its representative, the smallest path in it, which stays put while the cluster keeps
    that photo. `update` returns {path: representative} for every photo in the re-clustered components (the
    only ones whose clusters can have changed; removed paths are absent); `assignment()` gives all of them.

    Memory: the fingerprints (float32), the similar-pair graph as sets, and two ints per photo.
    """

    def __init__(self, cut: float, params: ClusterParams | None = None):
        self.cut = _check_cut(cut)
        self.params = params or ClusterParams()
        self._dim = 0  # fixed by the first fingerprint stored
        self._slot: dict[str, int] = {}
        self._key: list[str | None] = []
        self._free: list[int] = []
        self._rows = np.zeros((0, 0), np.float32)
        self._inv = np.zeros(0, np.float32)
        self._neighbours: list[set[int]] = []
        self._component = np.zeros(0, np.int64)
        self._component_members: dict[int, np.ndarray] = {}
        self._cluster = np.zeros(0, np.int64)  # cluster id per slot
        self._cluster_members: dict[int, list[int]] = {}
        self._cluster_rep: dict[int, str] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, path: object) -> bool:
        return path in self._slot

    def update(self, added: Mapping[str, np.ndarray] | None = None, removed: Iterable[str] = ()) -> dict[str, str]:
        """Apply the changes; return {path: representative} for the photos whose clusters were recomputed.

        A path in `added` that is already known is replaced (its fingerprint changed). Unknown removed paths are
        ignored. A bad fingerprint (wrong length, not numbers) raises ValueError before anything changes.
        """
        added = dict(added or {})
        new_rows = self._check_added(added)
        gone = {p for p in removed if p in self._slot} | {p for p in added if p in self._slot}
        dirty = {int(self._component[self._slot[p]]) for p in gone}
        for path in gone:
            self._forget(path)
        new_slots = [self._store(path, row) for path, row in zip(added, new_rows)]
        try:
            if self.cut <= 0 or len(new_slots) > max(256, len(self._slot) // 4):
                touched = self._rebuild_graph()  # a bulk change: one search over everything is cheaper
            else:
                touched = self._link(np.array(new_slots, np.int64), dirty)
        except _TooManyEdges:
            raise ClusterError(
                f"cut {self.cut:.3f} links more than {self.params.max_edges:,} pairs of the {len(self):,} photos; "
                "use a higher sim (this clusterer must now be rebuilt)") from None
        return self._recluster(touched)

    def assignment(self) -> dict[str, str]:
        """{path: representative} for every photo."""
        return {path: self._cluster_rep[self._cluster[slot]] for path, slot in self._slot.items()}

    def clusters(self) -> list[list[str]]:
        """All clusters (singletons too) as sorted path lists, ordered by representative."""
        return sorted(sorted(self._key[s] for s in members) for members in self._cluster_members.values())

    def labels(self, paths: Sequence[str], min_size: int = 1) -> np.ndarray:
        """cluster()'s labels for the photos listed in this order (`paths` must name each known photo once)."""
        if len(paths) != len(self._slot) or set(paths) != self._slot.keys():
            raise ValueError("labels() needs every known photo exactly once")
        _, ids = np.unique(self._cluster[[self._slot[p] for p in paths]], return_inverse=True)
        first = np.full(len(paths), len(paths))
        np.minimum.at(first, ids, np.arange(len(paths)))
        return _labels_from_first(first[ids], min_size)

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def _check_added(self, added: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = []
        for path, vector in added.items():
            try:
                row = np.asarray(vector, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise ValueError(f"fingerprint of {path!r} is not an array of numbers") from None
            dim = self._dim or (len(rows[0]) if rows else len(row))
            if len(row) != dim or dim == 0:
                raise ValueError(f"fingerprint of {path!r} has {len(row)} numbers, expected {dim}")
            rows.append(row)
        return rows

    def _store(self, path: str, row: np.ndarray) -> int:
        self._dim = len(row)
        if not self._free:
            self._grow(len(row))
        slot = self._free.pop()
        self._slot[path] = slot
        self._key[slot] = path
        self._rows[slot] = row
        self._inv[slot] = _inverse_norms(row[None, :])[0]
        self._component[slot] = -1
        return slot

    def _grow(self, dim: int) -> None:
        old = len(self._key)
        new = max(64, 2 * old)
        rows = np.zeros((new, dim), np.float32)
        if old:
            rows[:old] = self._rows
        self._rows = rows
        self._inv = np.concatenate([self._inv, np.zeros(new - old, np.float32)])
        self._component = np.concatenate([self._component, np.full(new - old, -1)])
        self._cluster = np.concatenate([self._cluster, np.full(new - old, -1)])
        self._key.extend([None] * (new - old))
        self._neighbours.extend(set() for _ in range(new - old))
        self._free.extend(range(new - 1, old - 1, -1))  # pop() hands out the lowest slot first

    def _forget(self, path: str) -> None:
        slot = self._slot.pop(path)
        for other in self._neighbours[slot]:
            self._neighbours[other].discard(slot)
        self._neighbours[slot] = set()
        self._key[slot] = None
        self._inv[slot] = 0.0
        self._rows[slot] = 0.0
        self._drop_cluster_of(slot)
        self._component[slot] = -1
        self._free.append(slot)

    def _drop_cluster_of(self, slot: int) -> None:
        cid = int(self._cluster[slot])
        if cid >= 0:
            for member in self._cluster_members.pop(cid, []):
                self._cluster[member] = -1
            self._cluster_rep.pop(cid, None)

    # -- the graph ---------------------------------------------------------------------------------------------

    def _alive(self) -> np.ndarray:
        return np.array(sorted(self._slot.values()), np.int64)

    def _rebuild_graph(self) -> np.ndarray:
        alive = self._alive()
        for slot in range(len(self._key)):
            self._neighbours[slot] = set()
        usable = alive[self._inv[alive] > 0]
        if not self._everything_joins(usable):
            pair_i, pair_j = _similar_pairs(self._rows, self._inv, usable, self.cut - GRAPH_MARGIN, self.params)
            for i, j in zip(usable[pair_i].tolist(), usable[pair_j].tolist()):
                self._neighbours[i].add(j)
                self._neighbours[j].add(i)
        return alive

    def _link(self, new_slots: np.ndarray, dirty: set[int]) -> np.ndarray:
        """Add the new photos' edges; return every slot whose component may change."""
        usable_new = new_slots[self._inv[new_slots] > 0]
        if len(usable_new):
            stored = max(self._slot.values()) + 1  # slots above are free: not worth a look
            q, r = _pairs_between(self._rows[usable_new], self._inv[usable_new], self._rows[:stored],
                                  self._inv[:stored], self.cut - GRAPH_MARGIN, self.params.block)
            for i, j in zip(usable_new[q].tolist(), r.tolist()):
                if i != j:
                    self._neighbours[i].add(j)
                    self._neighbours[j].add(i)
                    dirty.add(int(self._component[j]))
        dirty.discard(-1)
        touched = [new_slots] + [self._component_members.pop(c) for c in dirty if c in self._component_members]
        touched = np.unique(np.concatenate(touched))
        return touched[[self._key[s] is not None for s in touched]] if len(touched) else touched

    # -- re-clustering -----------------------------------------------------------------------------------------

    def _recluster(self, touched: np.ndarray) -> dict[str, str]:
        if len(touched) == 0:
            return {}
        for slot in touched.tolist():
            self._drop_cluster_of(slot)
            self._component_members.pop(int(self._component[slot]), None)
        components = self._components_of(touched)
        _warn_oversized([len(c) for c in components], self.params)
        for members in components:
            component_id = self._new_id()
            self._component[members] = component_id
            self._component_members[component_id] = members
            for group in self._cluster_members_of(members):
                self._add_cluster(group)
        return {self._key[s]: self._cluster_rep[self._cluster[s]] for s in touched.tolist()}

    def _everything_joins(self, usable: np.ndarray) -> bool:
        """cut <= 0 with non-negative fingerprints: one cluster, no graph (as in cluster())."""
        return self.cut <= 0 and _all_non_negative(self._rows, usable)

    def _components_of(self, touched: np.ndarray) -> list[np.ndarray]:
        """Connected components of the graph restricted to `touched` (a union of whole components)."""
        if self._everything_joins(touched[self._inv[touched] > 0]):
            return [touched]
        local = {s: k for k, s in enumerate(touched.tolist())}
        pair_i, pair_j = [], []
        for s, k in local.items():
            for other in self._neighbours[s]:
                if other > s:
                    pair_i.append(k)
                    pair_j.append(local[other])
        n = len(touched)
        graph = coo_matrix((np.ones(len(pair_i), np.int8), (pair_i, pair_j)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        order = np.argsort(component, kind="stable")
        return np.split(touched[order], np.flatnonzero(np.diff(component[order])) + 1)

    def _cluster_members_of(self, members: np.ndarray) -> list[np.ndarray]:
        """The clusters (singletons included) of one component, as slot arrays."""
        usable = members[self._inv[members] > 0]
        groups: list[np.ndarray] = []
        if len(usable) > 1:
            if self._everything_joins(usable):
                groups = [usable]
            else:
                groups = _cluster_component(self._rows, usable, 1.0 - self.cut,
                                            lambda: self._edges_within(usable), self.params)
        grouped = set(np.concatenate(groups).tolist()) if groups else set()
        return groups + [np.array([s]) for s in members.tolist() if s not in grouped]

    def _edges_within(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = {s: k for k, s in enumerate(members.tolist())}
        pairs = [(k, local[o]) for s, k in local.items() for o in self._neighbours[s] if o in local and o > s]
        array = np.array(pairs, np.int64).reshape(-1, 2)
        return array[:, 0], array[:, 1]

    def _add_cluster(self, slots: np.ndarray) -> None:
        cid = self._new_id()
        members = slots.tolist()
        self._cluster[slots] = cid
        self._cluster_members[cid] = members
        self._cluster_rep[cid] = min(self._key[s] for s in members)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1
