"""What the gallery says of each cluster: why its photos were grouped, when they were taken, what they show, and
which one to keep. Everything comes from what earlier stages stored (fingerprints, predictions and detections in
the cache, captures and verdicts in the scene store, quality measures in the thumbnails): no photo is decoded here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .cache import FingerprintCache
from .capture import Capture
from .fsutil import open_dir, read_regular
from .labels import class_labels
from .patterns import PATTERNS_DIR, STATE_NAME, SUMMARY, mirror_parts, photo_items
from .scene_store import SceneStore, key_digest
from .scenes import photo_keys, same_burst, stored_capture
from .settings import LibrarySettings
from .thumbs import Quality

log = logging.getLogger(__name__)

SHARP_SHARE = 0.8  # photos within this share of a cluster's best adjusted sharpness count as "the sharpest"
SHARED_SHARE = 0.5  # an object shared by a cluster: held by at least half its photos (and two)
SHARED_SHOWN = 6
PATTERNS_SHOWN = 5  # a folder's patterns shown in the gallery
EXAMPLES_SHOWN = 4  # example photos per pattern
_BLOCK = 1024  # rows of a cluster's cosine matrix computed at once


@dataclass(frozen=True)
class Best:
    rel: str
    reason: str


@dataclass
class ClusterFacts:
    number: int
    members: list[str]
    cosine: tuple[float, float] | None = None  # (lowest, mean) over its pairs; None for one photo
    taken: tuple[datetime, datetime] | None = None  # earliest and latest capture time (camera clock)
    timed: int = 0  # photos with a capture time
    objects: list[tuple[str, int]] = field(default_factory=list)  # shared objects, with how many photos hold each
    verified_pairs: int = 0  # pairs inside it that geometric verification judged one scene
    burst_photos: int = 0  # photos with a shot of the same camera at most burst_seconds before or after
    best: Best | None = None


@dataclass
class FolderPatterns:
    folder: str  # library folder ("" for the root)
    summary_href: str  # patterns/<mirror>/summary.md, relative to <out>
    photos: int
    patterns: list[tuple[tuple[str, ...], int, list[str]]]  # items, support, example photos


def cosine_stats(vectors: np.ndarray) -> tuple[float, float] | None:
    """The lowest and the mean cosine similarity over all pairs of rows; None for fewer than two.

    The mean comes from the sum of the unit vectors (|sum|^2 is every pair's cosine twice plus the n diagonal
    ones), the lowest from blocks of rows, so a cluster of thousands never holds its whole matrix.
    """
    n = len(vectors)
    if n < 2:
        return None
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 0)
    total = unit.sum(axis=0)
    mean = (float(total @ total) - float((unit * unit).sum())) / (n * (n - 1))
    lowest = np.inf
    for start in range(0, n, _BLOCK):
        block = unit[start:start + _BLOCK] @ unit.T
        rows = np.arange(len(block))
        block[rows, start + rows] = np.inf  # a photo's cosine with itself is no pair
        lowest = min(lowest, float(block.min()))
    return lowest, mean


def choose_best(qualities: Mapping[str, Quality]) -> Best | None:
    """The suggested best photo: the highest resolution among the sharpest. Sharpness is the variance of the
    Laplacian, scaled down by the share of clipped pixels (blown highlights, crushed shadows); "the sharpest" are
    those within SHARP_SHARE of the best such score. Ties go to the first path."""
    if not qualities:
        return None
    score = {rel: q.sharpness * (1.0 - q.clipped) for rel, q in qualities.items()}
    top = max(score.values())
    sharpest = [rel for rel in sorted(score) if score[rel] >= SHARP_SHARE * top]
    best = max(sharpest, key=lambda rel: (qualities[rel].pixels, score[rel]))  # max keeps the first of equals
    q = qualities[best]
    measured = f"Laplacian variance {q.sharpness:.0f}, {q.clipped:.1%} clipped"
    if len(qualities) == 1:
        reason = f"the only photo with a thumbnail ({measured}, {q.width}\u00d7{q.height})"
    elif len(sharpest) == 1:
        reason = f"the sharpest of {len(qualities)} ({measured}), at {q.width}\u00d7{q.height}"
    else:
        reason = (f"the highest resolution ({q.width}\u00d7{q.height}) of the {len(sharpest)} sharpest of "
                  f"{len(qualities)} ({measured})")
    return Best(best, reason)


def membership_key(cache: FingerprintCache, members: Sequence[str]) -> str:
    """What a cluster's cosine figures depend on: the model, and each member's version."""
    payload = json.dumps([cache.model_id] + [[rel, cache.entries[rel].size, cache.entries[rel].mtime_ns]
                                            for rel in sorted(members)])
    return hashlib.sha256(payload.encode("utf-8", "surrogateescape")).hexdigest()


def shared_objects(members: Sequence[str], items: Mapping[str, Sequence[str]]) -> list[tuple[str, int]]:
    counts = Counter(item for rel in members for item in items.get(rel, ()))
    least = max(2, SHARED_SHARE * len(members))
    shared = [(item, n) for item, n in counts.items() if n >= least]
    return sorted(shared, key=lambda pair: (-pair[1], pair[0]))[:SHARED_SHOWN]


def capture_span(captures: Sequence[Capture]) -> tuple[tuple[datetime, datetime] | None, int]:
    """The earliest and latest capture time, on the cameras' clocks (a UTC offset is not applied: photos show
    the time their camera showed), and how many photos have one."""
    times = [c.time.replace(tzinfo=None) for c in captures if c.time is not None]
    return ((min(times), max(times)) if times else None), len(times)


def burst_photos(captures: Mapping[str, Capture], seconds: float) -> int:
    """How many of the photos have a shot from the same camera at most `seconds` before or after them."""
    if seconds <= 0:
        return 0
    timed = sorted(((c.camera, c.time.replace(tzinfo=None), rel) for rel, c in captures.items()
                    if c.time is not None and c.camera is not None), key=lambda t: (t[0], t[1], t[2]))
    found = set()
    for (_, _, a), (_, _, b) in zip(timed, timed[1:]):  # one camera's shots in time order, then the next's
        if same_burst(captures[a], captures[b], seconds):
            found |= {a, b}
    return len(found)


def photo_objects(settings: LibrarySettings, cache: FingerprintCache, rels: Sequence[str]) -> dict[str, list[str]]:
    """Each photo's objects as the pattern summaries name them (patterns.photo_items, with their settings)."""
    options = settings.patterns
    names, coarse = class_labels(options.labels), class_labels("coarse")
    found = {}
    for rel, detections in zip(rels, cache.detections(list(rels))):
        objects, _ = photo_items(cache.entries[rel].predictions, detections, names=names, coarse=coarse,
                                 min_probability=options.threshold, source=options.objects)
        found[rel] = list(objects)
    return found


