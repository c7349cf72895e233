"""The scene store (issue 12): features, captures and verdicts in <out>/scenes/, kept safely and read lazily.

The on-disk layout is written out here from its description (sha256 of rel NUL size NUL mtime_ns, 16 bytes as 32
hex digits, sharded by the first two), not taken from the module, so a change of layout is seen.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from photocluster import fsutil, pipeline, scene_formats, scene_store, verify
from photocluster.capture import MAX_NAME_LENGTH, NO_CAPTURE, Capture
from photocluster.outdir import MARKER, MARKER_TEXT, foreign_reason
from photocluster.scene_store import SceneStore, sweep_scene_leftovers
from photocluster.verify import Features, Verdict

from .test_outdir import entry, snapshot

MARK = ".photocluster-folder"
A, B, C = ("2024/a.jpg", 1000, 1_700_000_000_000_000_001), ("2024/b.jpg", 2000, 5), ("c.jpg", 3, -7)
PATCH = dict(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def features(n: int, seed: int = 0, size=(verify.LONG_SIDE, verify.LONG_SIDE * 3 // 4)) -> Features:
    rng = np.random.default_rng(seed)
    points = (rng.random((n, 2)) * size).astype(np.float16)
    return Features(points, rng.integers(0, 256, (n, 128), dtype=np.uint8), size)


def same_features(got: Features | None, want: Features) -> bool:
    return (got is not None and got.size == want.size and got.points.dtype == np.float16
            and got.descriptors.dtype == np.uint8 and np.array_equal(got.points, want.points)
            and np.array_equal(got.descriptors, want.descriptors))


def digest_hex(key) -> str:
    rel, size, mtime_ns = key
    return hashlib.sha256(os.fsencode(rel) + b"\0%d\0%d" % (size, mtime_ns)).digest()[:16].hex()


def feature_file(out: Path, key) -> Path:
    name = digest_hex(key)
    return out / "scenes" / "features" / name[:2] / name


def reseal(data: bytes) -> bytes:
    """The file with its CRC-32 made right again: a tamperer can do that, so lengths must be checked anyway."""
    return data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little")


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def one_line_warning(caplog) -> str:
    found = warnings_of(caplog)
    assert len(found) == 1 and "\n" not in found[0], found
    return found[0]


@pytest.fixture
def out(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def filled(out: Path) -> SceneStore:
    """A saved store with features of A and B, captures of A and B, verdicts A-B and B-C."""
    store = SceneStore.open(out)
    store.put_features(A, features(30, 1))
    store.put_features(B, features(5, 2))
    store.put_capture(A, Capture(datetime(2024, 5, 17, 10, 11, 12, 123456), "Canon", "EOS R6"))
    store.put_capture(B, NO_CAPTURE)
    store.put_verdict(A, B, Verdict(True, 40, 0.25))
    store.put_verdict(B, C, Verdict(False, 3, 0.0))
    store.save()
    return store


# --- round trips -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 17, verify.MAX_KEYPOINTS])
def test_features_read_back_as_written_now_and_after_reopening(out, n):
    want = features(n, seed=n, size=(verify.LONG_SIDE * 3 // 4, verify.LONG_SIDE))
    store = SceneStore.open(out)
    store.put_features(A, want)
    assert same_features(store.features(A), want)
    assert same_features(SceneStore.open(out).features(A), want)
    assert SceneStore.open(out).features(B) is None


def test_a_features_file_takes_its_stated_bytes_and_sits_where_its_key_says(out):
    """Bound from the docstring: 80 bytes of header + the path + 132 bytes a point."""
    SceneStore.open(out).put_features(A, features(verify.MAX_KEYPOINTS))
    path = feature_file(out, A)
    assert path.stat().st_size == 80 + len(A[0].encode()) + verify.MAX_KEYPOINTS * (4 + 128)
    assert path.stat().st_size <= 66_080 + len(A[0].encode())
    for folder in (out / "scenes", out / "scenes" / "features", path.parent):
        assert (folder / MARK).is_file() and (folder / MARK).stat().st_size == 0


def test_odd_paths_round_trip(out):
    store = SceneStore.open(out)
    odd = ("dir/caf\u00e9 \udcff\n.jpg", 1, 2)  # non-ASCII, an undecodable byte, a newline
    store.put_features(odd, features(3))
    store.put_capture(odd, Capture(None, "X", None))
    store.save()
    again = SceneStore.open(out)
    assert same_features(again.features(odd), features(3))
    assert again.capture(odd) == Capture(None, "X", None)


TIMES = {
    "aware-east": datetime(2024, 5, 17, 10, 11, 12, 123456, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    "aware-west": datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(-timedelta(hours=9, minutes=30))),
    "utc": datetime(2024, 2, 29, 0, 0, 0, 999999, tzinfo=timezone.utc),
    "naive": datetime(2010, 1, 2, 3, 4, 5, 600000),
    "naive-fold": datetime(2021, 10, 31, 2, 30, fold=1),
    "none": None,
}


@pytest.mark.parametrize("case", sorted(TIMES))
def test_a_capture_reads_back_equal_with_its_microseconds_zone_and_fold(out, case):
    want = Capture(TIMES[case], "Canon" if case != "none" else None, "x" * MAX_NAME_LENGTH)
    store = SceneStore.open(out)
    store.put_capture(A, want)
    store.save()
    got = SceneStore.open(out).capture(A)
    assert got == want
    if want.time is not None:  # == on aware times compares instants only: check the fields as well
        assert (got.time.utcoffset(), got.time.microsecond, got.time.fold, got.time.tzinfo is None) == \
            (want.time.utcoffset(), want.time.microsecond, want.time.fold, want.time.tzinfo is None)


def test_not_read_is_none_and_read_with_nothing_there_is_no_capture(out):
    store = SceneStore.open(out)
    store.put_capture(B, NO_CAPTURE)
    store.save()
    again = SceneStore.open(out)
    assert again.capture(A) is None
    assert again.capture(B) == NO_CAPTURE


def test_a_verdict_is_the_same_whichever_way_round_and_reads_back_as_stored(out):
    store = SceneStore.open(out)
    store.put_verdict(A, B, Verdict(True, 40, 0.1))
    want = Verdict(True, 40, float(np.float32(0.1)))  # spread is kept as float32, in memory as on disk
    assert store.verdict(A, B) == store.verdict(B, A) == want
    assert store.verdict(A, C) is None
    store.put_verdict(C, B, Verdict(False, 7, 0.5))
    store.save()
    again = SceneStore.open(out)
    assert again.verdict(B, A) == want and again.verdict(B, C) == Verdict(False, 7, 0.5)
    assert again.verdict(A, C) is None and again.verdict(A, A) is None
    again.put_verdict(B, A, Verdict(False, 2, 0.0))  # a pair verified again replaces its old verdict
    again.save()
    assert SceneStore.open(out).verdict(A, B) == Verdict(False, 2, 0.0)


def test_pairs_whose_digests_end_in_zero_bytes_are_found(out):
    """numpy's bytes scalars drop trailing NULs: a lookup must not depend on them."""
    keys = [k for k in (("z.jpg", i, 0) for i in range(5000)) if digest_hex(k).endswith("00")][:2]
    other = ("other.jpg", 1, 1)
    store = SceneStore.open(out)
    store.put_verdict(keys[0], other, Verdict(True, 20, 0.5))
    store.put_verdict(keys[0], keys[1], Verdict(False, 1, 0.0))
    store.save()
    again = SceneStore.open(out)
    assert again.verdict(other, keys[0]) == Verdict(True, 20, 0.5)
    assert again.verdict(keys[1], keys[0]) == Verdict(False, 1, 0.0)


