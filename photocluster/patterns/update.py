"""The incremental update of <out>/patterns/: group the photos by folder, mine and rewrite only what changed."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..fsutil import ForeignEntry
from ..labels import Detection, Detections, Predictions, class_labels
from ..wording import plural
from .folders import PatternsFolder, open_patterns_dir
from .formats import (FORMAT_VERSION, LIBRARY_DIR, PATTERNS, PATTERNS_DIR, PHOTOS, SUMMARY, TRANSACTIONS, UTILITIES,
                      escape_name, format_patterns, mirror_parts, photos_text, transactions_text, utilities_text,
                      valid_photo_path)
from .markdown import folder_index, shared_patterns, summary_markdown
from .mining import PhotoObjects, Summary, summarise
from .objects import photo_items
from .options import PatternSettings

log = logging.getLogger("photocluster.patterns")


@dataclass
class PatternReport:
    folders_written: list[str] = field(default_factory=list)  # library folders whose summary was rewritten
    folders_unchanged: int = 0
    folders_removed: list[str] = field(default_factory=list)  # summary folders removed, relative to patterns/
    library_written: bool = False  # the whole-library summary was rewritten
    photos: int = 0
    library_mining_seconds: float = 0.0
    stopped: bool = False  # should_stop() ended it early: the rest is brought up to date by the next update

    @property
    def written(self) -> int:
        """Summaries rewritten, the library's included."""
        return len(self.folders_written) + int(self.library_written)


