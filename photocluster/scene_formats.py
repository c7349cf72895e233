"""The files of the scene store (scene_store.py): how its features, captures and pairs files are written and read.

Hand-written little-endian records (struct and np.frombuffer), never pickle, so a tampered file can only fail
validation. Each file is

    magic (8 bytes) | format version (u16) | settings | contents | CRC-32 of everything before it (u32)

and is Refused when its magic, checksum, lengths or values are wrong: every length is checked against the file's
size and a hard limit before anything is built, so no file can make the store allocate more than its size limit.
A file of another format version, or made with other verification settings (the features': verify's LONG_SIDE,
MAX_KEYPOINTS and SIFT_PARAMS; the verdicts': those and RATIO, RANSAC_PX, MIN_INLIERS, MIN_SPREAD), is Stale.

- features file: settings | rel length u16, size u64, mtime_ns i64, width u16, height u16, points n u32 | rel |
  n x 2 float16 x,y | n x 128 uint8 descriptors. Bytes per photo: at most FEATURES_HEAD (80) + len(rel) +
  MAX_KEYPOINTS * (4 + 128) = 66,080 + len(rel) (mean about 51,500 with a short path); the file repeats its
  own key and is refused for another.
- captures: count u32 | per photo a fixed 36-byte record (_CAPTURE) | rel | make | model. The time is stored as its
  fields, microseconds, fold and UTC offset, so the datetime reads back equal, naive or aware alike.
- pairs: settings | count u32 | keys (count x 32 bytes: the two photos' 16-byte digests, smaller first; sorted) |
  inliers u32 | spread float32 | same_scene u8, as columns: 41 bytes a pair on disk and in memory, searched with
  np.searchsorted (measured: 1,000,000 verdicts take 41 MB and load in 0.05 s; as a dict of Verdicts, 240 MB).
  Captures are a dict: 100,000 take about 43 MB and load in 0.4 s.

The encoders raise ValueError for what verify and capture cannot give (such a file would be refused).
"""
from __future__ import annotations

import os
import struct
import zlib
from datetime import datetime, timedelta, timezone

import numpy as np

from . import verify
from .capture import MAX_NAME_LENGTH, Capture
from .verify import Features

PhotoKey = tuple[str, int, int]  # (rel path in the library, size, mtime_ns): keyed like the fingerprints

FORMAT_VERSION = 1
MAGIC_FEATURES, MAGIC_CAPTURES, MAGIC_PAIRS = b"PCSFEAT\x00", b"PCSCAPT\x00", b"PCSPAIR\x00"

REL_MAX = 0xFFFF  # bytes of a photo's path in the library (a u16 length; PATH_MAX is 4096)
MAX_PAIRS = 16_000_000  # 250,000 photos with 64 candidate pairs each; 656 MB of pairs file
CAPTURES_MAX_BYTES = 256 << 20  # at most 36 + 4,096 + 128 bytes a photo; 100,000 photos take about 10 MB
DIGEST = 16  # bytes of a photo key's sha256 kept: a collision among 10^6 photos has odds below 1 in 10^26

_HEAD = struct.Struct("<8sH")  # magic, format version
_CRC = struct.Struct("<I")
_FEATURE_SETTINGS = struct.Struct("<IIiiddd")  # LONG_SIDE, MAX_KEYPOINTS, SIFT: n, octave layers, contrast, edge, sigma
_VERDICT_SETTINGS = struct.Struct("<ddId")  # RATIO, RANSAC_PX, MIN_INLIERS, MIN_SPREAD
_FEATURE_KEY = struct.Struct("<HQqHHI")  # rel length, size, mtime_ns, width, height, points
FEATURES_HEAD = _HEAD.size + _FEATURE_SETTINGS.size + _FEATURE_KEY.size + _CRC.size  # 80 bytes
_BYTES_PER_POINT = 2 * 2 + 128
# rel length, size, mtime_ns, flags, year, month, day, hour, minute, second, microsecond, UTC offset s, make/model len
_CAPTURE = struct.Struct("<HQqBHBBBBBIiBB")
_HAS_TIME, _AWARE, _FOLD, _HAS_MAKE, _HAS_MODEL = 1, 2, 4, 8, 16
_COUNT = struct.Struct("<I")
_PAIR_BYTES = 2 * DIGEST + 4 + 4 + 1


class Refused(Exception):
    """A file that is not a valid scene file: warned about, treated as absent."""


class Stale(Exception):
    """A valid file of another format version or other verification settings: dropped quietly."""


def features_max_bytes() -> int:
    """The largest features file of the current verify settings."""
    return FEATURES_HEAD + REL_MAX + verify.MAX_KEYPOINTS * _BYTES_PER_POINT


def pairs_max_bytes() -> int:
    """The largest pairs file: MAX_PAIRS verdicts."""
    return _pairs_size(MAX_PAIRS)


def _feature_settings() -> bytes:
    """What the features depend on, read from verify at each call (so a test, or an upgrade, that changes them
    makes the old files stale)."""
    return _FEATURE_SETTINGS.pack(verify.LONG_SIDE, verify.MAX_KEYPOINTS, *verify.SIFT_PARAMS)


