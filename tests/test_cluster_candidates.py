"""cluster.BandNeighbours: each photo's k nearest photos with floor <= cosine < cut, kept current."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from photocluster.cluster import BandNeighbours


def brute_force_pairs(vectors: dict[str, np.ndarray], floor: float, cut: float, k: int) -> set[tuple[str, str]]:
    """The definition, spelled out: every photo's k highest cosines in [floor, cut), in float64."""
    paths = sorted(vectors)
    unit = {p: vectors[p] / np.linalg.norm(vectors[p]) for p in paths}
    found = set()
    for p in paths:
        sims = [(float(unit[p] @ unit[q]), q) for q in paths if q != p]
        in_band = sorted((s, q) for s, q in sims if floor <= s < cut)[::-1][:k]
        found |= {tuple(sorted((p, q))) for _, q in in_band}
    return found


def random_vectors(rng, n: int, dim: int = 8) -> dict[str, np.ndarray]:
    # a shared direction plus noise spreads the cosines over the whole band
    base = rng.normal(size=dim)
    return {f"p{i:03d}": base + rng.normal(scale=1.2, size=dim) for i in range(n)}


@pytest.mark.parametrize("k", [1, 3, 50])
def test_the_pairs_are_each_photos_k_nearest_in_the_band(k):
    vectors = random_vectors(np.random.default_rng(k), 60)
    neighbours = BandNeighbours(floor=0.3, cut=0.8, k=k)
    neighbours.update(vectors)
    assert set(neighbours.pairs()) == brute_force_pairs(vectors, 0.3, 0.8, k)
    assert set(neighbours.pairs())  # the band is not empty for this input


def test_pairs_at_or_above_the_cut_and_below_the_floor_are_no_candidates():
    a = np.array([1.0, 0.0])
    vectors = {"copy": a * 2, "orig": a,  # cosine 1: at the cut, linked by clustering, no candidate
               "near": np.array([np.cos(0.5), np.sin(0.5)]),  # cosine 0.878 with both: in the band
               "far": np.array([0.0, 1.0])}  # cosine 0 with a, 0.479 with near: below the floor
    neighbours = BandNeighbours(floor=0.5, cut=0.95, k=10)
    neighbours.update(vectors)
    assert set(neighbours.pairs()) == {("copy", "near"), ("near", "orig")}


def test_a_zero_fingerprint_has_no_neighbours_even_with_a_floor_below_zero():
    neighbours = BandNeighbours(floor=-1.0, cut=0.99, k=5)
    neighbours.update({"zero": np.zeros(3), "a": np.array([1.0, 0, 0]), "b": np.array([0, 1.0, 0])})
    assert set(neighbours.pairs()) == {("a", "b")}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), steps=st.integers(1, 6))
def test_updates_give_what_a_fresh_build_gives(seed, k, steps):
    rng = np.random.default_rng(seed)
    pool = random_vectors(rng, 40)
    paths = sorted(pool)
    live = {p: pool[p] for p in paths[:30]}
    neighbours = BandNeighbours(floor=0.2, cut=0.85, k=k)
    neighbours.update(live)  # then small changes, which update the lists in place
    for _ in range(steps):
        added = {p: pool[p] for p in rng.choice(paths, size=int(rng.integers(1, 4)), replace=False)}
        removed = [p for p in rng.choice(paths, size=int(rng.integers(0, 3)), replace=False) if p not in added]
        for p in added:  # an added photo already known changed: give it a new fingerprint
            if p in live:
                added[p] = pool[p] + rng.normal(scale=0.5, size=len(pool[p]))
        neighbours.update(added, removed)
        live.update(added)
        for p in removed:
            live.pop(p, None)
        assert set(neighbours.pairs()) == brute_force_pairs(live, 0.2, 0.85, k)
    fresh = BandNeighbours(floor=0.2, cut=0.85, k=k)
    fresh.update(live)
    assert set(fresh.pairs()) == set(neighbours.pairs())


def test_a_floor_above_the_cut_is_refused():
    with pytest.raises(ValueError):
        BandNeighbours(floor=0.9, cut=0.8, k=3)


def test_a_pair_exactly_at_the_cut_is_no_candidate():
    # a.b = 0 exactly in float arithmetic; e is at cosine -0.707 from each, inside [-0.8, 0)
    vectors = {"a": np.array([1.0, 0, 0]), "b": np.array([0, 1.0, 0]), "e": np.array([-1.0, -1.0, 0])}
    neighbours = BandNeighbours(floor=-0.8, cut=0.0, k=5)
    neighbours.update(vectors)
    assert set(neighbours.pairs()) == {("a", "e"), ("b", "e")}


def test_each_pair_comes_with_its_cosine():
    vectors = random_vectors(np.random.default_rng(7), 30)
    neighbours = BandNeighbours(floor=0.3, cut=0.8, k=4)
    neighbours.update(vectors)
    for (a, b), sim in neighbours.pairs().items():
        expected = vectors[a] @ vectors[b] / np.linalg.norm(vectors[a]) / np.linalg.norm(vectors[b])
        assert sim == pytest.approx(expected, abs=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), steps=st.integers(1, 8))
def test_the_pairs_kept_between_updates_are_those_the_lists_name_with_the_later_photos_cosine(seed, k, steps):
    """pairs() is kept current between updates: after each, it is what one pass over the photos' own lists, in
    the order they came (a changed photo comes again), gives: a pair both lists name takes the later one's."""
    rng = np.random.default_rng(seed)
    pool = random_vectors(rng, 40)
    paths = sorted(pool)
    neighbours = BandNeighbours(floor=0.2, cut=0.85, k=k)
    arrived = list(paths[:30])
    neighbours.update({p: pool[p] for p in arrived})
    for _ in range(steps):
        added = {str(p): pool[p] + rng.normal(scale=0.5, size=8)
                 for p in rng.choice(paths, size=int(rng.integers(1, 4)), replace=False)}
        removed = [str(p) for p in rng.choice(paths, size=int(rng.integers(0, 3)), replace=False) if p not in added]
        neighbours.update(added, removed)
        arrived = [p for p in arrived if p not in added and p not in removed] + list(added)
        expected = {}
        for path in arrived:
            for other, sim in neighbours.neighbours(path):
                expected[tuple(sorted((path, other)))] = sim
        assert neighbours.pairs() == expected
