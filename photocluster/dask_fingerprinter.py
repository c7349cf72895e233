"""The fingerprint step on a Dask cluster (`--dask tcp://scheduler:8786`, or `dask = "..."` in a library's config),
for a library that outgrows one machine.

The client (this process) scans, plans and owns <out>: it is the only writer of the cache, with the usual
checkpoints (its sink), and of the thumbnails, which the workers send back as JPEG bytes, so a worker needs no
access to <out> at all. Tasks are batches of TASK_PHOTOS photo paths; a worker decodes them, runs the models it
loaded once per worker process (_LOADED), and returns each photo's fingerprint, labels, detections and thumbnail.

The workers read the library at the same path as the client, or at the path that `dask_path_map`
("/client/prefix=/worker/prefix") maps it to; only the library's root is mapped, photos travel as paths relative
to it. A worker that cannot see the root fails its task, and the run stops with one line: a wrong map must never
mark every photo as undecodable.

Crashes: when a worker dies, Dask runs its batch again elsewhere; when a batch has killed the scheduler's
`allowed-failures` + 1 workers, Dask hands it back as KilledWorker. The client then splits it in halves, as the
daemon does (worker_fingerprinter.py), until the photo at fault is alone, and a photo that kills workers on its
own is quarantined in the cache ("quarantined: ..."). With the scheduler's allowed-failures set to 1 that is a
photo that killed two workers, the daemon's rule. The client keeps no more batches in flight than the cluster has
worker threads, so no batch waits queued on a worker that another batch kills (which Dask would count against it).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import models
from .fingerprint import FingerprintReport, FingerprintSink, ResultRecorder, detect_photos, fingerprint_photos
from .fingerprint import progress_bar
from .inprocess import load_detector, wants_detections
from .library import PhotoFile, printable_path
from .settings import LibrarySettings, SettingsError, parse_path_map
from .thumbs import THUMB_BOX, encode, thumb_name, thumb_writer
from .weights import WeightsUnavailable
from .wording import plural

log = logging.getLogger(__name__)

TASK_PHOTOS = 32  # photos per task: a few seconds of work, so the round trip per task is a small share
CONNECT_SECONDS = 10.0
FINGERPRINT, DETECT = "fingerprint", "detect"
Result = tuple  # (rel, fingerprint or None, labels, why it failed or None, detections or None)


@dataclass(frozen=True)
class Batch:
    """One task: photos of the library at `root` (as the worker sees it), for the models the factories make."""

    root: str
    photos: tuple[PhotoFile, ...]
    kind: str
    model: str
    weights: str | None
    runtime: str
    batch_size: int
    detect: bool
    thumbs: bool
    factory: Callable
    detector_factory: Callable


@dataclass
class BatchResult:
    results: list[Result] = field(default_factory=list)
    thumbs: dict[str, bytes] = field(default_factory=dict)  # rel -> the thumbnail's JPEG bytes
    model_id: str | None = None
    runtime: str | None = None
    deferred: int = 0  # photos not decoded after a hung decode in the worker: left for the next run


# --- the worker's side ----------------------------------------------------------------------------------------

_LOADED: dict[tuple, object] = {}  # the models of this worker process, by role and key: loaded once, then kept
_LOCK = threading.Lock()  # one batch at a time per process: an OpenVINO infer request is not thread-safe


def run_batch(batch: Batch) -> BatchResult:
    """The task a Dask worker runs."""
    root = Path(batch.root)
    if not root.is_dir():
        raise SettingsError(f"the library {batch.root} is not a folder on Dask worker {os.uname().nodename}; "
                            "mount it at the same path, or set dask_path_map")
    with _LOCK:
        collected = _Collector()
        if batch.kind == DETECT:
            detect_photos(list(batch.photos), root, _detector(batch), collected, batch_size=batch.batch_size,
                          progress=False)
            return collected.result
        model = _loaded(("model", batch.factory, batch.model, batch.weights, batch.runtime),
                        lambda: batch.factory(batch.model, batch.weights, batch.runtime))
        thumbs = _ThumbBytes(collected.result.thumbs) if batch.thumbs else None
        report = fingerprint_photos(list(batch.photos), root, model, collected, batch_size=batch.batch_size,
                                    progress=False, detector=_detector(batch) if batch.detect else None,
                                    thumbs=thumbs)
        collected.result.model_id, collected.result.runtime = model.model_id, report.runtime
        collected.result.deferred = report.deferred
        return collected.result


def _detector(batch: Batch):
    return _loaded(("detector", batch.detector_factory, batch.runtime),
                   lambda: batch.detector_factory(runtime=batch.runtime))


def _loaded(key: tuple, make: Callable[[], object]):
    if key not in _LOADED:
        for old in [k for k in _LOADED if k[0] == key[0]]:
            del _LOADED[old]  # one model per role: let the old one go before the new one takes memory
        _LOADED[key] = make()
    return _LOADED[key]


class _Collector(FingerprintSink):
    def __init__(self):
        self.result = BatchResult()

    def put(self, photo: PhotoFile, vector, predictions, detections=None, producer=None) -> None:
        # the producer is the model's runtime, the same for the whole batch: it travels once, in BatchResult
        self.result.results.append((photo.rel, np.asarray(vector, np.float32), tuple(predictions), None, detections))

    def put_detections(self, photo: PhotoFile, detections) -> None:
        self.result.results.append((photo.rel, None, (), None, detections))

    def put_failure(self, photo: PhotoFile, reason: str) -> None:
        self.result.results.append((photo.rel, None, (), reason, None))


class _ThumbBytes:
    """A fingerprint.ThumbMaker that keeps each thumbnail's bytes for the client, which writes them into <out>."""

    box = THUMB_BOX

    def __init__(self, into: dict[str, bytes]):
        self.into = into

    def finish(self, photo: PhotoFile, pixels: list) -> list:
        try:
            self.into[photo.rel] = encode(pixels[-1])
        except Exception as exc:  # noqa: BLE001 - a thumbnail is never worth a photo's fingerprint
            log.warning("no thumbnail for %s: %s", printable_path(photo.rel), exc)
        return pixels[:-1]


