"""photocluster.cluster: the partitions must be exactly scipy's average linkage + fcluster, by every path."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from photocluster.cluster import ZERO_DISTANCE, ClusterError, ClusterParams, IncrementalClusterer, cluster, cut_for_sim
from photocluster.cluster.search import similar_pairs

# Every path forced on small data: the approximate search (made exhaustive: every cell probed, so it must be
# exact), the sparse engine for every component of three or more, the dense engine for every component.
LARGE_PATH = ClusterParams(exact_search_max=0, dense_max=2, cells=6, nprobe=6, block=16)
SPARSE_ONLY = ClusterParams(dense_max=2, block=16)
DENSE_ONLY = ClusterParams(dense_min=0, block=16)
PATHS = {"default": ClusterParams(), "large": LARGE_PATH, "sparse": SPARSE_ONLY, "dense": DENSE_ONLY}


def scipy_partition(vectors: np.ndarray, cut: float) -> set[frozenset[int]]:
    """The reference: scipy on the usable rows; zero / non-finite rows are singletons; rounding zeros snapped."""
    x = np.asarray(vectors, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(x, axis=1)
    usable = np.flatnonzero(np.isfinite(norms) & (norms > 0))
    labels = {i: ("alone", i) for i in range(len(x))}
    if len(usable) >= 2:
        y = pdist(x[usable], "cosine")
        y[y < ZERO_DISTANCE] = 0.0
        flat = fcluster(linkage(y, method="average"), 1.0 - cut, criterion="distance")
        labels.update({int(i): ("flat", int(f)) for i, f in zip(usable, flat)})
    return partition_of(labels[i] for i in range(len(x)))


def partition_of(labels) -> set[frozenset[int]]:
    groups: dict = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def rule_partition(vectors, cut: float) -> set[frozenset[int]]:
    """The merge rule of photocluster.cluster written naively, over all pairs at once (no pair search, no graph,
    no components, no engines): while some pair of clusters is within t = 1 - cut, merge the closest; among equally
    close pairs the one with the lowest (first index, second index), a cluster having the index of its first row.

    The arithmetic is the documented one, step by step: rows normalised in float64; a pair's distance is
    1 - sum(products of the unit vectors); a distance within t is held, and after a merge the union's distance
    is d_keep + (d_gone - d_keep) * n_gone / (n_keep + n_gone), where a side that is not held is computed from the
    clusters' unit-vector sums as 1 - sum(products) / (n_a n_b); distances are clipped to [0, 2] and rounding
    zeros (< ZERO_DISTANCE) snapped to 0.
    """
    x = np.asarray(vectors, np.float32).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        norm = np.sqrt((x * x).sum(axis=1))
    usable = [i for i in range(len(x)) if np.isfinite(norm[i]) and norm[i] > 0]
    sums = {i: x[i] * (1.0 / norm[i]) for i in usable}
    size = {i: 1.0 for i in usable}
    members = {i: {i} for i in range(len(x))}
    t = 1.0 - cut

    def distance(a, b):
        d = min(max(1.0 - float((sums[a] * sums[b]).sum()) / (size[a] * size[b]), 0.0), 2.0)
        return 0.0 if d < ZERO_DISTANCE else d

    held = {(a, b): d for a in usable for b in usable if a < b and (d := distance(a, b)) <= t}
    while held:
        (keep, gone), _ = min(held.items(), key=lambda item: (item[1], item[0]))
        near_keep = {(set(pair) - {keep}).pop(): d for pair, d in held.items() if keep in pair}
        near_gone = {(set(pair) - {gone}).pop(): d for pair, d in held.items() if gone in pair}
        del near_keep[gone], near_gone[keep]
        merged = {}
        for k in near_keep.keys() | near_gone.keys():
            d_keep = near_keep[k] if k in near_keep else distance(keep, k)
            d_gone = near_gone[k] if k in near_gone else distance(gone, k)
            merged[k] = d_keep + (d_gone - d_keep) * (size[gone] / (size[keep] + size[gone]))
        held = {pair: d for pair, d in held.items() if keep not in pair and gone not in pair}
        held.update({(min(keep, k), max(keep, k)): d for k, d in merged.items() if d <= t})
        sums[keep] = sums[keep] + sums[gone]
        size[keep] += size.pop(gone)
        members[keep] |= members.pop(gone)
    return {frozenset(g) for g in members.values()}


def structured(seed: int, groups: int = 25, background: int = 120, dim: int = 48) -> np.ndarray:
    """Groups of 2-8 near copies in a non-negative background, as photo fingerprints look (ReLU features)."""
    rng = np.random.default_rng(seed)
    mean = np.abs(rng.standard_normal(dim)) * 0.6
    rows = [np.maximum(mean + rng.standard_normal((background, dim)), 0)]
    for _ in range(groups):
        centre = mean + rng.standard_normal(dim)
        noise = rng.uniform(0.1, 0.6)
        rows.append(np.maximum(centre + noise * rng.standard_normal((rng.integers(2, 9), dim)), 0))
    x = np.vstack(rows).astype(np.float32)
    return x[rng.permutation(len(x))]


def assert_same_clusters(vectors, cut, params):
    got = cluster(vectors, cut, params=params)
    assert partition_of(got) == scipy_partition(vectors, cut)
    return got


# --- exactness ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.75, 0.85, 0.92, 0.97])
def test_matches_scipy_on_structured_data(path, cut):
    x = structured(seed=int(cut * 100))
    labels = assert_same_clusters(x, cut, PATHS[path])
    if 0.6 <= cut <= 0.92:
        assert 1 < len(set(labels)) < len(x)  # the cut is one where the answer is not trivial


def test_signed_vectors_match_scipy():
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((12, 16))
    x = np.repeat(centres, 6, axis=0) + 0.4 * rng.standard_normal((72, 16))
    for cut in (-0.3, 0.0, 0.4, 0.8):
        for params in PATHS.values():
            assert_same_clusters(x, cut, params)


def test_approximate_search_reports_only_true_pairs():
    x = structured(seed=7, groups=40, background=200)
    inv = 1 / np.linalg.norm(x, axis=1).astype(np.float32)
    members = np.arange(len(x))
    exact = set(zip(*(a.tolist() for a in similar_pairs(x, inv, members, 0.8, ClusterParams()))))
    probed = ClusterParams(exact_search_max=0, cells=8, nprobe=2, block=32)
    approximate = set(zip(*(a.tolist() for a in similar_pairs(x, inv, members, 0.8, probed))))
    assert approximate <= exact
    assert len(approximate) >= 0.5 * len(exact) > 0
    exhaustive = ClusterParams(exact_search_max=0, cells=8, nprobe=8, block=32)
    assert set(zip(*(a.tolist() for a in similar_pairs(x, inv, members, 0.8, exhaustive)))) == exact


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 28),
    dim=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    cut=st.floats(-0.5, 1.0),
    zeros=st.integers(0, 2),
    path=st.sampled_from(sorted(PATHS)),
)
def test_property_without_ties_matches_scipy(n, dim, seed, cut, zeros, path):
    """Continuous random fingerprints (no two distances equal) and zero rows: exactly scipy's partition."""
    rng = np.random.default_rng(seed)
    x = np.vstack([rng.standard_normal((n, dim)), np.zeros((zeros, dim))]).astype(np.float32)
    labels = cluster(x, cut, params=PATHS[path])
    assert partition_of(labels) == scipy_partition(x, cut)
    if len(labels):  # numbered by first member: the first row is 0 and each new label is the next number
        first_seen = np.unique(labels, return_index=True)[1]
        assert labels[np.sort(first_seen)].tolist() == list(range(len(first_seen)))


