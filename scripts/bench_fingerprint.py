#!/usr/bin/env python3
"""Fingerprint speed, end to end and including start-up: photocluster's CLI against imagecluster's real flow.

Generates (once, reused afterwards) noisy 12- and 24-megapixel JPEGs with EXIF, links the first --images of them
into one library folder, and then times, each side in a fresh process (Python start, imports, model load, decode,
fingerprints, clustering), interleaved, --repeat times (medians):

  photocluster/openvino     python -m photocluster LIB --model vgg16 --weights random --out OUT --verify off
                            --objects imagenet --no-gallery --json            (the default runtime)
  photocluster/tensorflow   the same with --runtime tensorflow
  imagecluster              elcorto/imagecluster's flow (imagecluster/io.py get_image_data, imagecluster/calc.py
                            fingerprints and cluster, as of commit 687fa35), re-written here: its imports at start,
                            io.read_images decodes every photo in a multiprocessing.Pool(cpu_count()) (full PIL decode,
                            convert('RGB'), resize((224, 224), resample=3), no draft; img_to_array(dtype=int)),
                            pickles the arrays, builds Keras VGG16 fc2 (weights=None: random weights, the same
                            arithmetic as ImageNet's), calls model.predict once per image (vgg16.preprocess_input
                            first), pickles the fingerprints, reads the EXIF timestamps in a second Pool, and clusters
                            (scipy linkage, fcluster at sim=0.5), as examples/example_api_minimal.py does; its
                            pickles go to a scratch folder, not into the library.

For each side it prints the wall time including start-up and images/s from it, and the steady-state rate
separately: photocluster's is the one its run records in OUT/last-run.json (photos / seconds of
fingerprint_photos, after the model is loaded); imagecluster's is photos / (decode pool + predict loop), without its
imports and model build. Then, in another fresh process, the runtime's model-only rate (OpenVINO on ready uint8
tensors, best of --batch-sizes), so that steady / model-only says how much of the model's limit the pipeline
reaches. With --squeezenet also SqueezeNet's end-to-end rate through the CLI beside photocluster's decode rate
alone (draft decode + EXIF orientation + resize, on decode_threads() threads), since SqueezeNet is decode-bound.

A warm-up run of photocluster (untimed) first makes sure the OpenVINO IR exists and the photos are in the page
cache, so every timed run reads the same files from memory.

Usage: python scripts/bench_fingerprint.py [--images 100] [--repeat 3] [--squeezenet] [--batch-sizes 1,8,16,32]
                                           [--sides photocluster/openvino,photocluster/tensorflow,imagecluster]
                                           [--dir /tmp/pc-bench-jpegs]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SIZES = {"12MP": (4000, 3000), "24MP": (6000, 4000)}
SIDES = ("photocluster/openvino", "photocluster/tensorflow", "imagecluster")


# --- test photos ----------------------------------------------------------------------------------------------

def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Half 12 MP, half 24 MP; smooth scene-like content plus sensor noise, quality 92, EXIF like a camera's."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        label = "12MP" if i % 2 == 0 else "24MP"
        path = folder / f"IMG_{i:04d}_{label}.JPG"
        paths.append(path)
        if path.exists():
            continue
        width, height = SIZES[label]
        # A coarse random scene upscaled (smooth regions and edges), then per-pixel noise as a sensor adds.
        scene = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(scene, np.int16) + rng.normal(0, 6, (height, width, 1)).astype(np.int16)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[0x0112] = "BenchCam", "Model 24", (6 if i % 5 == 0 else 1)
        exif.get_ifd(0x8769)[0x9003] = f"2024:06:{1 + i % 28:02d} 12:00:{i % 60:02d}"
        tmp = path.with_suffix(".tmp")
        img.save(tmp, "JPEG", quality=92, exif=exif)
        os.replace(tmp, path)
    return paths


def library_of(paths: list[Path]) -> Path:
    """A folder holding exactly these photos (hard links), so both sides see the same N photos."""
    lib = paths[0].parent / f"lib-{len(paths)}"
    lib.mkdir(exist_ok=True)
    for path in paths:
        if not (lib / path.name).exists():
            os.link(path, lib / path.name)
    return lib


# --- imagecluster's flow, run as a child process (--imagecluster-flow LIB SCRATCH) ---------------------------

def _ic_decode(filename: str, size: tuple[int, int]):
    """io._image_worker: open, convert('RGB'), resize(size, resample=3), img_to_array(dtype=int)."""
    import PIL.Image
    from tensorflow.keras.preprocessing import image

    try:
        print(filename)
        img = PIL.Image.open(filename).convert("RGB").resize(size, resample=3)
        return filename, image.img_to_array(img, dtype=int)
    except OSError as ex:
        print(f"skipping {filename}: {ex}")
        return filename, None


def _ic_timestamp(filename: str):
    """io._timestamp_worker with source='auto': EXIF DateTime (tag 306), else the file's mtime."""
    import datetime

    import PIL.Image

    try:
        exif = PIL.Image.open(filename)._getexif() or {}
        if 306 in exif:
            parts = exif[306].replace(":", " ").split()
            return filename, datetime.datetime(*map(int, parts), tzinfo=datetime.timezone.utc).timestamp()
        return filename, os.stat(filename).st_mtime
    except OSError:
        return filename, None


