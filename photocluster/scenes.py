"""The scenes stage: link pairs of photos that show one scene although their cosine is below the cut (issue 12).

A cosine between global fingerprints groups near-copies well, but two shots of one scene from another angle often
score no higher than two unrelated photos that look alike. So pairs below the cut are only proposed, never
trusted: each photo's k nearest photos with a cosine in the band [floor, cut) (cluster.BandNeighbours) are the
candidates, and a candidate pair is linked when one of two cues, cheapest first, says it is one scene:
  1. a burst: both photos name the same camera and were taken within `burst_seconds` of each other (EXIF);
  2. geometric verification: enough one-to-one local-feature matches agree on one homography (verify.py).
The links go to the clusterer, which joins the clusters of each linked pair (clustering.cluster_cache).

Everything a pair costs is kept in the SceneStore (<out>/scenes): each photo's capture and local features, each
pair's verdict, keyed by the photos' (path, size, mtime). A re-run verifies nothing it verified before, and a new
photo costs its own candidates only. Features are computed only for photos in a pair that needs verifying.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import models, verify
from .cache import FingerprintCache
from .capture import Capture, read_capture
from .fingerprint import decode_threads, progress_bar
from .cluster import BandNeighbours, cut_for_sim
from .images import DecodeDeferred, ImageError, load_image
from .library import open_photo, printable_path
from .scene_store import PhotoKey, SceneStore
from .settings import LibrarySettings

log = logging.getLogger(__name__)

Pair = tuple[str, str]
_FEATURE_MEMORY = 256  # photos' features held at once while verifying (about 100 KB each)
_SAVE_EVERY = 60.0  # seconds between saves of the verdicts during a long run


@dataclass(frozen=True)
class SceneOptions:
    """How pairs below the cut may still be linked. The defaults are the measured ones (README.rst)."""

    floor: float  # the band's lowest cosine; floor >= cut: no candidates at all
    k: int = 5  # candidates each photo proposes
    verify: bool = True  # geometric verification of candidates
    burst_seconds: float = 5.0  # 0: no burst cue
    burst_floor: float = -1.0  # the least cosine of a burst pair (at least the band's floor)

    def key(self) -> str:
        """What the links depend on besides the photos, for the clusters' input key."""
        return (f"floor={self.floor!r} k={self.k} verify={self.verify} burst={self.burst_seconds!r} "
                f"burst_floor={self.burst_floor!r} "
                f"{verify.VERSION}")


@dataclass
class SceneReport:
    candidates: int = 0  # candidate pairs
    bursts: int = 0  # of them linked as a burst
    verified: int = 0  # of them linked by verification
    verified_now: int = 0  # pairs verified in this run (the rest came from the store)
    features_now: int = 0  # photos whose features were computed in this run
    skipped: int = 0  # photos whose features could not be computed
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"candidates": self.candidates, "bursts": self.bursts, "verified": self.verified,
                "verified_now": self.verified_now, "features_now": self.features_now, "skipped": self.skipped,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def photo_keys(cache: FingerprintCache, rels: list[str]) -> dict[str, PhotoKey]:
    """Each photo's key in the store: its path, and the size and mtime its fingerprint was made from."""
    return {rel: (rel, cache.entries[rel].size, cache.entries[rel].mtime_ns) for rel in rels}


def stored_capture(store: SceneStore, key: PhotoKey, library: Path, compute: bool = True) -> Capture:
    """The photo's capture, from the store, else read from its EXIF (and kept, unless `compute` is off)."""
    capture = store.capture(key)
    if capture is None:
        capture = read_capture(library, key[0])
        if compute:
            store.put_capture(key, capture)
    return capture


