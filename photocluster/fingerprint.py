"""Fingerprint: decode photos and run the model on them in batches, decoding ahead while the model runs.

The pipeline's fingerprint step is a `Fingerprinter`: photos in, each photo's (fingerprint, predictions) or its
failure out, into a `FingerprintSink`. It has two implementations, pipeline.fingerprint_in_process (the model in
this process) and worker_fingerprinter.WorkerFingerprinter (the model in a child process); both hand each result to a
`ResultRecorder`, the one place that logs, stores and counts a result.

Pillow releases the GIL while it decodes and TensorFlow while it computes, so a small thread pool that decodes
the next batches keeps both busy without the cost of worker processes (no pickling of pixel arrays).
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from tqdm import tqdm

from . import images
from .labels import Detections, Predictions, top_labels
from .library import PhotoFile, UnsafePhoto, open_photo, printable_path
from .settings import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from .settings import LibrarySettings

log = logging.getLogger(__name__)

# The most one photo may take to decode once its checks have passed. The checks in images.py refuse what would
# take long (too many pixels, too many scans): a photo at the limits decodes in a few seconds on a slow CPU.
PHOTO_DECODE_SECONDS = 60.0
# The most RSS that fingerprinting adds to a process beyond its model: what decodes may hold together, plus the
# batches of pixels in flight and the threads' stacks (tests/test_fingerprint.py measures it with huge PNGs).
PEAK_DECODE_RSS = images.DECODE_MEMORY_BUDGET + 64 * 2**20
MAX_HUNG_DECODES = 2  # per process; the photos after that are left for the next run
_hung_decodes = [0]  # decodes given up on in this process (their threads may still be running)


def hung_decodes() -> int:
    return _hung_decodes[0]


@dataclass
class FingerprintReport:
    computed: int = 0
    failed: list[str] = field(default_factory=list)
    deferred: int = 0  # not decoded in this run through no fault of theirs (a hung decode before them)
    seconds: float = 0.0
    runtime: str | None = None  # what ran the model, as Fingerprinter.runtime says ("openvino-bf16", ...)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


class FingerprintSink(Protocol):
    """Where the fingerprint step puts its results: the pipeline's cache writer (pipeline.CheckpointingCache), or,
    inside the worker process, the pipe back to the daemon."""

    def put(self, photo: PhotoFile, vector: np.ndarray, predictions: Predictions,
            detections: Detections | None = None, producer: str | None = None) -> None: ...

    def put_failure(self, photo: PhotoFile, reason: str) -> None: ...


class Fingerprinter(Protocol):
    """The pipeline's fingerprint step: fingerprint `todo` into `sink` until done or `should_stop()`."""

    def __call__(self, settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile],
                 progress: bool | None, should_stop: Callable[[], bool]) -> FingerprintReport: ...


class ResultRecorder:
    """The handling of one photo's result, the same for every fingerprinter: a fingerprint is put into the sink
    with what computed it (its `producer`, the model's runtime), a failure is logged once naming the file and
    remembered in the sink, and both are counted in `report`."""

    def __init__(self, sink: FingerprintSink, report: FingerprintReport,
                 on_count: Callable[[int], None] = lambda answered: None):
        self.sink, self.report, self.on_count = sink, report, on_count

    def fingerprint(self, photo: PhotoFile, vector: np.ndarray, predictions: Predictions,
                    detections: Detections | None = None, producer: str | None = None) -> None:
        self.sink.put(photo, vector, predictions, detections, producer)
        self.report.computed += 1
        self.on_count(self.report.computed + len(self.report.failed))

    def failure(self, photo: PhotoFile, reason: str) -> None:
        log.warning("skipping %s: %s", printable_path(photo.rel), reason)
        self.sink.put_failure(photo, reason)
        self.report.failed.append(photo.rel)
        self.on_count(self.report.computed + len(self.report.failed))


def decode_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def progress_bar(total: int, desc: str, unit: str = "photo", progress: bool | None = None) -> tqdm:
    """A tqdm bar on stderr: shown when `progress` says so, by default when stderr is a terminal; never for 0."""
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, unit=unit, desc=desc, disable=not show or not total)


