"""`photocluster similar` and `--object` with the real SqueezeNet and CenterNet on real photos: a wallpaper finds
its other sizes first, the kitchen's cup finds the coffee cup, a wine glass finds the wine glass of another shot."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image
from skimage import data

from photocluster.cli import main
from photocluster.pipeline import run_once
from photocluster.settings import LibrarySettings

from .conftest import GET_TEST_PHOTOS, PHOTO_SOURCE_UNREACHABLE

GROUPS = ("plasma:Autumn", "plasma:BytheWater")


@pytest.fixture(scope="module")
def library(tmp_path_factory, devset):
    """Two wallpapers in all their sizes, the devset's album, Scratch's kitchen and skimage's coffee cup, run with
    the real models and --index-objects."""
    from photocluster.weights import fetch_weights

    fetch_weights("squeezenet")
    fetch_weights("centernet")
    extras = subprocess.run([sys.executable, str(GET_TEST_PHOTOS), "--extras"], capture_output=True, text=True)
    if extras.returncode == PHOTO_SOURCE_UNREACHABLE:
        pytest.skip("no real test photos")
    lib = tmp_path_factory.mktemp("similar") / "lib"
    with open(devset / "manifest.csv", newline="") as fh:
        groups = {}
        for row in csv.DictReader(fh):
            if row["group"] in GROUPS:
                groups.setdefault(row["group"], []).append(row["file"])
    for files in groups.values():
        for rel in files:
            (lib / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(devset / rel, lib / rel)
    shutil.copytree(devset / "album", lib / "album")
    shutil.copyfile(extras.stdout.strip() + "/kitchen.jpg", lib / "album" / "kitchen.jpg")
    Image.fromarray(data.coffee()).save(lib / "album" / "coffee.jpg", quality=92)
    run_once(LibrarySettings(library=lib, model="squeezenet", index_objects=True), progress=False)
    return lib, groups


def search(capsys, *argv) -> dict:
    assert main(["similar", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("group", GROUPS)
def test_a_wallpaper_finds_its_other_sizes_before_any_other_photo(library, capsys, group):
    lib, groups = library
    query, *siblings = sorted(groups[group])
    found = search(capsys, lib / query, "-k", len(siblings))
    assert sorted(r["path"] for r in found["results"]) == sorted(str(lib / rel) for rel in siblings)


def test_the_kitchen_photos_cup_finds_the_coffee_cup(library, capsys):
    # kitchen.jpg: mugs on the shelves, each about 30 px, too small to be indexed; coffee.jpg: one cup on its
    # saucer, filling the middle of the photo.
    lib, _ = library
    found = search(capsys, lib / "album/kitchen.jpg", "--object", "cup", "-k", 3)
    assert found["object"]["label"] == "cup"
    best = found["results"][0]
    assert best["path"] == str(lib / "album/coffee.jpg") and best["object"]["label"] == "cup"
    x1, y1, x2, y2 = best["object"]["box"]
    assert 0.3 < (x1 + x2) / 2 < 0.7 and (x2 - x1) * (y2 - y1) > 0.1


def test_a_wine_glass_finds_the_wine_glass_of_another_shot_among_every_kind_of_object(library, capsys):
    # bar55.jpg and bar55_2.jpg: two shots at one bar table, a wine glass in front in each; with --any-label the
    # fingerprints alone decide, against every indexed person, dog, chair, table and cup.
    lib, _ = library
    found = search(capsys, lib / "album/bar55.jpg", "--object", "wine glass", "--any-label", "-k", 1)
    [best] = found["results"]
    assert best["path"] == str(lib / "album/bar55_2.jpg") and best["object"]["label"] == "wine glass"
