"""The scenes stage (photocluster/scenes.py): the burst cue, and what a run verifies (nothing twice)."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from photocluster.capture import Capture
from photocluster.pipeline import LibraryPipeline, run_once
from photocluster.scene_store import SceneStore
from photocluster.scenes import SceneLinker, SceneOptions, photo_keys, same_burst
from photocluster.settings import LibrarySettings, PatternOptions
from photocluster.verify import Features, Verdict

from .conftest import load_script

T0 = datetime(2024, 5, 1, 12, 0, 0)
CANON = ("Canon", "EOS R6")


def shot(seconds: float, camera=CANON, tz=None) -> Capture:
    when = T0 + timedelta(seconds=seconds)
    return Capture(when.replace(tzinfo=tz) if tz else when, *camera)


def test_one_camera_within_the_seconds_is_a_burst_and_the_limit_is_inclusive():
    assert same_burst(shot(0), shot(4.999), 5.0)
    assert same_burst(shot(0), shot(5.0), 5.0)
    assert not same_burst(shot(0), shot(5.001), 5.0)
    assert same_burst(shot(3), shot(0), 5.0)  # either order


def test_another_camera_or_no_time_or_no_camera_is_no_burst():
    assert not same_burst(shot(0), shot(1, camera=("Canon", "EOS R5")), 5.0)
    assert not same_burst(shot(0), Capture(None, *CANON), 5.0)
    assert not same_burst(Capture(T0, None, None), Capture(T0, None, None), 5.0)


def test_times_with_offsets_are_compared_in_utc_and_without_by_the_cameras_clock():
    plus_two, utc = timezone(timedelta(hours=2)), timezone.utc
    # 12:00:00+02:00 is 10:00:00 UTC: 3 s before 10:00:03 UTC, though the clocks read two hours apart
    assert same_burst(shot(0, tz=plus_two), Capture(datetime(2024, 5, 1, 10, 0, 3, tzinfo=utc), *CANON), 5.0)
    assert not same_burst(shot(0, tz=plus_two), shot(3, tz=utc), 5.0)  # both read 12:00, but two hours apart
    # one photo without its offset: the one camera's clock is what both read
    assert same_burst(shot(0, tz=plus_two), shot(3), 5.0)


@pytest.fixture
def library(devset, squeezenet, tmp_path):
    """Four real nature photos and two shots of a fifth (its garden, framed twice): a candidate pair at least;
    and a photo to add later: the ladybird's left 70 % is in the library, its right 70 % comes later (the camera
    panned by 30 % of the frame: a candidate of the first, below the cut)."""
    builder = load_script("build_scene_set")
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("Aqua.jpg", "Dune.jpg", "Storm.jpg"):
        shutil.copyfile(devset / "nature" / name, lib / name)
    garden = builder.shrunk(Image.open(devset / "nature/Garden.jpg").convert("RGB"), 1600)
    rng = np.random.default_rng(3)
    for i, box in enumerate(builder.crop_boxes(rng, garden.size, 2)):
        builder.make_shot(rng, garden, box, None).save(lib / f"garden_{i}.jpg", quality=90)
    bird = Image.open(devset / "nature/LadyBird.jpg").convert("RGB")
    bird.crop((0, 0, int(bird.width * 0.7), bird.height)).save(lib / "LadyBird_left.jpg", quality=90)
    return lib, bird.crop((int(bird.width * 0.3), 0, bird.width, bird.height))


def settings_for(lib, tmp_path) -> LibrarySettings:
    return LibrarySettings(library=lib, out=tmp_path / "out", model="squeezenet", patterns=PatternOptions(enabled=False))


@pytest.fixture
def verified_pairs(monkeypatch):
    """The pairs each run verifies (their paths), as the store is given their verdicts."""
    seen: list[tuple[str, str]] = []
    put = SceneStore.put_verdict
    monkeypatch.setattr(SceneStore, "put_verdict",
                        lambda self, a, b, verdict: (seen.append(tuple(sorted((a[0], b[0])))), put(self, a, b, verdict)))
    return seen


def test_a_re_run_with_no_change_verifies_nothing(library, tmp_path, verified_pairs):
    lib, _ = library
    first = run_once(settings_for(lib, tmp_path), progress=False)
    assert first.scenes is not None and first.scenes.verified_now == len(verified_pairs) > 0
    assert ("garden_0.jpg", "garden_1.jpg") in verified_pairs
    verified_pairs.clear()
    again = run_once(settings_for(lib, tmp_path), progress=False)
    assert verified_pairs == [] and again.scenes is None  # the clusters' input is unchanged: no stage ran
    assert again.layout.clusters == first.layout.clusters


@pytest.mark.parametrize("incremental", [True, False], ids=["daemon", "one-shot"])
def test_a_new_photo_verifies_only_pairs_of_its_own(library, tmp_path, verified_pairs, incremental):
    lib, panned = library
    pipeline = LibraryPipeline(settings_for(lib, tmp_path), incremental=incremental)
    pipeline.update(progress=False)
    first_pairs = set(verified_pairs)
    verified_pairs.clear()
    panned.save(lib / "LadyBird_right.jpg", quality=90)
    report = (pipeline if incremental else LibraryPipeline(settings_for(lib, tmp_path))).update(progress=False)
    assert verified_pairs and all("LadyBird_right.jpg" in pair for pair in verified_pairs)
    assert not first_pairs & set(verified_pairs)
    assert report.scenes.verified_now == len(verified_pairs)
    assert sorted(sorted(m) for m in report.layout.clusters.values()) == [
        ["LadyBird_left.jpg", "LadyBird_right.jpg"], ["garden_0.jpg", "garden_1.jpg"]]


@pytest.mark.parametrize("apart, grouped", [(timedelta(seconds=1), True), (timedelta(days=365), False)],
                         ids=["a second apart", "a year apart"])
def test_time_weight_groups_photos_taken_together_whatever_they_show(devset, squeezenet, tmp_path, apart, grouped):
    """imagecluster's mixing: at time weight 0.9 a sea and a storm (cosine distance about 0.6) taken a second
    apart are at 0.1 * 0.6 + 0.9 * 0 = 0.06, within the default cut's 0.12; a year apart at 0.06 + 0.9."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, when in (("Aqua.jpg", T0), ("Storm.jpg", T0 + apart)):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        Image.open(devset / "nature" / name).save(lib / name, exif=exif)
    settings = LibrarySettings(library=lib, out=tmp_path / "out", model="squeezenet", verify=False, burst_seconds=0,
                               patterns=PatternOptions(enabled=False))
    assert run_once(settings, progress=False).layout.clusters == {}  # by content alone, apart
    settings.time_weight = 0.9
    clusters = run_once(settings, progress=False).layout.clusters
    assert (sorted(clusters.values()) == [["Aqua.jpg", "Storm.jpg"]]) is grouped


