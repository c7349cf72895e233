"""Corrections that stick: a user edits the cluster tree in a file manager, the next run remembers it.

    deleting a photo's link from cluster_M        "not in this cluster": the photo is not with the photos left in
                                                  it (cannot-link)
    moving a link from cluster_M into cluster_K   the same for cluster_M, and "belongs with these": the photo is
                                                  with cluster_K's photos (must-link)

Each run reads the shown tree against its layout state (tree_edits.py) before it builds the next tree, merges
what changed into `<out>/corrections.json`, and hands the constraints to the clustering (constraints.py has the
rule). The file names photos, not clusters, so the corrections hold through new photos, re-runs and another
--sim. A photo that leaves the library takes its corrections with it; a renamed one (moves.rekey_moved) keeps
them. Of two corrections about one pair of photos, the later one wins.

When every link of a cluster is gone (its folder deleted), nothing is "left in it": each of its photos is then not
with any other it held, except those moved into the same cluster as it.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .constraints import Constraints
from .fsutil import ForeignEntry, FileTooLarge, lstat_at, open_dir, read_regular, write_text_atomic
from .layout import ShownTree, shown_tree
from .library import printable_path
from .tree_edits import scan_generation
from .wording import plural

log = logging.getLogger(__name__)

CORRECTIONS_NAME = "corrections.json"
FORMAT = "photocluster-corrections"
VERSION = 1
WITH, NOT_WITH = "with", "not_with"
LIMIT = 64 << 20  # a corrections file is a few KB; one larger than this was not written by photocluster


class CorrectionsError(ValueError):
    """corrections.json is not one photocluster wrote (edited by hand, truncated, another program's)."""


@dataclass
class Corrections:
    """photo -> {"with": photos it belongs with, "not_with": photos it is not with}."""

    photos: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add(self, photo: str, kind: str, others: Iterable[str]) -> None:
        """Record that `photo` is `kind` (WITH or NOT_WITH) `others`; it overrides the opposite, both ways."""
        others = set(others) - {photo}
        if not others:
            return
        opposite = NOT_WITH if kind == WITH else WITH
        record = self.photos.setdefault(photo, {WITH: set(), NOT_WITH: set()})
        record[kind] |= others
        record[opposite] -= others
        for other in others:
            if other in self.photos:
                self.photos[other][opposite].discard(photo)
        self._drop_empty()

    def forget(self, photo: str) -> bool:
        """Forget every correction that names `photo`; False when none did."""
        named = photo in self.photos or any(photo in r[WITH] | r[NOT_WITH] for r in self.photos.values())
        self.photos.pop(photo, None)
        for record in self.photos.values():
            record[WITH].discard(photo)
            record[NOT_WITH].discard(photo)
        self._drop_empty()
        return named

    def rename(self, renamed: dict[str, str]) -> None:
        """Follow photos moved or renamed inside the library (old path -> new path)."""
        if not renamed:
            return
        self.photos = {renamed.get(p, p): {k: {renamed.get(o, o) for o in r[k]} for k in (WITH, NOT_WITH)}
                       for p, r in self.photos.items()}

    def keep_only(self, photos: Collection[str]) -> int:
        """Drop the corrections of photos no longer in the library; how many photos were forgotten."""
        named = set(self.photos) | {o for r in self.photos.values() for kind in (WITH, NOT_WITH) for o in r[kind]}
        gone = {p for p in named if p not in photos}
        for photo in gone:
            self.forget(photo)
        return len(gone)

    def constraints(self) -> Constraints:
        return Constraints(frozenset((p, q) for p, r in self.photos.items() for q in r[WITH]),
                           frozenset((p, q) for p, r in self.photos.items() for q in r[NOT_WITH]))

    def as_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION,
                "photos": {p: {k: sorted(r[k]) for k in (WITH, NOT_WITH)} for p, r in sorted(self.photos.items())}}

    def lines(self, shown: int = 5) -> list[str]:
        """One line per photo and kind: `a.jpg: not with b.jpg, c.jpg`."""
        lines = []
        for photo, record in sorted(self.photos.items()):
            for kind in (WITH, NOT_WITH):
                others = sorted(record[kind])
                if others:
                    listed = ", ".join(printable_path(o) for o in others[:shown])
                    more = f" and {len(others) - shown} more" if len(others) > shown else ""
                    lines.append(f"{printable_path(photo)}: {kind.replace('_', ' ')} {listed}{more}")
        return lines

    def _drop_empty(self) -> None:
        self.photos = {p: r for p, r in self.photos.items() if r[WITH] or r[NOT_WITH]}


def parse(raw: bytes) -> Corrections:
    """The corrections in `raw`; CorrectionsError, with the reason, when it is not photocluster's format."""
    try:
        data = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise CorrectionsError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CorrectionsError(f"not a {FORMAT} file")
    if data.get("version") != VERSION:
        raise CorrectionsError(f"version {data.get('version')!r}, this photocluster reads version {VERSION}")
    photos = data.get("photos")
    if not isinstance(photos, dict):
        raise CorrectionsError('"photos" is not an object')
    corrections = Corrections()
    for photo, record in photos.items():
        if not isinstance(record, dict) or set(record) - {WITH, NOT_WITH} or not all(
                isinstance(v, list) and all(isinstance(o, str) for o in v) for v in record.values()):
            raise CorrectionsError(f"the entry of {printable_path(photo)} is not "
                                   '{"with": [photos], "not_with": [photos]}')
        for kind in (WITH, NOT_WITH):
            corrections.add(photo, kind, record.get(kind, []))
    return corrections


