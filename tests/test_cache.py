import os
import pickle

import numpy as np
import pytest

from photocluster.cache import CacheError, FingerprintCache, load_or_new
from photocluster.library import PhotoFile

from .conftest import fails_after

DIM = 16


def make_cache(n=5, seed=0):
    rng = np.random.default_rng(seed)
    cache = FingerprintCache("test-model", DIM)
    for i in range(n):
        cache.put(PhotoFile(f"dir/p{i}.jpg", 100 + i, 10**9 + i), rng.random(DIM, np.float32), ((281, 0.7), (285, 0.2)))
    return cache


def test_round_trip(fs):
    fs.create_dir("/out")
    cache = make_cache()
    cache.put_failure(PhotoFile("bad.jpg", 3, 4), "cannot identify image file")
    cache.save("/out/fingerprints.pk")
    loaded = FingerprintCache.load("/out/fingerprints.pk")
    assert loaded.entries.keys() == cache.entries.keys()
    rels = cache.fingerprinted()
    assert rels == [f"dir/p{i}.jpg" for i in range(5)]
    np.testing.assert_array_equal(loaded.vectors(rels), cache.vectors(rels))
    assert loaded.entries["bad.jpg"].error == "cannot identify image file"
    assert loaded.predictions(["dir/p0.jpg"]) == {"dir/p0.jpg": ((281, 0.7), (285, 0.2))}


def test_is_current_tracks_size_and_mtime():
    cache = make_cache(1)
    assert cache.is_current(PhotoFile("dir/p0.jpg", 100, 10**9))
    assert not cache.is_current(PhotoFile("dir/p0.jpg", 101, 10**9))
    assert not cache.is_current(PhotoFile("dir/p0.jpg", 100, 10**9 + 1))
    assert not cache.is_current(PhotoFile("new.jpg", 1, 1))


def test_rename_keeps_fingerprint_and_remove_forgets(fs):
    fs.create_dir("/out")
    cache = make_cache(3)
    before = cache.vectors(["dir/p1.jpg"])
    assert cache.rename("dir/p1.jpg", "moved/p1.jpg")
    cache.remove("dir/p0.jpg")
    cache.save("/out/c.pk")
    loaded = FingerprintCache.load("/out/c.pk")
    assert sorted(loaded.entries) == ["dir/p2.jpg", "moved/p1.jpg"]
    np.testing.assert_array_equal(loaded.vectors(["moved/p1.jpg"]), before)


def test_odd_paths_round_trip(fs):
    fs.create_dir("/out")
    cache = FingerprintCache("m", DIM)
    odd = ["new\nline.jpg", os.fsdecode(b"bad\xffbyte.jpg"), "ünï.jpg"]
    for rel in odd:
        cache.put(PhotoFile(rel, 1, 1), np.ones(DIM, np.float32), ())
    cache.save("/out/c.pk")
    assert sorted(FingerprintCache.load("/out/c.pk").entries) == sorted(odd)


