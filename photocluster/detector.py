"""The object detector: CenterNet (MobileNetV3 backbone) trained on COCO's 80 classes, from @vladmandic/human.

`photocluster fetch-weights centernet` stores the model's files (weights.CENTERNET). The model is a TensorFlow.js
graph model; it is loaded into TensorFlow 2 here, without the tensorflowjs package (which pins its own TensorFlow
and pulls in JAX and flax): the tfjs JSON topology is a GraphDef in protobuf's JSON form, its Const nodes get their
values from the weights manifest, and the few fused ops tfjs writes that TensorFlow will not import are mended.
No library does this conversion outside tensorflowjs, hence the hand-written loader.

What the model computes, checked by hand on real photos (tests/test_detector.py checks the outcome on every run):
- input `tower_0/images`: [1, 512, 512, 3] float RGB in 0..255, no normalisation. human's image.ts casts the
  browser's RGB pixels to float32 as they are (line 246) and centernet.ts only resizes them to 512x512. Devset
  album/bar55.jpg (friends at a bar, a martini glass at the bottom left, a white napkin at the bottom right):
  0..255 RGB gives "person 0.52, wine glass 0.50, cake 0.46" (the issue's figures); the same photo scaled to 0..1
  tops at 0.01, to -1..1 at 0.06; as BGR 0..255 the person drops to 0.35. So RGB 0..255 it is.
- output `tower_0/detections`: [1, 100, 6], rows x1, y1, x2, y2, score, class, best score first. Boxes are in
  pixels of the 512x512 input, x before y (the graph multiplies the 128x128 heatmap position by 4, node
  tower_0/mul_3/y; human divides by the input size). On bar55.jpg resized to 512x512 the wine glass box is
  x 27..98, y 441..512: the glass stands in the bottom-left corner; the woman at the left edge is x 2..79,
  y 102..484, a tall narrow strip, as she is. The class is a 0-based index into labels.ts (the flat heatmap index
  mod 80; human takes labels[class]): the wine glass is class 40, labels.ts's 41st entry, the people class 0.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from photocluster import networks, openvino_ir
from photocluster import weights as weights_store
from photocluster.detection_columns import DETECTOR_ID
from photocluster.labels import Detection, coco_labels
from photocluster.settings import RUNTIMES
from photocluster.weights import WeightsUnavailable

log = logging.getLogger(__name__)

INPUT_SIZE = 512
# Names what computes the detections, for a cache to tell them apart: the files are pinned (weights.CENTERNET), so
# this changes only when they or the arithmetic here change.
MODEL_ID = DETECTOR_ID
# The model reports its 100 best heatmap peaks, several of them one object seen twice (the same box as "person"
# twice, or as "wine glass" and "cup"). human's centernet.ts keeps, of boxes overlapping by more than this
# intersection over union, only the best scoring, whatever their classes (config.ts: object.iouThreshold 0.4);
# so does photocluster, so that a count of detections is a count of objects.
NMS_IOU = 0.4
_MAX_ROWS = 100
# How far OpenVINO's detection scores may stray from TensorFlow's for the two to count as one model (one MODEL_ID
# in the cache): the same objects, each scored within this. Measured on 40 devset album photos at >= 0.2: at most
# 0.0016, and the same labels in the same order (tests/test_detector.py checks it on real photos).
RUNTIME_TOLERANCE = 0.005
_INPUT = "tower_0/images:0"
_OUTPUT = "tower_0/detections:0"


# COCO's 80 class names in the model's class order (index = the model's class number), from human's labels.ts,
# shipped as package data (scripts/make_coco_labels.py) so that cached detections can be named without the weights.
COCO_LABELS: tuple[str, ...] = coco_labels()


class DetectorError(WeightsUnavailable):
    """The stored model files cannot be turned into a TensorFlow graph. The message is one line."""


class Detector:
    """CenterNet on uint8 RGB batches of INPUT_SIZE x INPUT_SIZE photos."""

    input_size = (INPUT_SIZE, INPUT_SIZE)  # (height, width), as a Fingerprinter's

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray]) -> None:
        self._forward = forward  # [n, 512, 512, 3] uint8 images -> [n, 100, 7]: the model's rows, then kept 0/1

    def detect(self, batch: np.ndarray, min_score: float = 0.0) -> list[list[Detection]]:
        """Each photo's detections with a score >= min_score, best first, each object once (NMS_IOU)."""
        if batch.ndim != 4 or batch.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or batch.dtype != np.uint8:
            raise ValueError(f"detect takes uint8 (n, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {batch.dtype} {batch.shape}")
        if not len(batch):
            return []
        return [_detections(rows, min_score) for rows in self._forward(batch)]