@st.composite
def tie_heavy(draw, max_rows=24):
    """Small-integer fingerprints: duplicates, parallel rows, zero rows and many exactly equal distances."""
    n = draw(st.integers(0, max_rows))
    dim = draw(st.integers(1, 4))
    values = draw(st.sampled_from([(0, 1), (0, 1, 2), (-1, 0, 1), (-2, -1, 0, 1, 2)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.choice(values, (n, dim)).astype(np.float32)
    x *= rng.choice([1, 1, 1, 2, 4], (n, 1)).astype(np.float32)  # parallel: the same unit vector, bit for bit
    cut = draw(st.sampled_from([1.0, 0.95, 0.9, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.2, 0.0, -0.3]) | st.floats(-0.5, 1.0))
    return x, cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tie_heavy())
def test_property_ties_break_by_the_one_rule_on_every_path(case):
    x, cut = case
    expected = rule_partition(x, cut)
    for name, params in PATHS.items():
        assert partition_of(cluster(x, cut, params=params)) == expected, name


def test_ties_break_by_row_order_where_scipy_follows_its_chain():
    # B is as close to A as to C (cos 0.75, exactly the same float), A and C are far apart, and D is far from all
    # but nearest to C. At cut 0.7 (distance 0.3) one tied pair merges and the third photo stays apart.
    c, s = 0.75, math.sqrt(1 - 0.75 ** 2)
    d_, a, b, c_ = [0.0, 1.0, 1.0], [c, -s, 0.0], [1.0, 0.0, 0.0], [c, s, 0.0]
    x = np.array([d_, a, b, c_])
    D, A, B, C = range(4)
    # scipy's chain starts at D, walks to its nearest C, from C to B, and at B prefers the chain's previous
    # photo C among the tied A and C:
    assert scipy_partition(x, 0.7) == {frozenset({B, C}), frozenset({A}), frozenset({D})}
    # the rule takes the tied pair with the lowest indexes, (A, B), on every path:
    for params in PATHS.values():
        assert partition_of(cluster(x, 0.7, params=params)) == {frozenset({A, B}), frozenset({C}), frozenset({D})}
    # and it follows the rows: with C listed before A, (B, C) is the lower pair
    assert partition_of(cluster(x[[D, C, B, A]], 0.7)) == {frozenset({1, 2}), frozenset({3}), frozenset({0})}


# --- the ends of the scale and awkward input ------------------------------------------------------------------


def test_cut_zero_is_one_cluster_for_non_negative_fingerprints():
    x = structured(seed=1)
    assert set(cluster(x, 0.0)) == {0}
    assert set(cluster(x, -0.4)) == {0}


def test_cut_one_groups_only_identical_photos():
    x = structured(seed=2)
    x = np.vstack([x, x[:5], 3 * x[5:6]])  # copies and a scaled copy (cosine 1 as well)
    x[10, 0] += 1e-3  # a near copy is not identical
    labels = cluster(x, 1.0)
    n = len(x) - 6
    expected = {frozenset({i, n + i}) for i in range(5)} | {frozenset({5, n + 5})}
    assert {g for g in partition_of(labels) if len(g) > 1} == expected


def test_zero_and_non_finite_rows_are_singletons(caplog):
    x = np.vstack([np.ones((3, 4)), np.zeros((2, 4)), [[np.nan, 1, 1, 1]], [[np.inf, 0, 0, 0]]])
    with caplog.at_level(logging.WARNING, logger="photocluster.cluster"):
        labels = cluster(x, 0.5)
    assert labels.tolist() == [0, 0, 0, 1, 2, 3, 4]
    assert "4 of 7 fingerprints are zero or not finite" in caplog.text


@pytest.mark.parametrize("rows", [0, 1])
def test_tiny_inputs(rows):
    assert cluster(np.ones((rows, 8), np.float32), 0.5).tolist() == [0] * rows


def test_all_zero_input():
    assert cluster(np.zeros((4, 3)), 0.5).tolist() == [0, 1, 2, 3]


def test_min_size_labels_small_clusters_minus_one():
    x = np.array([[1, 0], [0, 1], [1, 0.01], [0.01, 1], [-1, 0.2]], np.float32)
    assert cluster(x, 0.9).tolist() == [0, 1, 0, 1, 2]
    assert cluster(x, 0.9, min_size=2).tolist() == [0, 1, 0, 1, -1]
    assert cluster(x, 0.9, min_size=3).tolist() == [-1] * 5


def test_float16_fingerprints_cluster_as_their_exact_values():
    # The cache stores float16. Values of a few hundred square to more than float16 holds (65504), so any float16
    # arithmetic on them would overflow; the answer must be scipy's on the float16 values themselves.
    x16 = (structured(seed=4) * 300).astype(np.float16)
    assert np.isfinite(x16).all() and np.square(x16.astype(np.float32)).max() > 65504
    labels = cluster(x16, 0.8)
    assert partition_of(labels) == scipy_partition(x16.astype(np.float64), 0.8)
    assert 1 < len(set(labels)) < len(x16)


def test_tiny_and_huge_norms_keep_their_pairs():
    # norms of 1e-24 (whose float32 squares underflow to 0), 1e-40 (subnormal in float32: 1/norm overflows) and
    # 1e30 (whose float32 squares overflow)
    direction = np.array([[3.0, 4.0, 0.0], [3.0, 4.1, 0.0], [0.0, 0.0, 1.0]])
    for scale in (1e-24, 1e-40, 1e30):
        x = (direction * scale).astype(np.float32)
        assert partition_of(cluster(x, 0.9)) == {frozenset({0, 1}), frozenset({2})}
        inc = IncrementalClusterer(0.9)
        inc.update({"a": x[0], "b": x[1], "c": x[2]})
        assert inc.clusters() == [["a", "b"], ["c"]]


@pytest.mark.parametrize("bad", [np.ones(5), np.ones((2, 2, 2)), np.array([["a", "b"]])])
def test_bad_arrays_are_refused_in_one_line(bad):
    with pytest.raises(ValueError, match="fingerprints must be"):
        cluster(bad, 0.5)


@pytest.mark.parametrize("cut", [math.nan, math.inf, "0.5", None, True])
def test_bad_cuts_are_refused(cut):
    with pytest.raises(ValueError, match="cut must be"):
        cluster(np.ones((2, 2)), cut)


def test_giant_component_is_reported_and_still_exact(caplog):
    # a chain of photos, each similar to the next: one component, many clusters
    rng = np.random.default_rng(5)
    steps = np.cumsum(0.35 * rng.standard_normal((60, 24)), axis=0) + 3.0
    with caplog.at_level(logging.WARNING, logger="photocluster.cluster"):
        assert_same_clusters(steps, 0.95, ClusterParams(dense_max=20))
    assert "1 group(s) of linked photos exceed the dense limit of 20 (the largest: 60 photos" in caplog.text


def test_too_coarse_a_cut_for_a_big_set_is_refused_in_one_line():
    x = np.random.default_rng(6).standard_normal((80, 8))
    with pytest.raises(ClusterError, match="links more than 100 pairs of the 80 photos"):
        cluster(x, -0.5, params=ClusterParams(max_edges=100, dense_max=50))
    # small enough for one dense linkage: done that way instead, exactly
    labels = cluster(x, -0.5, params=ClusterParams(max_edges=100, dense_max=80))
    assert partition_of(labels) == scipy_partition(x, -0.5)


# --- incremental ----------------------------------------------------------------------------------------------


def paths_of(n):
    return [f"album/{i:04d}.jpg" for i in range(n)]


def assert_matches_scratch(inc: IncrementalClusterer, vectors: dict[str, np.ndarray], params):
    paths = sorted(vectors)
    x = np.array([vectors[p] for p in paths])
    expected = cluster(x, inc.cut, params=params)
    assert inc.labels(paths).tolist() == expected.tolist()
    assignment = inc.assignment()
    for group in partition_of(expected):
        names = sorted(paths[i] for i in group)
        assert {assignment[p] for p in names} == {names[0]}  # the representative is the smallest path


@pytest.mark.parametrize("path", sorted(PATHS))
def test_incremental_equals_from_scratch(path):
    params = PATHS[path]
    x = structured(seed=8, groups=40, background=200)
    names = paths_of(len(x))
    rng = np.random.default_rng(9)
    order = rng.permutation(len(x))
    inc = IncrementalClusterer(0.8, params)
    current: dict[str, np.ndarray] = {}
    start = order[:300]  # a bulk start (rebuilds the graph), then small changes (only touched components)
    inc.update({names[i]: x[i] for i in start})
    current.update({names[i]: x[i] for i in start})
    assert_matches_scratch(inc, current, params)
    rest = list(order[300:])
    for step in range(12):
        added = {names[i]: x[i] for i in rest[step * 4:(step + 1) * 4]}
        removed = set(rng.choice(sorted(current), 3, replace=False).tolist())
        changed = {p: x[rng.integers(len(x))] for p in rng.choice(sorted(set(current) - removed), 1).tolist()}
        result = inc.update({**added, **changed}, removed)
        for p in removed:
            current.pop(p)
        current.update(added)
        current.update(changed)
        assert set(result) >= set(added) | set(changed)
        assert not set(result) & removed
        assert_matches_scratch(inc, current, params)
    assert len(inc) == len(current)


class EagerRebuild(IncrementalClusterer):
    BULK_MIN = 0  # any update adding more than a quarter of the photos searches everything again


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tie_heavy(max_rows=20), data=st.data())
def test_property_incremental_equals_batch_whatever_the_history(case, data):
    """Random arrivals, changes and removals in random batches; the end state must be cluster()'s answer for the
    photos then present, in sorted path order."""
    x, cut = case
    names = [f"album/{i:02d}.jpg" for i in range(len(x) + 3)]
    kind = data.draw(st.sampled_from([IncrementalClusterer, EagerRebuild]))
    inc = kind(cut, PATHS[data.draw(st.sampled_from(sorted(PATHS)))])
    current: dict[str, np.ndarray] = {}
    for _ in range(data.draw(st.integers(1, 6)) if len(x) else 0):
        batch = data.draw(st.lists(st.tuples(st.sampled_from(names), st.integers(0, len(x) - 1)), max_size=8))
        added = {name: x[row] for name, row in batch}
        removed = data.draw(st.sets(st.sampled_from(sorted(current)), max_size=3)) if current else set()
        inc.update(added, removed)
        for name in removed:
            current.pop(name)
        current.update(added)
    paths = sorted(current)
    expected = cluster(np.array([current[p] for p in paths]).reshape(len(paths), x.shape[1]), cut)
    assert inc.labels(paths).tolist() == expected.tolist()


def test_incremental_never_uses_the_approximate_search():
    # Parameters whose approximate search misses pairs here: the clusterer must still give the exact answer,
    # after a bulk start and after single arrivals alike, so its answer never depends on the path taken.
    x = structured(seed=7, groups=40, background=200)
    poor = ClusterParams(exact_search_max=0, cells=16, nprobe=1, block=32)
    exact = cluster(x, 0.8)
    assert partition_of(cluster(x, 0.8, params=poor)) != partition_of(exact)  # it does miss pairs
    names = paths_of(len(x))
    for kind in (IncrementalClusterer, EagerRebuild):
        inc = kind(0.8, poor)
        inc.update(dict(zip(names[:300], x[:300])))
        for name, row in zip(names[300:], x[300:]):
            inc.update({name: row})
        assert inc.labels(names).tolist() == exact.tolist()


def test_incremental_removal_splits_a_component():
    # a - b - c: cos(a, b) 0.91, cos(b, c) 0.95, cos(a, c) 0.74; at 0.9, a and c are linked only through b
    a, b, c = np.array([1.0, 0.0]), np.array([1.0, 0.45]), np.array([1.0, 0.9])
    inc = IncrementalClusterer(0.9)
    inc.update({"a": a, "b": b, "c": c})
    assert inc.clusters() == [["a"], ["b", "c"]]
    changed = inc.update(removed={"b"})
    assert changed == {"a": "a", "c": "c"}
    assert inc.clusters() == [["a"], ["c"]]
    assert inc.update({"b2": b}) == {"a": "a", "b2": "b2", "c": "b2"}
    assert inc.clusters() == [["a"], ["b2", "c"]]


def test_incremental_only_reclusters_touched_components():
    x = structured(seed=10, groups=30, background=150)
    names = paths_of(len(x))
    inc = IncrementalClusterer(0.8)
    inc.update(dict(zip(names, x)))
    before = inc.assignment()
    changed = inc.update({"new.jpg": x[0] * 1.01})
    assert "new.jpg" in changed and names[0] in changed
    assert len(changed) < 20  # its component only, not the library
    after = inc.assignment()
    assert {p: r for p, r in after.items() if p not in changed} == {p: r for p, r in before.items() if p not in changed}


def test_incremental_zero_fingerprints_and_cut_zero():
    inc = IncrementalClusterer(0.0)
    inc.update({"a": [1.0, 2.0], "b": [3.0, 0.0], "z": [0.0, 0.0]})
    assert inc.clusters() == [["a", "b"], ["z"]]
    inc.update({"c": [0.0, 5.0]})
    assert inc.clusters() == [["a", "b", "c"], ["z"]]


def test_incremental_bad_input_changes_nothing():
    inc = IncrementalClusterer(0.5)
    inc.update({"a": [1.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="has 2 numbers, expected 3"):
        inc.update({"b": [1.0, 0.0]}, removed={"a"})
    with pytest.raises(ValueError, match="not an array of numbers"):
        inc.update({"b": ["x", object()]})
    assert inc.clusters() == [["a"]]
    with pytest.raises(ValueError, match="every known photo exactly once"):
        inc.labels(["a", "a"])


# --- cut_for_sim ----------------------------------------------------------------------------------------------


TABLE = ((0.0, 0.0), (0.5, 0.82), (1.0, 1.0))


def test_cut_for_sim_interpolates_the_table():
    assert cut_for_sim(TABLE, 0.0) == 0.0
    assert cut_for_sim(TABLE, 0.5) == pytest.approx(0.82)
    assert cut_for_sim(TABLE, 1.0) == 1.0
    assert cut_for_sim(TABLE, 0.25) == pytest.approx(0.41)
    assert cut_for_sim(TABLE, 0.75) == pytest.approx(0.91)
    assert cut_for_sim([(0.5, 0.82)], 0.25) == pytest.approx(0.41)  # ends anchored at (0, 0) and (1, 1)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 0.99))
def test_cut_for_sim_is_monotone(s1, s2, c):
    low, high = sorted((s1, s2))
    table = ((0.0, 0.0), (0.5, c), (1.0, 1.0))
    assert 0.0 <= cut_for_sim(table, low) <= cut_for_sim(table, high) <= 1.0


@pytest.mark.parametrize("sim", [-0.01, 1.01, math.nan, "0.5", None])
def test_cut_for_sim_refuses_sims_outside_0_to_1(sim):
    with pytest.raises(ValueError, match="sim must be a number from 0 to 1"):
        cut_for_sim(TABLE, sim)


@pytest.mark.parametrize("table", [((0.0, 0.0), (0.5, 0.9), (0.7, 0.8), (1.0, 1.0)), ((0.5, 0.8), (0.5, 0.9))])
def test_cut_for_sim_refuses_a_falling_table(table):
    with pytest.raises(ValueError, match="not monotone"):
        cut_for_sim(table, 0.6)


def test_cut_for_sim_refuses_a_malformed_table():
    with pytest.raises(ValueError, match="not a list of"):
        cut_for_sim([(0.5,)], 0.6)


# --- nearest: the search behind `photocluster similar` ---------------------------------------------------------

def test_nearest_gives_the_k_best_cosines_best_first_as_a_full_sort_does():
    from photocluster.cluster.search import nearest

    rng = np.random.default_rng(5)
    rows = rng.random((3000, 24)).astype(np.float16)
    query = rng.random(24)
    unit = rows.astype(np.float64) / np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)
    cosines = unit @ (query / np.linalg.norm(query))
    expected = np.argsort(-cosines, kind="stable")[:7]
    found, scores = nearest(rows, query, 7)
    assert found.tolist() == expected.tolist()
    assert np.allclose(scores, cosines[expected], rtol=0, atol=1e-12)


def test_nearest_skips_zero_and_non_finite_rows_and_breaks_ties_by_row():
    from photocluster.cluster.search import nearest

    rows = np.array([[0, 0], [1, 1], [np.nan, 1], [2, 2], [1, 0], [4, 4]], np.float32)  # powers of 2: equal bits
    found, scores = nearest(rows, np.array([1.0, 1.0]), 10)
    assert found.tolist() == [1, 3, 5, 4]  # three cosines of exactly 1 in row order, then the 45-degree one
    assert np.allclose(scores, [1, 1, 1, np.sqrt(0.5)])
    assert nearest(rows, np.array([1.0, 1.0]), 2)[0].tolist() == [1, 3]
    assert len(nearest(rows, np.zeros(2), 3)[0]) == 0
