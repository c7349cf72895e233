"""Corrections made the way a file manager makes them (os.unlink, os.rename of links in the cluster folders), read
by the next run, kept in <out>/corrections.json, and held through new photos, re-runs and other --sim levels."""
import json
import logging
import os

import pytest

from photocluster.cli import main
from photocluster.corrections import CORRECTIONS_NAME, Corrections, NOT_WITH, WITH, parse, CorrectionsError
from photocluster.pipeline import run_once

from .conftest import save, scene
from .test_pipeline import make_library, settings


def variants_library(root, sizes=(4, 3, 2), singles=2):
    """Scene g gets sizes[g] variants named s{g}-{v}.jpg (resized, re-encoded), plus unrelated single photos.

    The names differ across scenes, so a link moved between cluster folders never meets one of the same name.
    """
    for g, size in enumerate(sizes):
        img = scene(g)
        for v in range(size):
            save(img.resize((320 - 30 * v, 240 - 20 * v)), root / f"scene{g}" / f"s{g}-{v}.jpg", quality=90 - 5 * v)
    for s in range(singles):
        save(scene(100 + s), root / "misc" / f"single{s}.png")
    return root


def members(g, size):
    return {f"scene{g}/s{g}-{v}.jpg" for v in range(size)}


def cluster_holding(report, rel):
    found = [set(m) for m in report.layout.clusters.values() if rel in m]
    return found[0] if found else None


def folder_of(out, rel, lib):
    """The cluster folder in the shown tree that holds the link to `rel`."""
    target = os.path.join(os.path.realpath(lib), rel)
    for link in (out / "clusters").glob("cluster_with_*/cluster_*/*"):
        if os.path.normpath(os.path.join(os.path.realpath(link.parent), os.readlink(link))) == target:
            return link.parent, link.name
    raise AssertionError(f"no link to {rel}")


def stored(out):
    return json.loads((out / CORRECTIONS_NAME).read_text())["photos"]


def generations(out):
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".clusters-"))


