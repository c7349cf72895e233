import os
import shutil
from pathlib import Path

import pytest

from photocluster import library, scan_state
from photocluster.library import PhotoFile, scan_library
from photocluster.scan_state import ScanState

PHOTOS = {"top.jpg", "a/p1.jpg", "a/p2.jpg", "b/q1.png", "b/deep/r1.jpg"}
OLD_NS = 1_000_000_000_000_000_000  # 2001-09-09


def make_library(root: Path) -> Path:
    for rel in sorted(PHOTOS) + ["a/notes.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * 10)
    return root


def age_folders(root: Path) -> None:
    """Date every folder's mtime back to 2001: a change made later sets it to now, a different value whatever the
    file system's timestamp granularity, so the tests never depend on a clock tick passing."""
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, ns=(OLD_NS, OLD_NS))


def last_folder_change(root: Path) -> int:
    return max(max(st.st_mtime_ns, st.st_ctime_ns) for st in (os.stat(d) for d, _, _ in os.walk(root)))


@pytest.fixture
def listed_later(monkeypatch):
    """Scans run a minute after the test's changes: their listings are trusted (scan_state.RECENT_NS)."""
    real = scan_state.time_ns
    monkeypatch.setattr(scan_state, "time_ns", lambda: real() + 60 * 10**9)


@pytest.fixture
def listings(monkeypatch):
    """The folders each scan lists (reads and stats the entries of)."""
    listed = []
    real = scan_state.list_folder
    monkeypatch.setattr(scan_state, "list_folder", lambda root, rel, skip: listed.append(rel) or real(root, rel, skip))
    return listed


def moved(rel: str, new: str) -> set[str]:
    return PHOTOS - {rel} | {new}


CHANGES = {  # what the test does to the library -> the photos a scan must then find
    "new file": (lambda r: (r / "a/p3.jpg").write_bytes(b"y"), PHOTOS | {"a/p3.jpg"}),
    "new file deep down": (lambda r: (r / "b/deep/r2.jpg").write_bytes(b"y"), PHOTOS | {"b/deep/r2.jpg"}),
    "deleted file": (lambda r: (r / "a/p1.jpg").unlink(), PHOTOS - {"a/p1.jpg"}),
    "renamed in its folder": (lambda r: os.rename(r / "a/p1.jpg", r / "a/renamed.jpg"),
                              moved("a/p1.jpg", "a/renamed.jpg")),
    "moved to another folder": (lambda r: os.rename(r / "a/p1.jpg", r / "b/p1.jpg"), moved("a/p1.jpg", "b/p1.jpg")),
    "renamed to a partial name": (lambda r: os.rename(r / "a/p1.jpg", r / "a/p1.jpg.part"), PHOTOS - {"a/p1.jpg"}),
    "new subfolder": (lambda r: (r / "a/new").mkdir() or (r / "a/new/n.jpg").write_bytes(b"y"),
                      PHOTOS | {"a/new/n.jpg"}),
    "removed subfolder": (lambda r: shutil.rmtree(r / "b/deep"), PHOTOS - {"b/deep/r1.jpg"}),
    "renamed folder": (lambda r: os.rename(r / "b", r / "c"), PHOTOS - {"b/q1.png", "b/deep/r1.jpg"}
                       | {"c/q1.png", "c/deep/r1.jpg"}),
    "folder replaced by a symlink": (lambda r: shutil.rmtree(r / "b/deep") or os.symlink(r / "a", r / "b/deep"),
                                     PHOTOS - {"b/deep/r1.jpg"}),
    "output folder made inside": (lambda r: (r / "out").mkdir() or (r / "out/x.jpg").write_bytes(b"y"), PHOTOS),
    "hidden folder made": (lambda r: (r / "a/.thumbs").mkdir() or (r / "a/.thumbs/t.jpg").write_bytes(b"y"), PHOTOS),
}


@pytest.mark.parametrize("change", CHANGES)
def test_incremental_scan_finds_each_kind_of_change_as_a_full_scan_does(tmp_path, listed_later, change):
    root = make_library(tmp_path / "lib")
    age_folders(root)
    state, skip = ScanState(), (root / "out",)
    assert set(state.scan(root, skip, dirty=())) == PHOTOS  # the first scan lists everything
    do, expected = CHANGES[change]
    do(root)
    found = state.scan(root, skip, dirty=())
    assert set(found) == expected
    assert found == scan_library(root, skip)  # sizes and mtimes too


def test_only_folders_that_changed_are_listed_again(tmp_path, listed_later, listings):
    root = make_library(tmp_path / "lib")
    age_folders(root)
    state = ScanState()
    state.scan(root)
    assert sorted(listings) == ["", "a", "b", "b/deep"]
    listings.clear()
    assert set(state.scan(root, dirty=())) == PHOTOS
    assert listings == []
    (root / "b/deep/r2.jpg").write_bytes(b"y")
    assert set(state.scan(root, dirty=())) == PHOTOS | {"b/deep/r2.jpg"}
    assert listings == ["b/deep"]