def _detections(rows: np.ndarray, min_score: float) -> list[Detection]:
    found = []
    for x1, y1, x2, y2, score, index, kept in rows:
        if not kept or not score >= min_score or not 0 <= index < len(COCO_LABELS):  # human skips a NaN class
            continue
        box = tuple(float(np.clip(v / INPUT_SIZE, 0.0, 1.0)) for v in (x1, y1, x2, y2))
        found.append(Detection(COCO_LABELS[int(index)], float(score), box))
    return found


def load_detector(weights_dir: Path | None = None, runtime: str = "openvino") -> Detector:
    """The detector from the files `photocluster fetch-weights centernet` stores (in weights_dir, else their
    folder of the photocluster weights folder). Raises WeightsUnavailable, one line, when they are missing or
    unusable.

    runtime "openvino" (the default) runs the model on OpenVINO, from an IR converted once with TensorFlow and
    stored in the weights folder (openvino_ir.py): about twice as fast as TensorFlow on a CPU, and later loads
    import no TensorFlow. "tensorflow" runs the imported graph on TensorFlow (the fallback, and the reference the
    tests compare OpenVINO's detections with).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    spec = weights_store.CENTERNET
    folder = weights_dir or weights_store.npm_weights_dir(spec)
    problem = weights_store.missing_npm_weights(spec, folder)
    if problem:
        raise WeightsUnavailable(problem)
    if runtime == "openvino":
        return Detector(_openvino_forward(folder))
    with networks.quiet_start_up():
        return Detector(_tensorflow_forward(_compile(_graph_def(folder))))


def _graph_def(folder: Path) -> Any:
    spec = weights_store.CENTERNET
    try:
        model = json.loads((folder / spec.topology).read_text(encoding="utf-8"))
        arrays = read_weights(model["weightsManifest"], folder)
        return build_graph_def(model["modelTopology"], arrays)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DetectorError(f"cannot load the CenterNet model from {folder}: {error}") from None


# --- weights manifest -----------------------------------------------------------------------

_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANTISED_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_weights(manifest: list[dict], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of a tfjs weights manifest as a numpy array, by name.

    Each group's shard files are one byte stream, its weights laid out in order. A quantised weight is stored as
    float16 (cast back), or as uint8/uint16 with value = q * scale + min (rounded for int32), as tfjs decodes it.
    """
    arrays = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            array, offset = _decode_weight(entry, data, offset)
            arrays[entry["name"]] = array
        if offset != len(data):
            raise ValueError(f"weights files {group['paths']} hold {len(data)} bytes, the manifest describes {offset}")
    return arrays


def _decode_weight(entry: dict, data: bytes, offset: int) -> tuple[np.ndarray, int]:
    name, dtype, shape = entry["name"], entry["dtype"], tuple(entry["shape"])
    count = math.prod(shape)
    quantisation = entry.get("quantization")
    if dtype not in _PLAIN_DTYPES:
        raise ValueError(f"weight {name} has dtype {dtype}, which photocluster cannot read")
    if quantisation is None:
        stored = np.dtype(_PLAIN_DTYPES[dtype])
    elif quantisation.get("dtype") in _QUANTISED_DTYPES:
        stored = np.dtype(_QUANTISED_DTYPES[quantisation["dtype"]])
    else:
        raise ValueError(f"weight {name} is quantised as {quantisation.get('dtype')}, which photocluster cannot read")
    end = offset + count * stored.itemsize
    if end > len(data):
        raise ValueError(f"weights file too short for {name}")
    values = np.frombuffer(data, dtype=stored.newbyteorder("<"), count=count, offset=offset)
    if quantisation is not None and stored != np.float16:
        values = values * np.float32(quantisation["scale"]) + np.float32(quantisation["min"])
        if dtype == "int32":
            values = np.round(values)
    return values.astype(_PLAIN_DTYPES[dtype]).reshape(shape), end


# --- graph ----------------------------------------------------------------------------------

# The activations tfjs may fuse after BiasAdd in FusedDepthwiseConv2dNative that are plain TensorFlow ops.
_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Sigmoid", "Tanh"}
# The fused convolutions that are split into plain ops (_split_fused), and each one's convolution.
_UNFUSED = {"FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedConv2D": "Conv2D"}


def build_graph_def(topology: dict, arrays: dict[str, np.ndarray]) -> Any:
    """The tfjs modelTopology as a TensorFlow GraphDef, Const values filled in and fused ops made importable."""
    import tensorflow as tf
    from google.protobuf import json_format

    graph_def = json_format.ParseDict(topology, tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    nodes = []
    for node in graph_def.node:
        node.device = ""  # tfjs pins some nodes to /device:CPU:0; TensorFlow places them itself
        if node.op == "Const":
            _fill_const(node, arrays)
        if node.op == "_FusedMatMul":
            _add_targs(node)
        nodes.extend(_split_fused(node) if node.op in _UNFUSED else [node])
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    return graph_def


def _fill_const(node: Any, arrays: dict[str, np.ndarray]) -> None:
    import tensorflow as tf

    if node.name not in arrays:
        raise ValueError(f"the weights manifest has no value for {node.name}")
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arrays[node.name]))


