"""Reuse of unchanged cluster folders between layout generations (layout.py builds the generations).

A new generation is built beside the shown one; each cluster folder that would be built again exactly as the shown
generation holds it (the same members, so the same link names and the same cluster_with_N; the folder holds those
links and nothing else, each with the text photocluster writes) is moved into the new generation with rename(2),
O(1), instead of being built again. Only the clusters whose members changed are built link by link.

The new generation's state, written before anything is moved, records every entry it will hold and, under LENT,
the shown generation the reused folders came from. A run that dies between the first move and the swap leaves the
lent folders in a generation that is not shown; the next run moves them back into the shown generation
(`return_lent`) before it removes that generation, so the previous tree is whole again before anything reads it.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat

from .fsutil import ForeignEntry, lstat_at, make_dir, open_dir, open_dir_fd, read_regular

STATE_FILE = ".photocluster-layout.json"  # layout.STATE_FILE: each generation's state
LENT = "lent"  # in a generation's state: {"from": the generation the folders came from, "clusters": [M, ...]}

def reusable(gen_fd: int, generation: str, clusters: dict[int, list[str]], names: dict[int, dict[str, str]],
             library: str, read_links: bool, unedited: bool = False) -> dict[int, str]:
    """Cluster M -> its folder, for each cluster of `clusters` that the generation `generation` (open as `gen_fd`)
    holds exactly as it would be built now: same members, same link names, nothing else in the folder. With
    `read_links` each link's text is checked too (after a user's edit, when a link may have been replaced by
    another of the same name); without, the names are trusted, as tree_edits trusts them. `library` is the
    absolute library root the links lead to. With `unedited` (the caller has just read every folder and found
    it as made) the folders are not listed again: lend() still moves only plain folders."""
    state = _state(gen_fd)
    try:
        old, old_links = state["clusters"], state["links"]
        if os.path.normpath(os.path.join(generation, state["library"])) != library:
            return {}
    except (KeyError, TypeError, AttributeError):
        return {}
    by_size: dict[str, list[int]] = {}
    for m, members in clusters.items():
        if old.get(str(m)) == members and sorted(old_links.get(str(m), ())) == sorted(names[m]):
            by_size.setdefault(f"cluster_with_{len(members)}", []).append(m)
    found = {}
    for size_dir, ms in sorted(by_size.items()):
        try:
            size_fd = open_dir_fd(size_dir, gen_fd)
        except (FileNotFoundError, NotADirectoryError, ForeignEntry):
            continue
        try:
            for m in ms:
                where = os.path.join(generation, size_dir, f"cluster_{m}")
                if unedited or _as_built(size_fd, f"cluster_{m}", names[m], where, library, read_links):
                    found[m] = f"{size_dir}/cluster_{m}"
        finally:
            os.close(size_fd)
    return found


def _as_built(parent_fd: int, folder: str, names: dict[str, str], where: str, library: str, read_links: bool) -> bool:
    try:
        with open_dir(folder, dir_fd=parent_fd) as fd:
            with os.scandir(fd) as it:
                entries = {e.name: e.is_symlink() for e in it}
            if len(entries) != len(names) or not all(entries.get(name) for name in names):
                return False
            # the text layout._link writes (tree_edits.link_text)
            return not read_links or all(os.readlink(name, dir_fd=fd) == os.path.relpath(os.path.join(library, rel),
                                                                                         where)
                                         for name, rel in names.items())
    except (FileNotFoundError, NotADirectoryError, ForeignEntry):
        return False


def lend(shown_fd: int, new_fd: int, folders: dict[int, str], on_moved=None) -> set[int]:
    """Move each of `folders` (cluster M -> cluster_with_N/cluster_M) from the shown generation (`shown_fd`) into
    the new one, at the same place. Returns the clusters moved; one that is gone or not a plain folder by now (a
    user's edit since the check) is not, and must be built instead."""
    by_size: dict[str, list[tuple[int, str]]] = {}
    for m, folder in sorted(folders.items()):
        size_dir, cluster_dir = folder.split("/")
        by_size.setdefault(size_dir, []).append((m, cluster_dir))
    moved = set()
    for size_dir, entries in sorted(by_size.items()):
        make_dir(size_dir, new_fd)
        try:
            with open_dir(size_dir, dir_fd=shown_fd) as src, open_dir(size_dir, dir_fd=new_fd) as dst:
                for m, cluster_dir in entries:
                    if _is_plain_dir(cluster_dir, src):
                        with contextlib.suppress(FileNotFoundError):  # gone since the check
                            os.rename(cluster_dir, cluster_dir, src_dir_fd=src, dst_dir_fd=dst)
                            moved.add(m)
                            if on_moved is not None:
                                on_moved(m)
        except (FileNotFoundError, NotADirectoryError, ForeignEntry):
            continue
    return moved


def return_lent(out_fd: int, name: str, shown: str | None) -> None:
    """Move back into the shown generation `shown` the folders that the unfinished generation `name` took from it
    (best effort: a folder whose place is taken, or whose size folder is gone, stays and is removed with `name`)."""
    with open_dir(name, dir_fd=out_fd) as gen_fd:
        state = _state(gen_fd)
    lent = state.get(LENT) if isinstance(state, dict) else None
    if shown is None or not isinstance(lent, dict) or lent.get("from") != shown:
        return
    clusters = state.get("clusters", {})
    with open_dir(name, dir_fd=out_fd) as gen_fd, open_dir(shown, dir_fd=out_fd) as shown_fd:
        for m in lent.get("clusters", ()):
            members = clusters.get(str(m))
            if not isinstance(members, list):
                continue
            size_dir, cluster_dir = f"cluster_with_{len(members)}", f"cluster_{int(m)}"
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, ForeignEntry, FileExistsError):
                with open_dir(size_dir, dir_fd=gen_fd) as src, open_dir(size_dir, dir_fd=shown_fd) as dst:
                    if _is_plain_dir(cluster_dir, src) and lstat_at(cluster_dir, dst) is None:
                        os.rename(cluster_dir, cluster_dir, src_dir_fd=src, dst_dir_fd=dst)
        os.fsync(shown_fd)


