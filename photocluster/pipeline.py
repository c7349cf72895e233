"""Run the stages for one library: scan, fingerprint what is new, cluster, lay out, summarise.

Both drivers (the one-shot CLI and the daemon) call `run_once`, so they can never drift apart.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import interrupts, lastrun, models
from .cache import FingerprintCache, load_or_new
from .checkpoint import CHECKPOINT_ENV, checkpointing  # noqa: F401 - CHECKPOINT_ENV: tests and scripts set it
from .cluster import cut_for_sim
from .clustering import (CLUSTER_KEY_NAME, IncrementalClustering, cluster_cache, cluster_input_key,
                         read_cluster_key, write_cluster_key)
from .corrections import CORRECTIONS_NAME, take_corrections
from .dask_fingerprinter import dask_steps
from .fingerprint import Fingerprinter
from .gallery import write_gallery
from .inprocess import EarlierDetector, detect_in_process, fingerprint_in_process, wants_detections
from .fsutil import FILE, is_atomic_temporary, open_dir, open_lock, remove_made, try_lock
from .layout import number_clusters, read_layout, remove_stale_generations, write_layout
from .library import PhotoFile, scan_library
from .moves import forget_missing, rekey_moved
from .object_embed import update_object_index
from .outdir import MARKER, adopt
from .scene_store import sweep_scene_leftovers
from .scenes import SceneLinker, SceneOptions, scene_links, scene_options, stored_capture_seconds
from .settings import LibrarySettings
from .run_report import RunReport  # noqa: F401 - imported from here by the drivers
from .scan_state import ScanState
from .wording import plural

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class OutputBusy(Exception):
    """Another photocluster process holds the output folder."""


def effective_cut(settings: LibrarySettings) -> float:
    """The cosine cut: --cut when given, else the model's calibration table at --sim."""
    if settings.cut is not None:
        return settings.cut
    return cut_for_sim(models.calibration(settings.model), settings.sim)


