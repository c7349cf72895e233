"""photocluster.cluster.timemix: average linkage on (1 - alpha) * cosine distance + alpha * time distance."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from photocluster.cluster import ZERO_DISTANCE, ClusterError, ClusterParams, cluster, cluster_with_time

from .test_cluster import partition_of, structured

DAY = 86400.0  # the documented span: a time difference counts as |t_i - t_j| / DAY, and as 1 from a day on
YEAR, MINUTE = 365 * DAY, 60.0
# The default path, a blocked pair search, and the approximate search made exhaustive (every cell probed).
PATHS = {"default": ClusterParams(), "blocked": ClusterParams(block=4),
         "approximate": ClusterParams(exact_search_max=0, cells=4, nprobe=4, block=4)}


def mixed_condensed(x: np.ndarray, seconds: np.ndarray, alpha: float) -> np.ndarray:
    """The definition, over all pairs: scipy's cosine distance, and where both times are known
    (1 - alpha) * that + alpha * min(|dt| / DAY, 1)."""
    content = pdist(np.asarray(x, np.float64), "cosine")
    content[content < ZERO_DISTANCE] = 0.0
    i, j = np.triu_indices(len(x), 1)
    mixed = content.copy()
    dated = np.isfinite(seconds[i]) & np.isfinite(seconds[j])
    time = np.minimum(np.abs(seconds[i][dated] - seconds[j][dated]) / DAY, 1.0)
    mixed[dated] = (1 - alpha) * content[dated] + alpha * time
    return mixed


def scipy_mixed_partition(x, seconds, cut, alpha, check_margin=False) -> set[frozenset[int]]:
    """scipy's average linkage + fcluster on the mixed distances of the non-zero rows; zero rows are singletons."""
    usable = np.flatnonzero(np.linalg.norm(x, axis=1) > 0)
    labels = {i: ("alone", i) for i in range(len(x))}
    if len(usable) >= 2:
        tree = linkage(mixed_condensed(x[usable], seconds[usable], alpha), method="average")
        if check_margin:  # a merge within rounding of the cut could go either way
            assume(np.all(np.abs(tree[:, 2] - (1 - cut)) > 1e-9))
        flat = fcluster(tree, 1 - cut, criterion="distance")
        labels.update({int(i): ("flat", int(f)) for i, f in zip(usable, flat)})
    return partition_of(labels[i] for i in range(len(x)))


def assert_numbered_by_first_row(labels):
    first_seen = np.unique(labels[labels >= 0], return_index=True)[1]
    assert labels[labels >= 0][np.sort(first_seen)].tolist() == list(range(len(first_seen)))


@st.composite
def timed_photos(draw):
    """Continuous random fingerprints, a few zero rows, times over minutes to months, some unknown. No ties: at
    least two dimensions (one-dimensional fingerprints have cosine distances of 0 or 2 only)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, dim, zeros = draw(st.integers(0, 16)), draw(st.integers(2, 6)), draw(st.integers(0, 2))
    x = np.vstack([rng.standard_normal((n, dim)), np.zeros((zeros, dim))]).astype(np.float32)
    x = x[rng.permutation(len(x))]
    spread = draw(st.sampled_from([10 * MINUTE, DAY, 30 * DAY]))
    seconds = 1.6e9 + rng.uniform(0, spread, len(x))
    seconds[rng.random(len(x)) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = np.nan
    return x, seconds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=timed_photos(), cut=st.floats(-0.5, 1.0), alpha=st.floats(0.0, 0.95), path=st.sampled_from(sorted(PATHS)))
def test_property_without_ties_matches_scipy_on_the_mixed_distances(case, cut, alpha, path):
    x, seconds = case
    expected = scipy_mixed_partition(x, seconds, cut, alpha, check_margin=True)
    labels = cluster_with_time(x, seconds, cut, alpha, params=PATHS[path])
    assert partition_of(labels) == expected
    assert_numbered_by_first_row(labels)


def rule_partition(x, seconds, cut, alpha) -> set[frozenset[int]]:
    """The package's merge rule written naively on the full matrix of mixed distances: while two clusters are within
    t = 1 - cut, merge the closest, among equally close ones the pair with the lowest (first row, first row); the
    union's distance to a third is d_keep + (d_gone - d_keep) * n_gone / (n_keep + n_gone)."""
    x = np.asarray(x, np.float64)
    norm = np.sqrt((x * x).sum(axis=1))
    usable = [i for i in range(len(x)) if norm[i] > 0]
    unit = {i: x[i] * (1.0 / norm[i]) for i in usable}
    size = {i: 1.0 for i in usable}
    members = {i: {i} for i in range(len(x))}

    def mixed(a, b):
        content = min(max(1.0 - float((unit[a] * unit[b]).sum()), 0.0), 2.0)
        content = 0.0 if content < ZERO_DISTANCE else content
        if math.isnan(seconds[a]) or math.isnan(seconds[b]):
            return content
        return (1 - alpha) * content + alpha * min(abs(seconds[a] - seconds[b]) / DAY, 1.0)

    distance = {(a, b): mixed(a, b) for a in usable for b in usable if a < b}
    while distance:
        (keep, gone), d = min(distance.items(), key=lambda item: (item[1], item[0]))
        if d > 1 - cut:
            break
        for k in size:
            if k not in (keep, gone):
                to_keep, to_gone = distance[min(keep, k), max(keep, k)], distance[min(gone, k), max(gone, k)]
                weight = size[gone] / (size[keep] + size[gone])
                distance[min(keep, k), max(keep, k)] = to_keep + (to_gone - to_keep) * weight
        distance = {pair: d for pair, d in distance.items() if gone not in pair}
        size[keep] += size.pop(gone)
        members[keep] |= members.pop(gone)
    return {frozenset(g) for g in members.values()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signs=st.lists(st.sampled_from([-2.0, -1.0, 0.0, 1.0, 3.0]), max_size=14), data=st.data(),
       cut=st.sampled_from([-0.2, 0.0, 0.3, 0.5, 0.8, 1.0]), alpha=st.sampled_from([0.1, 0.25, 0.5, 0.75]))
