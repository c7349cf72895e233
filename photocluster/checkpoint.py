"""The pipeline's one cache writer: the FingerprintSink behind both fingerprinters, which saves as it goes.

The CLI and the daemon write their results through it alike, so a process killed while fingerprinting (SIGKILL,
the OOM killer, a power cut) loses at most about CHECKPOINT_SECONDS of work, whichever fingerprinter ran.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from . import interrupts
from .cache import FingerprintCache
from .fingerprint import FingerprintSink
from .labels import Detections, Predictions
from .library import PhotoFile

CHECKPOINT_SECONDS = 60.0  # the most fingerprinting time a SIGKILL, an OOM kill or a power cut can lose
CHECKPOINT_ENV = "PHOTOCLUSTER_CHECKPOINT_SECONDS"  # for tests only: a shorter interval


class CheckpointingCache(FingerprintSink):
    """What the fingerprint steps write their results through, in the CLI and in the daemon alike.

    It passes each result on to the cache and saves the cache once `interval` seconds have passed since the
    last save. It offers only the FingerprintSink methods: a fingerprinter never reads the cache.
    """

    def __init__(self, cache: FingerprintCache, save: Callable[[], None], interval: float | None = None):
        self.cache = cache
        self._save = save
        self.interval = checkpoint_seconds() if interval is None else interval
        self.unsaved = 0  # results since the last save
        self._last_save = time.monotonic()

    def put(self, photo: PhotoFile, vector: np.ndarray, predictions: Predictions,
            detections: Detections | None = None, producer: str | None = None) -> None:
        self.cache.put(photo, vector, predictions, detections, producer)
        self._added()

    def put_detections(self, photo: PhotoFile, detections: Detections) -> None:
        self.cache.put_detections(photo, detections)
        self._added()

    def put_failure(self, photo: PhotoFile, reason: str) -> None:
        self.cache.put_failure(photo, reason)
        self._added()

    def _added(self) -> None:
        self.unsaved += 1
        if time.monotonic() - self._last_save >= self.interval:
            self.save()

    def save(self) -> None:
        self._save()
        self.unsaved, self._last_save = 0, time.monotonic()


@contextlib.contextmanager
def checkpointing(cache: FingerprintCache, save: Callable[[], None],
                  final_save: bool = True) -> Iterator[CheckpointingCache]:
    """A CheckpointingCache whose results are all saved on the way out, also when a bug ends the block; without
    `final_save`, a block that ends normally leaves its last results to the caller to save.

    While it holds unsaved results, a stop signal waits for them: the fingerprint step polls should_stop,
    returns, and the results are saved here (see interrupts).
    """
    writer = CheckpointingCache(cache, save)
    with interrupts.keeping_work(lambda: writer.unsaved > 0):
        try:
            yield writer
        except Exception:
            if writer.unsaved:
                writer.save()
            raise
        if writer.unsaved and final_save:
            writer.save()


def checkpoint_seconds() -> float:
    """CHECKPOINT_SECONDS, or the test suite's shorter interval from the environment."""
    value = os.environ.get(CHECKPOINT_ENV)
    return float(value) if value else CHECKPOINT_SECONDS
