"""The name of each link in a cluster folder: the photo's own name, made distinct and short enough."""
from __future__ import annotations

import functools
import os
from collections import Counter

NAME_MAX = 255


def link_names(members: list[str]) -> dict[str, str]:
    """See _link_names; a copy of the remembered answer (a run asks for each cluster's names up to three times:
    to read the shown tree, to build the next one, to remove the last one; at 100,000 photos each pass took
    a second)."""
    return dict(_link_names(tuple(sorted(members))))


@functools.lru_cache(maxsize=1 << 16)
def _link_names(members: tuple[str, ...]) -> dict[str, str]:
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