def test_property_ties_break_by_the_one_rule(signs, data, cut, alpha):
    """One-dimensional fingerprints (cosine distance 0 or 2) and whole-minute times, many repeated: nearly every
    distance is tied with another, and the clusters are those of the merge rule, tie-break included."""
    x = np.array(signs, np.float32).reshape(-1, 1)
    minutes = data.draw(st.lists(st.sampled_from([math.nan, 0, 1, 2, 5, 60, 1440, 2880]), min_size=len(x),
                                 max_size=len(x)))
    seconds = np.array(minutes, np.float64) * MINUTE
    labels = cluster_with_time(x, seconds, cut, alpha)
    assert partition_of(labels) == rule_partition(x, seconds, cut, alpha)


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("cut", [0.6, 0.8, 0.9])
def test_structured_photos_with_bursts_match_scipy(cut, alpha):
    """Groups of near copies in a background, the photos spread over ten days with bursts and undated ones: many
    components, some joined only through time."""
    x = structured(seed=int(cut * 10 + alpha * 100), groups=12, background=50, dim=24)
    rng = np.random.default_rng(1)
    seconds = 1.6e9 + rng.choice(10, len(x)) * DAY + rng.uniform(0, 2 * 3600, len(x))  # ten two-hour events
    seconds[rng.random(len(x)) < 0.15] = np.nan
    labels = cluster_with_time(x, seconds, cut, alpha)
    assert partition_of(labels) == scipy_mixed_partition(x, seconds, cut, alpha)
    assert 1 < len(set(labels.tolist())) < len(x)  # not a trivial answer
    assert partition_of(labels) != partition_of(cluster(x, cut))  # time made a difference


def test_time_weight_zero_is_cluster_exactly():
    """alpha = 0 is the cosine clustering itself, on its own engines: components over dense_max (here 2, which time
    mixing would refuse) are clustered as cluster() does, labels and min_size included."""
    x = structured(seed=5, groups=10, background=40)
    seconds = np.arange(len(x)) * 10.0
    small = ClusterParams(dense_max=2, block=16)
    for cut in (0.6, 0.85):
        for min_size in (1, 3):
            expected = cluster(x, cut, min_size, params=small)
            assert np.array_equal(cluster_with_time(x, seconds, cut, 0.0, min_size, params=small), expected)
    with pytest.raises(ClusterError):
        cluster_with_time(x, seconds, 0.6, 0.01, params=small)  # the same set with a little time: refused


@pytest.mark.parametrize("unknown", [math.nan, math.inf, -math.inf])
def test_undated_photos_are_judged_on_content_alone(unknown):
    x = structured(seed=9, groups=10, background=40)
    undated = np.full(len(x), unknown)
    for cut in (0.6, 0.85):
        assert np.array_equal(cluster_with_time(x, undated, cut, 0.5), cluster(x, cut))


def two_photos(cosine: float) -> np.ndarray:
    return np.array([[1.0, 0.0], [cosine, math.sqrt(1 - cosine**2)]], np.float32)


@pytest.mark.parametrize("unknown", [math.nan, math.inf, -math.inf])
def test_a_pair_with_one_undated_photo_neither_gains_nor_pays_for_time(unknown):
    # identical copies: at alpha 0.9 a year apart they would split (d = 0.9), undated they stay together (d = 0)
    assert cluster_with_time(two_photos(1.0), np.array([0.0, unknown]), 0.5, 0.9).tolist() == [0, 0]
    # cosine 0.4 (d = 0.6 > t = 0.5): a minute apart they would join (d = 0.5 * 0.6 + ~0 = 0.3); undated they do not
    assert cluster_with_time(two_photos(0.4), np.array([unknown, MINUTE]), 0.5, 0.5).tolist() == [0, 1]
    assert cluster_with_time(two_photos(0.4), np.array([0.0, MINUTE]), 0.5, 0.5).tolist() == [0, 0]


