"""Watch-folder daemon: keep each library's clusters and summaries current as photos arrive, move and go.

    watchdog observer thread --event--> Daemon.note_event()     (under a lock: debounce stamps, files to settle)
    main loop, a few times a second --> for each library that is due: LibraryPipeline.update()

A library is due once no event came for `quiet_seconds`, or `max_delay_seconds` after its first unprocessed
event, so a 2,000-photo import is processed in a few runs, not 2,000. A file named in an event must also have
stopped growing (the same size and mtime at two checks `settle_seconds` apart), unless the event said it was
closed after writing; one still growing when max_delay forces a run is held back from that run and taken in the
next.

Every run scans the library and finds moves by (size, mtime_ns), so a lost or misread event can never leave a
photo out: events decide *when* to run, the scan decides *what* changed. Between full scans (at start, on an
inotify overflow, when a library root comes back, on a failed run and on the periodic rescan) a scan lists
again only the folders whose own stat changed or that an event named (scan_state.py): at 100,000 photos that is
15 ms instead of 0.4 s. A photo rewritten in place changes no folder, so its event names it; one rewritten with
no event at all is found by the next full scan.

Fingerprinting and object detection run in a worker process (photocluster.worker) that exits when idle, so the
idle daemon holds no model. systemd is told READY=1 after the first reconcile, STATUS= lines, WATCHDOG=1 and
STOPPING=1.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Collection

from . import interrupts
from .config import Config
from .daemon_reload import ConfigReloading
from .daemon_tree import TreeWatching
from .daemon_status import failure_message, log_update, status_line
from .dask_fingerprinter import dask_steps
from .notify import ServiceNotifier
from .inprocess import wants_detections
from .pipeline import LibraryPipeline
from .settings import LibrarySettings, SettingsError
from .weights import CENTERNET, WeightsUnavailable, missing_npm_weights, missing_weights
from .watched import Library, dir_identity, is_relevant, is_unwatched, looks_unmounted, output_in_use, stat_of
from .watching import Change, Watcher
from .worker import DEFAULT_DETECTOR_FACTORY, DEFAULT_FACTORY, FingerprintWorker, WorkerLoadError
from .worker_fingerprinter import WorkerFingerprinter

log = logging.getLogger(__name__)

UNWATCHED_RESCAN_SECONDS = 60.0  # how often a library that cannot be watched (inotify limits) is rescanned


class Daemon(ConfigReloading, TreeWatching):
    """Watch the configured libraries and keep their output current until stopped."""

    def __init__(self, config: Config, model_factory: str = DEFAULT_FACTORY,
                 notifier: ServiceNotifier | None = None, check_weights: bool | None = None,
                 detector_factory: str = DEFAULT_DETECTOR_FACTORY):
        self.config = config
        self.check_weights = model_factory == DEFAULT_FACTORY if check_weights is None else check_weights
        self.timings = config.timings
        self.notifier = notifier or ServiceNotifier()
        self.worker = FingerprintWorker(self.timings.worker_idle_seconds, self.timings.batch_timeout_seconds)
        self.fingerprinter = WorkerFingerprinter(self.worker, model_factory, self.timings.retry_seconds,
                                                 self.timings.retry_max_seconds, heartbeat=self.notifier.watchdog,
                                                 detector_factory=detector_factory)
        self.fingerprinter.on_progress = self._fingerprint_progress
        self.libraries: list[Library] = []
        self.runs = 0  # pipeline updates done; tests and the benchmark read it
        self.ready = threading.Event()  # set after the first reconcile (when READY=1 is sent)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._watcher = Watcher(prune=self._unwatched, on_overflow=self._on_overflow)
        self._tree_watcher = Watcher(prune=lambda path: False, on_overflow=self._on_tree_overflow)  # daemon_tree.py
        self._last_root_check = 0.0
        self._doing = "starting"  # for the STATUS= line
        self._updating = ""  # the library being updated
        self._current: Library | None = None  # the library being updated
        self._last_progress = float("-inf")

    # --- control, from signal handlers or other threads -----------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def should_stop(self) -> bool:
        """Asked by the pipeline between its stages and batches: also where the watchdog is pinged, and allowed
        as long as the next stage may need for this library (a first clustering of 250,000 photos pings nothing)."""
        if self._current is not None:
            self.notifier.extend_watchdog(self._current.watchdog_allowance())
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
        with self._watcher, self._tree_watcher:
            try:
                self._start_and_loop()
            finally:
                self.notifier.stopping()
                self._doing = "stopping"
                log.info("stopping")
                self.worker.stop()

    def _start_and_loop(self) -> None:
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

    def _tick_seconds(self) -> float:
        return max(0.02, min(0.25, self.timings.quiet_seconds / 4, self.timings.settle_seconds / 2))

    def _reconcile(self) -> None:
        """On start: bring every library up to date with the disk; photos came and went while we were down."""
        for library in self.libraries:
            if self._stop.is_set():
                return
            if library.root_id is not None and library.failed is None:
                with self._lock:
                    dirty = library.take_dirty(set())  # None: the whole library
                self._run(library, hold_back=(), dirty=dirty)

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
            due = self._due(library, time.monotonic())
            if due is not None:
                self._run(library, *due)
        self._follow_trees()  # edits in the cluster trees are corrections (corrections.py)
        self.worker.stop_if_idle()
        self.notifier.watchdog()
        self._doing = "idle"
        self.notifier.status(self.status_line())

    # --- events -------------------------------------------------------------------------------------------
    def note_event(self, library: Library, change: Change) -> None:
        """Called in the watcher's thread for each change in `library`."""
        relevant = [p for p in change.paths if self._relevant(library, p, change.is_directory)]
        if not relevant:
            return
        log.debug("%s: %s", change.kind, " -> ".join(relevant))
        now = time.monotonic()
        # A file closed after writing (IN_CLOSE_WRITE) is complete: it need not wait settle_seconds to be read.
        seen = now - self.timings.settle_seconds if change.kind == "closed" else now
        stats = {} if change.is_directory else {p: (stat_of(p), seen) for p in relevant}
        with self._lock:
            library.mark(now)
            library.settling.update(stats)
            library.note_paths(relevant)

    def _relevant(self, library: Library, path: str, is_directory: bool) -> bool:
        return is_relevant(library.root, path, is_directory, self._out_dirs())

    def _unwatched(self, path: bytes) -> bool:
        return is_unwatched(path, self._out_dirs())

    def _out_dirs(self) -> list[str]:
        return [out for lib in self.libraries for out in lib.out_dirs]

    def _on_overflow(self) -> None:
        log.warning("inotify queue overflowed: events were lost; rescanning every library")
        now = time.monotonic()
        with self._lock:
            for library in self.libraries:
                library.mark(now, rescan=True)

    def _due(self, library: Library, now: float) -> tuple[set[str], set[str] | None] | None:
        """None when `library` should not run now; else (the photos to hold back, still being written; the paths
        its scan lists again, None for all)."""
        if library.root_id is None or library.failed is not None or now < library.next_check:
            return None
        with self._lock:
            return library.take_due(now, self.timings)

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
                    library.mark(now - self.timings.quiet_seconds, rescan=True)

    # --- running the pipeline -------------------------------------------------------------------------------
    def _run(self, library: Library, hold_back: Collection[str], dirty: Collection[str] | None) -> None:
        if looks_unmounted(library):
            if not library.empty_warned:
                log.warning("%s is empty (an unmounted share?); leaving its clusters as they are until photos "
                            "appear", library.root)
                library.empty_warned = True
            library.last_run = time.monotonic()
            return
        library.empty_warned = False
        if output_in_use(library):
            if not library.busy_warned:
                log.warning("%s: its output is in use by another photocluster run; waiting for it to finish",
                            library.root)
                library.busy_warned = True
            library.next_check = time.monotonic() + self.timings.retry_seconds
            with self._lock:
                library.mark(time.monotonic(), rescan=True)
            return
        library.busy_warned = False
        self.fingerprinter.gave_up = False
        self._updating = library.root
        self._doing = f"updating {library.root}"
        self.notifier.status(self.status_line())
        started = time.monotonic()
        self._current = library
        try:
            self.should_stop()  # the watchdog allowance for the scan, before the first stage
            tree = self._tree_at_start(library)
            # A photo that arrives while the summaries and gallery of the last one are written is shown first
            report = library.pipeline.update(progress=False, should_stop=self.should_stop, hold_back=hold_back,
                                             dirty=dirty, tree_unedited=tree.unedited,
                                             laying_out=lambda: self._tree_unwatched(library),
                                             should_yield=lambda: library.first_event is not None)
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
            self._current = None
            self.notifier.restore_watchdog()
            self.runs += 1
            library.last_run = time.monotonic()
        library.failures = 0
        library.last_report = report
        self._after_tree_read(library, tree, report)
        log_update(library, report, time.monotonic() - started, stopped=self._stop.is_set())
        if hold_back or self.fingerprinter.gave_up:
            with self._lock:  # come back for what was left
                library.mark(time.monotonic())
            if self.fingerprinter.gave_up:
                library.next_check = time.monotonic() + self.timings.retry_max_seconds

    def _failed(self, library: Library, exc: BaseException) -> None:
        library.failures += 1
        delay = min(self.timings.retry_seconds * 2 ** (library.failures - 1), self.timings.retry_max_seconds)
        log.error("%s: update failed: %s; retrying in %.0f s", library.root, failure_message(exc), delay)
        library.next_check = time.monotonic() + delay
        with self._lock:
            library.mark(time.monotonic(), rescan=True)

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
        return library_weights_problem(settings)

    def _check_weights_at_start(self) -> None:
        """A library whose weights are missing is a configuration error: fatal when no library could run."""
        problems = [(os.path.abspath(s.library), self._weights_problem(s)) for s in self.config.libraries]
        if problems and all(problem for _, problem in problems):
            raise WeightsUnavailable("; ".join(f"{root}: {problem}" for root, problem in problems))

    def _fingerprint_progress(self, done: int, total: int, doing: str = "fingerprinting") -> None:
        now = time.monotonic()
        if now - self._last_progress >= 1.0 or done == total:  # STATUS= at most once a second
            self._last_progress = now
            self._doing = f"{doing} {done:,}/{total:,} in {self._updating}"
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        """'12,345 photos, 87 clusters, idle': what systemctl status shows."""
        return status_line(self.libraries, self._doing)

    # --- libraries and their watches ------------------------------------------------------------------------
    def _add_library(self, settings: LibrarySettings) -> Library:
        steps = dask_steps(settings) or {"fingerprint": self.fingerprinter, "detect": self.fingerprinter.detect_earlier}
        pipeline = LibraryPipeline(settings, incremental=True, **steps)  # on Dask when the library's config says so
        library = Library(settings, pipeline)
        self.libraries.append(library)
        library.root_id = dir_identity(library.root)
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
            library.watch = self._watcher.watch(library.root, lambda change: self.note_event(library, change))
        except OSError as exc:
            library.watch = None
            log.error("cannot watch %s: %s (raise fs.inotify.max_user_watches?); rescanning it every %.0f s instead",
                      library.root, exc.strerror or exc, UNWATCHED_RESCAN_SECONDS)

    def _unwatch(self, library: Library) -> None:
        self._unwatch_tree(library)
        if library.watch is not None:
            self._watcher.unwatch(library.watch)
            library.watch = None

    def _check_root(self, library: Library) -> None:
        """Notice a root that vanished (unmounted) or came back or was replaced (remounted): rewatch, rescan."""
        current = dir_identity(library.root)
        if current == library.root_id:
            return
        self._unwatch(library)
        if current is None:
            log.warning("%s is gone (unmounted or moved?); waiting for it to come back", library.root)
        else:
            log.warning("%s is %s; rescanning it", library.root, "back" if library.root_id is None else "replaced")
            self._watch(library)
            with self._lock:
                library.mark(time.monotonic() - self.timings.quiet_seconds, rescan=True)
        library.root_id = current


def library_weights_problem(settings: LibrarySettings) -> str | None:
    """Why the library's model, or its object detector when its summaries use one, has no weights here."""
    problem = missing_weights(settings.model, settings.weights)
    if problem is None and wants_detections(settings):
        problem = missing_npm_weights(CENTERNET)
    return problem


def check_weights(config: Config) -> None:
    """Raise WeightsUnavailable naming every library whose model weights are not on this machine.

    It only looks for the files, so `watch --check` stays quick and never loads TensorFlow.
    """
    problems = [f"{os.path.abspath(s.library)}: {problem}" for s in config.libraries
                if (problem := library_weights_problem(s)) is not None]
    if problems:
        raise WeightsUnavailable("; ".join(problems))
