"""A fast model stand-in, importable by tests and by the subprocesses that fault-injection tests start and kill.

`python -m tests.standin ARGS...` runs `photocluster ARGS...` (`watch` too: its worker gets `factory` and
`detector_factory`) with StandInModel and StandInDetector in place of the real models.
Environment knobs (all optional) slow chosen steps in that child only, so a harness can SIGKILL it inside them;
before each slowed step the child writes `phase:<name>` to stdout, so the harness knows where it is:

    PHOTOCLUSTER_TEST_PREDICT_DELAY  seconds of sleep per model call       (phase:fingerprint)
    PHOTOCLUSTER_TEST_SAVE_DELAY     seconds inside the cache save, before and after the bytes are written
                                     and before the rename                   (phase:save)
    PHOTOCLUSTER_TEST_LAYOUT_DELAY   seconds inside the cluster tree build and around the swap (phase:layout)
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np


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


class StandInDetector:
    """A detector that finds nothing, instantly: pipeline tests keep their ImageNet-only objects. `calls` counts
    the photos it saw."""

    input_size = (16, 16)

    def __init__(self):
        self.calls = 0

    def detect(self, batch: np.ndarray):
        self.calls += len(batch)
        return [() for _ in batch]


def install(monkeypatch=None, model: StandInModel | None = None) -> StandInModel:
    """Make photocluster use StandInModel whatever --model says (through `monkeypatch` when given)."""
    from photocluster import models

    model = model or StandInModel()
    spec = models.ModelSpec("stand-in", model.model_id, model.dim, model.input_size,
                            ((0.0, 0.0), (0.5, 0.9), (1.0, 1.0)), None)
    replacements = {
        "model_spec": lambda name, weights=None: spec,
        "calibration": lambda name: spec.calibration,
        "load_fingerprinter": lambda name, weights=None, runtime="openvino": model,
    }
    for name, value in replacements.items():
        if monkeypatch is not None:
            monkeypatch.setattr(models, name, value)
        else:
            setattr(models, name, value)
    from photocluster import inprocess

    detector = StandInDetector()
    if monkeypatch is not None:
        monkeypatch.setattr(inprocess, "load_detector", lambda runtime="openvino": detector)
    else:
        inprocess.load_detector = lambda runtime="openvino": detector
    model.detector = detector
    return model


def _phase(name: str) -> None:
    sys.stdout.write(f"phase:{name}\n")
    sys.stdout.flush()


def _delay(var: str) -> float:
    return float(os.environ.get(var, "0") or 0)


class _SlowStandIn(StandInModel):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def predict(self, batch):
        _phase("fingerprint")
        time.sleep(self.delay)
        return super().predict(batch)


def _slow_down_steps() -> None:
    """Wrap the steps a harness wants to kill inside, in this (child) process only."""
    from photocluster import cache, layout

    save_delay, layout_delay = _delay("PHOTOCLUSTER_TEST_SAVE_DELAY"), _delay("PHOTOCLUSTER_TEST_LAYOUT_DELAY")
    if save_delay:
        real_writer = cache.atomic_writer

        @contextlib.contextmanager
        def slow_writer(path, mode="wb"):
            _phase("save")
            time.sleep(save_delay / 3)
            with real_writer(path, mode) as fh:
                yield fh
                fh.flush()
                time.sleep(save_delay / 3)  # the temporary file is written, the rename not yet done
            time.sleep(save_delay / 3)

        cache.atomic_writer = slow_writer
    if layout_delay:
        real_build, real_swap = layout._build_generation, layout._swap_in

        def slow_build(*args):
            _phase("layout")
            time.sleep(layout_delay / 3)
            real_build(*args)
            time.sleep(layout_delay / 3)

        def slow_swap(out_dir, generation):
            real_swap(out_dir, generation)
            time.sleep(layout_delay / 3)  # swapped; the old generation not yet removed

        layout._build_generation, layout._swap_in = slow_build, slow_swap


def factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    """For the daemon's worker process (a 'spawn' child, which the patches above do not reach)."""
    predict_delay = _delay("PHOTOCLUSTER_TEST_PREDICT_DELAY")
    return _SlowStandIn(predict_delay) if predict_delay else StandInModel()


def detector_factory(runtime: str = "openvino") -> StandInDetector:
    """The stand-in detector for the daemon's worker process, like `factory` for the model."""
    return StandInDetector()


def main(argv: list[str] | None = None) -> int:
    import functools

    from photocluster import daemon

    install(model=factory("stand-in"))
    _slow_down_steps()
    daemon.Daemon = functools.partial(daemon.Daemon, model_factory="tests.standin:factory",
                                      detector_factory="tests.standin:detector_factory")
    from photocluster.cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