@contextlib.contextmanager
def output_lock(out_dir: Path, wait: float | None = None) -> Iterator[None]:
    """Make the output folder photocluster's (its marker first) and hold its lock.

    flock(2) dies with its process, so a killed run never leaves the lock stuck. The lock file is opened without
    following a symlink (fsutil.open_lock): one planted there is refused, and its target left as it is.
    """
    adopt(out_dir)
    fd = open_lock(out_dir / LOCK_NAME)
    try:
        if not try_lock(fd):
            log.warning("another photocluster run is using %s; waiting for it to finish", out_dir)
            deadline = None if wait is None else time.monotonic() + wait
            while not try_lock(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    raise OutputBusy(f"{out_dir} is in use by another photocluster process")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor lets go of the lock


@dataclass
class _Run:
    """One update: what it was asked to do, and the report it fills in."""

    report: RunReport
    dry_run: bool = False
    progress: bool | None = None
    should_stop: Callable[[], bool] = lambda: False
    should_yield: Callable[[], bool] = lambda: False  # leave the stages after the swap for a later update
    tree_unedited: bool = False  # the caller knows the shown tree is as made: no need to read it for corrections
    laying_out: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # around a new tree's build
    hold_back: Collection[str] = ()
    dirty: Collection[str] | None = None  # None: scan the whole library
    renamed: dict[str, str] = field(default_factory=dict)  # photos moved inside the library: old -> new path
    timer: _Timer = field(init=False)

    def __post_init__(self) -> None:
        self.timer = _Timer(self.report.seconds)


class LibraryPipeline:
    """The stages for one library. It keeps its cache in memory between updates, so a daemon pays for
    loading it once; a change to the cache file by another process (a one-shot run) is noticed and reloaded.
    With `incremental`, it also keeps the clustering between updates and re-clusters only what changed."""

    def __init__(
        self, settings: LibrarySettings, fingerprint: Fingerprinter = fingerprint_in_process, incremental: bool = False,
        detect: EarlierDetector | None = None,
    ):
        self.settings = settings
        self.fingerprint = fingerprint
        # The detect step for photos fingerprinted before: in this process beside the in-process fingerprinter;
        # the daemon passes its worker's (WorkerFingerprinter.detect_earlier), so TensorFlow stays out of it.
        self.detect = detect or (detect_in_process if fingerprint is fingerprint_in_process else None)
        # The object index step (--index-objects) runs the model in this process: the one-shot CLI's only for now.
        self.index_objects = update_object_index if fingerprint is fingerprint_in_process else None
        self.incremental = IncrementalClustering() if incremental else None
        self.keep_scenes = incremental  # a daemon keeps the candidate lists between updates
        self.scan_state = ScanState() if incremental else None  # ...and what each folder held (scan_state.py)
        self._scenes: SceneLinker | None = None
        self.cache: FingerprintCache | None = None
        self._cache_stamp: tuple | None = None

    def update(
        self, dry_run: bool = False, progress: bool | None = None, should_stop: Callable[[], bool] = lambda: False,
        hold_back: Collection[str] = (), dirty: Collection[str] | None = None,
        should_yield: Callable[[], bool] = lambda: False, tree_unedited: bool = False,
        laying_out: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> RunReport:
        """Bring the output of the library up to date with its photos.

        `hold_back` names photos not to fingerprint in this run (the daemon's files still being written).
        When `should_stop()` turns true while fingerprinting, the cache is saved and the run ends there.
        With `incremental`, `dirty` (library-relative paths, '/'-separated, of every file or folder an event named
        since the last update) makes the scan list again only the folders that changed or hold a dirty path
        (ScanState.scan); None scans the whole library. Once `should_yield()` is true, the stages after the swap
        (summaries, gallery) are left for the next update. `tree_unedited` (the daemon's watch on the shown tree
        saw no edit since the last read) skips reading the tree for corrections; `laying_out()` is entered while
        a new tree is built and swapped in (the daemon stops watching the tree it moves folders out of).
        """
        run = _Run(self._new_report(), dry_run=dry_run, progress=progress, should_stop=should_stop,
                   should_yield=should_yield, hold_back=hold_back, dirty=dirty, tree_unedited=tree_unedited,
                   laying_out=laying_out)
        out_dir = self.settings.out_dir
        if dry_run:
            return self._update_locked(run)
        scanned = None
        if not out_dir.exists():  # a first run scans before it makes the output folder: none for no photos
            scanned = self._scan(dirty)
            if not scanned:
                return run.report
        with output_lock(out_dir):
            return self._update_locked(run, scanned)

    def _update_locked(self, run: _Run, scanned: dict[str, PhotoFile] | None = None) -> RunReport:
        settings, report, timer = self.settings, run.report, run.timer
        if not run.dry_run:
            sweep_leftovers(settings.out_dir, settings.cache_path.name)
        with timer("scan"):
            photos = self._scan(run.dirty) if scanned is None else scanned
        if not photos:
            # An empty library, or an unmounted share's mount point: change nothing (forgetting every photo would
            # empty the clusters, and the remount would fingerprint them all again).
            return report
        with timer("cache_load"):
            cache = self._load_cache(run.dry_run)
        with self._saving_at_the_end(run, cache):
            self._fingerprint_changes(run, cache, photos)
            if not run.dry_run:
                fp = report.fingerprinted
                lastrun.record(settings, fp.images_per_second if fp.computed and fp.seconds else None)
            # Stopping (SIGTERM) after any stage is safe: the cache is saved, the shown tree is complete, and the
            # next run does the rest.
            if settings.index_objects and not run.dry_run and not run.should_stop():
                self._index_objects(run, cache, photos)
            if run.should_stop():
                return report
            rels = self._cluster_and_lay_out(run, cache, photos)
        if rels is None:  # stopped while linking scenes: the next run goes on from what the store keeps
            return report
        clustered = {rel for members in report.layout.clusters.values() for rel in members}
        report.unclustered = [rel for rel in rels if rel not in clustered]
        # The summaries and the gallery follow the tree shown; when should_yield() says more photos came (the
        # daemon's), they are left to the next update, which shows those photos sooner and writes them then.
        later = lambda: run.should_stop() or run.should_yield()  # noqa: E731
        if settings.patterns.enabled and not run.dry_run and not later():
            with timer("patterns"):
                report.patterns_written = write_patterns(settings, cache, rels, later)
        if settings.gallery and not run.dry_run and not later():
            with timer("gallery"):
                report.gallery = write_gallery(settings, cache, report.layout, rels, photos, run.progress, later)
        return report

    def _fingerprint_changes(self, run: _Run, cache: FingerprintCache, photos: dict[str, PhotoFile]) -> None:
        """Carry moved photos over, forget deleted ones, fingerprint new and changed ones, save the cache."""
        report = run.report
        report.photos = len(photos)
        run.renamed = rekey_moved(cache, photos)
        report.moved = len(run.renamed)
        report.removed = forget_missing(cache, photos)
        todo = [p for _, p in sorted(photos.items()) if not cache.is_current(p) and p.rel not in run.hold_back]
        if run.dry_run:
            report.would_fingerprint = len(todo)
            report.estimated_seconds = self._estimate_seconds(len(todo))
        elif todo:
            with run.timer("fingerprint"), checkpointing(cache, lambda: self._save_cache(cache),
                                                         final_save=self.incremental is None) as writer:
                report.fingerprinted = self.fingerprint(self.settings, writer, todo, run.progress, run.should_stop)
        if not run.dry_run and not run.should_stop():
            self._detect_earlier_photos(run, cache, photos)
        if cache.dirty and not run.dry_run and self.incremental is None:
            with run.timer("cache_save"):
                self._save_cache(cache)
        report.failed_total = sum(1 for e in cache.entries.values() if e.error)
        report.by_runtime = cache.fingerprints_by_producer()

    @contextlib.contextmanager
    def _saving_at_the_end(self, run: _Run, cache: FingerprintCache) -> Iterator[None]:
        """Save the cache when the block ends, also when a stop signal (interrupts.Interrupted) or an error ends it;
        not after a second Ctrl-C, which asks to stop at once.

        A daemon (incremental) saves its last fingerprints only here, after the swap, so a new photo is shown 0.5 s
        sooner at 100,000 photos; a crash before loses no more than one checkpoint interval, as a crash while
        fingerprinting does. A one-shot run saves at once (_fingerprint_changes): its clustering can take minutes.
        """
        try:
            yield
        finally:
            if cache.dirty and not run.dry_run and not interrupts.forced():
                with run.timer("cache_save"), interrupts.keeping_work(lambda: True):  # a stop waits for the save
                    self._save_cache(cache)

    def _detect_earlier_photos(self, run: _Run, cache: FingerprintCache, photos: dict[str, PhotoFile]) -> None:
        """Detect objects in photos fingerprinted before the detector was used (an older cache); their
        fingerprints are kept."""
        if self.detect is None or not wants_detections(self.settings):
            return
        undetected = [photos[rel] for rel in cache.undetected() if rel in photos and rel not in run.hold_back]
        if undetected:
            log.info("detecting objects in %s fingerprinted before", plural(len(undetected), "photo"))
            with run.timer("detect"), checkpointing(cache, lambda: self._save_cache(cache),
                                                    final_save=self.incremental is None) as writer:
                run.report.detected = self.detect(self.settings, writer, undetected, run.progress, run.should_stop)

    def _index_objects(self, run: _Run, cache: FingerprintCache, photos: dict[str, PhotoFile]) -> None:
        if self.index_objects is None:
            if not getattr(self, "_objects_warned", False):  # once per library, not on every update
                self._objects_warned = True
                log.warning("index_objects: the daemon does not build the object index yet; run 'photocluster %s "
                            "--index-objects' to build it", self.settings.library)
            return
        with run.timer("objects"):
            run.report.objects = self.index_objects(self.settings, cache, photos, run.progress, run.should_stop)

    def _cluster_and_lay_out(self, run: _Run, cache: FingerprintCache,
                             photos: dict[str, PhotoFile]) -> list[str] | None:
        """Link scenes, cluster the fingerprints and swap in the new tree; return the photos considered (None:
        stopped before clustering)."""
        report, out_dir, min_size = run.report, self.settings.out_dir, self.settings.min_size
        with run.timer("corrections"):
            previous = read_layout(out_dir)
            # The user's edits of the tree shown, read before the next tree replaces it (corrections.py).
            constraints, edited = take_corrections(out_dir, photos, run.renamed, run.dry_run,
                                                   read_tree=not run.tree_unedited)
        options = scene_options(self.settings, report.cut)
        evidence = (options.key() if options else "") + f" time_weight={self.settings.time_weight!r}"
        with run.timer("cluster_key"):
            input_key = cluster_input_key(cache, report.cut, min_size, photos, f"{evidence} {constraints.key()}")
        if previous is not None and not edited and read_cluster_key(out_dir) == input_key:
            # Nothing the clusters depend on has changed since `previous` was built: skip the clustering, which
            # at 10,000 VGG16 photos is seconds of all-pairs products (scripts/bench_rerun.py).
            report.layout, report.layout_changed = previous, False
            return [r for r in cache.fingerprinted() if r in photos]
        links = set()
        if options is not None:
            with run.timer("scenes"):
                links = self._scene_links(run, cache, photos, options)
            if run.should_stop():
                return None
        with run.timer("cluster"):
            rels, groups = cluster_cache(cache, cut=report.cut, min_size=min_size, only=photos,
                                         incremental=self.incremental, links=links, constraints=constraints,
                                         time_weight=self.settings.time_weight,
                                         capture_seconds=lambda rels: stored_capture_seconds(
                                             self.settings, cache, rels, dry_run=run.dry_run))
        report.layout = number_clusters(groups, previous)
        report.layout_changed = previous is None or previous.clusters != report.layout.clusters
        if not run.dry_run:
            write_cluster_key(out_dir, None)  # a tree and a key that do not belong together must never meet
            if report.layout_changed or edited:  # an edited tree is built again, clean
                with run.timer("layout"), run.laying_out():
                    # unchanged folders are reused; after an edit, only those whose every link reads as made;
                    # without one, they are not listed again (take_corrections has just read them all)
                    write_layout(out_dir, Path(self.settings.library), report.layout, read_links=bool(edited),
                                 unedited=edited is False)
            write_cluster_key(out_dir, input_key)
        return rels

    def _scene_links(self, run: _Run, cache: FingerprintCache, photos: dict[str, PhotoFile],
                     options: SceneOptions) -> set[tuple[str, str]]:
        """The pairs below the cut that show one scene (scenes.py), with what they cost kept in <out>/scenes."""
        rels = [rel for rel in cache.fingerprinted() if rel in photos]
        linker, links, run.report.scenes = scene_links(
            self._scenes, options, run.report.cut, cache, rels, self.settings, dry_run=run.dry_run,
            progress=run.progress, should_stop=run.should_stop)
        self._scenes = linker if self.keep_scenes else None
        return links

    def _new_report(self) -> RunReport:
        s = self.settings
        return RunReport(model=s.model, weights=s.weights, sim=s.sim if s.cut is None else None,
                         out=str(s.out_dir), cut=effective_cut(s))

    def _scan(self, dirty: Collection[str] | None = None) -> dict[str, PhotoFile]:
        root, skip = Path(self.settings.library), (self.settings.out_dir,)
        if self.scan_state is None:
            return scan_library(root, skip=skip)
        return self.scan_state.scan(root, skip=skip, dirty=dirty)

    def _estimate_seconds(self, photos: int) -> float | None:
        """How long fingerprinting `photos` takes at the speed the last run of this model measured, if any."""
        last = lastrun.read(self.settings.out_dir)
        if not photos or last is None or last.model != self.settings.model or not last.images_per_second:
            return None
        return photos / last.images_per_second

    def _load_cache(self, dry_run: bool = False) -> FingerprintCache:
        stamp = _file_stamp(self.settings.cache_path)
        if self.cache is None or stamp != self._cache_stamp:
            spec = models.model_spec(self.settings.model, self.settings.weights)
            self.cache = load_or_new(self.settings.cache_path, spec.model_id, spec.dim, move_aside=not dry_run)
            self._cache_stamp = _file_stamp(self.settings.cache_path)
        return self.cache

    def _save_cache(self, cache: FingerprintCache) -> None:
        cache.save(self.settings.cache_path)
        self._cache_stamp = _file_stamp(self.settings.cache_path)


def run_once(
    settings: LibrarySettings,
    dry_run: bool = False,
    progress: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunReport:
    """One-shot: bring the output of one library up to date with its photos (fingerprinting on the Dask cluster
    that settings.dask names, if any). Without `should_stop`, it stops on SIGINT or SIGTERM (when stop_signals
    handles them): the fingerprints computed so far are saved, then Interrupted is raised."""
    report = LibraryPipeline(settings, **dask_steps(settings)).update(dry_run, progress,
                                                                      should_stop or interrupts.stop_requested)
    interrupts.raise_if_stopped(saved=report.fingerprinted.computed)
    return report


def _file_stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def sweep_leftovers(out_dir: Path, cache_name: str) -> None:
    """Remove what a killed run left behind: a half-built cluster generation, the temporaries of half-written files.

    Only a holder of the output lock calls this, so no other run is writing them now.
    """
    remove_stale_generations(out_dir)
    own_files = (cache_name, CLUSTER_KEY_NAME, lastrun.RECORD_NAME, MARKER, CORRECTIONS_NAME)
    with open_dir(out_dir, follow=True) as out_fd, os.scandir(out_fd) as it:
        temporaries = {e.name: FILE for e in it if is_atomic_temporary(e.name, own_files)}
        remove_made(out_fd, temporaries, os.fspath(out_dir))  # only regular files: a link by that name is left
    sweep_scene_leftovers(out_dir)


def write_patterns(settings: LibrarySettings, cache: FingerprintCache, rels: list[str],
                   should_stop: Callable[[], bool] = lambda: False) -> int:
    from .patterns import PatternSettings, update_patterns

    result = update_patterns(settings.out_dir, cache.predictions(rels), PatternSettings.from_options(settings.patterns),
                             library_root=Path(settings.library),
                             detections=dict(zip(rels, cache.detections(rels), strict=True)), should_stop=should_stop)
    return result.written


class _Timer:
    def __init__(self, into: dict[str, float]):
        self.into = into

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.into[name] = self.into.get(name, 0.0) + time.perf_counter() - started
