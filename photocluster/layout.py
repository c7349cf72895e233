"""Lay out: the clusters as folders of relative symlinks that any file manager can browse.

    <out>/clusters -> .clusters-<generation>          (a symlink, swapped atomically)
    <out>/.clusters-<generation>/cluster_with_N/cluster_M/<photo name> -> ../../../<library>/<photo>
    <out>/.clusters-<generation>/.photocluster-layout.json   (which photos each cluster M holds, the link names,
                                                             and where the library is, from it)

Each run builds a new generation beside the shown one, then renames a new `clusters` symlink over the old one
(rename(2) is atomic), and removes the old generation. The layout state lives inside its generation, so it can
never disagree with the tree that is shown. Cluster numbers M are carried over from the previous generation for
clusters whose members are the same (or overlap most), so folders do not get renumbered as photos arrive.

An update costs in proportion to what changed (layout_reuse.py): only the cluster folders whose members changed
are built link by link; each unchanged one (same members, and as photocluster made it: not edited by the user) is
moved from the shown generation into the new one with one rename(2). What a reader of `clusters/` sees:

  * every cluster folder it sees is complete: a folder is moved whole, and a new folder is only shown by the swap,
    after it was built;
  * until the swap it sees the previous tree, except that unchanged cluster folders vanish from it one by one as
    they are moved (in the last moments before the swap, after the changed folders are built); after the swap,
    the new tree, whole;
  * a process whose working folder is inside a moved folder keeps it (the folder is the same inode), and sees
    it in the new tree after the swap; one inside a folder that changed keeps the old, removed, folder until it
    leaves;
  * a run killed between the first move and the swap leaves the previous tree shown without the folders already
    moved; the next run moves them back before it reads the tree (return_lent), so no correction is read from
    their absence.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .fsutil import (DIR, FILE, LINK, ForeignEntry, is_atomic_temporary, kind_of, lstat_at, make_dir, open_dir,
                     open_dir_fd, read_regular, remove_made, warn_not_removed, write_text_atomic)
from .layout_reuse import LENT, STATE_FILE, lend, lent_by, read_state, return_lent, reusable
from .library import printable_path
from .link_naming import link_names
from .outdir import GENERATION
from .tree_edits import moved_links, scan_generation

log = logging.getLogger(__name__)

CLUSTERS = "clusters"
GENERATION_PREFIX = ".clusters-"
SWAP_LINK = re.compile(r"\.clusters\.swap-[0-9]+")


@dataclass
class Layout:
    """The cluster folders of one run: cluster number M -> sorted member paths (relative to the library)."""

    clusters: dict[int, list[str]]
    next_id: int

    def summary_lines(self) -> list[str]:
        """imagecluster's summary: how many clusters there are of each size."""
        sizes = Counter(len(members) for members in self.clusters.values())
        lines = ["cluster size : ncluster"]
        lines += [f"{size:>12} : {count}" for size, count in sorted(sizes.items())]
        return lines


def number_clusters(groups: list[list[str]], previous: Layout | None) -> Layout:
    """Give each group a cluster number M, reusing the previous number of the cluster it overlaps most."""
    groups = sorted((sorted(g) for g in groups), key=lambda g: (-len(g), g[0]))
    old = previous.clusters if previous else {}
    owner = {rel: m for m, members in old.items() for rel in members}
    candidates = []  # (overlap, group index, old number)
    for gi, group in enumerate(groups):
        overlaps = Counter(owner[rel] for rel in group if rel in owner)
        candidates += [(count, gi, m) for m, count in overlaps.items()]
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    assigned: dict[int, int] = {}
    taken: set[int] = set()
    for _, gi, m in candidates:
        if gi not in assigned and m not in taken:
            assigned[gi] = m
            taken.add(m)
    next_id = previous.next_id if previous else 0
    clusters = {}
    for gi, group in enumerate(groups):
        if gi not in assigned:
            assigned[gi], next_id = next_id, next_id + 1
        clusters[assigned[gi]] = group
    return Layout(dict(sorted(clusters.items())), next_id)