def test_many_verdicts_round_trip_in_any_order(out):
    rng = np.random.default_rng(3)
    photos = [(f"p{i}.jpg", i, i) for i in range(60)]
    want = {}
    store = SceneStore.open(out)
    for _ in range(300):
        a, b = rng.choice(len(photos), 2)
        verdict = Verdict(bool(rng.integers(2)), int(rng.integers(0, verify.MAX_KEYPOINTS + 1)),
                          float(np.float32(rng.random())))
        store.put_verdict(photos[a], photos[b], verdict)
        want[frozenset((a, b))] = verdict
        if rng.random() < 0.1:
            store.save()
    store.save()
    again = SceneStore.open(out)
    for pair, verdict in want.items():
        a, b = (tuple(pair) * 2)[:2]
        assert again.verdict(photos[a], photos[b]) == again.verdict(photos[b], photos[a]) == verdict


def test_dirty_only_when_captures_or_verdicts_change(out):
    store = filled(out)
    assert not store.dirty
    store.put_capture(B, NO_CAPTURE)
    store.put_verdict(B, A, Verdict(True, 40, 0.25))
    store.put_features(C, features(2))  # written at once: nothing left to save
    assert not store.dirty
    store.put_capture(C, NO_CAPTURE)
    assert store.dirty
    store.save()
    assert not store.dirty and not SceneStore.open(out).dirty


