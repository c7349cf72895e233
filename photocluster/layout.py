"""Lay out: the clusters as folders of relative symlinks that any file manager can browse.

    <out>/clusters -> .clusters-<generation>          (a symlink, swapped atomically)
    <out>/.clusters-<generation>/cluster_with_N/cluster_M/<photo name> -> ../../../<library>/<photo>
    <out>/.clusters-<generation>/.photocluster-layout.json   (which photos each cluster M holds)

Each run builds a complete new generation beside the old one, then renames a new `clusters` symlink over the old
one. rename(2) is atomic, so a reader sees the previous complete tree or the new complete tree, never a half-built
one; the old generation is removed afterwards. The layout state lives inside its generation, so it can never
disagree with the tree that is shown. Cluster numbers M are carried over from the previous generation for clusters
whose members are the same (or overlap most), so folders do not get renumbered as photos arrive.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .fsutil import fsync_dir, open_regular, remove_tree_we_made, write_text_atomic

log = logging.getLogger(__name__)

CLUSTERS = "clusters"
GENERATION_PREFIX = ".clusters-"
STATE_FILE = ".photocluster-layout.json"
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
    """The layout shown now, or None when there is none (or its state is unreadable)."""
    state = out_dir / CLUSTERS / STATE_FILE
    try:
        with open_regular(state) as fh:  # never blocks on a FIFO, never follows a link planted there
            data = json.loads(fh.read().decode("utf-8", errors="surrogateescape"))
        clusters = {int(m): [str(r) for r in members] for m, members in data["clusters"].items()}
        return Layout(clusters, int(data["next_id"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable cluster layout state %s: %s", state, exc)
        return None


def write_layout(out_dir: Path, library_root: Path, layout: Layout) -> Path:
    """Build `layout` as a new generation and swap it in atomically. Returns the generation folder."""
    out_dir = Path(os.path.realpath(out_dir))
    library_root = Path(os.path.realpath(library_root))
    generation = out_dir / f"{GENERATION_PREFIX}{time.time_ns():x}-{os.getpid()}"
    generation.mkdir()
    try:
        _build_generation(generation, library_root, layout)
    except BaseException:
        remove_tree_we_made(generation, _is_ours)
        raise
    _swap_in(out_dir, generation)
    remove_stale_generations(out_dir)
    return generation


def _build_generation(generation: Path, library_root: Path, layout: Layout) -> None:
    for m, members in layout.clusters.items():
        folder = generation / f"cluster_with_{len(members)}" / f"cluster_{m}"
        folder.mkdir(parents=True)
        for name, rel in link_names(members).items():
            target = os.path.relpath(library_root / rel, folder)
            os.symlink(target, folder / name)
    state = {"clusters": {str(m): members for m, members in layout.clusters.items()}, "next_id": layout.next_id}
    text = json.dumps(state, ensure_ascii=True, indent=0)  # ascii: undecodable names survive as \udcxx escapes
    write_text_atomic(generation / STATE_FILE, text)
    fsync_dir(generation)


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
    link = out_dir / CLUSTERS
    if link.is_dir() and not link.is_symlink():
        _retire_plain_folder(link)
    tmp = out_dir / f".{CLUSTERS}.swap-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(generation.name, tmp)
    os.replace(tmp, link)  # atomic: the old symlink is replaced, never followed
    fsync_dir(out_dir)


def _retire_plain_folder(folder: Path) -> None:
    """A plain `clusters/` folder (from an older tool): remove its symlinks, or refuse if it holds real files."""
    if not remove_tree_we_made(folder, _is_ours):
        raise OSError(f"{folder} holds files that photocluster did not make; move them away and run again")


def remove_stale_generations(out_dir: Path) -> None:
    """Remove every generation but the one shown (left over from earlier runs or from a crash)."""
    try:
        shown = os.readlink(out_dir / CLUSTERS)
    except OSError:
        shown = None
    for entry in os.scandir(out_dir):
        if entry.name.startswith(GENERATION_PREFIX) and entry.name != shown:
            if entry.is_dir(follow_symlinks=False):
                remove_tree_we_made(entry.path, _is_ours)
    tmp_links = [e for e in os.scandir(out_dir) if e.name.startswith(f".{CLUSTERS}.swap-") and e.is_symlink()]
    for entry in tmp_links:
        os.unlink(entry.path)


def _is_ours(entry: os.DirEntry) -> bool:
    """Inside a generation, photocluster makes only symlinks and its state file (and its temporary)."""
    return entry.is_symlink() or entry.name == STATE_FILE or entry.name.startswith(f".{STATE_FILE}.")