def test_float16_storage_moves_cosines_by_less_than_1e_3(tmp_path):
    rng = np.random.default_rng(1)
    vectors = np.maximum(rng.normal(0.3, 1.0, (200, 4096)), 0).astype(np.float32)  # ReLU-like, as fc2 is
    cache = FingerprintCache("test-model", 4096)
    rels = [f"p{i:03d}.jpg" for i in range(len(vectors))]
    for i, (rel, vector) in enumerate(zip(rels, vectors)):
        cache.put(PhotoFile(rel, 1, i), vector, ())
    cache.save(tmp_path / "c.pk")
    stored = FingerprintCache.load(tmp_path / "c.pk").vectors(rels).astype(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    back = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    assert np.abs(unit @ unit.T - back @ back.T).max() < 1e-3
    assert (tmp_path / "c.pk").stat().st_size < 3 * vectors.size  # 2 bytes a number (float32 would be 4)


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "fingerprints.pk"
    path.write_bytes(pickle.dumps({"format": "photocluster-fingerprints", "x": CreatesFile()}))
    with pytest.raises(CacheError, match="refused"):
        FingerprintCache.load(path)
    assert not marker.exists()


def test_load_or_new_moves_a_bad_cache_aside_and_starts_empty(tmp_path, caplog):
    marker = tmp_path / "pwned"

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "fingerprints.pk"
    path.write_bytes(pickle.dumps(CreatesFile()))
    cache = load_or_new(path, "m", DIM)
    assert len(cache) == 0 and not marker.exists() and not path.exists()
    assert [p.name.startswith("fingerprints.pk.bad-") for p in tmp_path.iterdir()] == [True]
    assert "refused" in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_garbage_cache_is_rebuilt(tmp_path, damage):
    path = tmp_path / "fingerprints.pk"
    make_cache(20).save(path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(500), "empty": b""}[damage])
    assert len(load_or_new(path, "test-model", DIM)) == 0


def test_inconsistent_columns_are_refused(tmp_path):
    cache = make_cache(3)
    columns = cache._to_columns()
    columns["vectors"] = bytes(columns["vectors"].raw())[:-2]
    path = tmp_path / "c.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    with pytest.raises(CacheError, match="inconsistent"):
        FingerprintCache.load(path)


def test_older_format_version_is_rebuilt_not_misread(tmp_path, caplog):
    cache = make_cache(3)
    columns = cache._to_columns()
    columns["version"] = 0
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    assert len(load_or_new(path, "test-model", DIM)) == 0
    assert "version" in caplog.text


def test_other_model_cache_is_not_mixed(tmp_path):
    path = tmp_path / "fingerprints.pk"
    make_cache(3).save(path)
    assert len(load_or_new(path, "test-model", DIM)) == 3
    assert len(load_or_new(path, "other-model", DIM)) == 0


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "fingerprints.pk"
    make_cache(3).save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pickle, "dump", boom)
    with pytest.raises(OSError):
        make_cache(9).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fingerprints.pk"]


# --- hostile caches (issue 9, classes 3 and 5): bounded, refused in one short line, moved aside, run goes on -------
import contextlib  # noqa: E402
import logging  # noqa: E402
import stat  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from photocluster.cache import FORMAT  # noqa: E402

import photocluster  # noqa: E402

PACKAGE_ROOT = Path(photocluster.__file__).resolve().parents[1]  # the subprocess loads the same code as the test


def _s(text: str) -> bytes:
    """The pickle opcodes of one string, memoized as the pickler writes it."""
    raw = text.encode()
    return (b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else b"X" + struct.pack("<I", len(raw))) + raw + b"\x94"


def _cache_dict(value_ops: bytes, key: str = "version") -> bytes:
    """A protocol-5 pickle of {"format": FORMAT, key: <value_ops>}: it passes the format check, then `key` bites."""
    return b"\x80\x05}\x94(" + _s("format") + _s(FORMAT) + _s(key) + value_ops + b"u."


def _batched(item_ops: bytes, count: int) -> bytes:
    """A list of `count` items, appended in batches of 1000 like the pickler does."""
    batches, left = [], count
    while left:
        batches.append(b"(" + item_ops * min(1000, left) + b"e")
        left -= min(1000, left)
    return b"]\x94" + b"".join(batches)


def nested_lists(depth: int) -> bytes:
    return _cache_dict(b"]" * depth + b"a" * (depth - 1))


def nested_dicts(depth: int) -> bytes:
    return _cache_dict((b"}" + _s("k")) * depth + b"N" + b"s" * depth)


def nested_tuples(depth: int) -> bytes:
    return _cache_dict(b"N" + b"\x85" * depth)


def empty_sets(count: int) -> bytes:  # the 2.5 GB shape: each 1-byte opcode builds a 200-byte set
    return b"\x80\x05" + b"\x8f" * count + b"."


