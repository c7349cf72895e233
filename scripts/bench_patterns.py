#!/usr/bin/env python3
"""Time the object-pattern mining on a synthetic library (no model, no photos needed).

Each synthetic photo gets 1-4 objects (about 2.5 on average) from a vocabulary of ~100 coarse labels with a skewed (Zipf) distribution;
30% of the photos start from one of a few "scenes" (tram + street sign, seashore + sandbar, ...), so multi-object
patterns exist. Every object is one of the ImageNet classes behind that coarse label with a probability above the
threshold, and the rest of the top-10 are low-probability noise, as the model's predictions are.

Reports, median of --repeat runs:
  * mine_maximal() on the library's N transactions at several minimum supports (the whole-library mining time);
  * update_patterns() writing every folder's summary and the library's (first run), then again with nothing
    changed (the daemon's common case).

Usage: python scripts/bench_patterns.py [--photos 10000] [--folders 100] [--repeat 5] [--seed 0]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster.labels import class_labels
from photocluster.patterns import PatternSettings, mine_maximal, photo_objects, update_patterns

SCENES = [("tram", "street sign"), ("seashore", "sandbar"), ("lakeside", "boat"), ("dog", "ball"),
          ("car", "traffic light", "street sign"), ("food", "drink", "bowl"), ("boat", "dock"),
          ("cat", "sofa"), ("person", "bicycle"), ("mountain", "valley")]


def synthetic_photos(count: int, folders: int, seed: int) -> dict[str, tuple[tuple[int, float], ...]]:
    rng = np.random.default_rng(seed)
    coarse = class_labels("coarse")
    classes_of: dict[str, list[int]] = {}
    for index, label in enumerate(coarse):
        classes_of.setdefault(label, []).append(index)
    by_size = [label for label, _ in Counter(coarse).most_common()]
    vocabulary = by_size[:100]
    scenes = [[label for label in scene if label in classes_of] for scene in SCENES]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)  # Zipf: a few labels are everywhere, most are rare
    weights /= weights.sum()
    photos = {}
    for n in range(count):
        in_scene = rng.random() < 0.3
        objects: list[str] = list(scenes[rng.integers(len(scenes))]) if in_scene else []
        extra = rng.integers(0, 2) if in_scene else rng.integers(1, 5)
        for label in rng.choice(vocabulary, size=extra, replace=False, p=weights):
            if len(objects) < 4 and label not in objects:
                objects.append(str(label))
        labels = [(int(rng.choice(classes_of[label])), float(rng.uniform(0.2, 0.9))) for label in objects]
        noise = rng.choice(1000, size=10 - len(labels), replace=False)
        labels += [(int(index), float(rng.uniform(0.0, 0.19))) for index in noise]
        labels.sort(key=lambda pair: -pair[1])
        photos[f"{2015 + n % 10}/folder_{n % folders:03d}/IMG_{n:05d}.jpg"] = tuple(labels)
    return photos


def median_seconds(run, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    photos = synthetic_photos(args.photos, args.folders, args.seed)
    names = class_labels("coarse")
    transactions = [photo_objects(labels, names, 0.2).keys() for labels in photos.values()]
    sizes = Counter(len(t) for t in transactions)
    print(f"{len(transactions)} transactions, {len({i for t in transactions for i in t})} distinct labels, "
          f"items per photo: {dict(sorted(sizes.items()))}")

    mine_maximal([{"warm"}, {"up"}], 1)  # import mlxtend and pandas outside the timing
    print("\nwhole-library mining, mine_maximal() (mlxtend fpmax):")
    print(f"  {'min support':>24}  {'photos':>6}  {'patterns':>8}  {'median s':>8}")
    for support in (0.1, 0.05, 0.01, 50, 10, 2):
        settings = PatternSettings(min_support=support)
        min_count = settings.min_count(len(transactions))
        seconds, patterns = median_seconds(lambda count=min_count: mine_maximal(transactions, count), args.repeat)
        default = " (default)" if support == PatternSettings().min_support else ""
        print(f"  {str(support) + default:>24}  {min_count:>6}  {len(patterns):>8}  {seconds:8.3f}")

    print(f"\nupdate_patterns(), {args.folders} folders + the library, default settings:")
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "library"
        firsts, lasts, library_mining = [], [], []
        for n in range(args.repeat):
            out = Path(tmp) / f"out{n}"
            started = time.perf_counter()
            report = update_patterns(out, photos, PatternSettings(), library)
            firsts.append(time.perf_counter() - started)
            library_mining.append(report.library_mining_seconds)
            started = time.perf_counter()
            again = update_patterns(out, photos, PatternSettings(), library)
            lasts.append(time.perf_counter() - started)
            assert again.written == 0
        print(f"  first run, {report.written} summaries written: {statistics.median(firsts):.2f} s "
              f"(of which whole-library mining {statistics.median(library_mining):.3f} s)")
        print(f"  nothing changed, 0 written:          {statistics.median(lasts):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
