"""The fingerprint worker process: results, idle exit, crash recovery and quarantine, load errors, abandoning.

The factories at the top are what the worker process itself imports (by the dotted path in the Job), so the
stand-in model runs in the worker exactly where a real one would.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from photocluster.cache import FingerprintCache
from photocluster.images import load_image
from photocluster.library import PhotoFile, scan_library
from photocluster.settings import LibrarySettings, PatternOptions
from photocluster.weights import WeightsUnavailable
from photocluster.labels import Detection
from photocluster.worker import (DETECT, FINGERPRINT, FingerprintWorker, Job, WorkerLoadError, _ResultSender,
                                 describe_exit)
from photocluster.worker_fingerprinter import WorkerFingerprinter

from .conftest import StandInModel, save, scene

HERE = "tests.test_worker"
POISON = (255, 0, 255)  # a solid magenta photo "crashes the decoder" of the crashing stand-in


# --- factories the worker process imports ---------------------------------------------------------------------

def stand_in_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    return StandInModel()


class _CrashingStandIn(StandInModel):
    """Segfaults, like a buggy native decoder, whenever its batch holds a solid magenta photo."""

    def predict(self, batch):
        means = batch.reshape(len(batch), -1, 3).mean(axis=1)
        if np.any(np.all(np.abs(means - POISON) < 8, axis=1)):
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().predict(batch)


class _RuntimeStandIn(StandInModel):
    runtime = "worker-runtime"


def runtime_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    return _RuntimeStandIn()


def crashing_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    return _CrashingStandIn()


def missing_weights_factory(name: str, weights: str | None = None, runtime: str = "openvino"):
    raise WeightsUnavailable(f"no weights for {name}: run 'photocluster fetch-weights {name}'")


class _SlowStandIn(StandInModel):
    def predict(self, batch):
        time.sleep(0.3)
        return super().predict(batch)


def slow_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    return _SlowStandIn()


class _FailingStandIn(StandInModel):
    def predict(self, batch):
        raise ValueError("the model broke")


def failing_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    return _FailingStandIn()


# --- helpers --------------------------------------------------------------------------------------------------

def settings(lib, **kw) -> LibrarySettings:
    kw.setdefault("patterns", PatternOptions(enabled=False))
    kw.setdefault("batch_size", 2)
    return LibrarySettings(library=lib, model="squeezenet", **kw)


def photos_of(lib) -> list[PhotoFile]:
    return [p for _, p in sorted(scan_library(lib).items())]


def job(lib, factory="stand_in_factory", **kw) -> Job:
    return Job(str(lib), tuple(photos_of(lib)), "squeezenet", None, kw.get("batch_size", 2), f"{HERE}:{factory}")


@pytest.fixture
def worker():
    w = FingerprintWorker(idle_seconds=30, batch_timeout=30)
    yield w
    w.stop()


@pytest.fixture
def lib(tmp_path):
    root = tmp_path / "lib"
    for i in range(5):
        save(scene(i), root / f"p{i}.jpg")
    return root


# --- tests ----------------------------------------------------------------------------------------------------

def test_worker_process_returns_the_models_fingerprints(lib, worker):
    results = {}
    outcome = worker.run(job(lib), lambda rel, vec, labels, err, found, producer: results.__setitem__(
        rel, (vec, labels, err, producer)))
    assert outcome.finished and outcome.model_loaded and outcome.crash is None
    assert worker.pid not in (None, os.getpid())
    assert sorted(results) == [f"p{i}.jpg" for i in range(5)]
    model = StandInModel()  # the same model here, on the same decoded pixels
    pixels = np.stack([load_image(lib / "p3.jpg", model.input_size)])
    expected, _ = model.predict(pixels)
    vec, labels, err, producer = results["p3.jpg"]
    assert err is None and np.allclose(vec, expected[0]) and labels[0][0] == 281
    assert producer is None  # the stand-in has no runtime


def test_undecodable_photo_is_a_result_not_a_crash(lib, worker):
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    results = {}
    outcome = worker.run(job(lib), lambda rel, vec, labels, err, found, producer: results.__setitem__(rel, err))
    assert outcome.finished and results["broken.jpg"] and results["p0.jpg"] is None


def test_worker_exits_when_idle(lib):
    w = FingerprintWorker(idle_seconds=0.2, batch_timeout=30)
    try:
        assert w.run(job(lib), lambda *a: None).finished
        assert w.alive and not w.stop_if_idle()
        time.sleep(0.3)
        assert w.stop_if_idle() and not w.alive
        assert w.run(job(lib), lambda *a: None).finished  # started again on demand
    finally:
        w.stop()


def test_a_photo_that_crashes_the_worker_twice_is_quarantined(lib, worker, stand_in, caplog):
    save(Image.new("RGB", (64, 48), POISON), lib / "p2-poison.jpg")
    cache = FingerprintCache(stand_in.model_id, stand_in.dim)
    fingerprinter = WorkerFingerprinter(worker, f"{HERE}:crashing_factory", retry_seconds=0.01)
    progress = []
    fingerprinter.on_progress = lambda done, total, doing: progress.append((done, total, doing))
    todo = photos_of(lib)
    report = fingerprinter(settings(lib), cache, todo, False, lambda: False)
    assert report.computed == 5 and report.failed == ["p2-poison.jpg"]
    # the quarantine is handled like any failure (issue 11): counted in the progress, one skip line naming the file
    assert progress[-1] == (6, 6, "fingerprinting") and len(progress) == 6
    assert caplog.text.count("skipping p2-poison.jpg: quarantined: crashed the fingerprint worker 2 times") == 1
    poisoned = cache.entries["p2-poison.jpg"]
    assert poisoned.row == -1
    assert poisoned.error == "quarantined: crashed the fingerprint worker 2 times (signal 11 (SIGSEGV))"
    assert all(cache.entries[f"p{i}.jpg"].row >= 0 for i in range(5))
    assert "fingerprint worker crashed (signal 11 (SIGSEGV))" in caplog.text
    # the quarantine is a cached failure: the pipeline does not offer the photo again while the file is unchanged
    assert cache.is_current(next(p for p in todo if p.rel == "p2-poison.jpg"))
    assert worker.run(job(lib, factory="stand_in_factory"), lambda *a: None).finished  # a fresh worker serves on


def test_model_load_failure_is_one_error_not_a_crash(lib, worker):
    with pytest.raises(WorkerLoadError, match="^no weights for squeezenet: run 'photocluster fetch-weights"):
        worker.run(job(lib, factory="missing_weights_factory"), lambda *a: None)


def test_an_exception_in_the_worker_ends_it_with_one_line(lib, worker, capfd):
    outcome = worker.run(job(lib, factory="failing_factory"), lambda *a: None)
    assert outcome.model_loaded and outcome.crash == "exit status 1" and not worker.alive
    err = capfd.readouterr().err
    assert "fingerprint worker failed: ValueError: the model broke" in err and "Traceback" not in err


def test_should_stop_abandons_the_job_and_ends_the_worker(lib, worker):
    got = []
    outcome = worker.run(job(lib, factory="slow_factory"), lambda rel, *a: got.append(rel),
                         should_stop=lambda: len(got) >= 2)
    assert outcome.stopped and not outcome.finished and 2 <= len(got) < 5
    assert not worker.alive


def test_a_hung_worker_is_killed_and_reported(lib):
    w = FingerprintWorker(idle_seconds=30, batch_timeout=0.1)
    try:
        outcome = w.run(job(lib, factory="slow_factory"), lambda *a: None)
        assert outcome.crash == "no answer for 0 s (hung), killed" and not w.alive
    finally:
        w.stop()


def test_describe_exit():
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(1) == "exit status 1"


# --- issue 9: a Python exception while decoding is that photo's failure, never a worker crash -------------------

class _RaisingDecoderStandIn(StandInModel):
    pass


def raising_decoder_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    """The stand-in, in a worker whose PNG decoder raises RuntimeError (as pillow-heif's does) on 77x77 photos."""
    from PIL import PngImagePlugin

    real = PngImagePlugin.PngImageFile.load

    def load(self):
        if self.size == (77, 77):
            raise RuntimeError("decoder bug")
        return real(self)

    PngImagePlugin.PngImageFile.load = load
    return _RaisingDecoderStandIn()


def count_worker_starts(monkeypatch) -> list[int]:
    starts = []
    real = FingerprintWorker._start

    def start(self):
        if not self.alive:
            starts.append(1)
        real(self)

    monkeypatch.setattr(FingerprintWorker, "_start", start)
    return starts


@pytest.mark.parametrize("factory,bad", [
    ("stand_in_factory", {"texture.jpg": "dds", "game.png": "blp"}),  # the files: raised out of Pillow
    ("raising_decoder_factory", {"odd-0.png": 77, "odd-1.png": 77}),  # a decoder that raises on any photo
])
def test_files_that_make_the_decoder_raise_never_restart_the_worker(lib, worker, stand_in, monkeypatch, caplog,
                                                                    factory, bad):
    from . import hostile

    for name, kind in bad.items():
        if kind == "dds":
            (lib / name).write_bytes(hostile.dds_unsupported())
        elif kind == "blp":
            (lib / name).write_bytes(hostile.blp_bad_encoding())
        else:
            save(scene(70).resize((kind, kind)), lib / name)
    starts = count_worker_starts(monkeypatch)
    cache = FingerprintCache(stand_in.model_id, stand_in.dim)
    fingerprinter = WorkerFingerprinter(worker, f"{HERE}:{factory}", retry_seconds=0.01)
    report = fingerprinter(settings(lib), cache, photos_of(lib), False, lambda: False)
    assert starts == [1] and "crashed" not in caplog.text and not fingerprinter.crashes
    assert sorted(report.failed) == sorted(bad) and report.computed == 5
    assert all(cache.entries[name].error and not cache.entries[name].error.startswith("quarantined")
               for name in bad)
    assert all(cache.entries[f"p{i}.jpg"].row >= 0 for i in range(5))


# --- keeping the work on the daemon's worker path: checkpoints, results already sent, permanent load errors ------

def test_the_worker_path_saves_checkpoints_while_it_fingerprints(tmp_path, lib, worker, stand_in, monkeypatch):
    from photocluster.pipeline import CHECKPOINT_ENV, LibraryPipeline

    for i in range(5, 10):
        save(scene(i), lib / f"p{i}.jpg")
    monkeypatch.setenv(CHECKPOINT_ENV, "0.4")
    saved_counts = []  # how many fingerprints the cache held at each save
    real_save = FingerprintCache.save
    monkeypatch.setattr(FingerprintCache, "save",
                        lambda cache, path: (saved_counts.append(len(cache.fingerprinted())), real_save(cache, path)))
    pipeline = LibraryPipeline(settings(lib, out=tmp_path / "out"),
                               fingerprint=WorkerFingerprinter(worker, f"{HERE}:slow_factory"))
    report = pipeline.update(progress=False)
    # 10 photos in calls of 2 that take 0.3 s each: 1.5 s of fingerprinting, so saves at 0.4 s intervals came
    # while it ran, each holding only what was done by then, and the last one holds all 10.
    assert report.fingerprinted.computed == 10
    assert any(0 < n < 10 for n in saved_counts), saved_counts
    assert saved_counts == sorted(saved_counts) and saved_counts[-1] == 10


def test_results_already_sent_are_kept_when_the_job_is_abandoned(lib, worker):
    got = []

    def slow_to_take(rel, *rest):
        got.append(rel)
        time.sleep(0.3 if len(got) == 1 else 0)  # meanwhile the worker sends the rest of its call of 5

    outcome = worker.run(job(lib, batch_size=5), slow_to_take, should_stop=lambda: bool(got))
    assert outcome.stopped and sorted(got) == [f"p{i}.jpg" for i in range(5)]


def memory_error_factory(name: str, weights: str | None = None, runtime: str = "openvino"):
    raise MemoryError("cannot allocate the model")


def test_a_load_error_says_whether_the_weights_are_missing(lib, worker):
    with pytest.raises(WorkerLoadError) as missing:
        worker.run(job(lib, factory="missing_weights_factory"), lambda *a: None)
    assert missing.value.missing_weights  # the daemon does not retry this
    with pytest.raises(WorkerLoadError) as passing:
        worker.run(job(lib, factory="memory_error_factory"), lambda *a: None)
    assert not passing.value.missing_weights  # this may pass: the daemon retries it


# --- issue 13: the worker runs the detector beside the model, from the same decode ------------------------------

CALLS_ENV = "PHOTOCLUSTER_TEST_CALLS"  # a file where the worker's stand-ins note each call (the worker inherits it)
BOXES = (("person", 0.75, (0.125, 0.25, 0.5, 1.0)), ("dog", 0.5, (0.0, 0.0, 0.25, 0.25)))  # float16-exact


def _note(what: str, photos: int) -> None:
    with open(os.environ[CALLS_ENV], "a") as fh:
        fh.write(f"{what} {photos}\n")


class _NotingStandIn(StandInModel):
    def predict(self, batch):
        _note("predict", len(batch))
        return super().predict(batch)


def noting_factory(name: str, weights: str | None = None, runtime: str = "openvino") -> StandInModel:
    return _NotingStandIn()


class _BoxesDetector:
    """Finds the same person and dog in every photo; a solid magenta photo segfaults it (with crash=True)."""

    input_size = (16, 16)

    def __init__(self, crash: bool = False):
        self.crash = crash

    def detect(self, batch):
        if CALLS_ENV in os.environ:
            _note("detect", len(batch))
        means = batch.reshape(len(batch), -1, 3).mean(axis=1)
        if self.crash and np.any(np.all(np.abs(means - POISON) < 8, axis=1)):
            os.kill(os.getpid(), signal.SIGSEGV)
        return [tuple(Detection(*found) for found in BOXES) for _ in batch]


def boxes_detector_factory(runtime: str = "openvino"):
    return _BoxesDetector()


def crashing_detector_factory(runtime: str = "openvino"):
    return _BoxesDetector(crash=True)


def missing_detector_weights_factory(runtime: str = "openvino"):
    raise WeightsUnavailable("CenterNet weights are missing; run `photocluster fetch-weights centernet`")


def detect_job(lib, kind=FINGERPRINT, detector="boxes_detector_factory", factory="stand_in_factory") -> Job:
    return Job(str(lib), tuple(photos_of(lib)), "squeezenet", None, 2, f"{HERE}:{factory}", detect=True, kind=kind,
               detector_factory=f"{HERE}:{detector}")


def test_the_worker_returns_each_photos_detections_with_its_fingerprint(lib, worker):
    results = {}
    outcome = worker.run(detect_job(lib), lambda rel, vec, labels, err, found, _: results.__setitem__(rel, (vec, found)))
    assert outcome.finished and sorted(results) == [f"p{i}.jpg" for i in range(5)]
    expected = tuple(Detection(*found) for found in BOXES)
    assert all(vec is not None and vec.shape == (StandInModel.dim,) and found == expected
               for vec, found in results.values())


def test_detections_cross_the_pipe_as_plain_tuples():
    class Pipe:
        def __init__(self):
            self.sent = []

        def send(self, message):
            self.sent.append(message)

    def builtins_only(value) -> bool:
        if isinstance(value, tuple):
            return all(builtins_only(v) for v in value)
        return value is None or type(value) in (str, float, int, np.ndarray)

    pipe = Pipe()
    sender = _ResultSender(pipe)
    photo = PhotoFile("a.jpg", 10, 20)
    found = tuple(Detection(*d) for d in BOXES)
    sender.put(photo, np.zeros(4, np.float32), ((281, 0.5),), found, "openvino-bf16")
    sender.put_detections(photo, found)
    assert pipe.sent[0][5:] == (BOXES, "openvino-bf16") and pipe.sent[1] == ("detections", "a.jpg", BOXES)
    assert all(builtins_only(message) for message in pipe.sent)


def fingerprinted_cache(lib) -> tuple[FingerprintCache, dict[str, np.ndarray]]:
    """A cache of the library's photos fingerprinted before the detector (no detections), and their vectors."""
    model = StandInModel()
    cache = FingerprintCache(model.model_id, model.dim)
    for photo in photos_of(lib):
        vector, probs = model.predict(load_image(lib / photo.rel, model.input_size)[None])
        cache.put(photo, vector[0], ((281, 0.6),), producer="before")
    return cache, {rel: cache.vectors([rel])[0].copy() for rel in cache.fingerprinted()}


def test_a_detect_only_job_never_runs_the_model_and_keeps_the_fingerprints(lib, tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    monkeypatch.setenv(CALLS_ENV, str(calls))
    cache, vectors = fingerprinted_cache(lib)
    w = FingerprintWorker(idle_seconds=30, batch_timeout=30)  # started after setenv: the worker sees the file
    try:
        fingerprinter = WorkerFingerprinter(w, f"{HERE}:noting_factory",
                                            detector_factory=f"{HERE}:boxes_detector_factory")
        detected = fingerprinter.detect_earlier(settings(lib, patterns=PatternOptions()), cache, photos_of(lib),
                                                False, lambda: False)
    finally:
        w.stop()
    assert detected == 5
    lines = calls.read_text().split("\n")[:-1]
    assert {line.split()[0] for line in lines} == {"detect"} and sum(int(line.split()[1]) for line in lines) == 5
    expected = tuple(Detection(*found) for found in BOXES)
    assert all(cache.entries[rel].detections == expected for rel in vectors)
    assert all(np.array_equal(cache.vectors([rel])[0], vector) for rel, vector in vectors.items())
    assert {cache.entries[rel].producer for rel in vectors} == {"before"}  # what computed them, unchanged


def test_missing_detector_weights_are_a_one_line_load_error(lib, worker):
    with pytest.raises(WorkerLoadError) as error:
        worker.run(detect_job(lib, detector="missing_detector_weights_factory"), lambda *a: None)
    assert str(error.value) == "CenterNet weights are missing; run `photocluster fetch-weights centernet`"
    assert error.value.missing_weights
    with pytest.raises(WorkerLoadError) as detect_only:
        worker.run(detect_job(lib, kind=DETECT, detector="missing_detector_weights_factory"), lambda *a: None)
    assert detect_only.value.missing_weights


def test_a_photo_that_crashes_the_worker_in_a_detect_only_job_is_skipped_and_keeps_its_fingerprint(lib, worker,
                                                                                                   caplog):
    save(Image.new("RGB", (64, 48), POISON), lib / "p2-poison.jpg")
    cache, vectors = fingerprinted_cache(lib)
    fingerprinter = WorkerFingerprinter(worker, f"{HERE}:stand_in_factory", retry_seconds=0.01,
                                        detector_factory=f"{HERE}:crashing_detector_factory")
    lib_settings = settings(lib, patterns=PatternOptions())
    progress = []
    fingerprinter.on_progress = lambda done, total, doing: progress.append((done, total, doing))
    assert fingerprinter.detect_earlier(lib_settings, cache, photos_of(lib), False, lambda: False) == 5
    # the daemon's STATUS= line follows the detect-only pass too: each of the 6 photos counted once, the
    # quarantined one included
    assert [done for done, _, _ in progress] == [1, 2, 3, 4, 5, 6]
    assert {(total, doing) for _, total, doing in progress} == {(6, "detecting objects")}
    assert "fingerprint worker crashed (signal 11 (SIGSEGV))" in caplog.text
    assert caplog.text.count("skipping p2-poison.jpg: no object detection until a restart: crashed the fingerprint "
                             "worker 2 times (signal 11 (SIGSEGV))") == 1
    poisoned = cache.entries["p2-poison.jpg"]
    assert poisoned.detections is None and not poisoned.error
    assert np.array_equal(cache.vectors(["p2-poison.jpg"])[0], vectors["p2-poison.jpg"])  # its fingerprint is kept
    assert all(cache.entries[f"p{i}.jpg"].detections for i in range(5))
    caplog.clear()
    # the next update does not offer it to the detector again (nor crash the worker for it)
    assert fingerprinter.detect_earlier(lib_settings, cache, photos_of(lib), False, lambda: False) == 5
    assert "crashed" not in caplog.text


def test_the_worker_path_records_the_worker_models_runtime_in_the_cache(lib, worker, stand_in):
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    cache = FingerprintCache(stand_in.model_id, stand_in.dim)
    report = WorkerFingerprinter(worker, f"{HERE}:runtime_factory")(settings(lib), cache, photos_of(lib), False,
                                                                     lambda: False)
    assert report.computed == 5 and report.runtime == "worker-runtime"
    assert {rel: e.producer for rel, e in cache.entries.items()} == {
        **{f"p{i}.jpg": "worker-runtime" for i in range(5)}, "broken.jpg": None}
    assert cache.fingerprints_by_producer() == {"worker-runtime": 5}
