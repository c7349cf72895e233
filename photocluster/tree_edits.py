"""What a user changed in a cluster tree with a file manager: the links gone from each cluster folder, and the
links that arrived in one (moved there from another cluster folder, or made by hand).

Each cluster folder of a generation is compared with what its layout state records: link name -> photo. A link
is "in place" when its recorded name is there, is a symlink, and leads (read lexically from its folder, as the
kernel would) to its photo; anything else means the recorded link is gone. Any other symlink in the folder that
leads to a path inside the library "arrived" there. Nothing is followed, nothing is written.

A link that photocluster made and a user then moved, with rename(2), into another cluster folder of the same
generation keeps its text (and its name, unless the file manager renamed it to avoid a clash), and every cluster
folder sits at the same depth, so its text still leads to its photo. Such a link is still photocluster's:
`moved_links` finds it, so a generation is removed whole, while a link a user made by hand stays where it is.
"""
from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass, field

from .fsutil import ForeignEntry, lstat_at, open_dir

PATH_MAX = 4096  # a link text this long was never made (layout._link skips it), so its absence means nothing


@dataclass
class FolderScan:
    """One cluster folder against its recorded links."""

    present: set[str] = field(default_factory=set)  # photos whose recorded link is in place
    missing: dict[str, str] = field(default_factory=dict)  # photo -> its recorded link name, now gone
    arrived: dict[str, str] = field(default_factory=dict)  # link name -> photo, for other links into the library
    texts: dict[str, str] = field(default_factory=dict)  # link name -> its text, for the arrived links


def link_text(library: str, rel: str, folder: str) -> str:
    """The text photocluster gives the link to `rel` in `folder` (both absolute, resolved when it was made)."""
    return os.path.relpath(os.path.join(library, rel), folder)


def scan_folder(fd: int, folder: str, names: dict[str, str], library: str) -> FolderScan:
    """Compare the open cluster folder `fd` (absolute path `folder`) with its recorded links `names`."""
    scan = FolderScan()
    with os.scandir(fd) as it:
        entries = {e.name for e in it}
    for name, rel in names.items():
        text = _link_text_at(fd, name)
        if text is not None and _leads_to(folder, text) == os.path.join(library, rel):
            scan.present.add(rel)
        elif len(os.fsencode(link_text(library, rel, folder))) < PATH_MAX:
            scan.missing[rel] = name
    for name in sorted(entries):
        if name in names and names[name] in scan.present:
            continue
        text = _link_text_at(fd, name)
        target = None if text is None else _leads_to(folder, text)
        if target is not None and target.startswith(library.rstrip("/") + "/"):
            scan.arrived[name] = os.path.relpath(target, library)
            scan.texts[name] = text
    return scan


def scan_generation(generation: str, folders: dict[int, tuple[str, dict[str, str]]],
                    library: str) -> dict[int, FolderScan]:
    """Scan every recorded cluster folder of `generation` (absolute path): cluster -> (folder, its links).

    A folder that is gone, or is no longer a plain folder, counts as holding none of its links. When every folder
    holds links by exactly its recorded names (the usual case) they are taken as made, without reading each link:
    at 100,000 photos that saves a third of the time (scripts/bench_corrections.py). A link moved over one of ours
    (rename(2) replaces it) leaves its own folder short, so any edit makes every folder read in full.
    """
    with open_dir(generation, follow=True) as gen_fd:
        if all(_as_made(gen_fd, folder, names) for folder, names in folders.values()):
            return {m: FolderScan(present=set(names.values())) for m, (_, names) in folders.items()}
        scans = {}
        for m, (folder, names) in folders.items():
            try:
                with open_dir(folder, dir_fd=gen_fd) as fd:
                    scans[m] = scan_folder(fd, os.path.join(generation, folder), names, library)
            except (FileNotFoundError, NotADirectoryError, ForeignEntry):
                scans[m] = FolderScan(missing={rel: name for name, rel in names.items()})
    return scans


def _as_made(gen_fd: int, folder: str, names: dict[str, str]) -> bool:
    """True when `folder` holds symlinks by exactly the recorded `names`, and nothing else."""
    try:
        with open_dir(folder, dir_fd=gen_fd) as fd, os.scandir(fd) as it:
            entries = {e.name: e.is_symlink() for e in it}
    except (FileNotFoundError, NotADirectoryError, ForeignEntry):
        return False
    return len(entries) == len(names) and all(entries.get(name) for name in names)


def moved_links(generation: str, folders: dict[int, tuple[str, dict[str, str]]],
                scans: dict[int, FolderScan], library: str) -> dict[str, str]:
    """The links photocluster made that were moved to another cluster folder: entry path -> photo.

    One is recognised by what rename(2) keeps: it leads to a photo whose recorded link is gone from its own
    folder, with the exact text photocluster writes for that photo. The name is not compared, as file managers
    rename a link moved next to one of the same name. Each gone link is matched at most once.
    """
    gone = Counter(rel for scan in scans.values() for rel in scan.missing)
    found = {}
    for m, scan in sorted(scans.items()):
        folder = folders[m][0]
        for name, rel in sorted(scan.arrived.items()):
            if gone[rel] and scan.texts[name] == link_text(library, rel, os.path.join(generation, folder)):
                gone[rel] -= 1
                found[f"{folder}/{name}"] = rel
    return found


def _link_text_at(fd: int, name: str) -> str | None:
    st = lstat_at(name, fd)
    if st is None or not stat.S_ISLNK(st.st_mode):
        return None
    return os.readlink(name, dir_fd=fd)


def _leads_to(folder: str, text: str) -> str:
    return os.path.normpath(os.path.join(folder, text))
