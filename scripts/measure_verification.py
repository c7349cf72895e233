#!/usr/bin/env python3
"""Measure geometric verification (photocluster/verify.py) on a scene set built by scripts/build_scene_set.py:
RANSAC inliers and spread for every same-scene pair and for random unrelated pairs, and the time it takes.

    .venv/bin/python scripts/build_scene_set.py /tmp/verify_set --groups 30
    .venv/bin/python scripts/measure_verification.py /tmp/verify_set [--unrelated 400] [--seed 12]
        [--long-side PX] [--max-keypoints N] [--orb]

Prints the distributions, the verdicts at the module's thresholds, ms per photo (features) and ms per pair
(verification) on one core, and the bytes per photo. Copies (kind 'copy') are left out: they are not what
verification is for. --long-side and --max-keypoints measure other settings than verify.py's; --orb measures
ORB with Hamming matches in place of SIFT, with the same matching, homography and thresholds.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from photocluster import verify  # noqa: E402


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        img.draft("RGB", (verify.LONG_SIDE, verify.LONG_SIDE))
        return np.asarray(img)


def pairs_of(rows: list[dict], unrelated: int, seed: int) -> tuple[list, list]:
    groups: dict[str, list[str]] = {}
    for row in rows:
        if row["kind"] == "same_scene":
            groups.setdefault(row["group"], []).append(row["file"])
    same = [p for files in groups.values() for p in itertools.combinations(files, 2)]
    group_of = {row["file"]: row["group"] for row in rows if row["kind"] != "copy"}
    files = sorted(group_of)
    rng = random.Random(seed)
    other: set[tuple[str, str]] = set()
    while len(other) < unrelated:
        a, b = sorted(rng.sample(files, 2))
        if not group_of[a] or group_of[a] != group_of[b]:
            other.add((a, b))
    return same, sorted(other)


def orb_features(max_keypoints: int):
    """ORB's counterpart of verify.local_features: keypoints and 32-byte binary descriptors, strongest first."""
    orb = cv2.ORB_create(nfeatures=max_keypoints)

    def features(pixels: np.ndarray) -> verify.Features:
        gray = verify._shrunk(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY))
        keypoints, descriptors = orb.detectAndCompute(gray, None)
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        descriptors = descriptors if descriptors is not None else np.zeros((0, 32), np.uint8)
        return verify.Features(points, descriptors, (gray.shape[1], gray.shape[0]))

    return features


def orb_verify(a: verify.Features, b: verify.Features) -> verify.Verdict:
    """verify.verify_pair with Hamming distances: the same ratio test, mutual matches, homography and thresholds."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return verify.Verdict(False, 0, 0.0)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    best_back = {m.queryIdx: m.trainIdx for m in matcher.match(b.descriptors, a.descriptors)}
    pairs = [(m.queryIdx, m.trainIdx) for found in matcher.knnMatch(a.descriptors, b.descriptors, k=2)
             if len(found) == 2 for m, second in [found]
             if m.distance < verify.RATIO * second.distance and best_back.get(m.trainIdx) == m.queryIdx]
    if len(pairs) < 4:
        return verify.Verdict(False, 0, 0.0)
    ia, ib = np.array(pairs).T
    src, dst = a.points[ia].astype(np.float32), b.points[ib].astype(np.float32)
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, verify.RANSAC_PX)
    if mask is None:
        return verify.Verdict(False, 0, 0.0)
    inlier = mask.ravel().astype(bool)
    spread = min(verify._hull_share(src[inlier], a.size), verify._hull_share(dst[inlier], b.size))
    count = int(inlier.sum())
    return verify.Verdict(count >= verify.MIN_INLIERS and spread >= verify.MIN_SPREAD, count, spread)


def summary(name: str, values: list[int]) -> str:
    v = np.array(values)
    return (f"{name}: n={len(v)} min={v.min()} p1={np.percentile(v, 1):.0f} median={np.median(v):.0f} "
            f"p99={np.percentile(v, 99):.0f} max={v.max()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene_set", type=Path)
    parser.add_argument("--unrelated", type=int, default=400)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--long-side", type=int, default=verify.LONG_SIDE, help="px of the decode features use")
    parser.add_argument("--max-keypoints", type=int, default=verify.MAX_KEYPOINTS)
    parser.add_argument("--orb", action="store_true", help="ORB features and Hamming matches instead of SIFT")
    args = parser.parse_args()
    # verify reads these at each call, so the script can measure other settings than the shipped ones
    verify.LONG_SIDE, verify.MAX_KEYPOINTS = args.long_side, args.max_keypoints
    if args.orb:
        verify.local_features, verify.verify_pair = orb_features(args.max_keypoints), orb_verify
    cv2.setNumThreads(1)
    with open(args.scene_set / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    same, other = pairs_of(rows, args.unrelated, args.seed)
    needed = sorted({f for pair in same + other for f in pair})

    start = time.process_time()
    features = {f: verify.local_features(decode(args.scene_set / f)) for f in needed}
    per_photo = (time.process_time() - start) / len(needed) * 1000
    start = time.process_time()
    verdicts = {pair: verify.verify_pair(features[pair[0]], features[pair[1]]) for pair in same + other}
    per_pair = (time.process_time() - start) / len(verdicts) * 1000

    for name, pairs in (("same-scene", same), ("unrelated", other)):
        print(summary(f"{name} inliers", [verdicts[p].inliers for p in pairs]))
        print(f"{name} spread: min={min(verdicts[p].spread for p in pairs):.3f} "
              f"median={np.median([verdicts[p].spread for p in pairs]):.3f}")
        print(f"{name} judged same scene at MIN_INLIERS={verify.MIN_INLIERS}, MIN_SPREAD={verify.MIN_SPREAD}: "
              f"{sum(verdicts[p].same_scene for p in pairs)}/{len(pairs)}")
    print("min inliers (with MIN_SPREAD): same-scene pairs kept, unrelated pairs let in")
    for least in (6, 8, 10, 12, 15, 20, 30):
        kept = sum(verdicts[p].inliers >= least and verdicts[p].spread >= verify.MIN_SPREAD for p in same)
        let_in = sum(verdicts[p].inliers >= least and verdicts[p].spread >= verify.MIN_SPREAD for p in other)
        print(f"  {least:3d}: {kept}/{len(same)}  {let_in}/{len(other)}")
    worst = sorted(other, key=lambda p: -verdicts[p].inliers)[:5]
    print("most inliers among unrelated pairs:", [(a, b, verdicts[(a, b)].inliers) for a, b in worst])
    missed = [(a, b, verdicts[(a, b)].inliers, round(verdicts[(a, b)].spread, 3))
              for a, b in same if not verdicts[(a, b)].same_scene]
    print("same-scene pairs missed:", missed)
    sizes = [f.nbytes for f in features.values()]
    print(f"features: {per_photo:.0f} ms/photo (decode included), verification: {per_pair:.1f} ms/pair, "
          f"one core (CPU time); bytes/photo: max {max(sizes)}, mean {np.mean(sizes):.0f}, "
          f"bound {verify.MAX_KEYPOINTS * (4 + 128)} (SIFT)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