def test_dirty_none_lists_every_folder_again(tmp_path, listed_later, listings):
    root = make_library(tmp_path / "lib")
    age_folders(root)
    state = ScanState()
    state.scan(root)
    listings.clear()
    state.scan(root, dirty=None)
    assert sorted(listings) == ["", "a", "b", "b/deep"]


def test_a_folder_named_in_skip_after_a_scan_is_left_out(tmp_path, listed_later):
    root = make_library(tmp_path / "lib")
    age_folders(root)
    state = ScanState()
    state.scan(root)
    assert set(state.scan(root, skip=(root / "b",), dirty=())) == {"top.jpg", "a/p1.jpg", "a/p2.jpg"}


def test_a_folder_swapped_for_a_symlink_after_its_parent_was_listed_is_not_followed(tmp_path, monkeypatch):
    root = make_library(tmp_path / "lib")
    real = scan_state.list_folder

    def list_then_swap(root, rel, skip):
        listing = real(root, rel, skip)
        if rel == "b":  # the race: b/deep is replaced after b's listing named it, before the walk reaches it
            shutil.rmtree(root / "b/deep")
            os.symlink(root / "a", root / "b/deep")
        return listing

    monkeypatch.setattr(scan_state, "list_folder", list_then_swap)
    assert set(ScanState().scan(root)) == PHOTOS - {"b/deep/r1.jpg"}


def rewrite_in_place(path: Path, size: int, mtime_ns: int) -> None:
    with open(path, "r+b") as fh:  # same file, same name: the folder's entries do not change
        fh.write(b"z" * size)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_photo_rewritten_in_place_is_seen_when_it_or_its_folder_is_named_dirty(tmp_path, listed_later):
    root = make_library(tmp_path / "lib")
    age_folders(root)
    state = ScanState()
    before = state.scan(root)["a/p1.jpg"]
    rewrite_in_place(root / "a/p1.jpg", 20, 3 * 10**18)
    assert state.scan(root, dirty=())["a/p1.jpg"] == before  # what a folder's stat cannot show
    assert state.scan(root, dirty=["a/p1.jpg"])["a/p1.jpg"] == PhotoFile("a/p1.jpg", 20, 3 * 10**18)
    rewrite_in_place(root / "b/deep/r1.jpg", 30, 4 * 10**18)
    assert state.scan(root, dirty=["b/deep"])["b/deep/r1.jpg"] == PhotoFile("b/deep/r1.jpg", 30, 4 * 10**18)
    rewrite_in_place(root / "top.jpg", 40, 5 * 10**18)
    found = state.scan(root, dirty=["top.jpg", "gone/x.jpg"])  # a path that is not there any more is no error
    assert found["top.jpg"] == PhotoFile("top.jpg", 40, 5 * 10**18) and found == scan_library(root)


def test_a_folder_changed_less_than_recent_ns_before_its_listing_is_listed_again(tmp_path, monkeypatch, listings):
    root = make_library(tmp_path / "lib")
    changed = last_folder_change(root)
    monkeypatch.setattr(scan_state, "time_ns", lambda: changed + scan_state.RECENT_NS // 2)
    state = ScanState()
    state.scan(root)
    listings.clear()
    state.scan(root, dirty=())  # nothing changed, but a file added in the same tick would not have shown
    assert sorted(listings) == ["", "a", "b", "b/deep"]
    monkeypatch.setattr(scan_state, "time_ns", lambda: changed + scan_state.RECENT_NS)
    state.scan(root, dirty=())  # listed long enough after the change: trusted from the next scan on
    listings.clear()
    state.scan(root, dirty=())
    assert listings == []


def test_an_unreadable_folder_is_warned_and_tried_again_next_scan(tmp_path, listed_later, monkeypatch, caplog):
    root = make_library(tmp_path / "lib")
    age_folders(root)
    real_scandir, locked = os.scandir, os.fspath(root / "a")

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(library.os, "scandir", scandir)  # as root, chmod 0 would not stop the scan reading it
    state = ScanState()
    assert set(state.scan(root)) == PHOTOS - {"a/p1.jpg", "a/p2.jpg"}
    assert "skipping folder a: Permission denied" in caplog.text
    monkeypatch.setattr(library.os, "scandir", real_scandir)  # readable again: a chmod changes no mtime
    assert set(state.scan(root, dirty=())) == PHOTOS


def test_a_vanished_root_is_warned_and_finds_nothing(tmp_path, listed_later, caplog):
    root = make_library(tmp_path / "lib")
    state = ScanState()
    state.scan(root)
    shutil.rmtree(root)
    assert state.scan(root, dirty=()) == {}
    assert "skipping folder ." in caplog.text


def test_absolute_dirty_paths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="relative to the library"):
        ScanState().scan(tmp_path, dirty=[os.fspath(tmp_path / "a.jpg")])
