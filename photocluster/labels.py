"""The 1000 ImageNet classes: their Keras index order, a softmax's most probable ones (top_labels), and readable
names at two levels: `fine` (the class itself) and `coarse` (rolled up).

The roll-up table data/coarse_labels.json is generated once from WordNet's hypernyms by
scripts/make_coarse_labels.py and ships with the package, so nothing reads WordNet at run time. Rows are keyed by
wnid and stored in Keras class-index order (sorted wnids); both are checked on load.
"""
from __future__ import annotations

import functools
import importlib.resources
import json
import re
from dataclasses import dataclass

import numpy as np

LEVELS = ("coarse", "fine")  # the label level: how finely a class is named
# A photo's predictions: its most probable ImageNet classes as (class index, probability), most probable first.
# The cache keeps them; the patterns stage turns those at or above the minimum probability into object names.
Predictions = tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class Detection:
    """One object the detector found in a photo."""

    label: str  # a COCO class name, e.g. "person", "dog", "dining table" (the 80 COCO names)
    score: float  # 0..1
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of the photo


# A photo's detections, best first; None where the photo has not been through the detector (an older cache).
Detections = tuple[Detection, ...]
CLASS_COUNT = 1000
COCO_CLASS_COUNT = 80


# Labels are items in comma-separated transactions and in `item<TAB>item:support` pattern lines.
_UNSAFE = re.compile(r"[,\t\r\n:]")


class LabelTableError(RuntimeError):
    """The shipped label table is missing or malformed (a broken install)."""


@functools.cache
def _table() -> tuple[tuple[str, str, str], ...]:
    """(wnid, fine, coarse) for each class, in class-index order."""
    try:
        text = importlib.resources.files("photocluster").joinpath("data/coarse_labels.json").read_text(
            encoding="utf-8")
        rows = tuple((str(wnid), str(fine), str(coarse)) for wnid, fine, coarse in json.loads(text)["classes"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LabelTableError(f"photocluster's label table is unreadable ({error}); reinstall photocluster") from None
    wnids = [row[0] for row in rows]
    if len(rows) != CLASS_COUNT or wnids != sorted(set(wnids)):
        raise LabelTableError("photocluster's label table does not hold the 1000 ImageNet classes in index order")
    if any(not name or _UNSAFE.search(name) for _, fine, coarse in rows for name in (fine, coarse)):
        raise LabelTableError("photocluster's label table has an empty label or one with , : tab or newline")
    return rows


def class_wnids() -> tuple[str, ...]:
    """The WordNet id of each class, indexed like the model's softmax."""
    return tuple(row[0] for row in _table())


@functools.cache
def class_labels(level: str) -> tuple[str, ...]:
    """The label of each class at `level` ("fine" or "coarse"), indexed like the model's softmax."""
    if level not in LEVELS:
        raise ValueError(f"labels must be one of {', '.join(LEVELS)}, got {level!r}")
    column = 1 if level == "fine" else 2
    return tuple(row[column] for row in _table())


def top_labels(probs_row: np.ndarray, k: int = 10) -> Predictions:
    """The k most probable (class_index, probability) pairs, most probable first."""
    probs_row = np.asarray(probs_row)
    order = np.argsort(-probs_row, kind="stable")[:k]  # stable: ties keep class order
    return tuple((int(index), float(probs_row[index])) for index in order)


@functools.cache
def imagenet_classes() -> list[tuple[str, str]]:
    """The 1000 ImageNet classes as (wnid, short name), indexed like the model's softmax."""
    text = importlib.resources.files("photocluster").joinpath("data/imagenet_classes.json").read_text(
        encoding="utf-8")
    return [(wnid, short_name) for wnid, short_name in json.loads(text)]


@functools.cache
def coco_labels() -> tuple[str, ...]:
    """The 80 COCO class names in the detector's class order (data/coco_labels.json, from the detector's package)."""
    try:
        text = importlib.resources.files("photocluster").joinpath("data/coco_labels.json").read_text(encoding="utf-8")
        names = tuple(str(name) for name in json.loads(text)["labels"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LabelTableError(
            f"photocluster's COCO label table is unreadable ({error}); reinstall photocluster") from None
    if len(names) != COCO_CLASS_COUNT or len(set(names)) != COCO_CLASS_COUNT or any(_UNSAFE.search(n) for n in names):
        raise LabelTableError("photocluster's COCO label table does not hold 80 distinct usable names")
    return names
