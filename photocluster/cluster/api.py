"""The public entry points: `cluster()` for a set of fingerprints, `cut_for_sim()` for a model's cut."""
from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence

import numpy as np

from . import search
from .core import GRAPH_MARGIN, ROWS_PER_CHUNK, ClusterError, ClusterParams, TooManyEdges, inverse_norms, snap, unit64
from .dense import dense_merges
from .linkage import cluster_pairs, split_by

log = logging.getLogger(__name__)


def cluster(vectors: np.ndarray, cut: float, min_size: int = 1, params: ClusterParams | None = None) -> np.ndarray:
    """Label each row of `vectors` (n, dim) with its cluster at cosine-similarity `cut`.

    Labels are 0, 1, ... numbered by each cluster's first row, so the same input always gives the same labels.
    Rows in clusters smaller than `min_size` get -1. Ties between equally close clusters break by row order
    (see the package docstring).
    """
    params = params or ClusterParams()
    rows = as_rows(vectors)
    cut = check_cut(cut)
    inv = inverse_norms(rows)
    usable = np.flatnonzero(inv > 0)
    groups = _cluster_usable(rows, inv, usable, cut, params)
    return number_groups(groups, len(rows), min_size)


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
# Input checks and numbering


def as_rows(vectors) -> np.ndarray:
    """float32 C-ordered rows; no copy when `vectors` already is that."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"fingerprints must be a 2-D array (photos x features), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"fingerprints must be numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def check_cut(cut) -> float:
    if isinstance(cut, bool) or not isinstance(cut, (int, float, np.floating, np.integer)) or not math.isfinite(cut):
        raise ValueError(f"cut must be a finite cosine similarity, got {cut!r}")
    return float(cut)


def number_groups(groups: list[np.ndarray], n: int, min_size: int) -> np.ndarray:
    """Labels from groups of row indices (rows in no group are singletons), numbered by first row."""
    first = np.arange(n)
    for group in groups:
        first[group] = group.min()
    return labels_from_first(first, min_size)


def labels_from_first(first: np.ndarray, min_size: int) -> np.ndarray:
    """`first[i]`: the smallest row of i's cluster. Labels count clusters in order of that row."""
    if len(first) == 0:
        return np.zeros(0, np.intp)
    _, labels, sizes = np.unique(first, return_inverse=True, return_counts=True)
    keep = sizes >= min_size
    renumber = np.where(keep, np.cumsum(keep) - 1, -1)
    return renumber[labels].astype(np.intp)


def all_non_negative(rows: np.ndarray, usable: np.ndarray) -> bool:
    return all(rows[usable[s:s + ROWS_PER_CHUNK]].min() >= 0 for s in range(0, len(usable), ROWS_PER_CHUNK))


# ---------------------------------------------------------------------------------------------------------------
# Clustering the usable (non-zero, finite) rows


def _cluster_usable(rows, inv, usable, cut, params) -> list[np.ndarray]:
    """Clusters of the rows `usable` (row indices) with two or more members; the rest are singletons."""
    if len(usable) < 2:
        return []
    if cut <= 0 and all_non_negative(rows, usable):
        # Non-negative fingerprints (ReLU features) have cosine >= 0 >= cut for every pair, so every average is
        # within the cut and all photos form one cluster; no search needed.
        return [usable]
    try:
        first, second = search.similar_pairs(rows, inv, usable, cut - GRAPH_MARGIN, params)
    except TooManyEdges:
        if len(usable) <= params.dense_max:
            log.info("cut %.3f joins most of the %d photos; clustering them all in one piece", cut, len(usable))
            return _cluster_all_at_once(rows, inv, usable, 1.0 - cut)
        raise ClusterError(
            f"cut {cut:.3f} links more than {params.max_edges:,} pairs of the {len(usable):,} photos; "
            "average linkage that coarse needs the full distance matrix: use a higher sim") from None
    return cluster_pairs(rows, inv, usable, first, second, 1.0 - cut, params)


def _cluster_all_at_once(rows, inv, members, t) -> list[np.ndarray]:
    """The dense engine on all `members` with a full distance matrix (too many pairs to list them).

    The matrix comes from one BLAS product, whose last bit can differ from the pair-by-pair distances of the
    other paths; only the choice between two merges less than ~1e-16 apart can differ.
    """
    unit = unit64(rows, inv, members)
    matrix = snap(1.0 - unit @ unit.T)
    matrix[matrix > t] = np.inf
    roots = dense_merges(unit, None, None, None, t, matrix=matrix)
    return split_by(members, roots)
