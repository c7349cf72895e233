"""Per-folder object patterns: ImageNet labels -> transactions -> maximal frequent itemsets -> summary files.

The method is "pattern discovery in imagery data": a photo's objects are the fingerprint model's ImageNet
predictions (already in the cache) at or above a probability threshold, named at the chosen label level
(labels.py: `coarse` rolls the 1000 classes up to readable labels, `fine` keeps them). A label that occurs twice in
one photo after the roll-up is one item with its highest probability. Each photo becomes a transaction, and the
maximal frequent itemsets are mined per folder and for the whole library with mlxtend's fpmax (BSD, pure Python
wheel; Borgelt's pyfim is an sdist that needs a C compiler at install time, and PAMI is GPL-3). Unlike PAMI's
MaxFPGrowth, which drops transactions of one item before mining, maximal itemsets of a single object are kept.

Minimum support is a photo count (a whole number >= 1) or a fraction of the folder's photos (a number < 1, counted
over all the folder's photos, those without a confident object included, and never fewer than 2 photos: an object
set seen in one photo is no pattern). The default is 0.05: 5 photos in a folder of 100, 2 in a folder of 30, 500 in
a library of 10,000. Low enough that a trip folder's "seashore + sandbar" in 9 of 150 photos shows up; the summary
lists the patterns by support, so the rarer ones only lengthen patterns.txt.

Output, under <out>/patterns/ only, never in the library:
    <folder>/         mirrors library folder <folder> ("2024/Lisbon" -> patterns/2024/Lisbon/)
    _root/            the photos that sit directly in the library root
    _library/         the whole library, with an index of the folders
    .state.json       a digest per summary folder, so an unchanged folder is not rewritten
Every folder photocluster makes there holds an empty `.photocluster-folder` mark: only marked folders are ever
written into or emptied, so a user's own folder or file under patterns/ is never touched (and no symlink is
followed: all of it goes through directory descriptors, see fsutil).
A library folder whose name starts with "_", or is one of the file names here, is mirrored with one more "_" in
front ("_drafts" -> "__drafts", "summary.md" -> "_summary.md"), so no real folder can land on _root or _library or
on a file of ours. Each summary folder holds:
    transactions.txt  one line per photo: its objects comma-separated, most probable first; an empty line for a
                      photo with no object at or above the threshold (PAMI's transactional format, sep=",")
    photos.txt        line i is the file name of the photo on line i of transactions.txt (library-relative path in
                      _library); backslash, newline, CR, tab and undecodable bytes are written as \\\\ \\n \\r \\t \\xNN
    patterns.txt      one maximal itemset a line, items tab-separated, ":support" (a photo count) at the end, most
                      frequent first: "tram<TAB>street sign:14" (PAMI's pattern format)
    summary.md        the top patterns with their photo counts and example photos (relative links), and the most
                      common single objects
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import stat
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .fsutil import (DIR, FILE, ForeignEntry, is_atomic_temporary, lstat_at, make_dir, open_dir, open_dir_fd,
                     read_regular, remove_made, write_text_atomic)
from .labels import LEVELS, class_labels
from .wording import plural as _plural

log = logging.getLogger(__name__)

Labels = tuple[tuple[int, float], ...]
Pattern = tuple[tuple[str, ...], int]

DEFAULT_THRESHOLD = 0.2
DEFAULT_MIN_SUPPORT = 0.05
DEFAULT_LABELS = "coarse"
MIN_FRACTION_COUNT = 2  # a fractional minimum support never asks for fewer photos than this

PATTERNS_DIR = "patterns"
ROOT_DIR = "_root"
LIBRARY_DIR = "_library"
STATE_NAME = ".state.json"
TRANSACTIONS, PHOTOS, PATTERNS, SUMMARY = "transactions.txt", "photos.txt", "patterns.txt", "summary.md"
OUR_FILES = (TRANSACTIONS, PHOTOS, PATTERNS, SUMMARY)
FOLDER_MARK = ".photocluster-folder"  # in every folder photocluster made under patterns/
RESERVED_NAMES = OUR_FILES + (FOLDER_MARK, STATE_NAME)
FORMAT_VERSION = 1  # part of every digest: bump it when the files' content changes, to rewrite them all

TOP_PATTERNS = 10
TOP_OBJECTS = 10
EXAMPLES_PER_PATTERN = 3


# --- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatternSettings:
    """threshold: the lowest probability that makes a prediction an object of the photo, in (0, 1].
    min_support: a photo count (whole number >= 1) or a fraction of a folder's photos (0 < x < 1).
    labels: "coarse" (rolled up, readable) or "fine" (the 1000 ImageNet classes)."""

    threshold: float = DEFAULT_THRESHOLD
    min_support: int | float = DEFAULT_MIN_SUPPORT
    labels: str = DEFAULT_LABELS

    def __post_init__(self) -> None:
        threshold, support = self.threshold, self.min_support
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValueError(f"threshold must be a probability in (0, 1], got {threshold!r}")
        if (isinstance(support, bool) or not isinstance(support, (int, float)) or not math.isfinite(support)
                or support <= 0 or (support >= 1 and support != int(support))):
            raise ValueError(f"min_support must be a fraction in (0, 1) or a whole photo count >= 1, got {support!r}")
        if self.labels not in LEVELS:
            raise ValueError(f"labels must be one of {', '.join(LEVELS)}, got {self.labels!r}")

    def min_count(self, photos: int) -> int:
        """The minimum support as a photo count for a set of `photos` photos."""
        if self.min_support >= 1:
            return int(self.min_support)
        # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, which must stay 3
        return max(MIN_FRACTION_COUNT, math.ceil(round(self.min_support * photos, 9)))

    def describe_support(self, photos: int) -> str:
        count = self.min_count(photos)
        if self.min_support >= 1:
            return _plural(count, "photo")
        return f"{_plural(count, 'photo')} ({self.min_support * 100:g}% of {photos}, at least {MIN_FRACTION_COUNT})"


def parse_min_support(text: str) -> int | float:
    """A command-line minimum support: "5" (photos), "0.1" or "10%" (fraction). ValueError names the setting."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"min_support must be a number, a fraction or a percentage, got {text!r}") from None
    if value >= 1 and value == int(value):
        value = int(value)
    PatternSettings(min_support=value)  # validates
    return value


