import json
import os

import pytest

from photocluster.layout import (STATE_FILE, Layout, link_names, number_clusters, read_layout, remove_stale_generations,
                                 write_layout)

from .conftest import fails_after


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


# --- link names for any legal name (issue 9, class 3): distinct, within 255 bytes, always terminating ----------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


# A file name as the file system gives it: 1 to 255 bytes, no "/" or NUL, not "." or ".."; os.fsdecode turns bytes
# that are not UTF-8 into surrogate escapes. Multi-byte characters and such bytes are drawn often.
_NAME_BYTES = st.lists(st.sampled_from([b"a", b"Z", b".", b" ", b"(", b")", b"-", "é".encode(), "写".encode(),
                                        "😀".encode(), b"\xff", b"\xc3", b"\x80"]), min_size=1, max_size=90)


def _legal_name(parts: list[bytes], pad_to_max: bool) -> str:
    raw = b"".join(parts)
    if pad_to_max:
        raw = (raw * (255 // len(raw) + 1))[:255]
    raw = raw[:255]
    return os.fsdecode(b"x" + raw[1:] if raw in (b".", b"..") else raw)


_NAMES = st.builds(_legal_name, _NAME_BYTES, st.booleans())
_FOLDERS = st.lists(_NAMES, min_size=0, max_size=4).map(lambda parts: "/".join(parts))


def _assert_good_names(members: list[str]) -> dict[str, str]:
    with fails_after(10, "link_names"):
        names = link_names(members)
    encoded = [os.fsencode(name) for name in names]
    assert sorted(names.values()) == sorted(members)  # one name per photo, none lost
    assert len(set(encoded)) == len(members)  # distinct as the file system compares them: bytes
    assert all(0 < len(raw) <= 255 and b"/" not in raw and raw not in (b".", b"..") for raw in encoded)
    with fails_after(10, "link_names"):
        assert link_names(list(reversed(members))) == names  # deterministic, whatever the order given
    return names


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_FOLDERS, _NAMES), min_size=1, max_size=12, unique=True))
def test_link_names_are_distinct_short_and_deterministic_for_any_names(paths):
    _assert_good_names(sorted({f"{folder}/{name}" if folder else name for folder, name in paths}))


@settings(max_examples=60, deadline=None)
@given(_NAMES, st.lists(_FOLDERS, min_size=2, max_size=30, unique=True))
def test_one_long_name_in_many_folders_collides_into_distinct_names(name, folders):
    """The hang seen: one 255-byte name in several folders, whose links land in one cluster folder."""
    _assert_good_names(sorted({f"{folder}/{name}" if folder else name for folder in folders}))


def test_names_that_differ_only_beyond_255_bytes_of_the_disambiguated_form():
    name = "n" * 251 + ".jpg"
    deep = ["p" * 200 + f"/q{i}" for i in range(40)]  # "stem (folder)" agree in their first 255 bytes
    names = _assert_good_names([f"{folder}/{name}" for folder in deep] + ["x/" + name.replace("n", "é", 3)])
    assert all(n.endswith(".jpg") for n in names)  # the extension survives the cut


def test_an_extension_longer_than_any_room_is_cut_too():
    name = "a." + "e" * 253  # splitext sees a 254-byte extension
    _assert_good_names([f"{folder}/{name}" for folder in ("f1", "f2", "f3")])


def test_the_file_system_accepts_every_link_name(tmp_path):
    members = [f"{folder}/{'ü' * 125}.jpg" for folder in ("a", "b", "c" * 255, "d/" + "\udcff" * 200)]
    for name in _assert_good_names(members):
        os.symlink("target", tmp_path / name)
    assert len(os.listdir(tmp_path)) == len(members)


def test_a_name_that_fits_is_kept_whole():
    name = "a." + "e" * 253
    assert link_names(["f/" + name]) == {name: "f/" + name}
    assert link_names(["f/" + "ü" * 125 + ".jpg"]) == {"ü" * 125 + ".jpg": "f/" + "ü" * 125 + ".jpg"}


# --- an update reuses the unchanged cluster folders (layout_reuse.py) -------------------------------------------

