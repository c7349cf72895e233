import os

import numpy as np
import pytest

from photocluster import models
from photocluster.cache import load_or_new
from photocluster.pipeline import run_once
from photocluster.settings import LibrarySettings, PatternOptions

from .conftest import save, scene, sha256_tree


def make_library(root, groups=3, copies=3, singles=3):
    """`groups` scenes with `copies` variants each (resized, re-encoded), plus unrelated single photos."""
    for g in range(groups):
        img = scene(g)
        save(img, root / f"trip{g}" / "orig.jpg", quality=92)
        for c in range(1, copies):
            save(img.resize((160 + 40 * c, 120 + 30 * c)), root / f"trip{g}" / f"copy{c}.jpg", quality=60 + 10 * c)
    for s in range(singles):
        save(scene(100 + s), root / "misc" / f"single{s}.png")
    return root


def settings(lib, **kw):
    kw.setdefault("patterns", PatternOptions(enabled=False))
    return LibrarySettings(library=lib, model="squeezenet", **kw)


def cluster_sets(report):
    return sorted(sorted(m) for m in report.layout.clusters.values())


def test_first_run_clusters_variants_together(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    report = run_once(settings(lib))
    assert report.photos == 12 and report.fingerprinted.computed == 12
    assert cluster_sets(report) == [[f"trip{g}/copy1.jpg", f"trip{g}/copy2.jpg", f"trip{g}/orig.jpg"]
                                    for g in range(3)]
    assert (lib / "photocluster/fingerprints.pk").exists()
    links = sorted(p.name for p in (lib / "photocluster/clusters/cluster_with_3").glob("*/*"))
    assert links == sorted(["copy1.jpg", "copy2.jpg", "orig.jpg"] * 3)


def test_rerun_with_nothing_changed_computes_nothing_and_keeps_the_tree(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    run_once(settings(lib))
    shown = os.readlink(lib / "photocluster/clusters")
    stand_in.calls = 0
    report = run_once(settings(lib))
    assert stand_in.calls == 0 and report.fingerprinted.computed == 0
    assert not report.layout_changed and os.readlink(lib / "photocluster/clusters") == shown


def test_adding_one_photo_fingerprints_exactly_one(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    first = run_once(settings(lib))
    stand_in.calls = 0
    save(scene(1).resize((300, 220)), lib / "new" / "another-copy.jpg")
    report = run_once(settings(lib))
    assert stand_in.calls == 1
    grown = [m for m in report.layout.clusters.values() if "new/another-copy.jpg" in m]
    assert len(grown) == 1 and "trip1/orig.jpg" in grown[0]
    # the cluster that grew keeps its number; the others are untouched
    number = [k for k, m in first.layout.clusters.items() if "trip1/orig.jpg" in m][0]
    assert report.layout.clusters[number] == grown[0]


def test_deleted_photo_leaves_cache_and_cluster(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    run_once(settings(lib))
    (lib / "trip0" / "copy2.jpg").unlink()
    report = run_once(settings(lib))
    assert report.removed == 1
    assert ["trip0/copy1.jpg", "trip0/orig.jpg"] in cluster_sets(report)
    gone = (lib / "trip0" / "copy2.jpg").resolve()  # other trips have a copy2.jpg too: compare link targets
    assert not [link for link in (lib / "photocluster/clusters").glob("*/*/*") if link.resolve() == gone]
    names = [p.name for p in (lib / "photocluster/clusters").glob("cluster_with_2/*/*")]
    assert sorted(names) == ["copy1.jpg", "orig.jpg"]


def test_undecodable_photo_is_skipped_once_and_remembered(tmp_path, stand_in, caplog):
    lib = make_library(tmp_path / "lib")
    (lib / "misc" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = run_once(settings(lib))
    assert report.fingerprinted.failed == ["misc/broken.jpg"]
    assert caplog.text.count("broken.jpg") == 1
    caplog.clear()
    again = run_once(settings(lib))
    assert again.fingerprinted.failed == [] and again.failed_total == 1 and "broken.jpg" not in caplog.text


def test_model_change_recomputes_everything(tmp_path, stand_in, monkeypatch):
    from photocluster import models

    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    run_once(settings(lib))
    spec = models.model_spec("x")
    monkeypatch.setattr(models, "model_spec", lambda name, weights=None: spec.__class__(
        **{**spec.__dict__, "model_id": "stand-in/other"}))
    stand_in.calls = 0
    run_once(settings(lib))
    assert stand_in.calls == 3


def test_dry_run_writes_nothing(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    report = run_once(settings(lib), dry_run=True)
    assert stand_in.calls == 0 and report.photos == 12
    assert not (lib / "photocluster").exists()


def test_out_elsewhere_and_originals_untouched(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    before = sha256_tree(lib)
    os.chmod(lib, 0o555)
    try:
        run_once(settings(lib, out=tmp_path / "out"))
    finally:
        os.chmod(lib, 0o755)
    assert sha256_tree(lib) == before
    listed = sorted(os.listdir(tmp_path / "out"))
    # scenes/ is made once there is a scene to remember (a candidate pair), and it is marked as ours
    assert [n for n in listed if n != "scenes"] == sorted([".photocluster", ".lock", ".cluster-input", "clusters",
                                                          "fingerprints.pk", "last-run.json", "gallery",
                                                          os.readlink(tmp_path / "out/clusters")])
    assert "scenes" not in listed or (tmp_path / "out/scenes/.photocluster-folder").is_file()


def test_sim_extremes(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    everything = run_once(settings(lib, sim=0.0))
    assert cluster_sets(everything) == [sorted(everything.layout.clusters[0])] and everything.clusters == 1
    identical = run_once(settings(lib, sim=1.0))
    assert identical.clusters == 0


def test_min_size(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    assert run_once(settings(lib, min_size=4)).clusters == 0
    assert run_once(settings(lib, min_size=1)).clusters == 6


def test_rerun_with_nothing_changed_skips_clustering_until_an_input_changes(tmp_path, stand_in, monkeypatch):
    import photocluster.pipeline as pipeline

    lib = make_library(tmp_path / "lib")
    first = run_once(settings(lib))
    clustered = []
    real_cluster_cache = pipeline.cluster_cache
    monkeypatch.setattr(pipeline, "cluster_cache", lambda *a, **kw: clustered.append(1) or real_cluster_cache(*a, **kw))
    again = run_once(settings(lib))
    assert clustered == [] and "cluster" not in again.seconds and cluster_sets(again) == cluster_sets(first)
    run_once(settings(lib, min_size=4))  # a setting the clusters depend on
    assert clustered == [1]
    (lib / "trip0" / "copy1.jpg").unlink()  # a photo the clusters depend on
    gone = run_once(settings(lib))
    assert clustered == [1, 1] and all("trip0/copy1.jpg" not in m for m in gone.layout.clusters.values())
    (lib / "photocluster" / ".cluster-input").write_text("tampered\n")  # an unknown key: cluster, never trust
    run_once(settings(lib))
    assert clustered == [1, 1, 1]


def test_incremental_pipeline_matches_from_scratch_and_reclusters_only_changes(tmp_path, stand_in, monkeypatch):
    from photocluster.cluster import IncrementalClusterer
    from photocluster.pipeline import LibraryPipeline

    lib = make_library(tmp_path / "lib")
    added_per_update = []
    real_update = IncrementalClusterer.update
    monkeypatch.setattr(IncrementalClusterer, "update",
                        lambda self, added=None, removed=(): added_per_update.append(len(added or {}))
                        or real_update(self, added, removed))
    daemon_like = LibraryPipeline(settings(lib, out=tmp_path / "inc"), incremental=True)
    daemon_like.update()
    save(scene(2).resize((250, 190)), lib / "new" / "one-more.jpg")
    (lib / "trip0" / "copy1.jpg").unlink()
    os.rename(lib / "trip1" / "copy2.jpg", lib / "trip1" / "renamed.jpg")
    report = daemon_like.update()
    assert added_per_update == [12, 2]  # everything at first; then the new photo and the renamed one
    assert cluster_sets(report) == cluster_sets(run_once(settings(lib, out=tmp_path / "scratch")))


def test_incremental_update_lists_again_what_changed_and_the_dirty_paths(tmp_path, stand_in, monkeypatch):
    from photocluster import scan_state
    from photocluster.pipeline import LibraryPipeline

    lib = make_library(tmp_path / "lib")
    for dirpath, _, _ in os.walk(lib):  # any later change in a folder sets its mtime to a different value
        os.utime(dirpath, ns=(10**18, 10**18))
    real_now = scan_state.time_ns
    monkeypatch.setattr(scan_state, "time_ns", lambda: real_now() + 60 * 10**9)  # folders listed long after a change
    daemon_like = LibraryPipeline(settings(lib, out=tmp_path / "out"), incremental=True)
    daemon_like.update()

    def rewrite_in_place(rel, seed):  # the same file under the same name: its folder's entries do not change
        with open(lib / rel, "r+b") as fh:
            fh.write(save(scene(seed), tmp_path / "new.jpg").read_bytes())
        os.utime(lib / rel, ns=(2 * 10**18 + seed, 2 * 10**18 + seed))

    stand_in.calls = 0
    save(scene(1).resize((300, 220)), lib / "trip1" / "another-copy.jpg")
    rewrite_in_place("trip2/copy1.jpg", 50)
    report = daemon_like.update(dirty=["trip2/copy1.jpg"])
    assert stand_in.calls == 2 and report.photos == 13
    assert "trip1/another-copy.jpg" in [rel for m in report.layout.clusters.values() for rel in m]
    rewrite_in_place("misc/single0.png", 51)
    assert daemon_like.update(dirty=[]).fingerprinted.computed == 0  # not named dirty: unseen
    assert daemon_like.update().fingerprinted.computed == 1  # dirty None: the whole library is scanned


def test_write_patterns_passes_the_caches_detections(tmp_path):
    from photocluster.labels import Detection
    from photocluster.pipeline import write_patterns

    person = Detection("person", 0.9, (0.0, 0.0, 0.5, 1.0))

    class Cache:
        def predictions(self, rels):
            return {rel: () for rel in rels}

        def detections(self, rels):
            return [{"a.jpg": (person, person), "b.jpg": None}[rel] for rel in rels]

    lib = tmp_path / "lib"
    lib.mkdir()
    root = tmp_path / "out" / "patterns" / "_root"
    assert write_patterns(LibrarySettings(library=lib, out=tmp_path / "out"), Cache(), ["a.jpg", "b.jpg"]) == 2
    assert (root / "utilities.txt").read_text() == "person:2:2\n\n"  # two people in a.jpg; b.jpg not detected


# --- objects from the detector (issue 13) ----------------------------------------------------------------------

def test_photos_fingerprinted_before_the_detector_get_detections_and_keep_their_fingerprints(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")  # 12 photos
    before = run_once(settings(lib, patterns=PatternOptions(objects="imagenet")))
    assert before.fingerprinted.computed == 12 and stand_in.detector.calls == 0  # imagenet objects: no detector
    cache_path = settings(lib).cache_path
    spec = models.model_spec("squeezenet")
    first = load_or_new(cache_path, spec.model_id, spec.dim)
    rels = first.fingerprinted()
    vectors = first.vectors(rels)
    after = run_once(settings(lib, patterns=PatternOptions(objects="both")))
    assert after.fingerprinted.computed == 0 and stand_in.calls == 12  # no photo fingerprinted again
    assert after.detected == 12 and stand_in.detector.calls == 12
    cache = load_or_new(cache_path, spec.model_id, spec.dim)
    assert cache.undetected() == [] and all(found == () for found in cache.detections(cache.fingerprinted()))
    np.testing.assert_array_equal(cache.vectors(rels), vectors)
    again = run_once(settings(lib, patterns=PatternOptions(objects="both")))
    assert again.detected == 0 and stand_in.detector.calls == 12  # done once


def test_new_photos_go_through_both_models_from_one_decode(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    report = run_once(settings(lib, patterns=PatternOptions(objects="both")))
    assert report.fingerprinted.computed == 12 and report.detected == 0
    assert stand_in.calls == 12 and stand_in.detector.calls == 12


def test_no_patterns_means_no_detector(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    run_once(settings(lib))  # patterns disabled
    assert stand_in.detector.calls == 0


# --- what produced each fingerprint (issue 15) -----------------------------------------------------------------

def test_the_cache_records_the_models_runtime_and_a_detect_only_pass_keeps_it(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")  # 12 photos
    stand_in.runtime = "x"
    first = run_once(settings(lib, patterns=PatternOptions(objects="imagenet")))
    assert first.fingerprinted.runtime == "x" and first.as_dict()["fingerprints_by_runtime"] == {"x": 12}
    stand_in.runtime = "y"
    detected = run_once(settings(lib, patterns=PatternOptions(objects="both")))  # only the detector runs
    assert detected.detected == 12 and detected.as_dict()["fingerprints_by_runtime"] == {"x": 12}
    save(scene(50), lib / "new.jpg")
    grown = run_once(settings(lib, patterns=PatternOptions(objects="both")))
    assert grown.as_dict()["fingerprints_by_runtime"] == {"x": 12, "y": 1}
    spec = models.model_spec("squeezenet")
    cache = load_or_new(settings(lib).cache_path, spec.model_id, spec.dim)
    assert {rel for rel, e in cache.entries.items() if e.producer == "y"} == {"new.jpg"}


@pytest.mark.parametrize("incremental", [False, True])
def test_a_daemon_saves_new_fingerprints_after_the_swap_and_a_one_shot_run_before(tmp_path, stand_in, monkeypatch,
                                                                                   incremental):
    from photocluster import layout
    from photocluster.pipeline import LibraryPipeline

    lib = make_library(tmp_path / "lib")
    pipe = LibraryPipeline(settings(lib), incremental=incremental)
    pipe.update()
    save(scene(0).resize((300, 220)), lib / "new" / "trip0-late.jpg")
    cached_at_swap = []
    real_swap = layout._swap_in
    monkeypatch.setattr(layout, "_swap_in", lambda *a: cached_at_swap.append(
        "new/trip0-late.jpg" in load_or_new(lib / "photocluster" / "fingerprints.pk", pipe.cache.model_id,
                                            pipe.cache.dim).entries) or real_swap(*a))
    report = pipe.update()
    assert any("new/trip0-late.jpg" in m for m in report.layout.clusters.values())
    assert cached_at_swap == [not incremental]  # the daemon's save waits until the new tree is shown
    on_disk = load_or_new(lib / "photocluster" / "fingerprints.pk", pipe.cache.model_id, pipe.cache.dim)
    assert "new/trip0-late.jpg" in on_disk.entries and not pipe.cache.dirty  # ...and then it is saved


def test_a_daemon_stopped_after_fingerprinting_still_saves_them(tmp_path, stand_in):
    from photocluster.pipeline import LibraryPipeline

    lib = make_library(tmp_path / "lib")
    pipe = LibraryPipeline(settings(lib), incremental=True)
    report = pipe.update(should_stop=lambda: pipe.cache is not None and pipe.cache.dirty)  # stop once it has work
    assert report.fingerprinted.computed == 12 and report.layout is None  # stopped before clustering
    on_disk = load_or_new(lib / "photocluster" / "fingerprints.pk", pipe.cache.model_id, pipe.cache.dim)
    assert len(on_disk.entries) == 12


def test_the_summaries_and_gallery_wait_for_a_later_update_when_told_to_yield(tmp_path, stand_in):
    from photocluster.pipeline import LibraryPipeline

    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    pipe = LibraryPipeline(settings(lib, gallery=True, patterns=PatternOptions(enabled=True, min_support=2)),
                           incremental=True)
    report = pipe.update(should_yield=lambda: True)  # more photos came meanwhile: show the tree, then stop
    assert report.clusters == 3 and (out / "clusters").is_symlink()
    assert not (out / "patterns").exists() and not (out / "gallery" / "index.html").exists()
    report = pipe.update()  # the next update writes them
    assert report.patterns_written > 0 and (out / "gallery" / "index.html").exists()