def test_a_deleted_link_takes_the_photo_out_through_new_photos_and_other_sims(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    first = run_once(settings(lib))
    assert cluster_holding(first, "trip0/copy2.jpg") == {"trip0/orig.jpg", "trip0/copy1.jpg", "trip0/copy2.jpg"}
    folder, name = folder_of(out, "trip0/copy2.jpg", lib)
    os.unlink(folder / name)  # the file manager's delete

    report = run_once(settings(lib))
    assert cluster_holding(report, "trip0/orig.jpg") == {"trip0/orig.jpg", "trip0/copy1.jpg"}
    assert "trip0/copy2.jpg" in report.unclustered
    assert stored(out) == {"trip0/copy2.jpg": {"with": [], "not_with": ["trip0/copy1.jpg", "trip0/orig.jpg"]}}
    assert len(generations(out)) == 1  # the edited generation was removed whole

    # A new variant of scene 0 joins its cluster; the corrected photo stays out.
    save(scene(0).resize((280, 210)), lib / "new" / "trip0-again.jpg")
    report = run_once(settings(lib))
    assert cluster_holding(report, "trip0/orig.jpg") == {"trip0/orig.jpg", "trip0/copy1.jpg", "new/trip0-again.jpg"}
    assert "trip0/copy2.jpg" in report.unclustered

    # sim 0 puts every photo in one cluster by the cut; the correction takes copy2 out of it.
    report = run_once(settings(lib, sim=0.0))
    everyone = set(report.unclustered) | {rel for m in report.layout.clusters.values() for rel in m}
    assert report.unclustered == ["trip0/copy2.jpg"]
    assert list(map(set, report.layout.clusters.values())) == [everyone - {"trip0/copy2.jpg"}]


@pytest.mark.parametrize("renamed", [False, True])  # True: the file manager renamed it on the way ("keep both")
def test_a_moved_link_joins_the_cluster_it_was_moved_to_and_leaves_its_own(tmp_path, stand_in, caplog, renamed):
    lib = variants_library(tmp_path / "lib")
    out = lib / "photocluster"
    first = run_once(settings(lib))
    assert sorted(map(set, first.layout.clusters.values()), key=len) == [members(2, 2), members(1, 3),
                                                                         members(0, 4)]
    source, name = folder_of(out, "scene1/s1-1.jpg", lib)
    destination, _ = folder_of(out, "scene2/s2-0.jpg", lib)
    assert source.parent.name == "cluster_with_3" and destination.parent.name == "cluster_with_2"
    # the file manager's move, across cluster_with_N folders
    os.rename(source / name, destination / ("s1-1 (copy).jpg" if renamed else name))

    with caplog.at_level(logging.WARNING):
        report = run_once(settings(lib))
    assert cluster_holding(report, "scene1/s1-0.jpg") == members(1, 3) - {"scene1/s1-1.jpg"}
    assert cluster_holding(report, "scene2/s2-0.jpg") == members(2, 2) | {"scene1/s1-1.jpg"}
    assert cluster_holding(report, "scene0/s0-0.jpg") == members(0, 4)
    assert stored(out) == {"scene1/s1-1.jpg": {"with": ["scene2/s2-0.jpg", "scene2/s2-1.jpg"],
                                               "not_with": ["scene1/s1-0.jpg", "scene1/s1-2.jpg"]}}
    assert len(generations(out)) == 1 and "left" not in caplog.text  # the moved link was ours: removed with it
    assert folder_of(out, "scene1/s1-1.jpg", lib)[0] == folder_of(out, "scene2/s2-0.jpg", lib)[0]

    # A stricter cut cannot pull the moved photo away from the photos it was moved to (a must-link wins) ...
    report = run_once(settings(lib, sim=0.95))
    holding = cluster_holding(report, "scene1/s1-1.jpg")
    assert holding is not None and members(2, 2) | {"scene1/s1-1.jpg"} <= holding
    assert not holding & (members(1, 3) - {"scene1/s1-1.jpg"})
    # ... and at sim 0, where the cut joins all, its cannot-link with its old cluster wins over its must-link.
    report = run_once(settings(lib, sim=0.0))
    assert report.unclustered == ["scene1/s1-1.jpg"]


def test_a_whole_cluster_folder_deleted_splits_its_photos(tmp_path, stand_in):
    lib = variants_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    folder, _ = folder_of(out, "scene1/s1-0.jpg", lib)
    for link in folder.iterdir():
        os.unlink(link)
    os.rmdir(folder)
    report = run_once(settings(lib))
    assert all(cluster_holding(report, rel) is None for rel in members(1, 3))
    assert stored(out)["scene1/s1-0.jpg"]["not_with"] == sorted(members(1, 3) - {"scene1/s1-0.jpg"})


def test_a_link_made_by_hand_to_no_photo_is_left_alone(tmp_path, stand_in, caplog):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    folder, name = folder_of(out, "trip1/copy1.jpg", lib)
    (tmp_path / "elsewhere.txt").write_text("not a photo")
    os.symlink(tmp_path / "elsewhere.txt", folder / "my note.txt")
    os.unlink(folder / name)  # and a correction, so the tree is built again
    old = os.path.realpath(folder)

    with caplog.at_level(logging.WARNING):
        run_once(settings(lib))
    assert os.readlink(os.path.join(old, "my note.txt")) == str(tmp_path / "elsewhere.txt")  # untouched
    assert "left" in caplog.text and "photocluster did not make" in caplog.text
    assert list(stored(out)) == ["trip1/copy1.jpg"]


def test_a_link_renamed_in_its_own_folder_is_no_correction_but_the_tree_is_built_again(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    folder, name = folder_of(out, "trip0/copy2.jpg", lib)
    os.rename(folder / name, folder / "my favourite.jpg")
    report = run_once(settings(lib))
    assert not report.layout_changed and not (out / CORRECTIONS_NAME).exists()
    folder, name = folder_of(out, "trip0/copy2.jpg", lib)
    assert name == "copy2.jpg" and not (folder / "my favourite.jpg").exists()  # a clean tree is shown


def test_a_renamed_photo_keeps_its_correction_and_a_deleted_one_drops_it(tmp_path, stand_in):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    folder, name = folder_of(out, "trip0/copy2.jpg", lib)
    os.unlink(folder / name)
    run_once(settings(lib))

    os.rename(lib / "trip0/copy2.jpg", lib / "trip0/renamed.jpg")  # a move keeps size and mtime
    report = run_once(settings(lib))
    assert report.moved == 1 and "trip0/renamed.jpg" in report.unclustered
    assert stored(out) == {"trip0/renamed.jpg": {"with": [], "not_with": ["trip0/copy1.jpg", "trip0/orig.jpg"]}}

    os.unlink(lib / "trip0/renamed.jpg")
    run_once(settings(lib))
    assert stored(out) == {}


def test_forget_brings_the_photo_back(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    for rel in ("trip0/copy2.jpg", "trip1/orig.jpg"):
        folder, name = folder_of(out, rel, lib)
        os.unlink(folder / name)
    run_once(settings(lib))
    capsys.readouterr()

    assert main(["corrections", str(lib)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == ["2 photos corrected in " + str(out / CORRECTIONS_NAME),
                      "  trip0/copy2.jpg: not with trip0/copy1.jpg, trip0/orig.jpg",
                      "  trip1/orig.jpg: not with trip1/copy1.jpg, trip1/copy2.jpg"]
    assert main(["corrections", str(lib), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["photos"] == stored(out)

    assert main(["corrections", str(lib), "--forget", str(lib / "trip0/copy2.jpg")]) == 0
    assert list(stored(out)) == ["trip1/orig.jpg"]
    report = run_once(settings(lib))
    assert cluster_holding(report, "trip0/copy2.jpg") == {"trip0/orig.jpg", "trip0/copy1.jpg", "trip0/copy2.jpg"}
    assert "trip1/orig.jpg" in report.unclustered

    capsys.readouterr()
    assert main(["corrections", str(lib), "--forget", "trip0/none.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no correction names trip0/none.jpg" in err
    assert main(["corrections", str(lib), "--forget"]) == 0
    assert stored(out) == {}
    report = run_once(settings(lib))
    assert cluster_holding(report, "trip1/orig.jpg") == {"trip1/orig.jpg", "trip1/copy1.jpg", "trip1/copy2.jpg"}


@pytest.mark.parametrize("text", ["{not json", '{"format": "photocluster-corrections", "version": 99, "photos": {}}',
                                  '{"format": "photocluster-corrections", "version": 1, "photos": {"a": [1]}}'])
def test_a_tampered_file_is_reported_in_one_line_and_moved_aside(tmp_path, stand_in, capsys, caplog, text):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    (out / CORRECTIONS_NAME).write_text(text)

    capsys.readouterr()
    assert main(["corrections", str(lib)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and CORRECTIONS_NAME in err and "Traceback" not in err

    folder, name = folder_of(out, "trip0/copy2.jpg", lib)
    os.unlink(folder / name)
    with caplog.at_level(logging.WARNING):
        report = run_once(settings(lib))
    assert "trip0/copy2.jpg" in report.unclustered  # the run goes on, with the new correction
    aside = [p for p in out.iterdir() if p.name.startswith(CORRECTIONS_NAME + ".bad-")]
    assert len(aside) == 1 and aside[0].read_text() == text
    assert list(stored(out)) == ["trip0/copy2.jpg"]


def test_a_symlink_in_place_of_the_file_is_left_alone(tmp_path, stand_in, caplog):
    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    os.symlink(victim, out / CORRECTIONS_NAME)
    folder, name = folder_of(out, "trip0/copy2.jpg", lib)
    os.unlink(folder / name)
    with caplog.at_level(logging.WARNING):
        report = run_once(settings(lib))
    assert "trip0/copy2.jpg" in report.unclustered  # applied in this run, though it cannot be stored
    assert victim.read_text() == "keep me" and os.path.islink(out / CORRECTIONS_NAME)
    assert "symlink" in caplog.text


def test_the_later_of_two_opposite_corrections_wins():
    corrections = Corrections()
    corrections.add("p", WITH, ["a", "c"])
    corrections.add("p", NOT_WITH, ["a", "b"])  # later: p is not with a after all
    assert corrections.constraints().must == {("p", "c")}
    corrections.forget("c")
    corrections.add("a", WITH, ["p"])  # a moved in with p later: the pair (p, a) is now "with"
    assert corrections.constraints().cannot == {("p", "b")}
    assert corrections.constraints().must == {("a", "p")}
    assert parse(json.dumps(corrections.as_dict()).encode()) == corrections
    with pytest.raises(CorrectionsError):
        parse(b'{"format": "photocluster-corrections", "version": 1, "photos": {"p": {"with": "a"}}}')


def test_an_edit_made_while_a_run_clusters_is_read_by_the_next_run(tmp_path, stand_in, monkeypatch):
    from photocluster import pipeline

    lib = make_library(tmp_path / "lib")
    out = lib / "photocluster"
    run_once(settings(lib))
    save(scene(1).resize((300, 220)), lib / "new" / "trip1-late.jpg")  # a change, so the next run lays out again
    real_take = pipeline.take_corrections

    def take_then_edit(*args, **kw):  # the user deletes a link just after the run has read the tree
        taken = real_take(*args, **kw)
        folder, name = folder_of(out, "trip0/copy2.jpg", lib)
        os.unlink(folder / name)
        return taken

    monkeypatch.setattr(pipeline, "take_corrections", take_then_edit)
    run_once(settings(lib))
    monkeypatch.setattr(pipeline, "take_corrections", real_take)
    report = run_once(settings(lib))
    assert cluster_holding(report, "trip0/orig.jpg") == {"trip0/orig.jpg", "trip0/copy1.jpg"}
    assert stored(out) == {"trip0/copy2.jpg": {"with": [], "not_with": ["trip0/copy1.jpg", "trip0/orig.jpg"]}}
