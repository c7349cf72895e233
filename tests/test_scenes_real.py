"""Same scene, not just copies (issue 12), with the real SqueezeNet weights on real photos of the devset.

Each test first checks that its photos really lie where the scenes stage matters: their cosine below the cut (so
the cosine alone keeps them apart) and at or above the band's floor (so they are candidates). Without that the
test would prove nothing.
"""
from __future__ import annotations

import csv
import itertools
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import models
from photocluster.cache import load_or_new
from photocluster.cluster import cut_for_sim
from photocluster.pipeline import run_once
from photocluster.settings import LibrarySettings, PatternOptions

from .conftest import load_script

EXIF_IFD, MAKE, MODEL, DATETIME_ORIGINAL, SUBSEC_TIME_ORIGINAL = 0x8769, 0x010F, 0x0110, 0x9003, 0x9291
SIM = 0.5  # the default


def band_at(sim: float) -> tuple[float, float]:
    return (cut_for_sim(models.scene_floor("squeezenet"), sim), cut_for_sim(models.calibration("squeezenet"), sim))


def settings_for(lib: Path, out: Path, **options) -> LibrarySettings:
    return LibrarySettings(library=lib, out=out, model="squeezenet", patterns=PatternOptions(enabled=False),
                           **options)


def clusters_of(lib: Path, out: Path, **options) -> list[set[str]]:
    report = run_once(settings_for(lib, out, **options), progress=False)
    return [set(members) for members in report.layout.clusters.values()]


def together(clusters: list[set[str]], *photos: str) -> bool:
    return any(set(photos) <= members for members in clusters)


def cosines(out: Path, photos: list[str]) -> np.ndarray:
    """The cosine of every two of `photos`, from the fingerprints the run cached."""
    spec = models.model_spec("squeezenet")
    vectors = load_or_new(out / "fingerprints.pk", spec.model_id, spec.dim).vectors(photos).astype(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def cosine(out: Path, a: str, b: str) -> float:
    return float(cosines(out, [a, b])[0, 1])


def with_capture(img: Image.Image, path: Path, camera: tuple[str, str], when: datetime) -> None:
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = camera
    exif.get_ifd(EXIF_IFD).update({DATETIME_ORIGINAL: when.strftime("%Y:%m:%d %H:%M:%S"),
                                   SUBSEC_TIME_ORIGINAL: f"{when.microsecond // 1000:03d}"})
    img.save(path, quality=92, exif=exif)


@pytest.fixture(scope="module")
def album(devset, tmp_path_factory, squeezenet):
    """The devset's album (24 real photos of people and places) as a library of its own, with its groups."""
    lib = tmp_path_factory.mktemp("scenes") / "lib"
    shutil.copytree(devset / "album", lib / "album")
    with open(devset / "manifest.csv", newline="") as fh:
        groups = {r["file"]: r["group"] or r["file"] for r in csv.DictReader(fh) if r["file"].startswith("album/")}
    return lib, groups


def test_two_shots_of_one_real_scene_group_at_the_default_sim_and_not_without_verification(album, devset, tmp_path):
    lib, _ = album
    builder = load_script("build_scene_set")
    garden = builder.shrunk(Image.open(devset / "nature/Garden.jpg").convert("RGB"), 1600)
    rng = np.random.default_rng(3)
    # two crops of the garden overlapping by 50-80 %, framed, scaled, lit and seen a little differently
    for name, box in zip(("garden_1.jpg", "garden_2.jpg"), builder.crop_boxes(rng, garden.size, 2)):
        builder.make_shot(rng, garden, box, None).save(lib / "album" / name, quality=90)
    shots = ("album/garden_1.jpg", "album/garden_2.jpg")
    try:
        without = clusters_of(lib, tmp_path / "out", verify=False)
        floor, cut = band_at(SIM)
        assert floor <= cosine(tmp_path / "out", *shots) < cut  # apart by cosine, yet a candidate
        assert not together(without, *shots)
        assert together(clusters_of(lib, tmp_path / "out"), *shots)
    finally:
        for name in shots:
            (lib / name).unlink()


def test_unrelated_real_photos_with_a_high_cosine_stay_apart(album, tmp_path):
    lib, groups = album
    clusters = clusters_of(lib, tmp_path / "out")
    floor, cut = band_at(SIM)
    photos = sorted(groups)
    sims = cosines(tmp_path / "out", photos)
    unrelated = [(sims[i, j], photos[i], photos[j]) for i, j in itertools.combinations(range(len(photos)), 2)
                 if groups[photos[i]] != groups[photos[j]]]
    candidates = sorted(((c, a, b) for c, a, b in unrelated if floor <= c < cut), reverse=True)
    assert len(candidates) >= 3  # the album has unrelated photos that look alike to the model
    for _, a, b in candidates:
        assert not together(clusters, a, b), (a, b)


@pytest.mark.parametrize("case, camera_2, gap, grouped", [
    ("burst", ("Canon", "EOS R6"), 0.4, True),
    ("two cameras", ("Apple", "iPhone 13"), 0.4, False),
    ("a minute apart", ("Canon", "EOS R6"), 60.0, False),
])
def test_a_burst_of_frames_groups_below_the_cut_by_capture_time_and_camera(devset, squeezenet, tmp_path, case,
                                                                           camera_2, gap, grouped):
    """Two frames of a burst: the camera panned by 30 % of the frame between them. Verification is off, so only
    the time cue can join them: taken 0.4 s apart by one camera they group; by two cameras, or a minute apart,
    they stay apart. A burst's cosine must be in the upper half of the band (pipeline.scene_options)."""
    flower = Image.open(devset / "nature/Garden.jpg").convert("RGB")
    w, h = flower.size
    lib = tmp_path / "lib"
    lib.mkdir()
    start = datetime(2024, 6, 1, 10, 0, 0, 200_000)
    with_capture(flower.crop((0, 0, int(w * 0.7), h)), lib / "frame_1.jpg", ("Canon", "EOS R6"), start)
    with_capture(flower.crop((int(w * 0.3), 0, w, h)), lib / "frame_2.jpg", camera_2,
                 start + timedelta(seconds=gap))
    clusters = clusters_of(lib, tmp_path / "out", verify=False, burst_seconds=5.0)
    floor, cut = band_at(SIM)
    assert (floor + cut) / 2 <= cosine(tmp_path / "out", "frame_1.jpg", "frame_2.jpg") < cut
    assert together(clusters, "frame_1.jpg", "frame_2.jpg") is grouped
