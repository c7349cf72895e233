"""The pair search: every pair of photos whose cosine similarity reaches a threshold.

Exact (blocked float32 matrix products over unit vectors) up to `ClusterParams.exact_search_max` photos; above,
APPROXIMATE (an inverted file: faiss k-means cells, each photo compared with the photos of its nearest cells),
which can miss pairs. Either way each pair found is measured again in float64 before it is used.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .core import ROWS_PER_CHUNK, ClusterParams, TooManyEdges, unit32

log = logging.getLogger(__name__)

# k-means of the approximate search: the cells only need to be roughly right, so training is kept cheap
_TRAINING_PER_CELL = 24
_KMEANS_ITERATIONS = 8
_SAFE_SCALE = 1e30  # 1/norm within 1e-30..1e30: a raw float32 product with a unit vector neither under- nor overflows


def similar_pairs(rows, inv, members, threshold, params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j, into `members`) whose cosine similarity is >= threshold (rows with inv 0 excluded
    by the caller)."""
    if len(members) <= params.exact_search_max:
        return pairs_exact(rows, inv, members, threshold, params)
    try:
        import faiss  # noqa: F401  (only the approximate search needs it)
    except ImportError:
        log.warning("faiss is not installed: searching %d photos exhaustively (slow; pip install faiss-cpu)",
                    len(members))
        return pairs_exact(rows, inv, members, threshold, params)
    return pairs_inverted_file(rows, inv, members, threshold, params)


class _PairCollector:
    def __init__(self, max_edges: int):
        self.first: list[np.ndarray] = []
        self.second: list[np.ndarray] = []
        self.count = 0
        self.max_edges = max_edges

    def add(self, first: np.ndarray, second: np.ndarray) -> None:
        self.count += len(first)
        if self.count > self.max_edges:
            raise TooManyEdges
        self.first.append(first.astype(np.int32))
        self.second.append(second.astype(np.int32))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.first:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        return np.concatenate(self.first), np.concatenate(self.second)