@pytest.mark.parametrize("bad", ["too-many-points", "float32-points", "too-large", "nan", "descriptor-width"])
def test_features_verify_cannot_make_are_refused_before_writing(out, bad):
    good = features(3)
    made = {
        "too-many-points": features(verify.MAX_KEYPOINTS + 1),
        "float32-points": Features(good.points.astype(np.float32), good.descriptors, good.size),
        "too-large": features(3, size=(verify.LONG_SIDE + 1, 10)),
        "nan": Features(np.full((3, 2), np.nan, np.float16), good.descriptors, good.size),
        "descriptor-width": Features(good.points, good.descriptors[:, :64], good.size),
    }[bad]
    with pytest.raises(ValueError):
        SceneStore.open(out).put_features(A, made)
    assert not feature_file(out, A).exists()


@pytest.mark.parametrize("key", [("a.jpg", -1, 0), ("a.jpg", 0, 1 << 63), ("", 1, 1), ("a" * 70_000, 1, 1)])
def test_keys_that_cannot_be_stored_are_a_value_error(out, key):
    store = SceneStore.open(out)
    with pytest.raises(ValueError):
        store.put_features(key, features(1))
    with pytest.raises(ValueError):
        store.put_capture(key, NO_CAPTURE)


# --- persistence, laziness, forgetting -------------------------------------------------------------------------

def test_everything_persists_across_open(out):
    filled(out)
    store = SceneStore.open(out)
    assert same_features(store.features(A), features(30, 1)) and same_features(store.features(B), features(5, 2))
    assert store.capture(A) == Capture(datetime(2024, 5, 17, 10, 11, 12, 123456), "Canon", "EOS R6")
    assert store.capture(B) == NO_CAPTURE and store.capture(C) is None
    assert store.verdict(B, A) == Verdict(True, 40, 0.25) and store.verdict(C, B) == Verdict(False, 3, 0.0)


def test_opening_reads_no_feature_file_and_a_bad_one_spoils_only_its_own_photo(out, monkeypatch, caplog):
    filled(out)
    feature_file(out, A).write_bytes(b"garbage" * 100)
    read = []
    original = scene_store._read_ours
    monkeypatch.setattr(scene_store, "_read_ours",
                        lambda fd, name, limit: read.append(name) or original(fd, name, limit))
    store = SceneStore.open(out)
    assert sorted(read) == ["captures", "pairs"] and warnings_of(caplog) == []
    assert same_features(store.features(B), features(5, 2)) and warnings_of(caplog) == []
    assert store.features(A) is None
    assert "2024/a.jpg" in one_line_warning(caplog)
    assert read[2:] == [digest_hex(B), digest_hex(A)]


def test_forget_except_drops_exactly_the_photos_not_current(out):
    store = filled(out)
    store.put_features(C, features(4, 3))
    store.put_verdict(A, C, Verdict(True, 12, 0.5))
    store.save()
    store.forget_except([A, C, ("new.jpg", 1, 1)])
    assert not feature_file(out, B).exists()
    assert feature_file(out, A).exists() and feature_file(out, C).exists()
    assert store.capture(B) is None and store.verdict(A, B) is None and store.verdict(B, C) is None
    assert store.verdict(A, C) == Verdict(True, 12, 0.5) and store.capture(A) is not None
    assert store.dirty
    store.save()
    again = SceneStore.open(out)
    assert again.features(B) is None and again.capture(B) is None and again.verdict(A, B) is None
    assert same_features(again.features(A), features(30, 1)) and again.verdict(C, A) == Verdict(True, 12, 0.5)


def test_unsaved_verdicts_are_forgotten_too(out):
    store = SceneStore.open(out)
    store.put_verdict(A, B, Verdict(True, 40, 0.5))
    store.put_verdict(A, C, Verdict(True, 40, 0.5))
    store.forget_except([A, B])
    assert store.verdict(A, B) is not None and store.verdict(A, C) is None


