"""The daemon's watch on each library's shown cluster tree: a user's edit there (a link deleted, moved or made,
see corrections.py) makes the library due, as a new photo does, so the correction is read within the usual delay.

The library's own watch leaves the output folder out (its tree is rebuilt on every change). So each library gets
a second watch, on the generation that `<out>/clusters` shows, moved to the new one after each swap. A run of this
daemon lets go of it before it builds a new tree (see below), so the watch never sees the daemon's own moves.
Events from a generation that is no longer the one shown (a one-shot run beside the daemon swapped it) are
ignored; that run's moves of unchanged folders out of the shown generation, before its swap, look like edits and
cost one more run, which reads the tree and finds none.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import NamedTuple

from .outdir import GENERATION
from .run_report import RunReport
from .watched import Library
from .watching import Change, Watch

log = logging.getLogger("photocluster.daemon")  # the daemon's own logger: these are its lines

EDITS = ("deleted", "moved", "created")


def shown_generation(out_dir: str | os.PathLike) -> str | None:
    """The absolute path of the generation `<out>/clusters` shows; None when there is none (or not ours)."""
    try:
        target = os.readlink(os.path.join(out_dir, "clusters"))
    except OSError:
        return None
    return os.path.join(os.path.realpath(out_dir), target) if GENERATION.fullmatch(target) else None


class TreeAtStart(NamedTuple):
    """What a run starts with: the tree's edit count, the watch on it, and whether the run may skip reading it."""

    edits: int
    watch: Watch | None
    unedited: bool


class TreeWatching:
    """The tree-watching half of daemon.Daemon, which provides libraries, _tree_watcher and _lock."""

    def _follow_trees(self) -> None:
        """Watch the tree each library shows now (a run, or a one-shot run beside us, may have swapped it)."""
        for library in self.libraries:
            shown = shown_generation(library.settings.out_dir) if library.root_id is not None else None
            if shown != library.tree_path:
                self._unwatch_tree(library)
                if shown is not None:
                    self._watch_tree(library, shown)

    def _watch_tree(self, library: Library, generation: str) -> None:
        try:
            library.tree_watch = self._tree_watcher.watch(
                generation, lambda change: self._note_tree_event(library, generation, change))
        except OSError as exc:
            log.warning("cannot watch %s for corrections: %s; they are read at the next run", generation,
                        exc.strerror or exc)
        library.tree_path = generation  # also after a refusal: not tried again until the tree changes
        library.tree_read_at = None  # what changed before the watch began is known only by reading the tree

    def _unwatch_tree(self, library: Library) -> None:
        if library.tree_watch is not None:
            self._tree_watcher.unwatch(library.tree_watch)
        library.tree_watch = library.tree_path = None

    def _note_tree_event(self, library: Library, generation: str, change: Change) -> None:
        """Called in the watcher's thread: an edit in the tree shown makes the library due."""
        if change.kind not in EDITS or shown_generation(library.settings.out_dir) != generation:
            return
        log.debug("cluster tree %s: %s", change.kind, " -> ".join(change.paths))
        with self._lock:
            library.tree_events += 1
            library.mark(time.monotonic())

    def _on_tree_overflow(self) -> None:
        """The trees' own queue overflowed (letting go of a watch on 20,000 folders queues an event for each):
        an edit may have been lost, so every tree is read at a run made due now."""
        now = time.monotonic()
        with self._lock:
            for library in self.libraries:
                library.tree_events += 1
                library.mark(now)

    # --- reading the tree only when it may have been edited ---------------------------------------------------
    # Reading a tree for edits lists every cluster folder (0.6 s at 100,000 photos). A run need not when the watch
    # was on the tree since a run last read it and saw no edit. Building a new tree moves thousands of folders
    # out of the shown one: the watch lets go of it first, or their events would flood it (inotify overflows) and
    # take the interpreter from the update. The new tree is watched right after the swap, and read by one more
    # run, so an edit made while it was built is read too; the summaries and gallery are left to that run.

    def _tree_at_start(self, library: Library) -> TreeAtStart:
        with self._lock:
            count = library.tree_events
        watch = library.tree_watch
        return TreeAtStart(count, watch, watch is not None and library.tree_read_at == count)

    @contextlib.contextmanager
    def _tree_unwatched(self, library: Library) -> Iterator[None]:
        """Around a run's build and swap of a new tree: no watch on the tree, then one on the new tree, and the
        library due for a run that reads it."""
        self._unwatch_tree(library)
        try:
            yield
        finally:
            self._follow_trees()
            with self._lock:
                library.mark(time.monotonic())

    def _after_tree_read(self, library: Library, started: TreeAtStart, report: RunReport) -> None:
        """After a run that finished: the tree counts as read at the edit count it started at, when the run got to
        reading it (or trusted it) under the watch that is still on it."""
        if started.watch is not None and library.tree_watch is started.watch and "corrections" in report.seconds:
            library.tree_read_at = started.edits

