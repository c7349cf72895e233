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
        settled = running.daemon.runs
        assert settled > runs
        # Its own rebuild, which deleted the old tree under the old watch, makes no further run due.
        time.sleep(FAST.max_delay_seconds + FAST.quiet_seconds)
        assert running.daemon.runs == settled


def test_its_own_moves_of_unchanged_folders_are_no_edit(tmp_path, stand_in, monkeypatch):
    from photocluster import layout

    real_swap = layout._swap_in

    def slow_swap(*args):  # as in a large library: the watch hears the moves while the old tree is still shown
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
        save(scene(1).resize((280, 210)), lib / "trip1" / "1c.jpg")  # trip1's cluster grows, trip2's does not
        wait_for(lambda: "1c.jpg" in links(out), what="the new photo's link")
        assert second.stat().st_ino == inode  # trip2's folder was moved into the new tree, not built again
        wait_for(lambda: running.library.tree_path == os.path.realpath(out / "clusters"), what="the new tree watch")
        settled = running.daemon.runs
        # Moving the unchanged folder out of the shown tree, before the swap, makes no further run due.
        time.sleep(FAST.max_delay_seconds + FAST.quiet_seconds)
        assert running.daemon.runs == settled
        assert not (out / CORRECTIONS_NAME).exists()