def imagecluster_flow(library: Path, scratch: Path) -> None:
    import functools
    import importlib
    import multiprocessing as mp
    import pickle
    import re

    started = time.perf_counter()
    # imagecluster's imports (calc.py, io.py, postproc.py): TensorFlow/Keras, scipy, scikit-learn, matplotlib.
    for unused_here in ("matplotlib.pyplot", "sklearn.decomposition"):  # postproc.py's plots, calc.py's PCA
        importlib.import_module(unused_here)
    from scipy.cluster import hierarchy
    from scipy.spatial import distance
    from tensorflow.keras.applications.vgg16 import VGG16, preprocess_input
    from tensorflow.keras.models import Model

    imported = time.perf_counter()
    rex = re.compile(r"^.*\.(jpg|jpeg|bmp|png)$", re.I)
    files = [os.path.join(library, base) for base in os.listdir(library) if rex.match(base)]
    with mp.Pool(mp.cpu_count()) as pool:
        images = {k: v for k, v in pool.map(functools.partial(_ic_decode, size=(224, 224)), files) if v is not None}
    decoded = time.perf_counter()
    with open(scratch / "images.pk", "wb") as fd:
        pickle.dump(images, fd)
    base_model = VGG16(weights=None, include_top=True)
    model = Model(inputs=base_model.input, outputs=base_model.get_layer("fc2").output)
    built = time.perf_counter()
    fingerprints = {}
    for fn, image in images.items():
        print(fn)
        fingerprints[fn] = model.predict(preprocess_input(np.expand_dims(image, axis=0)))[0, :]
    predicted = time.perf_counter()
    with open(scratch / "fingerprints.pk", "wb") as fd:
        pickle.dump(fingerprints, fd)
    with mp.Pool(mp.cpu_count()) as pool:
        timestamps = {k: v for k, v in pool.map(_ic_timestamp, files) if v is not None}
    dfps = distance.pdist(np.array(list(fingerprints.values())), "euclidean")
    cut = hierarchy.fcluster(hierarchy.linkage(dfps, method="average"), t=dfps.max() * 0.5, criterion="distance")
    print(json.dumps({"photos": len(fingerprints), "timestamps": len(timestamps), "clusters": int(cut.max()),
                      "imports": imported - started, "decode": decoded - imported, "model_build": built - decoded,
                      "predict": predicted - built,
                      "steady": len(fingerprints) / (decoded - imported + predicted - built)}))


# --- the model-only and decode-only rates, each in a fresh child process ----------------------------------------

