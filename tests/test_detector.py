"""The CenterNet detector: the tfjs graph loader on a small graph made here, and the real model on real photos."""
import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import detector, weights
from photocluster.detector import COCO_LABELS, INPUT_SIZE, DetectorError, load_detector, read_weights
from photocluster.weights import WeightsUnavailable
from tests.conftest import GET_TEST_PHOTOS, PHOTO_SOURCE_UNREACHABLE, load_script

# A detection this sure counts as "the photo shows it" in these tests (human's own default floor is 0.2).
SURE = 0.3


@pytest.fixture(scope="session")
def centernet():
    """The real detector (CI fetches its weights beforehand, as SqueezeNet's)."""
    weights.fetch_weights("centernet")
    return load_detector()


@pytest.fixture(scope="session")
def extra_photos():
    """Photos the devset lacks (scripts/get_test_photos.py --extras: Scratch 1.4's kitchen, from Debian)."""
    done = subprocess.run([sys.executable, str(GET_TEST_PHOTOS), "--extras"], capture_output=True, text=True)
    if done.returncode == PHOTO_SOURCE_UNREACHABLE:
        pytest.skip(f"no real test photos: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def as_input(path) -> np.ndarray:
    """The photo as the detector takes it: RGB, squashed to 512x512, a batch of one."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR))[np.newaxis]


def sure_labels(found) -> set[str]:
    return {d.label for d in found if d.score >= SURE}


def centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


# --- the real model on real photos --------------------------------------------------------------------------------

def test_photos_with_people_get_person(centernet, devset):
    # bar55.jpg: friends at a bar, a couple in front, several people behind them; jesper.jpg: one man's face close
    # up, filling the frame. Both show people, and nothing else fills jesper.jpg.
    bar, face = centernet.detect(np.concatenate([as_input(devset / "album/bar55.jpg"),
                                                 as_input(devset / "album/jesper.jpg")]))
    assert "person" in sure_labels(bar)
    assert "person" in sure_labels(face)
    best = max((d for d in face if d.label == "person"), key=lambda d: d.score)
    x1, y1, x2, y2 = best.box
    assert (x2 - x1) * (y2 - y1) > 0.5  # the face fills most of the photo


def test_a_kitchen_photo_gets_at_least_two_kitchen_objects(centernet, extra_photos):
    # Scratch's kitchen.jpg (looked at): a white stove with a kettle on the left, a dishwasher, the counter with
    # a sink and tap on the right, bottles on the counter and the shelves, mugs and jars on the shelves.
    [found] = centernet.detect(as_input(extra_photos / "kitchen.jpg"))
    seen = sure_labels(found) & {"oven", "sink", "bottle", "cup"}
    assert len(seen) >= 2, sure_labels(found)
    # Where they are checks the box format (x before y, fractions of the photo): the stove stands in the left
    # third, reaching the floor; the sink in the right half, in the counter top (y 170..185 of 360 px).
    ovens = [d for d in found if d.label == "oven" and d.score >= SURE]
    sinks = [d for d in found if d.label == "sink" and d.score >= SURE]
    assert all(centre(d.box)[0] < 0.4 and centre(d.box)[1] > 0.5 and d.box[3] > 0.8 for d in ovens)
    assert all(centre(d.box)[0] > 0.6 and 0.4 < centre(d.box)[1] < 0.6 for d in sinks)
    assert ovens or sinks


def test_a_landscape_gets_no_object(centernet, devset):
    # nature/Dune.jpg: beach grass against the sea and the sky; no thing COCO names is in it.
    [found] = centernet.detect(as_input(devset / "nature/Dune.jpg"))
    assert sure_labels(found) == set()


def test_detections_are_well_formed(centernet, devset):
    [found] = centernet.detect(as_input(devset / "album/bar55.jpg"), min_score=0.1)
    assert found
    for d in found:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
        assert d.label in COCO_LABELS and 0.1 <= d.score <= 1
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_a_batch_gives_what_each_photo_gives_alone(centernet, devset):
    photos = [as_input(devset / name) for name in ("album/bar55.jpg", "nature/Dune.jpg", "album/donna.jpg")]
    alone = [centernet.detect(photo)[0] for photo in photos]
    together = centernet.detect(np.concatenate(photos))
    assert [[d.label for d in found] for found in together] == [[d.label for d in found] for found in alone]
    for batch_found, alone_found in zip(together, alone):
        np.testing.assert_allclose([d.score for d in batch_found], [d.score for d in alone_found], atol=1e-4)
    assert centernet.detect(np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)) == []


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("photo", ["album/bar55.jpg", "album/jesper.jpg", "album/pool_2.jpg"])
def test_each_object_is_reported_once(centernet, devset, photo):
    # As human does: of boxes overlapping by more than NMS_IOU only the best stays, so "3 persons" are 3 people.
    # jesper.jpg shows one man: one person.
    [found] = centernet.detect(as_input(devset / photo), min_score=0.05)
    overlaps = [(a.label, b.label) for i, a in enumerate(found) for b in found[i + 1:] if iou(a.box, b.box) > 0.41]
    assert overlaps == []  # (boxes are clipped to the photo after NMS, which may move an IoU a little)
    if photo.endswith("jesper.jpg"):
        assert [d.label for d in found if d.score >= SURE] == ["person"]


@pytest.fixture(scope="session")
def centernet_on_tensorflow():
    weights.fetch_weights("centernet")
    return load_detector(runtime="tensorflow")


ALBUM = ["album/bar55.jpg", "album/jesper.jpg", "album/pool_2.jpg", "album/donna.jpg", "nature/Dune.jpg"]


def test_openvino_finds_what_tensorflow_finds(centernet, centernet_on_tensorflow, devset):
    """The two runtimes of one model: the same objects (a box of the same label overlapping by IoU >= 0.5), their
    scores within RUNTIME_TOLERANCE. (Boxes may differ more: bar55.jpg has two peaks on one person 0.0003 apart in
    score, with different boxes; the runtimes' rounding picks one each, and NMS drops the other.)"""
    batch = np.concatenate([as_input(devset / name) for name in ALBUM])
    tolerance = detector.RUNTIME_TOLERANCE
    on_openvino, on_tensorflow = centernet.detect(batch, 0.1), centernet_on_tensorflow.detect(batch, 0.1)
    for name, ours, reference in zip(ALBUM, on_openvino, on_tensorflow):
        # Compare the detections clear of the floor, so one nudged across 0.1 by rounding is no failure.
        for this, other in ((ours, reference), (reference, ours)):
            for found in (d for d in this if d.score >= 0.1 + tolerance):
                twins = [d for d in other if d.label == found.label and iou(d.box, found.box) >= 0.5]
                assert twins, f"{name}: {found} has no twin"
                assert min(abs(d.score - found.score) for d in twins) <= tolerance, name


def test_the_stored_openvino_model_runs_without_tensorflow(centernet, devset):
    """Once converted (the centernet fixture did it), loading the detector imports no TensorFlow."""
    script = ("import sys, numpy as np\n"
              "from photocluster.detector import load_detector\n"
              "found = load_detector().detect(np.zeros((1, 512, 512, 3), np.uint8))\n"
              "print('tensorflow' in sys.modules, len(found))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1"]


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime"):
        load_detector(runtime="onnx")


def test_detect_refuses_a_batch_of_the_wrong_size(centernet):
    with pytest.raises(ValueError, match="512"):
        centernet.detect(np.zeros((1, 224, 224, 3), np.uint8))


def test_the_shipped_labels_are_those_of_the_stored_labels_ts():
    # photocluster/data/coco_labels.json is made by scripts/make_coco_labels.py from the fetched labels.ts.
    weights.fetch_weights("centernet")
    text = (weights.npm_weights_dir(weights.CENTERNET) / "labels.ts").read_text()
    assert COCO_LABELS == tuple(load_script("make_coco_labels").parse_labels(text))
    assert len(COCO_LABELS) == 80 and COCO_LABELS[0] == "person" and COCO_LABELS[-1] == "toothbrush"


def test_missing_weights_are_one_clear_line(tmp_path):
    with pytest.raises(WeightsUnavailable) as caught:
        load_detector(tmp_path)
    assert "photocluster fetch-weights centernet" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_damaged_model_file_is_one_clear_line(tmp_path, monkeypatch):
    weights.fetch_weights("centernet")
    for file in weights.CENTERNET.files:
        (tmp_path / file.filename).write_bytes((weights.npm_weights_dir(weights.CENTERNET) / file.filename)
                                               .read_bytes())
    (tmp_path / "centernet.bin").write_bytes(b"\0" * weights.CENTERNET.files[1].size)  # right size, wrong bytes
    with pytest.raises(WeightsUnavailable, match="damaged.*centernet.bin"):
        load_detector(tmp_path)


# --- the loader on a small tfjs graph ---------------------------------------------------------------------------

def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def _const(name: str) -> dict:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"},
                                                   "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {}}}}}


def _fused(name: str, op: str, inputs: list[str], fused_ops: list[str]) -> dict:
    """A node as tfjs's converter writes it: fused_ops listed, no TArgs."""
    return {"name": name, "op": op, "input": inputs, "device": "/device:CPU:0",
            "attr": {"T": {"type": "DT_FLOAT"}, "strides": _ints(1, 1, 1, 1), "dilations": _ints(1, 1, 1, 1),
                     "padding": _s("SAME"), "data_format": _s("NHWC"), "explicit_paddings": {"list": {}},
                     "num_args": {"i": "1"}, "epsilon": {"f": 0},
                     "fused_ops": {"list": {"s": [_s(op)["s"] for op in fused_ops]}}}}


def _tiny_model(tmp_path, depthwise_ops=("BiasAdd", "Relu6")):
    """image -> _FusedConv2D(BiasAdd, Relu) -> FusedDepthwiseConv2dNative(...), weights in four encodings.

    Returns the model dict and the weights it should decode to (worked out here, not by the loader)."""
    rng = np.random.default_rng(13)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype(np.float16)  # stored as float16
    bias_q = np.array([0, 10, 200, 255], np.uint8)  # uint8: q * 0.02 - 1
    depthwise = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)  # plain float32
    dbias_q = np.array([0, 1000, 40000, 65535], np.uint16)  # uint16: q * 0.0001 - 3
    expected = {"kernel": kernel.astype(np.float32), "bias": bias_q * np.float32(0.02) - np.float32(1),
                "dw": depthwise, "dbias": dbias_q * np.float32(0.0001) - np.float32(3)}
    (tmp_path / "tiny.bin").write_bytes(kernel.astype("<f2").tobytes() + bias_q.tobytes()
                                        + depthwise.astype("<f4").tobytes() + dbias_q.astype("<u2").tobytes())
    manifest = [{"paths": ["tiny.bin"], "weights": [
        {"name": "kernel", "shape": [3, 3, 2, 4], "dtype": "float32",
         "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "bias", "shape": [4], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.02, "min": -1.0, "original_dtype": "float32"}},
        {"name": "dw", "shape": [3, 3, 4, 1], "dtype": "float32"},
        {"name": "dbias", "shape": [4], "dtype": "float32",
         "quantization": {"dtype": "uint16", "scale": 0.0001, "min": -3.0, "original_dtype": "float32"}}]}]
    nodes = [{"name": "image", "op": "Placeholder",
              "attr": {"dtype": {"type": "DT_FLOAT"},
                       "shape": {"shape": {"dim": [{"size": "1"}, {"size": "6"}, {"size": "6"}, {"size": "2"}]}}}},
             *map(_const, ("kernel", "bias", "dw", "dbias")),
             _fused("conv", "_FusedConv2D", ["image", "kernel", "bias"], ["BiasAdd", "Relu"]),
             _fused("out", "FusedDepthwiseConv2dNative", ["conv", "dw", "dbias"], list(depthwise_ops))]
    return {"modelTopology": {"node": nodes, "library": {}, "versions": {}}, "weightsManifest": manifest}, expected


def test_read_weights_decodes_float16_uint8_uint16_and_plain(tmp_path):
    model, expected = _tiny_model(tmp_path)
    arrays = read_weights(model["weightsManifest"], tmp_path)
    assert set(arrays) == set(expected)
    for name, values in expected.items():
        assert arrays[name].dtype == np.float32
        np.testing.assert_allclose(arrays[name], values, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("depthwise_ops, activation", [(("BiasAdd", "Relu6"), "relu6"), (("BiasAdd",), None)])
def test_the_graph_computes_what_its_fused_ops_say(tmp_path, depthwise_ops, activation):
    import tensorflow as tf

    model, w = _tiny_model(tmp_path, depthwise_ops)
    graph_def = detector.build_graph_def(model["modelTopology"], read_weights(model["weightsManifest"], tmp_path))
    forward = detector.import_pruned(graph_def, "image:0", "out:0")
    image = np.random.default_rng(1).normal(size=(1, 6, 6, 2)).astype(np.float32) * 3
    conv = tf.nn.relu(tf.nn.conv2d(image, w["kernel"], 1, "SAME") + w["bias"])
    out = tf.nn.depthwise_conv2d(conv, w["dw"], [1, 1, 1, 1], "SAME") + w["dbias"]
    out = tf.nn.relu6(out) if activation == "relu6" else out
    np.testing.assert_allclose(forward(tf.constant(image)).numpy(), out.numpy(), rtol=1e-5, atol=1e-5)


def test_an_unknown_fused_activation_is_refused_clearly(tmp_path):
    model, _ = _tiny_model(tmp_path, ("BiasAdd", "Prelu"))
    with pytest.raises(ValueError, match="out fuses.*Prelu"):
        detector.build_graph_def(model["modelTopology"], read_weights(model["weightsManifest"], tmp_path))


@pytest.mark.parametrize("change, message", [
    ({"quantization": {"dtype": "int4", "scale": 1, "min": 0}}, "quantised as int4"),
    ({"dtype": "string"}, "dtype string"),
    ({"shape": [3, 3, 2, 5]}, "too short|describes"),
])
def test_weights_it_cannot_read_are_refused_clearly(tmp_path, change, message):
    model, _ = _tiny_model(tmp_path)
    model["weightsManifest"][0]["weights"][0].update(change)
    with pytest.raises(ValueError, match=message):
        read_weights(model["weightsManifest"], tmp_path)


def test_a_weights_file_longer_than_its_manifest_is_refused(tmp_path):
    model, _ = _tiny_model(tmp_path)
    with open(tmp_path / "tiny.bin", "ab") as handle:
        handle.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="describes"):
        read_weights(model["weightsManifest"], tmp_path)


def test_a_graph_that_does_not_import_is_a_detector_error(tmp_path):
    model, _ = _tiny_model(tmp_path)
    graph_def = detector.build_graph_def(model["modelTopology"], read_weights(model["weightsManifest"], tmp_path))
    with pytest.raises(DetectorError, match="cannot import"):
        detector.import_pruned(graph_def, "image:0", "tower_0/detections:0")


def test_labels_file_is_valid_json_with_80_names():
    table = json.loads((Path(detector.__file__).parent / "data" / "coco_labels.json").read_text())
    assert len(table["labels"]) == len(set(table["labels"])) == 80
