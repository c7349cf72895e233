"""Watch-folder daemon: keep each library's clusters and summaries current as photos arrive, move and go.

    watchdog observer thread --event--> Daemon.note_event()     (under a lock: debounce stamps, files to settle)
    main loop, a few times a second --> for each library that is due: LibraryPipeline.update()

A library is due once no event came for `quiet_seconds`, or `max_delay_seconds` after its first unprocessed
event, so a 2,000-photo import is processed in a few runs, not 2,000. A file named in an event must also have
stopped growing (the same size and mtime at two checks `settle_seconds` apart); one still growing when
max_delay forces a run is held back from that run and taken in the next.

The pipeline always rescans the whole library (10,000 photos take a fraction of a second) and finds moves by
(size, mtime_ns), so a lost or misread event can never leave a photo out: events only decide *when* to run, the
scan decides *what* changed. That is why catching up is simple: on start, on an inotify overflow, when a library
root comes back (a remounted share) and on the periodic rescan, the library is just made due.

Fingerprinting runs in a worker process (photocluster.worker) that exits when idle, so the idle daemon holds no
model. systemd is told READY=1 after the first reconcile, STATUS= lines, WATCHDOG=1 and STOPPING=1.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

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

from . import config as config_file
from . import interrupts
from .config import Config, ConfigError, DaemonTimings, default_config_path, load_config
from .fsutil import open_lock, try_lock
from .library import SKIPPED_FOLDERS, is_photo_name
from .notify import ServiceNotifier
from .pipeline import LOCK_NAME, LibraryPipeline, RunReport
from .settings import LibrarySettings, SettingsError
from .weights import WeightsUnavailable, missing_weights
from .wording import plural
from .worker import DEFAULT_FACTORY, FingerprintWorker, WorkerFingerprinter, WorkerLoadError

log = logging.getLogger(__name__)

# The events worth a run. Opening and reading (our own worker reads every photo) and folder mtime changes are
# left out, which also keeps those events out of the inotify mask.
WATCHED_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
                  DirCreatedEvent, DirMovedEvent, DirDeletedEvent]
# watchdog 7 reports an inotify queue overflow only as a warning on this logger (and rebuilds its own watches);
# handlers get no event for it. The log record is its one trace, so the daemon listens for it. The second logger
# repeats the news once per watch; the daemon says it once, in its own words.
WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify_c"
WATCHDOG_WATCH_LOGGER = "watchdog.observers.inotify"
UNWATCHED_RESCAN_SECONDS = 60.0  # how often a library that cannot be watched (inotify limits) is rescanned


@dataclass
class Library:
    """One watched library: its pipeline, its watch, and what happened since its last run."""

    settings: LibrarySettings
    pipeline: LibraryPipeline
    root_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the root while it is there
    watch: ObservedWatch | None = None
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

    @property
    def root(self) -> str:
        return os.path.abspath(self.settings.library)

    @property
    def out_dirs(self) -> tuple[str, ...]:
        """The output folder, as written and as resolved (events name the one, the file system the other)."""
        out = os.path.abspath(self.settings.out_dir)
        return (out, os.path.realpath(out))

    def mark(self, now: float) -> None:
        """Make a run due after the quiet period (caller holds the daemon's lock)."""
        if self.first_event is None:
            self.first_event = now
        self.last_event = now


@dataclass
class _PrunedWatchGroup(InotifyWatchGroup):
    """watchdog's recursive inotify watch, less the folders the daemon ignores anyway.

    watchdog watches every folder below the root, photocluster's own output folder included. There, each change of
    the clusters builds a new tree of folders and links and deletes the old one: tens of thousands of events on a
    large library, which can overflow the kernel's queue and cost a rescan each time. watchdog has no option to
    leave a subtree out, so this overrides its private _add_all_callbacks (watchdog is pinned to 7.x);
    tests/test_daemon.py counts the kernel's own watches, so a release that changes it fails a test.
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
    """watchdog's inotify observer, whose watches leave out the folders `prune(path)` names."""

    def __init__(self, prune: Callable[[bytes], bool]):
        self._inotify_fd = InotifyFD()
        self._inotify_fd.start()
        BaseObserver.__init__(self, _PrunedEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._inotify_fd,
                              prune=prune)


class _EventHandler(FileSystemEventHandler):
    def __init__(self, daemon: Daemon, library: Library):
        self.daemon, self.library = daemon, library

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.daemon.note_event(self.library, event)


class _OverflowListener(logging.Filter):
    """Turns watchdog's 'Inotify queue overflowed' warning into a full rescan, and drops watchdog's own lines."""

    def __init__(self, on_overflow: Callable[[], None]):
        super().__init__()
        self.on_overflow = on_overflow

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" not in record.getMessage().lower():
            return True
        if record.name == WATCHDOG_INOTIFY_LOGGER:
            self.on_overflow()
        return False


class Daemon:
    """Watch the configured libraries and keep their output current until stopped."""

    def __init__(self, config: Config, model_factory: str = DEFAULT_FACTORY,
                 notifier: ServiceNotifier | None = None, check_weights: bool | None = None):
        self.config = config
        self.check_weights = model_factory == DEFAULT_FACTORY if check_weights is None else check_weights
        self.timings = config.timings
        self.notifier = notifier or ServiceNotifier()
        self.worker = FingerprintWorker(self.timings.worker_idle_seconds, self.timings.batch_timeout_seconds)
        self.fingerprinter = WorkerFingerprinter(self.worker, model_factory, self.timings.retry_seconds,
                                                 self.timings.retry_max_seconds, heartbeat=self.notifier.watchdog)
        self.fingerprinter.on_progress = self._fingerprint_progress
        self.libraries: list[Library] = []
        self.runs = 0  # pipeline updates done; tests and the benchmark read it
        self.ready = threading.Event()  # set after the first reconcile (when READY=1 is sent)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._observer = None
        self._overflow_listener = _OverflowListener(self._on_overflow)
        self._last_root_check = 0.0
        self._doing = "starting"  # for the STATUS= line
        self._updating = ""  # the library being updated
        self._last_progress = float("-inf")

    # --- control, from signal handlers or other threads -----------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def should_stop(self) -> bool:
        self.notifier.watchdog()
        return self._stop.is_set()

    # --- the main loop ----------------------------------------------------------------------------------------
    def run(self, handle_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (or request_stop()); return the exit status, 0.

        Raises WeightsUnavailable when no library can run because its model's weights are missing.
        """
        self._check_weights_at_start()
        with contextlib.ExitStack() as signals:
            if handle_signals:
                signals.enter_context(interrupts.stop_signals(on_stop=self.request_stop))
                previous = signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
                signals.callback(signal.signal, signal.SIGHUP, previous)
            try:
                self._run_until_stopped()
            except interrupts.Interrupted:
                pass  # a stop signal in a step that cannot poll; nothing unsaved was lost (interrupts.py)
        return 0

    def _run_until_stopped(self) -> None:
        watchdog_loggers = [logging.getLogger(WATCHDOG_INOTIFY_LOGGER), logging.getLogger(WATCHDOG_WATCH_LOGGER)]
        levels = [logger.level for logger in watchdog_loggers]
        for logger in watchdog_loggers:
            logger.addFilter(self._overflow_listener)
            logger.setLevel(logging.WARNING)  # the overflow warning must reach the listener even under -q
        self._observer = _Observer(self._unwatched)
        self._observer.start()
        try:
            for settings in self.config.libraries:
                self._add_library(settings)
            log.info("watching %s", ", ".join(lib.root for lib in self.libraries))
            self._reconcile()
            if not self._stop.is_set():
                self.notifier.ready()
                self.ready.set()
            while not self._stop.is_set():
                self._tick()
                self._stop.wait(self._tick_seconds())
        finally:
            self.notifier.stopping()
            self._doing = "stopping"
            log.info("stopping")
            self.worker.stop()
            self._observer.stop()
            self._observer.join(5)
            for logger, level in zip(watchdog_loggers, levels):
                logger.removeFilter(self._overflow_listener)
                logger.setLevel(level)

    def _tick_seconds(self) -> float:
        return max(0.02, min(0.25, self.timings.quiet_seconds / 4, self.timings.settle_seconds / 2))

    def _reconcile(self) -> None:
        """On start: bring every library up to date with the disk; photos came and went while we were down."""
        for library in self.libraries:
            if self._stop.is_set():
                return
            if library.root_id is not None and library.failed is None:
                self._run(library, hold_back=())

    def _tick(self) -> None:
        now = time.monotonic()
        if self._reload.is_set():
            self._reload.clear()
            self.reload()
        if now - self._last_root_check >= self.timings.root_check_seconds:
            self._last_root_check = now
            for library in self.libraries:
                self._check_root(library)
        self._schedule_rescans(now)
        for library in self.libraries:
            if self._stop.is_set():
                return
            held_back = self._due(library, time.monotonic())
            if held_back is not None:
                self._run(library, held_back)
        self.worker.stop_if_idle()
        self.notifier.watchdog()
        self._doing = "idle"
        self.notifier.status(self.status_line())

    # --- events -------------------------------------------------------------------------------------------
    def note_event(self, library: Library, event: FileSystemEvent) -> None:
        """Called in the observer's thread for each event of `library`'s watch."""
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        relevant = [p for p in paths if self._relevant(library, p, event.is_directory)]
        if not relevant:
            return
        log.debug("%s: %s", event.event_type, " -> ".join(relevant))
        now = time.monotonic()
        stats = {} if event.is_directory else {p: (_stat(p), now) for p in relevant}
        with self._lock:
            library.mark(now)
            library.settling.update(stats)

    def _relevant(self, library: Library, path: str, is_directory: bool) -> bool:
        """Photos and folders inside the library; not our outputs, hidden or partial files, or other files."""
        rel = os.path.relpath(path, library.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return False
        for out in (out for lib in self.libraries for out in lib.out_dirs):
            if path == out or path.startswith(out + os.sep):
                return False
        parts = rel.split(os.sep)
        if any(part.startswith(".") or part in SKIPPED_FOLDERS for part in parts):
            return False
        return is_directory or is_photo_name(parts[-1])

    def _unwatched(self, path: bytes) -> bool:
        """Folders that get no inotify watch: output folders, hidden folders, NAS system folders."""
        name = os.fsdecode(os.path.basename(path))
        if name.startswith(".") or name in SKIPPED_FOLDERS:
            return True
        text = os.fsdecode(path)
        return any(text == out for lib in self.libraries for out in lib.out_dirs)

    def _on_overflow(self) -> None:
        log.warning("inotify queue overflowed: events were lost; rescanning every library")
        now = time.monotonic()
        with self._lock:
            for library in self.libraries:
                library.mark(now)

    def _due(self, library: Library, now: float) -> set[str] | None:
        """None when `library` should not run now; else the photos to hold back (still being written)."""
        if library.root_id is None or library.failed is not None or now < library.next_check:
            return None
        with self._lock:
            if library.first_event is None:
                return None
            quiet = now - library.last_event >= self.timings.quiet_seconds
            overdue = now - library.first_event >= self.timings.max_delay_seconds
            if not (quiet or overdue):
                return None
            growing = self._still_growing(library, now)
            if growing and not overdue:
                library.next_check = now + self.timings.settle_seconds
                return None
            library.first_event = library.last_event = None
        root = library.root
        return {os.path.relpath(p, root).replace(os.sep, "/") for p in growing}

    def _still_growing(self, library: Library, now: float) -> list[str]:
        """The event paths whose size or mtime changed in the last settle_seconds (caller holds the lock)."""
        growing = []
        for path, (seen, when) in list(library.settling.items()):
            current = _stat(path)
            if current is None or (current == seen and now - when >= self.timings.settle_seconds):
                del library.settling[path]
            else:
                if current != seen:
                    library.settling[path] = (current, now)
                growing.append(path)
        return growing

    def _schedule_rescans(self, now: float) -> None:
        interval = self.timings.rescan_seconds
        for library in self.libraries:
            every = interval if library.watch is not None else min(interval or UNWATCHED_RESCAN_SECONDS,
                                                                   UNWATCHED_RESCAN_SECONDS)
            if every and now - library.last_run >= every and library.root_id is not None:
                if library.watch is None:
                    self._watch(library)
                log.debug("%s: periodic rescan", library.root)
                with self._lock:
                    library.mark(now - self.timings.quiet_seconds)

    # --- running the pipeline -------------------------------------------------------------------------------
    def _run(self, library: Library, hold_back: Collection[str]) -> None:
        if _looks_unmounted(library):
            if not library.empty_warned:
                log.warning("%s is empty (an unmounted share?); leaving its clusters as they are until photos "
                            "appear", library.root)
                library.empty_warned = True
            library.last_run = time.monotonic()
            return
        library.empty_warned = False
        if _output_in_use(library):
            if not library.busy_warned:
                log.warning("%s: its output is in use by another photocluster run; waiting for it to finish",
                            library.root)
                library.busy_warned = True
            library.next_check = time.monotonic() + self.timings.retry_seconds
            with self._lock:
                library.mark(time.monotonic())
            return
        library.busy_warned = False
        self.fingerprinter.gave_up = False
        self._updating = library.root
        self._doing = f"updating {library.root}"
        self.notifier.status(self.status_line())
        started = time.monotonic()
        try:
            report = library.pipeline.update(progress=False, should_stop=self.should_stop, hold_back=hold_back)
        except WorkerLoadError as exc:
            self._load_failed(library, exc)
            return
        except (SettingsError, OSError, RuntimeError, ValueError) as exc:
            self._failed(library, exc)
            return
        except Exception as exc:  # noqa: BLE001 - the daemon outlives a bug in one run; -v shows the traceback
            log.debug("internal error", exc_info=True)
            self._failed(library, exc)
            return
        finally:
            self.runs += 1
            library.last_run = time.monotonic()
        library.failures = 0
        library.last_report = report
        self._log_run(library, report, time.monotonic() - started)
        if hold_back or self.fingerprinter.gave_up:
            with self._lock:  # come back for what was left
                library.mark(time.monotonic())
            if self.fingerprinter.gave_up:
                library.next_check = time.monotonic() + self.timings.retry_max_seconds

    def _failed(self, library: Library, exc: BaseException) -> None:
        library.failures += 1
        delay = min(self.timings.retry_seconds * 2 ** (library.failures - 1), self.timings.retry_max_seconds)
        where = f" {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        log.error("%s: update failed: %s%s; retrying in %.0f s", library.root, message, where, delay)
        library.next_check = time.monotonic() + delay
        with self._lock:
            library.mark(time.monotonic())

    def _load_failed(self, library: Library, exc: WorkerLoadError) -> None:
        """The worker could not load the model. Missing weights stay missing: no retrying until a reload."""
        if exc.missing_weights:
            self._mark_failed(library, str(exc))
        else:
            self._failed(library, exc)  # something that may pass (memory?): retry with backoff

    def _mark_failed(self, library: Library, problem: str) -> None:
        library.failed = problem
        log.error("%s: cannot run: %s; not retried until a reload (SIGHUP) or a restart", library.root, problem)
        self.notifier.status(self.status_line())

    def _weights_problem(self, settings: LibrarySettings) -> str | None:
        """Why the library's model weights are missing (None when present); the files only, no TensorFlow.

        A stand-in model factory (tests) finds its own weights, so only the real one is checked, unless the
        test asks for it (check_weights=True).
        """
        if not self.check_weights:
            return None
        return missing_weights(settings.model, settings.weights)

    def _check_weights_at_start(self) -> None:
        """A library whose weights are missing is a configuration error: fatal when no library could run."""
        problems = [(os.path.abspath(s.library), self._weights_problem(s)) for s in self.config.libraries]
        if problems and all(problem for _, problem in problems):
            raise WeightsUnavailable("; ".join(f"{root}: {problem}" for root, problem in problems))

    def _log_run(self, library: Library, report: RunReport, seconds: float) -> None:
        if self._stop.is_set():
            log.info("%s: stopped mid-update; %s fingerprinted are saved", library.root,
                     plural(report.fingerprinted.computed, "photo"))
            return
        stages = ", ".join(f"{name} {secs:.2f} s" for name, secs in report.seconds.items())
        log.debug("%s: stages: %s", library.root, stages)
        fp = report.fingerprinted
        changed = fp.computed or fp.failed or report.moved or report.removed or report.layout_changed
        log.log(logging.INFO if changed else logging.DEBUG,
                "%s: %s: %d fingerprinted, %d unreadable, %d moved, %d removed; %s (%.1f s)",
                library.root, plural(report.photos, "photo"), fp.computed, len(fp.failed), report.moved,
                report.removed, plural(report.clusters, "cluster"), seconds)

    def _fingerprint_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_progress >= 1.0 or done == total:  # STATUS= at most once a second
            self._last_progress = now
            self._doing = f"fingerprinting {done:,}/{total:,} in {self._updating}"
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        """'12,345 photos, 87 clusters, idle': what systemctl status shows."""
        reports = [lib.last_report for lib in self.libraries if lib.last_report is not None]
        photos = sum(r.photos for r in reports)
        clusters = sum(r.clusters for r in reports)
        missing = [lib.root for lib in self.libraries if lib.root_id is None]
        failed = [lib.root for lib in self.libraries if lib.failed is not None]
        line = f"{plural(photos, 'photo')}, {plural(clusters, 'cluster')}, {self._doing}"
        line += f"; missing: {', '.join(missing)}" if missing else ""
        return line + (f"; failed (weights missing): {', '.join(failed)}" if failed else "")

    # --- libraries and their watches ------------------------------------------------------------------------
    def _add_library(self, settings: LibrarySettings) -> Library:
        library = Library(settings, LibraryPipeline(settings, fingerprint=self.fingerprinter, incremental=True))
        self.libraries.append(library)
        library.root_id = _dir_identity(library.root)
        problem = self._weights_problem(settings)
        if problem is not None:
            self._mark_failed(library, problem)
        elif library.root_id is None:
            log.warning("%s is not there (an unmounted share?); waiting for it", library.root)
        else:
            self._watch(library)
        return library

    def _watch(self, library: Library) -> None:
        try:
            library.watch = self._observer.schedule(_EventHandler(self, library), library.root, recursive=True,
                                                    event_filter=WATCHED_EVENTS)
        except OSError as exc:
            library.watch = None
            log.error("cannot watch %s: %s (raise fs.inotify.max_user_watches?); rescanning it every %.0f s instead",
                      library.root, exc.strerror or exc, UNWATCHED_RESCAN_SECONDS)

    def _unwatch(self, library: Library) -> None:
        if library.watch is not None:
            try:
                self._observer.unschedule(library.watch)
            except (KeyError, OSError):
                pass  # its emitter already stopped (the root was deleted)
            library.watch = None

    def _check_root(self, library: Library) -> None:
        """Notice a root that vanished (unmounted) or came back or was replaced (remounted): rewatch, rescan."""
        current = _dir_identity(library.root)
        if current == library.root_id:
            return
        self._unwatch(library)
        if current is None:
            log.warning("%s is gone (unmounted or moved?); waiting for it to come back", library.root)
        else:
            log.warning("%s is %s; rescanning it", library.root, "back" if library.root_id is None else "replaced")
            self._watch(library)
            with self._lock:
                library.mark(time.monotonic() - self.timings.quiet_seconds)
        library.root_id = current

    # --- reload (SIGHUP) ------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the config file again; a bad one keeps the current config, and says why."""
        if self.config.source is None:
            log.warning("SIGHUP: nothing to reload (the libraries were given on the command line)")
            return
        self.notifier.reloading()
        try:
            config = load_config(self.config.source)
        except SettingsError as exc:
            log.error("config reload failed, keeping the current config: %s", exc)
            self.notifier.ready()
            return
        self._apply(config)
        self.notifier.ready()

    def _apply(self, config: Config) -> None:
        old = {os.path.realpath(lib.root): lib for lib in self.libraries}
        kept: list[Library] = []
        for settings in config.libraries:
            library = old.pop(os.path.realpath(settings.library), None)
            if library is not None and library.settings == settings and library.failed is None:
                kept.append(library)
                continue
            if library is not None:
                self._unwatch(library)
                self.libraries.remove(library)
            kept.append(self._add_library(settings))
            with self._lock:
                kept[-1].mark(time.monotonic() - self.timings.quiet_seconds)
        for library in old.values():
            self._unwatch(library)
            log.info("%s: no longer watched", library.root)
        self.libraries = kept
        self._apply_timings(config.timings)
        self.config = config
        log.info("config reloaded from %s: watching %s", config.source, ", ".join(lib.root for lib in kept))

    def _apply_timings(self, timings: DaemonTimings) -> None:
        self.timings = timings
        self.worker.idle_seconds = timings.worker_idle_seconds
        self.worker.batch_timeout = timings.batch_timeout_seconds
        self.fingerprinter.retry_seconds = timings.retry_seconds
        self.fingerprinter.retry_max_seconds = timings.retry_max_seconds


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _dir_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


def _output_in_use(library: Library) -> bool:
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


def _looks_unmounted(library: Library) -> bool:
    """True when the root holds nothing but our own output: an unmounted share's empty mount point, most likely.

    Running then would forget every photo and empty the clusters, and a remount would fingerprint all again.
    """
    out = os.path.realpath(library.settings.out_dir)
    try:
        with os.scandir(library.root) as entries:
            return all(os.path.realpath(e.path) == out for e in entries)
    except OSError:
        return True


# --- command line ---------------------------------------------------------------------------------------------

# --help of each DaemonTimings field (tests/test_cli.py checks that none is missing).
TIMING_HELP = {
    "quiet_seconds": "run once no event came for this long...",
    "max_delay_seconds": "...or once this long has passed since the first unprocessed event",
    "settle_seconds": "a file must keep its size and mtime this long before it is read",
    "rescan_seconds": "a full rescan this often, the safety net for lost events (0: never)",
    "root_check_seconds": "how often to check that each library root is still there (unmounts)",
    "worker_idle_seconds": "the fingerprint worker, and its model, exits after this long unused",
    "retry_seconds": "first wait after a worker crash or a failed run; doubles on each repeat",
    "retry_max_seconds": "the longest that wait grows to",
    "batch_timeout_seconds": "a worker silent this long is taken as hung, and killed",
}


def build_parser() -> argparse.ArgumentParser:
    from .cli import _add_pattern_options, _add_verbosity, _number, _Parser
    from .settings import MODEL_NAMES

    p = _Parser(
        prog="photocluster watch",
        description="Keep photo libraries organised as photos arrive, move and go. With PATHs, watch those "
        "libraries with the options given here; without, read the config file (--config, else "
        "$XDG_CONFIG_HOME/photocluster/config.toml, else /etc/photocluster/config.toml).",
        epilog="SIGHUP reloads the config file; SIGTERM or Ctrl-C stops cleanly. Exit status: 0 stopped cleanly, "
        "2 bad usage or config.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="photo libraries to watch")
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="the TOML config file to read")
    p.add_argument("--check", action="store_true", help="only validate the config (or options) and exit")
    library = p.add_argument_group("library options (with PATHs)")
    library.add_argument("--out", type=Path, default=None, metavar="DIR",
                         help="output folder (default: PATH/photocluster); only with a single PATH")
    library.add_argument("--sim", type=_number(float, "--sim"), default=0.5, help="similarity level, 0 to 1")
    library.add_argument("--cut", type=_number(float, "--cut"), default=None, metavar="COSINE",
                         help="the raw cosine-similarity cut, overriding --sim")
    library.add_argument("--min-size", type=_number(int, "--min-size"), default=2, help="smallest cluster shown")
    library.add_argument("--model", choices=MODEL_NAMES, default=None,
                         help="fingerprint model (default: the model of the library's last run, else vgg16)")
    library.add_argument("--weights", default=None, metavar="FILE", help="a local weights file for the model")
    library.add_argument("--batch-size", type=_number(int, "--batch-size"), default=16, metavar="N")
    _add_pattern_options(library)
    library.add_argument("--no-patterns", action="store_true", help="do not write the per-folder summaries")
    timing = p.add_argument_group("daemon timings (with PATHs; in seconds)")
    for f in DaemonTimings.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        timing.add_argument(flag, dest=f.name, type=_number(float, flag), default=f.default, metavar="S",
                            help=f"{TIMING_HELP[f.name]} (default: {f.default:g})")
    _add_verbosity(p)
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    from .cli import UsageError, settings_from_args

    if not args.paths:
        return load_config(args.config or _existing_default_config())
    if args.config is not None:
        raise UsageError("give either PATHs or --config, not both")
    if args.out is not None and len(args.paths) > 1:
        raise UsageError("--out needs a single PATH: each library gets its own output folder")
    timings = DaemonTimings(**{name: getattr(args, name) for name in DaemonTimings.__dataclass_fields__})
    timings.validate()
    libraries = []
    for path in args.paths:
        args.path = path
        libraries.append(settings_from_args(args))
    return Config(libraries, timings, None)


def check_weights(config: Config) -> None:
    """Raise WeightsUnavailable naming every library whose model weights are not on this machine.

    It only looks for the files, so `watch --check` stays quick and never loads TensorFlow.
    """
    problems = [f"{os.path.abspath(s.library)}: {problem}" for s in config.libraries
                if (problem := missing_weights(s.model, s.weights)) is not None]
    if problems:
        raise WeightsUnavailable("; ".join(problems))


def _existing_default_config() -> Path:
    path = default_config_path()
    if not path.exists():
        raise ConfigError(f"no config file: looked for {config_file.user_config_path()} and "
                          f"{config_file.SYSTEM_CONFIG}; write one, or give PATHs to watch")
    return path


def main(argv: list[str]) -> int:
    """`photocluster watch ...`: run in the foreground until stopped. Errors raise (cli prints one line)."""
    from .cli import EXIT_USAGE, _fail, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    logging.captureWarnings(True)  # a library's warnings.warn() becomes one log line, fit for the journal
    try:
        config = config_from_args(args)
    except ConfigError as exc:  # every problem of the file, one line each, not only the first
        for problem in exc.problems:
            _fail(problem, EXIT_USAGE)
        return EXIT_USAGE
    if args.check:
        check_weights(config)
        where = config.source or "the command line"
        print(f"{where}: OK, {plural(len(config.libraries), 'library', 'libraries')}: "
              + ", ".join(os.fspath(s.library) for s in config.libraries))
        return 0
    return Daemon(config).run()
