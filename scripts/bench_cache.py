#!/usr/bin/env python3
"""The fingerprint cache at scale: bytes per photo, load time, and the memory a save needs.

Fills a FingerprintCache with --entries synthetic photos (random --dim vectors, 10 labels each, camera-like paths,
1% decode failures), then prints:
  * the file size and bytes per photo;
  * save time, and peak RSS during the save beside the RSS before it and the vector matrix's size;
  * load time (median of --repeat loads, each in a fresh process, the file in the page cache) and that
    process's peak RSS.
Target: 250,000 VGG16 entries load in <= 5 s.

Usage: python scripts/bench_cache.py [--entries 250000] [--dim 4096] [--repeat 3] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import os
import json
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
from photocluster.library import PhotoFile  # noqa: E402


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) of this process, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS


def fill(entries: int, dim: int, seed: int = 0) -> FingerprintCache:
    """A cache of `entries` synthetic photos, built through put() (as fingerprinting builds it)."""
    rng = np.random.default_rng(seed)
    cache = FingerprintCache(f"bench/{dim}", dim)
    chunk = 4096
    for start in range(0, entries, chunk):
        n = min(chunk, entries - start)
        vectors = rng.random((n, dim), dtype=np.float32)  # ReLU activations are >= 0
        classes = rng.integers(0, 1000, (n, 10)).tolist()
        probs = np.sort(rng.dirichlet(np.ones(20), n)[:, :10], axis=1)[:, ::-1].tolist()
        for i in range(n):
            k = start + i
            photo = PhotoFile(f"{2000 + k % 25}/{2000 + k % 25}-{1 + k % 12:02d} trip {k % 97}/DSC_{k:07d}.JPG",
                              3_000_000 + k, 1_600_000_000_000_000_000 + k * 1_000_000_007)
            if k % 100 == 99:
                cache.put_failure(photo, "not an image Pillow can read (unknown format or corrupt header)")
            else:
                cache.put(photo, vectors[i], tuple(zip(classes[i], probs[i])), producer="openvino-bf16")
    return cache


def load_in_child(path: Path) -> dict:
    """Load the cache in a fresh interpreter (as a CLI run does) and report its time and peak RSS."""
    code = (
        "import json, sys, time; from pathlib import Path; sys.path.insert(0, %r)\n"
        "from photocluster.cache import FingerprintCache\n"
        "from photocluster.cache_guard import RefusingUnpickler as _RefusingUnpickler\n"
        "t, cpu = time.perf_counter(), time.process_time(); c = FingerprintCache.load(Path(%r))\n"
        "s, cpu = time.perf_counter() - t, time.process_time() - cpu\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "del c; t = time.perf_counter(); d = _RefusingUnpickler(open(%r, 'rb')).load(); u = time.perf_counter() - t\n"
        "t = time.perf_counter(); c = FingerprintCache._from_columns(d); b = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': s, 'cpu': cpu, 'unpickle': u, 'build': b, 'entries': len(c), 'peak_mb': int(hwm) / 1024}))"
    ) % (str(ROOT), str(path), str(path))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=250_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--load-only", type=Path, default=None, metavar="FILE",
                        help="only time loading FILE (a cache an earlier run kept with --keep)")
    parser.add_argument("--keep", type=Path, default=None, metavar="FILE", help="keep the cache file as FILE")
    args = parser.parse_args()
    if args.load_only:
        report_loads(args.load_only, args.repeat)
        return

    base_rss, _ = rss_mb()
    started = time.perf_counter()
    cache = fill(args.entries, args.dim)
    before_rss, _ = rss_mb()
    vectors_mb = cache._vectors[: cache._used_rows].nbytes / 1e6
    print(f"{args.entries} entries, dim {args.dim}: filled in {time.perf_counter() - started:.1f} s; "
          f"RSS {before_rss:.0f} MB (interpreter {base_rss:.0f} MB; fp16 vectors {vectors_mb:.0f} MB)", flush=True)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "fingerprints.pk"
        # The first save re-sorts the rows into path order (new photos were appended); a later one has nothing
        # to re-sort, as after a load with no new photos.
        for what in ("first save (rows re-sorted)", "save with rows in order"):
            before_rss, _ = rss_mb()
            reset_peak_rss()
            t = time.perf_counter()
            cache.save(path)
            seconds = time.perf_counter() - t
            _, peak = rss_mb()
            print(f"{what}: {seconds:.2f} s; RSS before {before_rss:.0f} MB, peak during save {peak:.0f} MB "
                  f"(+{peak - before_rss:.0f} MB)", flush=True)
        size = path.stat().st_size
        print(f"file {size / 1e6:.0f} MB = {size / args.entries:.0f} bytes/photo "
              f"(vector alone {2 * args.dim} bytes)")
        del cache
        report_loads(path, args.repeat)
        if args.keep:
            os.replace(path, args.keep)


def report_loads(path: Path, repeat: int) -> None:
    loads = [load_in_child(path) for _ in range(repeat)]
    seconds = statistics.median(r["seconds"] for r in loads)
    runs = ", ".join(format(r["seconds"], ".2f") for r in loads)
    print(f"load: {seconds:.2f} s wall (median of {repeat}, runs {runs}), "
          f"{statistics.median(r['cpu'] for r in loads):.2f} s CPU; "
          f"of which unpickle {statistics.median(r['unpickle'] for r in loads):.2f} s, build entries "
          f"{statistics.median(r['build'] for r in loads):.2f} s; "
          f"loader peak RSS {max(r['peak_mb'] for r in loads):.0f} MB; {loads[0]['entries']} entries; "
          f"target <= 5 s: {'met' if seconds <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