def test_a_changed_photo_misses_and_is_forgotten(out):
    filled(out)
    edited = (A[0], A[1], A[2] + 1)
    store = SceneStore.open(out)
    assert store.features(edited) is None and store.capture(edited) is None and store.verdict(edited, B) is None
    store.forget_except([edited, B])
    assert not feature_file(out, A).exists() and store.capture(A) is None and store.verdict(A, B) is None


def test_a_features_file_of_another_photo_is_refused(out, caplog):
    filled(out)
    feature_file(out, C).parent.mkdir(exist_ok=True)
    (feature_file(out, C).parent / MARK).touch()
    feature_file(out, C).write_bytes(feature_file(out, A).read_bytes())  # copied under another photo's name
    assert SceneStore.open(out).features(C) is None
    assert "another photo" in one_line_warning(caplog)


# --- bad files -------------------------------------------------------------------------------------------------

def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flipped(data: bytes) -> bytes:
    return data[:40] + bytes([data[40] ^ 1]) + data[41:]


def _header_field(offset: int, value: bytes):
    return lambda data: reseal(data[:offset] + value + data[offset + len(value):])


_FEATURE_KEY_AT = 10 + 40  # magic + version, then the features' settings
DAMAGE = {  # kind -> how a valid file of that kind is spoiled
    "empty": lambda data: b"",
    "garbage": lambda data: os.urandom(len(data)),
    "cut": _cut,
    "flipped": _flipped,
    "trailing": lambda data: reseal(data + b"more"),
    "other-magic": lambda data: b"PCSXXXX\0" + data[8:],
    "pickle": lambda data: b"\x80\x05\x95" + data[3:],
}
FEATURE_DAMAGE = {  # lengths that lie, with a checksum made right
    "rel-length": _header_field(_FEATURE_KEY_AT, b"\xff\xff"),
    "points": _header_field(_FEATURE_KEY_AT + 22, b"\xff\xff\xff\xff"),
    "width": _header_field(_FEATURE_KEY_AT + 18, b"\x00\x00"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE) + sorted(FEATURE_DAMAGE))
def test_a_bad_features_file_is_a_warning_and_none(out, caplog, damage):
    filled(out)
    path = feature_file(out, A)
    path.write_bytes({**DAMAGE, **FEATURE_DAMAGE}[damage](path.read_bytes()))
    caplog.clear()
    store = SceneStore.open(out)
    assert store.features(A) is None
    assert str(path) in one_line_warning(caplog)
    assert same_features(store.features(B), features(5, 2))
    store.put_features(A, features(30, 1))  # ours: made again in its place
    assert same_features(store.features(A), features(30, 1))


@pytest.mark.parametrize("kind", ["features", "captures", "pairs"])
def test_a_huge_file_is_refused_without_reading_it(out, caplog, kind):
    """A valid file made 4 GiB long (sparse: no disk used): refused before its bytes are read or allocated."""
    filled(out)
    path = feature_file(out, A) if kind == "features" else out / "scenes" / kind
    os.truncate(path, 4 << 30)
    tracemalloc.start()
    try:
        store = SceneStore.open(out)
        got = store.features(A) if kind == "features" else store.capture(A) if kind == "captures" else \
            store.verdict(A, B)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got is None and "larger than any file" in one_line_warning(caplog)
    assert peak < 20 << 20
    assert path.stat().st_size == 4 << 30  # ours, but only rewritten by a save


def _count_field(kind: str) -> int:
    """Where the record count sits: after magic, version and (for pairs) both settings."""
    return 10 + (40 + 28 if kind == "pairs" else 0)


@pytest.mark.parametrize("damage", sorted(DAMAGE) + ["count-large", "count-small", "oversized"])
@pytest.mark.parametrize("kind", ["captures", "pairs"])
def test_a_bad_captures_or_pairs_file_is_a_warning_and_empty(out, caplog, monkeypatch, kind, damage):
    filled(out)
    path = out / "scenes" / kind
    data = path.read_bytes()
    if damage == "oversized":  # the limits lowered, as files of millions of pairs are too large for a test
        if kind == "pairs":
            monkeypatch.setattr(scene_formats, "MAX_PAIRS", 1)
        else:
            monkeypatch.setattr(scene_formats, "CAPTURES_MAX_BYTES", len(data) - 1)
    elif damage.startswith("count"):
        at = _count_field(kind)
        count = 0xFFFFFFFF if damage == "count-large" else 1
        data = _header_field(at, count.to_bytes(4, "little"))(data)
    else:
        data = DAMAGE[damage](data)
    path.write_bytes(data)
    caplog.clear()
    store = SceneStore.open(out)
    assert str(path) in one_line_warning(caplog)
    if kind == "captures":
        assert store.capture(A) is None and store.capture(B) is None
        assert store.verdict(A, B) == Verdict(True, 40, 0.25)
    else:
        assert store.verdict(A, B) is None and store.verdict(B, C) is None
        assert store.capture(B) == NO_CAPTURE
    assert same_features(store.features(A), features(30, 1))
    assert store.dirty  # the refused file is ours (a regular file in our folder): it is written anew
    store.save()
    caplog.clear()
    SceneStore.open(out)
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("record", ["month-13", "offset-a-day", "microsecond-huge", "flags", "name-bytes",
                                    "name-without-flag"])
