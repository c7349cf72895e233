"""A read-only view of the fingerprint cache for searches: paths and fingerprints, without building an entry per
photo.

FingerprintCache.load builds every photo's predictions and detections as Python objects, which is most of its load
time (about 2.5 s for 100,000 photos with three detections each, on 2 shared cores); a search needs only the paths,
the vectors and one photo's detections. The file goes through the same guard (cache.read_columns) and the same
type and length checks; only the per-photo objects are left unbuilt.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import (PREDICTIONS_KEPT, CacheError, _check_types, check_format, read_columns)
from .cache_guard import column
from .detection_columns import DETECTOR_ID, NOT_DETECTED, columns_to_detections
from .labels import Detections


class CacheView:
    """model_id, dim, paths (sorted, as stored), the fingerprint matrix (float16, one row per fingerprinted
    photo) and where each photo's row is."""

    def __init__(self, data: dict):
        self._data = data
        self.model_id, self.dim = data["model_id"], data["dim"]
        self.paths, self.sizes, self.mtimes = data["paths"], data["sizes"], data["mtimes"]
        errors = data["errors"]
        _check_types(self.model_id, self.dim, self.paths, self.sizes, self.mtimes, errors)
        ok = np.fromiter((e is None for e in errors), bool, len(errors))
        self.vectors = column(data, "vectors", np.float16)
        if self.vectors.size != int(ok.sum()) * self.dim \
                or column(data, "label_idx", np.uint16).size != len(self.paths) * PREDICTIONS_KEPT:
            raise ValueError("column lengths disagree")
        self.vectors = self.vectors.reshape(-1, self.dim)
        self.row_of_index = np.where(ok, np.cumsum(ok) - 1, -1)  # photo index -> vector row, -1: failed
        self.fingerprinted = np.flatnonzero(ok)  # photo index of each vector row, in row order
        self._index: dict[str, int] | None = None

    @classmethod
    def load(cls, path: Path) -> CacheView:
        """Read the cache at `path`; CacheError, one line, for anything but a valid cache."""
        data = read_columns(path)
        check_format(data)
        try:
            return cls(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"inconsistent contents ({exc})") from None

    def index_of(self, rel: str) -> int | None:
        if self._index is None:
            self._index = {rel: i for i, rel in enumerate(self.paths)}
        return self._index.get(rel)

    def current_row(self, rel: str, size: int, mtime_ns: int) -> int | None:
        """The vector row of `rel` when the cache has its fingerprint and it describes the file as it is now."""
        i = self.index_of(rel)
        if i is None or (self.sizes[i], self.mtimes[i]) != (size, mtime_ns):
            return None
        row = int(self.row_of_index[i])
        return row if row >= 0 else None

    def detections(self, rel: str) -> Detections | None:
        """The photo's cached detections, best first; None when it has not been through this detector."""
        i = self.index_of(rel)
        data = self._data
        if i is None or data["version"] < 2 or data.get("detector_id") != DETECTOR_ID:
            return None
        try:
            return self._detections_at(i)
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"inconsistent detections ({exc})") from None

    def _detections_at(self, i: int) -> Detections | None:
        counts = column(self._data, "det_count", np.uint8)
        if len(counts) != len(self.paths):
            raise ValueError("detection columns disagree")
        if counts[i] == NOT_DETECTED:
            return None
        known = counts != NOT_DETECTED
        start = int(counts[:i][known[:i]].sum(dtype=np.int64))
        count = int(counts[i])
        one = {"det_count": counts[i:i + 1].tobytes(), "det_class": _part(self._data, "det_class", start, count, 1),
               "det_score": _part(self._data, "det_score", start, count, 2),
               "det_box": _part(self._data, "det_box", 4 * start, 4 * count, 2)}
        return columns_to_detections(one, 1)[0]


def _part(data: dict, name: str, start: int, count: int, itemsize: int) -> bytes:
    """Bytes of `count` items of column `name` from item `start` (ValueError when the column is too short)."""
    value = data[name]
    if not isinstance(value, (bytes, bytearray)) or len(value) < (start + count) * itemsize:
        raise ValueError(f"column {name} too short")
    return bytes(value[start * itemsize:(start + count) * itemsize])
