"""The daemon's fingerprint step (and its detect step): photos in, results out, through the worker process
(worker.py), with crash recovery. A crash of the worker is never the end: the batch is retried with backoff, split
in halves until the photo at fault is alone, and a photo that crashes the worker twice is quarantined in the cache
with a reason, so it is not tried again until the file changes.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from .fingerprint import FingerprintReport, FingerprintSink, ResultRecorder
from .inprocess import wants_detections
from .library import PhotoFile, printable_path
from .settings import LibrarySettings
from .wording import plural
from .worker import (DEFAULT_DETECTOR_FACTORY, DEFAULT_FACTORY, DETECT, FINGERPRINT, POLL_SECONDS, FingerprintWorker,
                     Job)

log = logging.getLogger("photocluster.worker")  # the worker's lines, under the name they always had

QUARANTINE_AFTER = 2  # crashes of the worker with a photo alone in its batch
MAX_START_FAILURES = 3  # worker deaths before its model was loaded, in a row, before an update gives up
MAX_CRASHES_PER_UPDATE = 50  # a model that crashes on everything must not restart forever; later runs go on


class WorkerFingerprinter:
    """The pipeline's fingerprint step (a fingerprint.Fingerprinter), run in the worker process, with crash recovery.
    With `detect_earlier` it is also the daemon's detect step for photos fingerprinted before the detector.

    A job that crashes the worker is retried after a pause. Its photos that got no answer are split in halves
    until the one at fault runs alone; a photo that crashes the worker twice on its own is quarantined: in the
    cache when fingerprinting, in memory (until the daemon restarts) when only detecting, so that its fingerprint
    is kept. Every crash either shrinks the suspects or counts against one photo, so this always ends.
    """

    def __init__(self, worker: FingerprintWorker, factory: str = DEFAULT_FACTORY, retry_seconds: float = 2.0,
                 retry_max_seconds: float = 300.0, heartbeat: Callable[[], None] = lambda: None,
                 detector_factory: str = DEFAULT_DETECTOR_FACTORY):
        self.worker = worker
        self.factory = factory
        self.detector_factory = detector_factory
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self.heartbeat = heartbeat
        self.crashes: dict[tuple[str, int, int], int] = {}  # (rel, size, mtime_ns) -> crashes while alone
        self.not_detectable: set[tuple[str, int, int]] = set()  # quarantined from detect-only jobs
        # (photos answered, photos in the call, "fingerprinting" or "detecting objects"): the daemon's STATUS= line
        self.on_progress: Callable[[int, int, str], None] = lambda done, total, doing: None
        self.gave_up = False  # the last call stopped early after too many crashes; photos are left to do

    def __call__(self, settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile], progress,
                 should_stop: Callable[[], bool]) -> FingerprintReport:
        log.info("%s: fingerprinting %s with %s", settings.library, plural(len(todo), "new or changed photo"),
                 settings.model)
        report = FingerprintReport()
        record = ResultRecorder(sink, report,
                                on_count=lambda answered: self.on_progress(answered, len(todo), "fingerprinting"))
        started = time.monotonic()
        by_rel = {p.rel: p for p in todo}

        def on_result(rel: str, vector, predictions, error, detections, producer) -> None:
            if error is None:
                report.runtime = producer
                record.fingerprint(by_rel[rel], vector, predictions, detections, producer)
            else:
                record.failure(by_rel[rel], error)

        def quarantine(photo: PhotoFile, crashes: int, reason: str) -> None:
            record.failure(photo, f"quarantined: crashed the fingerprint worker {crashes} times ({reason})")

        self._run_jobs(settings, todo, FINGERPRINT, on_result, quarantine, should_stop)
        report.seconds = time.monotonic() - started
        return report

    def detect_earlier(self, settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile], progress,
                       should_stop: Callable[[], bool]) -> int:
        """Run only the detector, in the worker, on photos fingerprinted before it was used (`sink.put_detections`;
        their fingerprints are kept, never computed again). Returns how many photos got their detections."""
        todo = [p for p in todo if _key(p) not in self.not_detectable]
        by_rel = {p.rel: p for p in todo}
        detected = answered = 0

        def on_result(rel: str, vector, predictions, error, detections, producer) -> None:
            nonlocal detected, answered
            if detections is not None:
                sink.put_detections(by_rel[rel], detections)
                detected += 1
            answered += 1
            self.on_progress(answered, len(todo), "detecting objects")

        def quarantine(photo: PhotoFile, crashes: int, reason: str) -> None:
            # Not a failure in the cache: that would drop the photo's fingerprint, which it got without a crash.
            nonlocal answered
            self.not_detectable.add(_key(photo))
            answered += 1
            self.on_progress(answered, len(todo), "detecting objects")
            log.warning("skipping %s: no object detection until a restart: crashed the fingerprint worker %d times "
                        "(%s)", printable_path(photo.rel), crashes, reason)

        self._run_jobs(settings, todo, DETECT, on_result, quarantine, should_stop)
        return detected

    def _run_jobs(self, settings: LibrarySettings, todo: list[PhotoFile], kind: str, on_result,
                  quarantine: Callable[[PhotoFile, int, str], None], should_stop: Callable[[], bool]) -> None:
        """Run `todo` in jobs of `kind` until done, stopped, or given up after too many crashes."""
        what = "fingerprinting" if kind == FINGERPRINT else "object detection"
        self.gave_up = False
        crashes = load_failures = 0
        pending: deque[list[PhotoFile]] = deque([todo]) if todo else deque()
        while pending and not should_stop():
            group = pending.popleft()
            job = Job(library_root=str(settings.library), photos=tuple(group), model=settings.model,
                      weights=settings.weights, batch_size=settings.batch_size, factory=self.factory,
                      detect=wants_detections(settings), kind=kind, detector_factory=self.detector_factory,
                      runtime=settings.runtime,
                      thumbs_out=str(settings.out_dir) if settings.gallery and kind == FINGERPRINT else None)
            outcome = self.worker.run(job, on_result, should_stop, self.heartbeat)
            if outcome.finished or outcome.stopped:
                load_failures = 0
                continue
            unanswered = [p for p in group if p.rel not in outcome.answered]
            crashes += 1
            if not outcome.model_loaded:
                load_failures += 1
                log.error("fingerprint worker died while loading the model: %s", outcome.crash)
                pending.appendleft(unanswered)
                pause = self.retry_seconds * 2 ** (load_failures - 1)
            else:
                load_failures = 0
                pause = self._after_crash(quarantine, outcome.crash, unanswered, pending)
            if pending and (load_failures >= MAX_START_FAILURES or crashes >= MAX_CRASHES_PER_UPDATE):
                left = sum(len(g) for g in pending)
                log.error("giving up %s for now after %s; %s left for a later run", what,
                          plural(crashes, "worker crash", "worker crashes"), plural(left, "photo"))
                self.gave_up = True
                break
            self._pause(min(pause, self.retry_max_seconds), should_stop)

    def _after_crash(self, quarantine: Callable[[PhotoFile, int, str], None], reason: str,
                     unanswered: list[PhotoFile], pending: deque) -> float:
        """Queue the retries of a crashed job; return how long to wait before the next one."""
        log.error("fingerprint worker crashed (%s) with %s unanswered; retrying %s", reason,
                  plural(len(unanswered), "photo"), "it" if len(unanswered) == 1 else "them")
        if len(unanswered) > 1:
            half = len(unanswered) // 2
            pending.appendleft(unanswered[half:])
            pending.appendleft(unanswered[:half])
            return self.retry_seconds
        if not unanswered:
            return self.retry_seconds
        photo = unanswered[0]
        key = _key(photo)
        self.crashes[key] = self.crashes.get(key, 0) + 1
        if self.crashes[key] < QUARANTINE_AFTER:
            pending.appendleft(unanswered)
            return self.retry_seconds * 2 ** self.crashes[key]
        quarantine(photo, self.crashes.pop(key), reason)
        return self.retry_seconds

    def _pause(self, seconds: float, should_stop: Callable[[], bool]) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until and not should_stop():
            self.heartbeat()
            time.sleep(min(POLL_SECONDS, max(0.0, until - time.monotonic())))


def _key(photo: PhotoFile) -> tuple[str, int, int]:
    return (photo.rel, photo.size, photo.mtime_ns)