def test_a_capture_record_that_cannot_be_is_refused(out, caplog, record):
    store = SceneStore.open(out)
    store.put_capture(A, Capture(datetime(2024, 5, 17, 10, 11, 12, tzinfo=timezone.utc), "Canon", "R6"))
    store.save()
    path = out / "scenes" / "captures"
    data = path.read_bytes()
    record_at = 10 + 4
    fields = {  # offset in the record (after rel length u16, size u64, mtime i64) -> bytes
        "month-13": (19 + 2, b"\x0d"), "offset-a-day": (19 + 11, (86400).to_bytes(4, "little", signed=True)),
        "microsecond-huge": (19 + 7, b"\xff\xff\xff\xff"), "flags": (18, b"\xff"), "name-bytes": (36 + len(A[0]), b"\x07"),
        "name-without-flag": (18, bytes([1 | 2 | 16])),
    }
    at, value = fields[record]
    path.write_bytes(_header_field(record_at + at, value)(data))
    assert SceneStore.open(out).capture(A) is None
    one_line_warning(caplog)


@pytest.mark.parametrize("record", ["unsorted", "inliers", "nan", "same-2"])
def test_a_pairs_column_that_cannot_be_is_refused(out, caplog, record):
    store = SceneStore.open(out)
    store.put_verdict(A, B, Verdict(True, 40, 0.5))
    store.put_verdict(A, C, Verdict(True, 40, 0.5))
    store.save()
    path = out / "scenes" / "pairs"
    data = path.read_bytes()
    keys_at = _count_field("pairs") + 4
    damaged = {
        "unsorted": lambda: data[:keys_at] + data[keys_at + 32:keys_at + 64] + data[keys_at:keys_at + 32]
        + data[keys_at + 64:],
        "inliers": lambda: _header_field(keys_at + 64, (verify.MAX_KEYPOINTS + 1).to_bytes(4, "little"))(data),
        "nan": lambda: _header_field(keys_at + 72, np.float32(np.nan).tobytes())(data),
        "same-2": lambda: _header_field(keys_at + 80, b"\x02")(data),
    }[record]()
    path.write_bytes(reseal(damaged))
    assert SceneStore.open(out).verdict(A, B) is None
    one_line_warning(caplog)


@hsettings(**PATCH)
@given(data=st.binary(max_size=3000))
def test_random_bytes_in_any_file_never_raise(out, caplog, data):
    for path in (feature_file(out, A), out / "scenes" / "captures", out / "scenes" / "pairs"):
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / MARK).touch()
        path.write_bytes(data)
    caplog.clear()
    store = SceneStore.open(out)
    assert store.features(A) is None and store.capture(A) is None and store.verdict(A, B) is None
    assert len(warnings_of(caplog)) == 3


@hsettings(**PATCH)
@given(kind=st.sampled_from(["features", "captures", "pairs"]), at=st.integers(0, 10_000),
       value=st.binary(min_size=1, max_size=8), sealed=st.booleans())
def test_valid_files_with_any_bytes_replaced_never_raise_and_give_only_what_verify_can(out, caplog, kind, at, value,
                                                                                        sealed):
    store = filled(out)
    path = {"features": feature_file(out, A), "captures": out / "scenes" / "captures",
            "pairs": out / "scenes" / "pairs"}[kind]
    data = path.read_bytes()
    at %= len(data)
    changed = data[:at] + value + data[at + len(value):]
    path.write_bytes(reseal(changed) if sealed else changed)
    caplog.clear()
    store = SceneStore.open(out)
    got = store.features(A)
    if got is not None:
        n = len(got.points)
        assert got.points.shape == (n, 2) and got.descriptors.shape == (n, 128) and n <= verify.MAX_KEYPOINTS
        assert np.isfinite(got.points).all() and 0 < min(got.size) and max(got.size) <= verify.LONG_SIDE
    for a, b in ((A, B), (B, C)):
        verdict = store.verdict(a, b)
        assert verdict is None or (0 <= verdict.inliers <= verify.MAX_KEYPOINTS and np.isfinite(verdict.spread))
    assert len(warnings_of(caplog)) <= 1
    path.write_bytes(data)


