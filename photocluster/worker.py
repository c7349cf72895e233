"""Fingerprint worker: a child process that holds the model, so the daemon itself stays small and safe.

VGG16 costs about 2 GB while it runs. The daemon starts this worker when photos need fingerprints and stops it
once it has been unused for `idle_seconds`, so an idle daemon holds no model at all. A crash while decoding or
predicting (a decoder segfault, the OOM killer) ends the worker, never the daemon; worker_fingerprinter.py
retries, splits and quarantines (this module only reports how a job ended).

The worker is a `multiprocessing` child made with the 'spawn' method: the daemon runs watchdog threads, and
forking a process with threads (or with TensorFlow loaded) is unsafe. It is driven over one Pipe:

    daemon -> worker   Job, or None to exit
    worker -> daemon   ("ready", model_id)                   the models are loaded (a crash before this is not
                                                             the photos' fault)
                       ("photo", rel, vector, predictions, None, detections, producer)  one fingerprint, sent
                                                             as soon as it is computed (detections None: no
                                                             detector ran; producer: the model's runtime)
                       ("photo", rel, None, (), reason, None, None)  a photo that could not be decoded
                       ("detections", rel, detections)       a DETECT job's result (no fingerprint computed)
                       ("done", None) | ("load_error", msg, missing_weights)

Detections cross the pipe as plain tuples (label, score, (x1, y1, x2, y2)), so the protocol carries only builtins
and numpy arrays, never the package's own classes.

concurrent.futures.ProcessPoolExecutor would hide what is needed here (results streamed per photo, the exit
signal of a crash, an idle exit), which is why this small protocol is written out by hand.
"""
from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .fingerprint import FingerprintSink, detect_photos, fingerprint_photos, hung_decodes
from .labels import Detection, Detections, Predictions
from .library import PhotoFile
from .thumbs import thumb_writer
from .weights import WeightsUnavailable

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "photocluster.models:load_fingerprinter"
DEFAULT_DETECTOR_FACTORY = "photocluster.detector:load_detector"
FINGERPRINT, DETECT = "fingerprint", "detect"  # Job.kind: DETECT runs only the detector (photos fingerprinted before)
POLL_SECONDS = 0.2  # how often a wait for the worker looks at should_stop


@dataclass(frozen=True)
class Job:
    """Fingerprint `photos` of the library at `library_root` with the model that `factory(model, weights)` makes,
    and with `detect`, find their objects too with the detector that `detector_factory()` makes, from the same
    decode. A DETECT job runs only the detector, for photos fingerprinted before it was used.

    The factories are dotted paths "module:function", so tests can give the worker stand-ins.
    """

    library_root: str
    photos: tuple[PhotoFile, ...]
    model: str
    weights: str | None
    batch_size: int
    factory: str = DEFAULT_FACTORY
    detect: bool = False
    kind: str = FINGERPRINT
    detector_factory: str = DEFAULT_DETECTOR_FACTORY
    runtime: str = "openvino"  # passed to both factories
    thumbs_out: str | None = None  # the output folder whose gallery/thumbs/ gets each decode's thumbnail

    @property
    def needs_model(self) -> bool:
        return self.kind == FINGERPRINT

    @property
    def needs_detector(self) -> bool:
        return self.detect or self.kind == DETECT

    @property
    def model_key(self) -> tuple[str, str, str | None, str]:
        return (self.factory, self.model, self.weights, self.runtime)


class WorkerLoadError(RuntimeError):
    """The worker could not load its model (missing weights...). The message is one line.

    `missing_weights`: the model's weights are missing or unusable, which no retry can fix.
    """

    def __init__(self, message: str, missing_weights: bool = False):
        super().__init__(message)
        self.missing_weights = missing_weights


# --- the worker process ---------------------------------------------------------------------------------------

def worker_main(conn: Connection, log_level: int) -> None:
    """The worker process: answer jobs until told to exit or until the daemon is gone."""
    from .logs import setup_logging

    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when the worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(verbose=log_level <= logging.DEBUG, quiet=log_level >= logging.ERROR)
    # Each undecodable photo is sent back and warned about by the daemon; a warning here too would name it twice.
    logging.getLogger("photocluster.fingerprint").setLevel(max(log_level, logging.ERROR))
    # tqdm would otherwise make a multiprocessing lock (a named semaphore) that outlives a worker killed mid-job
    # and draws a "leaked semaphore" warning at shutdown; the worker has no progress bar to share.
    tqdm.set_lock(threading.RLock())
    loaded = _LoadedModels()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the daemon is gone
        if job is None:
            return
        try:
            model, detector = loaded.for_job(job)
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported as one line
            conn.send(("load_error", str(exc) or type(exc).__name__, isinstance(exc, WeightsUnavailable)))
            continue
        conn.send(("ready", model.model_id if model is not None else None))
        try:
            _run_job(job, model, detector, _ResultSender(conn))
        except Exception as exc:  # noqa: BLE001 - one line for the journal; the daemon retries as for a crash
            log.error("fingerprint worker failed: %s: %s", type(exc).__name__, exc)
            log.debug("worker traceback", exc_info=True)
            raise SystemExit(1) from None
        conn.send(("done", None))
        if hung_decodes():
            # A decode given up on still runs in a thread here, holding memory; a fresh worker starts clean.
            log.info("fingerprint worker exits after %d decodes that hung", hung_decodes())
            return


