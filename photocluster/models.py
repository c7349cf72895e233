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

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photocluster import networks
from photocluster import weights as weights_store
from photocluster.settings import IMAGENET_WEIGHTS, MODEL_NAMES, RANDOM_WEIGHTS, RUNTIMES
from photocluster.weights import WeightsUnavailable

__all__ = ["MODEL_NAMES", "Fingerprinter", "ModelSpec", "WeightsUnavailable", "calibration", "scene_floor",
           "load_fingerprinter", "model_spec"]

_HASH_PREFIX = 16  # hex digits of a weights file's SHA-256 kept in model_id
# The OpenVINO IR's key beside the model_id: bump it when the conversion changes.
_IR_CONVERSION = "-c1"
# Two runtimes compute "the same" fingerprints when, for every photo, the cosine between their fingerprints is at
# least RUNTIME_MIN_COSINE and their five most probable ImageNet labels share at least RUNTIME_MIN_TOP5. Measured
# on the devset album, OpenVINO bf16 against TensorFlow float32: lowest cosine 0.99992 (SqueezeNet) and 0.99997
# (VGG16); OpenVINO f32: 0.9999998. bf16 reorders near-tied labels, so the top-5 test allows one swap in or out.
RUNTIME_MIN_COSINE = 0.999
RUNTIME_MIN_TOP5 = 4

# (sim, cosine cut) points the clusterer interpolates between, so that `--sim` means the same grouping whichever
# model runs. SqueezeNet's: 0.25 and 0.75 measured on the devset by scripts/calibrate.py; 0.5 moved up to where
# unrelated photos stay apart (precision 0.997 on the scene set, scripts/measure_scenes.py), since scene links now
# bring the other shots of a scene. README.rst gives the evidence. VGG16's is PROVISIONAL, reasoned rather than
# measured: its weights cannot be fetched offline here.
CALIBRATION = {
    "vgg16": ((0.0, 0.0), (0.25, 0.55), (0.5, 0.80), (0.75, 0.88), (1.0, 1.0)),
    "squeezenet": ((0.0, 0.0), (0.25, 0.66), (0.5, 0.88), (0.75, 0.92), (1.0, 1.0)),
}

# (sim, cosine) points of the floor of the band of candidate pairs the scenes stage verifies (scenes.py): pairs with
# floor <= cosine < cut. At sim 0.75 and above the floor is the cut, so no pair below it is linked (near-copies).
# SqueezeNet's measured by scripts/measure_scenes.py (README.rst); VGG16's PROVISIONAL, as its cut table.
SCENE_FLOOR = {
    "vgg16": ((0.0, 0.0), (0.25, 0.40), (0.5, 0.50), (0.75, 0.88), (1.0, 1.0)),
    "squeezenet": ((0.0, 0.0), (0.25, 0.50), (0.5, 0.60), (0.75, 0.92), (1.0, 1.0)),
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

    def __init__(self, spec: ModelSpec, forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 runtime: str, model: Any = None):
        self.spec = spec
        self.name = spec.name
        self.model_id = spec.model_id
        self.input_size = spec.input_size
        self.dim = spec.dim
        self.calibration = spec.calibration
        self.runtime = runtime  # what computes it, e.g. "openvino-bf16" or "tensorflow"
        self._forward = forward  # uint8 batch -> (features, probabilities) as numpy arrays
        self.model = model  # on TensorFlow, the Keras model (preprocessed batch -> [features, probabilities])

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
        return self._forward(batch)

    def __repr__(self) -> str:
        return f"Fingerprinter({self.model_id!r}, {self.runtime}, input_size={self.input_size}, dim={self.dim})"


def scene_floor(name: str) -> tuple[tuple[float, float], ...]:
    """The model's (sim, floor) table for the scenes stage's band of candidates."""
    return SCENE_FLOOR[name]


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


def load_fingerprinter(name: str, weights: str | None = None, runtime: str = "openvino") -> Fingerprinter:
    """Build a backend by name with the given weights (see the module docstring), on `runtime`:

    openvino    the default: the network converted once to OpenVINO IR (with TensorFlow; openvino_ir.py) and
                run by OpenVINO alone, without importing TensorFlow, at the CPU's best precision (bf16 where
                the CPU has it, else f32);
    tensorflow  the Keras network run by TensorFlow, the reference and the fallback.

    Both compute the same fingerprints within RUNTIME_MIN_COSINE and RUNTIME_MIN_TOP5 (tests/test_models.py
    checks it on real photos), so they share a model_id and one cache mixes them.
    Raises ValueError for an unknown model name or runtime and WeightsUnavailable when the weights
    cannot be found, fetched or loaded.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    spec = model_spec(name, weights)
    if runtime == "openvino":
        return _openvino_fingerprinter(spec)
    with networks.quiet_start_up():
        model = _keras_network(spec)
        forward = networks.compile_forward(model, spec.input_size)
    return Fingerprinter(spec, lambda batch: tuple(output.numpy() for output in forward(batch)), "tensorflow",
                         model)


def _keras_network(spec: ModelSpec) -> Any:
    load_network = networks.load_vgg16 if spec.name == "vgg16" else networks.load_squeezenet
    return load_network(spec.weights_path, spec.model_id.endswith("/random"))


def _openvino_fingerprinter(spec: ModelSpec) -> Fingerprinter:
    from photocluster import openvino_ir

    def convert() -> Any:
        import openvino as ov

        with networks.quiet_start_up():
            forward = networks.compile_forward(_keras_network(spec), spec.input_size)
            return ov.convert_model(forward.get_concrete_function())

    key = re.sub(r"[^A-Za-z0-9.]+", "-", spec.model_id) + _IR_CONVERSION
    precision = openvino_ir.best_precision()
    try:
        import openvino as ov

        # A batch is split between several streams, each on part of the cores: with other work on the 2 cores,
        # that was faster than one request on both (SqueezeNet 6-10 against 17-21 ms a photo, VGG16 73-115
        # against 87-143, interleaved), as one stream's pauses do not stall the other.
        compiled = openvino_ir.compile_model(openvino_ir.load_or_convert(spec.name, key, convert), precision,
                                             throughput=True)
        requests = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    except (openvino_ir.IrUnavailable, RuntimeError) as error:
        raise WeightsUnavailable(f"cannot run {spec.name} on OpenVINO: "
                                 f"{' '.join(str(error).split())[:200]}; try --runtime tensorflow") from None

    def forward(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, probs = np.empty((len(batch), spec.dim), np.float32), np.empty((len(batch), 1000), np.float32)
        step = -(-len(batch) // len(requests))

        def keep(request: Any, start: int) -> None:  # each part's own rows: the callbacks never overlap
            features[start:start + step] = request.get_output_tensor(0).data
            probs[start:start + step] = request.get_output_tensor(1).data

        requests.set_callback(keep)
        for start in range(0, len(batch), step):
            requests.start_async([batch[start:start + step]], start)
        requests.wait_all()
        return features, probs

    return Fingerprinter(spec, forward, f"openvino-{precision}")


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


