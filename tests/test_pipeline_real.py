"""Grouping quality through the pipeline with the real SqueezeNet weights on real photos.

tests/test_pipeline.py runs the pipeline with a fast stand-in model and its own cut table; what it says about
which photos group shows the plumbing, not the quality. These counterparts make the same claims with the real
model: variants of one photo (resized, re-encoded, cropped) group and unrelated photos do not at the default
--sim, --sim 0 joins everything, and --sim 1 keeps only identical photos together.
"""
from __future__ import annotations

import shutil

import pytest
from PIL import Image
from skimage import data

from photocluster.pipeline import run_once
from photocluster.settings import LibrarySettings, PatternOptions

UNRELATED = ("astronaut", "coffee", "camera", "immunohistochemistry", "hubble_deep_field")


def save_variants(img: Image.Image, folder, stem: str) -> list[str]:
    """The photo and three real variants of it; their paths relative to the library."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = img.size
    img.save(folder / f"{stem}.jpg", quality=95)
    img.resize((w * 2 // 3, h * 2 // 3), Image.Resampling.LANCZOS).save(folder / f"{stem}-small.jpg", quality=85)
    img.save(folder / f"{stem}-recompressed.jpg", quality=35)
    img.crop((w // 16, h // 16, w - w // 16, h - h // 16)).save(folder / f"{stem}-crop.png")
    return sorted(f"{folder.name}/{stem}{suffix}" for suffix in (".jpg", "-small.jpg", "-recompressed.jpg",
                                                                  "-crop.png"))


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Two photos with their variants, unrelated photos, and one byte-identical copy of an unrelated photo."""
    from photocluster.weights import fetch_weights

    fetch_weights("squeezenet")
    lib = tmp_path_factory.mktemp("real") / "lib"
    groups = [save_variants(Image.fromarray(data.chelsea()), lib / "cat", "chelsea"),
              save_variants(Image.fromarray(data.rocket()), lib / "launch", "rocket")]
    (lib / "misc").mkdir()
    for name in UNRELATED:
        Image.fromarray(getattr(data, name)()).save(lib / "misc" / f"{name}.jpg", quality=90)
    shutil.copyfile(lib / "misc/coffee.jpg", lib / "misc/coffee-copy.jpg")
    identical = ["misc/coffee-copy.jpg", "misc/coffee.jpg"]
    return lib, groups, identical


def clusters_at(library, **options) -> list[list[str]]:
    lib, _, _ = library
    settings = LibrarySettings(library=lib, out=lib.parent / "out", model="squeezenet",
                               patterns=PatternOptions(enabled=False), **options)
    return sorted(sorted(members) for members in run_once(settings, progress=False).layout.clusters.values())


def every_photo(library) -> list[str]:
    lib, _, _ = library
    return sorted(str(p.relative_to(lib)) for p in lib.glob("*/*") if p.is_file())


def test_variants_group_and_unrelated_photos_do_not_at_the_default_sim(library):
    _, groups, identical = library
    assert clusters_at(library) == sorted(groups + [identical])


def test_sim_0_joins_every_photo_into_one_cluster(library):
    assert clusters_at(library, sim=0.0) == [every_photo(library)]


def test_sim_1_keeps_only_identical_photos_together(library):
    _, _, identical = library
    assert clusters_at(library, sim=1.0) == [identical]