def folder_of(out, layout, members):
    """The path, through `clusters`, of the cluster folder that holds exactly `members` in `layout`."""
    [m] = [m for m, ms in layout.clusters.items() if sorted(ms) == sorted(members)]
    return out / "clusters" / f"cluster_with_{len(members)}" / f"cluster_{m}"


def five_photo_library(tmp_path):
    lib = library(tmp_path / "lib", ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"])
    out = tmp_path / "out"
    out.mkdir()
    return lib, out


def test_an_update_moves_the_unchanged_folders_and_builds_the_changed_ones(tmp_path):
    lib, out = five_photo_library(tmp_path)
    first_layout = number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"], ["e.jpg", "f.jpg"]], None)
    first = write_layout(out, lib, first_layout)
    kept = {tuple(ms): folder_of(out, first_layout, ms).stat().st_ino for ms in (["a.jpg", "b.jpg"], ["e.jpg", "f.jpg"])}
    changed = folder_of(out, first_layout, ["c.jpg", "d.jpg"]).stat().st_ino
    # g arrives and joins c and d: that cluster's folder changes (cluster_with_3); the other two do not
    second_layout = number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg", "g.jpg"], ["e.jpg", "f.jpg"]],
                                    read_layout(out))
    second = write_layout(out, lib, second_layout)
    for members, inode in kept.items():
        assert folder_of(out, second_layout, list(members)).stat().st_ino == inode  # moved, not built again
    assert folder_of(out, second_layout, ["c.jpg", "d.jpg", "g.jpg"]).stat().st_ino != changed
    assert tree(out) == {
        str(folder_of(out, second_layout, ms).relative_to(out / "clusters")): {n: str(lib / n) for n in ms}
        for ms in (["a.jpg", "b.jpg"], ["c.jpg", "d.jpg", "g.jpg"], ["e.jpg", "f.jpg"])}
    assert not first.exists()  # the old generation, with what was left in it, is removed whole
    assert sorted(p.name for p in out.iterdir()) == sorted(["clusters", second.name])
    assert read_layout(out) == second_layout


def test_a_reused_tree_reads_as_unedited(tmp_path):
    from photocluster.corrections import tree_edits
    from photocluster.layout import shown_tree

    lib, out = five_photo_library(tmp_path)
    write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]], None))
    write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg", "e.jpg"]], read_layout(out)))
    photos = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert tree_edits(shown_tree(out), photos) == ([], False)


@pytest.mark.parametrize("edit", ["deleted", "retargeted", "added"])
def test_a_folder_the_user_edited_is_built_again_not_moved(tmp_path, edit):
    lib, out = five_photo_library(tmp_path)
    layout = number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]], None)
    first = write_layout(out, lib, layout)
    ab, cd = folder_of(out, layout, ["a.jpg", "b.jpg"]), folder_of(out, layout, ["c.jpg", "d.jpg"])
    inodes = ab.stat().st_ino, cd.stat().st_ino
    if edit == "deleted":
        os.unlink(ab / "b.jpg")
    elif edit == "retargeted":  # the same name, now leading to another photo
        os.unlink(ab / "b.jpg")
        os.symlink(os.readlink(cd / "c.jpg"), ab / "b.jpg")
    else:
        os.symlink(os.readlink(cd / "c.jpg"), ab / "c.jpg")
    write_layout(out, lib, number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]], read_layout(out)),
                 read_links=True)
    assert folder_of(out, layout, ["a.jpg", "b.jpg"]).stat().st_ino != inodes[0]  # built again, clean
    assert folder_of(out, layout, ["c.jpg", "d.jpg"]).stat().st_ino == inodes[1]
    assert tree(out) == {"cluster_with_2/cluster_0": {"a.jpg": str(lib / "a.jpg"), "b.jpg": str(lib / "b.jpg")},
                         "cluster_with_2/cluster_1": {"c.jpg": str(lib / "c.jpg"), "d.jpg": str(lib / "d.jpg")}}
    if edit == "added":  # a link made by hand (c's own stayed in its folder, which moved on whole) is never removed
        assert os.path.islink(first / "cluster_with_2/cluster_0/c.jpg")
        assert sorted(p.name for p in (first / "cluster_with_2").iterdir()) == ["cluster_0"]
    else:
        assert [p.name for p in out.iterdir() if p.name.startswith(".clusters-")] == [os.readlink(out / "clusters")]