# --- transactions and mining ----------------------------------------------------------------

def photo_objects(labels: Labels | None, names: Sequence[str], threshold: float) -> dict[str, float]:
    """A photo's objects: label -> highest probability, for predictions at or above `threshold`.

    Most probable first (ties by name). Labels that the roll-up makes equal collapse into one item.
    """
    objects: dict[str, float] = {}
    for index, probability in labels or ():
        if probability >= threshold:
            name = names[index]
            objects[name] = max(probability, objects.get(name, 0.0))
    return dict(sorted(objects.items(), key=lambda item: (-item[1], item[0])))


def mine_maximal(transactions: Sequence[Collection[str]], min_count: int,
                 weight: Mapping[str, float] | None = None) -> list[Pattern]:
    """The maximal itemsets that occur in at least `min_count` transactions, with their counts.

    Sorted by count (highest first), then by size (largest first), then by items. Within a pattern the items go
    by `weight` (highest first; default: how many transactions hold the item), then by name. Maximal itemsets of
    one item are reported too.
    """
    from mlxtend.frequent_patterns import fpmax  # imported here: pandas + mlxtend cost ~0.5 s to import

    total = len(transactions)
    item_counts = Counter(item for transaction in transactions for item in set(transaction))
    frequent = sorted(item for item, count in item_counts.items() if count >= min_count)
    if not total or not frequent:
        return []
    column = {item: j for j, item in enumerate(frequent)}
    onehot = np.zeros((total, len(frequent)), dtype=bool)
    for row, transaction in enumerate(transactions):
        for item in transaction:
            if item in column:
                onehot[row, column[item]] = True
    import pandas as pd

    # fpmax takes a fractional support and compares count/total >= it; half a photo below min_count makes that
    # comparison exact for whole counts, free of floating-point ties.
    found = fpmax(pd.DataFrame(onehot, columns=frequent), min_support=(min_count - 0.5) / total, use_colnames=True)
    patterns = []
    for support, itemset in zip(found["support"], found["itemsets"]):
        items = tuple(sorted(itemset, key=lambda item: (-(weight or item_counts)[item], item)))
        patterns.append((items, round(support * total)))
    patterns.sort(key=lambda pattern: (-pattern[1], -len(pattern[0]), pattern[0]))
    return patterns


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


