"""Incremental scan: list again only the folders of a library that changed since the last scan.

A full scan (library.scan_library) lists every folder and stats every file: half a second at 100,000 photos, on
every daemon update. ScanState keeps, between scans, each folder's (st_dev, st_ino, st_mtime_ns, st_ctime_ns) and
the photos and subfolders it held; a later scan stats every folder (about 1,000 at 100,000 photos) and lists a
folder again, statting its files, only when

  - its stat changed: a file or subfolder in it was created, deleted or renamed (in, out or within it), or the
    folder itself was replaced, chmod-ed, renamed;
  - the caller names it dirty (see ScanState.scan);
  - its last change was too recent to trust when it was listed (RECENT_NS, below);
  - it was unreadable last time (a chmod back changes no mtime), or it is new.

What a folder's stat does NOT show: a photo rewritten in place under the same name (an editor saving, a sync tool
writing into the file, `touch`). Its size and mtime change, the folder's entries do not. The caller must name such
paths dirty; the daemon knows them from its events. Folders that are gone drop their photos; the walk follows the
same folders as scan_library (never a symlinked folder, nor hidden, NAS or `skip` folders).
"""
from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from time import time_ns

from .library import PhotoFile, list_folder, printable_path, skip_identities

log = logging.getLogger(__name__)

# A folder's mtime has a granularity (1 s on ext3 and many NAS shares, 2 s on FAT, a clock tick on ext4): a file added
# in the same tick as the change the listing saw leaves the mtime as it was. So a folder whose last change (mtime or
# ctime) is less than RECENT_NS before it was listed is listed again next scan, until a listing comes later than that.
# This assumes the file system's clock (a NAS's) is within the margin of ours; one ahead of ours only relists more.
RECENT_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class _Folder:
    stamp: tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_ctime_ns when it was listed
    trusted: bool  # listed long enough after its last change (RECENT_NS)
    photos: dict[str, PhotoFile]
    subfolders: list[str]


class ScanState:
    """What the last scan of one library found, folder by folder, so that the next lists only what changed."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._folders: dict[str, _Folder] = {}

    def scan(self, root: Path, skip: tuple[Path, ...] = (), dirty: Collection[str] | None = None
             ) -> dict[str, PhotoFile]:
        """Every photo under `root`, as scan_library(root, skip) returns it.

        `dirty`: paths relative to `root` with '/' separators (as PhotoFile.rel), of files or folders that may have
        changed in a way a folder's stat does not show (a photo rewritten in place): for each, the folder holding
        it, and the path itself when it is a folder, are listed again. None lists every folder again (a full scan,
        for when changes may have gone unseen: a start, lost events), and keeps what it found for the next scan.
        """
        root = Path(root)
        if root != self._root:
            self._root, self._folders = root, {}
        relist = _folders_of(dirty) if dirty is not None else None
        skip_ids = skip_identities(skip)
        folders: dict[str, _Folder] = {}
        photos: dict[str, PhotoFile] = {}
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            folder = self._visit(root, rel_dir, skip_ids, relist is None or rel_dir in relist)
            if folder is not None:
                folders[rel_dir] = folder
                photos.update(folder.photos)
                stack.extend(folder.subfolders)
        self._folders = folders  # a folder not reached this time (gone, now skipped) is forgotten with its photos
        return photos

    def _visit(self, root: Path, rel_dir: str, skip_ids: set[tuple[int, int]], relist: bool) -> _Folder | None:
        """The folder `rel_dir` as the last scan listed it if that still holds, else listed now; None: not a folder
        to walk (gone, a symlink now, skipped, unreadable)."""
        listed_at = time_ns()  # before the stat: the folder's mtime can only be later than this
        st = _folder_stat(root, rel_dir)
        if st is None or (rel_dir and (st.st_dev, st.st_ino) in skip_ids):
            return None
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        known = self._folders.get(rel_dir)
        if not relist and known is not None and known.trusted and known.stamp == stamp:
            return known
        listing = list_folder(root, rel_dir, skip_ids)
        if listing is None:  # unreadable (warned): not kept, so it is tried again next scan
            return None
        trusted = listed_at - max(st.st_mtime_ns, st.st_ctime_ns) >= RECENT_NS
        return _Folder(stamp, trusted, *listing)


def _folder_stat(root: Path, rel_dir: str) -> os.stat_result | None:
    """The stat of a folder to walk: the root may be a symlink (the user's choice), a folder below it never."""
    path = os.path.join(root, rel_dir) if rel_dir else os.fspath(root)
    try:
        st = os.stat(path, follow_symlinks=not rel_dir)
    except OSError as exc:
        if not rel_dir or exc.errno not in (errno.ENOENT, errno.ENOTDIR):  # gone since the last scan: no news
            log.warning("skipping folder %s: %s", printable_path(rel_dir or "."), exc.strerror or exc)
        return None
    return st if stat.S_ISDIR(st.st_mode) else None


def _folders_of(dirty: Collection[str]) -> set[str]:
    """The folders to list again for the `dirty` paths: each one's folder, and the path itself (it may be one)."""
    folders = set()
    for rel in dirty:
        if rel.startswith("/"):
            raise ValueError(f"dirty paths are relative to the library, not absolute: {printable_path(rel)}")
        rel = posixpath.normpath(rel)
        rel = "" if rel == "." else rel
        folders.add(rel)
        folders.add(rel.rpartition("/")[0])
    return folders
