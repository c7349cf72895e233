#!/usr/bin/env python3
"""What the object detector costs: per-photo time of fingerprinting only vs fingerprinting plus detection.

    .venv/bin/python scripts/bench_detection.py DEVSET [--photos 120] [--models vgg16,squeezenet] [--repeat 1]
                                                [--runtimes openvino,tensorflow] [--skip-alone]

Takes --photos photos spread evenly over DEVSET (hard links, or copies, in a temporary library: photocluster does
not follow symlinks it did not make) and, for each model, runs the real CLI in a fresh process into a fresh --out:
    fingerprint only        --objects imagenet   (no detector is loaded or run)
    fingerprint + detection --objects both       (the default: CenterNet on the same decode, batched)
VGG16 with --weights random (the same arithmetic as its ImageNet weights, which are not available offline),
SqueezeNet with its ImageNet weights. --verify off, so the rest of the run is small and the same in both.

Per run it prints:
    wall     seconds of the whole process, start-up (Python, TensorFlow, model loads) included, and per photo;
    stage    the report's fingerprint stage (--json "seconds.fingerprint": model loads plus fingerprinting);
    steady   per photo, from the fingerprinting loop alone (last-run.json's images_per_second: decode, model and
             detector, no loading);
and, per model, the ratios plus-detection / fingerprint-only. Issue 13's target: with VGG16, detection adds at most
35% to the fingerprint stage. Then the detector alone, in this process, on each runtime (OpenVINO, the default,
and TensorFlow): load time (and for OpenVINO the one-off conversion of its IR), and ms per photo at batch 1 on
photos decoded beforehand.

Timings on a shared machine are noisy: compare the ratios, and rerun with --repeat for medians.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import measure_objects  # noqa: E402 - its run of the CLI

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
MODES = {"fingerprint only": "imagenet", "fingerprint + detection": "both"}


def sample_library(devset: Path, count: int, folder: Path) -> list[Path]:
    """`count` photos spread evenly over devset's sorted photos, linked flat into `folder`."""
    photos = sorted(p for p in devset.rglob("*") if p.is_file() and not p.is_symlink()
                    and p.suffix.lower() in PHOTO_SUFFIXES)
    if len(photos) < count:
        sys.exit(f"{devset} holds {len(photos)} photos, fewer than --photos {count}")
    chosen = [photos[i * len(photos) // count] for i in range(count)]
    folder.mkdir(parents=True, exist_ok=True)
    linked = []
    for photo in chosen:
        target = folder / photo.relative_to(devset).as_posix().replace("/", "__")
        try:
            os.link(photo, target)
        except OSError:
            shutil.copy2(photo, target)
        linked.append(target)
    return linked


def run_cli(library: Path, out: Path, model: str, objects: str, runtime: str) -> dict[str, float]:
    random = ["--weights", "random"] if model == "vgg16" else []
    report = measure_objects.run_cli(library, out, model, objects, "--runtime", runtime, *random)
    rate = json.loads((out / "last-run.json").read_text())["images_per_second"]
    return {"photos": report["fingerprinted"], "wall": report["wall_seconds"],
            "stage": report["seconds"]["fingerprint"], "steady": 1 / rate}


def bench_model(model: str, runtime: str, library: Path, scratch: Path, repeat: int) -> None:
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for i in range(repeat):  # the modes alternate, so that a change in the machine's load hits both alike
        for mode, objects in MODES.items():
            out = scratch / f"out-{model}-{runtime}-{objects}-{i}"  # a fresh output folder: every photo is fingerprinted
            runs[mode].append(run_cli(library, out, model, objects, runtime))
            shutil.rmtree(out)
    results = {mode: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for mode, rs in runs.items()}
    for mode, r in results.items():
        n = r["photos"]
        print(f"  {model:10s} {runtime:10s} {mode:24s} wall {r['wall']:6.1f} s = {1000 * r['wall'] / n:6.1f} ms/photo   "
              f"stage {r['stage']:6.1f} s = {1000 * r['stage'] / n:6.1f} ms/photo   "
              f"steady {1000 * r['steady']:6.1f} ms/photo   ({n:.0f} photos, median of {repeat})", flush=True)
    only, plus = results["fingerprint only"], results["fingerprint + detection"]
    ratios = {key: plus[key] / only[key] for key in ("wall", "stage", "steady")}
    added_ms = 1000 * (plus["steady"] - only["steady"])
    print(f"  {model:10s} {runtime:10s} plus/only: wall x{ratios['wall']:.2f}   stage x{ratios['stage']:.2f}   "
          f"steady x{ratios['steady']:.2f}  -> detection adds {ratios['steady'] - 1:+.0%} to the steady fingerprint "
          f"stage ({added_ms:+.1f} ms/photo), {ratios['stage'] - 1:+.0%} with model loads"
          + ("   [target for VGG16: at most +35%]" if model == "vgg16" else ""), flush=True)
    steady = {mode: " ".join(f"{1000 * r['steady']:.0f}" for r in rs) for mode, rs in runs.items()}
    print(f"  {model:10s} {runtime:10s} each run's steady ms/photo: " + "; ".join(f"{m}: {v}" for m, v in steady.items()), flush=True)


def bench_detector_alone(paths: list[Path], scratch: Path) -> None:
    """The detector on each runtime, in this process: OpenVINO first (from its stored IR, before anything imports
    TensorFlow), then the IR's conversion into a scratch weights folder, then TensorFlow."""
    from photocluster import weights
    from photocluster.detector import INPUT_SIZE, load_detector
    from photocluster.images import load_image
    from photocluster.networks import quiet_start_up

    started = time.perf_counter()
    images = [load_image(path, (INPUT_SIZE, INPUT_SIZE)) for path in paths]
    decode_ms = 1000 * (time.perf_counter() - started) / len(paths)
    print(f"  decode to {INPUT_SIZE}x{INPUT_SIZE} alone: {decode_ms:.1f} ms/photo, one thread", flush=True)
    load_detector()  # makes sure the IR is stored, so that the next load is the one every later run pays
    loaded = _timed(load_detector)
    time_detector("openvino", f"load {loaded:.2f} s (the stored IR, no TensorFlow)", _timed(load_detector, True), images)
    started = time.perf_counter()
    with quiet_start_up():  # TensorFlow's start-up lines hidden, as the CLI hides them
        import tensorflow as tf  # noqa: F401  (imported here to time it apart from the model load)
    imported = time.perf_counter() - started
    centernet_files = weights.npm_weights_dir(weights.CENTERNET)
    os.environ["PHOTOCLUSTER_WEIGHTS_DIR"] = str(scratch / "fresh-weights")  # no IR there: it converts
    converted = _timed(lambda: load_detector(centernet_files))
    del os.environ["PHOTOCLUSTER_WEIGHTS_DIR"]
    print(f"  openvino first load, converting the IR: {converted:.2f} s (TensorFlow already imported)", flush=True)
    loaded = _timed(lambda: load_detector(runtime="tensorflow"))
    time_detector("tensorflow", f"import {imported:.1f} s, load {loaded:.2f} s",
                  _timed(lambda: load_detector(runtime="tensorflow"), True), images)


def _timed(call, keep: bool = False):
    started = time.perf_counter()
    result = call()
    return result if keep else time.perf_counter() - started


def time_detector(runtime: str, loading: str, detector, images) -> None:
    started = time.perf_counter()
    detector.detect(images[0][None])  # TensorFlow traces the graph on the first call
    first = time.perf_counter() - started
    times = []
    for image in images:
        started = time.perf_counter()
        detector.detect(image[None])
        times.append(1000 * (time.perf_counter() - started))
    print(f"  detector alone on {runtime}: {loading}, first call {first:.2f} s; batch 1 on {len(times)} photos: "
          f"median {statistics.median(times):.1f} ms, mean {statistics.fmean(times):.1f} ms/photo", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devset", type=Path)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--models", default="vgg16,squeezenet")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the median is printed")
    parser.add_argument("--runtimes", default="openvino,tensorflow", help="the CLI's --runtime for each set of runs")
    parser.add_argument("--skip-alone", action="store_true", help="leave out the detector-alone figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pc-bench-detection-") as scratch_name:
        scratch = Path(scratch_name)
        paths = sample_library(args.devset, args.photos, scratch / "library")
        mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        load = os.getloadavg()
        print(f"{len(paths)} photos from {args.devset} (mean {mb:.1f} MB); cpus={os.cpu_count()}, load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work shares the machine: compare ratios)", flush=True)
        for runtime in args.runtimes.split(","):
            for model in args.models.split(","):
                bench_model(model, runtime, scratch / "library", scratch, args.repeat)
        if not args.skip_alone:
            bench_detector_alone(paths, scratch)


if __name__ == "__main__":
    main()
