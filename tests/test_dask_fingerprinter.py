"""The fingerprint step on a Dask cluster: a LocalCluster of two worker processes, one thread each.

The factories at the top are what the Dask workers import (they travel by reference), so a stand-in model runs in
the worker exactly where a real one would. The scheduler hands a batch back after it killed two workers
(allowed-failures 1), the daemon's rule for quarantine.
"""
from __future__ import annotations

import os
import shutil

import dask
import numpy as np
import pytest
from PIL import Image

from photocluster import models
from photocluster.cli import main
from photocluster.dask_fingerprinter import DaskFingerprinter, worker_root
from photocluster.images import load_image
from photocluster.inprocess import fingerprint_in_process
from photocluster.library import scan_library
from photocluster.settings import LibrarySettings, PatternOptions, SettingsError
from photocluster.thumbs import thumbs_dir

from .conftest import StandInModel, save, scene
from .standin import factory as stand_in_factory  # noqa: F401 - the workers' model, by reference

HERE = "tests.test_dask_fingerprinter"
POISON = (255, 0, 255)  # a solid magenta photo kills the worker that runs the crashing stand-in on it


class _KillingStandIn(StandInModel):
    """Ends its process at once, like a segfaulting decoder, whenever its batch holds a solid magenta photo."""

    def predict(self, batch):
        means = batch.reshape(len(batch), -1, 3).mean(axis=1)
        if np.any(np.all(np.abs(means - POISON) < 8, axis=1)):
            os._exit(70)
        return super().predict(batch)


def killing_factory(name, weights=None, runtime="openvino"):
    return _KillingStandIn()


class _RuntimeStandIn(StandInModel):
    runtime = "dask-worker-runtime"


def runtime_factory(name, weights=None, runtime="openvino"):
    return _RuntimeStandIn()


def no_detector(runtime="openvino"):
    raise AssertionError("the stand-in runs need no detector")


class Recorder:
    """A FingerprintSink that keeps what it is given."""

    def __init__(self):
        self.vectors, self.labels, self.failures, self.detections, self.producers = {}, {}, {}, {}, {}

    def put(self, photo, vector, predictions, detections=None, producer=None):
        self.vectors[photo.rel], self.labels[photo.rel] = np.asarray(vector), list(predictions)
        self.detections[photo.rel], self.producers[photo.rel] = detections, producer

    def put_failure(self, photo, reason):
        self.failures[photo.rel] = reason

    def put_detections(self, photo, detections):
        self.detections[photo.rel] = detections


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def todo_of(lib):
    return [p for _, p in sorted(scan_library(lib).items())]


def stand_in_settings(lib, **kw):
    return LibrarySettings(library=lib, out=lib.parent / "out", model="squeezenet", batch_size=2,
                           patterns=PatternOptions(enabled=False), gallery=False, **kw)


