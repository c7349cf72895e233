#!/usr/bin/env python3
"""Issue 13's targets, before and after the object detector, on one library.

    .venv/bin/python scripts/measure_objects.py LIBRARY [--model squeezenet] [--out DIR] [--show FOLDER]

Runs the real CLI (`python -m photocluster`, a fresh process each) twice on LIBRARY:
    before  --objects imagenet   a photo's items are its coarse ImageNet labels only (as before the detector);
    after   --objects both       the default: COCO detections and the coarse ImageNet label, merged.
Both at the default --threshold and --min-support. The "after" run starts from a copy of the "before" run's
fingerprint cache, so the photos are fingerprinted once; it then runs only the detector on them (the pipeline's
path for photos fingerprinted before the detector). --verify off: the patterns are mined per library folder, so
scene verification (which only joins clusters) does not change them and would only cost time.

For each run it prints, over the library's transactions (patterns/_library/transactions.txt, one line a photo):
    two+       the share of photos whose transaction has two or more items (patterns.transaction_stats);
    mean       the mean number of items per photo;
    patterns   the maximal patterns of two or more items in the library summary (_library/patterns.txt lines with
               a tab between items).
and the folder summaries' patterns of two or more items (a library summary needs 5% of all photos, which a library
of many small folders seldom reaches). Then, from the "after" run, one folder summary.md's "Objects seen together" section with real multi-object patterns
(--show FOLDER, else the folder with the most of them).

SqueezeNet, not VGG16: VGG16's ImageNet weights are not available offline, and the ImageNet half of the items comes
from the same model that fingerprints.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from photocluster.patterns.formats import (LIBRARY_DIR, PATTERNS, PATTERNS_DIR, SUMMARY,  # noqa: E402
                                           TRANSACTIONS, read_patterns)
from photocluster.patterns.mining import transaction_stats  # noqa: E402
from photocluster.settings import PatternOptions  # noqa: E402

SECTION = "## Objects seen together"


def run_cli(library: Path, out: Path, model: str, objects: str, *extra: str) -> dict:
    """One run of the CLI in a fresh process; its --json report, plus the wall-clock seconds."""
    command = [sys.executable, "-m", "photocluster", str(library), "--model", model, "--objects", objects,
               "--out", str(out), "--verify", "off", "--no-gallery", "--json", "-q", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout)
    report["wall_seconds"] = wall
    return report


def library_figures(out: Path) -> dict:
    folder = out / PATTERNS_DIR / LIBRARY_DIR
    lines = (folder / TRANSACTIONS).read_text(encoding="utf-8").split("\n")[:-1]  # one line a photo, each ends in \n
    transactions = [[item for item in line.split(",") if item] for line in lines]
    share, mean = transaction_stats(transactions)
    multi = [p for p in read_patterns(folder / PATTERNS) if len(p[0]) >= 2]
    return {"photos": len(transactions), "share": share, "mean": mean, "patterns": len(multi),
            "empty": sum(1 for t in transactions if not t), "top": sorted(multi, key=lambda p: -p[1])[:5]}


def together_section(summary: Path) -> list[str]:
    """The summary's "Objects seen together" section (heading to the next heading), without trailing blanks."""
    lines = summary.read_text(encoding="utf-8").splitlines()
    if SECTION not in lines:
        return []
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def folder_sections(out: Path) -> dict[str, tuple[int, list[str]]]:
    """Each library folder's section, where it holds at least one pattern of two or more objects."""
    found = {}
    base = out / PATTERNS_DIR
    for summary in sorted(base.rglob(SUMMARY)):
        folder = summary.parent.relative_to(base).as_posix()
        if folder == LIBRARY_DIR:
            continue
        patterns = [p for p in read_patterns(summary.parent / PATTERNS) if len(p[0]) >= 2]
        if patterns:
            found[folder] = (len(patterns), together_section(summary))
    return found


def print_figures(name: str, report: dict, figures: dict) -> None:
    top = "; ".join(f"{'+'.join(items)} ({support})" for items, support in figures["top"])
    print(f"{name:7s} two+ {figures['share']:6.1%}   mean {figures['mean']:.2f} items/photo   "
          f"patterns(2+) {figures['patterns']:4d}   [{figures['photos']} photos, {figures['empty']} empty; "
          f"run {report['wall_seconds']:.0f} s]", flush=True)
    if top:
        print(f"        most supported 2+ patterns: {top}", flush=True)


def print_folders(name: str, sections: dict[str, tuple[int, list[str]]]) -> None:
    richest = sorted(sections.items(), key=lambda s: -s[1][0])[:6]
    print(f"{name:7s} folder summaries: {sum(n for n, _ in sections.values())} patterns of 2+ items in "
          f"{len(sections)} folders ({', '.join(f'{f} {n}' for f, (n, _) in richest)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", type=Path)
    parser.add_argument("--model", default="squeezenet")
    parser.add_argument("--out", type=Path, help="folder for the two runs' outputs (kept); default: a temporary one")
    parser.add_argument("--show", help="the folder whose summary section to print (default: the richest)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pc-measure-objects-"))
    before, after = out / "before-imagenet", out / "after-both"
    for folder in (before, after):
        if folder.exists():
            shutil.rmtree(folder)  # fresh runs: only outputs this script made live here
    defaults = PatternOptions()
    print(f"library {args.library}, model {args.model}, threshold {defaults.threshold}, "
          f"min-support {defaults.min_support}; outputs in {out}", flush=True)

    report = run_cli(args.library, before, args.model, "imagenet")
    print_figures("before", report, library_figures(before))
    print_folders("before", folder_sections(before))
    after.mkdir(parents=True)
    shutil.copy2(before / "fingerprints.pk", after / "fingerprints.pk")  # fingerprints shared, detector runs alone
    report = run_cli(args.library, after, args.model, "both")
    if report["detected_earlier_photos"] + report["fingerprinted"] != report["photos"]:
        print(f"warning: {report['detected_earlier_photos']} photos detected, {report['fingerprinted']} "
              f"fingerprinted, of {report['photos']}", flush=True)
    print_figures("after", report, library_figures(after))

    sections = folder_sections(after)
    print_folders("after", sections)
    choice = args.show or max(sections, key=lambda f: sections[f][0], default=None)
    if choice in sections:
        print(f"\n--- {after / PATTERNS_DIR / choice / SUMMARY}, section '{SECTION}':")
        print("\n".join(sections[choice][1]).rstrip())


if __name__ == "__main__":
    main()
