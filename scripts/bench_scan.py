#!/usr/bin/env python3
"""Benchmark the daemon's rescan of a large library: a full scan against the incremental one (scan_state.py).

    .venv/bin/python scripts/bench_scan.py [--photos 100000] [--repeats 5]

It builds a library as bench_daemon_scale.py does (100 photos a folder), waits until its folders are old enough for
their listings to be trusted (scan_state.RECENT_NS), then times, each the median of --repeats:

  - a full scan (library.scan_library), with is_photo_name as it was (os.path.splitext) and as it is;
  - the incremental scan after one photo arrives in a folder (what the daemon's update after an arrival does), and
    after a photo is rewritten in place and named dirty (its folder listed again).

Each incremental result is checked against a full scan.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_daemon_scale import build_library, jpeg_bytes  # noqa: E402
from photocluster import library, scan_state  # noqa: E402
from photocluster.library import PHOTO_EXTENSIONS, PARTIAL_SUFFIXES, scan_library  # noqa: E402
from photocluster.scan_state import ScanState  # noqa: E402


def splitext_is_photo_name(name: str) -> bool:
    """is_photo_name before this benchmark's change, for the comparison."""
    if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
        return False
    return os.path.splitext(name)[1].lower() in PHOTO_EXTENSIONS


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="photocluster-scan-") as tmp:
        lib = Path(tmp) / "lib"
        build_library(lib, args.photos)
        time.sleep(scan_state.RECENT_NS / 1e9 + 0.5)  # a daemon lists folders long after most of them changed
        folders = sum(1 for _ in os.walk(lib))
        print(f"photocluster scan: {args.photos:,} photos in {folders:,} folders, {os.cpu_count()} CPUs", flush=True)

        current = library.is_photo_name
        library.is_photo_name = splitext_is_photo_name
        old_full = median_seconds(lambda: scan_library(lib), args.repeats)
        library.is_photo_name = current
        full = median_seconds(lambda: scan_library(lib), args.repeats)
        print(f"full scan: {old_full:.3f} s with os.path.splitext, {full:.3f} s now", flush=True)

        state = ScanState()
        state.scan(lib)  # the first scan of a daemon's pipeline lists everything
        data, arrivals = jpeg_bytes(), iter(range(10**6))

        def one_arrival() -> None:
            (lib / "incoming" / f"new-{next(arrivals)}.jpg").write_bytes(data)
            state.scan(lib, dirty=())

        incremental = median_seconds(one_arrival, args.repeats)
        assert state.scan(lib, dirty=()) == scan_library(lib)
        rewritten = lib / "2000" / "00" / "IMG_000000.jpg"

        def one_rewrite() -> None:
            with open(rewritten, "r+b") as fh:
                fh.write(b"\xff")
            state.scan(lib, dirty=["2000/00/IMG_000000.jpg"])

        dirty = median_seconds(one_rewrite, args.repeats)
        assert state.scan(lib, dirty=()) == scan_library(lib)
        print(f"incremental scan after one arrival: {incremental:.3f} s ({full / incremental:.0f}x faster than "
              f"the full scan); after a photo rewritten in place, named dirty: {dirty:.3f} s "
              f"({full / dirty:.0f}x)")


if __name__ == "__main__":
    main()
