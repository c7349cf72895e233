"""The fingerprint backends on real photos (SqueezeNet, real weights) and VGG16's plumbing (random init)."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image
from skimage import data

from photocluster import models, weights
from photocluster.labels import imagenet_classes, top_labels
from photocluster.models import WeightsUnavailable, load_fingerprinter, model_spec

# Keras's own save_weights trips a NumPy 2 deprecation inside TensorFlow; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CAT_LABELS = {"tabby", "tiger_cat", "Egyptian_cat"}


def photo(name: str) -> np.ndarray:
    """An RGB skimage sample photo."""
    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img  # stereo pairs come as (left, right, disparity)
    return np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]


def model_input(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR))


def top3_names(fingerprinter, img: np.ndarray) -> set[str]:
    _, probs = fingerprinter.predict(model_input(img, fingerprinter.input_size)[None])
    return {imagenet_classes()[index][1] for index, _ in top_labels(probs[0], k=3)}


def cosines(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def jpeg_again(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


@pytest.fixture()
def empty_weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(folder))
    return folder


# --- SqueezeNet with its real ImageNet weights ----------------------------------------------------

def test_squeezenet_spec(squeezenet):
    assert squeezenet.name == "squeezenet"
    assert squeezenet.model_id == "squeezenet-fire9/imagenet"
    assert squeezenet.input_size == (227, 227) and squeezenet.dim == 512
    assert squeezenet.calibration[0] == (0.0, 0.0) and squeezenet.calibration[-1] == (1.0, 1.0)


@pytest.mark.parametrize("name, expected", [
    ("chelsea", CAT_LABELS),
    ("coffee", {"espresso", "cup", "coffee_mug"}),
    ("camera", {"tripod"}),
    ("stereo_motorcycle", {"moped", "motor_scooter"}),
])
def test_squeezenet_recognises_real_photos(squeezenet, name, expected):
    assert top3_names(squeezenet, photo(name)) & expected


def test_squeezenet_fingerprints_group_variants_of_one_photo(squeezenet):
    cat = photo("chelsea")
    height, width = cat.shape[:2]
    variants = [
        cat,
        np.asarray(Image.fromarray(cat).resize((width // 2, height // 2), Image.Resampling.LANCZOS)),
        jpeg_again(cat, quality=50),
        cat[height // 20: -height // 20, width // 20: -width // 20],  # 5% cropped off each side
    ]
    unrelated = [photo(name) for name in ("coffee", "camera", "astronaut", "rocket", "hubble_deep_field")]
    batch = np.stack([model_input(img, squeezenet.input_size) for img in variants + unrelated])
    features, probs = squeezenet.predict(batch)
    assert features.shape == (9, 512) and features.dtype == np.float32
    assert probs.shape == (9, 1000) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    similarity = cosines(features)
    among_variants = similarity[:4, :4]
    to_unrelated = similarity[:4, 4:]
    assert among_variants.min() > 0.9
    assert to_unrelated.max() < 0.6


def test_predict_is_batch_independent_and_traces_once(squeezenet):
    photos = [model_input(photo(name), squeezenet.input_size) for name in ("chelsea", "coffee", "camera")]
    together, together_probs = squeezenet.predict(np.stack(photos))
    for index, img in enumerate(photos):
        alone, alone_probs = squeezenet.predict(img[None])
        np.testing.assert_allclose(alone[0], together[index], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(alone_probs[0], together_probs[index], atol=1e-5)
    on_tensorflow = load_fingerprinter("squeezenet", runtime="tensorflow")
    for batch in (np.stack(photos), np.stack(photos[:2]), photos[0][None]):
        on_tensorflow.predict(batch)
    assert on_tensorflow.model is not None
    # no retracing per batch size: the traced function is the Fingerprinter's forward's one closure cell
    [traced] = [cell.cell_contents for cell in on_tensorflow._forward.__closure__
                if hasattr(cell.cell_contents, "experimental_get_tracing_count")]
    assert traced.experimental_get_tracing_count() == 1


def test_predict_rejects_wrong_input(squeezenet):
    with pytest.raises(ValueError, match="uint8"):
        squeezenet.predict(np.zeros((1, 224, 224, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        squeezenet.predict(np.zeros((1, 227, 227, 3), np.float32))
    features, probs = squeezenet.predict(np.zeros((0, 227, 227, 3), np.uint8))
    assert features.shape == (0, 512) and probs.shape == (0, 1000)


def test_squeezenet_weights_by_path_give_the_same_model(squeezenet, squeezenet_weights, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copyfile(squeezenet_weights, copy)
    assert model_spec("squeezenet", str(copy)).model_id == "squeezenet-fire9/imagenet"  # same bytes, same id


def test_squeezenet_saved_by_keras3_round_trips(tmp_path):
    random_model = load_fingerprinter("squeezenet", weights="random", runtime="tensorflow")
    assert random_model.model_id == "squeezenet-fire9/random"
    saved = tmp_path / "mine.weights.h5"
    random_model.model.save_weights(saved)
    reloaded = load_fingerprinter("squeezenet", weights=str(saved), runtime="tensorflow")
    assert reloaded.model_id.startswith("squeezenet-fire9/file:")
    batch = np.random.default_rng(1).integers(0, 256, (2, 227, 227, 3), dtype=np.uint8)
    for expected, got in zip(random_model.predict(batch), reloaded.predict(batch)):
        np.testing.assert_array_equal(expected, got)


def test_random_init_is_reproducible():
    # One model_id must mean one model, so "random" weights come from a fixed seed.
    batch = np.random.default_rng(2).integers(0, 256, (1, 227, 227, 3), dtype=np.uint8)
    first = load_fingerprinter("squeezenet", weights="none").predict(batch)[0]
    second = load_fingerprinter("squeezenet", weights="random").predict(batch)[0]
    np.testing.assert_array_equal(first, second)


def test_squeezenet_file_with_wrong_shapes_is_refused(squeezenet_weights, tmp_path):
    broken = tmp_path / "broken.h5"
    shutil.copyfile(squeezenet_weights, broken)
    with h5py.File(broken, "r+") as h5:
        group = h5["conv10"]
        del group["conv10_W:0"]
        group["conv10_W:0"] = np.zeros((1, 1, 512, 10), np.float32)  # a 10-class head
    with pytest.raises(WeightsUnavailable, match="conv10"):
        load_fingerprinter("squeezenet", weights=str(broken))


def test_missing_squeezenet_weights_say_how_to_fetch(empty_weights_dir):
    spec = model_spec("squeezenet")  # knowing the id needs no weights
    assert spec.model_id == "squeezenet-fire9/imagenet" and spec.weights_path is None
    with pytest.raises(WeightsUnavailable, match="photocluster fetch-weights squeezenet"):
        load_fingerprinter("squeezenet")


def test_tampered_squeezenet_weights_are_not_used(empty_weights_dir, squeezenet_weights):
    tampered = bytearray(squeezenet_weights.read_bytes())
    tampered[-1000] ^= 0xFF
    (empty_weights_dir / weights.SQUEEZENET.filename).write_bytes(tampered)
    with pytest.raises(WeightsUnavailable, match="fetch-weights"):
        load_fingerprinter("squeezenet")


# --- VGG16 (random init: no ImageNet download in tests) -------------------------------------------

@pytest.fixture(scope="module")
def vgg16_random():
    return load_fingerprinter("vgg16", weights="random", runtime="tensorflow")


def test_vgg16_outputs_fc2_and_imagenet_softmax(vgg16_random):
    assert vgg16_random.model_id == "vgg16-fc2/random"
    assert vgg16_random.input_size == (224, 224) and vgg16_random.dim == 4096
    batch = np.random.default_rng(3).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    features, probs = vgg16_random.predict(batch)
    assert features.shape == (3, 4096) and features.dtype == np.float32
    assert probs.shape == (3, 1000) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (features >= 0).all()  # fc2 is a ReLU layer


def test_vgg16_weights_file_round_trips(vgg16_random, tmp_path):
    saved = tmp_path / "vgg16.weights.h5"
    vgg16_random.model.save_weights(saved)
    reloaded = load_fingerprinter("vgg16", weights=str(saved), runtime="tensorflow")
    assert reloaded.model_id.startswith("vgg16-fc2/file:")
    batch = np.random.default_rng(4).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    for expected, got in zip(vgg16_random.predict(batch), reloaded.predict(batch)):
        np.testing.assert_array_equal(expected, got)


def test_vgg16_standard_file_in_weights_dir_is_found(empty_weights_dir):
    standard = empty_weights_dir / weights.VGG16_FILENAME
    standard.write_bytes(b"stand-in for the Keras file")
    spec = model_spec("vgg16")
    assert spec.weights_path == standard.resolve()
    assert spec.model_id.startswith("vgg16-fc2/file:")
    standard.unlink()
    assert model_spec("vgg16") == models.ModelSpec("vgg16", "vgg16-fc2/imagenet", 4096, (224, 224),
                                                   models.calibration("vgg16"), None)


@pytest.mark.parametrize("model", models.MODEL_NAMES)
def test_unusable_weights_files_are_one_line_errors(model, tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_fingerprinter(model, weights=str(tmp_path / "missing.h5"))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(np.random.default_rng(5).bytes(4096))
    with pytest.raises(WeightsUnavailable, match="not HDF5") as caught:
        load_fingerprinter(model, weights=str(garbage))
    assert "\n" not in str(caught.value)


def test_vgg16_refuses_squeezenet_weights(squeezenet_weights):
    with pytest.raises(WeightsUnavailable, match="cannot load VGG16 weights") as caught:
        load_fingerprinter("vgg16", weights=str(squeezenet_weights))
    assert "\n" not in str(caught.value)


def test_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="vgg16, squeezenet"):
        model_spec("resnet")
    with pytest.raises(ValueError):
        load_fingerprinter("resnet")


def test_importing_models_does_not_load_tensorflow():
    # The CLI's --help and a run with nothing new to fingerprint must not pay for TensorFlow.
    code = ("import sys, photocluster.models as m; m.model_spec('vgg16'); m.model_spec('squeezenet', 'random'); "
            "m.networks; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the runtimes: OpenVINO (the default) against TensorFlow (the reference) -------------------------------------

def same_fingerprints(ours, reference, batch):
    """Per photo: the cosine between the runtimes' fingerprints, and how many top-5 labels they share."""
    (features, probs), (ref_features, ref_probs) = ours.predict(batch), reference.predict(batch)
    cos = (features * ref_features).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(ref_features, axis=1)
    shared = [len(set(np.argsort(-p)[:5]) & set(np.argsort(-q)[:5])) for p, q in zip(probs, ref_probs)]
    return cos, shared


