"""Search a library by example, from its cache alone: the photos most like a photo (`photocluster similar`), a
photo's detected objects (`photocluster objects`), and the photos with an object most like one of them
(`similar --object`).

A photo in the library whose fingerprint is cached costs no model: the search reads the cache's paths and vectors
(cache_view.CacheView) and compares them with cluster.search.nearest, so TensorFlow is never imported. A photo
outside the library, or changed since the last run, is fingerprinted on the fly with the library's model; its
detections, for `objects` and `--object`, come from the detector on the fly too.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import lastrun, models
from .cache import CacheError
from .cache_view import CacheView
from .cluster.search import nearest
from .errors import SettingsError
from .images import load_image_sizes
from .inprocess import fingerprint_in_process, load_detector
from .labels import Detection, Detections, coco_labels
from .library import PhotoFile, open_photo
from .object_embed import FRAME_SIZE, crop, embed, index_path, listed
from .object_index import IndexFileError, ObjectIndex
from .settings import OUTPUT_NAME, LibrarySettings, PatternOptions


class SearchError(SettingsError):
    """A search that cannot be done as asked; the message is one line (exit status 2)."""


@dataclass(frozen=True)
class Query:
    path: str  # absolute, as the user named it
    rel: str | None  # library-relative when the photo lies in the library
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Hit:
    path: str  # absolute
    rel: str
    score: float  # cosine similarity
    object: tuple[int, Detection] | None = None  # the matching object (its number in the photo, the detection)


def find_library(photo: Path, library: Path | None) -> Path:
    """The library to search: `library`, else the nearest folder above `photo` that has a photocluster cache."""
    if library is not None:
        return library
    for parent in Path(os.path.abspath(photo)).parents:
        if (parent / OUTPUT_NAME / "fingerprints.pk").is_file():
            return parent
    raise SearchError(f"{photo} lies in no library with a fingerprint cache; give --library DIR (and --out DIR "
                      "when its output is elsewhere)")


def locate(settings: LibrarySettings, photo: Path) -> Query:
    """The photo as the search needs it: where it is, and its path in the library if it is there (a link in a
    cluster folder counts as its original)."""
    try:
        st = os.stat(photo)
    except OSError as exc:
        raise SearchError(f"cannot read {photo}: {exc.strerror or exc}") from None
    if not os.path.isfile(photo):
        raise SearchError(f"{photo} is not a file")
    real, root = os.path.realpath(photo), os.path.realpath(settings.library)
    rel = os.path.relpath(real, root).replace(os.sep, "/") if real.startswith(root.rstrip(os.sep) + os.sep) else None
    return Query(os.path.abspath(photo), rel, st.st_size, st.st_mtime_ns)


def open_cache(settings: LibrarySettings) -> CacheView:
    try:
        return CacheView.load(settings.cache_path)
    except FileNotFoundError:
        raise SearchError(f"no fingerprint cache at {settings.cache_path}; run 'photocluster {settings.library}' "
                          "first") from None
    except CacheError as exc:
        raise SearchError(f"cannot read the fingerprint cache {settings.cache_path}: {exc}") from None


def similar_photos(settings: LibrarySettings, photo: Path, k: int) -> tuple[Query, list[Hit]]:
    """The k library photos most like `photo`, best first (never the photo itself)."""
    view = open_cache(settings)
    query = locate(settings, photo)
    row = view.current_row(query.rel, query.size, query.mtime_ns) if query.rel else None
    vector = view.vectors[row] if row is not None else _fingerprint(settings, view, query)
    rows, scores = nearest(view.vectors, vector, k + 1)
    hits = []
    for r, score in zip(rows.tolist(), scores.tolist()):
        rel = view.paths[view.fingerprinted[r]]
        if rel != query.rel:
            hits.append(Hit(_absolute(settings, rel), rel, score))
    return query, hits[:k]


def photo_objects(settings: LibrarySettings, photo: Path) -> tuple[Query, list[tuple[int, Detection]], set[int]]:
    """The photo's objects as numbered for --object, and the numbers the object index holds."""
    view = open_cache(settings)
    query = locate(settings, photo)
    index = _object_index(settings, view, required=False)
    min_score = index.key[2] if index else PatternOptions.threshold
    objects = listed(_detections(settings, view, query), min_score)
    entry = index.entries.get(query.rel) if index and query.rel else None
    current = entry is not None and (entry.size, entry.mtime_ns) == (query.size, query.mtime_ns)
    return query, objects, {obj.number for obj in entry.objects} if current else set()


def similar_objects(settings: LibrarySettings, photo: Path, which: str, k: int,
                    any_label: bool = False) -> tuple[Query, tuple[int, Detection], list[Hit]]:
    """The k library photos with an object most like the photo's object `which` (its number, or a COCO name for
    the photo's best-scoring one of that kind), best first, each with its matching object.

    Only objects the detector named alike are compared, unless `any_label`: the detector's label decides what kind
    of thing it is, the fingerprint ranks within the kind. Measured on the devset, the SqueezeNet fingerprint of a
    30-pixel mug on a shelf (Scratch's kitchen) is nearer a dining table's (cosine 0.44) than the coffee cup's."""
    view = open_cache(settings)
    query = locate(settings, photo)
    index = _object_index(settings, view, required=True)
    objects = listed(_detections(settings, view, query), index.key[2])
    number, detection = _choose(objects, which, query.path)
    vectors = index.vectors()
    vector = _indexed_vector(index, vectors, query, number)
    if vector is None:
        vector = _embed_object(settings, view, query, detection)
    owners = [(rel, obj) for rel, obj in index.objects() if any_label or obj.detection.label == detection.label]
    rows, scores = nearest(vectors[[obj.row for _, obj in owners]], vector, len(owners))
    hits, seen = [], {query.rel}
    for r, score in zip(rows.tolist(), scores.tolist()):
        rel, obj = owners[r]
        if rel not in seen:
            seen.add(rel)
            hits.append(Hit(_absolute(settings, rel), rel, score, (obj.number, obj.detection)))
            if len(hits) == k:
                break
    return query, (number, detection), hits


