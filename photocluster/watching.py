"""The one adapter between the daemon and the watchdog library: recursive inotify watches, less pruned folders.

Everything here leans on watchdog 7's internals (pinned in pyproject.toml): the private _add_all_callbacks of its
inotify watch group, its emitter's on_thread_start, and the wording of its queue-overflow warning. A watchdog
upgrade touches this file only, and tests/test_watching.py fails when one of those internals changed.

    watcher = Watcher(prune=..., on_overflow=...)
    with watcher:                                   # starts the observer thread
        handle = watcher.watch(root, on_change)     # on_change(Change) in the observer's thread
        watcher.unwatch(handle)
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyFD

# The events worth a run. Opening and reading (our own worker reads every photo) and folder mtime changes are
# left out, which also keeps those events out of the inotify mask.
WATCHED_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
                  DirCreatedEvent, DirMovedEvent, DirDeletedEvent]
# watchdog 7 reports an inotify queue overflow only as a warning on this logger (and rebuilds its own watches);
# handlers get no event for it. The log record is its one trace, so the watcher listens for it. The second logger
# repeats the news once per watch; the daemon says it once, in its own words.
WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify_c"
WATCHDOG_WATCH_LOGGER = "watchdog.observers.inotify"

Watch = ObservedWatch  # the handle watch() returns, for unwatch()


@dataclass(frozen=True)
class Change:
    """One file-system event, in the daemon's terms."""

    kind: str  # "created", "modified", "closed", "moved", "deleted"
    paths: tuple[str, ...]  # the path, and for a move its destination
    is_directory: bool


class Watcher:
    """Recursive inotify watches whose walk leaves out the folders `prune(path)` names.

    `on_overflow()` is called (in watchdog's thread) when the kernel's event queue overflowed: events were lost.
    """

    def __init__(self, prune: Callable[[bytes], bool], on_overflow: Callable[[], None]):
        self._prune = prune
        self._listener = _OverflowListener(on_overflow, lambda: self._observer and self._observer.reader)
        self._loggers = [logging.getLogger(WATCHDOG_INOTIFY_LOGGER), logging.getLogger(WATCHDOG_WATCH_LOGGER)]
        self._levels: list[int] = []
        self._observer: _Observer | None = None

    def __enter__(self) -> Watcher:
        self._levels = [logger.level for logger in self._loggers]
        for logger in self._loggers:
            logger.addFilter(self._listener)
            logger.setLevel(logging.WARNING)  # the overflow warning must reach the listener even under -q
        self._observer = _Observer(self._prune)
        self._observer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._observer.stop()
        self._observer.join(5)
        for logger, level in zip(self._loggers, self._levels):
            logger.removeFilter(self._listener)
            logger.setLevel(level)

    def watch(self, root: str, on_change: Callable[[Change], None]) -> Watch:
        """Watch `root` and the folders below it; OSError when the kernel refuses (inotify limits)."""
        return self._observer.schedule(_Handler(on_change), root, recursive=True, event_filter=WATCHED_EVENTS)

    def unwatch(self, watch: Watch) -> None:
        try:
            self._observer.unschedule(watch)
        except (KeyError, OSError):
            pass  # its emitter already stopped (the root was deleted)


class _Handler(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[Change], None]):
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        self.on_change(Change(event.event_type, tuple(paths), event.is_directory))


@dataclass
class _PrunedWatchGroup(InotifyWatchGroup):
    """watchdog's recursive inotify watch, less the folders the daemon ignores anyway.

    watchdog watches every folder below the root, photocluster's own output folder included. There, each change of
    the clusters builds a new tree of folders and links and deletes the old one: tens of thousands of events on a
    large library, which can overflow the kernel's queue and cost a rescan each time. watchdog has no option to
    leave a subtree out, so this overrides its private _add_all_callbacks (watchdog is pinned to 7.x);
    tests/test_watching.py counts the kernel's own watches, so a release that changes it fails a test.
    """

    prune: Callable[[bytes], bool] = lambda path: False

    def _add_all_callbacks(self, path: bytes) -> None:
        if path != self.path and self.prune(path):
            return
        self._add_callback(path)
        if not (self.is_recursive and os.path.isdir(path)):
            return
        for root, dirnames, _ in os.walk(path):
            dirnames[:] = [d for d in dirnames
                           if not self.prune(os.path.join(root, d)) and not os.path.islink(os.path.join(root, d))]
            for dirname in dirnames:
                self._add_callback(os.path.join(root, dirname))


class _PrunedEmitter(InotifyEmitter):
    def __init__(self, *args, prune: Callable[[bytes], bool], **kwargs):
        super().__init__(*args, **kwargs)
        self._prune = prune

    def on_thread_start(self) -> None:
        self._inotify = _PrunedWatchGroup(self._inotify_fd, os.fsencode(self.watch.path),
                                          event_mask=self.get_event_mask_from_filter(),
                                          is_recursive=self.watch.is_recursive,
                                          follow_symlink=self.watch.follow_symlink, prune=self._prune)


class _Observer(InotifyObserver):
    """watchdog's inotify observer, whose watches leave out the folders `prune(path)` names. Each has its own
    inotify instance (kernel queue) and `reader` thread, so one watcher's flood cannot overflow another's queue."""

    @property
    def reader(self) -> InotifyFD:
        return self._inotify_fd

    def __init__(self, prune: Callable[[bytes], bool]):
        self._inotify_fd = InotifyFD()
        self._inotify_fd.start()
        BaseObserver.__init__(self, _PrunedEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._inotify_fd,
                              prune=prune)


class _OverflowListener(logging.Filter):
    """Turns watchdog's 'Inotify queue overflowed' warning into a full rescan, and drops watchdog's own lines."""

    def __init__(self, on_overflow: Callable[[], None], reader: Callable[[], object]):
        super().__init__()
        self.on_overflow = on_overflow
        self.reader = reader  # the thread that reads this watcher's queue, and logs its overflow

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" not in record.getMessage().lower():
            return True
        thread = threading.current_thread()
        if isinstance(thread, InotifyFD) and thread is not self.reader():
            return True  # another watcher's queue overflowed: its own listener takes it
        if record.name == WATCHDOG_INOTIFY_LOGGER:
            self.on_overflow()
        return False
