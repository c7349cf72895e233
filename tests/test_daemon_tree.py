"""The daemon notices a correction made in the cluster tree (a link deleted or moved) within its usual delay,
and not its own rebuilds of the tree."""
import json
import os
import time

from photocluster.corrections import CORRECTIONS_NAME

from .conftest import save, scene, wait_for
from .test_daemon import FAST, links, start


def test_a_link_deleted_in_the_tree_is_noticed_and_applied(tmp_path, stand_in):
    lib = tmp_path / "lib"
    save(scene(0), lib / "seed.jpg")
    with start(lib) as running:
        for name, size in (("a.jpg", (320, 240)), ("b.jpg", (300, 225)), ("c.jpg", (280, 210))):
            save(scene(1).resize(size), lib / "trip" / name)
        out = lib / "photocluster"
        wait_for(lambda: {"a.jpg", "b.jpg", "c.jpg"} <= set(links(out)), what="the cluster of the three variants")
        wait_for(lambda: running.library.tree_path == os.path.realpath(out / "clusters"), what="the tree watch")
        runs, edited = running.daemon.runs, os.path.realpath(out / "clusters")
        [link] = [p for p in (out / "clusters").glob("*/*/c.jpg")]
        os.unlink(link)  # the file manager's delete; nothing in the library changed
        wait_for(lambda: (out / CORRECTIONS_NAME).exists(), what="the correction to be read")
        assert json.loads((out / CORRECTIONS_NAME).read_text())["photos"] == {
            "trip/c.jpg": {"with": [], "not_with": ["trip/a.jpg", "trip/b.jpg"]}}
        wait_for(lambda: os.path.realpath(out / "clusters") != edited, what="a new tree")
        assert set(links(out)) == {"a.jpg", "b.jpg"}
        assert running.fingerprinted == [(f"trip/{n}", (lib / "trip" / n).stat().st_size)
                                         for n in ("a.jpg", "b.jpg", "c.jpg")]  # nothing fingerprinted again
        wait_for(lambda: running.library.tree_path == os.path.realpath(out / "clusters"), what="the new tree watch")
        assert running.daemon.runs > runs
        settled, shown = settle(running, out)
        # Its own rebuild (the old tree deleted, folders moved) makes no further run due, past the one run that
        # reads the new tree under its new watch; that run builds no tree.
        time.sleep(FAST.max_delay_seconds + FAST.quiet_seconds)
        assert running.daemon.runs == settled and os.path.realpath(out / "clusters") == shown


def settle(running, out):
    """Wait for the run that reads a new tree under its watch; (the runs done then, the tree shown)."""
    return running.settle(), os.path.realpath(out / "clusters")


def test_its_own_moves_of_unchanged_folders_are_no_edit(tmp_path, stand_in, monkeypatch):
    from photocluster import layout

    real_swap = layout._swap_in

    def slow_swap(*args):  # as in a large library: the moves come a while before the swap, the old tree shown
        time.sleep(1.0)
        real_swap(*args)

    monkeypatch.setattr(layout, "_swap_in", slow_swap)
    lib = tmp_path / "lib"
    save(scene(0), lib / "seed.jpg")
    with start(lib) as running:
        for g in (1, 2):
            for name, size in (("a.jpg", (320, 240)), ("b.jpg", (300, 225))):
                save(scene(g).resize(size), lib / f"trip{g}" / f"{g}{name}")
        out = lib / "photocluster"
        wait_for(lambda: len(links(out)) == 4, what="the two clusters of two")
        wait_for(lambda: running.library.tree_path == os.path.realpath(out / "clusters"), what="the tree watch")
        [second] = [p.parent for p in (out / "clusters").glob("cluster_with_2/*/2a.jpg")]
        inode = second.stat().st_ino
        edits = running.library.tree_events
        save(scene(1).resize((280, 210)), lib / "trip1" / "1c.jpg")  # trip1's cluster grows, trip2's does not
        wait_for(lambda: "1c.jpg" in links(out), what="the new photo's link")
        assert second.stat().st_ino == inode  # trip2's folder was moved into the new tree, not built again
        wait_for(lambda: running.library.tree_path == os.path.realpath(out / "clusters"), what="the new tree watch")
        settled, shown = settle(running, out)
        # Moving the unchanged folder out of the shown tree, before the swap, makes no further run due.
        time.sleep(FAST.max_delay_seconds + FAST.quiet_seconds)
        assert running.daemon.runs == settled and os.path.realpath(out / "clusters") == shown
        assert running.library.tree_events == edits  # the daemon's own moves were never taken for edits
        assert not (out / CORRECTIONS_NAME).exists()


def test_a_run_skips_reading_a_watched_tree_that_saw_no_edit(tmp_path, stand_in):
    lib = tmp_path / "lib"
    save(scene(0), lib / "seed.jpg")
    with start(lib) as running:
        save(scene(1).resize((320, 240)), lib / "trip" / "a.jpg")
        save(scene(1).resize((300, 225)), lib / "trip" / "b.jpg")
        out = lib / "photocluster"
        wait_for(lambda: {"a.jpg", "b.jpg"} <= set(links(out)), what="the first cluster")
        settle(running, out)
        trusted = []
        real_update = running.library.pipeline.update
        running.library.pipeline.update = lambda **kw: trusted.append(kw["tree_unedited"]) or real_update(**kw)
        save(scene(1).resize((280, 210)), lib / "trip" / "c.jpg")
        wait_for(lambda: "c.jpg" in links(out), what="the new photo's link")
        settle(running, out)
        assert trusted[0] is True  # no edit since the last read: the arrival's run did not read the tree
        assert trusted[1:] == [False]  # the one run after it reads the new tree


def test_an_edit_made_while_a_new_tree_is_built_is_read_after_it(tmp_path, stand_in, monkeypatch):
    from photocluster import layout

    lib = tmp_path / "lib"
    save(scene(0), lib / "seed.jpg")
    for g in (1, 2):
        for name, size in (("a.jpg", (320, 240)), ("b.jpg", (300, 225)), ("c.jpg", (280, 210))):
            save(scene(g).resize(size), lib / f"trip{g}" / f"{g}{name}")
    out = lib / "photocluster"
    real_swap = layout._swap_in
    edit_now = []

    def edit_then_swap(*args):  # the user deletes a link in trip2's folder, moved already, just before the swap
        if edit_now:
            os.unlink(args[1] / "cluster_with_3" / edit_now.pop() / "2c.jpg")
        real_swap(*args)

    monkeypatch.setattr(layout, "_swap_in", edit_then_swap)
    with start(lib) as running:
        settle(running, out)
        [trip2] = [p.parent.name for p in (out / "clusters").glob("cluster_with_3/*/2a.jpg")]
        edit_now.append(trip2)
        save(scene(1).resize((260, 195)), lib / "trip1" / "1d.jpg")  # trip1's cluster grows: a new tree is built
        wait_for(lambda: (out / CORRECTIONS_NAME).exists(), what="the edit to be read")
        assert json.loads((out / CORRECTIONS_NAME).read_text())["photos"] == {
            "trip2/2c.jpg": {"with": [], "not_with": ["trip2/2a.jpg", "trip2/2b.jpg"]}}
