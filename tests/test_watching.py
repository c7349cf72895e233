"""The watchdog adapter: pruned recursive inotify watches, changes in the daemon's terms, and the overflow warning.

These tests lean on what watching.py takes from watchdog's internals, so a watchdog release that changes them
fails here: the kernel's own count of watches, and the wording of the overflow warning.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
from pathlib import Path

from photocluster.watched import is_unwatched
from photocluster.watching import WATCHDOG_INOTIFY_LOGGER, WATCHDOG_WATCH_LOGGER, Change, Watcher

from .conftest import save, scene, wait_for
from .test_daemon import lib, links, start  # noqa: F401 - lib is a fixture


def inotify_watches() -> int:
    """The kernel's count of this process's inotify watches (the watcher under test runs in a thread here)."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                total += Path(f"/proc/self/fdinfo/{fd}").read_text().count("inotify wd:")
    return total


class Changes:
    """Collects the changes a watch reports, from the watcher's thread."""

    def __init__(self):
        self.seen: list[Change] = []
        self._lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        with self._lock:
            self.seen.append(change)

    def paths(self) -> set[str]:
        with self._lock:
            return {path for change in self.seen for path in change.paths}


def test_pruned_folders_get_no_kernel_watch_now_or_when_made_later(tmp_path):
    root = tmp_path / "lib"
    out = root / "photocluster"
    for folder in ("a", "b/c", ".hidden/x", "@eaDir/y", "photocluster/clusters/1"):
        (root / folder).mkdir(parents=True)
    before = inotify_watches()
    changes = Changes()
    with Watcher(prune=lambda path: is_unwatched(path, [str(out)]), on_overflow=lambda: None) as watcher:
        watcher.watch(str(root), changes)
        assert inotify_watches() - before == 4  # lib, a, b, b/c
        (root / ".later").mkdir()  # pruned: made after the watch started
        (root / "new").mkdir()
        wait_for(lambda: str(root / "new") in changes.paths(), what="the new folder's event")
        save(scene(1), root / "new" / "n.jpg")  # its watch is there: the photo inside is seen
        wait_for(lambda: str(root / "new" / "n.jpg") in changes.paths(), what="a photo in the new folder")
        assert inotify_watches() - before == 5  # lib, a, b, b/c, new: never out/, .hidden, @eaDir, .later
        save(scene(2), out / "clusters" / "1" / "o.jpg")
        save(scene(3), root / "a" / "last.jpg")  # a later event, so the one in out/ would have come by now
        wait_for(lambda: str(root / "a" / "last.jpg") in changes.paths(), what="the last photo")
        assert not any(path.startswith(str(out)) for path in changes.paths())


def test_changes_name_the_kind_both_paths_of_a_move_and_whether_a_folder(tmp_path):
    changes = Changes()
    with Watcher(prune=lambda path: False, on_overflow=lambda: None) as watcher:
        handle = watcher.watch(str(tmp_path), changes)
        save(scene(1), tmp_path / "a.jpg")
        os.rename(tmp_path / "a.jpg", tmp_path / "b.jpg")
        (tmp_path / "folder").mkdir()
        wait_for(lambda: str(tmp_path / "folder") in changes.paths(), what="the folder")
        watcher.unwatch(handle)
        watcher.unwatch(handle)  # twice, as when the root was deleted: no error
    moves = [c for c in changes.seen if c.kind == "moved"]
    assert moves == [Change("moved", (str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")), False)]
    assert Change("created", (str(tmp_path / "folder"),), True) in changes.seen
    assert any(c.kind == "created" and c.paths == (str(tmp_path / "a.jpg"),) for c in changes.seen)


def test_the_overflow_warning_calls_back_once_and_watchdogs_lines_are_dropped(caplog):
    import watchdog.observers.inotify_c as inotify_c

    assert "Inotify queue overflowed" in inspect.getsource(inotify_c)  # the wording the listener relies on
    caplog.set_level(logging.DEBUG)
    overflows = []
    loggers = [logging.getLogger(WATCHDOG_INOTIFY_LOGGER), logging.getLogger(WATCHDOG_WATCH_LOGGER)]
    levels = [logger.level for logger in loggers]
    with Watcher(prune=lambda path: False, on_overflow=lambda: overflows.append(1)):
        logging.getLogger().setLevel(logging.ERROR)  # as under -q: the warning must still be heard
        try:
            loggers[0].warning("Inotify queue overflowed; filesystem events were lost")
            loggers[1].warning("Inotify queue overflowed for /x")  # the same news per watch: dropped, no callback
            loggers[1].warning("something else")
        finally:
            logging.getLogger().setLevel(logging.DEBUG)
    assert overflows == [1]
    assert "overflowed" not in caplog.text and "something else" in caplog.text
    assert [logger.level for logger in loggers] == levels  # put back as found
    assert not any(logger.filters for logger in loggers)


# --- the daemon's use of it ----------------------------------------------------------------------------------

def test_daemon_output_hidden_and_nas_folders_get_no_watch(lib, stand_in):
    for folder in ("a", "b/c", ".hidden/x", "@eaDir/y"):
        (lib / folder).mkdir(parents=True)
    before = inotify_watches()
    with start(lib) as running:
        save(scene(1), lib / "a" / "1.jpg")
        save(scene(1).resize((200, 150)), lib / "a" / "2.jpg")
        wait_for(lambda: {"1.jpg", "2.jpg"} <= set(links(lib / "photocluster")), what="a cluster tree")
        tree = lib / "photocluster" / "clusters"
        wait_for(lambda: running.library.tree_path == os.path.realpath(tree), what="the watch on the tree shown")
        # lib, a, b, b/c: not photocluster/; and the tree shown, watched on its own for corrections (daemon_tree):
        # its generation, cluster_with_2 and cluster_0
        assert inotify_watches() - before == 4 + 3
        (lib / "new").mkdir()
        save(scene(2), lib / "new" / "n1.jpg")
        save(scene(2).resize((200, 150)), lib / "new" / "n2.jpg")
        wait_for(lambda: "n2.jpg" in links(lib / "photocluster"), what="a photo in a new folder")
        wait_for(lambda: running.library.tree_path == os.path.realpath(tree), what="the watch on the new tree")
        assert inotify_watches() - before == 5 + 4  # the old tree's watches are gone; the new one has 2 clusters
        assert running.daemon.runs >= 2


def test_one_watchers_overflow_is_not_taken_for_anothers(monkeypatch):
    """Each watcher has its own kernel queue, read by its own thread, which logs that queue's overflow."""
    import threading

    overflows = []
    with Watcher(prune=lambda path: False, on_overflow=lambda: overflows.append("library")) as library, \
            Watcher(prune=lambda path: False, on_overflow=lambda: overflows.append("tree")) as tree:
        for watcher in (tree, library, tree):
            # as logged by that watcher's reader thread (watchdog logs it there)
            monkeypatch.setattr(threading, "current_thread", lambda reader=watcher._observer.reader: reader)
            logging.getLogger(WATCHDOG_INOTIFY_LOGGER).warning("Inotify queue overflowed; filesystem events were lost")
            monkeypatch.undo()
    assert overflows == ["tree", "library", "tree"]