def test_identical_photos_a_year_apart_split_at_a_high_time_weight_and_a_minute_apart_group():
    copies = two_photos(1.0)
    # d = 0.8 * min(1 year / 1 day, 1) = 0.8 > t = 0.5
    assert cluster_with_time(copies, np.array([0.0, YEAR]), 0.5, 0.8).tolist() == [0, 1]
    # d = 0.8 * 60 / 86400 < 0.001: together (imagecluster's max-normalised time would make this 0.8 too)
    assert cluster_with_time(copies, np.array([0.0, MINUTE]), 0.5, 0.8).tolist() == [0, 0]
    # a low weight only adds its full penalty: d = 0.2 <= 0.5, so copies a year apart still group
    assert cluster_with_time(copies, np.array([0.0, YEAR]), 0.5, 0.2).tolist() == [0, 0]


def test_photos_far_below_the_cut_group_when_taken_close_together():
    """The events use: cosine 0.3 (d_content 0.7) at cut 0.7 (t 0.3) joins only through time, so the pair search
    must look far below the cut: d = 0.6 * 0.7 + 0.4 * 600 / 86400 = 0.4228 > 0.3 at alpha 0.4, and at alpha 0.6
    d = 0.4 * 0.7 + 0.6 * 600 / 86400 = 0.2842 <= 0.3."""
    x, seconds = two_photos(0.3), np.array([0.0, 600.0])
    assert cluster(x, 0.7).tolist() == [0, 1]
    assert cluster_with_time(x, seconds, 0.7, 0.4).tolist() == [0, 1]
    assert cluster_with_time(x, seconds, 0.7, 0.6).tolist() == [0, 0]


def test_a_component_over_dense_max_is_refused_in_one_line():
    rng = np.random.default_rng(2)
    burst = (np.ones((5, 8)) + 0.01 * rng.standard_normal((5, 8))).astype(np.float32)  # five near copies
    seconds = np.arange(5.0)
    params = ClusterParams(dense_max=4)
    with pytest.raises(ClusterError) as info:
        cluster_with_time(burst, seconds, 0.9, 0.3, params=params)
    message = str(info.value)
    assert "\n" not in message and "5 photos" in message and "lower time_weight or raise sim" in message
    assert cluster_with_time(burst[:4], seconds[:4], 0.9, 0.3, params=params).tolist() == [0, 0, 0, 0]


def test_too_many_pairs_clusters_all_at_once_or_is_refused():
    x = structured(seed=3, groups=6, background=20)
    rng = np.random.default_rng(4)
    seconds = rng.uniform(0, 3 * DAY, len(x))
    few_pairs = ClusterParams(max_edges=10)
    labels = cluster_with_time(x, seconds, 0.8, 0.3, params=few_pairs)  # all in one dense matrix: still exact
    assert partition_of(labels) == scipy_mixed_partition(x, seconds, 0.8, 0.3)
    with pytest.raises(ClusterError, match="lower time_weight or raise sim"):
        cluster_with_time(x, seconds, 0.8, 0.3, params=ClusterParams(max_edges=10, dense_max=len(x) - 1))


def test_cut_zero_is_one_cluster_for_non_negative_fingerprints():
    """Every content and time distance is at most 1 = t: one cluster, however many photos (no matrix needed)."""
    x = structured(seed=6, groups=3, background=10)
    seconds = np.linspace(0, YEAR, len(x))
    assert set(cluster_with_time(x, seconds, 0.0, 0.9, params=ClusterParams(dense_max=4)).tolist()) == {0}


def test_min_size_and_zero_rows():
    x = np.vstack([two_photos(1.0), np.zeros((1, 2)), two_photos(0.0)[1:]]).astype(np.float32)
    seconds = np.array([0.0, 1.0, 2.0, 3.0])
    assert cluster_with_time(x, seconds, 0.9, 0.5).tolist() == [0, 0, 1, 2]
    assert cluster_with_time(x, seconds, 0.9, 0.5, min_size=2).tolist() == [0, 0, -1, -1]


@pytest.mark.parametrize("alpha", [1.0, -0.1, 1.5, math.nan, math.inf, True, "0.3", None])
def test_bad_time_weights_are_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        cluster_with_time(two_photos(1.0), np.zeros(2), 0.5, alpha)


@pytest.mark.parametrize("seconds", [np.zeros(3), np.zeros((2, 1)), np.zeros(1)])
def test_one_time_per_photo(seconds):
    with pytest.raises(ValueError, match="one capture time per photo"):
        cluster_with_time(two_photos(1.0), seconds, 0.5, 0.3)
