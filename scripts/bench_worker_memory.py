#!/usr/bin/env python3
"""The daemon's fingerprint worker: its memory while fingerprinting, per model and runtime.

It runs the daemon's own worker (photocluster.worker.FingerprintWorker: a spawned process that loads the model
and fingerprints a batch of photos sent over a pipe) on one job, samples the worker's VmRSS from /proc every 50 ms
while the job runs, and reads the kernel's VmHWM (peak RSS) at the end, before the worker is stopped, with the RSS
after the job split into anonymous memory and file-backed pages (the mapped libraries and weights files, which the
kernel can drop and re-read):

  - 200 small photos (640x480, as scripts/bench_daemon.py drops into a library), and
  - --camera N: N camera-like 12 and 24 MP JPEGs (the ones scripts/bench_fingerprint.py makes), whose decodes
    take more memory;

for SqueezeNet (ImageNet weights) and VGG16 (random weights: the same arithmetic and size as ImageNet's), on the
openvino and tensorflow runtimes, without the object detector and, with --detector, with it (what the daemon
loads when a library's pattern summaries use the detector's objects, the default).

Usage: python scripts/bench_worker_memory.py [--models squeezenet,vgg16] [--runtimes openvino,tensorflow]
                                             [--small 200] [--camera 0] [--detector]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_fingerprint import library_of, make_photos  # noqa: E402
from photocluster.library import scan_library  # noqa: E402
from photocluster.worker import FingerprintWorker, Job  # noqa: E402

WEIGHTS = {"squeezenet": None, "vgg16": "random"}


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def small_library(root: Path, n: int) -> Path:
    """As bench_daemon.add_photos: smooth random 640x480 scenes."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(20_000_000 + i)
        img = Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize((640, 480), Image.BICUBIC)
        img.save(root / f"b{i:04}.jpg", quality=85)
    return root


def measure(library: Path, model: str, runtime: str, detect: bool) -> dict:
    photos = tuple(sorted(scan_library(library).values(), key=lambda p: p.rel))
    job = Job(str(library), photos, model, WEIGHTS[model], batch_size=16, detect=detect, runtime=runtime)
    worker = FingerprintWorker(idle_seconds=600)
    results, peak, done = [], [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            if worker.pid:
                peak[0] = max(peak[0], status_kib(worker.pid, "VmRSS"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        outcome = worker.run(job, lambda rel, vector, *rest: results.append(vector is not None))
        seconds = time.perf_counter() - started
        pid = worker.pid
        hwm, rss_after = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
        anon, file = status_kib(pid, "RssAnon"), status_kib(pid, "RssFile")  # file: mapped weights, libraries
    finally:
        done.set()
        sampler.join()
        worker.stop()
    assert outcome.crash is None and sum(results) == len(photos), (outcome, sum(results))
    return {"photos": len(photos), "seconds": seconds, "peak": peak[0], "hwm": hwm, "after": rss_after,
            "anon": anon, "file": file}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="squeezenet,vgg16")
    parser.add_argument("--runtimes", default="openvino,tensorflow")
    parser.add_argument("--small", type=int, default=200, help="small 640x480 photos in one job (0: none)")
    parser.add_argument("--camera", type=int, default=0, help="12/24 MP photos in one job (0: none)")
    parser.add_argument("--detector", action="store_true", help="also with the object detector in the job")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pc-bench-jpegs"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        libraries = []
        if args.small:
            libraries.append((f"{args.small} photos 640x480", small_library(Path(tmp) / "small", args.small)))
        if args.camera:
            libraries.append((f"{args.camera} photos 12/24 MP", library_of(make_photos(args.dir, args.camera))))
        print(f"{'photos':22s} {'model':10s} {'runtime':10s} {'detector':8s} {'peak RSS':>9s} {'VmHWM':>9s} "
              f"{'RSS after':>9s} {'anon':>6s} {'file':>6s} {'img/s':>6s}  (MiB)", flush=True)
        for label, library in libraries:
            for model in args.models.split(","):
                for runtime in args.runtimes.split(","):
                    for detect in ((False, True) if args.detector else (False,)):
                        found = measure(library, model, runtime, detect)
                        print(f"{label:22s} {model:10s} {runtime:10s} {'yes' if detect else 'no':8s} "
                              f"{found['peak'] / 1024:9.0f} {found['hwm'] / 1024:9.0f} {found['after'] / 1024:9.0f} "
                              f"{found['anon'] / 1024:6.0f} {found['file'] / 1024:6.0f} "
                              f"{found['photos'] / found['seconds']:6.1f}",
                              flush=True)


if __name__ == "__main__":
    main()
