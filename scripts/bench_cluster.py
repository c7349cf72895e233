#!/usr/bin/env python3
"""Benchmark photocluster.cluster at library scale on synthetic 4096-d fingerprints (no model, no photos needed).

The fingerprints imitate CNN features (VGG16 fc2 / SqueezeNet fire9 after ReLU): non-negative, so unrelated photos
are not orthogonal. Each is ReLU(bias + a low-rank "content" part with a power-law spectrum + isotropic noise),
which gives unrelated pairs a median cosine of about 0.28 with 99% below about 0.6, as in real features. A share
of the photos (--background, default 60%) are such unrelated photos; the rest come in groups of 2-20 near copies
(bursts, edits) whose members share the content part, perturbed by a random 20-50%, so copies have cosine
~0.8-0.98 and some members fall below the cut, as real bursts do.

It prints, from one run:
  1. time and peak memory (RSS) of cluster() on --n fingerprints (target: 250,000 in <= 5 min, <= 12 GB),
     and the recall of the approximate pair search over a sample of photos (exact search as the reference);
  2. exactness: cluster() on a --subset against scipy linkage + fcluster, compared as partitions, by the default
     path and with the large-input path forced;
  3. the time of scipy's naive pdist + linkage + fcluster on that subset;
  4. the largest N that scipy's naive path survives in --naive-memory-gb (measured in a child process with an
     address-space limit, so the machine is never at risk), and the memory formula extended to 24 GB;
  5. the time of IncrementalClusterer.update() for one new photo in a --library-photo library (target <= 1 s);
  6. the approximate search against the exact one at each of --approx-sizes (prefixes of one data set): the
     adjusted Rand index of the two partitions, the share of photos whose cluster differs, the pairs within the
     cut that were missed, and the time of each search (the exact ones are computed incrementally, prefix by
     prefix, so the largest size costs one exhaustive search in all).

Usage: python scripts/bench_cluster.py [--n 250000] [--subset 20000] [--cut 0.82] [--quick] [--seed 0]
--quick: n=30,000, subset 3,000, library 20,000: a few minutes. Timings are noisy on a shared machine.
"""
from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster.cluster import ClusterParams, IncrementalClusterer, api, core, linkage, search  # noqa: E402
from photocluster.cluster import cluster  # noqa: E402

DIM = 4096
LATENT = 512  # rank of the content part
SPECTRUM = 0.6  # its power-law decay: latent k has scale k^-0.6
CONTENT = 4.0  # content std per coordinate, against noise std 1
BIAS = -0.5  # before ReLU: about half the features are zero, as in real fc/fire features


# --------------------------------------------------------------------------------------------------------------
# Synthetic fingerprints


class FingerprintModel:
    def __init__(self, rng: np.random.Generator):
        scale = np.arange(1, LATENT + 1) ** -SPECTRUM
        scale *= CONTENT / np.sqrt((scale ** 2).sum())
        self.loadings = (rng.standard_normal((LATENT, DIM)) * scale[:, None]).astype(np.float32)

    def pre_activation(self, rng: np.random.Generator, n: int) -> np.ndarray:
        content = rng.standard_normal((n, LATENT), dtype=np.float32) @ self.loadings
        return content + rng.standard_normal((n, DIM), dtype=np.float32)