def update_patterns(out_dir: str | os.PathLike, photos: Mapping[str, Predictions | None], settings: PatternSettings,
                    library_root: str | os.PathLike,
                    detections: Mapping[str, Detections | None] | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> PatternReport:
    """Bring <out_dir>/patterns/ up to date with `photos` (library-relative path -> its predictions) and their
    `detections` (path -> the detector's objects; a photo missing there, or None, has not been through it).

    Mines and rewrites only the folders whose transactions, settings or link base changed, rewrites the
    whole-library summary when anything changed, and removes the summaries of folders with no photos left.
    Writes nothing outside out_dir/patterns/, and there only into folders it made. When `should_stop()` turns
    true (the daemon's new arrivals) it ends between two summaries, keeping the rest as they were.
    """
    patterns_dir = os.path.abspath(os.path.join(out_dir, PATTERNS_DIR))
    library_root = os.path.abspath(library_root)
    report = PatternReport()
    folders = _group_by_folder(photos, detections or {}, settings)
    report.photos = sum(len(members) for members in folders.values())
    try:
        with open_patterns_dir(out_dir) as root_fd:
            update = _Update(PatternsFolder(root_fd), patterns_dir, library_root, settings, report)
            update.run(folders, should_stop)
    except ForeignEntry as error:
        log.warning("patterns: no summaries written: %s is %s", escape_name(patterns_dir), error.strerror)
    log.info("patterns: %s written, %d unchanged, %d removed%s", plural(report.written, "summary", "summaries"),
             report.folders_unchanged, len(report.folders_removed),
             "; the rest left for the next update" if report.stopped else "")
    return report


@dataclass
class _Update:
    """One update of patterns/: where it writes, with which settings, and what it has done."""

    where: PatternsFolder
    patterns_dir: str
    library_root: str
    settings: PatternSettings
    report: PatternReport
    old_state: dict[str, dict] = field(default_factory=dict)
    new_state: dict[str, dict] = field(default_factory=dict)

    @property
    def context(self) -> list:
        """What every summary depends on besides its photos: the format, the settings, where the library lies."""
        s = self.settings
        return [FORMAT_VERSION, s.min_probability, s.min_support, s.level, s.objects,
                os.path.relpath(self.library_root, self.patterns_dir)]

    def run(self, folders: dict[str, list[PhotoObjects]], should_stop: Callable[[], bool]) -> None:
        self.old_state = self.where.load_state()
        for folder, members in sorted(folders.items()):
            if should_stop():
                return self._stop()
            self._update_folder(folder, members)
        if folders:
            if should_stop():
                return self._stop()
            self._update_library(folders)
        self.report.folders_removed = self.where.remove_stale(set(self.new_state))
        self.where.save_state(self.new_state)

    def _stop(self) -> None:
        """End early: what was written is recorded, every other summary is kept as it is (none is removed), and
        the next update compares them with their photos again."""
        self.report.stopped = True
        self.where.save_state({**self.old_state, **self.new_state})

    def _update_folder(self, folder: str, members: list[PhotoObjects]) -> None:
        parts = mirror_parts(folder)
        key, digest = "/".join(parts), _digest(self.context, members)
        old = self.old_state.get(key)
        if old and old.get("digest") == digest and self.where.present(parts):
            self.new_state[key] = old
            self.report.folders_unchanged += 1
            return
        summary = summarise(folder or "the library root", members, self.settings)
        files = self._render(summary, parts, names_relative_to=folder + "/" if folder else "")
        if self.where.write(parts, files):
            self.report.folders_written.append(folder)
            self.new_state[key] = _state_entry(digest, summary)

    def _update_library(self, folders: dict[str, list[PhotoObjects]]) -> None:
        everything = sorted((photo for members in folders.values() for photo in members), key=lambda p: p.rel)
        index = folder_index(self.new_state)
        digest = _digest(self.context + [index], everything)
        old = self.old_state.get(LIBRARY_DIR)
        if old and old.get("digest") == digest and self.where.present((LIBRARY_DIR,)):
            self.new_state[LIBRARY_DIR] = old
            return
        started = time.perf_counter()
        summary = summarise("the whole library", everything, self.settings)
        self.report.library_mining_seconds = time.perf_counter() - started
        candidates = [tuple(items) for key, entry in self.new_state.items() if key != LIBRARY_DIR
                      for items, _ in entry["patterns"]]
        shared = shared_patterns(summary, candidates, folders, self.settings)
        files = self._render(summary, (LIBRARY_DIR,), names_relative_to="", extra=shared + index)
        if self.where.write((LIBRARY_DIR,), files):
            self.report.library_written = True
            self.new_state[LIBRARY_DIR] = _state_entry(digest, summary)

    def _render(self, summary: Summary, parts: tuple[str, ...], *, names_relative_to: str,
                extra: str = "") -> dict[str, str]:
        """The files of one summary folder, patterns/<parts...>."""
        def name(photo: PhotoObjects) -> str:
            return photo.rel[len(names_relative_to):] if names_relative_to else photo.rel

        markdown = summary_markdown(summary, self.settings, library_root=self.library_root,
                                    summary_dir=os.path.join(self.patterns_dir, *parts), link_label=name, extra=extra)
        return {
            TRANSACTIONS: transactions_text(summary.photos),
            UTILITIES: utilities_text(summary.photos),
            PHOTOS: photos_text([name(photo) for photo in summary.photos]),
            PATTERNS: format_patterns(summary.patterns),
            SUMMARY: markdown,
        }


SHARED_CANDIDATES = 20  # a folder's patterns kept in the state, for the library's list of shared ones


def _state_entry(digest: str, summary: Summary) -> dict:
    """What the state keeps of a written summary: its digest, what the library's folder index shows, and its top
    patterns, which the library summary looks for in the other folders."""
    top = summary.patterns[0] if summary.patterns else None
    return {"digest": digest, "title": summary.title, "photos": len(summary.photos),
            "top": [list(top[0]), top[1]] if top else None,
            "patterns": [[list(items), support] for items, support in summary.patterns[:SHARED_CANDIDATES]]}


def _group_by_folder(photos: Mapping[str, Predictions | None], detections: Mapping[str, Detections | None],
                     settings: PatternSettings) -> dict[str, list[PhotoObjects]]:
    names, coarse = class_labels(settings.level), class_labels("coarse")
    folders: dict[str, list[PhotoObjects]] = {}
    for rel in sorted(photos):
        if not valid_photo_path(rel):
            log.warning("patterns: skipped %r: not a path inside the library", rel)
            continue
        predictions = _checked_predictions(rel, photos[rel], len(names))
        objects, utilities = photo_items(predictions, _checked_detections(rel, detections.get(rel)), names=names,
                                         coarse=coarse, min_probability=settings.min_probability,
                                         source=settings.objects)
        folders.setdefault(rel.rpartition("/")[0], []).append(PhotoObjects(rel, objects, utilities))
    return folders


def _checked_predictions(rel: str, predictions: Predictions | None, classes: int) -> Predictions:
    try:
        checked = tuple((int(index), float(probability)) for index, probability in predictions or ())
        if all(0 <= index < classes and 0.0 <= probability <= 1.0 for index, probability in checked):
            return checked
    except (TypeError, ValueError):
        pass
    log.warning("patterns: ignored the predictions of %s: not (class index, probability) pairs", escape_name(rel))
    return ()


def _checked_detections(rel: str, detections: Sequence[Detection] | None) -> Detections | None:
    """The detections, or None (not detected: the ImageNet items stand in) when they are not Detection objects."""
    if detections is None:
        return None
    try:
        checked = tuple(detections)
        if all(isinstance(d, Detection) and isinstance(d.label, str) and 0.0 <= d.score <= 1.0 for d in checked):
            return checked
    except TypeError:
        pass
    log.warning("patterns: ignored the detections of %s: not detector results", escape_name(rel))
    return None


def _digest(context: list, photos: list[PhotoObjects]) -> str:
    """What a summary's files depend on: settings, where the library lies, and each photo's transaction."""
    payload = json.dumps([context, [[photo.rel, list(photo.objects.items()), photo.utilities] for photo in photos]])
    return hashlib.sha256(payload.encode("utf-8", "surrogateescape")).hexdigest()