def empty_lists(count: int) -> bytes:
    return _cache_dict(_batched(b"]", count))


def repeated_huge_string(length: int, refs: int) -> bytes:  # memo references to one string: repr() of it is vast
    big = b"X" + struct.pack("<I", length) + b"x" * length + b"\x94"  # memo entry 3 (format, FORMAT, key are 0-2)
    return _cache_dict(_batched(b"h\x04", refs)[:2] + b"(" + big + b"e" + _batched(b"h\x04", refs)[2:])


def huge_memo_index() -> bytes:  # LONG_BINPUT 2**32-1: the unpickler grows its memo table to that size
    return _cache_dict(b"N" + b"r" + struct.pack("<I", 2**32 - 1))


def tiny_strings(count: int) -> bytes:  # made only of what a cache holds; refused by validation, later
    return _cache_dict(_batched(b"\x8c\x02ab\x94", count), key="paths")


HOSTILE_SHAPES = {
    "nested lists": lambda scale: nested_lists(scale),
    "nested dicts": lambda scale: nested_dicts(scale),
    "nested tuples": lambda scale: nested_tuples(scale),
    "empty sets": lambda scale: empty_sets(scale),
    "empty lists": lambda scale: empty_lists(scale),
    "huge string by memo refs": lambda scale: repeated_huge_string(scale, scale),
    "huge memo index": lambda scale: huge_memo_index(),
}


