"""The cache's read-only view for searches: the same paths, vectors and detections as the full load."""
from __future__ import annotations

import numpy as np
import pytest

from photocluster.cache import CacheError, FingerprintCache
from photocluster.cache_view import CacheView
from photocluster.labels import Detection
from photocluster.library import PhotoFile

DOG = Detection("dog", 0.75, (0.125, 0.25, 0.5, 1.0))
CUP = Detection("cup", 0.5, (0.5, 0.5, 0.75, 0.75))


def test_the_view_has_the_full_loads_vectors_rows_and_detections(tmp_path):
    cache = FingerprintCache("m/1", 4)
    cache.put(PhotoFile("c.jpg", 3, 30), np.array([1, 0, 0, 0], np.float32), (), (CUP,))
    cache.put_failure(PhotoFile("b.jpg", 2, 20), "broken")
    cache.put(PhotoFile("a.jpg", 1, 10), np.array([0, 2, 0, 0], np.float32), (), (DOG, CUP))
    cache.put(PhotoFile("d.jpg", 4, 40), np.array([0, 0, 3, 0], np.float32), (), None)  # not detected yet
    path = tmp_path / "fingerprints.pk"
    cache.save(path)
    full, view = FingerprintCache.load(path), CacheView.load(path)
    assert view.model_id == "m/1" and view.paths == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    for rel in ("a.jpg", "c.jpg", "d.jpg"):
        entry = full.entries[rel]
        row = view.current_row(rel, entry.size, entry.mtime_ns)
        assert view.vectors[row].tolist() == full.vectors([rel])[0].tolist()
        assert view.detections(rel) == entry.detections
    assert view.current_row("b.jpg", 2, 20) is None  # failed: no fingerprint
    assert view.current_row("a.jpg", 1, 11) is None  # changed since
    assert view.current_row("zz.jpg", 1, 10) is None
    assert [view.paths[i] for i in view.fingerprinted] == ["a.jpg", "c.jpg", "d.jpg"]


def test_a_file_that_is_no_cache_is_refused(tmp_path):
    path = tmp_path / "fingerprints.pk"
    path.write_bytes(b"\x80\x05K\x01.")
    with pytest.raises(CacheError):
        CacheView.load(path)
