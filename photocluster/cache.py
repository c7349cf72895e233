"""Cache: the pickle store of fingerprints, so each photo is computed once.

On disk `fingerprints.pk` is one pickle of plain built-in types only (dict, list, str, int, bytes, bytearray):

    {"format": "photocluster-fingerprints", "version": 3, "model_id": str, "dim": int,
     "paths": [str], "sizes": [int], "mtimes": [int], "errors": [str | None],
     "vectors": float16 bytes, rows in path order (photos that failed to decode have no row),
     "label_idx": uint16 bytes (n x 10, 65535 = none), "label_prob": float16 bytes (n x 10),
     "det_count": uint8 bytes (n; 255 = not through the detector), "det_class": uint8 bytes (one per detection,
     photos in path order; the COCO class index), "det_score": float16 bytes, "det_box": float16 bytes (x1, y1,
     x2, y2 per detection), "detector_id": str (what made them),
     "producers": [str] (what computed fingerprints: "openvino-bf16", ...), "producer": uint8 bytes (n; an index
     into producers, 255 = unknown)}

The two label columns hold each photo's predictions (labels.Predictions): its 10 most probable ImageNet classes;
the four det columns its detections (labels.Detections): at most DETECTIONS_KEPT, best first. A version-1 cache
(before detections) loads with none, so its fingerprints are kept and only the detections are computed again.
The producer columns (producer_columns.py) say which runtime computed each fingerprint; a cache before version 3
loads with every producer unknown (None).

Storing columns rather than one object per photo keeps a 250,000-photo cache loading in about a second, and
because no class is ever named in the pickle, the loader can refuse every global: a tampered file cannot run
code, it can only fail validation. Fingerprints are stored as float16: it halves the file against float32, and the
cosine similarities it changes move by less than 1e-3 (see tests/test_cache.py), far below the gaps between cuts.

One cache holds one model's fingerprints: the model id is checked on load, so vectors of two models never mix.
"""
from __future__ import annotations

import logging
import os
import pickle
import stat
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache_guard import CacheError, RefusingUnpickler, check_opcodes, column
from .fsutil import ForeignEntry, NotAFileError, atomic_writer, kind_of, open_regular
from .detection_columns import DETECTOR_ID, columns_to_detections, detections_to_columns, stored_detections
from .producer_columns import check_producer, columns_to_producers, producers_to_columns
from .labels import Detections, Predictions
from .library import PhotoFile
from .wording import plural

log = logging.getLogger(__name__)

FORMAT = "photocluster-fingerprints"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
PREDICTIONS_KEPT = 10
NO_LABEL = 0xFFFF
N_CLASSES = 1000
MODEL_ID_MAX = 200  # real ids are "<model>/<weights origin>[/<hash>]"; a longer one is not ours (and is logged)
PROB_DECIMALS = 3  # float16 keeps about 3 significant digits; rounding makes fresh and reloaded predictions equal


@dataclass(slots=True)
class Entry:
    """What the cache knows of one photo. `row` indexes the vector matrix; -1 when decoding failed."""

    size: int
    mtime_ns: int
    row: int
    predictions: Predictions = ()
    error: str | None = None
    detections: Detections | None = None  # None: not through the detector yet
    producer: str | None = None  # what computed the fingerprint ("openvino-bf16", ...); None: not on record


