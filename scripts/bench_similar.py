#!/usr/bin/env python3
"""`photocluster similar` at scale: wall time of the whole command for a photo already in the cache.

Builds a library folder whose cache holds --entries photos with SYNTHETIC fingerprints (random non-negative
--dim vectors, in clusters of 12 near-copies, 10 ImageNet labels and 3 detections each, 1% decode failures: the
cache's real columns, not real photos). One real JPEG in the folder is the query; its cache entry matches its
size and mtime, so the command takes its fingerprint from the cache. Then prints:
  * the wall time of `python -m photocluster similar PHOTO -k 10` in a fresh interpreter (interpreter start,
    imports, cache load, search, output), median of --repeat runs; target <= 2 s at 100,000 photos;
  * inside one process: import, cache-view load and search times;
  * whether TensorFlow was imported (it must not be, for a cached photo).

Usage: python scripts/bench_similar.py [--entries 100000] [--dim 512] [--repeat 5] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from photocluster.cache import FingerprintCache  # noqa: E402
from photocluster.labels import Detection  # noqa: E402
from photocluster.library import PhotoFile  # noqa: E402

QUERY = "query/DSC_query.jpg"


def build(library: Path, entries: int, dim: int, seed: int = 0) -> Path:
    """The library folder with its synthetic cache; returns the query photo's path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    query = library / QUERY
    query.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 120, 40)).save(query)
    st = query.stat()
    cache = FingerprintCache("squeezenet-fire9/imagenet" if dim == 512 else "vgg16-fc2/imagenet", dim)
    detections = (Detection("person", 0.6, (0.1, 0.1, 0.5, 0.9)), Detection("dog", 0.4, (0.5, 0.5, 0.9, 0.9)),
                  Detection("cup", 0.3, (0.0, 0.6, 0.2, 0.8)))
    labels = tuple((int(c), 0.09) for c in range(10))
    for start in range(0, entries, 12):
        centre = rng.random(dim, dtype=np.float32)
        for k in range(start, min(start + 12, entries)):
            photo = PhotoFile(f"{2000 + k % 25}/trip {k % 97}/DSC_{k:07d}.JPG", 3_000_000 + k, 1_600_000_000 + k)
            if k % 100 == 99:
                cache.put_failure(photo, "not a photo Pillow can read")
                continue
            vector = centre + 0.1 * rng.random(dim, dtype=np.float32)
            cache.put(photo, vector, labels, detections)
    cache.put(PhotoFile(QUERY, st.st_size, st.st_mtime_ns), rng.random(dim, dtype=np.float32), labels, ())
    (library / "photocluster").mkdir()
    cache.save(library / "photocluster" / "fingerprints.pk")
    return query


def command_wall(query: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "photocluster", "similar", str(query), "-k", "10"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0 or len(done.stdout.splitlines()) != 10:
        sys.exit(f"similar failed ({done.returncode}): {done.stderr.strip()}")
    return wall


def stages(query: Path) -> dict:
    """Import, load and search times inside one fresh process, and whether TensorFlow got imported."""
    code = (
        "import json, sys, time; t = time.perf_counter()\n"
        "from photocluster import cli, similar; from photocluster.cluster.search import nearest\n"
        "from photocluster.settings import LibrarySettings\n"
        "imports = time.perf_counter() - t; s = LibrarySettings(library=similar.find_library(%r, None))\n"
        "t = time.perf_counter(); view = similar.open_cache(s); load = time.perf_counter() - t\n"
        "t = time.perf_counter(); nearest(view.vectors, view.vectors[0], 11); search = time.perf_counter() - t\n"
        "print(json.dumps({'imports': imports, 'load': load, 'search': search,\n"
        "                  'tensorflow': 'tensorflow' in sys.modules}))"
    ) % (str(query),)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512, help="512: SqueezeNet's fingerprints, 4096: VGG16's")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        started = time.perf_counter()
        query = build(Path(tmp) / "library", args.entries, args.dim)
        size = (Path(tmp) / "library/photocluster/fingerprints.pk").stat().st_size
        print(f"synthetic cache: {args.entries} photos, dim {args.dim}, {size / 1e6:.0f} MB, built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        command_wall(query)  # the file into the page cache, as for a user's second search
        walls = [command_wall(query) for _ in range(args.repeat)]
        parts = [stages(query) for _ in range(3)]
    median = statistics.median(walls)
    print(f"photocluster similar PHOTO -k 10: {median:.2f} s wall (median of {args.repeat}; runs "
          f"{', '.join(f'{w:.2f}' for w in walls)}); target <= 2 s: {'met' if median <= 2 else 'MISSED'}")
    print("in one process: imports {:.2f} s, cache load {:.2f} s, search {:.3f} s (medians of 3)".format(
        *(statistics.median(p[key] for p in parts) for key in ("imports", "load", "search"))))
    print(f"TensorFlow imported: {'YES' if any(p['tensorflow'] for p in parts) else 'no'}")


if __name__ == "__main__":
    main()
