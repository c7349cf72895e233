"""Geometric verification on real photographs (scikit-image's sample photos)."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from photocluster import verify  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name: str) -> np.ndarray:
    return getattr(skimage_data, name)()


def second_shot(pixels: np.ndarray, keep: float = 0.8) -> np.ndarray:
    """Another shot of the scene: seen from a slightly different angle (each corner moved by up to 6 % of the
    side), reframed to the right `keep` of its width and the bottom 90 % of its height (so it holds 60-80 % of
    the first frame), scaled to 90 % and 35 % brighter with a warmer white balance."""
    h, w = pixels.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = corners + np.float32([[0.04 * w, 0.02 * h], [-0.06 * w, 0.05 * h], [-0.02 * w, -0.03 * h],
                                  [0.05 * w, -0.01 * h]])
    seen = cv2.warpPerspective(pixels, cv2.getPerspectiveTransform(corners, moved), (w, h),
                               borderMode=cv2.BORDER_REFLECT)
    framed = seen[int(0.1 * h):, int((1 - keep) * w):]
    scaled = cv2.resize(framed, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    shifted = scaled.astype(np.float32) * 1.35 * np.float32([1.08, 1.0, 0.9])
    return np.clip(shifted, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("keep", [0.7, 0.85])  # 63 % and 77 % of the first frame's area
def test_a_second_shot_of_a_real_photo_is_the_same_scene(name, keep):
    first = photo(name)
    verdict = verify.verify_pair(verify.local_features(first), verify.local_features(second_shot(first, keep)))
    assert verdict.same_scene, verdict
    # The shots share most of their frames, so the matches that fit one view change cover a good part of each.
    assert verdict.spread > 0.2


@pytest.mark.parametrize("a, b", list(itertools.combinations(PHOTOS, 2)))
def test_unrelated_real_photos_are_not_the_same_scene(a, b):
    for first, second in ((photo(a), photo(b)), (photo(a), second_shot(photo(b)))):
        verdict = verify.verify_pair(verify.local_features(first), verify.local_features(second))
        assert not verdict.same_scene, verdict


def test_a_small_pasted_object_does_not_make_two_photos_one_scene():
    # The astronaut's head, shrunk to 70 px and pasted into a corner of the coffee photo: many true matches,
    # but they cover at most 70 * 70 / (600 * 400) = 2 % of the coffee photo, less than MIN_SPREAD.
    astronaut, coffee = photo("astronaut"), photo("coffee").copy()
    coffee[10:80, 10:80] = cv2.resize(astronaut[0:200, 150:350], (70, 70), interpolation=cv2.INTER_AREA)
    verdict = verify.verify_pair(verify.local_features(astronaut), verify.local_features(coffee))
    assert verdict.inliers >= verify.MIN_INLIERS  # the head is found...
    assert verdict.spread < 70 * 70 / (600 * 400) and not verdict.same_scene  # ...and judged too small


def test_matches_are_one_to_one():
    # b holds every 10th of a's descriptors. Each of those finds its own copy (distance 0) both ways; any other
    # descriptor of a that passes the ratio test against b's few would be a second match to an already matched
    # descriptor of b, which one-to-one matching must refuse (without it, many of a's map to one of b's).
    a = verify.local_features(photo("astronaut")).descriptors
    chosen = np.arange(0, len(a), 10)
    in_a, in_b = verify._mutual_matches(a, a[chosen])
    assert len(set(in_b)) == len(in_b)
    assert set(zip(in_a, in_b)) <= set(zip(chosen, range(len(chosen))))
    assert len(in_a) >= 0.9 * len(chosen)  # all but descriptors with a near-twin in b (ratio test)


def test_features_are_deterministic_and_bounded():
    big = cv2.resize(photo("astronaut"), (1600, 1200), interpolation=cv2.INTER_CUBIC)  # 4:3, over LONG_SIDE
    one, two = verify.local_features(big), verify.local_features(big.copy())
    assert np.array_equal(one.points, two.points) and np.array_equal(one.descriptors, two.descriptors)
    assert one.size == (verify.LONG_SIDE, verify.LONG_SIDE * 3 // 4)  # shrunk to LONG_SIDE, 4:3 kept
    assert len(one.points) == verify.MAX_KEYPOINTS  # the photo has more; the strongest are kept
    assert one.points.dtype == np.float16 and one.descriptors.dtype == np.uint8
    assert one.nbytes == verify.MAX_KEYPOINTS * (2 * 2 + 128)
    assert len(np.unique(one.points, axis=0)) == len(one.points)  # no location twice
    assert (one.points >= 0).all() and (one.points[:, 0] < one.size[0]).all() and (one.points[:, 1] < one.size[1]).all()


def test_a_photo_with_nothing_to_match_is_not_the_same_scene_as_anything():
    blank = verify.local_features(np.full((300, 400, 3), 128, np.uint8))
    assert len(blank.points) == 0
    assert verify.verify_pair(blank, verify.local_features(photo("coffee"))) == verify.Verdict(False, 0, 0.0)
    assert verify.verify_pair(blank, blank) == verify.Verdict(False, 0, 0.0)
