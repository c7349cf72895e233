#!/usr/bin/env python3
"""Print the per-kind table of issue 12: how photocluster groups a scene set at --sim 0.25, 0.5 and 0.75, with
scene verification on and off.

    .venv/bin/python scripts/build_scene_set.py /tmp/scene_set
    .venv/bin/python scripts/measure_scenes.py /tmp/scene_set [--model squeezenet] [--sims 0.25 0.5 0.75]

The set's manifest (scripts/build_scene_set.py) says which photos are shots of one scene, which are plain copies
and which are unrelated. Every pair of photos is one of:
    copy         a copy and the photo it copies
    same scene   two photos of one group otherwise (two shots, or a copy and another shot)
    unrelated    photos of different groups, or an unrelated photo and any other; 'decoy' pairs are the unrelated
                 ones given the same camera and a capture time seconds apart (they test the burst cue)
For each setting the table gives the recall of the copy and same-scene pairs (the share put in one cluster), the
pairwise precision (of all pairs put in one cluster, the share that belong together), the unrelated and decoy
pairs put together, the share of the unrelated photos left in no cluster, and the scenes stage's candidate pairs
and time. The photos are fingerprinted once; the runs
share one output folder, so later runs reuse the stored local features and verdicts (the time column of the first
run with verification is the one that computed them).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster import models  # noqa: E402
from photocluster.cluster import cut_for_sim  # noqa: E402
from photocluster.pipeline import run_once  # noqa: E402
from photocluster.settings import LibrarySettings, PatternOptions  # noqa: E402


def pair_kinds(manifest: Path) -> tuple[list[str], dict[tuple[str, str], str]]:
    """Every photo of the manifest, and the kind of each pair that is not plainly unrelated."""
    rows = list(csv.DictReader(open(manifest, newline="")))
    files = sorted(r["file"] for r in rows)
    kinds: dict[tuple[str, str], str] = {}
    by_group: dict[str, list[dict]] = {}
    for row in rows:
        if row["group"]:
            by_group.setdefault(row["group"], []).append(row)
    for members in by_group.values():
        for a, b in itertools.combinations(sorted(members, key=lambda r: r["file"]), 2):
            copy = a["copy_of"] == b["file"] or b["copy_of"] == a["file"]
            kinds[(a["file"], b["file"])] = "copy" if copy else "same scene"
    shots_of = {g: [r["file"] for r in m] for g, m in by_group.items()}
    for row in rows:
        for shot in shots_of.get(row["decoy_for"], []):
            kinds[tuple(sorted((row["file"], shot)))] = "decoy"
    return files, kinds


def unrelated_photos(manifest: Path) -> set[str]:
    return {r["file"] for r in csv.DictReader(open(manifest, newline="")) if not r["group"]}


def score(clusters: list[list[str]], unrelated: set[str], kinds: dict[tuple[str, str], str]) -> dict[str, float]:
    together = {pair for members in clusters for pair in itertools.combinations(sorted(members), 2)}
    total = {kind: sum(1 for k in kinds.values() if k == kind) for kind in ("copy", "same scene", "decoy")}
    found = {kind: sum(1 for p in together if kinds.get(p) == kind) for kind in total}
    wrong = sum(1 for p in together if kinds.get(p) not in ("copy", "same scene"))
    clustered = {photo for members in clusters for photo in members}
    return {"alone": len(unrelated - clustered) / max(1, len(unrelated)),
            "copy": found["copy"] / max(1, total["copy"]),
            "same scene": found["same scene"] / max(1, total["same scene"]),
            "precision": (len(together) - wrong) / max(1, len(together)),
            "unrelated": wrong, "decoys": found["decoy"], "pairs": len(together)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene_set", type=Path)
    parser.add_argument("--model", default="squeezenet", choices=models.MODEL_NAMES)
    parser.add_argument("--sims", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--out", type=Path, help="the output folder to use (kept); default: a temporary one")
    parser.add_argument("--bursts-from-floor", action="store_true",
                        help="the alternative measured: a burst anywhere in the band, not only in its upper half")
    args = parser.parse_args()
    if args.bursts_from_floor:
        from photocluster import pipeline
        from photocluster.scenes import scene_options

        def whole_band(settings, cut):
            options = scene_options(settings, cut)
            return options and dataclasses.replace(options, burst_floor=options.floor)

        pipeline.scene_options = whole_band
    files, kinds = pair_kinds(args.scene_set / "manifest.csv")
    unrelated = unrelated_photos(args.scene_set / "manifest.csv")
    counts = {k: sum(1 for v in kinds.values() if v == k) for k in ("copy", "same scene", "decoy")}
    n_pairs = len(files) * (len(files) - 1) // 2
    print(f"{args.scene_set}: {len(files)} photos; pairs: {counts['copy']} copy, {counts['same scene']} same scene, "
          f"{n_pairs - counts['copy'] - counts['same scene']} unrelated (of which {counts['decoy']} decoys); "
          f"model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "out"
        print("\n  sim  verify   cut  floor  copy recall  same-scene recall  precision  unrelated  decoys  "
              "unrelated alone  candidates  scenes s")
        for sim, verify in itertools.product(args.sims, (False, True)):
            settings = LibrarySettings(library=args.scene_set, out=out, model=args.model, sim=sim, verify=verify,
                                       burst_seconds=5.0 if verify else 0.0, patterns=PatternOptions(enabled=False))
            started = time.perf_counter()
            report = run_once(settings, progress=False)
            seconds = report.seconds.get("scenes", 0.0)
            s = score([list(m) for m in report.layout.clusters.values()], unrelated, kinds)
            scenes = report.scenes
            floor = models.scene_floor(args.model)
            print(f"  {sim:.2f}  {'on ' if verify else 'off'}    {report.cut:.2f}  "
                  f"{min(report.cut, cut_for_sim(floor, sim)):.2f}   {s['copy']:10.3f}  {s['same scene']:17.3f}  "
                  f"{s['precision']:9.3f}  {s['unrelated']:9d}  {s['decoys']:6d}  {s['alone']:15.3f}  "
                  f"{scenes.candidates if scenes else 0:10d}  {seconds:8.1f}"
                  f"   (run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
