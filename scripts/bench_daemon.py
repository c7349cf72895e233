#!/usr/bin/env python3
"""Benchmark the watch daemon: arrival-to-symlink latency on a library of 10,000 cached photos, and memory.

    .venv/bin/python scripts/bench_daemon.py [--photos 10000] [--arrivals 5] [--model squeezenet] [--vgg16]

It builds a library of small JPEGs in a temporary folder and a fingerprint cache for all of them (synthetic
fingerprints in groups of about five, so the clustering has real work), starts `photocluster watch` as a
subprocess with default timings, and prints:
  - latency: from a photo's arrival (its file closed) to its symlink in clusters/, for a pair of new similar
    photos dropped into the library, over several arrivals;
  - idle RSS: of the daemon once its fingerprint worker has exited (worker_idle_seconds set short);
  - RSS while fingerprinting: the daemon and its worker, peak, while 200 new photos are fingerprinted
    (SqueezeNet; with --vgg16 also VGG16 with random weights, which needs no download).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photocluster import models  # noqa: E402
from photocluster.cache import FingerprintCache  # noqa: E402
from photocluster.library import scan_library  # noqa: E402


def photo(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize(size, Image.Resampling.BICUBIC)


def build_library(root: Path, n: int) -> None:
    for i in range(n):
        folder = root / f"{2000 + i // 1000}" / f"{(i // 100) % 10:02}"
        folder.mkdir(parents=True, exist_ok=True)
        photo(i).save(folder / f"IMG_{i:05}.jpg", quality=80)


def build_cache(root: Path, out: Path, model: str, weights: str | None) -> None:
    """Fingerprints for every photo: noisy copies of one centre per group of ~5, plus labels."""
    spec = models.model_spec(model, weights)
    cache = FingerprintCache(spec.model_id, spec.dim)
    rng = np.random.default_rng(0)
    photos = sorted(scan_library(root).values(), key=lambda p: p.rel)
    centres = rng.standard_normal((len(photos) // 5 + 1, spec.dim)).astype(np.float32)
    for i, p in enumerate(photos):
        vector = centres[i // 5] + 0.2 * rng.standard_normal(spec.dim).astype(np.float32)
        labels = tuple((int(c), 0.5 / (k + 1)) for k, c in enumerate(rng.choice(1000, 10, replace=False)))
        cache.put(p, vector, labels, detections=())  # detected already (none found), as a daemon's cache holds
    out.mkdir(parents=True, exist_ok=True)
    cache.save(out / "fingerprints.pk")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def inotify_watches(pid: int) -> int:
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                total += Path(f"/proc/{pid}/fdinfo/{fd}").read_text().count("inotify wd:")
        except OSError:
            pass
    return total


class Daemon:
    """`photocluster watch --config` as a subprocess, with a notify socket to hear READY=1 and STATUS=."""

    def __init__(self, workdir: Path, config_text: str):
        self.workdir = workdir
        (workdir / "config.toml").write_text(config_text)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(workdir / "notify.sock"))
        self.messages: list[tuple[float, str]] = []
        env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify.sock"), "INVOCATION_ID": "bench"}
        self.log = open(workdir / "daemon.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "photocluster", "watch", "-v", "--config", str(workdir / "config.toml")],
            env=env, stderr=self.log, cwd=Path(__file__).resolve().parent.parent)
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except OSError:
                return

    def wait_for(self, text: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in m for _, m in self.messages):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"daemon did not say {text!r}; see {self.workdir / 'daemon.log'}")
            time.sleep(0.02)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        status = self.process.wait(60)
        self.sock.close()
        self.log.close()
        return status if time.monotonic() - started < 60 else -1


def config(lib: Path, model: str, weights: str | None, idle: float) -> str:
    weights_line = f'weights = "{weights}"\n' if weights else ""
    return (f"[daemon]\nworker_idle_seconds = {idle}\n\n"
            f'[[library]]\npath = "{lib}"\nmodel = "{model}"\n{weights_line}')


def shown_links(clusters: Path) -> set[str]:
    try:
        return {p.name for p in clusters.glob("*/*/new-*")}
    except OSError:  # the tree was swapped while we looked
        return set()


def measure_latency(lib: Path, arrivals: int, first: int = 0) -> list[float]:
    """Drop a pair of similar new photos; time from the second file's close to both symlinks being there."""
    clusters = lib / "photocluster" / "clusters"
    latencies = []
    for k in range(first, first + arrivals):
        names = [f"new-{k}-a.jpg", f"new-{k}-b.jpg"]
        img = photo(10_000_000 + k, size=(640, 480))
        img.save(lib / "incoming" / names[0], quality=90)
        img.resize((600, 450)).save(lib / "incoming" / names[1], quality=85)
        closed = time.monotonic()
        while True:
            if set(names) <= shown_links(clusters):
                latencies.append(time.monotonic() - closed)
                break
            if time.monotonic() - closed > 120:
                raise SystemExit(f"arrival {k} never showed up")
            time.sleep(0.01)
        time.sleep(3)  # let the daemon go quiet again
    return latencies