# --- file names -----------------------------------------------------------------------------

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


def _valid_photo_path(rel: str) -> bool:
    parts = rel.split("/")
    return not rel.startswith("/") and all(part not in ("", ".", "..") for part in parts) and "\0" not in rel


# --- one summary ----------------------------------------------------------------------------

@dataclass
class _Photo:
    rel: str  # library-relative path
    objects: dict[str, float]


@dataclass
class _Summary:
    title: str  # the folder's library path, or a description
    photos: list[_Photo]
    patterns: list[Pattern]
    object_counts: Counter
    min_count: int


def _summarise(title: str, photos: list[_Photo], settings: PatternSettings) -> _Summary:
    min_count = settings.min_count(len(photos))
    transactions = [photo.objects.keys() for photo in photos]
    confidence: Counter = Counter()  # summed probability: the main object of "tram + street sign" goes first
    for photo in photos:
        confidence.update(photo.objects)
    patterns = mine_maximal(transactions, min_count, confidence)
    counts = Counter(item for transaction in transactions for item in transaction)
    return _Summary(title, photos, patterns, counts, min_count)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")  # what can start markup inside a line of text


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _photo_link(photo: _Photo, label: str, library_root: str, summary_dir: str) -> str:
    target = os.path.relpath(os.path.join(library_root, photo.rel), summary_dir)
    return f"[{_md(escape_name(label))}]({urllib.parse.quote(os.fsencode(target), safe='/')})"


def _examples(summary: _Summary, items: tuple[str, ...]) -> list[_Photo]:
    """The photos holding all of `items`, most confident first (by their least probable item)."""
    holders = [photo for photo in summary.photos if all(item in photo.objects for item in items)]
    holders.sort(key=lambda photo: (-min(photo.objects[item] for item in items), photo.rel))
    return holders[:EXAMPLES_PER_PATTERN]


def _summary_markdown(summary: _Summary, settings: PatternSettings, library_root: str, summary_dir: str,
                      link_label: Callable[[_Photo], str], extra: str = "") -> str:
    total = len(summary.photos)
    with_objects = sum(1 for photo in summary.photos if photo.objects)
    lines = [f"# Objects in {_md(escape_name(summary.title))}", "",
             (f"{_plural(total, 'photo')}, {with_objects} with an object of probability {settings.threshold:g} or more "
              f"({settings.labels} labels). A pattern is a largest set of objects seen together in at least "
              f"{settings.describe_support(total)}."), "", "## Top patterns", ""]
    if not summary.patterns:
        lines.append(f"No object appears in {_plural(summary.min_count, 'photo')} or more.")
    for items, support in summary.patterns[:TOP_PATTERNS]:
        links = ", ".join(_photo_link(photo, link_label(photo), library_root, summary_dir)
                          for photo in _examples(summary, items))
        lines.append(f"- **{_md(' + '.join(items))}**: {_plural(support, 'photo')}, e.g. {links}")
    if len(summary.patterns) > TOP_PATTERNS:
        lines.append(f"- ... {len(summary.patterns) - TOP_PATTERNS} more in [{PATTERNS}]({PATTERNS})")
    lines += ["", "## Most common objects", ""]
    if not summary.object_counts:
        lines.append("None.")
    for item, count in sorted(summary.object_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OBJECTS]:
        lines.append(f"- **{_md(item)}**: {_plural(count, 'photo')} ({count / total:.0%})")
    lines += ["", (f"Files: [{TRANSACTIONS}]({TRANSACTIONS}) (one photo a line, named in [{PHOTOS}]({PHOTOS})), "
                   f"[{PATTERNS}]({PATTERNS}) (every maximal pattern).")]
    return "\n".join(lines) + "\n" + extra