def synthetic_fingerprints(n: int, seed: int, background: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(fingerprints float32 (n, 4096), group id per row, -1 for background), rows in random order."""
    rng = np.random.default_rng(seed)
    model = FingerprintModel(rng)
    out = np.empty((n, DIM), np.float32)
    group = np.full(n, -1)
    place = rng.permutation(n)  # written straight to their shuffled rows: no second copy of the data
    n_background = int(round(n * background))
    for start in range(0, n_background, 8192):
        stop = min(start + 8192, n_background)
        out[place[start:stop]] = np.maximum(model.pre_activation(rng, stop - start) + BIAS, 0)
    row, gid = n_background, 0
    while row < n:
        size = min(int(rng.integers(2, 21)), n - row)
        centre = model.pre_activation(rng, 1)
        spread = rng.uniform(0.2, 0.5)
        copies = centre + spread * model.pre_activation(rng, size)
        out[place[row:row + size]] = np.maximum(copies + BIAS, 0)
        group[place[row:row + size]] = gid
        row, gid = row + size, gid + 1
    return out, group


def cosine_profile(x: np.ndarray, group: np.ndarray, rng: np.random.Generator) -> str:
    background = np.flatnonzero(group < 0)
    sample = x[rng.choice(background, min(len(background), 2000), replace=False)]
    unit = sample / np.linalg.norm(sample, axis=1, keepdims=True)
    sims = (unit @ unit.T)[np.triu_indices(len(unit), 1)]
    copies = []
    for g in np.unique(group[group >= 0])[:300]:
        members = x[group == g]
        u = members / np.linalg.norm(members, axis=1, keepdims=True)
        copies.extend((u @ u.T)[np.triu_indices(len(u), 1)].tolist())
    return (f"unrelated pairs: median cosine {np.median(sims):.3f}, 99% below {np.quantile(sims, 0.99):.3f}, "
            f"max of {len(sims):,} {sims.max():.3f}; near copies: median {np.median(copies):.3f}, "
            f"5% below {np.quantile(copies, 0.05):.3f}; zeros {np.mean(sample == 0):.0%}")


# --------------------------------------------------------------------------------------------------------------
# Helpers


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is in KiB on Linux


def partition(labels: np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def ratio(value: float, target: float, unit: str) -> str:
    verdict = "meets" if value <= target else "MISSES"
    return f"{value:,.2f} {unit} = {value / target:.2f} x the target of {target:,g} {unit} ({verdict})"


class PairSpy:
    """Keeps the pairs cluster() found, to measure the approximate search's recall without searching twice."""

    def __init__(self):
        self.pairs = None
        self.original = search.similar_pairs

    def __enter__(self):
        def spy(rows, inv_norm, members, threshold, params):
            found = self.original(rows, inv_norm, members, threshold, params)
            self.pairs = (members[found[0]], members[found[1]])
            return found
        search.similar_pairs = spy
        return self

    def __exit__(self, *exc):
        search.similar_pairs = self.original


def pair_recall(x: np.ndarray, pairs, cut: float, rng: np.random.Generator, sample: int):
    """Recall of the pairs at >= cut involving `sample` random photos, against an exhaustive search.

    Also counts the missed pairs whose photos the found pairs do not connect at all: only those can change a
    cluster (the linkage inside a component uses every distance, found as a pair or not).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(x)
    graph = coo_matrix((np.ones(len(pairs[0]), np.int8), pairs), shape=(n, n))
    component = connected_components(graph, directed=False)[1]
    found = set((pairs[0].astype(np.int64) * n + pairs[1]).tolist())
    queries = np.sort(rng.choice(n, sample, replace=False))
    inv = 1.0 / np.linalg.norm(x, axis=1)
    unit_q = x[queries] * inv[queries, None]
    true = missed = split = 0
    for start in range(0, n, 16384):
        sims = (unit_q @ x[start:start + 16384].T) * inv[None, start:start + 16384]
        q, c = np.nonzero(sims >= cut)
        a, b = queries[q], c + start
        keep = a != b
        a, b = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        codes = a * n + b
        hit = np.array([code in found for code in codes.tolist()], bool)
        true += len(codes)
        missed += int((~hit).sum())
        split += int((component[a[~hit]] != component[b[~hit]]).sum())
    return true, missed, split


# --------------------------------------------------------------------------------------------------------------
# The five measurements


def measure_scale(x, group, cut, rng, recall_sample) -> None:
    n = len(x)
    print(f"\n1. cluster() on {n:,} fingerprints at cut {cut}")
    rss_before = peak_rss_gb()
    with PairSpy() as spy:
        started, cpu_started, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        labels = cluster(x, cut)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = peak_rss_gb()
    sizes = np.bincount(labels)
    print(f"   {len(sizes):,} clusters, {np.sum(sizes >= 2):,} of them with 2+ photos (largest {sizes.max()}); "
          f"{len(spy.pairs[0]):,} similar pairs")
    print(f"   time: {ratio(seconds / 60, 5, 'min')}; CPU time {cpu / 60:.2f} min over 2 cores "
          f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f}: other work shares the machine)")
    print(f"   peak RSS of this process: {ratio(peak, 12, 'GB')} (the {x.nbytes / 1e9:.1f} GB of input included; "
          f"{rss_before:.1f} GB before clustering)")
    path = "exact" if n <= ClusterParams().exact_search_max else "APPROXIMATE (inverted file)"
    true, missed, split = pair_recall(x, spy.pairs, cut, rng, recall_sample)
    print(f"   pair search: {path}; of the {true:,} pairs at >= {cut} touching {recall_sample:,} sampled photos "
          f"(exhaustive check), {missed:,} were missed (recall {1 - missed / max(true, 1):.5f}); "
          f"{split:,} of the missed pairs joined photos left unconnected (only these can change a cluster)")
    same_group = group >= 0
    print(f"   planted groups: {len(np.unique(group[same_group])):,}; background photos in a cluster of 2+: "
          f"{np.mean(sizes[labels[~same_group]] >= 2):.2%}")


def measure_exactness_and_naive(x, cut, subset, rng) -> None:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    rows = np.sort(rng.choice(len(x), subset, replace=False))
    sub = x[rows]
    print(f"\n2./3. a {subset:,}-photo subset")
    started = time.perf_counter()
    distances = pdist(sub, "cosine")
    pdist_seconds = time.perf_counter() - started
    flat = fcluster(linkage(distances, method="average"), 1 - cut, criterion="distance")
    naive_seconds = time.perf_counter() - started
    del distances
    reference = partition(flat)
    for name, params in (("default path", ClusterParams()),
                         ("large-input path forced (approximate search, sparse linkage)",
                          ClusterParams(exact_search_max=0, dense_max=2))):
        started = time.perf_counter()
        labels = cluster(sub, cut, params=params)
        seconds = time.perf_counter() - started
        ours = partition(labels)
        differing = sum(len(g) for g in ours - reference)
        verdict = "IDENTICAL partitions" if ours == reference else f"DIFFERENT: {differing} photos in other clusters"
        print(f"   2. {name}: {verdict} ({len(ours):,} clusters) in {seconds:.1f} s")
    print(f"   3. scipy naive pdist + linkage + fcluster: {naive_seconds:.1f} s "
          f"(pdist alone {pdist_seconds:.1f} s); cluster() default path is above")


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert and Arabie's ARI of two labelings, from their contingency table (pairs counted in int64)."""
    def pairs(counts):
        counts = counts.astype(np.int64)
        return int((counts * (counts - 1) // 2).sum())

    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    together = pairs(np.unique(a.astype(np.int64) * (b.max() + 1) + b, return_counts=True)[1])
    in_a, in_b = pairs(np.bincount(a)), pairs(np.bincount(b))
    expected = in_a * in_b / (len(a) * (len(a) - 1) / 2)
    best = (in_a + in_b) / 2
    return 1.0 if best == expected else (together - expected) / (best - expected)


def moved_share(a: np.ndarray, b: np.ndarray) -> float:
    """The share of photos whose cluster (as a set of photos) is not the same in `a` and `b`."""
    same = partition(a) & partition(b)
    return 1.0 - sum(len(g) for g in same) / len(a)


def exact_pairs_extended(x, inv, old_n, new_n, threshold, params, found):
    """Add to `found` (lists of pair arrays) the exact pairs of x[:new_n] that involve a row >= old_n."""
    members = np.arange(old_n, new_n)
    first, second = search.pairs_exact(x, inv, members, threshold, params)
    found[0].append(first + old_n)
    found[1].append(second + old_n)
    for start in range(old_n, new_n, 8192):  # new rows against the old ones, a query chunk at a time
        queries = np.arange(start, min(start + 8192, new_n))
        q, r = search.pairs_between(x, inv, queries, old_n, threshold, params.block)
        found[0].append(r)
        found[1].append(queries[q])


def measure_approximation(x, cut, sizes) -> None:
    print(f"\n6. approximate pair search (default cells) against the exact one, cut {cut}")
    params = ClusterParams()
    threshold = cut - core.GRAPH_MARGIN
    inv = core.inverse_norms(x)
    found: tuple[list, list] = ([], [])
    done = 0
    for n in sorted(sizes):
        members = np.arange(n)
        started = time.perf_counter()
        exact_pairs_extended(x, inv, done, n, threshold, params, found)
        exact_seconds = time.perf_counter() - started
        done = n
        first, second = np.concatenate(found[0]), np.concatenate(found[1])
        keep = (first < n) & (second < n)
        exact = api.number_groups(linkage.cluster_pairs(x, inv, members, first[keep], second[keep], 1 - cut,
                                                        params), n, 1)
        started = time.perf_counter()
        approx_first, approx_second = search.pairs_inverted_file(x, inv, members, threshold, params)
        approx_seconds = time.perf_counter() - started
        approx = api.number_groups(linkage.cluster_pairs(x, inv, members, approx_first, approx_second, 1 - cut,
                                                         params), n, 1)
        true = set(zip(*linkage.pairs_within(x, inv, first[keep], second[keep], 1 - cut)[:2]))
        got = set(zip(*linkage.pairs_within(x, inv, approx_first, approx_second, 1 - cut)[:2]))
        print(f"   {n:,} photos: ARI {adjusted_rand_index(exact, approx):.5f}; photos in a different cluster "
              f"{moved_share(exact, approx):.3%}; pairs within the cut missed {len(true - got):,} of {len(true):,}"
              f"; clusters of 2+ exact {np.sum(np.bincount(exact) >= 2):,}, approximate "
              f"{np.sum(np.bincount(approx) >= 2):,}; exhaustive search of the new rows {exact_seconds:.0f} s, "
              f"approximate search {approx_seconds:.0f} s", flush=True)


def _address_space() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


def _naive_child(n: int, budget: int, answer) -> None:
    from scipy.cluster.hierarchy import fcluster, linkage

    base = _address_space()  # what the interpreter and its libraries hold before any distance is computed
    answer.put(base)
    resource.setrlimit(resource.RLIMIT_AS, (base + budget, base + budget))
    try:
        # memory does not depend on the dimension beyond the input itself, so 16-d keeps the probe fast
        x = np.random.default_rng(n).random((n, 16))
        fcluster(linkage(x, method="average", metric="cosine"), 0.18, criterion="distance")
        answer.put(True)
    except MemoryError:
        answer.put(False)


def naive_survives(n: int, budget: int) -> tuple[bool, int]:
    """(whether pdist + linkage + fcluster of n photos fit in `budget` more bytes of address space, the base)"""
    answer = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_naive_child, args=(n, budget, answer))
    child.start()
    child.join()
    base = answer.get() if not answer.empty() else 0
    return child.exitcode == 0 and not answer.empty() and answer.get(), base


def measure_naive_limit(limit_gb: float) -> None:
    limit = int(limit_gb * 1024 ** 3)
    print(f"\n4. the largest N scipy's naive path survives in {limit_gb:g} GB (child process, RLIMIT_AS = its own "
          f"address space + {limit_gb:g} GB)")
    low, high = 0, 5000
    while (survived := naive_survives(high, limit))[0]:
        low, high = high, high * 2
    base = survived[1]
    while high - low > max(250, low // 50):
        middle = (low + high) // 2
        low, high = (middle, high) if naive_survives(middle, limit)[0] else (low, middle)
    # pdist's condensed float64 matrix (n^2/2 x 8 bytes) and linkage's working copy of it: ~8 n^2 bytes
    per_n2 = limit / low ** 2
    print(f"   survives N = {low:,}, fails at {high:,} (the child's own {base / 1024 ** 3:.2f} GB of address space "
          f"not counted): {per_n2:.1f} bytes per N^2 (formula: 8 N^2, the condensed matrix and linkage's copy)")
    for total in (12, 24):
        print(f"   -> with {total} GB free: N ~ {int(math.sqrt(total * 1024 ** 3 / per_n2)):,}")


def measure_incremental(x, cut, library) -> None:
    print(f"\n5. IncrementalClusterer: one new photo in a {library:,}-photo library")
    names = [f"photos/{i:07d}.jpg" for i in range(library)]
    inc = IncrementalClusterer(cut)
    started = time.perf_counter()
    inc.update(dict(zip(names, x[:library])))
    print(f"   building it: {time.perf_counter() - started:.1f} s")
    times = []
    for k, source in enumerate((library, library + 1, 0, 7)):  # unseen photos, then near copies of known ones
        vector = x[source] * np.float32(1.0 + 0.01 * k)
        started = time.perf_counter()
        changed = inc.update({f"new/{k}.jpg": vector})
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        inc.update(removed={f"new/{k}.jpg"})
        times.append(time.perf_counter() - started)
        print(f"   add -> {len(changed)} photos re-clustered in {times[-2]:.3f} s; remove it again {times[-1]:.3f} s")
    print(f"   worst update: {ratio(max(times), 1, 's')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=250_000)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--library", type=int, default=100_000, help="photos in the incremental library")
    parser.add_argument("--cut", type=float, default=0.82)
    parser.add_argument("--background", type=float, default=0.6)
    parser.add_argument("--recall-sample", type=int, default=2000)
    parser.add_argument("--naive-memory-gb", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--approx-sizes", default="50000,100000,250000", help="sizes for measurement 6")
    parser.add_argument("--quick", action="store_true", help="n=30,000, subset 3,000, library 20,000")
    parser.add_argument("--skip", default="", help="comma-separated measurements to skip, e.g. 3,4")
    args = parser.parse_args()
    if args.quick:
        args.n, args.subset, args.library = 30_000, 3_000, 20_000
    skip = set(args.skip.split(","))
    logging.basicConfig(level=logging.WARNING, format="   [%(levelname)s %(name)s] %(message)s")
    rng = np.random.default_rng(args.seed + 1)

    started = time.perf_counter()
    sizes = [int(size) for size in args.approx_sizes.split(",")] if "6" not in skip else []
    x, group = synthetic_fingerprints(max([args.n, args.library + 2] + sizes), args.seed, args.background)
    print(f"{len(x):,} synthetic {DIM}-d fingerprints in {time.perf_counter() - started:.0f} s "
          f"({x.nbytes / 1e9:.1f} GB float32); {cosine_profile(x, group, rng)}")
    if "1" not in skip:
        measure_scale(x[:args.n], group[:args.n], args.cut, rng, args.recall_sample)
    if not {"2", "3"} <= skip:
        measure_exactness_and_naive(x, args.cut, args.subset, rng)
    if "5" not in skip:
        measure_incremental(x, args.cut, args.library)
    if sizes:
        measure_approximation(x, args.cut, sizes)
    del x
    if "4" not in skip:
        measure_naive_limit(args.naive_memory_gb)


if __name__ == "__main__":
    main()
