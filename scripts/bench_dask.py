"""Measure the Dask path: the overhead per batch, and one worker against two, on this machine.

    python scripts/bench_dask.py [--photos 48]

(a) a bare Dask round trip (submit a no-op, get its result), median of 100;
(b) the overhead per batch of DaskFingerprinter with a trivial model (a 1x1 "network" that answers in
    microseconds) on small synthetic photos: (Dask time - in-process time) / batches, and the client's own cost per
    photo (recording the results, writing the thumbnails), which bounds how many photos one client can take in;
(c) SqueezeNet (OpenVINO) on real devset photos: in process, then a LocalCluster of one worker, then of two
    (one thread each), each timed warm (a first run loads the models in the workers, untimed).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from photocluster.dask_fingerprinter import DaskFingerprinter  # noqa: E402
from photocluster.inprocess import fingerprint_in_process  # noqa: E402
from photocluster.library import scan_library  # noqa: E402
from photocluster.settings import LibrarySettings, PatternOptions  # noqa: E402

DEVSET = Path.home() / ".cache" / "photocluster-devset"


class Trivial:
    """A model that costs nothing: the mean colour, repeated."""

    name, model_id, runtime, input_size, dim = "trivial", "trivial/none", "none", (8, 8), 3

    def predict(self, batch):
        features = batch.reshape(len(batch), -1, 3).mean(axis=1).astype(np.float32) + 1
        return features, np.full((len(batch), 1000), 1e-3, np.float32)


def trivial_factory(name, weights=None, runtime="openvino"):
    return Trivial()


class Sink:
    def __init__(self):
        self.n = 0

    def put(self, photo, vector, predictions, detections=None, producer=None):
        self.n += 1

    def put_failure(self, photo, reason):
        self.n += 1


def cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                        silence_logs=40)


def round_trip(address: str) -> float:
    from distributed import Client

    with Client(address) as client:
        times = []
        for _ in range(100):
            started = time.perf_counter()
            client.submit(int, 0, pure=False).result()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def trivial_overhead(tmp: Path, address: str, photos: int = 512, task: int = 32) -> None:
    from photocluster import models

    lib = tmp / "small"
    rng = np.random.default_rng(0)
    for i in range(photos):
        lib.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), np.uint8)).save(lib / f"p{i:04}.jpg")
    settings = LibrarySettings(library=lib, out=tmp / "small-out", batch_size=task,
                               patterns=PatternOptions(enabled=False))
    settings.out_dir.mkdir()
    todo = [p for _, p in sorted(scan_library(lib).items())]
    real = models.model_spec, models.load_fingerprinter
    models.model_spec = lambda name, weights=None: type("Spec", (), {"model_id": Trivial.model_id})()
    models.load_fingerprinter = trivial_factory
    try:
        _trivial_runs(settings, todo, address, photos, task)
    finally:
        models.model_spec, models.load_fingerprinter = real


def _trivial_runs(settings, todo, address: str, photos: int, task: int) -> None:
    dask = DaskFingerprinter(address, factory=trivial_factory, task_photos=task)
    dask(settings, Sink(), todo[:task], False, lambda: False)  # warm: the workers import and load once
    local = min(timed(lambda: fingerprint_in_process(settings, Sink(), todo, False, lambda: False))
                for _ in range(2))
    remote = min(timed(lambda: dask(settings, Sink(), todo, False, lambda: False)) for _ in range(2))
    batches = photos // task
    print(f"(b) trivial model, {photos} photos of 64x48 in tasks of {task}, with thumbnails: in process "
          f"{local:.2f} s, on Dask (2 workers) {remote:.2f} s; overhead {(remote - local) / batches * 1000:.0f} ms "
          f"per batch beyond the work; the client took in {photos / remote:.0f} photos/s")


def squeezenet(tmp: Path, n: int) -> None:
    from photocluster.weights import fetch_weights

    fetch_weights("squeezenet")
    lib = tmp / "real"
    lib.mkdir()
    sources = sorted(p for folder in ("album", "nature", "wallpapers") for p in (DEVSET / folder).glob("*.jpg"))
    for i, src in enumerate(sources[:n]):
        shutil.copyfile(src, lib / f"{i:03}-{src.name}")
    settings = LibrarySettings(library=lib, out=tmp / "real-out", model="squeezenet",
                               patterns=PatternOptions(enabled=False))
    settings.out_dir.mkdir()
    todo = [p for _, p in sorted(scan_library(lib).items())]
    fingerprint_in_process(settings, Sink(), todo[:4], False, lambda: False)  # the IR converted, caches warm
    local = timed(lambda: fingerprint_in_process(settings, Sink(), todo, False, lambda: False))
    print(f"(c) SqueezeNet, {len(todo)} devset photos (with thumbnails): in process {len(todo) / local:.1f} photos/s")
    for workers in (1, 2):
        with cluster(workers) as c:
            dask = DaskFingerprinter(c.scheduler_address, task_photos=16)
            dask(settings, Sink(), todo[:16 * workers], False, lambda: False)  # warm: each worker loads its model
            seconds = timed(lambda: dask(settings, Sink(), todo, False, lambda: False))
            print(f"    on Dask, {workers} worker(s): {len(todo) / seconds:.1f} photos/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48, help="real photos for (c)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with cluster(2) as c:
            print(f"(a) bare Dask round trip (submit + result), median of 100: "
                  f"{round_trip(c.scheduler_address) * 1000:.1f} ms")
            trivial_overhead(Path(tmp), c.scheduler_address)
        squeezenet(Path(tmp), args.photos)


if __name__ == "__main__":
    main()
