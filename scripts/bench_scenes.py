#!/usr/bin/env python3
"""What scene verification costs (issue 12): a first run with it against one without, a re-run, and 100,000 photos.

    .venv/bin/python scripts/build_scene_set.py /tmp/scene_set
    .venv/bin/python scripts/bench_scenes.py "$(.venv/bin/python scripts/get_test_photos.py)" /tmp/scene_set

The library is the devset plus the scene set (hard links, else copies, in a temporary folder). Each run is the
real CLI in a fresh process (model start-up included), into a fresh output folder, measured by wall clock:
  1. SqueezeNet, --verify off --burst-seconds 0: today's first run;
  2. SqueezeNet with verification (the defaults): the same first run plus the scenes stage;
  3. runs 2 and 1 again, nothing changed: verification or not, they skip the clustering as before;
  4. VGG16 (--weights random: the same arithmetic as the ImageNet weights, which cannot be fetched offline),
     verification off; and 5. the same with verification. Random weights give random fingerprints, so run 5's
     candidates say nothing about VGG16's; the VGG16 ratio is also given as run 4 plus the scenes stage of run 2
     (the candidates of real, calibrated fingerprints), which is the figure the target is about.
Then the 100,000-photo estimate from the per-photo and per-pair costs measured in run 2, with k = 10 candidates a
photo, and the descriptor store's size from the bytes per photo.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster import verify  # noqa: E402
from photocluster.library import is_photo_name  # noqa: E402

ESTIMATE_PHOTOS, ESTIMATE_K = 100_000, 10


def link_tree(source: Path, dest: Path) -> int:
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.is_symlink() and is_photo_name(path.name):
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                target.write_bytes(path.read_bytes())
            count += 1
    return count


def run(library: Path, out: Path, *options: str) -> tuple[float, dict]:
    command = [sys.executable, "-m", "photocluster", str(library), "--out", str(out), "--json", "--no-patterns",
               *options]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return wall, json.loads(done.stdout)


def feature_bytes(out: Path) -> list[int]:
    return [p.stat().st_size for p in (out / "scenes" / "features").rglob("*") if p.is_file() and p.name[0] != "."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devset", type=Path)
    parser.add_argument("scene_set", type=Path)
    parser.add_argument("--skip-vgg16", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "library"
        photos = link_tree(args.devset, lib / "devset") + link_tree(args.scene_set, lib / "scenes")
        print(f"library: {photos} photos (devset + scene set); {os.cpu_count()} CPUs")
        off = ("--verify", "off", "--burst-seconds", "0")
        s_off, _ = run(lib, Path(tmp) / "s-off", "--model", "squeezenet", *off)
        s_on, on = run(lib, Path(tmp) / "s-on", "--model", "squeezenet")
        s_again, again = run(lib, Path(tmp) / "s-on", "--model", "squeezenet")
        s_off_again, _ = run(lib, Path(tmp) / "s-off", "--model", "squeezenet", *off)
        scenes = on["scenes"]
        stage = on["seconds"].get("scenes", 0.0)
        print(f"SqueezeNet first run: verification off {s_off:.1f} s, on {s_on:.1f} s: {s_on / s_off:.2f}x "
              f"(scenes stage {stage:.1f} s: {scenes})")
        print(f"SqueezeNet re-run, nothing changed: {s_again:.1f} s (verification off: {s_off_again:.1f} s), scenes stage "
              f"{'skipped' if again['scenes'] is None else again['scenes']}")
        if not args.skip_vgg16:
            v_off, _ = run(lib, Path(tmp) / "v-off", "--model", "vgg16", "--weights", "random", *off)
            v_on, v = run(lib, Path(tmp) / "v-on", "--model", "vgg16", "--weights", "random")
            print(f"VGG16 first run: verification off {v_off:.1f} s; with SqueezeNet's scenes stage added "
                  f"{v_off + stage:.1f} s: {(v_off + stage) / v_off:.2f}x; measured with random weights "
                  f"{v_on:.1f} s: {v_on / v_off:.2f}x (its candidates: {v['scenes']})")
        sizes = feature_bytes(Path(tmp) / "s-on")
        estimate(scenes, sizes, photos)


def estimate(scenes: dict, sizes: list[int], photos: int) -> None:
    seconds = scenes["seconds"]
    per_photo = seconds.get("features", 0.0) / max(1, scenes["features_now"])
    per_pair = seconds.get("pairs", 0.0) / max(1, scenes["verified_now"])
    pairs = ESTIMATE_PHOTOS * ESTIMATE_K  # the most: no two photos list each other
    mean = sum(sizes) / max(1, len(sizes))
    print(f"measured (wall, {os.cpu_count()} CPUs): {per_photo * 1000:.0f} ms a photo for features, "
          f"{per_pair * 1000:.1f} ms a pair; candidates {scenes['candidates'] / photos:.1f} pairs a photo; "
          f"features of {scenes['features_now']} photos, {scenes['verified_now']} pairs verified")
    print(f"{ESTIMATE_PHOTOS:,} photos, k = {ESTIMATE_K}: at most {pairs:,} candidate pairs; features "
          f"{ESTIMATE_PHOTOS * per_photo / 60:.0f} min + pairs {pairs * per_pair / 60:.0f} min = "
          f"{(ESTIMATE_PHOTOS * per_photo + pairs * per_pair) / 3600:.1f} h on the first run")
    print(f"descriptor store: {mean / 1000:.1f} KB a photo measured (bound {verify.MAX_KEYPOINTS * 132 / 1000:.0f} KB"
          f" + the path), so about {ESTIMATE_PHOTOS * mean / 1e9:.1f} GB at {ESTIMATE_PHOTOS:,} photos (at most "
          f"{ESTIMATE_PHOTOS * (verify.MAX_KEYPOINTS * 132 + 200) / 1e9:.1f} GB); verdicts 41 bytes a pair: "
          f"{pairs * 41 / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
