"""The cache's detection columns (cache.py): each photo's detections as four flat arrays, and back, checked.

A photo's detections are stored best first, at most DETECTIONS_KEPT, with float16 scores and boxes; count
NOT_DETECTED marks a photo that has not been through the detector.
"""
from __future__ import annotations

import numpy as np

from .cache_guard import column
from .labels import Detection, Detections, coco_labels

# What computes the detections (detector.MODEL_ID is this): cached detections of another detector are not used.
DETECTOR_ID = "centernet-mobilenetv3/human-3.3.6/nms0.4"
DETECTIONS_KEPT = 32  # per photo, best first; the detector gives 100, most of them near zero
NOT_DETECTED = 0xFF


def stored_detections(detections: Detections | None) -> Detections | None:
    """Detections exactly as they read back from the file: the best DETECTIONS_KEPT, float16 values."""
    if detections is None:
        return None
    best = sorted(detections, key=lambda d: -d.score)[:DETECTIONS_KEPT]
    return tuple(Detection(d.label, float(np.float16(d.score)), tuple(float(np.float16(v)) for v in d.box))
                 for d in best)


def detections_to_columns(all_detections: list[Detections | None]) -> dict[str, np.ndarray]:
    flat = [d for found in all_detections if found for d in found]
    index = {name: i for i, name in enumerate(coco_labels())} if flat else {}
    return {
        "det_count": np.array([NOT_DETECTED if found is None else len(found) for found in all_detections], np.uint8),
        "det_class": np.array([index[d.label] for d in flat], np.uint8),
        "det_score": np.array([d.score for d in flat], np.float16),
        "det_box": np.array([d.box for d in flat], np.float16).reshape(-1),
    }


def columns_to_detections(data: dict, n: int) -> list[Detections | None]:
    counts = column(data, "det_count", np.uint8)
    classes = column(data, "det_class", np.uint8)
    scores = column(data, "det_score", np.float16).astype(np.float64)
    boxes = column(data, "det_box", np.float16).astype(np.float64)
    known = counts != NOT_DETECTED
    total = int(counts[known].sum())
    if len(counts) != n or np.any(counts[known] > DETECTIONS_KEPT) or len(classes) != total \
            or len(scores) != total or len(boxes) != 4 * total:
        raise ValueError("detection columns disagree")
    names = coco_labels() if total else ()
    if total and classes.max() >= len(names):
        raise ValueError("detection class out of range")
    found, start = [], 0
    for count, ok in zip(counts.tolist(), known.tolist()):
        if not ok:
            found.append(None)
            continue
        found.append(tuple(Detection(names[c], s, tuple(b)) for c, s, b in zip(
            classes[start:start + count].tolist(), scores[start:start + count].tolist(),
            boxes[4 * start:4 * (start + count)].reshape(-1, 4).tolist())))
        start += count
    return found
