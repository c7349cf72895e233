import json
import os

import pytest

from photocluster.layout import (STATE_FILE, Layout, link_names, number_clusters, read_layout, remove_stale_generations,
                                 write_layout)


def library(fs_root, names):
    for rel in names:
        path = fs_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"photo " + rel.encode())
    return fs_root


def tree(out):
    """The visible cluster tree: {folder path: {link name: resolved target}}."""
    root = out / "clusters"
    found = {}
    for dirpath, _, files in os.walk(root, followlinks=False):
        links = {f: os.path.realpath(os.path.join(dirpath, f)) for f in files if not f.startswith(".")}
        if links:
            found[os.path.relpath(dirpath, root)] = links
    return found


def test_numbering_is_stable_when_membership_is_unchanged():
    first = number_clusters([["a", "b"], ["c", "d", "e"]], None)
    assert first.clusters == {0: ["c", "d", "e"], 1: ["a", "b"]}
    again = number_clusters([["e", "d", "c"], ["b", "a"]], first)
    assert again.clusters == first.clusters


def test_a_growing_cluster_keeps_its_number_and_new_ones_get_fresh_numbers():
    first = number_clusters([["a", "b"], ["c", "d", "e"]], None)
    second = number_clusters([["a", "b", "x"], ["c", "d", "e"], ["y", "z"]], first)
    assert second.clusters == {0: ["c", "d", "e"], 1: ["a", "b", "x"], 2: ["y", "z"]}
    third = number_clusters([["a", "b", "x"], ["y", "z"]], second)  # cluster 0 dissolved: its number is not reused
    assert third.clusters == {1: ["a", "b", "x"], 2: ["y", "z"]}
    assert number_clusters([["q", "r"]], third).clusters == {3: ["q", "r"]}


def test_colliding_names_become_distinct_and_readable():
    names = link_names(["2023/Porto/DSC_1.JPG", "2024/Lisbon/DSC_1.JPG", "2024/Lisbon/other.jpg"])
    assert names == {"DSC_1 (2023-Porto).JPG": "2023/Porto/DSC_1.JPG",
                     "DSC_1 (2024-Lisbon).JPG": "2024/Lisbon/DSC_1.JPG", "other.jpg": "2024/Lisbon/other.jpg"}
    tricky = link_names(["a-b/x.jpg", "a/b/x.jpg", "x.jpg"])
    assert len(set(tricky)) == 3 and sorted(tricky.values()) == ["a-b/x.jpg", "a/b/x.jpg", "x.jpg"]
    long = link_names(["a" * 200 + "/p.jpg", "b" * 250 + "/p.jpg"])
    assert all(len(os.fsencode(n)) <= 255 for n in long) and len(long) == 2


def test_write_layout_builds_relative_links_into_the_library(tmp_path):
    lib = library(tmp_path / "lib", ["2024/a.jpg", "2024/b.jpg", "2023/a.jpg", "c.jpg"])
    out = lib / "photocluster"
    out.mkdir()
    layout = number_clusters([["2024/a.jpg", "2023/a.jpg", "c.jpg"]], None)
    write_layout(out, lib, layout)
    assert tree(out) == {"cluster_with_3/cluster_0": {
        "a (2023).jpg": str(lib / "2023/a.jpg"), "a (2024).jpg": str(lib / "2024/a.jpg"), "c.jpg": str(lib / "c.jpg")}}
    link = out / "clusters/cluster_with_3/cluster_0/c.jpg"
    assert not os.path.isabs(os.readlink(link))
    assert read_layout(out) == layout
    # the library and its output move together
    os.rename(tmp_path / "lib", tmp_path / "moved")
    assert (tmp_path / "moved/photocluster/clusters/cluster_with_3/cluster_0/c.jpg").read_bytes() == b"photo c.jpg"


def test_links_work_with_out_outside_the_library(tmp_path):
    lib = library(tmp_path / "lib", ["x.jpg", "y.jpg"])
    out = tmp_path / "elsewhere/out"
    out.mkdir(parents=True)
    write_layout(out, lib, number_clusters([["x.jpg", "y.jpg"]], None))
    assert (out / "clusters/cluster_with_2/cluster_0/y.jpg").read_bytes() == b"photo y.jpg"


def test_swap_replaces_the_whole_tree_and_removes_the_old_generation(tmp_path):
    lib = library(tmp_path / "lib", ["a.jpg", "b.jpg", "c.jpg"])
    out = tmp_path / "out"
    out.mkdir()
    first = write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    second = write_layout(out, lib, number_clusters([["a.jpg", "b.jpg", "c.jpg"]], read_layout(out)))
    assert not first.exists() and second.exists()
    assert list(tree(out)) == ["cluster_with_3/cluster_0"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["clusters", second.name])


def test_user_files_inside_an_old_generation_are_never_deleted(tmp_path, caplog):
    lib = library(tmp_path / "lib", ["a.jpg", "b.jpg"])
    out = tmp_path / "out"
    out.mkdir()
    first = write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    precious = first / "cluster_with_2/cluster_0/my-note.txt"
    precious.write_text("mine")
    write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    assert precious.read_text() == "mine"
    assert "did not make" in caplog.text
    assert (lib / "a.jpg").read_bytes() == b"photo a.jpg"


def test_removal_never_follows_links(tmp_path):
    lib = library(tmp_path / "lib", ["a.jpg", "b.jpg"])
    out = tmp_path / "out"
    out.mkdir()
    gen = write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    os.symlink(lib, gen / "cluster_with_2" / "sneaky-dir-link")
    write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    assert sorted(p.name for p in lib.iterdir()) == ["a.jpg", "b.jpg"]


def test_leftovers_of_a_crash_are_swept(tmp_path):
    lib = library(tmp_path / "lib", ["a.jpg", "b.jpg"])
    out = tmp_path / "out"
    out.mkdir()
    write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    # A run killed while building: its state (written first) names the links it was about to make.
    half = out / ".clusters-dead-1" / "cluster_with_2" / "cluster_0"
    half.mkdir(parents=True)
    state = {"clusters": {"0": ["a.jpg", "b.jpg"]}, "next_id": 1, "links": {"0": ["a.jpg", "b.jpg"]}}
    (out / ".clusters-dead-1" / STATE_FILE).write_text(json.dumps(state))
    os.symlink("../../../../lib/a.jpg", half / "a.jpg")
    os.symlink(".clusters-dead-1", out / ".clusters.swap-999")
    remove_stale_generations(out)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [os.readlink(out / "clusters")]


def test_a_plain_clusters_folder_with_user_files_is_refused(tmp_path):
    lib = library(tmp_path / "lib", ["a.jpg", "b.jpg"])
    out = tmp_path / "out"
    (out / "clusters").mkdir(parents=True)
    (out / "clusters" / "mine.txt").write_text("x")
    with pytest.raises(OSError, match="did not make"):
        write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"]], None))
    assert (out / "clusters" / "mine.txt").exists()


def test_summary_lines():
    layout = Layout({0: ["a", "b"], 1: ["c", "d"], 2: ["e", "f", "g"]}, 3)
    assert layout.summary_lines() == ["cluster size : ncluster", "           2 : 2", "           3 : 1"]
