"""scripts/build_scene_set.py: the same-scene measurement set of issue 12, built small from stand-in sources.

The real sources are over 500 MB of Debian packages; building the set from them is the script's own run. Here it
builds from a stand-in cache of made-up pictures, offline and fast, which tests everything but the picking."""
import csv
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from photocluster.capture import read_capture

from .conftest import load_script

builder = load_script("build_scene_set")
SCRIPT = Path(builder.__file__)


SCENES, CUTOUTS = 12, 20  # stand-in photos that may become groups, and cut-outs that may not


def stand_in_sources(folder: Path) -> dict[str, str]:
    """A sources cache and a devset library of made-up pictures, each distinct: SCENES photos that may become
    groups and CUTOUTS that may not, 2 nature photos and 3 album shots of 2 subjects (all 4 may become groups);
    the environment that points the script at them."""
    def picture(path: Path, seed: int, size: tuple[int, int]) -> None:
        blocks = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blocks).resize(size, Image.Resampling.BICUBIC).save(path)

    cache, library = folder / "sources", folder / "devset"
    rows = [["file", "scenes"]]
    for n in range(SCENES + CUTOUTS):
        cutout = n >= SCENES
        rows.append([f"{'cutout' if cutout else 'scene'}/p{n}.jpg", "0" if cutout else "1"])
        picture(cache / rows[-1][0], n, (160, 160) if cutout else (480, 360))
    with open(cache / builder.SOURCES_LIST, "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
    album = [("nature/n1.jpg", ""), ("nature/n2.jpg", ""), ("album/a_1.jpg", "kpa:a"), ("album/a_2.jpg", "kpa:a"),
             ("album/b.jpg", "")]
    for n, (file, _) in enumerate(album):
        picture(library / file, 100 + n, (480, 360))
    with open(library / "manifest.csv", "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([["file", "group", "kind", "tags"]] +
                                  [[file, group, "same_scene" if group else "", ""] for file, group in album])
    return {**os.environ, "PHOTOCLUSTER_SCENE_SOURCES": str(cache), "PHOTOCLUSTER_DEVSET": str(library)}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    return stand_in_sources(tmp_path_factory.mktemp("stand-ins"))


def build(dest: Path, env: dict[str, str], *options: str) -> list[dict[str, str]]:
    done = subprocess.run([sys.executable, str(SCRIPT), str(dest), *options], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    with open(dest / "manifest.csv", newline="", encoding="utf-8") as rows:
        return list(csv.DictReader(rows))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, stand_ins):
    dest = tmp_path_factory.mktemp("scene") / "set"
    return dest, build(dest, stand_ins, "--groups", "6", "--distractors", "8")


def test_groups_of_two_to_four_shots_with_copies_of_their_own_shots(small_set):
    dest, rows = small_set
    shots, copies = defaultdict(list), [r for r in rows if r["kind"] == "copy"]
    for row in rows:
        assert (dest / row["file"]).is_file()
        if row["kind"] == "same_scene":
            shots[row["group"]].append(row)
    assert len(shots) == 6 and all(2 <= len(group) <= 4 for group in shots.values())
    assert all(len({r["source"] for r in group}) == 1 for group in shots.values())  # one scene each
    assert len({group[0]["source"] for group in shots.values()}) == 6  # from six different photos
    assert [c["group"] for c in copies] == ["g005"]  # every 5th group
    assert copies[0]["copy_of"] in {r["file"] for r in shots["g005"]}
    unrelated = [r for r in rows if r["kind"] == ""]
    assert len(unrelated) == 8 and all(r["group"] == "" for r in unrelated)
    assert not {r["source"] for r in unrelated} & {r["source"] for r in rows if r["group"]}
    assert not [r for r in rows if r["group"] and r["source"].startswith("cutout:")]


def test_by_default_every_photo_left_is_unrelated_and_cut_outs_are_never_scenes(stand_ins, tmp_path):
    rows = build(tmp_path / "set", stand_ins, "--groups", "6")
    unrelated = [r for r in rows if r["kind"] == ""]
    # SCENES + 2 nature + 2 album subjects may become groups; 6 lend objects, 6 become groups; the rest stay
    assert len(unrelated) == SCENES + 4 + CUTOUTS - 6 - 6
    assert len({r["source"] for r in unrelated}) == len(unrelated)
    assert not [r for r in rows if r["group"] and r["source"].startswith("cutout:")]
    assert {r["source"] for r in unrelated if r["source"].startswith("cutout:")} == \
        {f"cutout:p{n}" for n in range(SCENES, SCENES + CUTOUTS)}


def test_capture_times_and_cameras_read_back_as_the_manifest_says(small_set):
    dest, rows = small_set
    for row in rows:
        got = read_capture(dest, row["file"])
        expected = datetime.fromisoformat(row["capture_time"]) if row["capture_time"] else None
        assert got.time == expected, row["file"]  # an aware time never equals a naive one
        assert ("/".join(got.camera) if got.camera else "") == row["camera"], row["file"]


def test_shots_of_a_group_are_seconds_apart_from_one_camera(small_set):
    dest, rows = small_set
    by_group = defaultdict(list)
    for row in rows:
        if row["kind"] == "same_scene":
            by_group[row["group"]].append(read_capture(dest, row["file"]))
    for captures in by_group.values():
        times = [c.time for c in captures]
        assert len({c.camera for c in captures}) == 1
        assert all(0 < (later - earlier).total_seconds() <= 8 for earlier, later in zip(times, times[1:]))
    # groups are hours apart on the one clock the builder keeps (the offsets written only say where it was)
    starts = sorted(captures[0].time.replace(tzinfo=None) for captures in by_group.values())
    assert all((b - a).total_seconds() >= 3600 for a, b in zip(starts, starts[1:]))


def test_the_same_seed_builds_the_same_set(small_set, stand_ins, tmp_path):
    dest, rows = small_set
    again = build(tmp_path / "again", stand_ins, "--groups", "6", "--distractors", "8")
    assert again == rows
    assert all((dest / r["file"]).read_bytes() == (tmp_path / "again" / r["file"]).read_bytes() for r in rows)


def test_an_existing_destination_is_refused(tmp_path):
    (tmp_path / "taken").mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "taken")], capture_output=True, text=True)
    assert done.returncode == 2 and "exists" in done.stderr
    assert list((tmp_path / "taken").iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), width=st.integers(300, 1600), height=st.integers(300, 1600),
       count=st.integers(2, 4))
def test_every_shot_overlaps_the_first_by_half_to_four_fifths(seed, width, height, count):
    boxes = builder.crop_boxes(np.random.default_rng(seed), (width, height), count)
    assert len(boxes) == count
    for box in boxes:
        assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
    for box in boxes[1:]:
        assert 0.5 <= builder.overlap(boxes[0], box) <= 0.8


def test_overlap_is_the_share_of_the_smaller_box():
    assert builder.overlap((0, 0, 10, 10), (5, 0, 15, 10)) == 0.5
    assert builder.overlap((0, 0, 10, 10), (2, 2, 6, 6)) == 1.0  # the small one lies inside
    assert builder.overlap((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
