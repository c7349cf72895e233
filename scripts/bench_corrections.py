#!/usr/bin/env python3
"""What reading corrections costs each run: comparing the shown cluster tree with its layout state.

Builds a cluster tree of --photos links (clusters of --size) with layout.write_layout, to photo paths that need
not exist (links are compared by their text, never followed), deletes one link and moves another the way a file
manager does, then times (median of --repeat, wall and CPU):
  * corrections.take_corrections on the tree as made, and after the edits: read the tree against its state,
    merge into corrections.json (dry run: the file is not written, so every repeat does the same work);
  * removing that edited generation (layout.remove_stale_generations after a swap), moved link included.

Usage: python scripts/bench_corrections.py [--photos 100000] [--size 5] [--repeat 3] [--dir /tmp/pc-bench-corr]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from photocluster.corrections import take_corrections  # noqa: E402
from photocluster.layout import Layout, remove_stale_generations, write_layout  # noqa: E402


def timed(call, repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=100_000)
    p.add_argument("--size", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", type=Path, default=Path("/tmp/pc-bench-corr"))
    args = p.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    lib, out = args.dir / "lib", args.dir / "out"
    lib.mkdir(parents=True)
    out.mkdir()
    rels = [f"folder{i // 1000}/photo{i}.jpg" for i in range(args.photos)]
    clusters = {m: rels[m * args.size:(m + 1) * args.size] for m in range(args.photos // args.size)}
    write_layout(out, lib, Layout(clusters, len(clusters)))
    shown = out / "clusters" / f"cluster_with_{args.size}"
    clean = timed(lambda: take_corrections(out, set(rels), {}, dry_run=True), args.repeat)
    print(f"read a tree as made of {args.photos:,} links: {clean[0]:.2f} s wall, {clean[1]:.2f} s CPU")
    os.unlink(shown / "cluster_0" / "photo0.jpg")
    os.rename(shown / "cluster_1" / f"photo{args.size}.jpg", shown / "cluster_2" / f"photo{args.size}.jpg")
    photos = set(rels)

    wall, cpu = timed(lambda: take_corrections(out, photos, {}, dry_run=True), args.repeat)
    print(f"read an edited tree of {args.photos:,} links in {len(clusters):,} clusters: "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.repeat})")
    constraints, edited = take_corrections(out, photos, {}, dry_run=True)
    print(f"  found: {len(constraints.cannot)} cannot-link pairs, {len(constraints.must)} must-link pairs, "
          f"edited={edited}")
    edited_generation = os.readlink(out / "clusters")
    write_layout(out, lib, Layout(clusters, len(clusters)))  # swaps in a clean tree, then removes the old one
    started = time.perf_counter()
    remove_stale_generations(out)  # nothing left to do when the swap removed it whole
    left = (out / edited_generation).exists()
    print(f"edited generation removed whole by the swap: {not left} (a later sweep took "
          f"{time.perf_counter() - started:.3f} s)")


if __name__ == "__main__":
    main()
