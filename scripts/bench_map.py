#!/usr/bin/env python3
"""openTSNE against UMAP for the gallery's map (photocluster/gallery_map.py): time and quality, measured.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_map.py [--sizes 2000,5000,10000,20000 (the default)] [--no-devset]

Both start from the same 50-d PCA of the unit-length fingerprints (gallery_map.reduce) and run with a fixed
seed, as the map needs (a rerun must not move the photos). For each data set and method it prints:
  - seconds for the 2-D layout, wall and CPU (all threads; openTSNE as the map runs it, on one thread, and on
    two; UMAP's first call also compiles its numba code: its "cold" figure, paid by every
    fresh photocluster process, is printed apart from the warm ones);
  - kNN kept: the share of each photo's 10 nearest neighbours in the fingerprint space (cosine, on the full
    fingerprints, not the PCA) that are among its 10 nearest on the map, over a sample of up to 2,000 photos;
  - group 1-NN: for photos of a known group, the share whose nearest photo on the map is of the same group;
  - silhouette: the silhouette score of the known groups on the map (higher: groups more compact and apart).
Data sets: the devset's photos (real SqueezeNet fingerprints; groups from manifest.csv) and synthetic 4096-d
fingerprints from scripts/bench_cluster.py (60% unrelated photos, the rest groups of 2-20 near copies).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", "n_jobs value 1 overridden")  # UMAP: a seed makes it single-threaded

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import synthetic_fingerprints  # noqa: E402

from photocluster import gallery_map  # noqa: E402

SEED = 0
K = 10


def devset_fingerprints() -> tuple[np.ndarray, np.ndarray]:
    """SqueezeNet fingerprints of the devset and a group number per photo (-1: in no group)."""
    import subprocess

    from photocluster import images, models

    root = Path(subprocess.run([sys.executable, str(Path(__file__).with_name("get_test_photos.py"))],
                               capture_output=True, text=True, check=True).stdout.strip())
    with open(root / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    model = models.load_fingerprinter("squeezenet")
    batch = np.stack([images.load_image(root / row["file"], model.input_size) for row in rows])
    vectors = np.concatenate([model.predict(batch[i:i + 32])[0] for i in range(0, len(batch), 32)])
    names = sorted({row["group"] for row in rows if row["group"]})
    group = np.array([names.index(row["group"]) if row["group"] else -1 for row in rows])
    return vectors, group


def umap_layout(x50: np.ndarray) -> np.ndarray:
    """UMAP with its defaults and a seed, the map's other candidate."""
    import umap

    # random_state makes UMAP reproducible, and also single-threaded (its parallel path is not reproducible)
    return umap.UMAP(n_neighbors=15, random_state=SEED).fit_transform(x50)


def nearest(queries: np.ndarray, points: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
    """Indices of each query's k nearest points (Euclidean), leaving out the query itself (its index in exclude)."""
    found = []
    for start in range(0, len(queries), 256):
        q = queries[start:start + 256]
        d = (q ** 2).sum(1)[:, None] - 2 * q @ points.T + (points ** 2).sum(1)[None]
        d[np.arange(len(q)), exclude[start:start + 256]] = np.inf
        found.append(np.argpartition(d, k, axis=1)[:, :k])
    return np.concatenate(found)


def knn_kept(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sample = rng.choice(len(x), min(len(x), 2000), replace=False)
    high = nearest(unit[sample].astype(np.float32), unit.astype(np.float32), K, sample)
    low = nearest(y[sample].astype(np.float64), y.astype(np.float64), K, sample)
    return float(np.mean([len(set(h) & set(lo)) / K for h, lo in zip(high, low)]))


def separation(y: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import silhouette_score

    grouped = np.flatnonzero(group >= 0)
    first = nearest(y[grouped], y[grouped], 1, np.arange(len(grouped)))[:, 0]
    one_nn = float(np.mean(group[grouped][first] == group[grouped]))
    sil = silhouette_score(y[grouped], group[grouped], sample_size=min(len(grouped), 5000), random_state=SEED)
    return one_nn, float(sil)


def measure(name: str, x: np.ndarray, group: np.ndarray, methods) -> None:
    started = time.perf_counter()
    x50 = gallery_map.reduce(x)
    pca = time.perf_counter() - started
    print(f"{name}: {len(x):,} fingerprints of {x.shape[1]} dims, {int((group >= 0).sum()):,} in "
          f"{len(set(group[group >= 0]))} groups; PCA to {x50.shape[1]} dims {pca:.1f} s")
    for method, layout in methods.items():
        started, cpu = time.perf_counter(), time.process_time()
        y = layout(x50)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        kept = knn_kept(x, y, np.random.default_rng(SEED))
        one_nn, sil = separation(y, group)
        print(f"  {method:>18}: {seconds:6.1f} s wall {cpu:6.1f} s CPU   kNN kept {kept:.3f}   "
              f"group 1-NN {one_nn:.3f}   silhouette {sil:+.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,5000,10000,20000", help="synthetic set sizes")
    parser.add_argument("--no-devset", action="store_true")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores")
    started = time.perf_counter()
    umap_layout(gallery_map.reduce(np.random.default_rng(SEED).random((300, 64))))
    print(f"UMAP cold start (numba compilation, once per process): {time.perf_counter() - started:.1f} s")
    methods = {"openTSNE": gallery_map.embed, "openTSNE 2 threads": lambda x50: gallery_map.embed(x50, n_jobs=2),
               "UMAP": umap_layout}
    if not args.no_devset:
        measure("devset (SqueezeNet)", *devset_fingerprints(), methods)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        x, group = synthetic_fingerprints(max(sizes), SEED)
        for n in sizes:
            measure("synthetic", x[:n], group[:n], methods)


if __name__ == "__main__":
    main()