def lent_by(out_fd: int, name: str, shown: str | None) -> set[int]:
    """The clusters whose folders the shown generation `shown` took from generation `name` (by its state)."""
    if shown is None:
        return set()
    try:
        with open_dir(shown, dir_fd=out_fd) as shown_fd:
            lent = (_state(shown_fd) or {}).get(LENT)
        return {int(m) for m in lent["clusters"]} if isinstance(lent, dict) and lent.get("from") == name else set()
    except (OSError, KeyError, TypeError, ValueError):
        return set()


def _state(gen_fd: int) -> dict | None:
    """The parsed layout state of a generation; None when it is missing or unreadable."""
    try:
        state = read_state(gen_fd)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


_parsed: tuple[tuple, object] | None = None  # (the state file's stat key, its parsed text): the last one read


def read_state(gen_fd: int) -> object:
    """The parsed layout state of the generation open as `gen_fd`; None when it has none. ForeignEntry, OSError
    and ValueError (not JSON) pass to the caller. Callers must not change what it returns.

    One update reads the shown state three times (corrections, numbering, reuse): at 100,000 photos that is
    10 MB of JSON, 0.1 s a parse. A state file is only ever replaced whole (written atomically, a new inode), so
    the last one parsed is kept, keyed by its inode, size and times, read the same before and after the read.
    """
    global _parsed
    key = _stat_key(gen_fd)
    if key is not None and _parsed is not None and _parsed[0] == key:
        return _parsed[1]
    raw = read_regular(STATE_FILE, gen_fd)
    state = None if raw is None else json.loads(raw.decode("utf-8", "surrogateescape"))
    if key is not None and _stat_key(gen_fd) == key:
        _parsed = (key, state)
    return state


def _stat_key(gen_fd: int) -> tuple | None:
    st = lstat_at(STATE_FILE, gen_fd)
    return None if st is None else (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _is_plain_dir(name: str, dir_fd: int) -> bool:
    st = lstat_at(name, dir_fd)
    return st is not None and stat.S_ISDIR(st.st_mode)