def _verdict_settings() -> bytes:
    return _feature_settings() + _VERDICT_SETTINGS.pack(verify.RATIO, verify.RANSAC_PX, verify.MIN_INLIERS,
                                                        verify.MIN_SPREAD)


def _sealed(magic: bytes, *parts: bytes) -> bytes:
    body = _HEAD.pack(magic, FORMAT_VERSION) + b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def _opened(raw: bytes, magic: bytes, settings: bytes) -> memoryview:
    """The contents of a sealed file (after its settings, before its checksum); Refused or Stale."""
    if len(raw) < _HEAD.size or raw[:len(magic)] != magic:
        raise Refused("not a photocluster scene file")
    if _HEAD.unpack_from(raw)[1] != FORMAT_VERSION:
        raise Stale()
    end = len(raw) - _CRC.size
    if end < _HEAD.size + len(settings) or _CRC.unpack_from(raw, end)[0] != zlib.crc32(memoryview(raw)[:end]):
        raise Refused("damaged or cut short (its checksum does not match)")
    if raw[_HEAD.size:_HEAD.size + len(settings)] != settings:
        raise Stale()
    return memoryview(raw)[_HEAD.size + len(settings):end]


def _rel_bytes(rel: str) -> bytes:
    data = os.fsencode(rel)
    if not 0 < len(data) <= REL_MAX:
        raise ValueError(f"a photo path of {len(data)} bytes cannot be stored")
    return data


def _features_problem(n: int, width: int, height: int) -> str | None:
    if n > verify.MAX_KEYPOINTS:
        return f"more than {verify.MAX_KEYPOINTS} points"
    if not (0 < width <= verify.LONG_SIDE and 0 < height <= verify.LONG_SIDE):
        return f"a decode size beyond {verify.LONG_SIDE} px"
    return None


def encode_features(key: PhotoKey, features: Features) -> bytes:
    rel, size, mtime_ns = key
    points, descriptors = np.asarray(features.points), np.asarray(features.descriptors)
    n = len(points)
    width, height = (int(v) for v in features.size)
    problem = _features_problem(n, width, height)
    if problem is None and (points.shape != (n, 2) or descriptors.shape != (n, 128) or descriptors.dtype != np.uint8
                            or points.dtype != np.float16 or not np.isfinite(points).all()):
        problem = "points or descriptors of the wrong shape or type"
    if problem is not None:
        raise ValueError(f"features verify cannot have made: {problem}")
    rel_data = _rel_bytes(rel)
    return _sealed(MAGIC_FEATURES, _feature_settings(),
                   _packed(_FEATURE_KEY, len(rel_data), size, mtime_ns, width, height, n), rel_data,
                   points.astype("<f2").tobytes(), descriptors.tobytes())


def _packed(layout: struct.Struct, *values: int) -> bytes:
    """ValueError, not struct.error, for a size or mtime out of range: a caller's mistake."""
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ValueError(f"cannot be stored: {exc}") from None


def decode_features(raw: bytes, key: PhotoKey) -> Features:
    body = _opened(raw, MAGIC_FEATURES, _feature_settings())
    if len(body) < _FEATURE_KEY.size:
        raise Refused("cut short")
    rel_length, size, mtime_ns, width, height, n = _FEATURE_KEY.unpack_from(body)
    problem = _features_problem(n, width, height)
    if problem is not None:
        raise Refused(problem)
    if len(body) != _FEATURE_KEY.size + rel_length + n * _BYTES_PER_POINT:
        raise Refused("its length does not match its contents")
    at = _FEATURE_KEY.size + rel_length
    if (os.fsdecode(bytes(body[_FEATURE_KEY.size:at])), size, mtime_ns) != tuple(key):
        raise Refused("it holds the features of another photo")
    points = np.frombuffer(body, "<f2", n * 2, at).astype(np.float16, copy=False).reshape(n, 2)
    if not np.isfinite(points).all():
        raise Refused("points that are not numbers")
    descriptors = np.frombuffer(body, np.uint8, n * 128, at + n * 4).reshape(n, 128)
    return Features(points, descriptors, (width, height))


def encode_capture(key: PhotoKey, capture: Capture) -> bytes:
    rel, size, mtime_ns = key
    rel_data = _rel_bytes(rel)
    make, model = (_name_bytes(capture.make), _name_bytes(capture.model))
    flags = (_HAS_MAKE if make is not None else 0) | (_HAS_MODEL if model is not None else 0)
    fields, offset = (0,) * 7, 0
    if capture.time is not None:
        t = capture.time
        flags |= _HAS_TIME | (_FOLD if t.fold else 0)
        fields = (t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond)
        if t.utcoffset() is not None:
            flags |= _AWARE
            offset = t.utcoffset() // timedelta(seconds=1)
            if t.utcoffset() != timedelta(seconds=offset):
                raise ValueError(f"a UTC offset of a fraction of a second cannot be stored: {t}")
    make, model = make or b"", model or b""
    return _packed(_CAPTURE, len(rel_data), size, mtime_ns, flags, *fields, offset, len(make), len(model)) \
        + rel_data + make + model