# --- the client's side ----------------------------------------------------------------------------------------

def worker_root(library: str | os.PathLike, path_map: str | None) -> str:
    """The library's root as the workers see it, through `path_map` ("/client/prefix=/worker/prefix")."""
    root = os.path.abspath(library)
    if not path_map:
        return root
    client, worker = parse_path_map(path_map)
    try:
        below = PurePosixPath(root).relative_to(client)
    except ValueError:
        raise SettingsError(f"dask_path_map maps {client}, but the library {root} is not inside it") from None
    return str(PurePosixPath(worker) / below)


def dask_steps(settings: LibrarySettings) -> dict:
    """The pipeline's fingerprint and detect steps on the Dask cluster that `settings.dask` names; {} without."""
    if not settings.dask:
        return {}
    fingerprinter = DaskFingerprinter(settings.dask, settings.dask_path_map)
    return {"fingerprint": fingerprinter, "detect": fingerprinter.detect_earlier}


class DaskFingerprinter:
    """The pipeline's fingerprint step (a fingerprint.Fingerprinter) on the Dask scheduler at `address`; with
    `detect_earlier`, its detect step for photos fingerprinted before the detector. `factory` and
    `detector_factory` make the models in the workers (tests give stand-ins; they travel by reference)."""

    def __init__(self, address: str, path_map: str | None = None, factory: Callable | None = None,
                 detector_factory: Callable | None = None, task_photos: int = TASK_PHOTOS,
                 connect_seconds: float | None = None):
        self.address, self.path_map = address, path_map
        self.factory = factory or models.load_fingerprinter
        self.detector_factory = detector_factory or load_detector
        self.task_photos, self.connect_seconds = task_photos, connect_seconds or CONNECT_SECONDS
        self.not_detectable: set[tuple[str, int, int]] = set()  # quarantined from detect-only tasks

    def __call__(self, settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile], progress,
                 should_stop: Callable[[], bool]) -> FingerprintReport:
        log.info("fingerprinting %s with %s on the Dask cluster at %s", plural(len(todo), "new or changed photo"),
                 settings.model, self.address)
        report, started = FingerprintReport(), time.monotonic()
        record = ResultRecorder(sink, report)
        expected = models.model_spec(settings.model, settings.weights).model_id
        by_rel = {p.rel: p for p in todo}
        with thumb_writer(settings.out_dir if settings.gallery else None) as writer, \
                progress_bar(len(todo), "fingerprinting", progress=progress) as bar:
            def on_batch(result: BatchResult) -> None:
                nonlocal writer
                if result.model_id != expected:
                    raise SettingsError(f"the Dask workers compute {result.model_id} fingerprints, this library's "
                                        f"cache holds {expected}: give every machine the same weights")
                report.runtime, report.deferred = result.runtime, report.deferred + result.deferred
                for rel, vector, predictions, error, detections in result.results:
                    if error is None:
                        record.fingerprint(by_rel[rel], vector, predictions, detections, result.runtime)
                    else:
                        record.failure(by_rel[rel], error)
                if writer is not None and not _write_thumbs(writer, result.thumbs, by_rel):
                    writer = None  # warned once; the rest of the run goes without thumbnails
                bar.update(len(result.results) + result.deferred)

            def quarantine(photo: PhotoFile, reason: str) -> None:
                record.failure(photo, f"quarantined: {reason}")
                bar.update(1)

            self._run(settings, todo, FINGERPRINT, on_batch, quarantine, should_stop)
        report.seconds = time.monotonic() - started
        return report

    def detect_earlier(self, settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile], progress,
                       should_stop: Callable[[], bool]) -> int:
        """Run only the detector, on the workers, for photos fingerprinted before it was used; their fingerprints
        are kept. A photo that kills workers is skipped until the client restarts (its fingerprint stays)."""
        todo = [p for p in todo if _key(p) not in self.not_detectable]
        by_rel, detected = {p.rel: p for p in todo}, 0
        with progress_bar(len(todo), "detecting objects", progress=progress) as bar:
            def on_batch(result: BatchResult) -> None:
                nonlocal detected
                for rel, _, _, _, detections in result.results:
                    sink.put_detections(by_rel[rel], detections)
                    detected += 1
                bar.update(len(result.results))

            def quarantine(photo: PhotoFile, reason: str) -> None:
                self.not_detectable.add(_key(photo))
                log.warning("skipping %s: no object detection until a restart: %s", printable_path(photo.rel), reason)
                bar.update(1)

            self._run(settings, todo, DETECT, on_batch, quarantine, should_stop)
        return detected

    def _run(self, settings: LibrarySettings, todo: list[PhotoFile], kind: str,
             on_batch: Callable[[BatchResult], None], quarantine: Callable[[PhotoFile, str], None],
             should_stop: Callable[[], bool]) -> None:
        """Run `todo` in tasks until done or should_stop(); split the tasks that Dask hands back as KilledWorker."""
        from distributed import TimeoutError as DaskTimeout
        from distributed import wait
        from distributed.scheduler import KilledWorker

        root = worker_root(settings.library, self.path_map)
        pending = deque(tuple(todo[i:i + self.task_photos]) for i in range(0, len(todo), self.task_photos))
        with self._connect() as client:
            running: dict = {}  # future -> its photos
            while (pending or running) and not should_stop():
                while pending and len(running) < _worker_threads(client):
                    photos = pending.popleft()
                    running[client.submit(run_batch, self._batch(settings, root, photos, kind), pure=False)] = photos
                try:
                    done = wait(list(running), timeout=0.2, return_when="FIRST_COMPLETED").done
                except DaskTimeout:
                    continue
                for future in done:
                    photos = running.pop(future)
                    if future.status == "finished":
                        on_batch(future.result())
                    elif isinstance(error := future.exception(), KilledWorker):
                        _split_or_quarantine(photos, error, pending, quarantine)
                    else:
                        raise _one_line(error)
            if running:
                client.cancel(list(running))  # stopped: the photos in flight are left for the next run

    def _batch(self, settings: LibrarySettings, root: str, photos: tuple[PhotoFile, ...], kind: str) -> Batch:
        return Batch(root, photos, kind, settings.model, settings.weights, settings.runtime, settings.batch_size,
                     wants_detections(settings), settings.gallery and kind == FINGERPRINT, self.factory,
                     self.detector_factory)

    def _connect(self):
        from distributed import Client

        try:
            return Client(self.address, timeout=self.connect_seconds)
        except (OSError, ValueError, TypeError) as exc:  # unreachable, refused, a malformed address
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise SettingsError(f"cannot reach the Dask scheduler at {self.address}: {detail}") from None