def _run_job(job: Job, model, detector, sender: _ResultSender) -> None:
    photos, root = list(job.photos), Path(job.library_root)
    if job.kind == DETECT:
        detect_photos(photos, root, detector, sender, batch_size=job.batch_size, progress=False)
    else:
        with thumb_writer(job.thumbs_out) as thumbs:
            fingerprint_photos(photos, root, model, sender, batch_size=job.batch_size, progress=False,
                               detector=detector, thumbs=thumbs)


class _LoadedModels:
    """The worker's models, each loaded when a job first needs it and kept for the jobs after (by its key)."""

    def __init__(self):
        self.model, self.model_key = None, None
        self.detector, self.detector_key = None, None

    def for_job(self, job: Job) -> tuple:
        if job.needs_model and (self.model is None or self.model_key != job.model_key):
            self.model, self.model_key = None, None  # let the old one go before the new one takes memory
            self.model, self.model_key = _make_model(job), job.model_key
        detector_key = (job.detector_factory, job.runtime)
        if job.needs_detector and (self.detector is None or self.detector_key != detector_key):
            self.detector, self.detector_key = None, None
            self.detector = _call_factory(job.detector_factory, runtime=job.runtime)
            self.detector_key = detector_key
        return (self.model if job.needs_model else None), (self.detector if job.needs_detector else None)


def _make_model(job: Job):
    return _call_factory(job.factory, job.model, job.weights, job.runtime)


def _call_factory(dotted: str, *args, **kwargs):
    module_name, _, function_name = dotted.partition(":")
    return getattr(importlib.import_module(module_name), function_name)(*args, **kwargs)


