#!/usr/bin/env python3
"""The gallery stage at scale: what writing <out>/gallery/ costs for a large library, and what a re-run rewrites.

Builds (in --dir) a SYNTHETIC cache of --photos photos (random 1000-d fingerprints, no predictions), --share of
them in clusters of 2 to 8, and a thumbnail for each (the same small JPEG bytes with a valid quality comment: the
stage reads thumbnails' headers, never their pixels). The photos themselves do not exist, so no capture time is
found (each is looked for once and remembered). Then it times gallery.write_gallery three times:
  1. first: every page and the state written;
  2. nothing changed: no page may be written;
  3. one photo in no cluster joins one cluster: that cluster's page and the index page listing it are rewritten.
and prints the pages written each time, with wall and CPU seconds.

Usage: python scripts/bench_gallery.py [--photos 100000] [--share 0.7] [--dir /tmp/pc-bench-gallery]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from photocluster.cache import FingerprintCache  # noqa: E402
from photocluster.gallery import write_gallery  # noqa: E402
from photocluster.images import Fitted  # noqa: E402
from photocluster.layout import Layout  # noqa: E402
from photocluster.library import PhotoFile  # noqa: E402
from photocluster.outdir import adopt  # noqa: E402
from photocluster.settings import LibrarySettings, PatternOptions  # noqa: E402
from photocluster.thumbs import encode, thumb_name, thumbs_folder  # noqa: E402


def build(base: Path, photos: int, share: float) -> tuple[LibrarySettings, FingerprintCache, Layout, list[str]]:
    shutil.rmtree(base, ignore_errors=True)
    (base / "lib").mkdir(parents=True)
    adopt(base / "out")
    rng = np.random.default_rng(0)
    cache = FingerprintCache("bench/synthetic", 1000)
    rels = [f"folder{i // 500:04d}/photo{i:06d}.jpg" for i in range(photos)]
    for rel in rels:
        cache.put(PhotoFile(rel, 1000, 1), rng.random(1000, np.float32), ())
    clusters, start, end = {}, 0, int(photos * share)
    while start < end:
        size = int(rng.integers(2, 9))
        clusters[len(clusters)] = rels[start:start + size]
        start += size
    grey = rng.integers(0, 256, (96, 128), np.uint8)
    data = encode(Fitted(np.repeat(grey[:, :, None], 3, axis=2), 4000, 3000, grey))
    with thumbs_folder(base / "out") as fd:
        for rel in rels:
            name = thumb_name(rel, 1000, 1)
            with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as fh:
                fh.write(data)
    settings = LibrarySettings(library=base / "lib", out=base / "out", model="squeezenet",
                               patterns=PatternOptions(enabled=False))
    return settings, cache, Layout(clusters, len(clusters)), rels


def timed(label: str, settings, cache, layout, rels) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    report = write_gallery(settings, cache, layout, rels, {})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    written = report.pages_written
    shown = ", ".join(written) if len(written) <= 4 else f"{len(written)} pages"
    print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU; written: {shown or 'nothing'} "
          f"({report.pages_unchanged} unchanged)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pc-bench-gallery"))
    args = parser.parse_args()
    started = time.perf_counter()
    settings, cache, layout, rels = build(args.dir, args.photos, args.share)
    print(f"{args.photos} photos, {len(layout.clusters)} clusters holding "
          f"{sum(len(m) for m in layout.clusters.values())} (built in {time.perf_counter() - started:.0f} s)")
    timed("first run", settings, cache, layout, rels)
    timed("nothing changed", settings, cache, layout, rels)
    clustered = {rel for members in layout.clusters.values() for rel in members}
    loner = next(rel for rel in reversed(rels) if rel not in clustered)
    layout.clusters[7] = sorted(layout.clusters[7] + [loner])
    timed("one photo joined cluster 7", settings, cache, layout, rels)


if __name__ == "__main__":
    main()
