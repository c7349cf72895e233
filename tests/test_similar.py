"""`photocluster similar` and `photocluster objects` with stand-in models: arguments, output forms, photos outside
the library, object choice and its errors. tests/test_similar_real.py makes the claims about quality with the real
models."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from photocluster import inprocess
from photocluster.cli import main
from photocluster.labels import Detection

from .conftest import save, scene

DOG = Detection("dog", 0.9, (0.0, 0.0, 0.6, 0.6))
CUP = Detection("cup", 0.5, (0.5, 0.5, 1.0, 1.0))
TINY = Detection("cup", 0.4, (0.0, 0.9, 0.05, 0.95))  # 0.25% of the photo: listed, never indexed


class ObjectsDetector:
    """Finds a dog, a cup and a tiny cup in every photo but a dark one, where it finds nothing."""

    input_size = (16, 16)

    def detect(self, batch):
        return [() if frame.mean() < 40 else (DOG, CUP, TINY) for frame in batch]


@pytest.fixture
def library(tmp_path, stand_in, monkeypatch):
    """Three photos, a resized copy of the first, and a black photo, fingerprinted and indexed by a real run."""
    monkeypatch.setattr(inprocess, "load_detector", lambda runtime="openvino": ObjectsDetector())
    lib = tmp_path / "lib"
    for seed in (1, 2, 3):
        save(scene(seed), lib / f"p{seed}.jpg", quality=95)
    save(scene(1).resize((240, 180)), lib / "sub" / "p1-small.jpg", quality=90)
    save(Image.new("RGB", (320, 240)), lib / "dark.jpg")
    assert main([str(lib), "--index-objects", "-q"]) == 0
    return lib


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return status, out, err


def lines(out: str) -> list[tuple[float, str]]:
    return [(float(score), path) for score, path in (line.split("\t")[:2] for line in out.splitlines())]


def test_a_photo_finds_its_resized_copy_first_with_absolute_paths_and_scores(library, capsys, stand_in):
    calls = stand_in.calls
    status, out, _ = run(capsys, "similar", library / "p1.jpg", "-k", "3")
    found = lines(out)
    assert status == 0 and len(found) == 3
    assert found[0][1] == str(library / "sub" / "p1-small.jpg")
    assert all(os.path.isabs(path) and os.path.exists(path) for _, path in found)
    assert str(library / "p1.jpg") not in [path for _, path in found]  # never the photo itself
    assert [s for s, _ in found] == sorted((s for s, _ in found), reverse=True)
    assert found[0][0] > 0.95
    assert stand_in.calls == calls  # a cached photo costs no model


def test_the_library_is_found_from_a_relative_photo_path(library, capsys, monkeypatch):
    monkeypatch.chdir(library / "sub")
    status, out, _ = run(capsys, "similar", "p1-small.jpg", "-k", "1")
    assert status == 0 and lines(out)[0][1] == str(library / "p1.jpg")


def test_nul_separated_output_holds_the_same_paths_alone(library, capsys):
    _, plain, _ = run(capsys, "similar", library / "p2.jpg")
    status, out, _ = run(capsys, "similar", library / "p2.jpg", "-0")
    assert status == 0 and out.endswith("\0") and "\n" not in out
    assert out.split("\0")[:-1] == [path for _, path in lines(plain)]
    # -k 10 asks for more than there are: the other 3 photos. The black one has a zero fingerprint (a flat colour
    # has no colour layout), which is like nothing.
    assert len(lines(plain)) == 3


def test_json_gives_the_query_and_each_path_with_its_score(library, capsys):
    _, plain, _ = run(capsys, "similar", library / "p3.jpg", "-k", "2")
    status, out, _ = run(capsys, "similar", library / "p3.jpg", "-k", "2", "--json")
    data = json.loads(out)
    assert status == 0 and data["query"] == str(library / "p3.jpg") and data["object"] is None
    assert [(round(r["score"], 4), r["path"]) for r in data["results"]] == lines(plain)


def test_a_photo_outside_the_library_is_fingerprinted_on_the_fly(library, tmp_path, capsys, stand_in):
    outside = save(scene(2), tmp_path / "elsewhere" / "copy.png")
    calls = stand_in.calls
    status, out, _ = run(capsys, "similar", outside, "--library", library, "-k", "1")
    assert status == 0 and stand_in.calls == calls + 1
    [(score, path)] = lines(out)
    assert path == str(library / "p2.jpg") and score > 0.95


def test_a_photo_outside_any_library_needs_library(tmp_path, capsys):
    outside = save(scene(2), tmp_path / "alone" / "x.jpg")
    status, out, err = run(capsys, "similar", outside)
    assert status == 2 and out == "" and len(err.splitlines()) == 1 and "--library" in err


@pytest.mark.parametrize("argv, words", [(["-k", "0"], "at least 1"), (["-k", "many"], "whole number"),
                                         (["--bogus"], "unrecognized")])
def test_bad_arguments_are_one_line_and_status_2(library, capsys, argv, words):
    status, out, err = run(capsys, "similar", library / "p1.jpg", *argv)
    assert status == 2 and out == "" and len(err.splitlines()) == 1 and words in err


def test_objects_are_listed_best_first_and_the_indexed_ones_marked(library, capsys):
    status, out, _ = run(capsys, "objects", library / "p1.jpg")
    rows = out.splitlines()
    assert status == 0 and [row.split()[:2] for row in rows] == [["1", "dog"], ["2", "cup"], ["3", "cup"]]
    assert [row.endswith("(indexed)") for row in rows] == [True, True, False]  # the tiny cup is too small


def test_object_search_returns_photos_with_that_kind_of_object_and_its_box(library, capsys):
    status, out, _ = run(capsys, "similar", library / "p1.jpg", "--object", "cup", "--json")
    data = json.loads(out)
    assert status == 0 and data["object"]["number"] == 2 and data["object"]["label"] == "cup"
    assert data["results"][0]["path"] == str(library / "sub" / "p1-small.jpg")  # the same cup, resized
    assert {r["object"]["label"] for r in data["results"]} == {"cup"}
    assert all(r["object"]["box"] == list(CUP.box) for r in data["results"])
    assert len(data["results"]) == 3  # p2, p3 and the copy; not the dark photo, which has no objects


def test_an_object_by_number_and_an_unindexed_one_embedded_on_the_fly(library, capsys, stand_in):
    status, out, _ = run(capsys, "similar", library / "p2.jpg", "--object", "1", "-k", "1")
    assert status == 0 and out.split("\t")[2].split()[:2] == ["1", "dog"]
    calls = stand_in.calls
    status, out, _ = run(capsys, "similar", library / "p2.jpg", "--object", "3", "-k", "1")
    assert status == 0 and stand_in.calls == calls + 1  # the tiny cup is not in the index
    assert out.split("\t")[2].split()[1] == "cup"


@pytest.mark.parametrize("which, words", [("dgo", "unknown object name 'dgo'; did you mean dog?"),
                                          ("zebra", "no zebra among the objects"), ("4", "objects 1 to 3, not 4")])
def test_an_object_the_photo_lacks_is_one_line_and_status_2(library, capsys, which, words):
    status, out, err = run(capsys, "similar", library / "p1.jpg", "--object", which)
    assert status == 2 and out == "" and err.strip() == err.strip().splitlines()[0] and words in err


def test_a_photo_without_detections_lists_none_and_cannot_be_searched_by_object(library, capsys):
    status, out, _ = run(capsys, "objects", library / "dark.jpg")
    assert status == 0 and out == f"no objects detected in {library / 'dark.jpg'}\n"
    status, out, err = run(capsys, "similar", library / "dark.jpg", "--object", "1")
    assert status == 2 and out == "" and "no objects detected" in err


def test_object_search_without_the_index_says_how_to_build_it(library, capsys):
    os.unlink(library / "photocluster" / "objects.index")
    status, _, err = run(capsys, "similar", library / "p1.jpg", "--object", "dog")
    assert status == 2 and "--index-objects" in err and len(err.splitlines()) == 1


def test_the_index_drops_vanished_photos_and_embeds_changed_ones(library, stand_in, monkeypatch):
    from photocluster.object_index import ObjectIndex

    monkeypatch.setattr(inprocess, "load_detector", lambda runtime="openvino": ObjectsDetector())
    before = ObjectIndex.load(library / "photocluster" / "objects.index")
    old = before.vectors()[before.entries["p2.jpg"].objects[0].row]
    os.unlink(library / "p3.jpg")
    save(scene(7), library / "p2.jpg", quality=95)
    assert main([str(library), "--index-objects", "-q"]) == 0
    index = ObjectIndex.load(library / "photocluster" / "objects.index")
    assert sorted(index.entries) == ["dark.jpg", "p1.jpg", "p2.jpg", "sub/p1-small.jpg"]
    assert index.entries["p2.jpg"].size == (library / "p2.jpg").stat().st_size
    assert [o.number for o in index.entries["p1.jpg"].objects] == [1, 2] and not index.entries["dark.jpg"].objects
    new = index.vectors()[index.entries["p2.jpg"].objects[0].row]
    assert new.shape == (stand_in.dim,) and not np.allclose(new, old)  # the new photo's dog, not the old one's


def test_the_objects_of_a_photo_outside_the_library_come_from_the_detector_now(library, tmp_path, capsys):
    outside = save(scene(5), tmp_path / "elsewhere" / "new.jpg")
    status, out, _ = run(capsys, "objects", outside, "--library", library, "--json")
    data = json.loads(out)
    assert status == 0 and data["photo"] == str(outside)
    assert [(o["label"], o["indexed"]) for o in data["objects"]] == [("dog", False), ("cup", False), ("cup", False)]
