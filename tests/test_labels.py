"""The label roll-up table: its content, and the script that generates it from WordNet."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from photocluster import labels

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_coarse_labels.py"
SHIPPED = ROOT / "photocluster" / "data" / "coarse_labels.json"
WORDNET = Path("/usr/share/wordnet")  # Debian's wordnet-base (CI installs it)


def load_script():
    spec = importlib.util.spec_from_file_location("make_coarse_labels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def by_fine(level: str) -> dict[str, str]:
    return dict(zip(labels.class_labels("fine"), labels.class_labels(level)))


# --- the model's classes --------------------------------------------------------------------------------

def test_imagenet_classes_are_in_keras_index_order():
    classes = labels.imagenet_classes()
    assert len(classes) == 1000
    assert [wnid for wnid, _ in classes] == sorted(wnid for wnid, _ in classes)
    assert classes[281] == ("n02123045", "tabby")
    assert classes[285] == ("n02124075", "Egyptian_cat")
    assert classes[0] == ("n01440764", "tench")


def test_top_labels_sorted_by_probability():
    probs = np.zeros(1000, np.float32)
    probs[[5, 7, 900]] = [0.2, 0.5, 0.3]
    assert labels.top_labels(probs, k=3) == ((7, 0.5), (900, pytest.approx(0.3)), (5, pytest.approx(0.2)))
    assert len(labels.top_labels(probs)) == 10
    assert all(isinstance(i, int) and isinstance(p, float) for i, p in labels.top_labels(probs))


def test_the_table_lines_up_with_the_model_classes():
    assert labels.class_wnids() == tuple(wnid for wnid, _ in labels.imagenet_classes())
    for level in labels.LEVELS:
        assert len(labels.class_labels(level)) == 1000


def test_fine_labels_are_the_classes_and_unique():
    fine = labels.class_labels("fine")
    assert len(set(fine)) == 1000
    assert fine[281] == "tabby" and fine[282] == "tiger cat"
    # the two ImageNet classes both called "crane", and both "maillot", stay apart
    assert {"crane (wading bird)", "crane (lifting device)", "maillot (tights)", "maillot (swimsuit)"} <= set(fine)


def test_coarse_labels_roll_up_to_readable_names():
    coarse = by_fine("coarse")
    assert {coarse[name] for name in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")} == {"cat"}
    assert {coarse[name] for name in ("lion", "tiger", "cheetah")} == {"big cat"}
    assert coarse["sports car"] == coarse["cab"] == coarse["minivan"] == "car"
    assert coarse["canoe"] == coarse["catamaran"] == "boat"
    assert coarse["container ship"] == "ship"
    assert coarse["Granny Smith"] == coarse["banana"] == "fruit"
    assert coarse["broccoli"] == "vegetable"
    assert coarse["cheeseburger"] == coarse["pizza"] == "food"
    assert coarse["espresso"] == "drink"
    assert coarse["church"] == coarse["mosque"] == "church"
    assert coarse["grand piano"] == coarse["violin"] == "musical instrument"
    assert coarse["streetcar"] == "tram"
    # classes with no listed ancestor keep their own readable name
    assert coarse["seashore"] == "seashore" and coarse["sandbar"] == "sandbar" and coarse["street sign"] == "street sign"


def test_all_dog_breeds_are_dogs_and_nothing_else_is():
    coarse = labels.class_labels("coarse")
    dogs = [index for index, label in enumerate(coarse) if label == "dog"]
    assert dogs == list(range(151, 269))  # ImageNet's 118 dog classes, Chihuahua to Mexican hairless


def test_coarse_level_is_much_coarser():
    counts = Counter(labels.class_labels("coarse"))
    assert len(counts) < 400
    assert counts["dog"] == 118 and counts["bird"] >= 50


def test_labels_fit_the_file_formats():
    for level in labels.LEVELS:
        for label in labels.class_labels(level):
            assert label == label.strip() and label
            assert not set(label) & set(",:\t\r\n"), label
            assert "_" not in label, label


def test_unknown_level_is_a_value_error():
    with pytest.raises(ValueError, match="labels must be one of"):
        labels.class_labels("medium")


TINY_WORDNET = """\
  1 This software and database is being provided to you, the LICENSEE, by
00000001 03 n 01 entity 0 000 | root
00000002 05 n 02 animal 0 beast 0 001 @ 00000001 n 0000 | an animal
00000003 05 n 01 dog 0 001 @ 00000002 n 0000 | a dog
00000004 05 n 01 hunting_dog 0 001 @ 00000003 n 0000 | a hunting dog
00000005 05 n 01 beagle 0 001 @ 00000004 n 0000 | a beagle
00000006 05 n 01 pet 0 001 @ 00000002 n 0000 | a pet
00000007 05 n 01 pug 0 002 @ 00000006 n 0000 @ 00000003 n 0000 | a pug: a dog and a pet
00000008 05 n 01 crane 0 001 @ 00000002 n 0000 | the bird
00000009 03 n 01 device 0 001 @ 00000001 n 0000 | a device
00000010 06 n 01 crane 0 001 @i 00000009 n 0000 | the machine
00000011 05 n 01 odd,name:x 0 001 @ 00000001 n 0000 | a lemma with characters labels cannot hold
"""


def test_the_script_takes_the_nearest_listed_hypernym(tmp_path, monkeypatch):
    script = load_script()
    (tmp_path / "data.noun").write_text(TINY_WORDNET, encoding="latin-1")
    nouns = script.read_wordnet_nouns(tmp_path)
    assert nouns["00000007"] == (["pug"], ["00000006", "00000003"])
    assert nouns["00000010"][1] == ["00000009"]  # an instance hypernym (@i) counts
    monkeypatch.setattr(script, "TARGETS", [("animal", "00000002", "animal"), ("dog", "00000003", "dog"),
                                            ("pet", "00000006", "pet")])
    monkeypatch.setattr(script, "OVERRIDES", {})
    wnids = ["n00000005", "n00000007", "n00000008", "n00000010", "n00000011"]
    table, how = script.build_table(wnids, nouns)
    assert table == [
        ["n00000005", "beagle", "dog"],  # dog is two steps up, animal three: the nearest wins
        ["n00000007", "pug", "dog"],  # dog and pet both one step up: the one listed first wins
        ["n00000008", "crane (animal)", "animal"],  # a shared lemma gets its direct hypernym
        ["n00000010", "crane (device)", "crane (device)"],  # no listed ancestor: its own name
        ["n00000011", "odd name x", "odd name x"],
    ]
    assert how == Counter({"target": 3, "own name": 2})


def test_the_script_refuses_another_wordnet(tmp_path, monkeypatch):
    script = load_script()
    (tmp_path / "data.noun").write_text(TINY_WORDNET, encoding="latin-1")
    monkeypatch.setattr(script, "TARGETS", [("dog", "00000002", "dog")])  # 00000002 is "animal" here
    with pytest.raises(SystemExit, match="WordNet 3.0"):
        script.build_table(["n00000005"], script.read_wordnet_nouns(tmp_path))


def test_the_shipped_table_is_what_the_script_makes_from_wordnet(tmp_path):
    assert (WORDNET / "data.noun").is_file(), "needs Debian's WordNet: apt-get install -y wordnet-base"
    out = tmp_path / "coarse_labels.json"
    assert load_script().main(["--wordnet", str(WORDNET), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(SHIPPED.read_text())
