"""The files under <out>/patterns/: their names and layout, and the text formats of transactions and patterns.

transactions.txt is PAMI's transactional format (sep=","), utilities.txt PAMI's utility format (the same lines,
with how many of each object were found), patterns.txt PAMI's pattern format, and photos.txt names the photo of
each transaction line, escaped to one line of valid UTF-8 (see the package docstring).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ..fsutil import FOLDER_MARK  # in every folder photocluster made under patterns/
from .mining import Pattern, PhotoObjects

PATTERNS_DIR = "patterns"
ROOT_DIR = "_root"
LIBRARY_DIR = "_library"
STATE_NAME = ".state.json"
TRANSACTIONS, PHOTOS, PATTERNS, SUMMARY = "transactions.txt", "photos.txt", "patterns.txt", "summary.md"
UTILITIES = "utilities.txt"
OUR_FILES = (TRANSACTIONS, UTILITIES, PHOTOS, PATTERNS, SUMMARY)
RESERVED_NAMES = OUR_FILES + (FOLDER_MARK, STATE_NAME)
FORMAT_VERSION = 2  # part of every digest: bump it when the files' content changes, to rewrite them all


def transactions_text(photos: Sequence[PhotoObjects]) -> str:
    """One line per photo: its objects comma-separated, most probable first (empty: no object)."""
    return "".join(",".join(photo.objects) + "\n" for photo in photos)


def utilities_text(photos: Sequence[PhotoObjects]) -> str:
    """PAMI's utility format, sep=",": `items:total utility:utilities`, one line per photo in the order of
    transactions.txt, where an object's utility is how many of it were found ("person,dog:4:3,1"); an empty line for
    a photo with no object, so that line i is still the photo on line i of photos.txt."""
    def line(photo: PhotoObjects) -> str:
        if not photo.objects:
            return "\n"
        utilities = [photo.utility(item) for item in photo.objects]
        return f"{','.join(photo.objects)}:{sum(utilities)}:{','.join(map(str, utilities))}\n"

    return "".join(line(photo) for photo in photos)


def read_utilities(path: str | os.PathLike) -> list[dict[str, int]]:
    """Read a utilities.txt back: per line, object -> utility ({} for an empty line). ValueError on a bad line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line:
                rows.append({})
                continue
            items, total, utilities = line.split(":")
            row = dict(zip(items.split(","), map(int, utilities.split(",")), strict=True))
            if sum(row.values()) != int(total):
                raise ValueError(f"{path}:{number}: the total utility is not the sum of the utilities")
            rows.append(row)
    return rows


def photos_text(names: Sequence[str]) -> str:
    """One escaped file name a line, in the order of the transactions."""
    return "".join(escape_name(name) + "\n" for name in names)


def format_patterns(patterns: Sequence[Pattern]) -> str:
    return "".join("\t".join(items) + f":{support}\n" for items, support in patterns)


def read_patterns(path: str | os.PathLike) -> list[Pattern]:
    """Read a patterns.txt (ours, or PAMI's with its trailing tab and space) back into [(items, support)]."""
    patterns = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n").rstrip(" ")
            if not line:
                continue
            items, colon, support = line.rpartition(":")
            if not colon or not support.isdigit():
                raise ValueError(f"{path}:{number}: not an `items:support` line")
            patterns.append((tuple(item for item in items.split("\t") if item), int(support)))
    return patterns


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile("[\\\\\n\r\t\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2})")


def escape_name(name: str) -> str:
    """A file name as one line of valid UTF-8: \\ newline CR tab escaped, undecodable bytes as \\xNN."""
    if not _NEEDS_ESCAPE.search(name):
        return name
    text = "".join(_ESCAPES.get(char, char) for char in name)
    try:
        raw = text.encode("utf-8", "surrogateescape")  # a non-UTF-8 byte from os.fsdecode comes back as itself
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte; cannot come from the file system
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def unescape_name(text: str) -> str:
    """The inverse of escape_name: the file name as os.fsdecode would give it."""
    def byte(match: re.Match) -> bytes:
        code = match.group(1)
        return bytes([int(code[1:], 16)]) if code[0] == "x" else {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t"}[code]

    parts, last = [], 0
    for match in _UNESCAPE.finditer(text):
        parts += [text[last:match.start()].encode("utf-8", "surrogateescape"), byte(match)]
        last = match.end()
    parts.append(text[last:].encode("utf-8", "surrogateescape"))
    return os.fsdecode(b"".join(parts))


def read_photo_names(path: str | os.PathLike) -> list[str]:
    """Read a photos.txt sidecar back: the photo of each transactions.txt line."""
    with open(path, encoding="utf-8", newline="\n") as handle:
        return [unescape_name(line.rstrip("\n")) for line in handle]


def mirror_parts(folder: str) -> tuple[str, ...]:
    """Where a library folder's summary goes, as path parts under patterns/ (see the module docstring)."""
    if not folder:
        return (ROOT_DIR,)
    return tuple("_" + part if part.startswith("_") or part in RESERVED_NAMES else part for part in folder.split("/"))


def valid_photo_path(rel: str) -> bool:
    parts = rel.split("/")
    return not rel.startswith("/") and all(part not in ("", ".", "..") for part in parts) and "\0" not in rel