def _folder_index(state: Mapping[str, dict]) -> str:
    """The library summary's list of the folder summaries, linked relative to patterns/_library/."""
    lines = ["", "## Folders", ""]
    for key, entry in sorted(state.items(), key=lambda kv: kv[1]["title"]):
        href = urllib.parse.quote(os.fsencode(f"../{key}/{SUMMARY}"), safe="/")
        top = entry["top"]
        best = f": {_md(' + '.join(top[0]))} in {_plural(top[1], 'photo')}" if top else ""
        lines.append(f"- [{_md(escape_name(entry['title']))}]({href}), {_plural(entry['photos'], 'photo')}{best}")
    return "\n".join(lines) + "\n"


def _render(summary: _Summary, settings: PatternSettings, library_root: str, summary_dir: str,
            names_relative_to: str, extra: str = "") -> dict[str, str]:
    def label(photo: _Photo) -> str:
        return photo.rel[len(names_relative_to):] if names_relative_to else photo.rel

    return {
        TRANSACTIONS: "".join(",".join(photo.objects) + "\n" for photo in summary.photos),
        PHOTOS: "".join(escape_name(label(photo)) + "\n" for photo in summary.photos),
        PATTERNS: format_patterns(summary.patterns),
        SUMMARY: _summary_markdown(summary, settings, library_root, summary_dir, label, extra),
    }


# --- the incremental update -----------------------------------------------------------------

@dataclass
class PatternReport:
    folders_written: list[str] = field(default_factory=list)  # library folders whose summary was rewritten
    folders_unchanged: int = 0
    folders_removed: list[str] = field(default_factory=list)  # summary folders removed, relative to patterns/
    library_written: bool = False  # the whole-library summary was rewritten
    photos: int = 0
    library_mining_seconds: float = 0.0

    @property
    def written(self) -> int:
        """Summaries rewritten, the library's included."""
        return len(self.folders_written) + int(self.library_written)


def update_patterns(out_dir: str | os.PathLike, photos: Mapping[str, Labels | None], settings: PatternSettings,
                    library_root: str | os.PathLike) -> PatternReport:
    """Bring <out_dir>/patterns/ up to date with `photos` (library-relative path -> top ImageNet labels).

    Mines and rewrites only the folders whose transactions, settings or link base changed, rewrites the
    whole-library summary when anything changed, and removes the summaries of folders with no photos left.
    Writes nothing outside out_dir/patterns/, and there only into folders it made.
    """
    patterns_dir = os.path.abspath(os.path.join(out_dir, PATTERNS_DIR))
    library_root = os.path.abspath(library_root)
    report = PatternReport()
    folders = _group_by_folder(photos, class_labels(settings.labels), settings.threshold)
    report.photos = sum(len(members) for members in folders.values())
    try:
        with _open_patterns_dir(out_dir) as root_fd:
            _update_summaries(_PatternsFolder(root_fd), patterns_dir, library_root, folders, settings, report)
    except ForeignEntry as error:
        log.warning("patterns: no summaries written: %s is %s", escape_name(patterns_dir), error.strerror)
    log.info("patterns: %s written, %d unchanged, %d removed", _plural(report.written, "summary", "summaries"),
             report.folders_unchanged, len(report.folders_removed))
    return report


@contextlib.contextmanager
def _open_patterns_dir(out_dir: str | os.PathLike):
    os.makedirs(out_dir, exist_ok=True)  # the pipeline has made it photocluster's already (outdir.adopt)
    with open_dir(out_dir, follow=True) as out_fd:
        make_dir(PATTERNS_DIR, out_fd)
        with open_dir(PATTERNS_DIR, dir_fd=out_fd) as fd:  # a symlink there is not followed: ForeignEntry
            yield fd


def _update_summaries(where: _PatternsFolder, patterns_dir: str, library_root: str,
                      folders: dict[str, list[_Photo]], settings: PatternSettings, report: PatternReport) -> None:
    old_state = where.load_state()
    context = [FORMAT_VERSION, settings.threshold, settings.min_support, settings.labels,
               os.path.relpath(library_root, patterns_dir)]
    new_state: dict[str, dict] = {}
    for folder, members in sorted(folders.items()):
        parts = mirror_parts(folder)
        key, digest = "/".join(parts), _digest(context, members)
        old = old_state.get(key)
        if old and old.get("digest") == digest and where.present(parts):
            new_state[key] = old
            report.folders_unchanged += 1
            continue
        summary = _summarise(folder or "the library root", members, settings)
        files = _render(summary, settings, library_root, os.path.join(patterns_dir, *parts),
                        folder + "/" if folder else "")
        if where.write(parts, files):
            report.folders_written.append(folder)
            new_state[key] = _state_entry(digest, summary)
    if folders:
        _update_library(where, patterns_dir, library_root, folders, settings, context, old_state, new_state, report)
    report.folders_removed = where.remove_stale(set(new_state))
    where.save_state(new_state)


