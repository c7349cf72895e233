#!/usr/bin/env python3
"""Where the cut and the candidates' band lie on a scene set: the figures behind sim 0.5's cut and floor.

    .venv/bin/python scripts/measure_scenes.py /tmp/scene_set --out /tmp/scene_out   # fingerprints the set
    .venv/bin/python scripts/measure_band.py /tmp/scene_set /tmp/scene_out [--model squeezenet] [--cut 0.88]

From the fingerprints in OUT/fingerprints.pk and the set's manifest it prints:
  - the cosine of copy, same-scene and decoy pairs (percentiles), and how many unrelated and same-group pairs lie
    at or above each cut from 0.80 to 0.90;
  - for floors 0.55 to 0.70 and k = 3 or 5 nearest photos in the band [floor, cut): how many of the same-scene
    pairs below the cut become candidates, how many candidate pairs there are, and how many photos need local
    features, for the union of the photos' lists (what photocluster does) and for mutual nearest photos only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_scenes import pair_kinds  # noqa: E402

from photocluster import models  # noqa: E402
from photocluster.cache import load_or_new  # noqa: E402


def cosines(out: Path, model: str) -> tuple[list[str], np.ndarray]:
    spec = models.model_spec(model)
    cache = load_or_new(out / "fingerprints.pk", spec.model_id, spec.dim, move_aside=False)
    rels = cache.fingerprinted()
    unit = cache.vectors(rels).astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -2.0)
    return rels, sims


def print_cuts(sims: np.ndarray, index: dict[str, int], kinds: dict[tuple[str, str], str]) -> None:
    together = np.zeros(sims.shape, bool)
    for (a, b), kind in kinds.items():
        if kind in ("copy", "same scene"):
            together[index[a], index[b]] = together[index[b], index[a]] = True
    upper = np.triu_indices(len(sims), 1)
    values, same = sims[upper], together[upper]
    print(f"pairs: {int(same.sum())} of one group, {int((~same).sum())} unrelated")
    for kind in ("copy", "same scene", "decoy"):
        found = np.array([sims[index[a], index[b]] for (a, b), k in kinds.items() if k == kind])
        if len(found):
            print(f"  {kind:>10} cosine: min {found.min():.3f}  p1 {np.percentile(found, 1):.3f}  "
                  f"p5 {np.percentile(found, 5):.3f}  median {np.median(found):.3f}  max {found.max():.3f}")
    for cut in np.round(np.arange(0.80, 0.901, 0.02), 2):
        print(f"  at or above {cut:.2f}: {int(((values >= cut) & ~same).sum())} unrelated pairs, "
              f"{int(((values >= cut) & same).sum())} of one group")


def print_candidates(sims: np.ndarray, index: dict[str, int], kinds: dict[tuple[str, str], str], cut: float) -> None:
    same = [(index[a], index[b]) for (a, b), kind in kinds.items() if kind == "same scene"]
    below = [(i, j) for i, j in same if sims[i, j] < cut]
    print(f"\nsame-scene pairs below the cut {cut}: {len(below)} of {len(same)}")
    for floor in (0.55, 0.60, 0.65, 0.70):
        band = (sims >= floor) & (sims < cut)
        order = np.argsort(-np.where(band, sims, -9.0), axis=1, kind="stable")
        for k in (3, 5):
            listed = np.zeros(sims.shape, bool)
            rows = np.repeat(np.arange(len(sims)), k)
            listed[rows, order[:, :k].ravel()] = True
            listed &= band
            for name, chosen in (("union", listed | listed.T), ("mutual", listed & listed.T)):
                covered = sum(1 for i, j in below if chosen[i, j])
                print(f"  floor {floor:.2f} k {k} {name:>6}: {covered}/{len(below)} covered, "
                      f"{int(np.triu(chosen, 1).sum())} candidate pairs, "
                      f"{int(chosen.any(axis=1).sum())}/{len(sims)} photos need features")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene_set", type=Path)
    parser.add_argument("out", type=Path, help="an output folder holding the set's fingerprints")
    parser.add_argument("--model", default="squeezenet", choices=models.MODEL_NAMES)
    parser.add_argument("--cut", type=float, default=0.88)
    args = parser.parse_args()
    rels, sims = cosines(args.out, args.model)
    _, kinds = pair_kinds(args.scene_set / "manifest.csv")
    index = {rel: i for i, rel in enumerate(rels)}
    print_cuts(sims, index, kinds)
    print_candidates(sims, index, kinds, args.cut)


if __name__ == "__main__":
    main()
