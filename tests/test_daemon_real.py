"""The watch daemon's grouping with the real SqueezeNet weights on real photos (its worker process loads the real
model): variants of a photo dropped into a watched library end up in one cluster, unrelated photos in none.

tests/test_daemon.py shows the daemon's mechanics with a stand-in model, where which photos group is beside the
point; this is its grouping-quality counterpart.
"""
from __future__ import annotations

import os
import threading

from PIL import Image
from skimage import data

from photocluster.config import Config, DaemonTimings
from photocluster.daemon import Daemon
from photocluster.settings import LibrarySettings, PatternOptions

from .conftest import wait_for

TIMINGS = DaemonTimings(quiet_seconds=0.2, max_delay_seconds=1.0, settle_seconds=0.1, rescan_seconds=0,
                        root_check_seconds=0.1, worker_idle_seconds=60, retry_seconds=0.05, retry_max_seconds=0.5,
                        batch_timeout_seconds=120)


def clusters(out) -> list[set[str]]:
    """The photos (relative to the library) of each cluster folder in the output."""
    found = []
    for folder in (out / "clusters").glob("*/*"):
        found.append({os.path.relpath(os.path.realpath(link), out.parent / "lib") for link in folder.iterdir()})
    return found


def test_variants_dropped_into_a_watched_library_group_and_unrelated_photos_do_not(tmp_path, squeezenet_weights):
    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    for name in ("coffee", "astronaut"):
        Image.fromarray(getattr(data, name)()).save(lib / f"{name}.jpg", quality=90)
    settings = LibrarySettings(library=lib, out=out, model="squeezenet", patterns=PatternOptions(enabled=False))
    daemon = Daemon(Config([settings], TIMINGS))
    thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(daemon.ready.is_set, 120, "the first reconcile")
        cat = Image.fromarray(data.chelsea())
        w, h = cat.size
        (lib / "cat").mkdir()
        cat.save(lib / "cat/chelsea.jpg", quality=95)
        cat.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(lib / "cat/chelsea-small.jpg", quality=80)
        cat.crop((w // 16, h // 16, w - w // 16, h - h // 16)).save(lib / "cat/chelsea-crop.png")
        variants = {"cat/chelsea.jpg", "cat/chelsea-small.jpg", "cat/chelsea-crop.png"}
        wait_for(lambda: variants in clusters(out), 120, "the cat's variants in one cluster")
        assert clusters(out) == [variants]  # the coffee cup and the astronaut join nobody
    finally:
        daemon.request_stop()
        thread.join(30)
    assert not thread.is_alive(), "the daemon did not stop"
