#!/usr/bin/env python3
"""Benchmark the daemon's update at scale: from a photo's arrival to its symlink, warm, in a 100,000-photo library.

    .venv/bin/python scripts/bench_daemon_scale.py [--photos 100000] [--arrivals 5] [--full-rebuild]
                                                   [--gallery] [--no-patterns]

It builds a library of `--photos` files (one small JPEG's bytes, written again under each name) and a fingerprint
cache for all of them with SYNTHETIC fingerprints (SqueezeNet's width, noisy copies of one centre per group of
about five, ten labels each), so only an arriving photo is fingerprinted. Then it keeps one daemon-like
LibraryPipeline (incremental clustering, its cache in memory: what `photocluster watch` keeps between updates) and
drops new photos into the library one at a time, each a near copy of an existing group, and times each update:

  - arrival to symlink: from the new file's close to the moment the `clusters` link shows the generation that holds
    it (taken right after layout._swap_in returns), with the seconds of each stage;
  - the whole update, with the stages after the swap (patterns, gallery, map).

The fingerprint step is a stand-in that answers at once (the model's time for one photo is measured in
bench_daemon.py and bench_fingerprint.py, and is the same at any library size). Not included either: the daemon's
debounce wait (quiet_seconds, 0.5 s by default) before it starts an update. The update is told the arriving file's
path, as the daemon's event names it (so the scan lists only its folder), but reads the cluster tree for
corrections every time (the daemon skips that while its watch on the tree saw no edit). bench_daemon.py measures
the real daemon end to end.

--full-rebuild times the old way too (every cluster folder of the generation built again), in the same run.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photocluster import layout as layout_module, models, pipeline  # noqa: E402
from photocluster.cache import FingerprintCache  # noqa: E402
from photocluster.fingerprint import FingerprintReport  # noqa: E402
from photocluster.library import scan_library  # noqa: E402
from photocluster.settings import LibrarySettings, PatternOptions  # noqa: E402

GROUP = 5


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def build_library(root: Path, n: int) -> None:
    data = jpeg_bytes()
    for i in range(n):
        folder = root / f"{2000 + i // 1000}" / f"{(i // 100) % 10:02}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:06}.jpg").write_bytes(data)
    (root / "incoming").mkdir()


class Synthetic:
    """Fingerprints: group g's centre plus noise; a new photo `new-<g>.jpg` joins group g."""

    def __init__(self, n: int, dim: int):
        self.rng = np.random.default_rng(0)
        self.centres = self.rng.standard_normal((n // GROUP + 1, dim)).astype(np.float32)
        self.dim = dim

    def vector(self, group: int) -> np.ndarray:
        return self.centres[group] + 0.2 * self.rng.standard_normal(self.dim).astype(np.float32)

    def labels(self) -> tuple:
        return tuple((int(c), 0.5 / (k + 1)) for k, c in enumerate(self.rng.choice(1000, 10, replace=False)))

    def fingerprint(self, settings, writer, todo, progress=None, should_stop=lambda: False) -> FingerprintReport:
        started = time.perf_counter()
        for p in todo:
            writer.put(p, self.vector(int(Path(p.rel).stem.split("-")[1])), self.labels())
        return FingerprintReport(computed=len(todo), seconds=time.perf_counter() - started, runtime="synthetic")


def build_cache(root: Path, out: Path, synthetic: Synthetic, model_id: str) -> None:
    cache = FingerprintCache(model_id, synthetic.dim)
    for i, p in enumerate(sorted(scan_library(root).values(), key=lambda p: p.rel)):
        cache.put(p, synthetic.vector(i // GROUP), synthetic.labels())
    out.mkdir(parents=True, exist_ok=True)
    cache.save(out / "fingerprints.pk")


class SwapClock:
    """Notes when each swap of the `clusters` link is done (the new tree is shown from then on); with
    `full_rebuild`, makes write_layout build every folder again, as before folders were reused."""

    def __init__(self):
        self.swapped: float | None = None
        self.full_rebuild = False
        self._write, self._swap = layout_module.write_layout, layout_module._swap_in
        layout_module._swap_in = self.swap
        pipeline.write_layout = self.write

    def swap(self, *args):
        self._swap(*args)
        self.swapped = time.perf_counter()

    def write(self, *args, **kw):
        return self._write(*args, **{**kw, "reuse": not self.full_rebuild})


def arrive(pipe: pipeline.LibraryPipeline, lib: Path, clock: SwapClock, k: int, group: int) -> tuple[float, dict]:
    """One arrival: write new-<group>.jpg, run the update, check the link is shown; (arrival to symlink, report)."""
    name = f"new-{group}-{k}.jpg"
    clock.swapped = None
    (lib / "incoming" / name).write_bytes(jpeg_bytes() + k.to_bytes(4, "big"))  # distinct size: never a "move"
    closed = time.perf_counter()
    report = pipe.update(dirty={f"incoming/{name}"})  # what the daemon's events name
    total = time.perf_counter() - closed
    shown = [m for m, members in report.layout.clusters.items() if f"incoming/{name}" in members]
    assert shown and clock.swapped is not None, f"{name} is in no cluster shown"
    size = len(report.layout.clusters[shown[0]])
    assert os.path.islink(lib / "photocluster" / "clusters" / f"cluster_with_{size}" / f"cluster_{shown[0]}" / name)
    return clock.swapped - closed, {**report.seconds, "total": total}


def run_arrivals(pipe, lib, clock, arrivals: int, first: int, label: str) -> None:
    latencies, stages = [], []
    for k in range(first, first + arrivals):
        latency, seconds = arrive(pipe, lib, clock, k, group=(k * 7919) % 1000)
        latencies.append(latency)
        stages.append(seconds)
        print(f"  arrival {k}: {latency:.2f} s to symlink; stages: "
              + ", ".join(f"{n} {s:.2f}" for n, s in seconds.items()), flush=True)
    names = sorted({n for s in stages for n in s})
    print(f"{label}: arrival to symlink, median {statistics.median(latencies):.2f} s, "
          f"min {min(latencies):.2f} s, max {max(latencies):.2f} s over {len(latencies)} arrivals")
    print("  median seconds per stage: " + ", ".join(
        f"{n} {statistics.median(s.get(n, 0.0) for s in stages):.2f}" for n in names))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=100_000)
    p.add_argument("--arrivals", type=int, default=5)
    p.add_argument("--full-rebuild", action="store_true", help="also time the old full rebuild of the tree")
    p.add_argument("--gallery", action="store_true", help="also write the gallery (thumbnails of every photo)")
    p.add_argument("--no-patterns", action="store_true")
    args = p.parse_args()
    print(f"photocluster daemon update at scale: {os.cpu_count()} CPUs, {args.photos:,} photos, synthetic "
          "fingerprints (SqueezeNet's width)", flush=True)
    spec = models.model_spec("squeezenet", None)
    with tempfile.TemporaryDirectory(prefix="photocluster-scale-") as tmp:
        lib = Path(tmp) / "lib"
        started = time.perf_counter()
        build_library(lib, args.photos)
        synthetic = Synthetic(args.photos, spec.dim)
        build_cache(lib, lib / "photocluster", synthetic, spec.model_id)
        print(f"library and cache built: {time.perf_counter() - started:.0f} s", flush=True)
        settings = LibrarySettings(library=lib, model="squeezenet", gallery=args.gallery,
                                   patterns=PatternOptions(enabled=not args.no_patterns))
        clock = SwapClock()
        pipe = pipeline.LibraryPipeline(settings, fingerprint=synthetic.fingerprint, incremental=True)
        started = time.perf_counter()
        report = pipe.update()
        print(f"first update (cold: cache load, clustering from scratch, the whole tree): "
              f"{time.perf_counter() - started:.1f} s; {report.clusters:,} clusters; stages: "
              + ", ".join(f"{n} {s:.2f}" for n, s in report.seconds.items()), flush=True)
        run_arrivals(pipe, lib, clock, args.arrivals, 0, "incremental layout (unchanged cluster folders reused)")
        if args.full_rebuild:
            clock.full_rebuild = True
            run_arrivals(pipe, lib, clock, args.arrivals, args.arrivals, "full rebuild (every folder made again)")


if __name__ == "__main__":
    main()