class _ResultSender(FingerprintSink):
    """The worker's FingerprintSink: each result goes straight back to the daemon, which records it."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def put(self, photo: PhotoFile, vector: np.ndarray, predictions: Predictions,
            detections: Detections | None = None, producer: str | None = None) -> None:
        self.conn.send(("photo", photo.rel, np.asarray(vector, np.float32), tuple(predictions), None,
                        plain_detections(detections), producer))

    def put_detections(self, photo: PhotoFile, detections: Detections) -> None:
        self.conn.send(("detections", photo.rel, plain_detections(detections)))

    def put_failure(self, photo: PhotoFile, reason: str) -> None:
        self.conn.send(("photo", photo.rel, None, (), reason, None, None))


PlainDetections = tuple[tuple[str, float, tuple[float, float, float, float]], ...]


def plain_detections(detections: Detections | None) -> PlainDetections | None:
    """Detections as builtins for the pipe: (label, score, (x1, y1, x2, y2)) each."""
    if detections is None:
        return None
    return tuple((str(d.label), float(d.score), tuple(float(v) for v in d.box)) for d in detections)


def rebuild_detections(plain: PlainDetections | None) -> Detections | None:
    if plain is None:
        return None
    return tuple(Detection(label, score, tuple(box)) for label, score, box in plain)


# --- the daemon's side ----------------------------------------------------------------------------------------

@dataclass
class JobOutcome:
    """How a job ended. `answered` lists the photos the worker sent a result for."""

    answered: set[str] = field(default_factory=set)
    finished: bool = False
    stopped: bool = False  # abandoned because should_stop() said so
    model_loaded: bool = False
    crash: str | None = None  # why the worker died ("signal 11 (SIGSEGV)", "exit status 1", "no answer for 600 s")


class FingerprintWorker:
    """The daemon's handle on the worker process: started on demand, stopped when idle or on request."""

    def __init__(self, idle_seconds: float = 120.0, batch_timeout: float = 600.0):
        self.idle_seconds = idle_seconds
        self.batch_timeout = batch_timeout
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._model_key: tuple | None = None
        self._last_used = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def run(self, job: Job, on_result: Callable[[str, np.ndarray | None, Predictions, str | None,
                                                 Detections | None, str | None], None],
            should_stop: Callable[[], bool] = lambda: False, heartbeat: Callable[[], None] = lambda: None,
            ) -> JobOutcome:
        """Send one job and pass each result to `on_result(rel, vector, predictions, error, detections, producer)`
        as it arrives (a DETECT job's: vector None, no predictions, producer None). Never raises for a worker
        crash."""
        if self._model_key != job.model_key:
            self.stop()  # one model at a time: a fresh process gives the old model's memory back
        self._start()
        outcome = JobOutcome()
        try:
            self._conn.send(job)
        except OSError:
            outcome.crash = self._reap()
            return outcome
        self._model_key = job.model_key
        try:
            self._follow(outcome, on_result, should_stop, heartbeat)
        except WorkerLoadError:
            raise  # the worker lives on, without a model
        except BaseException:  # a stop signal (interrupts.Interrupted) or a bug: never leave the worker running
            self.stop(abandon=True)
            raise
        self._last_used = time.monotonic()
        return outcome

    def _follow(self, outcome: JobOutcome, on_result, should_stop, heartbeat) -> None:
        """Pass on the worker's answers until the job is done, the worker dies or hangs, or should_stop()."""
        last_heard = time.monotonic()
        while not outcome.finished:
            heartbeat()
            if should_stop():
                outcome.stopped = True
                self._drain(outcome, on_result)  # keep the results already sent
                self.stop(abandon=True)
                break
            message = self._receive(POLL_SECONDS)
            if message is None:
                if not self.alive:
                    self._drain(outcome, on_result)  # it may have answered before dying
                    outcome.crash = self._reap()
                    if should_stop():  # under systemd the worker may get the same SIGTERM as the daemon
                        outcome.stopped, outcome.crash = True, None
                    break
                if time.monotonic() - last_heard > self.batch_timeout:
                    self.stop(abandon=True)
                    outcome.crash = f"no answer for {self.batch_timeout:.0f} s (hung), killed"
                    break
                continue
            last_heard = time.monotonic()
            self._handle(message, outcome, on_result)

    def _drain(self, outcome: JobOutcome, on_result) -> None:
        """Handle the answers waiting in the pipe."""
        while not outcome.finished and (message := self._receive(0)) is not None:
            self._handle(message, outcome, on_result)

    def _handle(self, message: tuple, outcome: JobOutcome, on_result) -> None:
        kind = message[0]
        if kind == "photo":
            _, rel, vector, predictions, error, detections, producer = message
            outcome.answered.add(rel)
            on_result(rel, vector, predictions, error, rebuild_detections(detections), producer)
        elif kind == "detections":
            _, rel, detections = message
            outcome.answered.add(rel)
            on_result(rel, None, (), None, rebuild_detections(detections), None)
        elif kind == "ready":
            outcome.model_loaded = True
        elif kind == "done":
            outcome.finished = True
        elif kind == "load_error":
            self._model_key = None
            raise WorkerLoadError(message[1], missing_weights=message[2])

    def _receive(self, timeout: float) -> tuple | None:
        try:
            if self._conn is not None and self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            if timeout:
                time.sleep(min(timeout, 0.05))  # the pipe closed: the process is exiting; let is_alive catch up
        return None

    def stop_if_idle(self) -> bool:
        """Stop the worker when it has been unused for idle_seconds. True if it was stopped now."""
        if self.alive and time.monotonic() - self._last_used >= self.idle_seconds:
            log.info("fingerprint worker idle for %.0f s; stopping it to free its memory", self.idle_seconds)
            self.stop()
            return True
        return False

    def stop(self, abandon: bool = False) -> None:
        """Stop the worker: ask it to exit, or (abandon=True) terminate it mid-job."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._model_key = None, None, None
        if process is None:
            return
        if not abandon and process.is_alive():
            try:
                conn.send(None)
            except OSError:
                pass
            process.join(5)
        if process.is_alive():
            process.terminate()
            process.join(3)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()
        process.close()

    def _start(self) -> None:
        if self.alive:
            return
        if self._process is not None:
            self.stop()
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=worker_main, args=(child_end, logging.getLogger().getEffectiveLevel()),
                                        name="photocluster-worker", daemon=True)
        process.start()
        child_end.close()
        self._process, self._conn = process, parent_end
        log.debug("fingerprint worker started (pid %d)", process.pid)

    def _reap(self) -> str:
        """Collect a dead worker; return why it died, for the log and for quarantine reasons."""
        process = self._process
        if process is None:
            return "not running"
        process.join(5)
        reason = describe_exit(process.exitcode)
        self.stop(abandon=True)
        return reason


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"