class FingerprintCache:
    """Fingerprints of one model, keyed by path relative to the library."""

    def __init__(self, model_id: str, dim: int):
        self.model_id = model_id
        self.dim = dim
        self.entries: dict[str, Entry] = {}
        self._vectors = np.zeros((0, dim), np.float16)
        self._used_rows = 0
        self.dirty = False

    def __len__(self) -> int:
        return len(self.entries)

    # --- questions -------------------------------------------------------------------------------------
    def is_current(self, photo: PhotoFile) -> bool:
        """True when the cached result (fingerprint or failure) still describes the file on disk."""
        entry = self.entries.get(photo.rel)
        return entry is not None and entry.size == photo.size and entry.mtime_ns == photo.mtime_ns

    def fingerprinted(self) -> list[str]:
        """The photos that have a fingerprint, in a stable (sorted) order."""
        return sorted(rel for rel, e in self.entries.items() if e.row >= 0)

    def vectors(self, rels: list[str]) -> np.ndarray:
        """The fingerprints of `rels` as a float32 matrix, one row each."""
        rows = np.fromiter((self.entries[r].row for r in rels), np.int64, len(rels))
        return self._vectors[rows].astype(np.float32)

    def predictions(self, rels: list[str]) -> dict[str, Predictions]:
        return {rel: self.entries[rel].predictions for rel in rels}

    def detections(self, rels: list[str]) -> list[Detections | None]:
        return [self.entries[rel].detections for rel in rels]

    def fingerprints_by_producer(self) -> dict[str, int]:
        """How many fingerprints each producer computed; "unknown" counts those with none on record."""
        return dict(Counter(e.producer or "unknown" for e in self.entries.values() if e.row >= 0))

    def undetected(self) -> list[str]:
        """The fingerprinted photos that have not been through the detector."""
        return [rel for rel in self.fingerprinted() if self.entries[rel].detections is None]

    # --- changes ---------------------------------------------------------------------------------------
    def put(self, photo: PhotoFile, vector: np.ndarray, predictions: Predictions,
            detections: Detections | None = None, producer: str | None = None) -> None:
        if vector.shape != (self.dim,):
            raise ValueError(f"fingerprint of shape {vector.shape}, expected ({self.dim},)")
        check_producer(producer)
        row = self._append_row(vector)
        kept = tuple((int(c), _stored_prob(p)) for c, p in predictions[:PREDICTIONS_KEPT])
        self.entries[photo.rel] = Entry(photo.size, photo.mtime_ns, row, kept, None, stored_detections(detections),
                                        producer)
        self.dirty = True

    def put_detections(self, photo: PhotoFile, detections: Detections) -> None:
        """The detections of a photo fingerprinted before (its fingerprint is kept); ignored when the photo has
        changed since, or failed."""
        entry = self.entries.get(photo.rel)
        if entry is not None and entry.row >= 0 and (entry.size, entry.mtime_ns) == (photo.size, photo.mtime_ns):
            entry.detections = stored_detections(detections)
            self.dirty = True

    def put_failure(self, photo: PhotoFile, reason: str) -> None:
        """Remember that this version of the file cannot be fingerprinted, so it is not retried every run."""
        self.entries[photo.rel] = Entry(photo.size, photo.mtime_ns, -1, (), reason)
        self.dirty = True

    def remove(self, rel: str) -> None:
        if self.entries.pop(rel, None) is not None:
            self.dirty = True

    def rename(self, old: str, new: str) -> bool:
        """Re-key an entry after a move inside the library; the fingerprint is kept. True if there was one."""
        entry = self.entries.pop(old, None)
        if entry is None:
            return False
        self.entries[new] = entry
        self.dirty = True
        return True

    def _append_row(self, vector: np.ndarray) -> int:
        if self._used_rows == len(self._vectors):
            grown = np.zeros((max(64, 2 * len(self._vectors)), self.dim), np.float16)
            grown[: self._used_rows] = self._vectors[: self._used_rows]
            self._vectors = grown
        self._vectors[self._used_rows] = vector
        self._used_rows += 1
        return self._used_rows - 1

    # --- disk ------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the cache atomically (temporary file, fsync, rename)."""
        with atomic_writer(path) as fh:
            pickle.dump(self._to_columns(), fh, protocol=5)
        self.dirty = False

    def _to_columns(self) -> dict:
        paths = sorted(self.entries)
        entries = [self.entries[p] for p in paths]
        old_rows = np.array([e.row for e in entries if e.row >= 0], np.int64)
        # Compact: rows of removed or replaced photos are dropped, and the survivors are renumbered. When the rows
        # are already in path order (a save after a load with no new photos), a view avoids copying the matrix,
        # which for 250,000 VGG16 photos is 2 GB of extra peak memory.
        if np.array_equal(old_rows, np.arange(len(old_rows))):
            self._vectors = self._vectors[: len(old_rows)]
        else:
            self._vectors = self._vectors[old_rows] if len(old_rows) else np.zeros((0, self.dim), np.float16)
        self._used_rows = len(self._vectors)
        next_row = iter(range(len(old_rows)))
        for e in entries:
            if e.row >= 0:
                e.row = next(next_row)
        idx, prob = _predictions_to_arrays([e.predictions for e in entries])
        det_columns = detections_to_columns([e.detections for e in entries])
        producers, producer = producers_to_columns([e.producer for e in entries])
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "paths": paths,
            "sizes": [e.size for e in entries],
            "mtimes": [e.mtime_ns for e in entries],
            "errors": [e.error for e in entries],
            "vectors": pickle.PickleBuffer(np.ascontiguousarray(self._vectors)),
            "label_idx": pickle.PickleBuffer(idx),
            "label_prob": pickle.PickleBuffer(prob),
            "detector_id": DETECTOR_ID,
            **{name: pickle.PickleBuffer(column) for name, column in det_columns.items()},
            "producers": producers,
            "producer": pickle.PickleBuffer(producer),
        }

    @classmethod
    def load(cls, path: Path) -> FingerprintCache:
        """Read a cache file. Raises CacheError, with a short message, for anything but a valid cache.

        The file is opened only if it is a regular file (a FIFO there would hang the run), and its opcodes are
        checked before anything is built (see cache_guard), so a tampered file costs bounded memory and depth.
        """
        return cls._from_columns(read_columns(path))

    @classmethod
    def _from_columns(cls, data: object) -> FingerprintCache:
        check_format(data)
        try:
            return cls._build(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"inconsistent contents ({exc})") from None

    @classmethod
    def _build(cls, data: dict) -> FingerprintCache:
        model_id, dim = data["model_id"], data["dim"]
        paths, sizes, mtimes, errors = data["paths"], data["sizes"], data["mtimes"], data["errors"]
        _check_types(model_id, dim, paths, sizes, mtimes, errors)
        n = len(paths)
        n_ok = sum(e is None for e in errors)
        vectors = column(data, "vectors", np.float16)
        idx = column(data, "label_idx", np.uint16)
        prob = column(data, "label_prob", np.float16)
        if vectors.size != n_ok * dim or idx.size != n * PREDICTIONS_KEPT or prob.size != n * PREDICTIONS_KEPT:
            raise ValueError("column lengths disagree")
        if np.any((idx >= N_CLASSES) & (idx != NO_LABEL)):
            raise ValueError("label index out of range")
        cache = cls(model_id, dim)
        cache._vectors = vectors.reshape(n_ok, dim)
        cache._used_rows = n_ok
        predictions = _arrays_to_predictions(idx.reshape(n, PREDICTIONS_KEPT), prob.reshape(n, PREDICTIONS_KEPT))
        rows = np.cumsum([e is None for e in errors]) - 1
        # A cache from before the detector, or from another one: its photos are detected again
        current = data["version"] >= 2 and data.get("detector_id") == DETECTOR_ID
        detections = columns_to_detections(data, n) if current else [None] * n
        producers = columns_to_producers(data, n) if data["version"] >= 3 else [None] * n
        for i, rel in enumerate(paths):
            row = int(rows[i]) if errors[i] is None else -1
            cache.entries[rel] = Entry(sizes[i], mtimes[i], row, predictions[i], errors[i], detections[i],
                                       producers[i])
        return cache


