"""What every clustering path shares: the parameters, the errors, and the arithmetic.

The arithmetic lives here once so that the paths compute bit-identical numbers: a distance is always computed by
the same function from the same float64 values, whichever path, component or arrival order asks for it. That is
what makes the clusters independent of the path taken (see the package docstring).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# The pair search runs in float32 at a threshold lowered by this much, so its rounding (about 1e-6 at most for
# 4096-d unit vectors) can never drop a pair; every pair found is then measured again in float64 and kept only if
# it is within the cut.
GRAPH_MARGIN = 1e-4
# Cosine distances below this are float64 rounding of zero (identical or parallel fingerprints).
ZERO_DISTANCE = 1e-12
ROWS_PER_CHUNK = 8192
_PAIRS_PER_CHUNK = 2048


class ClusterError(ValueError):
    """The clustering cannot be done as asked (a one-line message says why and what to change)."""


class TooManyEdges(Exception):
    """The pair search found more than `ClusterParams.max_edges` pairs."""


@dataclass(frozen=True)
class ClusterParams:
    """Knobs of the scalable path. The defaults suit a 2-core, 24 GB machine; tests shrink them to force paths."""

    # Photos up to which the pair search is exact. It costs N^2 x dim: for 100,000 4096-d fingerprints 25 x the
    # 12 s measured at 20,000 on 2 quiet cores (9 min measured on 2 shared cores), where the approximate search
    # puts 0.2% of the photos in another cluster (scripts/bench_cluster.py, measurement 6).
    exact_search_max: int = 100_000
    dense_min: int = 48  # components from this size run the dense (numpy) linkage; smaller ones the sparse one
    dense_max: int = 10_000  # components up to this size run the dense linkage (memory ~8 x size^2 bytes)
    max_edges: int = 50_000_000  # similar pairs held at most (12 bytes each); beyond: a lower cut is refused
    cells: int = 0  # cells of the approximate search; 0: N / cell_size
    cell_size: int = 48  # photos per cell, on average
    nprobe: int = 48  # nearest cells each photo is compared with in the approximate search
    block: int = 2048  # rows per matrix-product block (memory ~ block x 4 x block x 4 bytes)
    seed: int = 0  # k-means seed of the approximate search, for repeatable results


def inverse_norms(rows: np.ndarray) -> np.ndarray:
    """1/|row| in float64; 0 for a zero or non-finite row, which then stays a singleton.

    float64 throughout: a float32 square underflows for a norm of 1e-24 and overflows for 1e20.
    """
    inv = np.zeros(len(rows))
    for start in range(0, len(rows), ROWS_PER_CHUNK):
        chunk = rows[start:start + ROWS_PER_CHUNK].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            norm = np.sqrt((chunk * chunk).sum(axis=1))
        ok = np.isfinite(norm) & (norm > 0)
        inv[start:start + len(chunk)][ok] = 1.0 / norm[ok]
    bad = int(np.count_nonzero(inv == 0))
    if bad:
        log.warning("%d of %d fingerprints are zero or not finite; each stays a cluster of its own", bad, len(rows))
    return inv


def unit64(rows: np.ndarray, inv: np.ndarray, index) -> np.ndarray:
    """The rows `index` as float64 unit vectors: the precision every distance is computed in."""
    return rows[index].astype(np.float64) * inv[index, None]


def unit32(rows: np.ndarray, inv: np.ndarray, index, out: np.ndarray | None = None) -> np.ndarray:
    """The rows `index` (an index array or a slice) as float32 unit vectors for the pair search, scaled in
    float64 a chunk at a time (a float32 1/norm overflows for norms below 3e-39)."""
    index = np.arange(len(rows))[index] if isinstance(index, slice) else np.asarray(index)
    out = np.empty((len(index), rows.shape[1]), np.float32) if out is None else out[:len(index)]
    for start in range(0, len(index), 1024):
        part = index[start:start + 1024]
        out[start:start + len(part)] = rows[part].astype(np.float64) * inv[part, None]
    return out


def snap(distances: np.ndarray) -> np.ndarray:
    """Clip cosine distances into [0, 2] and zero the ones that are only rounding (in place)."""
    np.clip(distances, 0.0, 2.0, out=distances)
    distances[distances < ZERO_DISTANCE] = 0.0
    return distances


def paired_distances(rows: np.ndarray, inv: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine distance of each pair of rows (first[k], second[k]), from their float64 unit vectors.

    Elementwise products summed per row: the result for a pair does not depend on which other pairs are
    computed with it (a BLAS matrix product's could), so every path gets the same bits. Unit vectors are made
    a chunk at a time, so memory stays small whatever the number of photos.
    """
    out = np.empty(len(first))
    for start in range(0, len(first), _PAIRS_PER_CHUNK):
        a, b = first[start:start + _PAIRS_PER_CHUNK], second[start:start + _PAIRS_PER_CHUNK]
        out[start:start + len(a)] = 1.0 - (unit64(rows, inv, a) * unit64(rows, inv, b)).sum(axis=1)
    return snap(out)


def distances_from_sums(sums: np.ndarray, size: np.ndarray, cluster: int, others: np.ndarray) -> np.ndarray:
    """Average cosine distance of cluster `cluster` to each of `others`, from the clusters' unit-vector sums.

    For unit vectors the mean of 1 - a.b over all member pairs is 1 - (sum A . sum B) / (|A| |B|). For two
    single photos this is exactly `paired_distances` (same products, same sum, division by 1).
    """
    dots = (sums[others] * sums[cluster]).sum(axis=1)
    return snap(1.0 - dots / (size[others] * size[cluster]))


def merged_distance(size_keep, distance_keep, size_gone, distance_gone):
    """Average linkage's update (Lance-Williams): the union's distance to a third cluster, scalars or arrays.

    Written as a step from one distance towards the other rather than scipy's (n1 d1 + n2 d2) / (n1 + n2): in
    floating point the result then always lies between the two (so a union is never closer than both parts,
    which the linkage relies on), and two equal distances give exactly that distance, so ties survive a merge.
    """
    return distance_keep + (distance_gone - distance_keep) * (size_gone / (size_keep + size_gone))
