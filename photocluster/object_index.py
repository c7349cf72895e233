"""The object index, <out>/objects.index: a fingerprint of each detected object, for `similar --object`.

Each photo's objects of sufficient size and score (object_embed.py chooses them) get the fingerprint model's
vector of their box. The file is a NumPy .npz archive (uncompressed; written with numpy.savez, read without
pickle) of these members:

    header    a JSON document as UTF-8 bytes: {"format": "photocluster-objects", "version": 1, "model_id",
              "detector_id", "min_score", "paths": [...]} (library-relative, sorted)
    sizes     int64, one per path         mtimes  int64 (ns), one per path
    counts    uint8, objects per path     number  uint8, each object's number in `photocluster objects PHOTO`
    label     uint8, the COCO class       score   float16
    box       float16 (n, 4): x1, y1, x2, y2 as fractions of the photo
    vectors   float16 (n, dim), objects in path order

An entry is keyed by path, size and mtime; the whole index by the fingerprint model, the detector and the minimum
score, so a file of another model or setting is rebuilt rather than mixed in. Reading checks every member before
it is used: only uncompressed members of the expected names and dtypes, each no larger than the file, so a
tampered file can only fail with IndexFileError, never run code or allocate without bound.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fsutil import NotAFileError, atomic_writer, open_regular
from .labels import Detection, coco_labels

INDEX_NAME = "objects.index"
FORMAT = "photocluster-objects"
VERSION = 1
_DTYPES = {"header": np.uint8, "sizes": np.int64, "mtimes": np.int64, "counts": np.uint8, "number": np.uint8,
           "label": np.uint8, "score": np.float16, "box": np.float16, "vectors": np.float16}


class IndexFileError(Exception):
    """The object index file is unreadable, tampered with, or of another format (one-line message)."""


@dataclass(frozen=True, slots=True)
class IndexedObject:
    number: int  # the object's number in the photo's listing (1 = its best detection at the minimum score)
    detection: Detection
    row: int  # its vector's row in the index's matrix


@dataclass(slots=True)
class PhotoObjects:
    size: int
    mtime_ns: int
    objects: tuple[IndexedObject, ...]


class ObjectIndex:
    """Object fingerprints of one model, detector and minimum score, keyed by library-relative path."""

    def __init__(self, model_id: str, detector_id: str, min_score: float, dim: int):
        self.key = (model_id, detector_id, float(min_score))
        self.dim = dim
        self.entries: dict[str, PhotoObjects] = {}
        self._rows: list[np.ndarray] = []  # vectors; rebuilt compactly on save
        self.dirty = False

    def is_current(self, rel: str, size: int, mtime_ns: int) -> bool:
        entry = self.entries.get(rel)
        return entry is not None and (entry.size, entry.mtime_ns) == (size, mtime_ns)

    def put(self, rel: str, size: int, mtime_ns: int, objects: list[tuple[int, Detection]],
            vectors: np.ndarray) -> None:
        if vectors.shape != (len(objects), self.dim):
            raise ValueError(f"object vectors of shape {vectors.shape}, expected ({len(objects)}, {self.dim})")
        first = len(self._rows)
        self._rows.extend(np.asarray(vectors, np.float16))
        self.entries[rel] = PhotoObjects(size, mtime_ns, tuple(
            IndexedObject(number, detection, first + i) for i, (number, detection) in enumerate(objects)))
        self.dirty = True

    def keep_only(self, current: dict[str, tuple[int, int]]) -> int:
        """Drop the entries of photos gone or changed (`current`: rel -> (size, mtime_ns)); how many went."""
        gone = [rel for rel, e in self.entries.items() if current.get(rel) != (e.size, e.mtime_ns)]
        for rel in gone:
            del self.entries[rel]
        self.dirty |= bool(gone)
        return len(gone)

    def vectors(self) -> np.ndarray:
        """Every object's vector, (n, dim) float16, row i as IndexedObject.row says."""
        return np.stack(self._rows) if self._rows else np.zeros((0, self.dim), np.float16)

    def objects(self) -> list[tuple[str, IndexedObject]]:
        """(rel, object) of every indexed object, in path order."""
        return [(rel, obj) for rel in sorted(self.entries) for obj in self.entries[rel].objects]

    # --- disk ------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the index atomically (temporary file, fsync, rename), its rows compacted into path order."""
        paths = sorted(self.entries)
        objects = [obj for rel in paths for obj in self.entries[rel].objects]
        names = {name: i for i, name in enumerate(coco_labels())}
        model_id, detector_id, min_score = self.key
        header = json.dumps({"format": FORMAT, "version": VERSION, "model_id": model_id, "detector_id": detector_id,
                             "min_score": min_score, "paths": paths})
        vectors = self.vectors()
        arrays = {
            "header": np.frombuffer(header.encode("utf-8", "surrogatepass"), np.uint8),
            "sizes": np.array([self.entries[p].size for p in paths], np.int64),
            "mtimes": np.array([self.entries[p].mtime_ns for p in paths], np.int64),
            "counts": np.array([len(self.entries[p].objects) for p in paths], np.uint8),
            "number": np.array([o.number for o in objects], np.uint8),
            "label": np.array([names[o.detection.label] for o in objects], np.uint8),
            "score": np.array([o.detection.score for o in objects], np.float16),
            "box": np.array([o.detection.box for o in objects], np.float16).reshape(-1, 4),
            "vectors": vectors[[o.row for o in objects]] if objects else vectors[:0],
        }
        with atomic_writer(path) as fh:
            np.savez(fh, **arrays)
        # the file's row order is now the memory's too
        rebuilt = ObjectIndex._from_arrays(arrays, self.dim)
        self.entries, self._rows, self.dirty = rebuilt.entries, rebuilt._rows, False

    @classmethod
    def load(cls, path: Path) -> ObjectIndex:
        """Read an index file; IndexFileError, one line, for anything else."""
        try:
            with open_regular(path) as fh:
                blob = fh.read()
            arrays = _read_members(blob)
            header = json.loads(bytes(arrays["header"]).decode("utf-8", "surrogatepass"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise IndexFileError("not a photocluster object index")
            if header.get("version") != VERSION:
                raise IndexFileError(f"object index version {str(header.get('version'))[:20]}, this photocluster "
                                     f"reads {VERSION}")
            arrays["meta"] = header
            dim = arrays["vectors"].shape[1] if arrays["vectors"].ndim == 2 else -1
            return cls._from_arrays(arrays, dim)
        except IndexFileError:
            raise
        except NotAFileError as exc:
            raise IndexFileError(f"{exc.kind} is there, not a file") from None
        except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as exc:
            raise IndexFileError(f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None

    @classmethod
    def _from_arrays(cls, arrays: dict, dim: int) -> ObjectIndex:
        meta = arrays.get("meta") or json.loads(bytes(arrays["header"]).decode("utf-8", "surrogatepass"))
        paths, model_id, detector_id = meta["paths"], meta["model_id"], meta["detector_id"]
        min_score = meta["min_score"]
        if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths) and isinstance(model_id, str)
                and isinstance(detector_id, str) and isinstance(min_score, (int, float)) and dim > 0):
            raise ValueError("bad header")
        sizes, mtimes, counts = arrays["sizes"], arrays["mtimes"], arrays["counts"]
        n_obj = int(counts.sum(dtype=np.int64))
        vectors, box = arrays["vectors"], arrays["box"]
        if not (len(sizes) == len(mtimes) == len(counts) == len(paths) == len(set(paths))) \
                or any(len(arrays[k]) != n_obj for k in ("number", "label", "score", "box", "vectors")) \
                or box.shape[1:] != (4,) or vectors.shape[1:] != (dim,):
            raise ValueError("members disagree in length")
        names = coco_labels()
        if n_obj and int(arrays["label"].max()) >= len(names):
            raise ValueError("object class out of range")
        index = cls(model_id, detector_id, min_score, dim)
        index._rows = list(vectors)
        numbers, labels = arrays["number"].tolist(), arrays["label"].tolist()
        scores, boxes = arrays["score"].astype(float).tolist(), box.astype(float).tolist()
        start = 0
        for rel, size, mtime, count in zip(paths, sizes.tolist(), mtimes.tolist(), counts.tolist()):
            index.entries[rel] = PhotoObjects(size, mtime, tuple(
                IndexedObject(numbers[r], Detection(names[labels[r]], scores[r], tuple(boxes[r])), r)
                for r in range(start, start + count)))
            start += count
        return index


def load_or_new(path: Path, model_id: str, detector_id: str, min_score: float, dim: int) -> ObjectIndex:
    """The index at `path` when it is of this model, detector and minimum score; else an empty one (a bad file is
    replaced on the next save: it holds nothing that cannot be computed again)."""
    try:
        index = ObjectIndex.load(path)
    except (FileNotFoundError, IndexFileError):
        return ObjectIndex(model_id, detector_id, min_score, dim)
    if index.key != (model_id, detector_id, float(min_score)) or index.dim != dim:
        return ObjectIndex(model_id, detector_id, min_score, dim)
    return index


def _read_members(blob: bytes) -> dict[str, np.ndarray]:
    """The archive's arrays, each checked before it is built: a stored (uncompressed) member of a known name, its
    .npy header's dtype the expected one and its data exactly the bytes the member holds."""
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in _DTYPES or name in arrays or info.compress_type != zipfile.ZIP_STORED \
                    or info.file_size > len(blob):
                raise IndexFileError(f"unexpected member {info.filename[:40]!r}")
            member = io.BytesIO(archive.read(info))
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(member)
            data = member.read()
            if dtype != np.dtype(_DTYPES[name]).newbyteorder("<") or fortran or len(shape) > 2 \
                    or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
                raise IndexFileError(f"member {name} is not what an object index holds")
            arrays[name] = np.frombuffer(data, dtype).reshape(shape)
    missing = set(_DTYPES) - set(arrays)
    if missing:
        raise IndexFileError(f"members missing: {', '.join(sorted(missing))}")
    return arrays
