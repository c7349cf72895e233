#!/usr/bin/env python3
"""Regenerate photocluster/data/coco_labels.json, the CenterNet detector's 80 COCO class names in class order.

The names come from src/object/labels.ts of the npm package @vladmandic/human@3.3.6, the file
`photocluster fetch-weights centernet` stores beside the model (checked against its pinned SHA-256). They ship as
package data rather than being read from the weights folder at run time, so that cached detections and pattern
summaries can be named on a machine without the detector's weights (`--objects imagenet`, `photocluster patterns`).

Usage: python scripts/make_coco_labels.py [--labels FILE] [--out FILE]
--labels defaults to labels.ts in the centernet folder of the photocluster weights folder.
Output: {"source": ..., "labels": [name, ...]}, index = the model's class number (labels.ts's `class` minus 1).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from photocluster import weights

OUT = Path(__file__).resolve().parents[1] / "photocluster" / "data" / "coco_labels.json"
_ENTRY = re.compile(r"\{\s*class:\s*(\d+),\s*label:\s*'([^',:\t\n]+)'\s*\}")


def parse_labels(text: str) -> list[str]:
    """The names of labels.ts in class order; refuses a file whose classes are not exactly 1..80 in order."""
    entries = _ENTRY.findall(text)
    classes = [int(number) for number, _ in entries]
    if classes != list(range(1, 81)):
        raise ValueError(f"labels.ts lists classes {classes[:5]}..., expected 1..80 in order")
    return [name for _, name in entries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=weights.npm_weights_dir(weights.CENTERNET) / "labels.ts")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = args.labels.read_bytes()
    pinned = next(f.sha256 for f in weights.CENTERNET.files if f.filename == "labels.ts")
    if hashlib.sha256(data).hexdigest() != pinned:
        print(f"{args.labels} is not human 3.3.6's labels.ts (SHA-256 differs)", file=sys.stderr)
        return 1
    source = f"{weights.CENTERNET.package}@{weights.CENTERNET.version} src/object/labels.ts"
    table = {"source": source, "labels": parse_labels(data.decode("utf-8"))}
    args.out.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