def _name_bytes(name: str | None) -> bytes | None:
    if name is None:
        return None
    if not _is_camera_name(name):
        raise ValueError(f"a camera name capture.read_capture cannot give: {name!r}")
    return name.encode("ascii")


def _is_camera_name(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME_LENGTH and name.isascii() and name.isprintable()


def encode_captures(captures: dict[PhotoKey, Capture]) -> bytes:
    return _sealed(MAGIC_CAPTURES, _COUNT.pack(len(captures)),
                   *(encode_capture(key, capture) for key, capture in sorted(captures.items(), key=lambda i: i[0])))


def decode_captures(raw: bytes) -> dict[PhotoKey, Capture]:
    body = _opened(raw, MAGIC_CAPTURES, b"")
    if len(body) < _COUNT.size:
        raise Refused("cut short")
    (count,), at = _COUNT.unpack_from(body), _COUNT.size
    if count * _CAPTURE.size > len(body):
        raise Refused("it counts more records than it holds")
    captures, names = {}, {}
    for _ in range(count):
        if at + _CAPTURE.size > len(body):
            raise Refused("cut short")
        rel_length, size, mtime_ns, flags, *fields, offset, make_length, model_length = _CAPTURE.unpack_from(body, at)
        at += _CAPTURE.size
        end = at + rel_length + make_length + model_length
        if end > len(body) or rel_length == 0:
            raise Refused("a record longer than the file")
        rel = os.fsdecode(bytes(body[at:at + rel_length]))
        make = _decoded_name(body[at + rel_length:at + rel_length + make_length], flags & _HAS_MAKE, names)
        model = _decoded_name(body[end - model_length:end], flags & _HAS_MODEL, names)
        captures[(rel, size, mtime_ns)] = Capture(_decoded_time(flags, fields, offset), make, model)
        at = end
    if at != len(body):
        raise Refused("data after its last record")
    return captures


def _decoded_time(flags: int, fields: list[int], offset: int) -> datetime | None:
    if flags & ~(_HAS_TIME | _AWARE | _FOLD | _HAS_MAKE | _HAS_MODEL):
        raise Refused("a record with unknown flags")
    if not flags & _HAS_TIME:
        if any(fields) or offset or flags & (_AWARE | _FOLD):
            raise Refused("a time in a record without one")
        return None
    if not flags & _AWARE and offset:
        raise Refused("a UTC offset for a time without one")
    try:
        zone = timezone(timedelta(seconds=offset)) if flags & _AWARE else None
        return datetime(*fields, tzinfo=zone, fold=1 if flags & _FOLD else 0)
    except (ValueError, OverflowError):  # a 13th month, an offset of a day or more, 2**32 microseconds
        raise Refused("a time that does not exist") from None


def _decoded_name(data: memoryview, present: int, names: dict[str, str]) -> str | None:
    if not present:
        if len(data):
            raise Refused("a camera name in a record without one")
        return None
    text = bytes(data).decode("ascii", "replace")
    if not _is_camera_name(text):
        raise Refused("a camera name that is not one")
    return names.setdefault(text, text)  # one string per camera, not one per photo


def _pairs_size(count: int) -> int:
    return _HEAD.size + len(_verdict_settings()) + _COUNT.size + count * _PAIR_BYTES + _CRC.size


def encode_pairs(keys: np.ndarray, inliers: np.ndarray, spread: np.ndarray, same: np.ndarray) -> bytes:
    return _sealed(MAGIC_PAIRS, _verdict_settings(), _COUNT.pack(len(keys)), keys.astype("S32").tobytes(),
                   inliers.astype("<u4").tobytes(), spread.astype("<f4").tobytes(), same.astype(np.uint8).tobytes())


def decode_pairs(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    body = _opened(raw, MAGIC_PAIRS, _verdict_settings())
    if len(body) < _COUNT.size:
        raise Refused("cut short")
    (count,) = _COUNT.unpack_from(body)
    if count > MAX_PAIRS or len(body) != _COUNT.size + count * _PAIR_BYTES:
        raise Refused("its length does not match its contents")
    at = _COUNT.size
    keys = np.frombuffer(body, "S32", count, at)
    inliers = np.frombuffer(body, "<u4", count, at + 32 * count).astype(np.uint32, copy=False)
    spread = np.frombuffer(body, "<f4", count, at + 36 * count).astype(np.float32, copy=False)
    same = np.frombuffer(body, np.uint8, count, at + 40 * count)
    halves = keys.view(f"S{DIGEST}").reshape(-1, 2)
    if not (np.all(keys[1:] > keys[:-1]) and np.all(halves[:, 0] <= halves[:, 1])):
        raise Refused("pairs out of order")
    if np.any(inliers > verify.MAX_KEYPOINTS) or not np.isfinite(spread).all() or np.any(same > 1):
        raise Refused("verdicts verify cannot give")
    return keys, inliers, spread, same
