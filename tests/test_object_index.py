"""The object index file: a round trip, what is dropped, and refusal of files that are not one."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from photocluster.labels import Detection
from photocluster.object_index import IndexFileError, ObjectIndex, load_or_new

DOG = Detection("dog", 0.75, (0.125, 0.25, 0.5, 1.0))
CUP = Detection("cup", 0.5, (0.5, 0.5, 0.75, 0.75))


def filled() -> ObjectIndex:
    index = ObjectIndex("model/a", "detector/b", 0.2, 3)
    index.put("b.jpg", 20, 200, [(1, DOG), (3, CUP)], np.array([[1, 2, 3], [4, 5, 6]], np.float32))
    index.put("a/\udcff.jpg", 10, 100, [(2, CUP)], np.array([[7, 8, 9]], np.float32))  # an undecodable name
    index.put("empty.jpg", 5, 50, [], np.zeros((0, 3), np.float32))
    return index


def test_a_saved_index_reads_back_the_same(tmp_path):
    path = tmp_path / "objects.index"
    filled().save(path)
    index = ObjectIndex.load(path)
    assert index.key == ("model/a", "detector/b", 0.2) and index.dim == 3
    assert sorted(index.entries) == ["a/\udcff.jpg", "b.jpg", "empty.jpg"]
    b = index.entries["b.jpg"]
    assert (b.size, b.mtime_ns) == (20, 200) and [o.number for o in b.objects] == [1, 3]
    assert [o.detection for o in b.objects] == [DOG, CUP]  # these values are exact in float16
    vectors = index.vectors()
    assert vectors[b.objects[1].row].tolist() == [4, 5, 6]
    assert vectors[index.entries["a/\udcff.jpg"].objects[0].row].tolist() == [7, 8, 9]
    assert index.entries["empty.jpg"].objects == ()


def test_entries_of_photos_gone_or_changed_are_dropped():
    index = filled()
    assert index.keep_only({"b.jpg": (20, 200), "a/\udcff.jpg": (11, 100)}) == 2
    assert list(index.entries) == ["b.jpg"]


def test_another_model_or_setting_gives_an_empty_index(tmp_path):
    path = tmp_path / "objects.index"
    filled().save(path)
    assert len(load_or_new(path, "model/a", "detector/b", 0.2, 3).entries) == 3
    assert not load_or_new(path, "model/other", "detector/b", 0.2, 3).entries
    assert not load_or_new(path, "model/a", "detector/b", 0.3, 3).entries


def _rewritten(path, change) -> bytes:
    """The archive at `path` with its members passed through change(name, bytes) -> (name, bytes, compression)."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            name, data, compression = change(info.filename, old.read(info))
            new.writestr(name, data, compress_type=compression)
    return out.getvalue()


def _as_npy(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("change, words", [
    (lambda n, d: (n, d, zipfile.ZIP_DEFLATED), "unexpected member"),
    (lambda n, d: ("evil.npy" if n == "score.npy" else n, d, zipfile.ZIP_STORED), "unexpected member"),
    (lambda n, d: (n, _as_npy(np.array([object()])) if n == "vectors.npy" else d, zipfile.ZIP_STORED), "not what"),
    (lambda n, d: (n, d[:-2] if n == "vectors.npy" else d, zipfile.ZIP_STORED), "not what"),
    (lambda n, d: (n, _as_npy(np.zeros(3, np.uint8)) if n == "counts.npy" else d, zipfile.ZIP_STORED), "disagree"),
])
def test_a_tampered_file_is_refused_in_one_line(tmp_path, change, words):
    path = tmp_path / "objects.index"
    filled().save(path)
    path.write_bytes(_rewritten(path, change))
    with pytest.raises(IndexFileError, match=words) as refused:
        ObjectIndex.load(path)
    assert "\n" not in str(refused.value)


def test_a_pickle_or_a_fifo_is_not_an_index(tmp_path):
    import os

    path = tmp_path / "objects.index"
    path.write_bytes(pickle.dumps({"format": "photocluster-objects"}))
    with pytest.raises(IndexFileError, match="unreadable"):
        ObjectIndex.load(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(IndexFileError, match="not a file"):
        ObjectIndex.load(fifo)
