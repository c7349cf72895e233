"""The daemon's view of one watched library: what happened since its last run, when the next is due, and the
checks made before a run (is the share mounted, is the output free). No threads here: the daemon holds the lock.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .config import DaemonTimings
from .fsutil import open_lock, try_lock
from .library import SKIPPED_FOLDERS, is_photo_name
from .pipeline import LOCK_NAME, LibraryPipeline, RunReport
from .settings import LibrarySettings
from .watching import Watch

# How long a run may go without a watchdog ping, by library size. Clustering pings nothing, and its exhaustive
# pair search grows with the square of the photos: 250,000 took 2.4 min on a quiet machine, the daemon runs at
# Nice=10 on a busy one, and its incremental clusterer can be slower than the batch one. So: 20x that measure,
# scaled quadratically, plus 1 ms a photo for the linear stages (scan, layout on a slow disk), and at least the
# unit's own WatchdogSec= (notify.py). A hung run is still killed, after this allowance.
MEASURED_CLUSTER_SECONDS, MEASURED_PHOTOS, SLOWDOWN = 144.0, 250_000, 20.0
LINEAR_SECONDS_PER_PHOTO = 1e-3


def watchdog_allowance(photos: int) -> float:
    """Seconds a run of a library of `photos` may go between watchdog pings (see above)."""
    quadratic = SLOWDOWN * MEASURED_CLUSTER_SECONDS * (photos / MEASURED_PHOTOS) ** 2
    return quadratic + LINEAR_SECONDS_PER_PHOTO * photos


@dataclass
class Library:
    """One watched library: its pipeline, its watch, and what happened since its last run."""

    settings: LibrarySettings
    pipeline: LibraryPipeline
    root_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the root while it is there
    watch: Watch | None = None
    tree_watch: Watch | None = None  # the watch on the cluster tree shown (daemon_tree.py)
    tree_path: str | None = None  # ...and the generation it watches
    tree_events: int = 0  # edits that watch has seen
    tree_read_at: int | None = None  # tree_events when a run last read the tree under that watch (None: not yet)
    first_event: float | None = None  # monotonic time of the first event not yet processed
    last_event: float | None = None
    settling: dict[str, tuple[tuple[int, int] | None, float]] = field(default_factory=dict)  # path -> stat, when
    next_check: float = 0.0  # no run before this (files settling, or a retry after a failure)
    failures: int = 0
    last_run: float = float("-inf")
    last_report: RunReport | None = None
    empty_warned: bool = False  # said once that the root is empty
    busy_warned: bool = False  # said once that another run holds the output
    failed: str | None = None  # why it cannot run until the config is reloaded (its weights are missing)
    # Library-relative paths that events named since the last run (its scan lists their folders again, see
    # scan_state.py); None: the next run scans the whole library (at start, after lost events, periodically).
    dirty: set[str] | None = None

    @property
    def root(self) -> str:
        return os.path.abspath(self.settings.library)

    @property
    def out_dirs(self) -> tuple[str, ...]:
        """The output folder, as written and as resolved (events name the one, the file system the other)."""
        out = os.path.abspath(self.settings.out_dir)
        return (out, os.path.realpath(out))

    def watchdog_allowance(self) -> float:
        """watchdog_allowance() for the photos this library holds: the cache's, else the last run's count."""
        cache = self.pipeline.cache
        photos = len(cache.entries) if cache is not None else 0
        return watchdog_allowance(max(photos, self.last_report.photos if self.last_report else 0))

    def mark(self, now: float, rescan: bool = False) -> None:
        """Make a run due after the quiet period; with `rescan`, one that scans the whole library (caller holds
        the daemon's lock)."""
        if self.first_event is None:
            self.first_event = now
        self.last_event = now
        if rescan:
            self.dirty = None

    def note_paths(self, paths: list[str]) -> None:
        """Remember the (absolute) paths an event named, for the next run's scan (caller holds the lock)."""
        if self.dirty is not None:
            self.dirty.update(self.relative(p) for p in paths)

    def take_dirty(self, held_back: set[str]) -> set[str] | None:
        """The paths for the run starting now; the photos it holds back stay dirty for the next (caller holds
        the lock)."""
        dirty, self.dirty = self.dirty, set(held_back)
        return dirty

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def take_due(self, now: float, timings: DaemonTimings) -> tuple[set[str], set[str] | None] | None:
        """None when no run is due; else start one: (the photos to hold back, still being written; the paths for
        its scan, take_dirty).

        A run is due `quiet_seconds` after the last event, or `max_delay_seconds` after the first; a file still
        growing delays it by `settle_seconds`, until max_delay forces the run without it (caller holds the lock).
        """
        if self.first_event is None:
            return None
        quiet = now - self.last_event >= timings.quiet_seconds
        overdue = now - self.first_event >= timings.max_delay_seconds
        if not (quiet or overdue):
            return None
        growing = self._still_growing(now, timings.settle_seconds)
        if growing and not overdue:
            self.next_check = now + timings.settle_seconds
            return None
        self.first_event = self.last_event = None
        held_back = {self.relative(p) for p in growing}
        return held_back, self.take_dirty(held_back)

    def _still_growing(self, now: float, settle_seconds: float) -> list[str]:
        """The event paths whose size or mtime changed in the last settle_seconds."""
        growing = []
        for path, (seen, when) in list(self.settling.items()):
            current = stat_of(path)
            if current is None or (current == seen and now - when >= settle_seconds):
                del self.settling[path]
            else:
                if current != seen:
                    self.settling[path] = (current, now)
                growing.append(path)
        return growing


def is_relevant(root: str, path: str, is_directory: bool, out_dirs: list[str]) -> bool:
    """Photos and folders inside the library; not our outputs, hidden or partial files, or other files."""
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return False
    if any(path == out or path.startswith(out + os.sep) for out in out_dirs):
        return False
    parts = rel.split(os.sep)
    if any(part.startswith(".") or part in SKIPPED_FOLDERS for part in parts):
        return False
    return is_directory or is_photo_name(parts[-1])


def is_unwatched(path: bytes, out_dirs: list[str]) -> bool:
    """Folders that get no inotify watch: output folders, hidden folders, NAS system folders."""
    name = os.fsdecode(os.path.basename(path))
    if name.startswith(".") or name in SKIPPED_FOLDERS:
        return True
    return os.fsdecode(path) in out_dirs


def stat_of(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def dir_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


def output_in_use(library: Library) -> bool:
    """True when another process (a one-shot run) holds the output folder's lock.

    The pipeline would wait for it, and a daemon that waits there cannot answer SIGTERM; so the daemon looks first
    and comes back later. The lock is let go at once: flock(2) locks belong to one open file, and the pipeline
    takes its own.
    """
    lock_path = os.path.join(library.settings.out_dir, LOCK_NAME)
    if not os.path.lexists(lock_path):
        return False
    try:
        fd = open_lock(lock_path)  # never through a symlink; the pipeline reports one planted there
    except OSError:
        return False
    try:
        return not try_lock(fd)
    finally:
        os.close(fd)


def looks_unmounted(library: Library) -> bool:
    """True when the root holds nothing but our own output: an unmounted share's empty mount point, most likely.

    Running then would forget every photo and empty the clusters, and a remount would fingerprint all again.
    """
    out = os.path.realpath(library.settings.out_dir)
    try:
        with os.scandir(library.root) as entries:
            return all(os.path.realpath(e.path) == out for e in entries)
    except OSError:
        return True
