"""The daemon's watch on each library's shown cluster tree: a user's edit there (a link deleted, moved or made,
see corrections.py) makes the library due, as a new photo does, so the correction is read within the usual delay.

The library's own watch leaves the output folder out (its tree is rebuilt on every change). So each library gets
a second watch, on the generation that `<out>/clusters` shows, moved to the new one after each swap. The swap
removes the old generation, which the watch still sees: events from a generation that is no longer the one shown
are photocluster's own, and ignored. So are, before the swap, the moves of unchanged cluster folders out of the
shown generation into the new one (layout_reuse.py): this process made them, and a user's deletion of a folder
is told apart by its path.
"""
from __future__ import annotations

import logging
import os
import time

from .layout_reuse import moved_here
from .outdir import GENERATION
from .watched import Library
from .watching import Change

log = logging.getLogger("photocluster.daemon")  # the daemon's own logger: these are its lines

EDITS = ("deleted", "moved", "created")


def shown_generation(out_dir: str | os.PathLike) -> str | None:
    """The absolute path of the generation `<out>/clusters` shows; None when there is none (or not ours)."""
    try:
        target = os.readlink(os.path.join(out_dir, "clusters"))
    except OSError:
        return None
    return os.path.join(os.path.realpath(out_dir), target) if GENERATION.fullmatch(target) else None


class TreeWatching:
    """The tree-watching half of daemon.Daemon, which provides libraries, _watcher and _lock."""

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
            library.tree_watch = self._watcher.watch(
                generation, lambda change: self._note_tree_event(library, generation, change))
        except OSError as exc:
            log.warning("cannot watch %s for corrections: %s; they are read at the next run", generation,
                        exc.strerror or exc)
        library.tree_path = generation  # also after a refusal: not tried again until the tree changes

    def _unwatch_tree(self, library: Library) -> None:
        if library.tree_watch is not None:
            self._watcher.unwatch(library.tree_watch)
        library.tree_watch = library.tree_path = None

    def _note_tree_event(self, library: Library, generation: str, change: Change) -> None:
        """Called in the watcher's thread: an edit in the tree shown makes the library due."""
        if change.kind not in EDITS or shown_generation(library.settings.out_dir) != generation:
            return
        if _own_move(generation, change.paths[0]):
            return
        log.debug("cluster tree %s: %s", change.kind, " -> ".join(change.paths))
        with self._lock:
            library.mark(time.monotonic())


def _own_move(generation: str, path: str) -> bool:
    """True for an event on a cluster folder (or inside one) that this process moved out of `generation`."""
    parts = os.path.relpath(path, generation).split(os.sep)
    return len(parts) >= 2 and moved_here(os.path.join(generation, parts[0], parts[1]))
