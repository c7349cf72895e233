"""Ownership of the output folder: photocluster writes only into a folder that is its own.

A folder is photocluster's when it does not exist yet, is empty, or carries the marker `.photocluster` (a small
JSON file written atomically before anything else). An output made by a photocluster from before the marker is
recognised by its layout alone, checked strictly: every entry must be one photocluster makes, of the right kind.
Any other non-empty folder belongs to someone else and is refused.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from .errors import SettingsError
from .fsutil import open_dir, read_regular, write_text_atomic

MARKER = ".photocluster"
MARKER_FORMAT = "photocluster-output"
MARKER_VERSION = 1
MARKER_TEXT = json.dumps({"format": MARKER_FORMAT, "version": MARKER_VERSION}) + "\n"

# The entries of an output folder before the marker existed: name pattern -> the kind it must be.
_REG, _DIR, _LINK = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK
GENERATION = re.compile(r"\.clusters-[0-9a-f]+-[0-9]+")
_OLD_LAYOUT = (
    (re.compile(r"fingerprints\.pk"), _REG),
    (re.compile(r"fingerprints\.pk\.bad-[0-9-]+"), _REG),  # a refused cache, moved aside
    (re.compile(r"\.fingerprints\.pk\..+\.tmp"), _REG),  # a cache save cut short
    (re.compile(r"\.lock"), _REG),
    (re.compile(r"\.cluster-input"), _REG),
    (re.compile(r"clusters"), _LINK),
    (GENERATION, _DIR),
    (re.compile(r"\.clusters\.swap-[0-9]+"), _LINK),
    (re.compile(r"\.\.?cluster-input\..+\.tmp"), _REG),
    (re.compile(r"patterns"), _DIR),
)


def foreign_reason(out: Path) -> str | None:
    """Why photocluster may not write into `out`, or None when it may (missing, empty, marked or its old layout)."""
    try:
        with os.scandir(out) as it:
            entries = list(it)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # `out` is a file (refused), or a folder above it is (mkdir will say so)
        return "is not a folder" if os.path.lexists(out) else None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not entries:
        return None
    names = {e.name for e in entries}
    if MARKER in names:
        return None if has_marker(out) else f"holds a {MARKER} that is not photocluster's marker"
    if all(_old_layout_entry(e) for e in entries):
        return None
    return (f"is not empty and has no {MARKER} marker, so it is not photocluster's folder; "
            "choose a new or empty folder")


def has_marker(out: Path) -> bool:
    """True when `out` carries photocluster's marker: a regular file (not a link) with the expected content."""
    try:
        with open_dir(out, follow=True) as fd:
            data = json.loads(read_regular(MARKER, fd, limit=4096) or b"")
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MARKER_FORMAT


def _old_layout_entry(entry: os.DirEntry) -> bool:
    mode = entry.stat(follow_symlinks=False).st_mode
    for pattern, is_kind in _OLD_LAYOUT:
        if pattern.fullmatch(entry.name) and is_kind(mode):
            # the clusters link of photocluster always names one of its generations beside it
            return entry.name != "clusters" or GENERATION.fullmatch(os.readlink(entry.path)) is not None
    return False


def adopt(out: Path) -> None:
    """Make `out` photocluster's: create it and write the marker first. SettingsError when it is someone else's."""
    reason = foreign_reason(out)
    if reason is not None:
        raise SettingsError(f"out {out} {reason}")
    out.mkdir(parents=True, exist_ok=True)
    if not has_marker(out):
        write_text_atomic(out / MARKER, MARKER_TEXT)