def test_real_model_on_the_cluster_equals_the_in_process_path(scheduler, devset, squeezenet, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in sorted(os.listdir(devset / "album"))[:5]:
        shutil.copyfile(devset / "album" / name, lib / name)
    settings = LibrarySettings(library=lib, out=tmp_path / "out", model="squeezenet", batch_size=2)
    settings.out_dir.mkdir()  # as the pipeline makes it before fingerprinting
    assert settings.patterns.enabled and settings.gallery  # the detector and thumbnails run too
    todo = todo_of(lib)
    here, there = Recorder(), Recorder()
    local = fingerprint_in_process(settings, here, todo, False, lambda: False)
    thumbs_here = {p.name: p.read_bytes() for p in thumbs_dir(settings.out_dir).iterdir()}
    shutil.rmtree(thumbs_dir(settings.out_dir))
    report = DaskFingerprinter(scheduler, task_photos=2)(settings, there, todo, False, lambda: False)
    assert report.computed == local.computed == 5 and not report.failed and not there.failures
    assert report.runtime == local.runtime
    for rel, vector in here.vectors.items():
        other = there.vectors[rel]
        assert float(vector @ other / np.linalg.norm(vector) / np.linalg.norm(other)) >= models.RUNTIME_MIN_COSINE
        assert [label for label, _ in there.labels[rel]] == [label for label, _ in here.labels[rel]]
        assert [d.label for d in there.detections[rel]] == [d.label for d in here.detections[rel]]
    # the client wrote the thumbnails the workers made: the same files the in-process path writes
    assert {p.name: p.read_bytes() for p in thumbs_dir(settings.out_dir).iterdir()} == thumbs_here


def test_a_photo_that_kills_workers_is_quarantined_and_the_rest_are_done(scheduler, stand_in, tmp_path):
    lib = tmp_path / "lib"
    for i in range(7):
        save(scene(i), lib / f"p{i}.jpg")
    save(Image.new("RGB", (64, 48), POISON), lib / "p3-poison.jpg")
    sink = Recorder()
    fingerprinter = DaskFingerprinter(scheduler, factory=killing_factory, detector_factory=no_detector,
                                      task_photos=4)
    report = fingerprinter(stand_in_settings(lib), sink, todo_of(lib), False, lambda: False)
    assert report.failed == ["p3-poison.jpg"] and report.computed == 7
    assert sink.failures["p3-poison.jpg"].startswith("quarantined: killed 2 Dask workers")
    expected, _ = StandInModel().predict(np.stack([load_image(lib / "p5.jpg", StandInModel.input_size)]))
    assert sorted(sink.vectors) == [f"p{i}.jpg" for i in range(7)]
    assert np.allclose(sink.vectors["p5.jpg"], expected[0])


def test_workers_read_the_library_through_the_path_map(scheduler, stand_in, tmp_path):
    here, there = tmp_path / "client" / "lib", tmp_path / "workers" / "lib"
    for i in range(3):  # the same names, other pictures: the fingerprints show which copy the workers read
        save(scene(i), here / f"p{i}.jpg")
        save(scene(10 + i), there / f"p{i}.jpg")
    assert worker_root(here, f"{tmp_path / 'client'}={tmp_path / 'workers'}") == str(there)
    sink = Recorder()
    fingerprinter = DaskFingerprinter(scheduler, f"{tmp_path / 'client'}={tmp_path / 'workers'}",
                                      factory=stand_in_factory, detector_factory=no_detector)
    report = fingerprinter(stand_in_settings(here), sink, todo_of(here), False, lambda: False)
    assert report.computed == 3
    for i in range(3):
        expected, _ = StandInModel().predict(np.stack([load_image(there / f"p{i}.jpg", StandInModel.input_size)]))
        assert np.allclose(sink.vectors[f"p{i}.jpg"], expected[0])


def test_a_library_the_workers_cannot_see_stops_the_run_marking_nothing(scheduler, stand_in, tmp_path):
    lib = tmp_path / "lib"
    save(scene(1), lib / "p1.jpg")
    sink = Recorder()
    fingerprinter = DaskFingerprinter(scheduler, f"{tmp_path}=/nowhere", factory=stand_in_factory,
                                      detector_factory=no_detector)
    with pytest.raises(SettingsError, match="/nowhere/lib is not a folder on Dask worker"):
        fingerprinter(stand_in_settings(lib), sink, todo_of(lib), False, lambda: False)
    assert not sink.failures and not sink.vectors
    with pytest.raises(SettingsError, match="is not inside it"):
        worker_root(lib, "/elsewhere=/x")


def test_each_fingerprint_is_recorded_with_the_worker_models_runtime(scheduler, stand_in, tmp_path):
    lib = tmp_path / "lib"
    for i in range(3):
        save(scene(i), lib / f"p{i}.jpg")
    sink = Recorder()
    fingerprinter = DaskFingerprinter(scheduler, factory=runtime_factory, detector_factory=no_detector, task_photos=2)
    report = fingerprinter(stand_in_settings(lib), sink, todo_of(lib), False, lambda: False)
    assert report.runtime == "dask-worker-runtime"
    assert sink.producers == {f"p{i}.jpg": "dask-worker-runtime" for i in range(3)}


def test_a_stop_between_batches_leaves_the_rest(scheduler, stand_in, tmp_path):
    lib = tmp_path / "lib"
    for i in range(6):
        save(scene(i), lib / f"p{i}.jpg")
    sink = Recorder()
    fingerprinter = DaskFingerprinter(scheduler, factory=stand_in_factory, detector_factory=no_detector,
                                      task_photos=1)
    report = fingerprinter(stand_in_settings(lib), sink, todo_of(lib), False, lambda: len(sink.vectors) >= 2)
    assert 2 <= report.computed < 6 and len(sink.vectors) == report.computed and not sink.failures


def test_a_bad_scheduler_address_is_one_line_and_exit_2(stand_in, tmp_path, capsys, monkeypatch):
    from photocluster import dask_fingerprinter

    monkeypatch.setattr(dask_fingerprinter, "CONNECT_SECONDS", 1.0)
    save(scene(1), tmp_path / "lib" / "p1.jpg")
    status = main([str(tmp_path / "lib"), "--dask", "tcp://127.0.0.1:9", "--no-patterns", "-q"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("photocluster: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def test_dask_settings_are_checked():
    with pytest.raises(SettingsError, match="dask_path_map must be CLIENT_PREFIX=WORKER_PREFIX"):
        LibrarySettings(library=".", dask="tcp://h:8786", dask_path_map="relative=/x").validate()
    with pytest.raises(SettingsError, match="dask must be a scheduler address"):
        LibrarySettings(library=".", dask="tcp://h 8786").validate()