class FakeCache:
    """Just what SceneLinker reads of a FingerprintCache: each photo's size, mtime and fingerprint."""

    def __init__(self):
        self.entries, self._vectors = {}, {}

    def put(self, rel: str, version: int, vector: np.ndarray) -> None:
        self.entries[rel], self._vectors[rel] = SimpleNamespace(size=100 + version, mtime_ns=version), vector

    def vectors(self, rels):
        return [self._vectors[rel] for rel in rels]


A_FEATURE = Features(np.zeros((1, 2), np.float16), np.zeros((1, 128), np.uint8), (480, 360))


def files_under(folder: Path) -> dict[str, bytes]:
    """The files (not the folders' marks: a shard folder, once made, stays) and their bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".photocluster-folder"}


def run_linker(linker: SceneLinker, cache: FakeCache, out: Path, keep: bool) -> set:
    """One run as scene_links does it, with captures that make every candidate a burst (one camera, seconds
    apart), and what verification would put (features, a verdict) for photos that have none, so the store holds
    data of every photo to forget."""
    rels = sorted(cache.entries)
    keys = photo_keys(cache, rels)
    store = SceneStore.open(out)
    for i, rel in enumerate(rels):
        store.put_capture(keys[rel], shot(i % 3))
    links, _ = linker.links(cache, rels, out, store)
    for i, rel in enumerate(rels):  # as if verified in this run (after links' prune: kept till the next one)
        if store.features(keys[rel]) is None:
            store.put_features(keys[rel], A_FEATURE)
            store.put_verdict(keys[rel], keys[rels[i - 1]], Verdict(False, 0, 0.0))
    store.save()
    if keep:
        linker.stored(store)
    return links


def test_a_kept_linker_gives_the_links_and_leaves_the_store_as_a_new_linker_each_run_does(tmp_path, monkeypatch):
    """A daemon's linker, kept between updates, forgets only the photos that left; each update must still give
    what a new linker (the one-shot run: every list searched, the store pruned against every photo) gives."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=8)
    pool = {f"p{i:02d}.jpg": base + rng.normal(scale=1.2, size=8) for i in range(40)}
    options = SceneOptions(floor=0.2, k=3, verify=False, burst_seconds=5.0, burst_floor=0.2)
    kept, cache = SceneLinker(options, cut=0.85), FakeCache()
    kept_out, fresh_out = tmp_path / "kept", tmp_path / "fresh"
    kept_out.mkdir(), fresh_out.mkdir()
    pruned_by_key = []
    forget = SceneStore.forget_except
    monkeypatch.setattr(SceneStore, "forget_except", lambda self, current, left=None: (
        pruned_by_key.append((self.out_dir, left is not None)), forget(self, current, left))[1])
    names = sorted(pool)
    for rel in names[:30]:
        cache.put(rel, 1, pool[rel])
    for step in range(8):
        if step:
            for rel in rng.choice(names, size=3, replace=False):  # new photos, or changed ones (a new version)
                cache.put(str(rel), step + 1, pool[rel] + rng.normal(scale=0.5, size=8))
            for rel in rng.choice(names, size=2, replace=False):
                cache.entries.pop(str(rel), None)
        if step == 5:  # another run writes the store between two updates: the next prune looks at everything
            SceneStore.open(kept_out).put_features(("left-by-another-run.jpg", 1, 1), A_FEATURE)
        links = run_linker(kept, cache, kept_out, keep=True)
        assert links == run_linker(SceneLinker(options, cut=0.85), cache, fresh_out, keep=False)
        assert links  # bursts among the candidates: the test has something to compare
        assert files_under(kept_out) == files_under(fresh_out)
    kept_runs = [by_key for where, by_key in pruned_by_key if where == kept_out]
    assert kept_runs == [False] + [True] * 4 + [False] + [True] * 2  # the fast prune, except after another's write
