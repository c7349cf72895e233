"""The output folder's record of the last run, `<out>/last-run.json`: the model and weights that made the
fingerprints, the sim or cut, and how fast fingerprinting went on this machine.

A run given no model (no --model, no `model` in the config) takes the recorded one, so forgetting
`--model squeezenet` once never throws the fingerprints away; only an explicit model changes it. An output folder
made before this record existed is read from the cache itself, which knows its model_id. The recorded speed lets
a dry run estimate how long fingerprinting will take.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .fsutil import write_text_atomic
from .settings import NAMED_WEIGHTS, LibrarySettings, SettingsError

log = logging.getLogger(__name__)

RECORD_NAME = "last-run.json"
VERSION = 1


@dataclass
class LastRun:
    model: str
    weights: str | None = None  # as LibrarySettings.weights: None, "random"... or an absolute file path
    sim: float | None = None  # None when `cut` was given instead
    cut: float | None = None
    images_per_second: float | None = None  # of the last run that fingerprinted anything, with `model`


def read(out_dir: Path) -> LastRun | None:
    """The record in `out_dir`, or None when there is none (or it cannot be read: it is only a convenience)."""
    path = Path(out_dir) / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return LastRun(**{k: v for k, v in data.items() if k != "version"})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def record(settings: LibrarySettings, images_per_second: float | None) -> None:
    """Write the record of a run with `settings`; a run that fingerprinted nothing keeps the measured speed."""
    previous = read(settings.out_dir)
    if images_per_second is None and previous is not None and previous.model == settings.model:
        images_per_second = previous.images_per_second
    weights = settings.weights
    if weights not in NAMED_WEIGHTS:
        weights = os.path.abspath(weights)
    current = LastRun(settings.model, weights, settings.sim if settings.cut is None else None, settings.cut,
                      None if images_per_second is None else round(images_per_second, 3))
    if current != previous:  # the daemon runs often; rewrite only what changed
        text = json.dumps({"version": VERSION, **asdict(current)}, indent=1)
        write_text_atomic(Path(settings.out_dir) / RECORD_NAME, text + "\n")


def adopt_recorded_model(settings: LibrarySettings) -> None:
    """For settings given no model: take the model (and, unless given, the weights) of the library's last run.

    With no record, the cache's own model; with neither, `settings.model` (the default) stays.
    """
    last = read(settings.out_dir) or _from_cache(settings)
    if last is None:
        return
    settings.model = last.model
    if settings.weights is None and last.weights is not None:
        if last.weights not in NAMED_WEIGHTS and not os.path.isfile(last.weights):
            raise SettingsError(f"weights file {last.weights}, which made the fingerprints in {settings.out_dir}, "
                                "does not exist; give --weights FILE, or --model to fingerprint again")
        settings.weights = last.weights


def _from_cache(settings: LibrarySettings) -> LastRun | None:
    """What the cache says of the model that made it (an output folder from before the record)."""
    from . import models
    from .cache import CacheError, FingerprintCache

    if not settings.cache_path.is_file():
        return None
    try:
        model_id = FingerprintCache.load(settings.cache_path).model_id
    except CacheError:
        return None  # the run moves it aside and says so
    name, origin = models.name_of(model_id)
    if name is None:
        return None
    if origin.startswith("file:"):
        raise SettingsError(f"the fingerprints in {settings.out_dir} were made by {name} with a weights file; "
                            "give --weights FILE, or --model to fingerprint again")
    return LastRun(name, None if origin == "imagenet" else origin)
