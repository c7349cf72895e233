"""Geometric verification (issue 12, point 2): do two photos show the same scene?

A cosine between global fingerprints cannot tell two shots of one scene from two unrelated photos that look alike.
Local features with a geometric check can (large-scale instance recognition: Sivic and Zisserman's Video Google,
Philbin et al.'s Oxford Buildings). OpenCV does every solved step; this module only chooses and bounds them:

- local_features: SIFT on a decode shrunk to LONG_SIDE px on its long side; keypoints at a location already taken
  by a stronger one dropped (SIFT gives one per dominant orientation); the MAX_KEYPOINTS strongest kept.
  Stored: x,y as float16 (at most 0.25 px off below 1024 px) and the raw SIFT descriptor as uint8 (OpenCV's own
  8-bit SIFT output), so a photo costs at most MAX_KEYPOINTS * (4 + 128) = 66,000 bytes. RootSIFT (L1-normalise,
  square root) is applied at matching time, exactly, from the uint8 descriptor.
- verify_pair: ratio-test matching (RATIO) made one-to-one: a match is kept only when it is also the best match in
  the other direction; then a RANSAC homography. Same scene when there are at least MIN_INLIERS inliers and their
  convex hull covers at least MIN_SPREAD of each image (many inliers bunched in one corner are a shared logo or
  texture, not a shared scene).

Thresholds measured with scripts/measure_verification.py on a scene set built by scripts/build_scene_set.py
(--groups 30, seed 12: 30 groups of 2-4 shots made from real photos, 87 same-scene pairs; 3,000 random pairs of
photos from different groups or none):
- inliers of same-scene pairs: min 7, p1 9, median 258; of unrelated pairs: median 4, p99 5, max 6 (a homography
  fits any 4 matches, so 4-6 is chance). One-to-one matching is what keeps that tail short: with the ratio test
  alone, 1,000 unrelated pairs reached p99 10 and max 38 inliers, and 2 of them passed MIN_INLIERS.
- MIN_INLIERS = 12, twice the most any unrelated pair reached: 0/3000 unrelated pairs let in, 83/87 same-scene
  pairs kept (8: 85/87 and 0/3000, but with no margin for photos with repeated texture; 15: 82/87).
- spread: same-scene median 0.35. MIN_SPREAD = 0.03 refuses no same-scene pair with 12 or more inliers here; it
  refuses a small object shared by two photos (a 70 px paste: 26-37 inliers, spread 0.005-0.015).
- cost, one core: 82 ms per photo for features (JPEG decode included), 17 ms per pair for verification;
  bytes per photo: at most 132,000 (mean 97,400) -- at LONG_SIDE 640 and MAX_KEYPOINTS 1000, measured first.
- The size of the decode, the number of keypoints, and ORB against SIFT, measured again on the full set
  (build_scene_set.py defaults: 521 same-scene pairs of shots; 1,000 unrelated pairs; CPU time on one core;
  same-scene pairs kept at 12 inliers; the most inliers of an unrelated pair), each line
  `scripts/measure_verification.py SET --unrelated 1000 --long-side PX --max-keypoints N [--orb]`:
      features  LONG_SIDE  MAX_KEYPOINTS  ms/photo  ms/pair  kept     unrelated max  bytes/photo (bound)
      SIFT      640        1000           61        12.2     506/521  7              132,000
      SIFT      640         500           62         4.4     504/521  5               66,000
      SIFT      480        1000           38         9.6     503/521  6              132,000
      SIFT      480         500           36         4.1     503/521  5               66,000
      SIFT      400         400           27         2.7     497/521  5               52,800
      ORB       640        1000            8         7.4     485/521  7               40,000
      ORB       480         500            7         2.1     464/521  6               20,000
  SIFT at 480 px and 500 keypoints: 3 same-scene pairs fewer than at 640/1000, for 40 % less time per photo,
  3x less per pair and half the bytes. ORB is 5x cheaper per photo, but loses 4-8 % of the same-scene pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LONG_SIDE = 480          # px: the long side of the decode features are computed on
MAX_KEYPOINTS = 500      # the strongest kept; bounds the bytes per photo
RATIO = 0.8              # Lowe's ratio test: best distance < RATIO * second best
RANSAC_PX = 4.0          # reprojection error (px at LONG_SIDE) within which a match is an inlier
MIN_INLIERS = 12         # see the measurement above
MIN_SPREAD = 0.03        # share of each image the inliers' convex hull must cover
# Stored features and verdicts are kept only while these are what computed them.
VERSION = f"sift{LONG_SIDE}-k{MAX_KEYPOINTS}-root-mutual-r{RATIO}-h{RANSAC_PX}-in{MIN_INLIERS}-s{MIN_SPREAD}"

# OpenCV's defaults (Lowe's): features (0: all), octave layers, contrast threshold, edge threshold, sigma. Stored
# features are kept only while these are what computed them (scene_formats.py).
SIFT_PARAMS = (0, 3, 0.04, 10, 1.6)
# With 8-bit descriptors: what is stored, so nothing is lost by storing it.
_SIFT = cv2.SIFT_create(*SIFT_PARAMS, cv2.CV_8U)


@dataclass(frozen=True)
class Features:
    """One photo's local features: points (n, 2) float16 x,y in a decode of `size` (width, height),
    descriptors (n, 128) uint8 raw SIFT, strongest first."""
    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.points.nbytes + self.descriptors.nbytes


@dataclass(frozen=True)
class Verdict:
    same_scene: bool
    inliers: int
    spread: float  # the smaller of the two images' shares covered by the inliers' convex hull


def local_features(pixels: np.ndarray) -> Features:
    """SIFT features of an RGB uint8 photo (height, width, 3), shrunk to LONG_SIDE px on its long side."""
    gray = _shrunk(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY))
    keypoints, descriptors = _SIFT.detectAndCompute(gray, None)
    height, width = gray.shape
    if not keypoints:
        return Features(np.zeros((0, 2), np.float16), np.zeros((0, 128), np.uint8), (width, height))
    points = np.array([k.pt for k in keypoints], np.float16)
    response = np.array([k.response for k in keypoints], np.float32)
    keep = _strongest_per_location(points, response)[:MAX_KEYPOINTS]
    return Features(points[keep], descriptors[keep].astype(np.uint8), (width, height))


def verify_pair(a: Features, b: Features) -> Verdict:
    """Whether `a` and `b` show the same scene, by one-to-one RootSIFT matches and a RANSAC homography."""
    forward, backward = _mutual_matches(a.descriptors, b.descriptors)
    if len(forward) < 4:  # a homography needs four
        return Verdict(False, 0, 0.0)
    src = a.points[forward].astype(np.float32)
    dst = b.points[backward].astype(np.float32)
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
    if mask is None:
        return Verdict(False, 0, 0.0)
    inlier = mask.ravel().astype(bool)
    spread = min(_hull_share(src[inlier], a.size), _hull_share(dst[inlier], b.size))
    count = int(inlier.sum())
    return Verdict(count >= MIN_INLIERS and spread >= MIN_SPREAD, count, spread)


def _shrunk(gray: np.ndarray) -> np.ndarray:
    scale = LONG_SIDE / max(gray.shape)
    if scale >= 1:
        return gray
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _strongest_per_location(points: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Indices of the strongest keypoint at each stored location, strongest first (ties by position: deterministic)."""
    order = np.lexsort((points[:, 1], points[:, 0], -response))
    _, first = np.unique(points[order], axis=0, return_index=True)
    return order[np.sort(first)]


def _root_sift(descriptors: np.ndarray) -> np.ndarray:
    d = descriptors.astype(np.float32)
    return np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1e-7))


def _mutual_matches(desc_a: np.ndarray, desc_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (in a, in b) of matches that pass the ratio test and are each other's best match."""
    if len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    root_a, root_b = _root_sift(desc_a), _root_sift(desc_b)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    best_back = {m.queryIdx: m.trainIdx for m in matcher.match(root_b, root_a)}
    pairs = [(m.queryIdx, m.trainIdx) for m, second in matcher.knnMatch(root_a, root_b, k=2)
             if m.distance < RATIO * second.distance and best_back.get(m.trainIdx) == m.queryIdx]
    if not pairs:
        return np.zeros(0, int), np.zeros(0, int)
    ia, ib = np.array(pairs).T
    return ia, ib


def _hull_share(points: np.ndarray, size: tuple[int, int]) -> float:
    if len(points) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(points))) / float(size[0] * size[1])