def _choose(objects: list[tuple[int, Detection]], which: str, shown: str) -> tuple[int, Detection]:
    if not objects:
        raise SearchError(f"no objects detected in {shown}")
    if which.isdigit():
        number = int(which)
        if not 1 <= number <= len(objects):
            raise SearchError(f"{shown} has objects 1 to {len(objects)}, not {number} "
                              "(see 'photocluster objects PHOTO')")
        return objects[number - 1]
    names = coco_labels()
    if which not in names:
        close = difflib.get_close_matches(which, names, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else " (it is none of the 80 COCO object names)"
        raise SearchError(f"unknown object name {which!r}{hint}")
    found = [(n, d) for n, d in objects if d.label == which]
    if not found:
        here = ", ".join(sorted({d.label for _, d in objects}))
        raise SearchError(f"no {which} among the objects of {shown} ({here})")
    return found[0]  # listed best first


def _object_index(settings: LibrarySettings, view: CacheView, required: bool) -> ObjectIndex | None:
    path = index_path(settings)
    try:
        index = ObjectIndex.load(path)
    except FileNotFoundError:
        if not required:
            return None
        raise SearchError(f"no object index at {path}; run 'photocluster {settings.library} --index-objects' "
                          "first") from None
    except IndexFileError as exc:
        if not required:
            return None
        raise SearchError(f"cannot read the object index {path}: {exc}; 'photocluster {settings.library} "
                          "--index-objects' rebuilds it") from None
    if index.key[0] != view.model_id:
        if not required:
            return None
        raise SearchError(f"the object index {path} was made with {index.key[0]}, the cache holds "
                          f"{view.model_id}; run 'photocluster {settings.library} --index-objects' again")
    return index


def _indexed_vector(index: ObjectIndex, vectors: np.ndarray, query: Query, number: int) -> np.ndarray | None:
    entry = index.entries.get(query.rel) if query.rel else None
    if entry is None or (entry.size, entry.mtime_ns) != (query.size, query.mtime_ns):
        return None
    return next((vectors[obj.row] for obj in entry.objects if obj.number == number), None)


# --- on the fly: a photo the cache does not describe ---------------------------------------------------------

def _model_settings(settings: LibrarySettings, view: CacheView) -> LibrarySettings:
    """`settings` with the model and weights that made the cache, checked to give the cache's model id."""
    last = lastrun.read(settings.out_dir)
    name = models.name_of(view.model_id)[0] or (last.model if last else settings.model)
    weights = last.weights if last is not None and last.model == name else None
    try:
        spec = models.model_spec(name, weights)
    except (ValueError, models.WeightsUnavailable) as exc:
        raise SearchError(f"cannot fingerprint with the cache's model {view.model_id}: {exc}") from None
    if spec.model_id != view.model_id:
        raise SearchError(f"the cache holds fingerprints of {view.model_id}, which this photocluster cannot compute "
                          f"(it has {spec.model_id}); a photo not in the cache cannot be compared")
    return replace(settings, model=name, weights=weights, patterns=PatternOptions(enabled=False),
                   index_objects=False)


class _OneResult:
    """The sink of a one-photo fingerprint run."""

    vector: np.ndarray | None = None
    failure: str | None = None

    def put(self, photo, vector, predictions, detections=None, producer=None) -> None:
        self.vector = vector

    def put_failure(self, photo, reason) -> None:
        self.failure = reason


def _fingerprint(settings: LibrarySettings, view: CacheView, query: Query) -> np.ndarray:
    folder, name = os.path.split(os.path.realpath(query.path))
    sink = _OneResult()
    model_settings = replace(_model_settings(settings, view), library=Path(folder))
    fingerprint_in_process(model_settings, sink, [PhotoFile(name, query.size, query.mtime_ns)], progress=False,
                           should_stop=lambda: False)
    if sink.vector is None:
        raise SearchError(f"cannot fingerprint {query.path}: {sink.failure or 'not decoded'}")
    return sink.vector


def _frame(query: Query) -> np.ndarray:
    """The photo decoded as the detector takes it (FRAME_SIZE), the frame object crops come from."""
    folder, name = os.path.split(os.path.realpath(query.path))
    try:
        with open_photo(folder, name) as fh:
            return load_image_sizes(fh, [FRAME_SIZE])[0]
    except Exception as exc:  # noqa: BLE001 - any decode failure of the user's photo is one line
        raise SearchError(f"cannot decode {query.path}: {exc}") from None


def _detections(settings: LibrarySettings, view: CacheView, query: Query) -> Detections:
    """The photo's detections: cached when the cache describes it as it is, else from the detector now."""
    if query.rel and view.current_row(query.rel, query.size, query.mtime_ns) is not None:
        cached = view.detections(query.rel)
        if cached is not None:
            return cached
    frame = _frame(query)
    return tuple(load_detector().detect(frame[np.newaxis])[0])


def _embed_object(settings: LibrarySettings, view: CacheView, query: Query, detection: Detection) -> np.ndarray:
    model_settings = _model_settings(settings, view)
    model = models.load_fingerprinter(model_settings.model, model_settings.weights)
    return embed(model, [crop(_frame(query), detection.box, model.input_size)])[0]


def _absolute(settings: LibrarySettings, rel: str) -> str:
    return os.path.join(os.path.abspath(settings.library), *rel.split("/"))
