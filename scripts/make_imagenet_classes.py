#!/usr/bin/env python3
"""Regenerate photocluster/data/imagenet_classes.json, the 1000 ImageNet class names.

Keras's decode_predictions downloads its class list at run time; photocluster must work
offline, so the list ships with the package. The source is the timm wheel on PyPI, which
carries the ILSVRC-2012 synsets and their WordNet lemmas as text files. timm is only
downloaded into a temporary folder (pip download --no-deps), never installed.

Output: [[wnid, short_name], ...] in Keras class-index order, which is sorted wnid order.
short_name is the first WordNet lemma with spaces turned into underscores, the same
spelling Keras's imagenet_class_index.json uses ("tabby", "tiger_cat", "Egyptian_cat").

Usage: python scripts/make_imagenet_classes.py [--wheel TIMM_WHEEL] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster.fsutil import write_text_atomic  # noqa: E402

TIMM_REQUIREMENT = "timm==1.0.31"
SYNSETS_MEMBER = "timm/data/_info/imagenet_synsets.txt"
LEMMAS_MEMBER = "timm/data/_info/imagenet_synset_to_lemma.txt"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "photocluster" / "data" / "imagenet_classes.json"

# Fixed points of the Keras class index, checked so a changed source cannot slip through.
KNOWN_INDICES = {0: ("n01440764", "tench"), 281: ("n02123045", "tabby"),
                 282: ("n02123159", "tiger_cat"), 285: ("n02124075", "Egyptian_cat"),
                 999: ("n15075141", "toilet_tissue")}


def download_timm_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-d", str(folder), TIMM_REQUIREMENT], check=True)
    return next(folder.glob("timm-*.whl"))


def build_classes(wheel: Path) -> list[list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        wnids = archive.read(SYNSETS_MEMBER).decode().split()
        lemma_lines = archive.read(LEMMAS_MEMBER).decode().splitlines()
    lemmas = dict(line.split("\t", 1) for line in lemma_lines if "\t" in line)
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise SystemExit(f"expected 1000 distinct synsets, got {len(wnids)}")
    wnids.sort()  # Keras's class index is the sorted wnid order
    classes = [[wnid, lemmas[wnid].split(",")[0].strip().replace(" ", "_")] for wnid in wnids]
    for index, expected in KNOWN_INDICES.items():
        if tuple(classes[index]) != expected:
            raise SystemExit(f"class {index} is {classes[index]}, expected {list(expected)}")
    return classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="an already downloaded timm wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or download_timm_wheel(Path(scratch))
        classes = build_classes(wheel)
    # One class per line keeps the file diff-friendly.
    body = ",\n".join(json.dumps(pair, ensure_ascii=False) for pair in classes)
    write_text_atomic(args.out, f"[\n{body}\n]\n")


if __name__ == "__main__":
    main()