# --- settings and versions -------------------------------------------------------------------------------------

def test_new_verification_thresholds_discard_the_verdicts_only(out, monkeypatch, caplog):
    filled(out)
    monkeypatch.setattr(verify, "MIN_INLIERS", verify.MIN_INLIERS + 1)
    store = SceneStore.open(out)
    assert store.verdict(A, B) is None
    assert same_features(store.features(A), features(30, 1)) and store.capture(A) is not None
    assert warnings_of(caplog) == [] and store.dirty  # stale, not bad: said at info level, and rewritten


@pytest.mark.parametrize("setting", ["LONG_SIDE", "MAX_KEYPOINTS", "MIN_SPREAD", "RATIO", "RANSAC_PX"])
def test_each_verification_setting_discards_what_depends_on_it(out, monkeypatch, caplog, setting):
    filled(out)
    monkeypatch.setattr(verify, setting, getattr(verify, setting) * 2)
    store = SceneStore.open(out)
    assert store.verdict(A, B) is None
    features_kept = setting not in ("LONG_SIDE", "MAX_KEYPOINTS")
    assert (store.features(A) is not None) == features_kept
    assert store.capture(A) is not None and warnings_of(caplog) == []


def test_another_format_version_discards_everything_quietly(out, monkeypatch, caplog):
    filled(out)
    monkeypatch.setattr(scene_formats, "FORMAT_VERSION", scene_formats.FORMAT_VERSION + 1)
    store = SceneStore.open(out)
    assert store.features(A) is None and store.capture(A) is None and store.verdict(A, B) is None
    assert warnings_of(caplog) == []


# --- foreign entries: symlinks, files, folders -----------------------------------------------------------------

SYMLINK_PLACES = {
    "scenes": lambda out: out / "scenes",
    "features": lambda out: out / "scenes" / "features",
    "shard": lambda out: feature_file(out, A).parent,
    "features-file": lambda out: feature_file(out, A),
    "captures": lambda out: out / "scenes" / "captures",
    "pairs": lambda out: out / "scenes" / "pairs",
    "mark": lambda out: out / "scenes" / MARK,
    "shard-mark": lambda out: feature_file(out, A).parent / MARK,
    "temporary": lambda out: out / "scenes" / ".captures.0a1b2c3d.tmp",
}


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "folder" / "kept.txt").write_text("the user's")
    (outside / "file.txt").write_text("the user's file")
    return outside


def _every_operation(out: Path) -> SceneStore:
    store = SceneStore.open(out)
    store.features(A)
    store.features(C)
    store.put_features(A, features(9, 9))
    store.put_features(C, features(9, 9))
    store.put_capture(C, NO_CAPTURE)
    store.put_verdict(A, C, Verdict(True, 30, 0.5))
    store.save()
    store.forget_except([C])
    store.save()
    sweep_scene_leftovers(out)
    return store


@pytest.mark.parametrize("target", ["folder", "file"])
@pytest.mark.parametrize("place", sorted(SYMLINK_PLACES))
def test_a_symlink_at_any_of_our_names_is_never_followed_nor_removed(tmp_path, out, caplog, place, target):
    filled(out)
    outside = _outside(tmp_path)
    planted = SYMLINK_PLACES[place](out)
    if planted.is_dir() and not planted.is_symlink():
        shutil.rmtree(planted)
    elif os.path.lexists(planted):
        planted.unlink()
    aim = outside / ("folder" if target == "folder" else "file.txt")
    planted.symlink_to(aim)
    before, unmarked = snapshot(outside), snapshot(planted.parent)
    _every_operation(out)
    assert snapshot(outside) == before
    if planted.name == MARK:  # a folder whose mark is a link is not ours: nothing in it is written or removed
        assert snapshot(planted.parent) == unmarked
    assert os.readlink(planted) == str(aim)
    assert all("\n" not in w for w in warnings_of(caplog))