def _add_targs(node: Any) -> None:
    """TensorFlow's _FusedConv2D/_FusedMatMul need TArgs (the types of the extra args); tfjs leaves it out."""
    if "TArgs" not in node.attr:
        node.attr["TArgs"].list.type.extend([node.attr["T"].type] * node.attr["num_args"].i)


def _split_fused(node: Any) -> list[Any]:
    """A fused convolution as its convolution, BiasAdd and activation.

    tfjs's FusedDepthwiseConv2dNative is no TensorFlow op, and OpenVINO's TensorFlow reader has no rule for
    TensorFlow's own _FusedConv2D; both read the plain ops. (TensorFlow fuses them again when it runs the graph.)
    The last node keeps the fused node's name, so the nodes that read it are unchanged.
    """
    from tensorflow.core.framework import node_def_pb2

    fused = [op.decode() for op in node.attr["fused_ops"].list.s]
    if not fused or fused[0] != "BiasAdd" or len(fused) > 2 or (len(fused) == 2 and fused[1] not in _ACTIVATIONS):
        raise ValueError(f"{node.name} fuses {fused}, which photocluster cannot rewrite")
    if len(node.input) != 3:
        raise ValueError(f"{node.name} has {len(node.input)} inputs, expected image, filter and bias")
    image, kernel, bias = node.input
    conv = node_def_pb2.NodeDef(name=f"{node.name}/conv", op=_UNFUSED[node.op],
                                input=[image, kernel], device=node.device)
    for key in ("T", "strides", "padding", "dilations", "data_format", "explicit_paddings"):
        if key in node.attr:
            conv.attr[key].CopyFrom(node.attr[key])
    steps = [conv]
    names = [f"{node.name}/bias_add", node.name] if len(fused) == 2 else [node.name]
    add = node_def_pb2.NodeDef(name=names[0], op="BiasAdd", input=[conv.name, bias], device=node.device)
    add.attr["T"].CopyFrom(node.attr["T"])
    add.attr["data_format"].CopyFrom(node.attr["data_format"])
    steps.append(add)
    if len(fused) == 2:
        activation = node_def_pb2.NodeDef(name=names[1], op=fused[1], input=[add.name], device=node.device)
        activation.attr["T"].CopyFrom(node.attr["T"])
        steps.append(activation)
    return steps


def _compile(graph_def: Any) -> Any:
    """The graph imported and pruned to image in, detections out, behind a uint8 -> float 0..255 cast.

    The model takes one image at a time (its reshapes hold batch 1). tf.map_fn runs it per image inside one traced
    graph, which on 2 cores took 23-24 ms a photo where a Python loop of one call per photo took 35-39 ms (16
    devset photos, quiet machine; 42 against 45 ms with other work running). Batch size matters little beyond that.
    """
    import tensorflow as tf

    pruned = import_pruned(graph_def, _INPUT, _OUTPUT)

    def one(image):
        rows = pruned(tf.cast(image[tf.newaxis], tf.float32))[0]
        boxes = tf.gather(rows[:, :4], [1, 0, 3, 2], axis=1)  # TensorFlow's NMS takes y1, x1, y2, x2
        keep = tf.image.non_max_suppression(boxes, rows[:, 4], _MAX_ROWS, iou_threshold=NMS_IOU)
        kept = tf.scatter_nd(keep[:, tf.newaxis], tf.ones_like(keep, tf.float32), [_MAX_ROWS])
        return tf.concat([rows, kept[:, tf.newaxis]], axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.uint8)])
    def forward(images):
        return tf.map_fn(one, images, fn_output_signature=tf.TensorSpec([_MAX_ROWS, 7], tf.float32))

    return forward