def fingerprint_photos(
    photos: list[PhotoFile],
    library_root: Path,
    model,
    sink: FingerprintSink,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    detector=None,
    thumbs: ThumbMaker | None = None,
) -> FingerprintReport:
    """Fingerprint `photos` into `sink`. A photo that fails to decode is logged once and remembered as failed.
    With a `detector` (detector.Detector), each photo's decode also feeds it, at its own input size, batched.
    With `thumbs`, each decode also makes the photo's thumbnail (in the decode thread).

    `sink` is the pipeline's CheckpointingCache (which saves the results as they come, about once a minute) or,
    in the worker, the pipe to the daemon. `should_stop` ends the run between batches (on SIGINT or SIGTERM); the
    batch in progress is finished.
    """
    report = FingerprintReport(runtime=getattr(model, "runtime", None))
    record = ResultRecorder(sink, report)
    started = time.monotonic()
    with progress_bar(len(photos), "fingerprinting", progress=progress) as bar:
        sizes = [model.input_size] + ([detector.input_size] if detector is not None else [])
        sizes += [thumbs.box] if thumbs is not None else []
        finish = thumbs.finish if thumbs is not None else None
        for batch in _decoded_batches(photos, library_root, sizes, batch_size, should_stop, finish):
            if should_stop():
                break
            decoded = [(photo, pixels) for photo, pixels in batch if isinstance(pixels, list)]
            report.deferred += sum(pixels is None for _, pixels in batch)
            for photo, reason in ((p, r) for p, r in batch if isinstance(r, str)):
                record.failure(photo, reason)
            if decoded:
                features, probs = model.predict(np.stack([pixels[0] for _, pixels in decoded]))
                found = (detector.detect(np.stack([pixels[1] for _, pixels in decoded])) if detector is not None
                         else [None] * len(decoded))
                for (photo, _), vector, row, detections in zip(decoded, features, probs, found):
                    record.fingerprint(photo, vector, top_labels(row), detections, report.runtime)
            bar.update(len(batch))
    if report.deferred:
        log.warning("%d photos were not fingerprinted after a photo hung the decoder; the next run does them",
                    report.deferred)
    report.seconds = time.monotonic() - started
    return report