class SceneLinker:
    """Finds the links for one library; kept by a daemon between runs, so its candidate lists stay current."""

    def __init__(self, options: SceneOptions, cut: float):
        self.options, self.cut = options, cut
        self._neighbours = BandNeighbours(min(options.floor, cut), cut, options.k)
        self._versions: dict[str, PhotoKey] = {}
        # The store's stamp() after links() pruned it to _versions and scene_links saved it: while it is unchanged
        # (no other run wrote it), the next prune needs to look only for the photos that left since.
        self._store_stamp: tuple | None = None

    def links(self, cache: FingerprintCache, rels: list[str], library: Path, store: SceneStore,
              compute: bool = True, progress: bool | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> tuple[set[Pair], SceneReport]:
        """The linked pairs among `rels` (fingerprinted photos). Without `compute`, only what the store already
        knows is used (a dry run computes nothing). When `should_stop()` turns true the work ends early, with what
        was done kept in the store; the links are then incomplete and must not be shown."""
        report = SceneReport()
        started = time.perf_counter()
        trusted = compute and self._store_stamp is not None and store.stamp() == self._store_stamp
        self._store_stamp = None
        keys = photo_keys(cache, rels)
        pairs, left = self._candidates(cache, keys)
        report.seconds["candidates"] = time.perf_counter() - started
        report.candidates = len(pairs)
        work = _PairWork(self.options, library, store, keys, compute, report, should_stop)
        links = work.bursts(pairs) if self.options.burst_seconds > 0 else set()
        if self.options.verify:
            links |= work.verified(sorted(pairs.keys() - links), progress)
        if compute:
            store.forget_except(keys.values(), left if trusted else None)
        report.seconds["total"] = time.perf_counter() - started
        log.info("scenes: %d candidate pairs, %d bursts, %d verified (%d verified now, features of %d photos)",
                 report.candidates, report.bursts, report.verified, report.verified_now, report.features_now)
        return links, report

    def stored(self, store: SceneStore) -> None:
        """`store`, which links() pruned to this linker's photos, is saved: note its stamp for the next prune."""
        self._store_stamp = store.stamp()

    def _candidates(self, cache: FingerprintCache,
                    keys: dict[str, PhotoKey]) -> tuple[dict[Pair, float], list[PhotoKey]]:
        """The candidate pairs, and the keys known before that left (their photo gone or changed)."""
        removed = list(self._versions.keys() - keys.keys())
        changed = [rel for rel, key in keys.items() if self._versions.get(rel) != key]
        self._neighbours.update(dict(zip(changed, cache.vectors(changed))), removed)
        left_keys = [self._versions[rel] for rel in removed + changed if rel in self._versions]
        self._versions = keys
        return self._neighbours.pairs(), left_keys


def scene_options(settings: LibrarySettings, cut: float) -> SceneOptions | None:
    """How the scenes stage links pairs below the cut, or None when it has nothing to do (--verify off and no
    burst cue, or a band that is empty: at sim 0.75 and above the floor is the cut). With --cut, the band's
    floor is the model's at --sim, kept below the cut."""
    if not settings.verify and settings.burst_seconds <= 0:
        return None
    floor = min(cut, cut_for_sim(models.scene_floor(settings.model), settings.sim))
    if floor >= cut:
        return None
    # A burst's frames are near-identical, so they sit in the upper half of the band; unrelated photos one camera
    # took seconds apart sit low (measured: at the floor itself 7 such pairs joined, in the upper half none).
    return SceneOptions(floor=floor, verify=settings.verify, burst_seconds=settings.burst_seconds,
                        burst_floor=(floor + cut) / 2)


def scene_links(linker: SceneLinker | None, options: SceneOptions, cut: float, cache: FingerprintCache,
                rels: list[str], settings: LibrarySettings, *, dry_run: bool, progress: bool | None,
                should_stop: Callable[[], bool]) -> tuple[SceneLinker, set[Pair], SceneReport]:
    """The links among `rels`, through `linker` (a daemon's, kept between runs) when it was made for these
    options and cut, else a new one; what they cost is kept in <out>/scenes (a dry run writes nothing)."""
    if linker is None or linker.options != options or linker.cut != cut:
        linker = SceneLinker(options, cut)
    store = SceneStore.open(settings.out_dir)
    try:
        links, report = linker.links(cache, rels, Path(settings.library), store, compute=not dry_run,
                                     progress=progress, should_stop=should_stop)
    finally:
        if not dry_run:
            store.save()
    if not dry_run:
        linker.stored(store)
    return linker, links, report


def stored_capture_seconds(settings: LibrarySettings, cache: FingerprintCache, rels: list[str],
                           dry_run: bool) -> np.ndarray:
    """Each photo's capture time in seconds (NaN: none), read once and kept in <out>/scenes."""
    store = SceneStore.open(settings.out_dir)
    seconds = capture_seconds(store, list(photo_keys(cache, rels).values()), Path(settings.library),
                              compute=not dry_run)
    if not dry_run:
        store.save()
    return seconds


def same_burst(a: Capture, b: Capture, seconds: float) -> bool:
    """Both photos name the same camera and were taken at most `seconds` apart.

    Times with a UTC offset are compared exactly; otherwise by the camera's clock (one camera, one clock: a photo
    whose offset is missing is still on it).
    """
    if a.time is None or b.time is None or a.camera is None or a.camera != b.camera:
        return False
    if a.time.tzinfo is not None and b.time.tzinfo is not None:
        apart = abs((a.time - b.time).total_seconds())
    else:
        apart = abs((a.time.replace(tzinfo=None) - b.time.replace(tzinfo=None)).total_seconds())
    return apart <= seconds


def capture_seconds(store: SceneStore, keys: list[PhotoKey], library: Path, compute: bool = True) -> np.ndarray:
    """Each photo's capture time as seconds since 1970 (NaN where it has none), for time mixing.

    A time with a UTC offset is placed exactly; one without is read as UTC: the camera's clock, which is what a
    photographer's own photos share (photos of two cameras in different zones, without offsets, are hours apart).
    """
    seconds = np.full(len(keys), np.nan)
    for i, key in enumerate(keys):
        capture = stored_capture(store, key, library, compute)
        if capture.time is not None:
            when = capture.time if capture.time.tzinfo else capture.time.replace(tzinfo=timezone.utc)
            seconds[i] = when.timestamp()
    return seconds


class _PairWork:
    """The cues for one run's candidate pairs, with the store as memory."""

    def __init__(self, options: SceneOptions, library: Path, store: SceneStore, keys: dict[str, PhotoKey],
                 compute: bool, report: SceneReport, should_stop: Callable[[], bool]):
        self.options, self.library, self.store, self.keys = options, library, store, keys
        self.compute, self.report, self.should_stop = compute, report, should_stop
        self.unreadable: set[str] = set()

    def bursts(self, pairs: dict[Pair, float]) -> set[Pair]:
        started = time.perf_counter()
        found = {(a, b) for (a, b), sim in pairs.items() if sim >= self.options.burst_floor
                 and same_burst(self._capture(a), self._capture(b), self.options.burst_seconds)}
        self.report.bursts = len(found)
        self.report.seconds["bursts"] = time.perf_counter() - started
        return found

    def verified(self, pairs: list[Pair], progress: bool | None) -> set[Pair]:
        started = time.perf_counter()
        todo = [(a, b) for a, b in pairs if self.store.verdict(self.keys[a], self.keys[b]) is None]
        if self.compute and todo:
            self._compute_features(sorted({rel for pair in todo for rel in pair}), progress)
            self.report.seconds["features"] = time.perf_counter() - started
            self._verify(todo, progress)
            self.report.seconds["pairs"] = time.perf_counter() - started - self.report.seconds["features"]
        self.report.seconds["verify"] = time.perf_counter() - started
        linked = set()
        for a, b in pairs:
            verdict = self.store.verdict(self.keys[a], self.keys[b])
            if verdict is not None and verdict.same_scene:
                linked.add((a, b))
        self.report.verified = len(linked)
        return linked

    def _capture(self, rel: str) -> Capture:
        return stored_capture(self.store, self.keys[rel], self.library, self.compute)

    def _compute_features(self, rels: list[str], progress: bool | None) -> None:
        """Features of the photos that lack them, in threads (OpenCV and Pillow's decoders release the GIL)."""
        missing = [rel for rel in rels if self.store.features(self.keys[rel]) is None]
        with progress_bar(len(missing), "local features", progress=progress) as bar, \
                ThreadPoolExecutor(decode_threads()) as pool:
            for rel, features in zip(missing, pool.map(self._features_of, missing)):
                if self.should_stop():
                    pool.shutdown(cancel_futures=True)
                    return
                if features is None:
                    self.unreadable.add(rel)
                else:
                    self.store.put_features(self.keys[rel], features)
                    self.report.features_now += 1
                bar.update()
        self.report.skipped = len(self.unreadable)

    def _features_of(self, rel: str) -> verify.Features | None:
        size, mtime_ns = self.keys[rel][1:]
        try:
            with open_photo(self.library, rel) as fh:
                st = os.fstat(fh.fileno())
                if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                    raise ImageError("changed since it was fingerprinted; verified on the next run")
                pixels = load_image(fh, (verify.LONG_SIDE, verify.LONG_SIDE), keep_aspect=True)
            return verify.local_features(pixels)
        except (ImageError, DecodeDeferred, OSError) as exc:
            log.warning("skipped verifying %s: %s", printable_path(rel), exc)
            return None

    def _verify(self, pairs: list[Pair], progress: bool | None) -> None:
        pairs = [(a, b) for a, b in pairs if a not in self.unreadable and b not in self.unreadable]
        features = lru_cache(_FEATURE_MEMORY)(lambda rel: self.store.features(self.keys[rel]))
        loaded = ((a, b, features(a), features(b)) for a, b in pairs)  # pairs come sorted: neighbours share photos
        with progress_bar(len(pairs), "verifying pairs", "pair", progress) as bar, \
                ThreadPoolExecutor(decode_threads()) as pool:
            jobs = ((a, b, pool.submit(verify.verify_pair, fa, fb)) for a, b, fa, fb in loaded
                    if fa is not None and fb is not None)
            saved = time.monotonic()
            for a, b, job in _bounded(jobs, 4 * decode_threads()):
                self.store.put_verdict(self.keys[a], self.keys[b], job.result())
                self.report.verified_now += 1
                bar.update()
                if time.monotonic() - saved > _SAVE_EVERY:  # a long first run keeps its verdicts if killed
                    self.store.save()
                    saved = time.monotonic()
                if self.should_stop():
                    return


def _bounded(jobs, ahead: int):
    """Yield submitted jobs in order, keeping at most `ahead` of them in flight (memory stays small)."""
    window = []
    for job in jobs:
        window.append(job)
        if len(window) >= ahead:
            yield window.pop(0)
    yield from window