def read_corrections(out_dir: Path) -> Corrections:
    """The stored corrections (none when there is no file). CorrectionsError when it is not valid, ForeignEntry
    when it is not a regular file."""
    try:
        with open_dir(out_dir, follow=True) as out_fd:
            raw = read_regular(CORRECTIONS_NAME, out_fd, limit=LIMIT, whole=True)
    except FileNotFoundError:
        return Corrections()
    except FileTooLarge:
        raise CorrectionsError(f"larger than {LIMIT >> 20} MiB") from None
    return Corrections() if raw is None else parse(raw)


def load_corrections(out_dir: Path, set_aside: bool = True) -> tuple[Corrections, bool]:
    """The stored corrections, and whether they may be saved. A file that is not valid is moved aside (with
    `set_aside`) and the run goes on without it; one that is not a regular file is left alone, and unused."""
    path = out_dir / CORRECTIONS_NAME
    try:
        return read_corrections(out_dir), True
    except ForeignEntry as exc:
        log.warning("ignoring %s: %s", path, exc.strerror)
        return Corrections(), False
    except CorrectionsError as exc:
        if not set_aside:
            log.warning("ignoring %s: %s", path, exc)
            return Corrections(), False
        aside = _set_aside(out_dir)
        log.warning("ignoring %s: %s; moved it to %s, the corrections start afresh", path, exc, aside)
        return Corrections(), True


def save_corrections(out_dir: Path, corrections: Corrections) -> None:
    text = json.dumps(corrections.as_dict(), ensure_ascii=True, indent=1) + "\n"
    with open_dir(out_dir, follow=True) as out_fd:
        write_text_atomic(CORRECTIONS_NAME, text, dir_fd=out_fd)


def _set_aside(out_dir: Path) -> str:
    with open_dir(out_dir, follow=True) as out_fd:
        stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
        aside = f"{CORRECTIONS_NAME}.bad-{stamp}"
        while lstat_at(aside, out_fd) is not None:
            n += 1
            aside = f"{CORRECTIONS_NAME}.bad-{stamp}-{n}"
        os.rename(CORRECTIONS_NAME, aside, src_dir_fd=out_fd, dst_dir_fd=out_fd)
    return aside


def tree_edits(tree: ShownTree, photos: Collection[str]) -> tuple[list[tuple[str, str, set[str]]], bool]:
    """What the user changed in `tree`: (photo, WITH or NOT_WITH, others), by the rules at the top; and whether the
    tree differs from its state at all (a link renamed inside its own folder is no correction, but a change)."""
    scans = scan_generation(tree.generation, tree.folders, tree.library)
    members = {m: set(names.values()) for m, (_, names) in tree.folders.items()}
    arrived = {m: {rel for rel in scan.arrived.values() if rel in photos and rel not in scan.present}
               for m, scan in scans.items()}
    changed = any(scan.missing or arrived[m] for m, scan in scans.items())
    for m, scan in scans.items():  # renamed in place: neither gone from its cluster nor arrived in it
        kept = set(scan.missing) & arrived[m]
        scan.present |= kept
        scan.missing = {rel: name for rel, name in scan.missing.items() if rel not in kept}
        arrived[m] -= kept
    went_to: dict[str, set[int]] = {}
    for m, rels in arrived.items():
        for rel in rels:
            went_to.setdefault(rel, set()).add(m)
    edits = []
    for m, scan in sorted(scans.items()):
        for rel in sorted(scan.missing):
            left = scan.present or {q for q in members[m] if not went_to.get(q, set()) & went_to.get(rel, set())}
            edits.append((rel, NOT_WITH, left - {rel}))
    for m, rels in sorted(arrived.items()):
        edits += [(rel, WITH, (scans[m].present | rels) - {rel}) for rel in sorted(rels)]
    return edits, changed


def take_corrections(out_dir: Path, photos: Collection[str], renamed: dict[str, str],
                     dry_run: bool = False, read_tree: bool = True) -> tuple[Constraints, bool | None]:
    """Read the user's edits of the shown tree into the stored corrections, and save them; return the constraints
    for this run and whether the tree was edited (then it must be built again, even for the same clusters): None
    when there was no tree to read (or its state was unreadable). Without `read_tree` (the caller knows the tree
    is as made) only the stored corrections are used, and the tree counts as unedited.

    `photos` are the library's photos now, `renamed` the moves found since the last run (old -> new path).
    """
    corrections, writable = load_corrections(out_dir, set_aside=not dry_run)
    before = corrections.as_dict()
    tree = shown_tree(out_dir) if read_tree else None
    if tree is not None:
        edits, edited = tree_edits(tree, set(photos) | set(renamed))
    else:
        edits, edited = [], None if read_tree else False
    for photo, kind, others in sorted(edits, key=lambda e: e[1] == WITH):  # not-with first: a move ends "with"
        corrections.add(photo, kind, others)
    if edits:
        log.info("corrections read from the cluster folders: %s", "; ".join(
            f"{printable_path(p)} {k.replace('_', ' ')} {plural(len(o), 'photo')}" for p, k, o in edits if o))
    corrections.rename(renamed)
    corrections.keep_only(photos)
    if writable and not dry_run and corrections.as_dict() != before:
        try:
            save_corrections(out_dir, corrections)
        except ForeignEntry as exc:
            log.warning("left %s alone: %s", exc.filename, exc.strerror)
    return corrections.constraints(), edited