@contextlib.contextmanager
def _warnings_of_cache():
    """The cache's log records (caplog is per test; hypothesis runs many examples in one)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("photocluster.cache")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _what_is_at(path: Path):
    """Kind and content of the entry at `path`, without following a link."""
    st_ = os.lstat(path)
    if stat.S_ISLNK(st_.st_mode):
        return "link", os.readlink(path)
    if stat.S_ISREG(st_.st_mode):
        return "file", path.read_bytes()
    if stat.S_ISDIR(st_.st_mode):
        return "dir", sorted(os.listdir(path))
    return stat.S_IFMT(st_.st_mode), None


def assert_refused_and_moved_aside(path: Path) -> None:
    """load_or_new gives an empty cache, says so in one short line, and keeps the bad entry beside, unchanged."""
    before = _what_is_at(path)
    with _warnings_of_cache() as records, fails_after(20, "loading the cache"):
        cache = load_or_new(path, "test-model", DIM)
    assert len(cache) == 0
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "\n" not in warnings[0] and len(warnings[0]) < 300, warnings[0][:300]
    assert not os.path.lexists(path)
    aside = [p for p in path.parent.iterdir() if p.name.startswith(path.name + ".bad-")]
    assert len(aside) == 1 and _what_is_at(aside[0]) == before


@pytest.mark.parametrize("shape", sorted(HOSTILE_SHAPES))
@pytest.mark.parametrize("scale", [3, 1000, 200_000])
def test_hostile_shapes_are_refused_in_one_short_line(tmp_path, shape, scale):
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(HOSTILE_SHAPES[shape](scale))
    assert_refused_and_moved_aside(path)


# Never a legal value for any column of make_cache(2): its lists have 2 items, its byte columns 40 or 64 bytes.
_NOT_TWO = st.integers(0, 5).filter(lambda n: n != 2)
_WRONG = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                   st.text(max_size=20), st.binary(max_size=20),
                   _NOT_TWO.flatmap(lambda n: st.lists(st.integers(), min_size=n, max_size=n)),
                   _NOT_TWO.flatmap(lambda n: st.lists(st.text(max_size=3), min_size=n, max_size=n)),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=3), st.just([None, 1.5]),
                   st.just([[[]], [[]]]), st.just(["x", "x"]), st.just([True, False]), st.just("x" * 100_000))
_COLUMNS = ["model_id", "dim", "paths", "sizes", "mtimes", "errors", "vectors", "label_idx", "label_prob"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_COLUMNS), _WRONG)
def test_a_wrong_type_in_any_column_is_refused(column, value):
    columns = make_cache(2)._to_columns()
    columns[column] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fingerprints.pk"
        path.write_bytes(pickle.dumps(columns, protocol=5))
        if column == "model_id" and isinstance(value, str) and len(value) <= 200:
            return  # a (short) string is a legal model id: another model's cache, not a bad one
        if column == "dim" and type(value) is int and value > 0:
            return  # the same: another model's cache
        assert_refused_and_moved_aside(path)


def test_a_cache_cut_short_anywhere_is_refused(tmp_path):
    cache = make_cache(4)
    cache.put_failure(PhotoFile("bad.jpg", 3, 4), "cannot identify image file")
    cache.save(tmp_path / "whole.pk")
    whole = (tmp_path / "whole.pk").read_bytes()
    for cut in range(0, len(whole) - 1, 3):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / "fingerprints.pk").write_bytes(whole[:cut])
        assert_refused_and_moved_aside(folder / "fingerprints.pk")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_are_refused(data, after_a_header):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fingerprints.pk"
        path.write_bytes(b"\x80\x05" + data if after_a_header else data)
        assert_refused_and_moved_aside(path)


@pytest.mark.parametrize("kind", ["fifo", "dir", "link to a valid cache", "link to /dev/zero", "dangling link"])
def test_something_else_at_the_cache_path_is_left_alone_and_never_opened(tmp_path, kind):
    """Not a file photocluster made: ForeignEntry (see fsutil), at once, and nothing is read, moved or changed."""
    from photocluster.fsutil import ForeignEntry

    out = tmp_path / "out"
    out.mkdir()
    path = out / "fingerprints.pk"
    elsewhere = tmp_path / "elsewhere.pk"
    make_cache(3).save(elsewhere)
    {"fifo": lambda: os.mkfifo(path), "dir": lambda: path.mkdir(),
     "link to a valid cache": lambda: path.symlink_to(elsewhere), "link to /dev/zero": lambda: path.symlink_to("/dev/zero"),
     "dangling link": lambda: path.symlink_to(tmp_path / "nothing")}[kind]()
    before, target_before = _what_is_at(path), elsewhere.read_bytes()
    with fails_after(20, "loading the cache"), pytest.raises(ForeignEntry):
        load_or_new(path, "test-model", DIM)
    assert _what_is_at(path) == before and os.listdir(out) == ["fingerprints.pk"]
    assert elsewhere.read_bytes() == target_before


def test_a_refused_cache_never_overwrites_one_refused_before(tmp_path):
    path = tmp_path / "fingerprints.pk"
    for content in (b"first", b"second", b"third"):  # within one second: same timestamp
        path.write_bytes(content)
        load_or_new(path, "test-model", DIM)
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert kept == [b"first", b"second", b"third"]


def test_a_cache_that_cannot_be_moved_aside_is_still_only_a_warning(tmp_path, monkeypatch, caplog):
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(b"garbage")

    def read_only(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", read_only)
    assert len(load_or_new(path, "test-model", DIM)) == 0
    assert path.read_bytes() == b"garbage" and "could not move it aside" in caplog.text


def test_a_valid_cache_still_loads_with_every_kind_of_entry(tmp_path):
    cache = make_cache(2500)  # more than one pickler batch of 1000
    cache.put_failure(PhotoFile("a/bad.jpg", 3, 4), "cannot identify image file")
    cache.put_failure(PhotoFile("b/bad.jpg", 3, 4), "cannot identify image file")
    cache.put_failure(PhotoFile("big.jpg", 2**40, -5), "x" * 70_000)
    cache.put(PhotoFile("ünï/\udcff.jpg", 0, 2**62), np.ones(DIM, np.float32), ())
    cache.save(tmp_path / "c.pk")
    loaded = load_or_new(tmp_path / "c.pk", "test-model", DIM)
    assert loaded.entries == cache.entries


_PEAK_SCRIPT = """
import logging, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # keeps a regression from taking the machine down
from photocluster.cache import load_or_new
logging.basicConfig(level=logging.WARNING)
cache = load_or_new(Path(sys.argv[1]), "test-model", 16)
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
print(len(cache), int(peak) * 1024)
"""


def _peak_bytes(path: Path) -> int:
    """Peak resident memory of a fresh process that loads the cache at `path` (it must return an empty cache)."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stderr) < 300, done.stderr[:300]  # one short line, never the content
    entries, peak = map(int, done.stdout.split())
    return peak