@pytest.mark.parametrize("place", ["features", "features-file"])
def test_a_problem_with_a_features_file_or_folder_is_said_once_however_often_it_is_asked_for(tmp_path, out, caplog,
                                                                                           place):
    filled(out)
    planted = SYMLINK_PLACES[place](out)
    shutil.rmtree(planted) if planted.is_dir() else planted.unlink()
    planted.symlink_to(_outside(tmp_path) / "folder")
    store = SceneStore.open(out)
    for _ in range(3):
        assert store.features(A) is None
        store.put_features(A, features(1))
    assert len(warnings_of(caplog)) == 2  # one for reading, one for writing
    assert all(str(planted) in w for w in warnings_of(caplog))


@pytest.mark.parametrize("place", ["features-file", "captures"])
def test_a_fifo_at_our_name_is_refused_without_hanging(out, caplog, place):
    filled(out)
    path = SYMLINK_PLACES[place](out)
    path.unlink()
    os.mkfifo(path)
    store = SceneStore.open(out)
    assert (store.features(A) if place == "features-file" else store.capture(A)) is None
    assert len(warnings_of(caplog)) == 1
    assert stat.S_ISFIFO(os.lstat(path).st_mode)


FOREIGN = ("scenes/notes.txt", "scenes/features/readme.md", "SHARD/notes.txt", "SHARD/.notes.txt.0a1b2c3d.tmp",
           "scenes/features/zz/0123456789abcdef0123456789abcdef",
           "scenes/features/cd/0123456789abcdef0123456789abcdef",
           "scenes/features/cd/.0123456789abcdef0123456789abcdef.0a1b2c3d.tmp", "scenes/my folder/x.txt",
           "scenes/.pairs.backup")


def test_foreign_files_and_folders_in_scenes_are_left_alone(out):
    """Files of the user's in our folders, and folders of the user's (the unmarked cd/, even though a shard's name
    and holding names like ours) keep every byte, whatever the store reads, writes, forgets and sweeps."""
    filled(out)
    shard = os.path.relpath(feature_file(out, A).parent, out)
    paths = [out / rel.replace("SHARD", shard) for rel in FOREIGN]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"mine: {path.name}")
    before = {p: entry(p) for p in paths}
    _every_operation(out)
    assert {p: entry(p) for p in paths} == before


def test_a_users_folder_named_scenes_is_not_ours_and_gets_nothing(out, caplog):
    (out / "scenes" / "holiday").mkdir(parents=True)
    (out / "scenes" / "holiday" / "p.jpg").write_bytes(b"a photo")
    before = snapshot(out)
    store = _every_operation(out)
    assert snapshot(out) == before
    assert "scenes" in warnings_of(caplog)[0] and len(warnings_of(caplog)) == 1
    assert store.capture(C) == NO_CAPTURE  # the run goes on, only without keeping anything


def test_an_empty_scenes_folder_is_adopted(out):
    (out / "scenes").mkdir()
    SceneStore.open(out).put_features(A, features(2))
    assert (out / "scenes" / MARK).is_file() and feature_file(out, A).is_file()


def test_the_mark_is_the_one_patterns_uses():
    from photocluster.patterns import FOLDER_MARK

    assert scene_store.FOLDER_MARK is fsutil.FOLDER_MARK is FOLDER_MARK == MARK  # one home: fsutil


def test_a_marked_output_holding_scenes_is_still_photoclusters(out):
    (out / MARKER).write_text(MARKER_TEXT)
    filled(out)
    assert foreign_reason(out) is None


# --- a killed write --------------------------------------------------------------------------------------------

_KILLED = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from photocluster.scene_store import SceneStore
    from photocluster.capture import NO_CAPTURE
    from photocluster.verify import Features
    store = SceneStore.open(sys.argv[1])
    os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # killed between the write and the rename
    if sys.argv[2] == "features":
        store.put_features(("c.jpg", 3, -7), Features(np.zeros((1, 2), np.float16), np.ones((1, 128), np.uint8),
                                                      (10, 10)))
    else:
        store.put_capture(("c.jpg", 3, -7), NO_CAPTURE)
        store.save()
