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