def peak_rss_while(daemon: Daemon, work, until_text: str) -> tuple[int, int]:
    """Run `work()`, then sample the daemon's and its worker's RSS until STATUS says `until_text`."""
    peak_daemon = peak_worker = 0
    start = len(daemon.messages)
    work()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        peak_daemon = max(peak_daemon, rss_kib(daemon.process.pid))
        worker = sum(rss_kib(c) for c in children(daemon.process.pid) if _is_worker(c))
        peak_worker = max(peak_worker, worker)
        if any(until_text in m and "idle" in m for _, m in daemon.messages[start:]):
            break
        time.sleep(0.1)
    return peak_daemon, peak_worker


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() and \
            b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def add_photos(folder: Path, n: int, size=(640, 480)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo(20_000_000 + i, size=size).save(folder / f"b{i:04}.jpg", quality=85)


def bench_model(base: Path, model: str, weights: str | None, photos: int, arrivals: int) -> None:
    """Build a library of `photos` cached photos, run the daemon on it, and print the figures."""
    lib = base / f"lib-{model}"
    print(f"\n== {model}{' (' + weights + ' weights)' if weights else ''}: building {photos:,} photos and their cache",
          flush=True)
    build_library(lib, photos)
    if photos:
        build_cache(lib, lib / "photocluster", model, weights)
    (lib / "incoming").mkdir()
    workdir = base / f"run-{model}"
    workdir.mkdir()
    started = time.monotonic()
    daemon = Daemon(workdir, config(lib, model, weights, idle=600))
    try:
        run_daemon_benchmarks(daemon, lib, workdir, started, arrivals, config(lib, model, weights, idle=3))
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        kept = Path(tempfile.gettempdir()) / f"bench_daemon-{model}.log"
        shutil.copyfile(workdir / "daemon.log", kept)
        print(f"(the daemon's log: {kept})")
    shutil.rmtree(lib)


def run_daemon_benchmarks(daemon: Daemon, lib: Path, workdir: Path, started: float, arrivals: int,
                          short_idle_config: str) -> None:
    daemon.wait_for("READY=1")
    print(f"first reconcile (start to READY=1): {time.monotonic() - started:.1f} s; status: "
          f"{[m for _, m in daemon.messages if m.startswith('STATUS=')][-1][7:]}")
    if arrivals:
        # the first arrival also starts the worker and loads the model: report it apart
        first = measure_latency(lib, 1)[0]
        rest = measure_latency(lib, arrivals - 1, first=1) if arrivals > 1 else []
        print(f"latency, arrival to symlink, first (worker start + model load): {first:.2f} s")
        if rest:
            print(f"latency, arrival to symlink, worker warm, {len(rest)} arrivals: median "
                  f"{statistics.median(rest):.2f} s, min {min(rest):.2f} s, max {max(rest):.2f} s")
    # a reload (SIGHUP) with a short worker_idle_seconds sends the worker away
    (workdir / "config.toml").write_text(short_idle_config)
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while any(_is_worker(c) for c in children(daemon.process.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    helpers = [c for c in children(daemon.process.pid) if not _is_worker(c)]
    print(f"idle RSS, worker gone: daemon {rss_kib(daemon.process.pid) / 1024:.0f} MiB"
          + (f" (+ multiprocessing's resource tracker {sum(rss_kib(c) for c in helpers) / 1024:.0f} MiB)"
             if helpers else ""))
    print(f"inotify watches held by the daemon: {inotify_watches(daemon.process.pid):,}")
    peak_daemon, peak_worker = peak_rss_while(daemon, lambda: add_photos(lib / "burst", 200), "idle")
    print(f"RSS while fingerprinting 200 photos: worker peak {peak_worker / 1024:.0f} MiB, daemon peak "
          f"{peak_daemon / 1024:.0f} MiB")
    status = daemon.stop()
    log = (workdir / "daemon.log").read_text()
    overflows = log.count("inotify queue overflowed")
    print(f"SIGTERM: exit status {status}; inotify overflows during the run: {overflows}")
    print("each update's stages (the first is the start-up reconcile):")
    for line in log.splitlines():
        if "stages:" in line:
            print("   ", line.split("stages:")[1].strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=10_000)
    p.add_argument("--arrivals", type=int, default=5)
    p.add_argument("--model", default="squeezenet", choices=models.MODEL_NAMES)
    p.add_argument("--vgg16", action="store_true", help="also measure VGG16 (random weights) on a small library")
    args = p.parse_args()
    print(f"photocluster daemon benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="photocluster-bench-") as tmp:
        weights = "random" if args.model == "vgg16" else None
        bench_model(Path(tmp), args.model, weights, args.photos, args.arrivals)
        if args.vgg16 and args.model != "vgg16":
            bench_model(Path(tmp), "vgg16", "random", 100, 1)


if __name__ == "__main__":
    main()