def read_layout(out_dir: Path) -> Layout | None:
    """The layout shown now, or None when there is none (or its state is unreadable, or not photocluster's)."""
    try:
        _, data = _shown_state(out_dir)
        if data is None:
            return None
        clusters = {int(m): [str(r) for r in members] for m, members in data["clusters"].items()}
        return Layout(clusters, int(data["next_id"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        log.warning("ignoring unreadable cluster layout state in %s: %s", out_dir, reason)
        return None


def _shown_state(out_dir: Path) -> tuple[str | None, object]:
    """(the generation `clusters` shows, its parsed state): (None, None) without a generation, None for the state
    when it has none. ForeignEntry, OSError and ValueError (not JSON) pass to the caller, which decides what they
    mean."""
    with open_dir(out_dir, follow=True) as out_fd:
        shown = _shown_generation(out_fd, out_dir)
        if shown is None:
            return None, None
        with open_dir(shown, dir_fd=out_fd) as gen_fd:
            return shown, read_state(gen_fd)


@dataclass
class ShownTree:
    """The generation shown now, as its state records it (tree_edits compares the folders with it)."""

    generation: str  # absolute, resolved
    folders: dict[int, tuple[str, dict[str, str]]]  # cluster M -> (its folder in the generation, link name -> photo)
    library: str  # the library root the links lead to (absolute)


def shown_tree(out_dir: Path) -> ShownTree | None:
    """The shown generation and its recorded links; None when there is none, or its state does not say all that
    (unreadable, or written before the state named the library)."""
    out_dir = Path(os.path.realpath(out_dir))
    try:
        shown, data = _shown_state(out_dir)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("library"), str):
        return None
    folders = _recorded_folders(data)
    if folders is None:
        return None
    generation = os.fspath(out_dir / shown)
    return ShownTree(generation, folders, os.path.normpath(os.path.join(generation, data["library"])))


def _recorded_folders(data: dict) -> dict[int, tuple[str, dict[str, str]]] | None:
    """Cluster M -> (cluster_with_N/cluster_M, link name -> photo), from a state; None when it is not sound."""
    try:
        folders = {}
        for m, members in data["clusters"].items():
            names = link_names([str(r) for r in members])
            if "links" in data and sorted(names) != sorted(data["links"][m]):
                return None
            folders[int(m)] = (f"cluster_with_{len(members)}/cluster_{int(m)}", names)
        return folders
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _shown_generation(out_fd: int, out_dir: Path) -> str | None:
    """The generation that `clusters` shows; None when there is no `clusters` yet.

    ForeignEntry when `clusters` is anything but photocluster's own link to one of its generations beside it.
    """
    st = lstat_at(CLUSTERS, out_fd)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode) and GENERATION.fullmatch(os.readlink(CLUSTERS, dir_fd=out_fd)):
        return os.readlink(CLUSTERS, dir_fd=out_fd)
    raise ForeignEntry(os.path.join(out_dir, CLUSTERS), kind_of(st.st_mode))


def write_layout(out_dir: Path, library_root: Path, layout: Layout, reuse: bool = True,
                 read_links: bool = True, unedited: bool = False) -> Path:
    """Build `layout` as a new generation and swap it in atomically. Returns the generation folder.

    With `reuse`, the shown generation's unchanged cluster folders are moved into the new one (see the top).
    `read_links` False trusts a folder holding exactly its recorded link names to be as made (the caller has
    just found the shown tree unedited, as tree_edits reads it); True reads each link's text first. `unedited`
    True (the caller has just read the whole shown tree and found no edit) reuses folders without listing them
    again; one edited since is moved as it is, so its edit is read at the next update instead of being lost.
    Raises ForeignEntry, before building anything, when `clusters` is not photocluster's.
    """
    out_dir = Path(os.path.realpath(out_dir))
    library_root = Path(os.path.realpath(library_root))
    with open_dir(out_dir, follow=True) as out_fd:
        shown = _shown_generation(out_fd, out_dir)
        name = f"{GENERATION_PREFIX}{time.time_ns():x}-{os.getpid()}"
        os.mkdir(name, dir_fd=out_fd)
        generation = out_dir / name
        try:
            _build_generation(generation, library_root, layout, (shown, read_links, unedited) if reuse and shown else None)
        except BaseException:
            _remove_generation(out_fd, name, out_dir)  # the folders it took go back to the shown generation first
            raise
        _swap_in(out_dir, generation)
        _remove_stale_generations(out_fd, out_dir)
    return generation


def _build_generation(generation: Path, library_root: Path, layout: Layout,
                      reuse: tuple[str, bool, bool] | None = None) -> None:
    """Build the generation: the state first, then each new or changed cluster folder, then (with `reuse`: the
    shown generation's name, whether to read its links, and whether it was just found unedited) the unchanged ones
    moved over from the shown one."""
    names = {m: link_names(members) for m, members in layout.clusters.items()}
    with open_dir(generation.parent, follow=True) as out_fd, open_dir(generation.name, dir_fd=out_fd) as gen_fd:
        shown_fd = _open_shown(out_fd, reuse[0]) if reuse else None
        reuse = reuse if shown_fd is not None else None
        try:
            lent = reusable(shown_fd, os.fspath(generation.parent / reuse[0]), layout.clusters, names,
                            os.fspath(library_root), reuse[1], reuse[2]) if reuse else {}
            # The state goes in first: it records every entry the generation will hold (also the folders it is
            # about to take from the shown one, under LENT), so whatever a crash leaves is removed by name, the
            # lent folders go back, and nothing that photocluster did not make ever is removed.
            library = os.path.relpath(library_root, generation)  # relative, as the links: both survive a move
            state = _state_text(layout, names, library, {"from": reuse[0], "clusters": sorted(lent)} if lent else None)
            write_text_atomic(STATE_FILE, state, dir_fd=gen_fd)
            for m in layout.clusters:
                if m not in lent:
                    _build_cluster(gen_fd, generation, library_root, layout.clusters[m], m, names[m])
            moved = lend(shown_fd, gen_fd, lent) if lent else set()
            for m in set(lent) - moved:  # gone from the shown tree since it was checked: built after all
                _build_cluster(gen_fd, generation, library_root, layout.clusters[m], m, names[m])
        finally:
            if shown_fd is not None:
                os.close(shown_fd)
        os.fsync(gen_fd)


def _open_shown(out_fd: int, shown: str) -> int | None:
    """The shown generation's descriptor; None (nothing is reused) when it is gone or not a plain folder."""
    try:
        return open_dir_fd(shown, out_fd)
    except OSError:  # ForeignEntry too: a link planted in its place is never followed
        return None


def _build_cluster(gen_fd: int, generation: Path, library_root: Path, members: list[str], m: int,
                   names: dict[str, str]) -> None:
    size_dir, cluster_dir = f"cluster_with_{len(members)}", f"cluster_{m}"
    make_dir(size_dir, gen_fd)
    with open_dir(size_dir, dir_fd=gen_fd) as size_fd:
        os.mkdir(cluster_dir, dir_fd=size_fd)
        with open_dir(cluster_dir, dir_fd=size_fd) as fd:
            folder = generation / size_dir / cluster_dir
            for name, rel in names.items():
                _link(fd, name, os.path.relpath(library_root / rel, folder), rel)


def _state_text(layout: Layout, names: dict[int, dict[str, str]], library: str, lent: dict | None = None) -> str:
    state = {"clusters": {str(m): members for m, members in layout.clusters.items()}, "next_id": layout.next_id,
             "links": {str(m): sorted(names[m]) for m in layout.clusters}, "library": library}
    if lent:
        state[LENT] = lent
    # ascii: undecodable names survive as \udcxx escapes; no indent, so the C encoder writes it (10x faster)
    return json.dumps(state, ensure_ascii=True, separators=(",", ":"))


def _link(folder_fd: int, name: str, target: str, rel: str) -> None:
    """One relative link; skipped with a warning when its target is longer than a symlink can hold (PATH_MAX)."""
    try:
        os.symlink(target, name, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        log.warning("no link made to %s: the path from the output folder to it is too long for a symlink",
                    printable_path(rel))


def _swap_in(out_dir: Path, generation: Path) -> None:
    with open_dir(out_dir, follow=True) as out_fd:
        _shown_generation(out_fd, out_dir)  # ForeignEntry: a `clusters` that is not ours is never replaced
        tmp = f".{CLUSTERS}.swap-{os.getpid()}"
        if lstat_at(tmp, out_fd) is not None:
            if not _is_our_swap_link(out_fd, tmp):
                raise ForeignEntry(out_dir / tmp, kind_of(lstat_at(tmp, out_fd).st_mode))
            os.unlink(tmp, dir_fd=out_fd)
        os.symlink(generation.name, tmp, dir_fd=out_fd)
        # atomic: the old link is replaced, never followed
        os.replace(tmp, CLUSTERS, src_dir_fd=out_fd, dst_dir_fd=out_fd)
        os.fsync(out_fd)


def remove_stale_generations(out_dir: Path) -> None:
    """Remove every generation but the one shown (left over from earlier runs or from a crash)."""
    with open_dir(out_dir, follow=True) as out_fd:
        _remove_stale_generations(out_fd, out_dir)


def _remove_stale_generations(out_fd: int, out_dir: Path) -> None:
    try:
        shown = _shown_generation(out_fd, out_dir)
    except ForeignEntry:
        shown = None
    with os.scandir(out_fd) as it:
        entries = list(it)
    for entry in entries:
        if GENERATION.fullmatch(entry.name) and entry.name != shown:
            if entry.is_dir(follow_symlinks=False):
                _remove_generation(out_fd, entry.name, out_dir)
            else:
                log.warning("left %s in place: photocluster did not make it", os.path.join(out_dir, entry.name))
        elif SWAP_LINK.fullmatch(entry.name) and _is_our_swap_link(out_fd, entry.name):
            os.unlink(entry.name, dir_fd=out_fd)


def _is_our_swap_link(out_fd: int, name: str) -> bool:
    st = lstat_at(name, out_fd)
    return st is not None and stat.S_ISLNK(st.st_mode) and bool(GENERATION.fullmatch(os.readlink(name, dir_fd=out_fd)))


def _remove_generation(out_fd: int, name: str, out_dir: Path) -> bool:
    """Remove one generation that is not shown: first the cluster folders it took from the shown one go back
    (a run died before its swap), then exactly the entries its state records, then the state, then the folder."""
    where = os.path.join(out_dir, name)
    try:
        shown = None
        with contextlib.suppress(ForeignEntry):
            shown = _shown_generation(out_fd, out_dir)
            return_lent(out_fd, name, shown)
        away = lent_by(out_fd, name, shown)  # moved into the shown one: not gone by a user's hand
        with open_dir(name, dir_fd=out_fd) as gen_fd:
            made = _recorded_entries(gen_fd, os.path.join(os.path.realpath(out_dir), name), away)
            if made is None:
                log.warning("left %s in place: its state is unreadable, so what photocluster made there is unknown",
                            where)
                return False
            if not remove_made(gen_fd, made, where):
                return False
            with os.scandir(gen_fd) as it:
                temps = {e.name: FILE for e in it if is_atomic_temporary(e.name, (STATE_FILE,))}
            if not remove_made(gen_fd, temps | {STATE_FILE: FILE}, where):
                return False
        os.rmdir(name, dir_fd=out_fd)
        return True
    except OSError as exc:
        warn_not_removed(where, exc)
        return False


def _recorded_entries(gen_fd: int, generation: str, away: set[int] = frozenset()) -> dict[str, str] | None:
    """What photocluster made in the generation and still holds ({} without a state: a crash came first).

    That is every recorded name, and, with a state that says where the library is, the links a user moved into
    another cluster folder (tree_edits.moved_links); a link a user made by hand is not. The clusters `away` were
    moved, whole, into the next generation: their links count as in place.
    """
    try:
        raw = read_regular(STATE_FILE, gen_fd)
        if raw is None:
            return {}
        data = json.loads(raw.decode("utf-8", "surrogateescape"))
        made = {}
        for m, members in data["clusters"].items():
            names = data["links"][m] if "links" in data else list(link_names(members))  # older states: recompute
            size_dir, cluster_dir = f"cluster_with_{len(members)}", f"cluster_{int(m)}"
            made[size_dir] = made[f"{size_dir}/{cluster_dir}"] = DIR
            for name in names:
                if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
                    return None
                made[f"{size_dir}/{cluster_dir}/{name}"] = LINK
        folders = _recorded_folders(data)
        if folders is None or not isinstance(data.get("library"), str):
            return made
        folders = {m: folder for m, folder in folders.items() if m not in away}
        library = os.path.normpath(os.path.join(generation, data["library"]))
        scans = scan_generation(generation, folders, library)
        return made | {path: LINK for path in moved_links(generation, folders, scans, library)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