TEN_MB = 10_000_000


@pytest.mark.parametrize("shape", ["empty sets", "empty lists", "nested lists", "huge string by memo refs",
                                   "tiny strings"])
def test_a_10_mb_tampered_cache_costs_bounded_memory(tmp_path, shape):
    """10 MB of 1-byte EMPTY_SET opcodes took 2.5 GB. Now each allowed opcode of n bytes builds at most ~16 n bytes
    (see cache.py), so a 10 MB file may add at most 20 x 10 MB over a run that loads no cache at all."""
    make = {"empty sets": lambda: empty_sets(TEN_MB), "empty lists": lambda: empty_lists(TEN_MB),
            "nested lists": lambda: nested_lists(TEN_MB // 2),
            "huge string by memo refs": lambda: repeated_huge_string(TEN_MB // 2, TEN_MB // 4),
            "tiny strings": lambda: tiny_strings(TEN_MB // 5)}
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(make[shape]())
    assert 0.9 * TEN_MB < path.stat().st_size < 1.2 * TEN_MB
    baseline = _peak_bytes(tmp_path / "no-cache-here.pk")
    extra = _peak_bytes(path) - baseline
    print(f"{shape}: {extra / 1e6:.0f} MB over a run without a cache")
    assert extra < 20 * TEN_MB
    assert not path.exists()  # moved aside


@pytest.mark.parametrize("planted", ["deeply nested", "10 MB of empty sets", "truncated"])
def test_the_cli_run_goes_on_past_a_hostile_cache(tmp_path, stand_in, capsys, planted):
    from photocluster.cli import main

    from .test_pipeline import make_library

    lib = make_library(tmp_path / "lib")
    out = tmp_path / "out"
    out.mkdir()
    cache = out / "fingerprints.pk"
    {"deeply nested": lambda: cache.write_bytes(nested_lists(100_000)), "truncated": lambda: cache.write_bytes(
        b"\x80\x05}\x94(" + _s("format")), "10 MB of empty sets": lambda: cache.write_bytes(empty_sets(TEN_MB))}[planted]()
    with fails_after(60, "loading the cache"):
        status = main([str(lib), "--out", str(out), "--model", "squeezenet", "--no-patterns"])
    printed, err = capsys.readouterr()
    assert status == 0 and "3 clusters" in printed
    refusals = [line for line in err.splitlines() if "refused" in line]
    assert len(refusals) == 1 and len(refusals[0]) < 300 and "Traceback" not in err
    assert len(FingerprintCache.load(cache)) > 0  # rebuilt, and the hostile entry kept beside it
    assert len([p for p in out.iterdir() if p.name.startswith("fingerprints.pk.bad-")]) == 1


def test_a_fifo_at_the_cache_path_stops_the_cli_at_once_in_one_line(tmp_path, stand_in, capsys):
    """It once hung the run for good. A FIFO is not photocluster's, so it is left there, and the run says so."""
    from photocluster.cli import main

    from .test_pipeline import make_library

    lib = make_library(tmp_path / "lib")
    out = tmp_path / "out"
    assert main([str(lib), "--out", str(out), "--model", "squeezenet", "--no-patterns"]) == 0  # out is ours now
    (out / "fingerprints.pk").unlink()
    os.mkfifo(out / "fingerprints.pk")
    capsys.readouterr()
    with fails_after(60, "loading the cache"):
        status = main([str(lib), "--out", str(out), "--model", "squeezenet", "--no-patterns"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("photocluster: error:")]
    assert status != 0 and len(errors) == 1 and "fingerprints.pk" in errors[0] and "Traceback" not in err
    assert stat.S_ISFIFO(os.lstat(out / "fingerprints.pk").st_mode)


# --- detections (issue 13) ---------------------------------------------------------------------------------------

from photocluster.labels import Detection  # noqa: E402

PERSON = Detection("person", 0.875, (0.25, 0.125, 0.5, 0.75))
CUP = Detection("cup", 0.5, (0.0, 0.5, 0.25, 1.0))


def test_detections_round_trip_with_photos_not_yet_detected(tmp_path):
    cache = make_cache(3)
    photos = [PhotoFile(f"dir/p{i}.jpg", 100 + i, 10**9 + i) for i in range(3)]
    cache.put_detections(photos[0], (CUP, PERSON))  # kept best first
    cache.put_detections(photos[1], ())  # through the detector, nothing found
    cache.save(tmp_path / "c.pk")
    loaded = FingerprintCache.load(tmp_path / "c.pk")
    # the values are exact in float16, so they read back equal
    assert loaded.detections([p.rel for p in photos]) == [(PERSON, CUP), (), None]
    assert loaded.undetected() == ["dir/p2.jpg"]
    np.testing.assert_array_equal(loaded.vectors(["dir/p0.jpg"]), cache.vectors(["dir/p0.jpg"]))


def test_detections_of_a_changed_or_failed_photo_are_not_kept():
    cache = make_cache(1)
    cache.put_failure(PhotoFile("bad.jpg", 3, 4), "cannot identify image file")
    cache.put_detections(PhotoFile("dir/p0.jpg", 100, 10**9 + 1), (PERSON,))  # another mtime: changed since
    cache.put_detections(PhotoFile("bad.jpg", 3, 4), (PERSON,))
    assert cache.detections(["dir/p0.jpg", "bad.jpg"]) == [None, None]


def test_a_version_1_cache_keeps_its_fingerprints_and_has_no_detections(tmp_path):
    cache = make_cache(2)
    cache.put_detections(PhotoFile("dir/p0.jpg", 100, 10**9), (PERSON,))
    columns = cache._to_columns()
    columns["version"] = 1
    for name in ("det_count", "det_class", "det_score", "det_box"):
        del columns[name]
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    loaded = load_or_new(path, "test-model", DIM)
    assert loaded.fingerprinted() == ["dir/p0.jpg", "dir/p1.jpg"]
    assert loaded.undetected() == ["dir/p0.jpg", "dir/p1.jpg"]


@pytest.mark.parametrize("damage", ["count beyond the columns", "class beyond COCO", "count over the limit"])
def test_detection_columns_that_disagree_are_refused(tmp_path, damage):
    cache = make_cache(2)
    cache.put_detections(PhotoFile("dir/p0.jpg", 100, 10**9), (PERSON,))
    columns = {k: (bytes(v.raw()) if isinstance(v, pickle.PickleBuffer) else v) for k, v in cache._to_columns().items()}
    if damage == "count beyond the columns":
        columns["det_count"] = bytes([2, 0xFF])
    elif damage == "class beyond COCO":
        columns["det_class"] = bytes([80])
    else:
        columns["det_count"] = bytes([33, 0xFF])
    path = tmp_path / "c.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    with pytest.raises(CacheError, match="inconsistent"):
        FingerprintCache.load(path)


def test_detections_of_another_detector_are_made_again_and_the_fingerprints_kept(tmp_path):
    cache = make_cache(1)
    cache.put_detections(PhotoFile("dir/p0.jpg", 100, 10**9), (PERSON,))
    columns = cache._to_columns()
    columns["detector_id"] = "another-detector/1"
    path = tmp_path / "c.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    loaded = FingerprintCache.load(path)
    assert loaded.undetected() == ["dir/p0.jpg"] and loaded.fingerprinted() == ["dir/p0.jpg"]


# --- what produced each fingerprint (issue 15) -----------------------------------------------------------------

def test_each_fingerprints_producer_round_trips_and_survives_renames_and_detections(tmp_path):
    cache = make_cache(4)  # made without a producer
    photos = [PhotoFile(f"dir/p{i}.jpg", 100 + i, 10**9 + i) for i in range(4)]
    vector = np.ones(DIM, np.float32)
    cache.put(photos[0], vector, (), producer="openvino-bf16")
    cache.put(photos[1], vector, (), producer="openvino-bf16")
    cache.put(photos[2], vector, (), producer="tensorflow")
    cache.put_failure(PhotoFile("bad.jpg", 3, 4), "cannot identify image file")
    cache.put_detections(photos[0], (PERSON,))  # a detect-only pass keeps the producer
    assert cache.rename("dir/p1.jpg", "moved/p1.jpg")
    cache.save(tmp_path / "c.pk")
    loaded = FingerprintCache.load(tmp_path / "c.pk")
    assert {rel: e.producer for rel, e in loaded.entries.items()} == {
        "dir/p0.jpg": "openvino-bf16", "moved/p1.jpg": "openvino-bf16", "dir/p2.jpg": "tensorflow",
        "dir/p3.jpg": None, "bad.jpg": None}
    assert loaded.fingerprints_by_producer() == {"openvino-bf16": 2, "tensorflow": 1, "unknown": 1}
    with pytest.raises(ValueError, match="producer"):
        cache.put(photos[3], vector, (), producer="x" * 65)


def test_a_version_2_cache_loads_with_every_producer_unknown(tmp_path):
    cache = make_cache(2)
    cache.put(PhotoFile("dir/p0.jpg", 100, 10**9), np.ones(DIM, np.float32), (), (PERSON,), producer="tensorflow")
    columns = cache._to_columns()
    columns["version"] = 2
    del columns["producers"], columns["producer"]
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    loaded = load_or_new(path, "test-model", DIM)
    assert loaded.fingerprinted() == ["dir/p0.jpg", "dir/p1.jpg"]  # kept, not recomputed
    assert loaded.detections(["dir/p0.jpg"]) == [(PERSON,)]
    assert [e.producer for e in loaded.entries.values()] == [None, None]
    assert loaded.fingerprints_by_producer() == {"unknown": 2}


@pytest.mark.parametrize("damage", ["index beyond the names", "column too short", "a name that is no string",
                                    "a name twice", "a name too long", "names not a list", "column not bytes"])
def test_tampered_producer_columns_are_refused(tmp_path, damage):
    cache = make_cache(2)
    cache.put(PhotoFile("dir/p0.jpg", 100, 10**9), np.ones(DIM, np.float32), (), producer="tensorflow")
    columns = {k: (bytes(v.raw()) if isinstance(v, pickle.PickleBuffer) else v) for k, v in cache._to_columns().items()}
    assert columns["producers"] == ["tensorflow"] and columns["producer"] == bytes([0, 0xFF])
    columns.update({
        "index beyond the names": {"producer": bytes([1, 0xFF])},
        "column too short": {"producer": bytes([0])},
        "a name that is no string": {"producers": [7]},
        "a name twice": {"producers": ["tensorflow", "tensorflow"]},
        "a name too long": {"producers": ["t" * 65]},
        "names not a list": {"producers": "tensorflow"},
        "column not bytes": {"producer": [0, 255]},
    }[damage])
    path = tmp_path / "c.pk"
    path.write_bytes(pickle.dumps(columns, protocol=5))
    with pytest.raises(CacheError, match="inconsistent"):
        FingerprintCache.load(path)