def _worker_threads(client) -> int:
    """The threads of the cluster's workers (at least 1: a task then waits in the scheduler for a worker)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(1, sum(w.get("nthreads", 1) for w in workers.values()))


def _split_or_quarantine(photos: tuple[PhotoFile, ...], error, pending: deque,
                         quarantine: Callable[[PhotoFile, str], None]) -> None:
    """A batch that killed too many workers: its halves are tried again first; a photo alone is quarantined."""
    killed = getattr(error, "allowed_failures", 0) + 1
    if len(photos) > 1:
        log.error("a batch of %s killed %s; trying its halves", plural(len(photos), "photo"),
                  plural(killed, "Dask worker"))
        half = len(photos) // 2
        pending.extendleft([photos[half:], photos[:half]])
        return
    quarantine(photos[0], f"killed {plural(killed, 'Dask worker')} on its own")


def _one_line(error: BaseException) -> BaseException:
    """A worker's error as the CLI shows it: a settings or weights problem as it is (exit 2), else a bug."""
    if isinstance(error, (SettingsError, WeightsUnavailable)):
        return error
    return RuntimeError(f"a Dask worker failed: {type(error).__name__}: {error}")


def _write_thumbs(writer, thumbs: dict[str, bytes], by_rel: dict[str, PhotoFile]) -> bool:
    """Write the thumbnails the workers made into <out>; False, after one warning, when one could not be."""
    for rel, data in thumbs.items():
        photo = by_rel[rel]
        try:
            writer.write(thumb_name(photo.rel, photo.size, photo.mtime_ns), data)
        except OSError as exc:  # a thumbnail is never worth a photo's fingerprint
            log.warning("gallery: could not write thumbnails in %s: %s", writer.shown, exc.strerror or exc)
            return False
    return True


def _key(photo: PhotoFile) -> tuple[str, int, int]:
    return (photo.rel, photo.size, photo.mtime_ns)
