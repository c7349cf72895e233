#!/usr/bin/env python3
"""What --index-objects costs: the object index step on real photos with the real SqueezeNet and CenterNet.

Copies the devset's album/ and nature/ (and, when there, Scratch's kitchen from the extras) into a temporary
library, runs photocluster on it once without the index (fingerprints and detections), then once with
--index-objects, and prints the index step's time per indexed photo and per object, beside what fingerprinting
(decode, SqueezeNet and CenterNet) cost per photo in the first run. The model load is timed apart and left out of
the per-photo figure. Needs the devset (scripts/get_test_photos.py) and both models' weights.

Usage: python scripts/bench_objects.py [--dir /tmp]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from photocluster import models  # noqa: E402
from photocluster.pipeline import run_once  # noqa: E402
from photocluster.settings import LibrarySettings, PatternOptions  # noqa: E402


def photos_dir(*flags: str) -> Path:
    done = subprocess.run([sys.executable, str(ROOT / "scripts/get_test_photos.py"), *flags], check=True,
                          capture_output=True, text=True)
    return Path(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    devset = photos_dir()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        lib = Path(tmp) / "lib"
        for part in ("album", "nature"):
            shutil.copytree(devset / part, lib / part)
        shutil.copyfile(photos_dir("--extras") / "kitchen.jpg", lib / "album" / "kitchen.jpg")
        settings = LibrarySettings(library=lib, model="squeezenet", verify=False,
                                   patterns=PatternOptions(objects="detector"))
        first = run_once(settings, progress=False)
        fp = first.fingerprinted
        started = time.perf_counter()
        models.load_fingerprinter("squeezenet")
        load = time.perf_counter() - started
        settings.index_objects = True
        objects = run_once(settings, progress=False).objects
    step = objects.seconds - load
    print(f"{first.photos} photos; fingerprinting with detection: {fp.seconds / fp.computed * 1000:.0f} ms/photo")
    print(f"--index-objects: {objects.objects} objects in {objects.photos} photos (the others had none big "
          f"enough); {step:.2f} s after a {load:.1f} s model load = {step / max(1, objects.photos) * 1000:.0f} ms "
          f"per indexed photo, {step / max(1, objects.objects) * 1000:.0f} ms per object, "
          f"{step / first.photos * 1000:.0f} ms per library photo")


if __name__ == "__main__":
    main()
