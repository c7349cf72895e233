"""The file-system side of patterns/: a folder photocluster made there, written and emptied only through
directory descriptors, never through a symlink, and only where photocluster's mark (or state) says it is ours.

Every folder photocluster makes under patterns/ holds an empty `.photocluster-folder` mark: only marked folders are
ever written into or emptied, so a user's own folder or file under patterns/ is never touched (see fsutil).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping

from ..fsutil import (DIR, FILE, ForeignEntry, is_atomic_temporary, is_regular_at, make_dir, mark_folder,
                      open_dir, open_dir_fd, read_regular, remove_made, write_text_atomic)
from .formats import FOLDER_MARK, FORMAT_VERSION, OUR_FILES, PATTERNS_DIR, STATE_NAME, escape_name

log = logging.getLogger("photocluster.patterns")


@contextlib.contextmanager
def open_patterns_dir(out_dir: str | os.PathLike):
    os.makedirs(out_dir, exist_ok=True)  # the pipeline has made it photocluster's already (outdir.adopt)
    with open_dir(out_dir, follow=True) as out_fd:
        make_dir(PATTERNS_DIR, out_fd)
        with open_dir(PATTERNS_DIR, dir_fd=out_fd) as fd:  # a symlink there is not followed: ForeignEntry
            yield fd


class PatternsFolder:
    """patterns/ through a directory descriptor: its state, and the summary folders photocluster made in it.

    A folder is ours when this run made it, when it holds our mark, when it is empty, or when the previous state
    names it (outputs from before the marks). Nothing is written into, or removed from, any other folder, and no
    symlink is followed on the way.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.recorded: set[str] = set()  # folders the previous state names, and the folders on their way

    def load_state(self) -> dict[str, dict]:
        """The previous run's state entries; {} (everything is rewritten) when missing, stale or damaged."""
        try:
            raw = read_regular(STATE_NAME, self.fd)
            if raw is None:
                return {}
            state = json.loads(raw)
            folders = state["folders"] if state.get("version") == FORMAT_VERSION else {}
            if not all(isinstance(entry, dict) and set(entry) == {"digest", "title", "photos", "top", "patterns"}
                       for entry in folders.values()):
                raise ValueError("unexpected entries")
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as error:
            log.warning("patterns: rewriting every summary: unreadable %s (%s)", STATE_NAME,
                        getattr(error, "strerror", None) or error)
            return {}
        for key in folders:
            parts = key.split("/")
            self.recorded.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        return folders

    def save_state(self, folders: dict[str, dict]) -> None:
        text = json.dumps({"version": FORMAT_VERSION, "folders": folders}, indent=0, sort_keys=True)
        try:
            write_text_atomic(STATE_NAME, text, dir_fd=self.fd)
        except ForeignEntry as error:
            log.warning("patterns: left %s alone: %s", STATE_NAME, error.strerror)

    def present(self, parts: tuple[str, ...]) -> bool:
        """True when the summary folder holds all our files (and our mark), as regular files."""
        try:
            with open_dir("/".join(parts), dir_fd=self.fd) as fd:
                return all(is_regular_at(name, fd) for name in OUR_FILES + (FOLDER_MARK,))
        except OSError:
            return False

    def write(self, parts: tuple[str, ...], files: Mapping[str, str]) -> bool:
        shown = escape_name(os.path.join(PATTERNS_DIR, *parts))
        try:
            fd = self._open_ours(parts)
            try:
                for name, text in files.items():
                    write_text_atomic(name, text, dir_fd=fd)
            finally:
                os.close(fd)
            return True
        except ForeignEntry as error:
            log.warning("patterns: skipped the summary in %s: not a plain folder of photocluster's: %s", shown,
                        error.strerror)
        except OSError as error:
            log.warning("patterns: could not write the summary in %s: %s", shown, error.strerror or error)
        return False

    def _open_ours(self, parts: tuple[str, ...]) -> int:
        """A descriptor of patterns/<parts...>, made (and marked) one level at a time where missing."""
        fd = os.dup(self.fd)
        try:
            for depth, part in enumerate(parts, 1):
                made = make_dir(part, fd)
                child = open_dir_fd(part, fd)  # ForeignEntry at a symlink or a file
                os.close(fd)
                fd = child
                if not (made or "/".join(parts[:depth]) in self.recorded or is_regular_at(FOLDER_MARK, fd)
                        or not os.listdir(fd)):
                    raise ForeignEntry(part, "a folder")
                mark_folder(fd)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def remove_stale(self, keep: set[str]) -> list[str]:
        """Remove our files from our summary folders not in `keep`, then those folders once empty.

        Returns the folders whose summary was removed. os.fwalk never descends through a symlink.
        """
        removed, emptied = [], set()
        for dirpath, dirnames, filenames, fd in os.fwalk(".", dir_fd=self.fd, topdown=False):
            key = "" if dirpath == "." else dirpath[2:]
            for name in dirnames:
                if (f"{key}/{name}" if key else name) in emptied:
                    _remove(fd, {name: DIR}, key)
            if not key or key in keep:
                continue
            if not (key in self.recorded or is_regular_at(FOLDER_MARK, fd)):
                if any(name in OUR_FILES for name in filenames):
                    log.warning("patterns: left %s alone: photocluster did not make it",
                                escape_name(os.path.join(PATTERNS_DIR, key)))
                continue
            ours = {name: FILE for name in filenames if name in OUR_FILES or _is_our_temp(name)}
            _remove(fd, ours, key)
            if any(name in OUR_FILES for name in ours):
                removed.append(key)
            if not set(os.listdir(fd)) - {FOLDER_MARK}:
                _remove(fd, {FOLDER_MARK: FILE}, key)
                emptied.add(key)
        return sorted(removed)


def _remove(fd: int, entries: dict[str, str], key: str) -> None:
    remove_made(fd, entries, escape_name(os.path.join(PATTERNS_DIR, key)))


def _is_our_temp(name: str) -> bool:
    return is_atomic_temporary(name, OUR_FILES)
