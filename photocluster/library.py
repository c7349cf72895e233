"""Scan: walk a photo library and list its photo files with size and mtime.

The walk never follows symlinked folders (no loops, nothing outside the library), skips hidden folders and
photocluster's own output folder, and reports unreadable folders as one warning each instead of failing.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic", ".heif"}
)
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
    if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
        return False
    return os.path.splitext(name)[1].lower() in PHOTO_EXTENSIONS


def scan_library(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, PhotoFile]:
    """Return every photo under `root`, keyed by its relative path.

    `skip` lists folders to leave out (photocluster's output folder when it lies inside the library).
    Symlinked files are left out too: a link can point anywhere, and the cluster tree must only point at
    photos that really live inside the library.
    """
    root = Path(root)
    skip_ids = {_dir_identity(p) for p in skip}
    skip_ids.discard(None)
    photos: dict[str, PhotoFile] = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        for entry in _list_dir(root, rel_dir):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                log.warning("skipping %s: %s", printable_path(rel), exc.strerror or exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                if not _skipped_folder(entry.name) and (st.st_dev, st.st_ino) not in skip_ids:
                    stack.append(rel)
            elif stat.S_ISREG(st.st_mode) and is_photo_name(entry.name):
                photos[rel] = PhotoFile(rel, st.st_size, st.st_mtime_ns)
    return photos


def _skipped_folder(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_FOLDERS


def _list_dir(root: Path, rel_dir: str) -> list[os.DirEntry]:
    path = os.path.join(root, rel_dir) if rel_dir else os.fspath(root)
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("skipping folder %s: %s", printable_path(rel_dir or "."), exc.strerror or exc)
        return []


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