""")


def _kill_while_writing(out: Path, what: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}  # this checkout's photocluster
    done = subprocess.run([sys.executable, "-c", _KILLED, str(out), what], env=env, timeout=120)
    assert done.returncode == -9


def test_temporaries_of_a_killed_write_are_swept_and_nothing_written_is_lost(tmp_path, out):
    filled(out)
    store = SceneStore.open(out)
    store.put_features(C, features(1))  # the shard of C exists, so the kill comes in the write itself
    _kill_while_writing(out, "features")
    _kill_while_writing(out, "captures")
    left = [p for p in (out / "scenes").rglob(".*.tmp")]
    names = sorted(p.name.split(".")[1] for p in left)
    assert names == sorted([digest_hex(C), "captures"]), left
    lookalike = feature_file(out, C).parent / f".{digest_hex(C)}.feedbeef.tmp"
    lookalike.symlink_to(tmp_path / "elsewhere")
    user = out / "scenes" / ".notes.0a1b2c3d.tmp"
    user.write_text("mine")

    pipeline.sweep_leftovers(out, "fingerprints.pk")
    assert not any(os.path.lexists(p) for p in left)
    assert os.readlink(lookalike) == str(tmp_path / "elsewhere") and user.read_text() == "mine"
    again = SceneStore.open(out)
    assert same_features(again.features(A), features(30, 1)) and same_features(again.features(C), features(1))
    assert again.capture(B) == NO_CAPTURE and again.capture(C) is None  # the killed save changed nothing


def test_sweeping_an_output_without_scenes_is_quiet(out, caplog):
    sweep_scene_leftovers(out)
    sweep_scene_leftovers(out / "missing")
    assert warnings_of(caplog) == []


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_forgetting_only_the_keys_that_left_keeps_what_forgetting_all_others_keeps(tmp_path, out):
    """With `left` (the keys that left since the last prune), the store ends as a prune against every key does:
    B left, so its features file, capture and verdicts go; A's and C's stay."""
    store = filled(out)
    store.put_features(C, features(4, 3))
    store.put_verdict(A, C, Verdict(True, 12, 0.5))
    store.save()
    store.put_verdict(C, ("new.jpg", 1, 1), Verdict(False, 0, 0.0))  # not saved yet: one kept, one forgotten
    store.put_verdict(B, ("new.jpg", 1, 1), Verdict(True, 30, 0.5))
    twin = tmp_path / "twin"
    shutil.copytree(out, twin, symlinks=True)
    current = [A, C, ("new.jpg", 1, 1)]
    store.forget_except(current, left=[B])
    full = SceneStore.open(twin)
    full.put_verdict(C, ("new.jpg", 1, 1), Verdict(False, 0, 0.0))
    full.put_verdict(B, ("new.jpg", 1, 1), Verdict(True, 30, 0.5))
    full.forget_except(current)
    store.save()
    full.save()
    assert not feature_file(out, B).exists()
    assert feature_file(out, A).exists() and feature_file(out, C).exists()
    assert store.capture(B) is None and store.verdict(A, B) is None and store.verdict(B, C) is None
    assert store.verdict(A, C) == Verdict(True, 12, 0.5) and store.verdict(C, ("new.jpg", 1, 1)) is not None
    assert store.verdict(B, ("new.jpg", 1, 1)) is None
    assert files_under(out) == files_under(twin)


def test_forgetting_the_keys_that_left_leaves_a_symlink_at_a_features_name(tmp_path, out, caplog):
    filled(out)
    target = tmp_path / "users.bin"
    target.write_bytes(b"mine")
    feature_file(out, B).unlink()
    feature_file(out, B).symlink_to(target)
    SceneStore.open(out).forget_except([A], left=[B])
    assert feature_file(out, B).is_symlink() and target.read_bytes() == b"mine"
    assert feature_file(out, A).exists()


def test_the_stamp_changes_with_any_verdict_or_features_file_written_or_removed(out):
    store = filled(out)
    first = store.stamp()
    assert first is not None and SceneStore.open(out).stamp() == first
    store.put_capture(C, NO_CAPTURE)
    store.save()  # captures are checked against every key at each prune: they are not in the stamp
    assert store.stamp() == first
    store.put_features(C, features(4, 3))
    second = store.stamp()
    assert second != first
    store.put_verdict(A, C, Verdict(True, 12, 0.5))
    store.save()
    third = store.stamp()
    assert third != second
    store.forget_except([A, B], left=[C])
    assert store.stamp() != third


def test_a_store_that_cannot_be_kept_has_no_stamp(out):
    (out / "scenes").mkdir()
    (out / "scenes" / "users.txt").write_text("mine")  # a user's folder: not ours
    assert SceneStore.open(out).stamp() is None