def pairs_exact(rows, inv, members, threshold, params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search by float32 products of unit vectors, one tile at a time (memory: a few tiles).

    The rows are normalised tile by tile (in float64) before the product: a raw float32 product of two rows of
    norm 1e-24 underflows to 0 and their pair would vanish. Column tiles are the outer loop, so each is
    normalised once; a row block costs 1/tile of its products to normalise again.
    """
    n, block, tile = len(members), params.block, 4 * params.block
    found = _PairCollector(params.max_edges)
    row_buffer = np.empty((min(block, n), rows.shape[1]), np.float32)
    for col in range(0, n, tile):
        col_stop = min(col + tile, n)
        columns = unit32(rows, inv, members[col:col_stop])
        for start in range(0, col_stop, block):
            stop = min(start + block, n)
            sims = unit32(rows, inv, members[start:stop], row_buffer) @ columns.T
            r, c = np.nonzero(sims >= threshold)
            i, j = r + start, c + col
            upper = i < j
            found.add(i[upper], j[upper])
    return found.pairs()


def pairs_between(rows, inv, queries: np.ndarray, stored: int, threshold, block: int):
    """All (position in `queries`, row) pairs with cosine >= threshold between the rows `queries` and the rows
    0..stored-1, exhaustively. Rows with inv 0 never pair.

    The queries are normalised; the stored rows are used as they are and their products scaled afterwards, which
    spares normalising the whole library for each arrival. That is safe in float32 for norms from 1e-30 to 1e30;
    the rare rows outside are normalised first.
    """
    hits_q, hits_r = [], []
    asking = unit32(rows, inv, queries)
    for start in range(0, stored, 4 * block):
        stop = min(start + 4 * block, stored)
        scale = inv[start:stop]
        sims = asking @ rows[start:stop].T
        sims *= np.minimum(scale, _SAFE_SCALE).astype(np.float32)  # the extreme ones are redone below
        extreme = np.flatnonzero((scale > _SAFE_SCALE) | ((scale > 0) & (scale < 1 / _SAFE_SCALE)))
        if len(extreme):
            sims[:, extreme] = asking @ unit32(rows, inv, start + extreme).T
        q, r = np.nonzero(sims >= threshold)
        r += start
        keep = inv[r] > 0
        hits_q.append(q[keep])
        hits_r.append(r[keep])
    if not hits_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(hits_q), np.concatenate(hits_r)


def nearest(rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (at most) k rows most cosine-similar to the vector `query`, best first, as (row indices, cosines).

    Exhaustive at every size: one query against n rows is n x dim products, a fraction of a second for 100,000
    photos (scripts/bench_similar.py), whereas the approximate search's cells (a k-means over every photo) would
    cost seconds to build for a single question. Cosines are computed in float64 a chunk at a time, as every
    distance here is; ties go to the lower row. Zero or non-finite rows, and a zero query, match nothing.
    """
    query = np.asarray(query, np.float64).reshape(-1)
    q_norm = np.linalg.norm(query)
    if k <= 0 or not len(rows) or not np.isfinite(q_norm) or q_norm == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    query = query / q_norm
    sims = np.empty(len(rows))
    step = max(256, 2**22 // max(1, rows.shape[1]))  # a chunk of float64 rows is at most 32 MB
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
            part = (chunk @ query) / norms
        part[~(np.isfinite(part) & (norms > 0))] = -np.inf
        sims[start:start + len(chunk)] = part
    usable = np.flatnonzero(sims > -np.inf)
    if k < len(usable):
        kth = np.partition(sims[usable], len(usable) - k)[len(usable) - k]
        usable = usable[sims[usable] >= kth]  # ties at the k-th are all kept here, then ordered by row
    order = np.lexsort((usable, -sims[usable]))[:k]
    return usable[order], sims[usable[order]]


def pairs_inverted_file(rows, inv, members, threshold, params: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """APPROXIMATE search: the photos are split into small k-means cells, and each photo is compared exactly with
    the photos of its `nprobe` nearest cells. A pair is found when either photo probes the other's cell; a pair
    whose cells neither probes is missed, which is what makes this approximate.

    faiss does the k-means and the nearest-cell look-ups, in a 256-d PCA projection where they are 16x cheaper
    (cells only steer the search: every reported pair is verified on the full vectors). faiss's own
    IndexIVFFlat.range_search is not used: it compares one query at a time, which at 4096 dimensions is bound by
    memory bandwidth (measured 4x slower here); comparing all the photos probing a cell with the cell's photos in
    one matrix product (BLAS) is compute bound.
    """
    n = len(members)
    cells = min(n, params.cells or int(np.clip(n // params.cell_size, 16, 16384)))
    nprobe = min(params.nprobe, cells)
    started = time.perf_counter()
    projected = _CoarseSpace(rows, inv, members, params.seed).project_all()
    probes = _nearest_cells(projected, cells, nprobe, params.seed)
    del projected
    log.debug("cells found in %.1f s", time.perf_counter() - started)
    # unit vectors stored cell by cell, so that each cell's photos are one contiguous block
    order = np.argsort(probes[:, 0], kind="stable")
    cell_start = np.searchsorted(probes[order, 0], np.arange(cells + 1))
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    unit = unit32(rows, inv, members[order])
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

    def __init__(self, rows, inv, members, seed):
        import scipy.linalg

        self.rows, self.inv, self.members = rows, inv, members
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(len(members), min(len(members), self.SAMPLE), replace=False))
        unit = unit32(rows, inv, members[sample])
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
        for start in range(0, len(self.members), ROWS_PER_CHUNK):
            chunk = self.members[start:start + ROWS_PER_CHUNK]
            centred = unit32(self.rows, self.inv, chunk) - self.mean
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
    for start in range(0, len(projected), ROWS_PER_CHUNK):
        _, probes[start:start + ROWS_PER_CHUNK] = quantizer.search(projected[start:start + ROWS_PER_CHUNK], nprobe)
    return probes