def _tensorflow_forward(forward: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda batch: forward(batch).numpy()


def import_pruned(graph_def: Any, input_name: str, output_name: str) -> Any:
    """The GraphDef imported into a TF2 function (tf.compat.v1.wrap_function) and pruned to one input and output."""
    import tensorflow as tf

    def import_graph():
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(import_graph, [])
        graph = wrapped.graph
        return wrapped.prune(graph.as_graph_element(input_name), graph.as_graph_element(output_name))
    except (ValueError, KeyError, TypeError, tf.errors.OpError) as error:
        raise DetectorError(f"cannot import the CenterNet graph: {' '.join(str(error).split())[:200]}") from None


# --- OpenVINO -------------------------------------------------------------------------------

# What the stored IR is made from: the pinned weights and the conversion below (bump _CONVERSION when it changes).
_IR_KEY = weights_store.CENTERNET.files[1].sha256[:16] + "-c1"
_PRECISION = "f32"


def _openvino_forward(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The model on OpenVINO at float32: its detections match TensorFlow's within 0.002 in score on the devset
    album (bf16 was a third faster but moved scores by up to 0.05, enough to cross the threshold)."""
    import openvino as ov

    try:
        model = openvino_ir.load_or_convert("centernet", _IR_KEY, lambda: _convert(folder))
        # The graph holds batch 1 (its reshapes say so), so a batch is run as one request per photo, several at a
        # time: on 2 shared cores, two single-threaded streams took half the time per photo of one request on
        # both cores (51-70 against 113-149 ms a photo, interleaved, with other work on the machine).
        compiled = openvino_ir.compile_model(model, _PRECISION, throughput=True)
        requests = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    except (openvino_ir.IrUnavailable, RuntimeError) as error:
        raise DetectorError(f"cannot run CenterNet on OpenVINO: {' '.join(str(error).split())[:200]}") from None

    def forward(batch: np.ndarray) -> np.ndarray:
        rows = np.empty((len(batch), _MAX_ROWS, 7), np.float32)

        def keep(request: Any, index: int) -> None:  # each photo's own row: the callbacks never overlap
            rows[index] = request.get_output_tensor(0).data[0]

        requests.set_callback(keep)
        for index, image in enumerate(batch):
            requests.start_async([image[np.newaxis]], index)
        requests.wait_all()
        return rows

    return forward


def _convert(folder: Path) -> Any:
    """The TensorFlow graph as an OpenVINO model with the same contract as _compile's: uint8 [1, 512, 512, 3] in,
    [1, 100, 7] out (the model's rows, then kept 0/1 by NMS_IOU)."""
    import openvino as ov

    with networks.quiet_start_up():
        model = ov.convert_model(_graph_def(folder))
    if len(model.inputs) != 1 or len(model.outputs) != 1 or _OUTPUT not in model.output(0).get_names():
        raise DetectorError("the CenterNet graph did not convert to one input and its detections")
    _unstable_top_k(model)
    model = _with_kept_column(model)
    steps = ov.preprocess.PrePostProcessor(model)
    steps.input().tensor().set_element_type(ov.Type.u8)
    steps.input().preprocess().convert_element_type(ov.Type.f32)
    return steps.build()


def _unstable_top_k(model: Any) -> None:
    """TensorFlow's TopKV2 converts to a stable TopK (ties in index order), which OpenVINO's CPU plugin runs
    about 150 times slower on the model's 1.3 million heatmap scores (318 ms against 2 ms a photo, measured),
    because almost all of them tie at 0. Ties only order equal scores among themselves, so the plain TopK is
    used."""
    import openvino.opset11 as ops

    for node in model.get_ops():
        if node.get_type_name() == "TopK" and node.get_attributes().get("stable"):
            attributes = node.get_attributes()
            plain = ops.topk(node.input_value(0), node.input_value(1), axis=attributes["axis"],
                             mode=attributes["mode"], sort=attributes["sort"],
                             index_element_type=attributes["index_element_type"], stable=False)
            for index in range(2):
                node.output(index).replace(plain.output(index))


def _with_kept_column(model: Any) -> Any:
    """The model with _compile's kept column appended: 1 for the rows OpenVINO's NMS keeps at NMS_IOU, else 0."""
    import openvino.opset13 as ops

    result = model.get_results()[0]
    rows = result.input_value(0)  # [1, 100, 6]
    boxes = ops.slice(rows, [0, 0, 0], [1, _MAX_ROWS, 4], [1, 1, 1])  # x1, y1, x2, y2: IoU is the same as y, x
    scores = ops.transpose(ops.slice(rows, [0, 0, 4], [1, _MAX_ROWS, 5], [1, 1, 1]), [0, 2, 1])  # [1, 1, 100]
    limits = [ops.constant(np.int32(_MAX_ROWS)), ops.constant(np.float32(NMS_IOU)), ops.constant(np.float32(-1))]
    selected = ops.non_max_suppression(boxes, scores, *limits, box_encoding="corner",
                                       sort_result_descending=False, output_type="i32").output(0)
    row_numbers = ops.gather(selected, ops.constant(2, np.int32), ops.constant(1, np.int32))
    ones = ops.broadcast(ops.constant(np.float32(1)), ops.shape_of(row_numbers))
    kept = ops.scatter_elements_update(ops.constant(np.zeros(_MAX_ROWS, np.float32)), row_numbers, ones, 0)
    out = ops.concat([rows, ops.reshape(kept, [1, _MAX_ROWS, 1], False)], 2)
    result.input(0).replace_source_output(out.output(0))
    model.validate_nodes_and_infer_types()
    return model