def model_only(name: str, weights: str, runtime: str, batch_sizes: list[int], images: int) -> None:
    from photocluster.models import load_fingerprinter

    model = load_fingerprinter(name, weights, runtime)
    height, width = model.input_size
    rates = {}
    for batch_size in batch_sizes:
        batch = np.random.default_rng(1).integers(0, 256, (batch_size, height, width, 3), np.uint8)
        model.predict(batch)  # warm: the first call allocates
        rounds = max(2, images // batch_size)
        started = time.perf_counter()
        for _ in range(rounds):
            model.predict(batch)
        rates[batch_size] = rounds * batch_size / (time.perf_counter() - started)
    print(json.dumps({"runtime": model.runtime, "rates": rates}))


def decode_only(name: str, library: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from photocluster.fingerprint import decode_threads
    from photocluster.images import load_image
    from photocluster.models import model_spec

    size = model_spec(name).input_size
    paths = sorted(library.glob("*.JPG"))
    started = time.perf_counter()
    with ThreadPoolExecutor(decode_threads()) as pool:
        list(pool.map(lambda p: load_image(p, size), paths))
    print(json.dumps({"threads": decode_threads(), "rate": len(paths) / (time.perf_counter() - started)}))


# --- the parent: fresh processes, interleaved -------------------------------------------------------------------

def child(*args: str, timeout: float = 3600) -> tuple[float, dict]:
    """Run this script or the CLI in a fresh Python; its wall time from spawn to exit, and its last JSON line."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def photocluster_run(library: Path, model: str, weights: str, runtime: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-pc-") as out:
        wall, stdout = child("-m", "photocluster", str(library), "--model", model, "--weights", weights,
                             "--out", out, "--verify", "off", "--objects", "imagenet", "--no-gallery",
                             "--runtime", runtime, "--json")
        report = json.loads(stdout)
        steady = json.loads((Path(out) / "last-run.json").read_text())["images_per_second"]
    return {"photos": report["fingerprinted"], "wall": wall, "steady": steady, "runtime": report["runtime"]}


def imagecluster_run(library: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ic-") as scratch:
        wall, stdout = child(__file__, "--imagecluster-flow", str(library), scratch)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "wall": wall}


def run_side(side: str, library: Path, model: str = "vgg16", weights: str = "random") -> dict:
    if side == "imagecluster":
        return imagecluster_run(library)
    return photocluster_run(library, model, weights, side.split("/")[1])


def summary(side: str, runs: list[dict], n: int) -> dict:
    wall = statistics.median(r["wall"] for r in runs)
    steady = statistics.median(r["steady"] for r in runs)
    extra = ""
    if side == "imagecluster":
        extra = "  (" + ", ".join(f"{k} {statistics.median(r[k] for r in runs):.1f} s"
                                  for k in ("imports", "decode", "model_build", "predict")) + ")"
    elif runs[0].get("runtime"):
        extra = f"  ({runs[0]['runtime']})"
    print(f"  {side:24s} wall incl. start-up {wall:6.1f} s = {n / wall:5.2f} img/s;  steady {steady:5.2f} img/s   "
          f"[walls {', '.join('%.1f' % r['wall'] for r in runs)}]{extra}", flush=True)
    return {"wall": wall, "rate": n / wall, "steady": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="photos in the library (half 12 MP, half 24 MP)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--batch-sizes", default="1,8,16,32", help="model-only batch sizes to try")
    parser.add_argument("--model-images", type=int, default=64, help="images per model-only timing")
    parser.add_argument("--squeezenet", action="store_true", help="also SqueezeNet end to end and decode only")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pc-bench-jpegs"))
    parser.add_argument("--imagecluster-flow", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-only", nargs=3, metavar=("MODEL", "WEIGHTS", "RUNTIME"), help=argparse.SUPPRESS)
    parser.add_argument("--decode-only", nargs=2, metavar=("MODEL", "LIBRARY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.imagecluster_flow:
        return imagecluster_flow(*args.imagecluster_flow)
    sys.path.insert(0, str(REPO))
    if args.model_only:
        return model_only(*args.model_only, [int(b) for b in args.batch_sizes.split(",")], args.model_images)
    if args.decode_only:
        return decode_only(args.decode_only[0], Path(args.decode_only[1]))
    bench(args)


def bench(args) -> None:
    from photocluster.fingerprint import decode_threads

    started = time.perf_counter()
    paths = make_photos(args.dir, args.images)
    library = library_of(paths)
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    n = len(paths)
    print(f"{n} photos in {library} (mean {mb:.1f} MB; made/checked in {time.perf_counter() - started:.0f} s); "
          f"cpus={os.cpu_count()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    sides = args.sides.split(",")
    if any(s.startswith("photocluster") for s in sides):
        run_side("photocluster/openvino", library)  # untimed: the IR exists and the photos are cached afterwards
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeat):
        for side in sides:  # interleaved, so a change in the machine's other load hits every side alike
            runs[side].append(run_side(side, library))
            assert runs[side][-1]["photos"] == n, runs[side][-1]
    print(f"VGG16 (random weights), {n} photos, median of {args.repeat}, each run a fresh process:", flush=True)
    figures = {side: summary(side, runs[side], n) for side in sides}
    only = model_only_rates("vgg16", "random", "openvino", args)
    best = max(only["rates"], key=only["rates"].get)
    decode = statistics.median(json.loads(child(__file__, "--decode-only", "vgg16", str(library))[1])["rate"]
                               for _ in range(args.repeat))
    print(f"  decode only (photocluster's decode, {decode_threads()} threads): {decode:.2f} img/s", flush=True)
    if "photocluster/openvino" in figures and "imagecluster" in figures:
        ours, theirs = figures["photocluster/openvino"], figures["imagecluster"]
        print(f"  => end to end incl. start-up: photocluster/openvino / imagecluster = "
              f"{ours['rate'] / theirs['rate']:.2f}x"
              f"  (target >= 3);  steady: {ours['steady'] / theirs['steady']:.2f}x", flush=True)
        print(f"  => steady / model-only (best batch {best}, {only['rates'][best]:.2f} img/s) = "
              f"{ours['steady'] / only['rates'][best]:.2f}  (target >= 0.9)", flush=True)
        # Decoding and the model share the same cores: each photo costs 1/decode + 1/model seconds of the whole
        # machine, so with both busy the pipeline can reach at most this rate (more cores than the model uses, or
        # an accelerator, would lift it towards the model-only rate).
        shared = 1 / (1 / only["rates"][best] + 1 / decode)
        print(f"  => steady / shared-cores bound 1/(1/model-only + 1/decode-only) = {shared:.2f} img/s: "
              f"{ours['steady'] / shared:.2f}", flush=True)
    if "photocluster/tensorflow" in figures and "imagecluster" in figures:
        print(f"  => photocluster/tensorflow / imagecluster, incl. start-up: "
              f"{figures['photocluster/tensorflow']['rate'] / figures['imagecluster']['rate']:.2f}x", flush=True)
    if "photocluster/tensorflow" in figures:  # where the model, not the decode, is the slower of the two
        tf_only = model_only_rates("vgg16", "random", "tensorflow", args)
        tf_best = max(tf_only["rates"], key=tf_only["rates"].get)
        print(f"  => tensorflow: steady / model-only (best batch {tf_best}, {tf_only['rates'][tf_best]:.2f} img/s) = "
              f"{figures['photocluster/tensorflow']['steady'] / tf_only['rates'][tf_best]:.2f}", flush=True)
    if args.squeezenet:
        bench_squeezenet(args, library, n)


def model_only_rates(model: str, weights: str, runtime: str, args) -> dict:
    """The runtime's model-only rates by batch size, measured in a fresh process, and printed."""
    _, stdout = child(__file__, "--model-only", model, weights, runtime, "--batch-sizes", args.batch_sizes,
                      "--model-images", str(args.model_images))
    only = json.loads(stdout.strip().splitlines()[-1])
    print(f"  model-only {only['runtime']}: " + ", ".join(f"batch {b} {r:.2f}" for b, r in only["rates"].items())
          + " img/s", flush=True)
    return only


def bench_squeezenet(args, library: Path, n: int) -> None:
    runs, decodes = [], []
    for _ in range(args.repeat):
        runs.append(photocluster_run(library, "squeezenet", "imagenet", "openvino"))
        decodes.append(json.loads(child(__file__, "--decode-only", "squeezenet", str(library))[1])["rate"])
    _, stdout = child(__file__, "--model-only", "squeezenet", "imagenet", "openvino", "--batch-sizes",
                      args.batch_sizes, "--model-images", str(args.model_images))
    only = json.loads(stdout.strip().splitlines()[-1])
    wall = statistics.median(r["wall"] for r in runs)
    print(f"SqueezeNet, {n} photos, median of {args.repeat}, photocluster CLI ({runs[0]['runtime']}):\n"
          f"  end to end incl. start-up {wall:.1f} s = {n / wall:.2f} img/s; steady "
          f"{statistics.median(r['steady'] for r in runs):.2f} img/s; decode only "
          f"{statistics.median(decodes):.2f} img/s; model-only best {max(only['rates'].values()):.2f} img/s",
          flush=True)


if __name__ == "__main__":
    main()