def devset_batch(devset, size, count=16):
    names = sorted(p for p in (devset / "album").iterdir() if p.suffix.lower() == ".jpg")[:count]
    height, width = size
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((width, height), Image.BILINEAR))
                     for p in names])


def test_openvino_and_tensorflow_give_the_same_squeezenet_fingerprints(squeezenet, devset):
    assert squeezenet.runtime in ("openvino-bf16", "openvino-f32")  # the default runtime
    reference = load_fingerprinter("squeezenet", runtime="tensorflow")
    cos, shared = same_fingerprints(squeezenet, reference, devset_batch(devset, squeezenet.input_size))
    assert cos.min() >= models.RUNTIME_MIN_COSINE
    assert min(shared) >= models.RUNTIME_MIN_TOP5
    assert squeezenet.model_id == reference.model_id  # within the tolerance: one cache holds both


def test_openvino_and_tensorflow_give_the_same_vgg16_fingerprints(vgg16_random, devset):
    ours = load_fingerprinter("vgg16", weights="random")
    assert ours.runtime.startswith("openvino")
    cos, _ = same_fingerprints(ours, vgg16_random, devset_batch(devset, ours.input_size, 8))
    assert cos.min() >= models.RUNTIME_MIN_COSINE  # (random weights: their labels mean nothing to compare)


def test_the_stored_openvino_model_runs_without_tensorflow(squeezenet):
    """Once converted (the session's squeezenet fixture did it), a run loads no TensorFlow."""
    script = ("import sys, numpy as np\n"
              "from photocluster.models import load_fingerprinter\n"
              "features, probs = load_fingerprinter('squeezenet').predict(np.zeros((2, 227, 227, 3), np.uint8))\n"
              "print('tensorflow' in sys.modules, features.shape, probs.shape)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "(2,", "512)", "(2,", "1000)"]


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime"):
        load_fingerprinter("squeezenet", runtime="onnx")