def _state_entry(digest: str, summary: _Summary) -> dict:
    """What the state keeps of a written summary: its digest, and what the library's folder index shows."""
    top = summary.patterns[0] if summary.patterns else None
    return {"digest": digest, "title": summary.title, "photos": len(summary.photos),
            "top": [list(top[0]), top[1]] if top else None}


def _group_by_folder(photos: Mapping[str, Labels | None], names: Sequence[str],
                     threshold: float) -> dict[str, list[_Photo]]:
    folders: dict[str, list[_Photo]] = {}
    for rel in sorted(photos):
        if not _valid_photo_path(rel):
            log.warning("patterns: skipped %r: not a path inside the library", rel)
            continue
        labels = _checked_labels(rel, photos[rel], len(names))
        folders.setdefault(rel.rpartition("/")[0], []).append(_Photo(rel, photo_objects(labels, names, threshold)))
    return folders


def _checked_labels(rel: str, labels: Labels | None, classes: int) -> Labels:
    try:
        checked = tuple((int(index), float(probability)) for index, probability in labels or ())
        if all(0 <= index < classes and 0.0 <= probability <= 1.0 for index, probability in checked):
            return checked
    except (TypeError, ValueError):
        pass
    log.warning("patterns: ignored the labels of %s: not (class index, probability) pairs", escape_name(rel))
    return ()


def _update_library(where, patterns_dir, library_root, folders, settings, context, old_state, new_state,
                    report) -> None:
    everything = sorted((photo for members in folders.values() for photo in members), key=lambda photo: photo.rel)
    index = _folder_index(new_state)
    digest = _digest(context + [index], everything)
    old = old_state.get(LIBRARY_DIR)
    if old and old.get("digest") == digest and where.present((LIBRARY_DIR,)):
        new_state[LIBRARY_DIR] = old
        return
    started = time.perf_counter()
    summary = _summarise("the whole library", everything, settings)
    report.library_mining_seconds = time.perf_counter() - started
    files = _render(summary, settings, library_root, os.path.join(patterns_dir, LIBRARY_DIR), "", index)
    if where.write((LIBRARY_DIR,), files):
        report.library_written = True
        new_state[LIBRARY_DIR] = _state_entry(digest, summary)


def _digest(context: list, photos: list[_Photo]) -> str:
    """What a summary's files depend on: settings, where the library lies, and each photo's transaction."""
    payload = json.dumps([context, [[photo.rel, list(photo.objects.items())] for photo in photos]])
    return hashlib.sha256(payload.encode("utf-8", "surrogateescape")).hexdigest()


