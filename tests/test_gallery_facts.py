"""What the gallery says of a cluster: cosine figures, best photo, capture span, bursts, shared objects."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from photocluster import gallery_facts
from photocluster.capture import Capture
from photocluster.gallery_facts import burst_photos, capture_span, choose_best, cosine_stats, shared_objects
from photocluster.thumbs import Quality


def test_cosine_figures_of_three_known_angles():
    angle = math.radians(60)
    vectors = np.array([[1.0, 0.0], [math.cos(angle), math.sin(angle)], [0.0, 3.0]], np.float32)  # 3: not unit
    lowest, mean = cosine_stats(vectors)
    # pairs: 0-1 at 60 degrees (0.5), 0-2 at 90 (0), 1-2 at 30 (cos 30)
    assert lowest == pytest.approx(0.0, abs=1e-6)
    assert mean == pytest.approx((0.5 + 0.0 + math.cos(math.radians(30))) / 3, abs=1e-6)


def test_cosine_figures_over_several_blocks_match_every_pair(monkeypatch):
    monkeypatch.setattr(gallery_facts, "_BLOCK", 7)
    vectors = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = [float(unit[i] @ unit[j]) for i in range(30) for j in range(i + 1, 30)]
    lowest, mean = cosine_stats(vectors)
    assert lowest == pytest.approx(min(pairs), abs=1e-6) and mean == pytest.approx(np.mean(pairs), abs=1e-6)


def test_one_photo_has_no_cosine_figures():
    assert cosine_stats(np.ones((1, 4), np.float32)) is None


def test_the_best_photo_is_the_largest_among_the_sharpest():
    best = choose_best({
        "blurred-huge.jpg": Quality(6000, 4000, 50.0, 0.0),  # largest, but far from sharp
        "sharp-small.jpg": Quality(1000, 800, 400.0, 0.0),  # the sharpest
        "sharp-large.jpg": Quality(3000, 2000, 350.0, 0.0),  # within 80% of the sharpest, and larger
    })
    assert best.rel == "sharp-large.jpg"
    assert "3000\u00d72000" in best.reason and "2 sharpest of 3" in best.reason


def test_clipping_counts_against_a_photo():
    best = choose_best({
        "blown.jpg": Quality(4000, 3000, 500.0, 0.6),  # sharpest raw, but 60% blown out: 200
        "exposed.jpg": Quality(2000, 1500, 300.0, 0.0),  # 300
    })
    assert best.rel == "exposed.jpg" and "sharpest of 2" in best.reason


def test_ties_go_to_the_first_path_and_no_photo_gives_no_best():
    same = Quality(100, 100, 10.0, 0.0)
    assert choose_best({"b.jpg": same, "a.jpg": same}).rel == "a.jpg"
    assert choose_best({}) is None


def at(seconds: float, camera=("Canon", "EOS")) -> Capture:
    return Capture(datetime(2024, 5, 1, 12, 0, 0) + timedelta(seconds=seconds), *(camera or (None, None)))


def test_the_capture_span_and_the_photos_without_a_time():
    captures = [at(30), at(0), Capture(None, None, None), at(3600)]
    (first, last), timed = capture_span(captures)
    assert (first, last, timed) == (datetime(2024, 5, 1, 12, 0), datetime(2024, 5, 1, 13, 0), 3)
    assert capture_span([Capture(None, None, None)]) == (None, 0)


def test_a_time_with_an_offset_is_shown_on_the_camera_s_clock():
    aware = Capture(datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "Canon", "EOS")
    (first, last), _ = capture_span([aware, at(0)])
    assert (first, last) == (datetime(2024, 5, 1, 12, 0), datetime(2024, 5, 1, 14, 0))


def test_burst_photos_are_one_camera_s_shots_seconds_apart():
    captures = {"a": at(0), "b": at(3), "c": at(60), "d": at(61, ("Nikon", "D50")), "e": at(62)}
    # a-b 3 s apart; c and e 2 s apart (d between them is another camera's)
    assert burst_photos(captures, 5.0) == 4  # a, b, c, e
    assert burst_photos(captures, 0.0) == 0
    assert burst_photos({"a": at(0), "b": at(10)}, 5.0) == 0


def test_shared_objects_are_held_by_half_the_photos_or_more():
    items = {"a": ["dog", "sofa"], "b": ["dog"], "c": ["dog", "cup"], "d": ["sofa"]}
    assert shared_objects(["a", "b", "c", "d"], items) == [("dog", 3), ("sofa", 2)]
    assert shared_objects(["a"], items) == []  # one photo shares nothing
