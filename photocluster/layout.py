"""Lay out: the clusters as folders of relative symlinks that any file manager can browse.

    <out>/clusters -> .clusters-<generation>          (a symlink, swapped atomically)
    <out>/.clusters-<generation>/cluster_with_N/cluster_M/<photo name> -> ../../../<library>/<photo>
    <out>/.clusters-<generation>/.photocluster-layout.json   (which photos each cluster M holds, the link names,
                                                             and where the library is, from it)

Each run builds a complete new generation beside the old one, then renames a new `clusters` symlink over the old
one. rename(2) is atomic, so a reader sees the previous complete tree or the new complete tree, never a half-built
one; the old generation is removed afterwards. The layout state lives inside its generation, so it can never
disagree with the tree that is shown. Cluster numbers M are carried over from the previous generation for clusters
whose members are the same (or overlap most), so folders do not get renumbered as photos arrive.
"""
from __future__ import annotations

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
                     read_regular, remove_made, warn_not_removed, write_text_atomic)
from .library import printable_path
from .outdir import GENERATION
from .tree_edits import moved_links, scan_generation

log = logging.getLogger(__name__)

CLUSTERS = "clusters"
GENERATION_PREFIX = ".clusters-"
STATE_FILE = ".photocluster-layout.json"
SWAP_LINK = re.compile(r"\.clusters\.swap-[0-9]+")
NAME_MAX = 255


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
        with open_dir(out_dir, follow=True) as out_fd:
            shown = _shown_generation(out_fd, out_dir)
            if shown is None:
                return None
            with open_dir(shown, dir_fd=out_fd) as gen_fd:
                raw = read_regular(STATE_FILE, gen_fd)
        if raw is None:
            return None
        data = json.loads(raw.decode("utf-8", "surrogateescape"))
        clusters = {int(m): [str(r) for r in members] for m, members in data["clusters"].items()}
        return Layout(clusters, int(data["next_id"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        log.warning("ignoring unreadable cluster layout state in %s: %s", out_dir, reason)
        return None


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
        with open_dir(out_dir, follow=True) as out_fd:
            shown = _shown_generation(out_fd, out_dir)
            if shown is None:
                return None
            with open_dir(shown, dir_fd=out_fd) as gen_fd:
                raw = read_regular(STATE_FILE, gen_fd)
            data = None if raw is None else json.loads(raw.decode("utf-8", "surrogateescape"))
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


def write_layout(out_dir: Path, library_root: Path, layout: Layout) -> Path:
    """Build `layout` as a new generation and swap it in atomically. Returns the generation folder.

    Raises ForeignEntry, before building anything, when `clusters` is not photocluster's.
    """
    out_dir = Path(os.path.realpath(out_dir))
    library_root = Path(os.path.realpath(library_root))
    with open_dir(out_dir, follow=True) as out_fd:
        _shown_generation(out_fd, out_dir)
        name = f"{GENERATION_PREFIX}{time.time_ns():x}-{os.getpid()}"
        os.mkdir(name, dir_fd=out_fd)
        generation = out_dir / name
        try:
            _build_generation(generation, library_root, layout)
        except BaseException:
            _remove_generation(out_fd, name, out_dir)
            raise
        _swap_in(out_dir, generation)
        _remove_stale_generations(out_fd, out_dir)
    return generation


def _build_generation(generation: Path, library_root: Path, layout: Layout) -> None:
    names = {m: link_names(members) for m, members in layout.clusters.items()}
    with open_dir(generation.parent, follow=True) as out_fd, open_dir(generation.name, dir_fd=out_fd) as gen_fd:
        # The state goes in first: it records every entry the generation will hold, so whatever a crash leaves
        # is removed by name, and nothing that photocluster did not make ever is.
        library = os.path.relpath(library_root, generation)  # relative, as the links: both survive moving the two
        write_text_atomic(STATE_FILE, _state_text(layout, names, library), dir_fd=gen_fd)
        for m, members in layout.clusters.items():
            size_dir, cluster_dir = f"cluster_with_{len(members)}", f"cluster_{m}"
            make_dir(size_dir, gen_fd)
            with open_dir(size_dir, dir_fd=gen_fd) as size_fd:
                os.mkdir(cluster_dir, dir_fd=size_fd)
                with open_dir(cluster_dir, dir_fd=size_fd) as fd:
                    folder = generation / size_dir / cluster_dir
                    for name, rel in names[m].items():
                        _link(fd, name, os.path.relpath(library_root / rel, folder), rel)
        os.fsync(gen_fd)


def _state_text(layout: Layout, names: dict[int, dict[str, str]], library: str) -> str:
    state = {"clusters": {str(m): members for m, members in layout.clusters.items()}, "next_id": layout.next_id,
             "links": {str(m): sorted(names[m]) for m in layout.clusters}, "library": library}
    return json.dumps(state, ensure_ascii=True, indent=0)  # ascii: undecodable names survive as \udcxx escapes


def _link(folder_fd: int, name: str, target: str, rel: str) -> None:
    """One relative link; skipped with a warning when its target is longer than a symlink can hold (PATH_MAX)."""
    try:
        os.symlink(target, name, dir_fd=folder_fd)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        log.warning("no link made to %s: the path from the output folder to it is too long for a symlink",
                    printable_path(rel))


def link_names(members: list[str]) -> dict[str, str]:
    """A distinct, readable link name for each member: its own name, or `stem (folder-path).ext` on a clash.

    Every name fits in NAME_MAX bytes. Names that still agree (a-b/x.jpg and a/b-x.jpg, or long names that agree in
    all the bytes that fit) get ` (2)`, ` (3)`... before the extension. The counter is never cut, so each n gives
    another name and the search ends within len(members) steps. Names are compared as bytes, as the file system does.
    """
    by_name = Counter(os.path.basename(rel) for rel in members)
    names: dict[str, str] = {}
    taken: set[bytes] = set()
    for rel in sorted(members):
        base = os.path.basename(rel)
        stem, ext = _with_folder(rel) if by_name[base] > 1 else os.path.splitext(base)
        name, n = _fit(stem, ext), 2
        while os.fsencode(name) in taken:
            name, n = _fit(stem, ext, f" ({n})"), n + 1
        taken.add(os.fsencode(name))
        names[name] = rel
    return names


def _with_folder(rel: str) -> tuple[str, str]:
    """`stem (folder-path)` and the extension of a photo whose name clashes with another's."""
    folder, base = os.path.split(rel)
    stem, ext = os.path.splitext(base)
    return f"{stem} ({folder.replace('/', '-') or 'top'})", ext


_EXT_MAX = 128  # an "extension" longer than this (a.<long text>) is cut too, so the stem always keeps room


def _fit(stem: str, ext: str, counter: str = "") -> str:
    """`stem + counter + ext` cut to NAME_MAX bytes: the stem is cut first, the counter never.

    With a counter the extension is always cut the same way, so names with different counters always differ. The
    stem keeps at least NAME_MAX - _EXT_MAX - len(counter) bytes, so it never becomes empty.
    """
    if not counter and len(os.fsencode(stem + ext)) <= NAME_MAX:
        return stem + ext
    ext = _cut(ext, _EXT_MAX)
    room = NAME_MAX - len(os.fsencode(counter + ext))
    return _cut(stem, room) + counter + ext


def _cut(text: str, limit: int) -> str:
    """The longest start of `text` that is at most `limit` bytes, cut between characters (never inside one)."""
    if len(os.fsencode(text)) <= limit:
        return text
    used = 0
    for i, char in enumerate(text):
        used += len(os.fsencode(char))  # 1 byte for a surrogate-escaped byte, 1 to 4 for a character
        if used > limit:
            return text[:i]
    return text


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
    """Remove one generation: exactly the entries its state records, then the state, then the folder."""
    where = os.path.join(out_dir, name)
    try:
        with open_dir(name, dir_fd=out_fd) as gen_fd:
            made = _recorded_entries(gen_fd, os.path.join(os.path.realpath(out_dir), name))
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


def _recorded_entries(gen_fd: int, generation: str) -> dict[str, str] | None:
    """What photocluster made in the generation and still holds ({} without a state: a crash came first).

    That is every recorded name, and, with a state that says where the library is, the links a user moved into
    another cluster folder (tree_edits.moved_links); a link a user made by hand is not.
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
        library = os.path.normpath(os.path.join(generation, data["library"]))
        scans = scan_generation(generation, folders, library)
        return made | {path: LINK for path in moved_links(generation, folders, scans, library)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