def read_columns(path: Path) -> object:
    """The cache file's unpickled columns, unchecked beyond the guard (FingerprintCache.load and cache_view build
    from them). Raises CacheError, with a short message, for a file that is not a guarded pickle."""
    try:
        with open_regular(path) as fh:
            check_opcodes(fh)
            fh.seek(0)
            return RefusingUnpickler(fh).load()
    except CacheError:
        raise
    except NotAFileError as exc:
        raise CacheError(f"{exc.kind} is there, not a file") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign file is just "not a cache"
        raise CacheError(f"unreadable ({type(exc).__name__}: {_short(str(exc))})") from None


def check_format(data: object) -> None:
    """CacheError unless `data` are the columns of a cache version this photocluster reads."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CacheError("not a photocluster fingerprint cache")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        shown = version if type(version) is int else "unknown"  # never the content: it may be huge
        raise CacheError(f"cache format version {_short(str(shown))}, this photocluster reads {VERSION}")


def load_or_new(path: Path, model_id: str, dim: int, move_aside: bool = True) -> FingerprintCache:
    """Load the cache for `model_id`; a missing, bad or other-model cache gives an empty one.

    A bad file is moved aside (never deleted) with one short warning, so nothing in it is lost or executed and the
    run goes on; with move_aside=False (a dry run) it is left where it is. Anything but a regular file at `path` (a
    symlink, a folder, a FIFO) is not photocluster's: ForeignEntry, and it is left alone.
    """
    if not os.path.lexists(path):
        return FingerprintCache(model_id, dim)
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise ForeignEntry(path, kind_of(os.lstat(path).st_mode))
    try:
        cache = FingerprintCache.load(path)
    except CacheError as exc:
        if not move_aside:
            log.warning("cache %s refused: %s; a dry run leaves it there", path, exc)
            return FingerprintCache(model_id, dim)
        aside = _aside_path(path)
        try:
            os.replace(path, aside)
        except OSError as move_error:
            log.warning("cache %s refused: %s; could not move it aside (%s)", path, exc, move_error.strerror)
            return FingerprintCache(model_id, dim)
        log.warning("cache %s refused: %s; moved it to %s and rebuilding", path, exc, aside.name)
        return FingerprintCache(model_id, dim)
    if cache.model_id != model_id or cache.dim != dim:
        log.info("%s made by %s will be recomputed with %s", plural(len(cache.fingerprinted()), "fingerprint"),
                 cache.model_id, model_id)
        return FingerprintCache(model_id, dim)
    return cache


def _aside_path(path: Path) -> Path:
    """A free name beside `path` for a refused cache: two refused in one second must not overwrite each other."""
    aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 2
    while os.path.lexists(aside):
        aside, n = aside.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{n}"), n + 1
    return aside


def _check_types(model_id, dim, paths, sizes, mtimes, errors) -> None:
    if type(model_id) is not str or len(model_id) > MODEL_ID_MAX or type(dim) is not int or dim <= 0:
        raise TypeError("bad model id or dimension")
    columns = (paths, sizes, mtimes, errors)
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise TypeError("columns are not lists of one length")
    if not all(isinstance(p, str) for p in paths) or len(set(paths)) != len(paths):
        raise TypeError("paths are not unique strings")
    if not all(type(v) is int for v in sizes) or not all(type(v) is int for v in mtimes):
        raise TypeError("sizes and mtimes must be integers")
    if not all(e is None or isinstance(e, str) for e in errors):
        raise TypeError("errors must be strings or None")


def _stored_prob(p: float) -> float:
    """A probability exactly as it reads back from the file."""
    return round(float(np.float16(p)), PROB_DECIMALS)


def _predictions_to_arrays(all_predictions: list[Predictions]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.full((len(all_predictions), PREDICTIONS_KEPT), NO_LABEL, np.uint16)
    prob = np.zeros((len(all_predictions), PREDICTIONS_KEPT), np.float16)
    for i, predictions in enumerate(all_predictions):
        for j, (cls_idx, p) in enumerate(predictions[:PREDICTIONS_KEPT]):
            idx[i, j], prob[i, j] = cls_idx, p
    return idx, prob


def _arrays_to_predictions(idx: np.ndarray, prob: np.ndarray) -> list[Predictions]:
    probs = _rounded_probs(prob)
    complete = (idx != NO_LABEL).all(axis=1).tolist()
    # zip() builds a full row's pairs in C; only rows with missing predictions (failed photos) need the filter.
    # This is most of the load time of a 250,000-photo cache.
    return [
        tuple(zip(row_idx, row_prob)) if full else tuple((c, p) for c, p in zip(row_idx, row_prob) if c != NO_LABEL)
        for row_idx, row_prob, full in zip(idx.tolist(), probs, complete)
    ]


_MILLI = 10 ** PROB_DECIMALS
_PROB_VALUES = np.array([i / _MILLI for i in range(_MILLI + 1)], object)  # == round(p, 3), one float object each


def _rounded_probs(prob: np.ndarray) -> list[list[float]]:
    """Probabilities rounded to PROB_DECIMALS as lists of Python floats.

    A valid probability has only 1001 rounded values, so rows are built from one shared float per value:
    millions of separate float objects were a large part of loading a 250,000-photo cache.
    """
    milli = np.rint(prob.astype(np.float64) * _MILLI)
    if not np.all((milli >= 0) & (milli <= _MILLI)):  # out of range or NaN: only a foreign file has these
        return prob.astype(np.float64).round(PROB_DECIMALS).tolist()
    return _PROB_VALUES[milli.astype(np.intp)].tolist()  # an object array: tolist() hands out the shared floats


_MESSAGE_MAX = 160


def _short(text: str) -> str:
    """A refusal reason fit for one log line: the content of a hostile file never reaches the terminal."""
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 3] + "..."
