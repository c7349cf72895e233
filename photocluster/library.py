"""Scan: walk a photo library and list its photo files with size and mtime.

The walk never follows symlinked folders (no loops, nothing outside the library), skips hidden folders and
photocluster's own output folder, and reports unreadable folders as one warning each instead of failing.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic", ".heif"}
)
_EXTENSIONS_WITHOUT_DOT = frozenset(e[1:] for e in PHOTO_EXTENSIONS)
# Folders that NAS systems fill with their own thumbnails and deleted files.
SKIPPED_FOLDERS = frozenset({"@eaDir", "#recycle", "#snapshot", "lost+found"})
# Names that a download or sync tool is still writing; they are not photos yet.
PARTIAL_SUFFIXES = (".part", ".crdownload", ".partial", ".tmp", "~")


@dataclass(frozen=True, slots=True)
class PhotoFile:
    """A photo as found on disk. `rel` is the path relative to the library root, with '/' separators."""

    rel: str
    size: int
    mtime_ns: int


def is_photo_name(name: str) -> bool:
    """True when a file name looks like a finished photo (by extension, case-insensitive)."""
    # rpartition, not os.path.splitext: a full scan calls this for every file, and splitext's generality (separators,
    # leading dots, which the line below refuses anyway) was the largest part of its time (0.28 of 0.5 s at 100,000).
    if name[:1] == "." or name.endswith(PARTIAL_SUFFIXES):
        return False
    _, dot, extension = name.rpartition(".")
    return bool(dot) and extension.lower() in _EXTENSIONS_WITHOUT_DOT


def scan_library(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, PhotoFile]:
    """Return every photo under `root`, keyed by its relative path.

    `skip` lists folders to leave out (photocluster's output folder when it lies inside the library).
    Symlinked files are left out too: a link can point anywhere, and the cluster tree must only point at
    photos that really live inside the library.
    """
    root = Path(root)
    skip_ids = skip_identities(skip)
    photos: dict[str, PhotoFile] = {}
    stack = [""]
    while stack:
        listing = list_folder(root, stack.pop(), skip_ids)
        if listing is not None:
            photos.update(listing[0])
            stack.extend(listing[1])
    return photos


def list_folder(root: Path, rel_dir: str, skip_ids: set[tuple[int, int]]
                ) -> tuple[dict[str, PhotoFile], list[str]] | None:
    """The photos directly in the folder `rel_dir` of `root` and the subfolders to walk into (relative paths, in
    name order); None when the folder cannot be read (warned). Subfolders leave out symlinks, hidden and NAS
    folders and those whose (st_dev, st_ino) is in `skip_ids`."""
    entries = _list_dir(root, rel_dir)
    if entries is None:
        return None
    photos: dict[str, PhotoFile] = {}
    subfolders: list[str] = []
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            log.warning("skipping %s: %s", printable_path(rel), exc.strerror or exc)
            continue
        if stat.S_ISDIR(st.st_mode):
            if not _skipped_folder(entry.name) and (st.st_dev, st.st_ino) not in skip_ids:
                subfolders.append(rel)
        elif stat.S_ISREG(st.st_mode) and is_photo_name(entry.name):
            photos[rel] = PhotoFile(rel, st.st_size, st.st_mtime_ns)
    return photos, subfolders


def skip_identities(skip: tuple[Path, ...]) -> set[tuple[int, int]]:
    """The (st_dev, st_ino) of the folders in `skip` that exist."""
    ids = {_dir_identity(p) for p in skip}
    ids.discard(None)
    return ids


class UnsafePhoto(Exception):
    """A photo that is no longer a regular file inside the library. The message is one line, fit for a warning."""


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the scan opens at once instead of waiting forever for a writer.
_PHOTO_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def open_photo(root: str | Path, rel: str) -> BinaryIO:
    """Open the photo `rel` (as the scan named it) for reading, refusing anything but a regular file inside `root`.

    The scan saw a regular file, but it may have been swapped since for a symlink to a file outside the library,
    a FIFO or a device. So every folder from the root down is opened with O_NOFOLLOW through the previous one's
    descriptor, the file is checked with lstat before it is opened (opening a device can have side effects) and
    with fstat after (it may be swapped in between). Raises UnsafePhoto, or OSError (gone, unreadable).
    """
    *folders, name = rel.split("/")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise UnsafePhoto("not a path inside the library")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root itself is the user's choice
    try:
        for folder in folders:
            parent = dir_fd
            dir_fd = _open_folder(folder, parent)  # if it raises, dir_fd is still the parent, closed below
            os.close(parent)
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        _check_regular_file(before)
        try:
            fd = os.open(name, _PHOTO_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePhoto("is a symlink") from None
            raise
    finally:
        os.close(dir_fd)
    try:
        after = os.fstat(fd)
        _check_regular_file(after)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafePhoto("was replaced while it was being opened")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_folder(name: str, dir_fd: int) -> int:
    """Open the folder `name` inside `dir_fd` without following a symlink."""
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePhoto("a folder on its path is no longer a folder (a symlink or a file)") from None
        raise


def _check_regular_file(st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePhoto("is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePhoto("not a regular file")


def _skipped_folder(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_FOLDERS


def _list_dir(root: Path, rel_dir: str) -> list[os.DirEntry] | None:
    path = os.path.join(root, rel_dir) if rel_dir else os.fspath(root)
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("skipping folder %s: %s", printable_path(rel_dir or "."), exc.strerror or exc)
        return None


def _dir_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def printable_path(rel: str) -> str:
    """A path as one safe log line: control characters and undecodable bytes are escaped."""
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
