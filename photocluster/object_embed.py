"""Object fingerprints: each detected object's box, cropped from the decoded photo and run through the fingerprint
model, for `photocluster similar PHOTO --object N`; and the run's opt-in step (--index-objects) that keeps
<out>/objects.index (object_index.py) up to date.

Which objects: a photo's detections at or above the minimum score (--threshold), numbered best first from 1 as
`photocluster objects PHOTO` lists them; of those, the MAX_OBJECTS best whose box covers at least MIN_AREA of the
photo are indexed. A smaller box is a few dozen pixels: its fingerprint says little, and it would cost a forward
pass like any other.

The crop comes from the frame the detector looked at: the photo decoded once and squashed to the detector's
512 x 512 input, in which the boxes were found. The crop is squashed to the model's input anyway (the model sees
whole photos squashed too), so an aspect-preserving decode would change only the pixel density; at 512 x 512 an
indexed box (>= 2% of the photo) is at least ~72 px across, and a larger decode would cost more decode time for
every photo. In this version the step decodes a photo again (fingerprinting has discarded its decode by then);
scripts/bench_objects.py measures the cost.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import models
from .cache import FingerprintCache
from .detection_columns import DETECTOR_ID
from .fingerprint import decoded_batches, progress_bar
from .labels import Detection, Detections
from .library import PhotoFile
from .object_index import INDEX_NAME, ObjectIndex, load_or_new
from .settings import LibrarySettings
from .wording import plural

log = logging.getLogger(__name__)

MIN_AREA = 0.02  # of the photo
MAX_OBJECTS = 5  # per photo
FRAME_SIZE = (512, 512)  # the detector's input (detector.INPUT_SIZE), (height, width)


def listed(detections: Detections | None, min_score: float) -> list[tuple[int, Detection]]:
    """The photo's objects as `photocluster objects` numbers them: score >= min_score, best first, from 1."""
    best = sorted((d for d in detections or () if d.score >= min_score), key=lambda d: -d.score)
    return list(enumerate(best, 1))


def area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def indexable(detections: Detections | None, min_score: float) -> list[tuple[int, Detection]]:
    """The objects the index holds: the MAX_OBJECTS best listed ones of at least MIN_AREA."""
    return [(n, d) for n, d in listed(detections, min_score) if area(d.box) >= MIN_AREA][:MAX_OBJECTS]


def crop(frame: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The box (fractions of the frame) cut from `frame` and resized to `size` (height, width); at least 1 px."""
    height, width = frame.shape[:2]
    left, top = min(int(box[0] * width), width - 1), min(int(box[1] * height), height - 1)
    right, bottom = max(left + 1, round(box[2] * width)), max(top + 1, round(box[3] * height))
    piece = Image.fromarray(np.ascontiguousarray(frame[top:bottom, left:right]))
    return np.asarray(piece.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.uint8)


def embed(model, crops: list[np.ndarray]) -> np.ndarray:
    """The model's fingerprints of `crops` (already at its input size), float32 (n, dim)."""
    if not crops:
        return np.zeros((0, model.dim), np.float32)
    features, _ = model.predict(np.stack(crops))
    return np.asarray(features, np.float32)


@dataclass
class ObjectIndexReport:
    photos: int = 0  # photos decoded and embedded in this run
    objects: int = 0  # objects embedded in this run
    dropped: int = 0  # entries of photos gone or changed
    seconds: float = 0.0


def index_path(settings: LibrarySettings) -> Path:
    return settings.out_dir / INDEX_NAME


def update_object_index(settings: LibrarySettings, cache: FingerprintCache, photos: dict[str, PhotoFile],
                        progress: bool | None = None,
                        should_stop: Callable[[], bool] = lambda: False) -> ObjectIndexReport:
    """Bring <out>/objects.index up to date with the cache: drop the entries of photos gone or changed, embed the
    objects of photos not in it yet. Photos that have not been through the detector are left for later."""
    report, started = ObjectIndexReport(), time.monotonic()
    path, min_score = index_path(settings), settings.patterns.threshold
    index = load_or_new(path, cache.model_id, DETECTOR_ID, min_score, cache.dim)
    report.dropped = index.keep_only({rel: (p.size, p.mtime_ns) for rel, p in photos.items()})
    todo = []
    for rel in cache.fingerprinted():
        entry, photo = cache.entries[rel], photos.get(rel)
        if photo is None or entry.detections is None or index.is_current(rel, photo.size, photo.mtime_ns) \
                or not cache.is_current(photo):
            continue
        chosen = indexable(entry.detections, min_score)
        if chosen:
            todo.append((photo, chosen))
        else:  # nothing to embed: known without a decode
            index.put(rel, photo.size, photo.mtime_ns, [], np.zeros((0, cache.dim), np.float32))
    if todo:
        log.info("indexing the objects of %s", plural(len(todo), "photo"))
        _embed_photos(settings, index, todo, report, progress, should_stop)
    if index.dirty:
        index.save(path)
    report.seconds = time.monotonic() - started
    return report


def _embed_photos(settings: LibrarySettings, index: ObjectIndex, todo: list[tuple[PhotoFile, list]],
                  report: ObjectIndexReport, progress: bool | None, should_stop: Callable[[], bool]) -> None:
    model = models.load_fingerprinter(settings.model, settings.weights)
    chosen = {photo.rel: objects for photo, objects in todo}
    with progress_bar(len(todo), "indexing objects", progress=progress) as bar:
        for batch in decoded_batches([p for p, _ in todo], Path(settings.library), [FRAME_SIZE],
                                     settings.batch_size, should_stop):
            decoded = [(photo, pixels[0]) for photo, pixels in batch if isinstance(pixels, list)]
            crops = [crop(frame, d.box, model.input_size) for photo, frame in decoded for _, d in chosen[photo.rel]]
            vectors, start = embed(model, crops), 0
            for photo, _ in decoded:
                objects = chosen[photo.rel]
                index.put(photo.rel, photo.size, photo.mtime_ns, objects, vectors[start:start + len(objects)])
                start += len(objects)
            report.photos += len(decoded)
            report.objects += len(crops)
            bar.update(len(batch))
