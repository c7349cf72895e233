"""VGG16's whole arithmetic path through a weights file (`--weights FILE`), checked against Keras's own VGG16.

The ImageNet weights cannot be downloaded in tests, so the reference is Keras's VGG16 with weights=None (random
init): the same layers and arithmetic, whatever the numbers. photocluster loads the saved file and must compute
what Keras computes: keras.applications.vgg16.preprocess_input (caffe mode: RGB to BGR, ImageNet mean off), the
fc2 layer (4096-d) as the fingerprint and the softmax in Keras's class order, which names class i as the i-th
class of photocluster's tables. VGG16 is heavy on a small CPU: one model per module, batches of two.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photocluster import images
from photocluster.labels import imagenet_classes
from photocluster.models import load_fingerprinter

# Keras's own save_weights trips a NumPy 2 deprecation inside TensorFlow; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TABBY = 281  # Keras's ImageNet class index of n02123045 'tabby' (keras imagenet_class_index.json)


@pytest.fixture(scope="module")
def keras_vgg16():
    import keras

    keras.utils.set_random_seed(11)
    return keras.applications.VGG16(include_top=True, weights=None)


@pytest.fixture(scope="module")
def weights_file(keras_vgg16, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg16") / "vgg16.weights.h5"
    keras_vgg16.save_weights(path)
    return path


@pytest.fixture(scope="module")
def from_file(weights_file):
    # TensorFlow, the reference: compared with Keras's own predict to 1e-4 below (OpenVINO's bf16 is checked
    # against it, within the runtimes' tolerance, in test_models.py)
    return load_fingerprinter("vgg16", str(weights_file), runtime="tensorflow")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> np.ndarray:
    """Two real photos as photocluster decodes them for VGG16: uint8 RGB, 224x224."""
    folder = tmp_path_factory.mktemp("photos")
    decoded = []
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.jpg", quality=95)
        decoded.append(images.load_image(folder / f"{name}.jpg", (224, 224)))
    return np.stack(decoded)


def keras_reference(keras_vgg16, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fc2 and the predictions of Keras's model on the same pixels, preprocessed by Keras's own function."""
    import keras
    from keras.applications.vgg16 import preprocess_input

    fc2 = keras.Model(keras_vgg16.input, [keras_vgg16.get_layer("fc2").output, keras_vgg16.output])
    features, probs = fc2.predict_on_batch(preprocess_input(pixels.astype(np.float32)))
    return np.asarray(features), np.asarray(probs)


def test_a_weights_file_gives_keras_fc2_and_predictions_on_the_same_pixels(keras_vgg16, from_file, photos):
    assert from_file.model_id.startswith("vgg16-fc2/file:") and from_file.dim == 4096
    expected_features, expected_probs = keras_reference(keras_vgg16, photos)
    features, probs = from_file.predict(photos)
    assert features.shape == (2, 4096) and probs.shape == (2, 1000)
    # random weights still give a fingerprint that varies, so a wrong preprocessing or layer cannot match by chance
    assert expected_features.std() > 0 and not np.allclose(expected_features[0], expected_features[1])
    scale = np.abs(expected_features).max()
    np.testing.assert_allclose(features, expected_features, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-4, atol=1e-7)


def test_predictions_in_keras_class_order_name_the_class_in_the_summaries(keras_vgg16, tmp_path):
    """A file whose softmax always says class 281 makes the folder summary say 'tabby', through the CLI."""
    predictions = keras_vgg16.get_layer("predictions")
    kernel, bias = predictions.get_weights()
    logits = np.zeros_like(bias)
    logits[TABBY] = 10.0  # softmax ~0.96 for class 281 whatever the photo
    predictions.set_weights([np.zeros_like(kernel), logits])
    try:
        keras_vgg16.save_weights(tmp_path / "tabby.weights.h5")
    finally:
        predictions.set_weights([kernel, bias])
    assert imagenet_classes()[TABBY] == ("n02123045", "tabby")
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("coffee", "rocket"):  # no cats: the weights alone decide the label
        Image.fromarray(getattr(data, name)()).save(lib / f"{name}.jpg")
    done = subprocess.run([sys.executable, "-m", "photocluster", str(lib), "--model", "vgg16", "--weights",
                           str(tmp_path / "tabby.weights.h5"), "--labels", "fine", "--out", str(tmp_path / "out"),
                           "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fingerprinted"] == 2
    assert (tmp_path / "out/patterns/_library/patterns.txt").read_text().splitlines() == ["tabby:2"]