class _PatternsFolder:
    """patterns/ through a directory descriptor: its state, and the summary folders photocluster made in it.

    A folder is ours when this run made it, when it holds our mark, when it is empty, or when the previous state
    names it (outputs from before the marks). Nothing is written into, or removed from, any other folder, and no
    symlink is followed on the way.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.recorded: set[str] = set()  # folders the previous state names, and the folders on their way

    def load_state(self) -> dict[str, dict]:
        """The previous run's state entries; {} (everything is rewritten) when missing, stale or damaged."""
        try:
            raw = read_regular(STATE_NAME, self.fd)
            if raw is None:
                return {}
            state = json.loads(raw)
            folders = state["folders"] if state.get("version") == FORMAT_VERSION else {}
            if not all(isinstance(entry, dict) and set(entry) == {"digest", "title", "photos", "top"}
                       for entry in folders.values()):
                raise ValueError("unexpected entries")
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as error:
            log.warning("patterns: rewriting every summary: unreadable %s (%s)", STATE_NAME,
                        getattr(error, "strerror", None) or error)
            return {}
        for key in folders:
            parts = key.split("/")
            self.recorded.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        return folders

    def save_state(self, folders: dict[str, dict]) -> None:
        text = json.dumps({"version": FORMAT_VERSION, "folders": folders}, indent=0, sort_keys=True)
        try:
            write_text_atomic(STATE_NAME, text, dir_fd=self.fd)
        except ForeignEntry as error:
            log.warning("patterns: left %s alone: %s", STATE_NAME, error.strerror)

    def present(self, parts: tuple[str, ...]) -> bool:
        """True when the summary folder holds all our files (and our mark), as regular files."""
        try:
            with open_dir("/".join(parts), dir_fd=self.fd) as fd:
                return all(_is_regular_at(name, fd) for name in OUR_FILES + (FOLDER_MARK,))
        except OSError:
            return False

    def write(self, parts: tuple[str, ...], files: Mapping[str, str]) -> bool:
        shown = escape_name(os.path.join(PATTERNS_DIR, *parts))
        try:
            fd = self._open_ours(parts)
            try:
                for name, text in files.items():
                    write_text_atomic(name, text, dir_fd=fd)
            finally:
                os.close(fd)
            return True
        except ForeignEntry as error:
            log.warning("patterns: skipped the summary in %s: not a plain folder of photocluster's: %s", shown,
                        error.strerror)
        except OSError as error:
            log.warning("patterns: could not write the summary in %s: %s", shown, error.strerror or error)
        return False

    def _open_ours(self, parts: tuple[str, ...]) -> int:
        """A descriptor of patterns/<parts...>, made (and marked) one level at a time where missing."""
        fd = os.dup(self.fd)
        try:
            for depth, part in enumerate(parts, 1):
                made = make_dir(part, fd)
                child = open_dir_fd(part, fd)  # ForeignEntry at a symlink or a file
                os.close(fd)
                fd = child
                if not (made or "/".join(parts[:depth]) in self.recorded or _is_regular_at(FOLDER_MARK, fd)
                        or not os.listdir(fd)):
                    raise ForeignEntry(part, "a folder")
                _mark(fd)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def remove_stale(self, keep: set[str]) -> list[str]:
        """Remove our files from our summary folders not in `keep`, then those folders once empty.

        Returns the folders whose summary was removed. os.fwalk never descends through a symlink.
        """
        removed, emptied = [], set()
        for dirpath, dirnames, filenames, fd in os.fwalk(".", dir_fd=self.fd, topdown=False):
            key = "" if dirpath == "." else dirpath[2:]
            for name in dirnames:
                if (f"{key}/{name}" if key else name) in emptied:
                    _remove(fd, {name: DIR}, key)
            if not key or key in keep:
                continue
            if not (key in self.recorded or _is_regular_at(FOLDER_MARK, fd)):
                if any(name in OUR_FILES for name in filenames):
                    log.warning("patterns: left %s alone: photocluster did not make it",
                                escape_name(os.path.join(PATTERNS_DIR, key)))
                continue
            ours = {name: FILE for name in filenames if name in OUR_FILES or _is_our_temp(name)}
            _remove(fd, ours, key)
            if any(name in OUR_FILES for name in ours):
                removed.append(key)
            if not set(os.listdir(fd)) - {FOLDER_MARK}:
                _remove(fd, {FOLDER_MARK: FILE}, key)
                emptied.add(key)
        return sorted(removed)


def _remove(fd: int, entries: dict[str, str], key: str) -> None:
    remove_made(fd, entries, escape_name(os.path.join(PATTERNS_DIR, key)))


def _mark(fd: int) -> None:
    """Mark a folder as photocluster's, once: an empty file, created exclusively, never through a link."""
    if lstat_at(FOLDER_MARK, fd) is None:
        os.close(os.open(FOLDER_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=fd))
        os.fsync(fd)


def _is_regular_at(name: str, fd: int) -> bool:
    st = lstat_at(name, fd)
    return st is not None and stat.S_ISREG(st.st_mode)


def _is_our_temp(name: str) -> bool:
    return is_atomic_temporary(name, OUR_FILES)
