"""summary.md: a summary folder's patterns and objects in Markdown, with relative links to example photos; the
library's also lists the patterns that folders share, and every folder summary."""
from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from ..wording import plural
from .formats import PATTERNS, PHOTOS, SUMMARY, TRANSACTIONS, UTILITIES, escape_name, mirror_parts
from .mining import PhotoObjects, Summary
from .options import PatternSettings

TOP_PATTERNS = 10
TOP_OBJECTS = 10
EXAMPLES_PER_PATTERN = 3

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")  # what can start markup inside a line of text


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _photo_link(photo: PhotoObjects, label: str, library_root: str, summary_dir: str) -> str:
    target = os.path.relpath(os.path.join(library_root, photo.rel), summary_dir)
    return f"[{_md(escape_name(label))}]({urllib.parse.quote(os.fsencode(target), safe='/')})"


def _examples(summary: Summary, items: tuple[str, ...]) -> list[PhotoObjects]:
    """The photos holding all of `items`, most confident first (by their least probable item)."""
    holders = [photo for photo in summary.photos if all(item in photo.objects for item in items)]
    holders.sort(key=lambda photo: (-min(photo.objects[item] for item in items), photo.rel))
    return holders[:EXAMPLES_PER_PATTERN]


_SOURCES = {"both": "found by the detector or named by the ImageNet classifier", "detector": "found by the detector",
            "imagenet": "named by the ImageNet classifier"}


def summary_markdown(summary: Summary, settings: PatternSettings, *, library_root: str, summary_dir: str,
                     link_label: Callable[[PhotoObjects], str], extra: str = "") -> str:
    """summary.md: the objects seen together, with example photos linked relative to `summary_dir`, then the most
    common single objects."""
    total = len(summary.photos)
    with_objects = sum(1 for photo in summary.photos if photo.objects)
    together = [pattern for pattern in summary.patterns if len(pattern[0]) >= 2]
    lines = [f"# Objects in {_md(escape_name(summary.title))}", "",
             (f"{plural(total, 'photo')}, {with_objects} with an object {_SOURCES[settings.objects]} at "
              f"{settings.min_probability:g} or more ({settings.level} labels). A pattern is a largest set of "
              f"objects seen together in at least {settings.describe_support(total)}."), "",
             "## Objects seen together", ""]
    if not together:
        lines.append(f"No two objects are seen together in {plural(summary.min_count, 'photo')} or more.")
    for items, support in together[:TOP_PATTERNS]:
        links = ", ".join(_photo_link(photo, link_label(photo), library_root, summary_dir)
                          for photo in _examples(summary, items))
        lines.append(f"- **{_md(' + '.join(items))}**: {plural(support, 'photo')} ({support / total:.0%}), "
                     f"e.g. {links}")
    if len(together) > TOP_PATTERNS:
        lines.append(f"- ... {len(together) - TOP_PATTERNS} more in [{PATTERNS}]({PATTERNS})")
    lines += ["", "## Most common objects", ""]
    if not summary.object_counts:
        lines.append("None.")
    for item, count in sorted(summary.object_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OBJECTS]:
        instances = summary.instance_counts.get(item, count)
        found = f", {instances} found in all" if instances > count else ""
        lines.append(f"- **{_md(item)}**: {plural(count, 'photo')} ({count / total:.0%}){found}")
    lines += ["", (f"Files: [{TRANSACTIONS}]({TRANSACTIONS}) (one photo a line, named in [{PHOTOS}]({PHOTOS})), "
                   f"[{UTILITIES}]({UTILITIES}) (the same with how many of each object), "
                   f"[{PATTERNS}]({PATTERNS}) (every maximal pattern).")]
    return "\n".join(lines) + "\n" + extra


def shared_patterns(library: Summary, candidates: Sequence[tuple[str, ...]],
                    folders: Mapping[str, Sequence[PhotoObjects]], settings: PatternSettings) -> str:
    """The library summary's list of the patterns that two or more folders share, objects seen together first.

    The candidates are the folders' own patterns and the library's. A folder shares a pattern when the pattern is
    frequent there: at least the folder's own minimum support of its photos hold all of its objects. Links go to
    the folder summaries, relative to patterns/_library/.
    """
    found = []
    # Each folder's photos by object, so a pattern's count is one intersection, not a pass over the photos: at
    # 100,000 photos in 1,000 folders that is 0.2 s instead of 5 s.
    holding = {folder: _photos_by_object(members) for folder, members in sorted(folders.items())}
    for items in dict.fromkeys([items for items, _ in library.patterns] + list(candidates)):
        holders = []
        for folder, members in sorted(folders.items()):
            count = _count_holding(holding[folder], items, len(members))
            if count >= settings.min_count(len(members)):
                holders.append((count, folder))
        if len(holders) >= 2:
            holders.sort(key=lambda holder: (-holder[0], holder[1]))
            found.append((items, holders))
    found.sort(key=lambda pair: (len(pair[0]) < 2, -len(pair[1]), -sum(count for count, _ in pair[1]), pair[0]))
    lines = ["", "## Patterns shared by folders", ""]
    for items, holders in found[:TOP_PATTERNS]:
        where = ", ".join(f"{_folder_link(folder)} ({plural(count, 'photo')})" for count, folder in holders)
        lines.append(f"- **{_md(' + '.join(items))}**: {len(holders)} folders: {where}")
    if not found:
        lines.append("No pattern is frequent in two folders or more.")
    return "\n".join(lines) + "\n"


def _photos_by_object(members: Sequence[PhotoObjects]) -> dict[str, set[int]]:
    by_object: dict[str, set[int]] = {}
    for n, photo in enumerate(members):
        for item in photo.objects:
            by_object.setdefault(item, set()).add(n)
    return by_object


def _count_holding(by_object: Mapping[str, set[int]], items: Sequence[str], photos: int) -> int:
    """How many of the `photos` hold every one of `items`."""
    sets = sorted((by_object.get(item, set()) for item in items), key=len)
    return len(sets[0].intersection(*sets[1:])) if sets else photos


def _folder_link(folder: str) -> str:
    href = urllib.parse.quote(os.fsencode(f"../{'/'.join(mirror_parts(folder))}/{SUMMARY}"), safe="/")
    return f"[{_md(escape_name(folder or 'the library root'))}]({href})"


def folder_index(state: Mapping[str, dict]) -> str:
    """The library summary's list of the folder summaries, linked relative to patterns/_library/."""
    lines = ["", "## Folders", ""]
    for key, entry in sorted(state.items(), key=lambda kv: kv[1]["title"]):
        href = urllib.parse.quote(os.fsencode(f"../{key}/{SUMMARY}"), safe="/")
        top = entry["top"]
        best = f": {_md(' + '.join(top[0]))} in {plural(top[1], 'photo')}" if top else ""
        lines.append(f"- [{_md(escape_name(entry['title']))}]({href}), {plural(entry['photos'], 'photo')}{best}")
    return "\n".join(lines) + "\n"
