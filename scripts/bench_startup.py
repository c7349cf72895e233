#!/usr/bin/env python3
"""Start-up: from the command's start to the first fingerprint, with the weights and the OpenVINO IR present.

For SqueezeNet (ImageNet weights) and VGG16 (random weights, the same arithmetic as ImageNet's, no download), on
runtime openvino and tensorflow, this runs in a fresh process, --repeat times (medians), on a library of ONE
12-megapixel JPEG (a fresh --out each time, so the photo is fingerprinted every time):

    python -m photocluster LIB --model M --weights W --runtime R --out OUT --verify off --objects imagenet
                           --no-gallery --json

and prints:
  to exit             wall time from spawning the process to its exit (Python start, imports, model load, decode,
                      the fingerprint, then clustering, the symlinks, the pattern summaries, the JSON);
  to first fp         to exit minus the stages after fingerprinting that the run's own --json "seconds" reports
                      (cache_save, scenes, cluster, layout, patterns): the time until the fingerprint is in hand,
                      give or take Python's exit;
  fingerprint stage   the --json "seconds"/"fingerprint": model load + decode + the model's first call.
It also times a run with nothing new to fingerprint (the same library again, same OUT): what every run pays before
it knows whether there is work, and the interpreter alone (python -c pass) for scale.

An untimed run of each model and runtime first makes sure the weights and the IR exist and the files are cached.

Usage: python scripts/bench_startup.py [--repeat 5] [--models squeezenet,vgg16] [--runtimes openvino,tensorflow]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from bench_fingerprint import make_photos  # noqa: E402

AFTER_FINGERPRINT = ("cache_save", "detect", "objects", "scenes", "cluster", "layout", "patterns", "gallery")
WEIGHTS = {"squeezenet": "imagenet", "vgg16": "random"}


def timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def cli(library: Path, out: Path, model: str, runtime: str) -> tuple[float, str]:
    return timed("-m", "photocluster", str(library), "--model", model, "--weights", WEIGHTS[model],
                 "--runtime", runtime, "--out", str(out), "--verify", "off", "--objects", "imagenet",
                 "--no-gallery", "--json")


def one_start(library: Path, model: str, runtime: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        out = Path(tmp) / "out"
        wall, stdout = cli(library, out, model, runtime)
        report = json.loads(stdout)
        assert report["fingerprinted"] == 1, report
        seconds = report["seconds"]
        idle_wall, idle_stdout = cli(library, out, model, runtime)  # nothing new now
        assert json.loads(idle_stdout)["fingerprinted"] == 0
    return {"exit": wall, "first": wall - sum(seconds.get(k, 0.0) for k in AFTER_FINGERPRINT),
            "stage": seconds["fingerprint"], "idle": idle_wall, "runtime": report["runtime"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", default="squeezenet,vgg16")
    parser.add_argument("--runtimes", default="openvino,tensorflow")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pc-bench-jpegs"))
    args = parser.parse_args()
    photo = make_photos(args.dir, 1)[0]  # IMG_0000_12MP.JPG
    library = args.dir / "lib-startup"
    library.mkdir(exist_ok=True)
    if not (library / photo.name).exists():
        (library / photo.name).hardlink_to(photo)
    cases = [(m, r) for m in args.models.split(",") for r in args.runtimes.split(",")]
    for model, runtime in cases:
        one_start(library, model, runtime)  # untimed: weights and IR present, files cached
    python_alone = statistics.median(timed("-c", "pass")[0] for _ in range(args.repeat))
    runs: dict[tuple[str, str], list[dict]] = {case: [] for case in cases}
    for _ in range(args.repeat):
        for case in cases:  # interleaved: the machine's other load hits every case alike
            runs[case].append(one_start(library, *case))
    print(f"one 12 MP JPEG, median of {args.repeat} fresh processes; `python -c pass` alone: {python_alone:.2f} s")
    print(f"{'model':10s} {'runtime':14s} {'to first fp':>11s} {'to exit':>8s} {'fp stage':>9s} {'nothing new':>12s}")
    for (model, _), found in runs.items():
        med = {k: statistics.median(r[k] for r in found) for k in ("first", "exit", "stage", "idle")}
        print(f"{model:10s} {found[0]['runtime']:14s} {med['first']:10.2f}s {med['exit']:7.2f}s "
              f"{med['stage']:8.2f}s {med['idle']:11.2f}s", flush=True)
    print("targets (openvino): SqueezeNet to first fingerprint <= 1.5 s, VGG16 <= 3 s")


if __name__ == "__main__":
    main()
