"""A photo's items: the COCO objects the detector found, and the photo's ImageNet label, in one vocabulary.

The detector names things in COCO's 80 classes ("person", "dining table"); the ImageNet classifier names one main
thing per photo, rolled up to a coarse label ("dog", "seashore", "church"), which also names scenes COCO lacks. The
table below puts the two vocabularies together, by hand, once, for the 80 COCO classes (no library maps COCO onto
photocluster's own coarse labels):

- ITEM: what a COCO class is called as an item: the coarse label when the two name the same thing ("couch" is the
  coarse "sofa", "tv" the coarse "television"), otherwise the COCO name itself, which is already an everyday name.
  A COCO name that equals a coarse label ("dog", "bottle", "clock") is that label: one item.
- COVERS: the coarse labels that ImageNet gives the same thing, only vaguer (ImageNet's "laptop" rolls up to
  "computer", its "banana" to "fruit", its "park bench" to "seat"). When the detector found the thing, the photo's
  ImageNet item of a covered label is dropped: it names the same object again, so "banana + fruit" would be one
  object counted as two, and would make empty "patterns" out of nothing. Broad groups that often mean something
  else in the photo (clothing for a tie, electronics for a keyboard, clock for a parking meter) are not covered.

Where a coarse label is less clear than the COCO name (ImageNet's "dining table" rolls up to "furniture", its
flowerpot to "container"), the COCO name is kept and the coarse label only covered.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..labels import Detection, Predictions

# COCO class -> (item name, coarse labels it covers). Reasoned from WordNet (COCO "cow" is ImageNet's ox, under
# the coarse "cattle") and from data/coarse_labels.json (which ImageNet classes roll up to which label).
COCO_ITEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "person": ("person", ("person",)),
    "bicycle": ("bicycle", ("bicycle",)),
    "car": ("car", ("car",)),
    "motorcycle": ("motorcycle", ("motorcycle",)),
    "airplane": ("airplane", ("aircraft",)),
    "bus": ("bus", ("bus",)),
    "train": ("train", ("train",)),  # not "tram": ImageNet's streetcar says more than COCO's train
    "truck": ("truck", ("truck",)),
    "boat": ("boat", ("boat", "ship")),  # COCO's boat is any boat or ship
    "traffic light": ("traffic light", ("traffic light",)),
    "fire hydrant": ("fire hydrant", ()),
    "stop sign": ("stop sign", ("street sign",)),
    "parking meter": ("parking meter", ()),  # ImageNet's parking meter rolls up to "clock", which means clocks
    "bench": ("bench", ("seat",)),  # park bench -> seat
    "bird": ("bird", ("bird",)),
    "cat": ("cat", ("cat",)),
    "dog": ("dog", ("dog",)),
    "horse": ("horse", ("horse",)),
    "sheep": ("sheep", ("sheep",)),
    "cow": ("cattle", ("cattle",)),  # ox, water buffalo, bison
    "elephant": ("elephant", ("elephant",)),
    "bear": ("bear", ("bear",)),
    "zebra": ("zebra", ("zebra",)),
    "giraffe": ("giraffe", ()),
    "backpack": ("backpack", ("bag",)),
    "umbrella": ("umbrella", ("umbrella",)),
    "handbag": ("handbag", ("bag",)),  # purse -> bag
    "tie": ("tie", ()),
    "suitcase": ("suitcase", ()),
    "frisbee": ("frisbee", ()),
    "skis": ("ski", ("ski",)),
    "snowboard": ("snowboard", ()),
    "sports ball": ("ball", ("ball",)),
    "kite": ("kite (toy)", ()),  # the fine ImageNet class "kite" is a bird of prey
    "baseball bat": ("baseball bat", ()),
    "baseball glove": ("baseball glove", ()),
    "skateboard": ("skateboard", ()),
    "surfboard": ("surfboard", ()),
    "tennis racket": ("racket", ("racket",)),
    "bottle": ("bottle", ("bottle",)),
    "wine glass": ("wine glass", ("glass",)),  # goblet, beer glass -> glass
    "cup": ("cup", ("cup",)),  # coffee mug -> cup; not "drink", which says what is in it
    "fork": ("fork", ()),
    "knife": ("knife", ()),
    "spoon": ("spoon", ()),
    "bowl": ("bowl", ("bowl",)),
    "banana": ("banana", ("fruit",)),
    "apple": ("apple", ("fruit",)),
    "sandwich": ("sandwich", ("food",)),  # cheeseburger -> food
    "orange": ("orange", ("fruit",)),
    "broccoli": ("broccoli", ("vegetable",)),
    "carrot": ("carrot", ("vegetable",)),
    "hot dog": ("hot dog", ("food",)),
    "pizza": ("pizza", ("food",)),
    "donut": ("donut", ()),
    "cake": ("cake", ()),
    "chair": ("chair", ("chair",)),
    "couch": ("sofa", ("sofa",)),  # studio couch -> sofa
    "potted plant": ("potted plant", ("container",)),  # ImageNet's "pot" is the flowerpot -> container
    "bed": ("bed", ("bed",)),
    "dining table": ("dining table", ("table", "furniture")),  # ImageNet's dining table -> furniture
    "toilet": ("toilet", ("seat",)),  # toilet seat -> seat
    "tv": ("television", ("television", "screen")),
    "laptop": ("laptop", ("computer",)),
    "mouse": ("mouse", ("mouse",)),  # the coarse "mouse" is the computer mouse, as in COCO
    "remote": ("remote control", ("remote control",)),
    "keyboard": ("keyboard", ()),
    "cell phone": ("cell phone", ("telephone",)),
    "microwave": ("microwave", ("kitchen appliance",)),
    "oven": ("oven", ("stove",)),
    "toaster": ("toaster", ("kitchen appliance",)),
    "sink": ("sink", ("container",)),  # washbasin -> container
    "refrigerator": ("refrigerator", ("appliance",)),
    "book": ("book", ("book jacket",)),
    "clock": ("clock", ("clock",)),
    "vase": ("vase", ("container",)),
    "scissors": ("scissors", ()),
    "teddy bear": ("teddy bear", ("toy",)),  # teddy -> toy
    "hair drier": ("hair drier", ("appliance",)),  # hand blower -> appliance
    "toothbrush": ("toothbrush", ()),
}

def detected_items(detections: Sequence[Detection], min_score: float) -> tuple[dict[str, float], dict[str, int]]:
    """The items of the detections scoring at least `min_score`: item -> best score, item -> how many were found.

    A label the table does not know (another detector's vocabulary) is its own item.
    """
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    for detection in detections:
        if detection.score >= min_score:
            item = COCO_ITEMS.get(detection.label, (detection.label, ()))[0]
            scores[item] = max(detection.score, scores.get(item, 0.0))
            counts[item] = counts.get(item, 0) + 1
    return scores, counts


def covered_labels(items: Sequence[str] | dict[str, float]) -> set[str]:
    """The coarse labels that the detected COCO items name more precisely."""
    by_item = {item: covers for item, covers in COCO_ITEMS.values()}
    return {label for item in items for label in by_item.get(item, ())}


def photo_items(predictions: Predictions | None, detections: Sequence[Detection] | None, *,
                names: Sequence[str], coarse: Sequence[str], min_probability: float,
                source: str) -> tuple[dict[str, float], dict[str, int]]:
    """A photo's items (item -> confidence, most confident first) and their utilities (item -> instances found).

    `names` names each ImageNet class at the chosen label level, `coarse` at the coarse level (what COVERS uses).
    source "imagenet": the ImageNet items alone, as before detection existed; "detector": the detected items
    alone; "both": the two merged. A photo the detector has not seen (detections None) has its ImageNet items,
    whatever the source. An ImageNet-only item counts one instance.
    """
    imagenet: dict[str, float] = {}
    covered_by: dict[str, str] = {}  # ImageNet item -> its coarse label
    for index, probability in predictions or ():
        if probability >= min_probability:
            imagenet[names[index]] = max(probability, imagenet.get(names[index], 0.0))
            covered_by.setdefault(names[index], coarse[index])
    if detections is None or source == "imagenet":
        scores, counts = imagenet, dict.fromkeys(imagenet, 1)
    else:
        scores, counts = detected_items(detections, min_probability)
        if source == "both":
            covered = covered_labels(scores)
            for item, probability in imagenet.items():
                if item in scores:  # the same concept in both vocabularies: one item
                    scores[item] = max(scores[item], probability)
                elif covered_by[item] not in covered:
                    scores[item], counts[item] = probability, 1
    order = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
    return dict(order), {item: counts[item] for item, _ in order}
