"""Small file-system helpers that every stage shares: atomic writes and removal that never follows a symlink."""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write `path` all-or-nothing: a temporary file beside it, fsync, then rename over it.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_writer(path, "w") as fh:
        fh.write(text)


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_tree_we_made(path: str | Path, ours: Callable[[os.DirEntry], bool]) -> bool:
    """Remove a folder tree, deleting only entries for which `ours(entry)` is true, never following symlinks.

    A symlink is unlinked as a link (its target is untouched). A folder is removed only when it ends up empty,
    so anything a user put in there survives. Returns True when the whole tree is gone.
    """
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(path)
    complete = True
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            complete &= remove_tree_we_made(entry.path, ours)
        elif ours(entry):
            os.unlink(entry.path)
        else:
            log.warning("left %s in place: photocluster did not make it", entry.path)
            complete = False
    if complete:
        os.rmdir(path)
    return complete


class NotAFileError(OSError):
    """A path that should hold one of photocluster's files holds something else (FIFO, device, folder, link)."""

    def __init__(self, path: str | Path, mode: int):
        kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link",
                 stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}
        self.kind = kinds.get(stat.S_IFMT(mode), "not a regular file")
        super().__init__(f"{os.fspath(path)} is {self.kind}, not a regular file")


def open_regular(path: str | Path, follow_symlinks: bool = False) -> IO[bytes]:
    """Open a file for reading (binary) only if it is a regular file: never blocks, never follows a link unless asked.

    A FIFO at the path would block open() and then read() until a writer comes (a hang SIGTERM cannot end), and
    opening a device can have side effects, so the type is checked before opening (lstat, or stat with
    `follow_symlinks`) and again on the opened descriptor (fstat), in case the path was swapped in between.
    O_NONBLOCK makes even a FIFO swapped in at that moment open at once; on a regular file it changes nothing.
    Raises NotAFileError (an OSError) for anything but a regular file.
    """
    mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode
    if not stat.S_ISREG(mode):
        raise NotAFileError(path, mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFileError(path, mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
