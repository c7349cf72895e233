"""The fingerprint and detect steps run in this process, as the one-shot CLI runs them (a daemon runs them in its
worker process: worker_fingerprinter.py)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from . import models
from .fingerprint import FingerprintReport, FingerprintSink, detect_photos, fingerprint_photos
from .library import PhotoFile
from .settings import LibrarySettings
from .thumbs import thumb_writer
from .wording import plural

log = logging.getLogger(__name__)


def fingerprint_in_process(
    settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile], progress: bool | None,
    should_stop: Callable[[], bool],
) -> FingerprintReport:
    """The in-process Fingerprinter: load the model here and fingerprint `todo` into `sink` (the daemon uses
    worker_fingerprinter.WorkerFingerprinter instead, which runs the model in a child process)."""
    log.info("fingerprinting %s with %s", plural(len(todo), "new or changed photo"), settings.model)
    model = models.load_fingerprinter(settings.model, settings.weights, settings.runtime)
    detector = load_detector(settings.runtime) if wants_detections(settings) else None
    with thumb_writer(settings.out_dir if settings.gallery else None) as thumbs:
        return fingerprint_photos(todo, Path(settings.library), model, sink, batch_size=settings.batch_size,
                                  progress=progress, should_stop=should_stop, detector=detector, thumbs=thumbs)


def wants_detections(settings: LibrarySettings) -> bool:
    """Whether the photos go through the object detector: the pattern summaries and the object index use its
    objects."""
    return (settings.patterns.enabled and settings.patterns.objects != "imagenet") or settings.index_objects


def detect_in_process(settings: LibrarySettings, sink: FingerprintSink, todo: list[PhotoFile],
                      progress: bool | None, should_stop: Callable[[], bool]) -> int:
    """The in-process EarlierDetector: load the detector here and detect objects in `todo` into
    `sink.put_detections` (the daemon uses WorkerFingerprinter.detect_earlier, in its worker process)."""
    return detect_photos(todo, Path(settings.library), load_detector(settings.runtime), sink,
                         batch_size=settings.batch_size, progress=progress, should_stop=should_stop)


# The detect step for photos fingerprinted before the detector: (settings, sink, todo, progress, should_stop)
# -> how many photos got their detections.
EarlierDetector = Callable[[LibrarySettings, FingerprintSink, list[PhotoFile], "bool | None", Callable[[], bool]], int]


def load_detector(runtime: str = "openvino"):
    from .detector import load_detector as load  # imported only when there is work

    return load(runtime=runtime)
