#!/usr/bin/env python3
"""Measure a model's --sim calibration table on a library with ground truth (the test photos).

    .venv/bin/python scripts/calibrate.py "$(.venv/bin/python scripts/get_test_photos.py)" --model squeezenet

It copies the library into a temporary folder, leaving out byte-identical duplicates (the devset ships some
wallpapers as one file under a dozen names, which would swamp the pair counts), and adds two generated variants
of each album and nature photo (half size re-encoded at JPEG quality 70; an 85% centre crop), so 'variant' pairs
are real resized/cropped copies. It fingerprints that copy through photocluster's own cache, then prints:
  - the cosine distribution of unrelated pairs and of same-group pairs (variants and same-scene shots);
  - pairwise precision, recall and F1 of average-linkage clusters against the ground-truth groups, per cut;
  - the suggested table and the rule behind each point (see the end of main()).
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import get_test_photos as test_photos  # noqa: E402 - the test photos' manifest helpers

from photocluster import models  # noqa: E402
from photocluster.cache import load_or_new  # noqa: E402
from photocluster.pipeline import run_once  # noqa: E402
from photocluster.settings import LibrarySettings, PatternOptions  # noqa: E402


# On a library this size F1 is flat across a range of cuts (differences are within sampling noise), so sim 0.5 takes
# the lowest cut on that plateau whose precision is high: a wrong photo in a folder costs a user more than a missed one.
PLATEAU = 0.02
PRECISION = 0.97


def build_calibration_library(source: Path, dest: Path) -> None:
    """Copy `source` without duplicate files, add generated variants, and write dest/manifest.csv."""
    from PIL import Image

    # a group whose other members were duplicates is no group any more
    rows = test_photos.drop_groups_of_one(test_photos.copy_without_duplicates(source, dest))
    for row in list(rows):
        if not row["file"].startswith(("album/", "nature/")):
            continue
        img = Image.open(dest / row["file"]).convert("RGB")
        w, h = img.size
        group = row["group"] or f"variants:{row['file']}"
        row["group"] = group
        stem = row["file"].rsplit(".", 1)[0]
        img.resize((w // 2, h // 2)).save(dest / f"{stem}.half.jpg", quality=70)
        img.crop((w * 15 // 200, h * 15 // 200, w - w * 15 // 200, h - h * 15 // 200)).save(dest / f"{stem}.crop.jpg")
        for suffix in ("half", "crop"):
            rows.append({"file": f"{stem}.{suffix}.jpg", "group": group, "kind": "variant", "tags": ""})
    test_photos.write_manifest(dest / "manifest.csv", rows)


def fingerprints(library: Path, model: str, out: Path) -> tuple[list[str], np.ndarray]:
    settings = LibrarySettings(library=library, out=out, model=model, patterns=PatternOptions(enabled=False))
    run_once(settings, progress=False)
    spec = models.model_spec(model)
    cache = load_or_new(settings.cache_path, spec.model_id, spec.dim)
    rels = cache.fingerprinted()
    vectors = cache.vectors(rels)
    return rels, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ground_truth(library: Path, rels: list[str]) -> np.ndarray:
    """Group ids in the order of `rels` (-1 = no group)."""
    rows = {r["file"]: r for r in csv.DictReader(open(library / "manifest.csv", newline=""))}
    names = sorted({rows[r]["group"] for r in rels if rows[r]["group"]})
    group_id = {g: i for i, g in enumerate(names)}
    return np.array([group_id.get(rows[r]["group"], -1) for r in rels])


def pair_masks(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    upper = np.triu(np.ones((len(groups), len(groups)), bool), 1)
    same = (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0) & upper
    return same, upper & ~same


def pairwise_scores(predicted: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    upper = np.triu(np.ones(same.shape, bool), 1)
    together = (predicted[:, None] == predicted[None, :]) & upper
    tp = np.sum(together & same)
    precision = tp / max(1, together.sum())
    recall = tp / max(1, same.sum())
    f1 = 2 * precision * recall / max(1e-12, precision + recall)
    return float(precision), float(recall), float(f1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", type=Path)
    parser.add_argument("--model", default="squeezenet", choices=models.MODEL_NAMES)
    parser.add_argument("--out", type=Path, default=None, help="keep the fingerprint cache here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "library"
        build_calibration_library(args.library, library)
        rels, unit = fingerprints(library, args.model, args.out or Path(tmp) / "out")
        groups = ground_truth(library, rels)
    sims = unit @ unit.T
    same, different = pair_masks(groups)
    print(f"{len(rels)} photos, {same.sum()} same-group pairs, {different.sum()} unrelated pairs; model {args.model}")
    for name, mask in [("unrelated", different), ("same-group", same)]:
        q = np.percentile(sims[mask], [1, 5, 50, 95, 99])
        print(f"  {name:>10} cosine: p1 {q[0]:.3f}  p5 {q[1]:.3f}  median {q[2]:.3f}  p95 {q[3]:.3f}  p99 {q[4]:.3f}")

    tree = linkage(unit, method="average", metric="cosine")
    print("\n   cut  precision  recall     F1  clusters>=2")
    scores = []
    for cut in np.round(np.arange(0.40, 0.99, 0.02), 2):
        predicted = fcluster(tree, t=1 - cut, criterion="distance")
        p, r, f1 = pairwise_scores(predicted, same)
        n2 = int(np.sum(np.bincount(predicted) >= 2))
        print(f"  {cut:.2f}     {p:.3f}   {r:.3f}  {f1:.3f}  {n2:>5}")
        scores.append((float(cut), p, f1))
    best_f1 = max(f1 for _, _, f1 in scores)
    plateau = [(cut, p) for cut, p, f1 in scores if f1 >= best_f1 - PLATEAU]
    middle = min((cut for cut, p in plateau if p >= PRECISION), default=max(plateau)[0])
    strict = max(cut for cut, _, f1 in scores if f1 >= best_f1 - 0.05)
    loose = float(np.percentile(sims[different], 99))
    print(f"\nbest F1 {best_f1:.3f}; cuts within {PLATEAU} of it: {[c for c, _ in plateau]}")
    print(f"sim 0.5 = lowest cut on that plateau with precision >= {PRECISION}: {middle:.2f}")
    print(f"sim 0.75 = highest cut with F1 within 0.05 of the best: {strict:.2f}")
    print(f"sim 0.25 = 99th percentile of unrelated pairs (below it unrelated photos join): {loose:.2f}")
    table = [(0.0, 0.0), (0.25, round(min(loose, middle - 0.01), 2)), (0.5, middle), (0.75, strict), (1.0, 1.0)]
    print(f"suggested table for {args.model}: {table}")


if __name__ == "__main__":
    main()
