"""Fingerprint: decode photos and run the model on them in batches, decoding ahead while the model runs.

Pillow releases the GIL while it decodes and TensorFlow while it computes, so a small thread pool that decodes
the next batches keeps both busy without the cost of worker processes (no pickling of pixel arrays).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .cache import FingerprintCache
from .images import ImageError, load_image
from .library import PhotoFile, printable_path

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16


@dataclass
class FingerprintReport:
    computed: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


def decode_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def fingerprint_photos(
    photos: list[PhotoFile],
    library_root: Path,
    model,
    cache: FingerprintCache,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> FingerprintReport:
    """Fingerprint `photos` into `cache`. A photo that fails to decode is logged once and remembered as failed.

    `cache` may be the pipeline's CheckpointingCache, which saves the results as they come about once a minute.
    `should_stop` ends the run between batches (on SIGINT or SIGTERM); the batch in progress is finished.
    """
    from .models import top_labels  # TensorFlow loads only when there is work for it

    report = FingerprintReport()
    show = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()
    with tqdm(total=len(photos), unit="photo", disable=not show or not photos, desc="fingerprinting") as bar:
        for batch in _decoded_batches(photos, library_root, model.input_size, batch_size):
            if should_stop():
                break
            decoded = [(photo, pixels) for photo, pixels in batch if not isinstance(pixels, str)]
            for photo, reason in ((p, r) for p, r in batch if isinstance(r, str)):
                log.warning("skipping %s: %s", printable_path(photo.rel), reason)
                cache.put_failure(photo, reason)
                report.failed.append(photo.rel)
            if decoded:
                features, probs = model.predict(np.stack([pixels for _, pixels in decoded]))
                for (photo, _), vector, row in zip(decoded, features, probs):
                    cache.put(photo, vector, top_labels(row))
                report.computed += len(decoded)
            bar.update(len(batch))
    report.seconds = time.monotonic() - started
    return report


Decoded = tuple[PhotoFile, "np.ndarray | str"]  # pixels, or the reason it could not be decoded


def _decoded_batches(
    photos: list[PhotoFile], library_root: Path, size: tuple[int, int], batch_size: int
) -> Iterator[list[Decoded]]:
    """Yield batches of decoded photos, keeping a few batches of decoding in flight ahead of the consumer."""
    with ThreadPoolExecutor(decode_threads(), thread_name_prefix="decode") as pool:
        pending: list[Future] = []
        todo = iter(photos)
        in_flight = 3 * batch_size
        while True:
            pending += [pool.submit(_decode, p, library_root, size) for p in _take(todo, in_flight - len(pending))]
            if not pending:
                return
            batch, pending = pending[:batch_size], pending[batch_size:]
            yield [future.result() for future in batch]


def _decode(photo: PhotoFile, library_root: Path, size: tuple[int, int]) -> Decoded:
    try:
        return photo, load_image(os.path.join(library_root, photo.rel), size)
    except ImageError as exc:
        return photo, str(exc)


def _take(items: Iterator[PhotoFile], n: int) -> Iterable[PhotoFile]:
    for _ in range(max(0, n)):
        item = next(items, None)
        if item is None:
            return
        yield item
