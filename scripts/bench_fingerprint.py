#!/usr/bin/env python3
"""Fingerprint throughput, end to end: decode plus inference on camera-like JPEGs.

Generates (once, reused afterwards) noisy 12- and 24-megapixel JPEGs with EXIF (camera make/model, orientation,
DateTimeOriginal), then prints three figures per model:

  (a) photocluster    images/s through photocluster.fingerprint.fingerprint_photos with a real FingerprintCache
                      and real decoding (JPEG draft mode, decode threads overlapping the model);
  (b) model-only      images/s of the same model on ready-made uint8 input tensors, at the best batch size;
  (c) baseline        imagecluster's way: full decode + bicubic resize (PIL, no draft), one Keras `predict`
                      per image;

and the ratios (a)/(b) (how much of the model's limit the pipeline reaches) and (a)/(c) (speed-up over the
baseline). Random weights ("random": same arithmetic as ImageNet weights) so no download is needed.
Each figure is the median of --repeat runs; the machine's other load makes single timings noisy.

Usage: python scripts/bench_fingerprint.py [--models vgg16,squeezenet] [--images 100] [--baseline-images 20]
                                           [--batch-sizes 8,16,32] [--repeat 3] [--dir /tmp/pc-bench-jpegs]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = {"12MP": (4000, 3000), "24MP": (6000, 4000)}


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


# --- the three measurements -------------------------------------------------------------------------------

def photocluster_rate(model, paths: list[Path], batch_size: int) -> float:
    from photocluster.cache import FingerprintCache
    from photocluster.fingerprint import fingerprint_photos
    from photocluster.library import PhotoFile

    root = paths[0].parent
    photos = [PhotoFile(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    cache = FingerprintCache(model.model_id, model.dim)
    report = fingerprint_photos(photos, root, model, cache, batch_size=batch_size, progress=False)
    assert report.computed == len(photos) and not report.failed, report
    return report.computed / report.seconds


def model_only_rate(model, batch_size: int, images: int) -> float:
    height, width = model.input_size
    batch = np.random.default_rng(1).integers(0, 256, (batch_size, height, width, 3), np.uint8)
    model.predict(batch)  # warm: first call allocates
    rounds = max(1, images // batch_size)
    started = time.perf_counter()
    for _ in range(rounds):
        model.predict(batch)
    return rounds * batch_size / (time.perf_counter() - started)


def baseline_rate(model, paths: list[Path]) -> float:
    """imagecluster's loop: PIL full decode, bicubic resize, keras preprocess_input, one predict per image."""
    from keras.applications import imagenet_utils

    height, width = model.input_size
    keras_model = model.model
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB").resize((width, height), Image.BICUBIC), np.float32)
        keras_model.predict(imagenet_utils.preprocess_input(arr[None], mode="caffe"), verbose=0)
    return len(paths) / (time.perf_counter() - started)


def decode_rate(paths: list[Path], size: tuple[int, int], threads: int) -> float:
    """photocluster's decoding alone (draft mode, EXIF orientation, bilinear resize) on `threads` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from photocluster.images import load_image

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: load_image(p, size), paths))
    return len(paths) / (time.perf_counter() - started)


def median_of(repeat: int, fn, *args) -> float:
    return statistics.median(fn(*args) for _ in range(repeat))


def bench_model(name: str, paths: list[Path], args) -> dict[str, float]:
    from photocluster.models import load_fingerprinter

    model = load_fingerprinter(name, "random")
    model.predict(np.zeros((1, *model.input_size, 3), np.uint8))  # trace the graph once, outside the timings
    pipeline_paths = paths[: args.pipeline_images]
    for threads in (1, 2):
        rate = median_of(args.repeat, decode_rate, pipeline_paths, model.input_size, threads)
        print(f"  {name} decode only, {threads} thread(s): {rate:7.2f} img/s", flush=True)
    by_batch = {b: median_of(args.repeat, model_only_rate, model, b, args.model_images) for b in args.batch_sizes}
    best_batch = max(by_batch, key=by_batch.get)
    for b, rate in by_batch.items():
        print(f"  {name} model-only batch {b:3d}: {rate:7.2f} img/s", flush=True)
    pc_by_batch = {}
    for b in args.pipeline_batch_sizes:
        pc_by_batch[b] = median_of(args.repeat, photocluster_rate, model, pipeline_paths, b)
        print(f"  {name} photocluster batch {b:3d}: {pc_by_batch[b]:7.2f} img/s", flush=True)
    sub = paths[: args.baseline_images]
    base = median_of(args.repeat, baseline_rate, model, sub)
    a = pc_by_batch[args.batch_size]
    b = by_batch[best_batch]
    print(f"{name}: (a) photocluster {a:.2f} img/s (batch {args.batch_size})  (b) model-only {b:.2f} img/s "
          f"(best batch {best_batch})  (c) baseline {base:.2f} img/s  ->  (a)/(b) = {a / b:.2f}  (a)/(c) = {a / base:.2f}",
          flush=True)
    return {"a": a, "b": b, "c": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16,squeezenet")
    parser.add_argument("--images", type=int, default=100, help="test photos (half 12 MP, half 24 MP)")
    parser.add_argument("--pipeline-images", type=int, default=100, help="photos photocluster fingerprints")
    parser.add_argument("--baseline-images", type=int, default=20, help="photos the slow baseline decodes")
    parser.add_argument("--model-images", type=int, default=64, help="images per model-only timing")
    parser.add_argument("--batch-sizes", default="8,16,32", help="model-only batch sizes to try")
    parser.add_argument("--batch-size", type=int, default=None, help="photocluster's batch size (default: its own)")
    parser.add_argument("--pipeline-batch-sizes", default=None, help="extra photocluster batch sizes to time")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pc-bench-jpegs"))
    args = parser.parse_args()
    from photocluster.fingerprint import DEFAULT_BATCH_SIZE, decode_threads

    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    extra = [int(b) for b in args.pipeline_batch_sizes.split(",")] if args.pipeline_batch_sizes else []
    args.pipeline_batch_sizes = sorted({args.batch_size, *extra})
    started = time.perf_counter()
    paths = make_photos(args.dir, args.images)
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    print(f"{len(paths)} photos in {args.dir} (mean {mb:.1f} MB; made/checked in {time.perf_counter() - started:.0f} s); "
          f"cpus={os.cpu_count()} decode_threads={decode_threads()}", flush=True)
    import tensorflow as tf

    print(f"tensorflow {tf.__version__}: intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()} "
          f"inter-op {tf.config.threading.get_inter_op_parallelism_threads()} (0 = all cores); "
          f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}", flush=True)
    for name in args.models.split(","):
        bench_model(name, paths, args)


if __name__ == "__main__":
    main()
