"""Shared fixtures: a model stand-in for tests where the model is beside the point, and photo makers."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import models, weights


class StandInModel:
    """A tiny deterministic 'model': the photo's colour layout on a 4x4 grid.

    Resized or re-encoded copies of a photo get nearly the same vector; different photos differ. It answers in
    microseconds, so pipeline and daemon tests run fast. `calls` counts the photos it saw.
    """

    name = "stand-in"
    model_id = "stand-in/colour-layout"
    input_size = (32, 32)
    dim = 96

    def __init__(self):
        self.calls = 0

    def predict(self, batch: np.ndarray):
        self.calls += len(batch)
        small = batch.reshape(len(batch), 4, 8, 4, 8, 3).mean(axis=(2, 4)).reshape(len(batch), -1)
        centred = small - small.mean(axis=1, keepdims=True)
        # Non-negative like a real network's ReLU features (so cosines lie in [0, 1] and cut 0 joins everything).
        features = np.concatenate([np.maximum(centred, 0), np.maximum(-centred, 0)], axis=1).astype(np.float32)
        probs = np.zeros((len(batch), 1000), np.float32)
        probs[:, 281] = 0.6  # everyone is a tabby cat
        probs[np.arange(len(batch)), 400 + batch[:, :, :, 0].mean(axis=(1, 2)).astype(int) // 32] = 0.4
        return features, probs


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs its own log handler on stderr; take it away again so tests stay independent."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def stand_in(monkeypatch):
    """Make the pipeline use StandInModel whatever --model says."""
    model = StandInModel()
    spec = models.ModelSpec("stand-in", model.model_id, model.dim, model.input_size,
                            ((0.0, 0.0), (0.5, 0.9), (1.0, 1.0)), None)
    monkeypatch.setattr(models, "model_spec", lambda name, weights=None: spec)
    monkeypatch.setattr(models, "calibration", lambda name: spec.calibration)
    monkeypatch.setattr(models, "load_fingerprinter", lambda name, weights=None: model)
    return model


def scene(seed: int, size=(320, 240)) -> Image.Image:
    """A synthetic 'photo': smooth random colour blobs, distinct per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture
def squeezenet_weights():
    """The real SqueezeNet ImageNet weights (fetched once into the user's weights folder; CI fetches them first)."""
    return weights.fetch_weights("squeezenet")


@pytest.fixture(scope="session")
def squeezenet():
    weights.fetch_weights("squeezenet")
    return models.load_fingerprinter("squeezenet")


def sha256_tree(root: Path) -> dict[str, str]:
    import hashlib

    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out
