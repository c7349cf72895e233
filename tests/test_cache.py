import os
import pickle

import numpy as np
import pytest

from photocluster.cache import CacheError, FingerprintCache, load_or_new
from photocluster.library import PhotoFile

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
    assert loaded.labels(["dir/p0.jpg"]) == {"dir/p0.jpg": ((281, 0.7), (285, 0.2))}


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