def detect_photos(photos: list[PhotoFile], library_root: Path, detector, sink, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, progress: bool | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> int:
    """Run only the detector on photos fingerprinted before it was there (`sink.put_detections`): their
    fingerprints are kept, never computed again. A photo that fails to decode now is left as it is."""
    done = 0
    with progress_bar(len(photos), "detecting objects", progress=progress) as bar:
        for batch in _decoded_batches(photos, library_root, [detector.input_size], batch_size, should_stop):
            decoded = [(photo, pixels[0]) for photo, pixels in batch if isinstance(pixels, list)]
            if decoded:
                for (photo, _), detections in zip(decoded, detector.detect(np.stack([p for _, p in decoded]))):
                    sink.put_detections(photo, detections)
                done += len(decoded)
            bar.update(len(batch))
    return done


def thumbnail_photos(photos: list[PhotoFile], library_root: Path, thumbs: ThumbMaker, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, progress: bool | None = None,
                     should_stop: Callable[[], bool] = lambda: False) -> int:
    """Make only the thumbnails of photos fingerprinted before the gallery was there: one decode each, their
    fingerprints kept. A photo that fails to decode now is left without one."""
    done = 0
    with progress_bar(len(photos), "making thumbnails", progress=progress) as bar:
        for batch in _decoded_batches(photos, library_root, [thumbs.box], batch_size, should_stop, thumbs.finish):
            done += sum(isinstance(pixels, list) for _, pixels in batch)
            bar.update(len(batch))
    return done


class ThumbMaker(Protocol):
    """What makes thumbnails from the fingerprint step's decodes (thumbs.ThumbWriter): `box` is the images.Fit
    asked for beside the model's sizes; `finish(photo, pixels)`, called in the decode thread, makes the thumbnail
    from the last entry (a Fitted) and returns the others."""

    box: tuple[int, int]

    def finish(self, photo: PhotoFile, pixels: list) -> list: ...


Decoded = tuple[PhotoFile, "list[np.ndarray] | str | None"]  # pixels at each size, why not, or None: not now


class _DecodeTask:
    """One photo's decode, run by a _DecodeThreads thread."""

    def __init__(self, photo: PhotoFile, library_root: Path, sizes: list[tuple[int, int]],
                 finish: Callable[[PhotoFile, list], list] | None = None):
        self.photo, self.library_root, self.sizes, self.finish = photo, library_root, sizes, finish
        self.result: list[np.ndarray] | str | None = None
        self.started: float | None = None  # when decoding proper began (checks passed, memory reserved)
        self.thread_id: int | None = None
        self.finished = threading.Event()
        self.given_up = False
        self.lock = threading.Lock()

    def run(self) -> None:
        self.thread_id = threading.get_ident()
        try:
            result = _decode(self.photo, self.library_root, self.sizes, self._decoding)
            if self.finish is not None and isinstance(result, list):
                result = self.finish(self.photo, result)
        except Exception as exc:  # noqa: BLE001 - whatever goes wrong with one photo is that photo's failure
            result = f"could not be decoded ({type(exc).__name__}: {exc})"
        with self.lock:
            self.result = result
            self.finished.set()

    def _decoding(self) -> None:
        self.started = time.monotonic()

    def seconds_decoding(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0


class _DecodeThreads:
    """A few daemon threads that decode photos, and replace one that is stuck in a decode given up on.

    Not a ThreadPoolExecutor: Python waits for its threads at exit, so one decode that never ends (a decoder
    looping on a malformed file; a thread cannot be stopped inside C code) would hold the process forever,
    and it would keep its slot in the pool too.
    """

    def __init__(self, width: int):
        self._queue: queue.SimpleQueue[_DecodeTask | None] = queue.SimpleQueue()
        self._threads = 0
        self._closed = False
        for _ in range(width):
            self._start_thread()

    def submit(self, task: _DecodeTask) -> _DecodeTask:
        self._queue.put(task)
        return task

    def give_up(self, task: _DecodeTask) -> bool:
        """Stop waiting for `task` (still running) and start a thread in its place. False if it has just finished."""
        with task.lock:
            if task.finished.is_set():
                return False
            task.given_up = True
        images.DECODE_BUDGET.give_up(task.thread_id)
        self._start_thread()
        return True

    def close(self) -> None:
        """Let the threads end; photos still queued are not decoded."""
        self._closed = True
        for _ in range(self._threads):
            self._queue.put(None)

    def _start_thread(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name="decode", daemon=True).start()

    def _work(self) -> None:
        while (task := self._queue.get()) is not None and not self._closed:
            task.run()
            if task.given_up:
                return  # a thread has taken this one's place


def _decoded_batches(
    photos: list[PhotoFile], library_root: Path, sizes: list[tuple[int, int]], batch_size: int,
    should_stop: Callable[[], bool] = lambda: False, finish: Callable[[PhotoFile, list], list] | None = None,
) -> Iterator[list[Decoded]]:
    """Yield batches of decoded photos, keeping a few batches of decoding in flight ahead of the consumer.

    A decode that runs over PHOTO_DECODE_SECONDS is given up on: the photo fails ("gave up after ...") and the run
    goes on. After MAX_HUNG_DECODES of them in this process, no decode starts and none is waited for: the photos
    left are None (not done, for the next run). Each hung decode keeps a thread busy and holds its memory until
    it ends, which may be never.
    """
    threads = _DecodeThreads(decode_threads())
    try:
        pending: deque[_DecodeTask] = deque()
        todo = iter(photos)
        in_flight = 3 * batch_size
        while True:
            if _hung_decodes[0] >= MAX_HUNG_DECODES:
                pending += [_DecodeTask(p, library_root, sizes, finish) for p in todo]  # never decoded: left for later
            else:
                pending += [threads.submit(_DecodeTask(p, library_root, sizes, finish))
                            for p in _take(todo, in_flight - len(pending))]
            if not pending:
                return
            batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            results = [_wait(task, threads, should_stop) for task in batch]
            if should_stop():
                return
            yield results
    finally:
        threads.close()


def _wait(task: _DecodeTask, threads: _DecodeThreads, should_stop: Callable[[], bool]) -> Decoded:
    while not task.finished.wait(0.1):
        if should_stop() or _hung_decodes[0] >= MAX_HUNG_DECODES:
            return task.photo, None
        if task.seconds_decoding() > PHOTO_DECODE_SECONDS and threads.give_up(task):
            _hung_decodes[0] += 1
            return task.photo, (f"gave up after {PHOTO_DECODE_SECONDS:.0f} s of decoding (a decoder looping on a "
                                "malformed file?)")
    return task.photo, task.result


def _decode(photo: PhotoFile, library_root: Path, sizes: list[tuple[int, int]],
            on_decode: Callable[[], None] = lambda: None) -> list[np.ndarray] | str | None:
    try:
        with open_photo(library_root, photo.rel) as fh:
            return images.load_image_sizes(fh, sizes, on_decode=on_decode)
    except images.DecodeDeferred:
        return None
    except (UnsafePhoto, images.ImageError) as exc:
        return str(exc)
    except OSError as exc:  # gone since the scan, unreadable
        return exc.strerror or str(exc)


decoded_batches = _decoded_batches  # public: object_embed.py decodes with it too


def _take(items: Iterator[PhotoFile], n: int) -> Iterable[PhotoFile]:
    for _ in range(max(0, n)):
        item = next(items, None)
        if item is None:
            return
        yield item