class ClusterEvidence:
    """The stored captures and scene verdicts of a library, read once for all its clusters."""

    def __init__(self, settings: LibrarySettings, cache: FingerprintCache, clustered: Sequence[str]):
        self.settings = settings
        self.store = SceneStore.open(settings.out_dir)
        self.keys = photo_keys(cache, list(clustered))
        self.captures = {rel: stored_capture(self.store, key, Path(settings.library))
                         for rel, key in self.keys.items()}
        self.store.save()  # captures read now are kept for the next run
        by_digest = {key_digest(key): rel for rel, key in self.keys.items()}
        self.same_scene = [(by_digest[a], by_digest[b]) for a, b in self.store.same_scene_digests()
                           if a in by_digest and b in by_digest]

    def facts(self, number: int, members: list[str], cosine: tuple[float, float] | None,
              items: Mapping[str, Sequence[str]], qualities: Mapping[str, Quality], verified: int) -> ClusterFacts:
        captures = {rel: self.captures[rel] for rel in members}
        taken, timed = capture_span(list(captures.values()))
        return ClusterFacts(number, members, cosine, taken, timed, shared_objects(members, items), verified,
                            burst_photos(captures, self.settings.burst_seconds),
                            choose_best({rel: qualities[rel] for rel in members if rel in qualities}))

    def verified_per_cluster(self, owner: Mapping[str, int]) -> Counter:
        return Counter(owner[a] for a, b in self.same_scene if a in owner and owner.get(b) == owner[a])


def folder_patterns(out_dir: Path, items: Mapping[str, Sequence[str]]) -> list[FolderPatterns]:
    """The per-folder pattern summaries (patterns/.state.json, which the patterns stage writes), each with the
    photos of the folder that hold all of a pattern's objects as examples. [] when there are none to read."""
    try:
        with open_dir(out_dir, follow=True) as out_fd, open_dir(PATTERNS_DIR, dir_fd=out_fd) as fd:
            state = json.loads(read_regular(STATE_NAME, fd) or b"{}")
        folders_state = state.get("folders", {}) if isinstance(state, dict) else {}
    except (OSError, ValueError) as exc:
        log.info("gallery: no pattern summaries shown: %s", getattr(exc, "strerror", None) or exc)
        return []
    by_folder: dict[str, list[str]] = {}
    for rel in sorted(items):
        by_folder.setdefault(rel.rpartition("/")[0], []).append(rel)
    found = []
    for folder, rels in sorted(by_folder.items()):
        key = "/".join(mirror_parts(folder))
        entry = folders_state.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("patterns"), list):
            continue
        patterns = []
        for pattern in entry["patterns"][:PATTERNS_SHOWN]:
            try:
                objects, support = tuple(str(o) for o in pattern[0]), int(pattern[1])
            except (TypeError, ValueError, IndexError):
                continue
            examples = [rel for rel in rels if all(o in items[rel] for o in objects)][:EXAMPLES_SHOWN]
            patterns.append((objects, support, examples))
        found.append(FolderPatterns(folder, os.path.join(PATTERNS_DIR, key, SUMMARY), len(rels), patterns))
    return found
