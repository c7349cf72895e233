"""summary.md: a summary folder's patterns and objects in Markdown, with relative links to example photos."""
from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping

from ..wording import plural
from .formats import PATTERNS, PHOTOS, SUMMARY, TRANSACTIONS, escape_name
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


def summary_markdown(summary: Summary, settings: PatternSettings, *, library_root: str, summary_dir: str,
                     link_label: Callable[[PhotoObjects], str], extra: str = "") -> str:
    """summary.md: the top patterns with example photos linked relative to `summary_dir`, the common objects."""
    total = len(summary.photos)
    with_objects = sum(1 for photo in summary.photos if photo.objects)
    lines = [f"# Objects in {_md(escape_name(summary.title))}", "",
             (f"{plural(total, 'photo')}, {with_objects} with an object of probability {settings.min_probability:g} "
              f"or more ({settings.level} labels). A pattern is a largest set of objects seen together in at least "
              f"{settings.describe_support(total)}."), "", "## Top patterns", ""]
    if not summary.patterns:
        lines.append(f"No object appears in {plural(summary.min_count, 'photo')} or more.")
    for items, support in summary.patterns[:TOP_PATTERNS]:
        links = ", ".join(_photo_link(photo, link_label(photo), library_root, summary_dir)
                          for photo in _examples(summary, items))
        lines.append(f"- **{_md(' + '.join(items))}**: {plural(support, 'photo')}, e.g. {links}")
    if len(summary.patterns) > TOP_PATTERNS:
        lines.append(f"- ... {len(summary.patterns) - TOP_PATTERNS} more in [{PATTERNS}]({PATTERNS})")
    lines += ["", "## Most common objects", ""]
    if not summary.object_counts:
        lines.append("None.")
    for item, count in sorted(summary.object_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OBJECTS]:
        lines.append(f"- **{_md(item)}**: {plural(count, 'photo')} ({count / total:.0%})")
    lines += ["", (f"Files: [{TRANSACTIONS}]({TRANSACTIONS}) (one photo a line, named in [{PHOTOS}]({PHOTOS})), "
                   f"[{PATTERNS}]({PATTERNS}) (every maximal pattern).")]
    return "\n".join(lines) + "\n" + extra


def folder_index(state: Mapping[str, dict]) -> str:
    """The library summary's list of the folder summaries, linked relative to patterns/_library/."""
    lines = ["", "## Folders", ""]
    for key, entry in sorted(state.items(), key=lambda kv: kv[1]["title"]):
        href = urllib.parse.quote(os.fsencode(f"../{key}/{SUMMARY}"), safe="/")
        top = entry["top"]
        best = f": {_md(' + '.join(top[0]))} in {plural(top[1], 'photo')}" if top else ""
        lines.append(f"- [{_md(escape_name(entry['title']))}]({href}), {plural(entry['photos'], 'photo')}{best}")
    return "\n".join(lines) + "\n"