class Killed(BaseException):
    """Stands for SIGKILL in the middle of the moves."""


def crash_during_moves(monkeypatch, after: int, clean_up: bool):
    """Make the next write_layout die after `after` folders were moved; without `clean_up`, as a SIGKILL would,
    with no handler running (the generation stays as it was left)."""
    from photocluster import layout as layout_module
    from photocluster import layout_reuse

    real_lend, moved = layout_reuse.lend, []

    def dying_lend(*args):
        def on_moved(m):
            moved.append(m)
            if len(moved) == after:
                raise Killed()
        return real_lend(*args, on_moved=on_moved)

    monkeypatch.setattr(layout_module, "lend", dying_lend)
    if not clean_up:
        monkeypatch.setattr(layout_module, "_remove_generation", lambda *a: False)
    return moved


@pytest.mark.parametrize("clean_up", [True, False], ids=["exception", "kill"])
def test_a_crash_in_the_moves_leaves_complete_folders_and_the_next_run_recovers(tmp_path, monkeypatch, clean_up):
    lib, out = five_photo_library(tmp_path)
    groups = [["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"], ["e.jpg", "f.jpg"]]
    first_layout = number_clusters(groups, None)
    first = write_layout(out, lib, first_layout)
    before = tree(out)
    assert len(before) == 3
    moved = crash_during_moves(monkeypatch, after=2, clean_up=clean_up)
    # g makes a new cluster with nothing else changed: all three folders are lent, the crash comes after two
    with pytest.raises(Killed):
        write_layout(out, lib, number_clusters(groups + [["g.jpg"]], read_layout(out)))
    assert len(moved) == 2 and os.path.realpath(out / "clusters") == str(first)  # never swapped
    shown = tree(out)
    if clean_up:  # the handler moved the two folders back before removing its generation
        assert shown == before
    else:  # killed: two folders are away in the unfinished generation; each folder shown is complete
        assert len(shown) == 1 and all(before[f] == links for f, links in shown.items())
    monkeypatch.undo()
    remove_stale_generations(out)  # what the next run does first
    assert tree(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".clusters-")] == [first.name]
    assert read_layout(out) == first_layout


def test_the_shown_state_is_parsed_once_and_again_after_it_is_replaced(tmp_path, monkeypatch):
    from photocluster import layout_reuse

    lib, out = five_photo_library(tmp_path)
    first = number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]], None)
    write_layout(out, lib, first)
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(layout_reuse.json, "loads", lambda text: parsed.append(1) or real_loads(text))
    assert read_layout(out) == first and read_layout(out) == first
    assert len(parsed) <= 1  # the second read is the one parsed already
    # A state replaced whole (as every write is, and as a user's editor saves it) is read again.
    state = out / "clusters" / STATE_FILE
    data = real_loads(state.read_text())
    data["next_id"] = 41
    tmp = state.with_name("edited.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, state)
    assert read_layout(out).next_id == 41


def test_a_folder_unedited_when_read_is_moved_without_listing_it_again(tmp_path, monkeypatch):
    from photocluster import layout_reuse

    lib, out = five_photo_library(tmp_path)
    first = number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]], None)
    write_layout(out, lib, first)
    ab = folder_of(out, first, ["a.jpg", "b.jpg"])
    inode = ab.stat().st_ino
    os.unlink(ab / "b.jpg")  # an edit after the caller found the tree unedited: moved as it is, read next time
    listed = []
    monkeypatch.setattr(layout_reuse, "_as_built", lambda *a: listed.append(a) or True)
    second = number_clusters([["a.jpg", "b.jpg"], ["c.jpg", "d.jpg", "e.jpg"]], read_layout(out))
    write_layout(out, lib, second, read_links=False, unedited=True)
    assert listed == []
    moved = folder_of(out, second, ["a.jpg", "b.jpg"])
    assert moved.stat().st_ino == inode and sorted(os.listdir(moved)) == ["a.jpg"]  # the user's edit is kept
