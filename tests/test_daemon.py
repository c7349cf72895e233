"""The watch daemon with a real watchdog observer on temporary folders, and a real worker process.

The model is a stand-in (tests.test_worker.stand_in_factory, run inside the worker process) wherever the model
is beside the point; the end-to-end test at the bottom runs the real CLI with SqueezeNet, systemd's notify
socket and SIGTERM.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from photocluster.cache import FingerprintCache
from photocluster.config import Config, DaemonTimings
from photocluster.daemon import Daemon
from photocluster.watching import WATCHDOG_INOTIFY_LOGGER
from photocluster.settings import LibrarySettings, PatternOptions

from .conftest import save, scene, wait_for

STAND_IN = "tests.test_worker:stand_in_factory"
STAND_IN_DETECTOR = "tests.standin:detector_factory"
FAST = DaemonTimings(quiet_seconds=0.2, max_delay_seconds=1.0, settle_seconds=0.1, rescan_seconds=0,
                     root_check_seconds=0.1, worker_idle_seconds=30, retry_seconds=0.05, retry_max_seconds=0.5,
                     batch_timeout_seconds=30)


def library_settings(lib: Path, **kw) -> LibrarySettings:
    kw.setdefault("patterns", PatternOptions(enabled=False))
    return LibrarySettings(library=lib, model="squeezenet", **kw)


def links(out: Path) -> dict[str, str]:
    """Link name -> the photo it points at (relative to the library), over the whole cluster tree."""
    found = {}
    for path in (out / "clusters").glob("*/*/*"):
        if path.is_symlink():
            found[path.name] = os.path.normpath(os.path.join(path.parent, os.readlink(path)))
    return found


class Running:
    """A daemon running in a thread, and the fingerprint jobs its pipelines hand out (to count them)."""

    def __init__(self, config: Config):
        self.daemon = Daemon(config, model_factory=STAND_IN, detector_factory=STAND_IN_DETECTOR)
        self.fingerprinted: list[tuple[str, int]] = []  # (photo, size) per photo handed to the worker
        self.thread = threading.Thread(target=self.daemon.run, kwargs={"handle_signals": False}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(self.daemon.ready.is_set, what="the first reconcile")
        for library in self.daemon.libraries:
            self.count(library)
        return self

    def count(self, library) -> None:
        real = library.pipeline.fingerprint

        def counting(settings, cache, todo, progress, should_stop):
            self.fingerprinted += [(p.rel, p.size) for p in todo]
            return real(settings, cache, todo, progress, should_stop)

        library.pipeline.fingerprint = counting

    def __exit__(self, *exc) -> None:
        self.daemon.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the daemon did not stop"

    @property
    def library(self):
        return self.daemon.libraries[0]

    def settle(self) -> int:
        """Wait for the run that reads the newest tree under its watch (daemon_tree.py); the runs done then."""
        library = self.library
        wait_for(lambda: library.tree_watch is not None and library.tree_read_at == library.tree_events,
                 what="a run that reads the new tree")
        return self.daemon.runs

    def cache(self) -> FingerprintCache:
        return self.library.pipeline.cache


@pytest.fixture
def lib(tmp_path):
    root = tmp_path / "lib"
    save(scene(0), root / "seed.jpg")
    return root


def start(lib: Path, timings: DaemonTimings = FAST, **kw) -> Running:
    return Running(Config([library_settings(lib, **kw)], timings))


def test_photos_dropped_in_appear_in_clusters_and_summaries(lib, stand_in):
    with start(lib, patterns=PatternOptions(enabled=True, min_support=2)) as running:
        save(scene(1), lib / "trip" / "a.jpg")
        save(scene(1).resize((300, 220)), lib / "trip" / "b.jpg")
        wait_for(lambda: {"a.jpg", "b.jpg"} <= set(links(lib / "photocluster")), what="the new cluster")
        assert links(lib / "photocluster")["a.jpg"] == str(lib / "trip" / "a.jpg")
        photos_txt = lib / "photocluster" / "patterns" / "trip" / "photos.txt"
        wait_for(photos_txt.exists, what="the folder summary")
        assert sorted(photos_txt.read_text().split()) == ["a.jpg", "b.jpg"]
        assert sorted(running.fingerprinted) == sorted([("trip/a.jpg", (lib / "trip/a.jpg").stat().st_size),
                                                        ("trip/b.jpg", (lib / "trip/b.jpg").stat().st_size)])


def test_a_burst_of_500_is_fingerprinted_once_each_in_a_few_runs(lib, stand_in):
    with start(lib) as running:
        runs_before = running.daemon.runs
        small = [scene(i, size=(48, 32)) for i in range(50)]
        for i in range(500):
            save(small[i % 50], lib / "import" / f"IMG_{i:04}.jpg", quality=50 + i // 50)
        wait_for(lambda: sum(1 for rel in running.cache().fingerprinted() if rel.startswith("import/")) == 500,
                 timeout=60, what="500 fingerprints")
        wait_for(lambda: running.library.last_report.photos == 501 and running.library.last_report.clusters,
                 what="the run to finish")
        counts = Counter(rel for rel, _ in running.fingerprinted)
        assert len(counts) == 500 and set(counts.values()) == {1}
        assert running.daemon.runs - runs_before <= 6


def test_rename_and_move_do_not_fingerprint_again_and_delete_removes_the_link(lib, stand_in):
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        save(scene(1).resize((280 + 10 * i, 200)), lib / name)
    with start(lib) as running:
        out = lib / "photocluster"
        assert {"a.jpg", "b.jpg", "c.jpg"} <= set(links(out))
        os.rename(lib / "a.jpg", lib / "renamed.jpg")
        (lib / "sub").mkdir()
        os.rename(lib / "b.jpg", lib / "sub" / "moved.jpg")
        wait_for(lambda: {"renamed.jpg", "moved.jpg"} <= set(links(out)), what="the renamed links")
        assert "a.jpg" not in links(out) and running.fingerprinted == []
        assert links(out)["moved.jpg"] == str(lib / "sub" / "moved.jpg")
        (lib / "c.jpg").unlink()
        wait_for(lambda: "c.jpg" not in links(out), what="the deleted photo's link to go")
        assert {"renamed.jpg", "moved.jpg"} <= set(links(out)) and running.fingerprinted == []
        assert "c.jpg" not in running.cache().entries


def test_partial_hidden_and_other_files_are_ignored_until_renamed(lib, stand_in):
    with start(lib) as running:
        runs = running.settle()
        save(scene(2), lib / "x.jpg.part", format="JPEG")
        save(scene(3), lib / "y.jpg.crdownload", format="JPEG")
        save(scene(4), lib / "z.jpg~", format="JPEG")
        save(scene(5), lib / ".hidden.jpg")
        save(scene(6), lib / ".thumbnails" / "t.jpg")
        (lib / "notes.txt").write_text("not a photo")
        time.sleep(4 * FAST.quiet_seconds)
        assert running.daemon.runs == runs and running.fingerprinted == []
        os.rename(lib / "x.jpg.part", lib / "x.jpg")
        wait_for(lambda: "x.jpg" in running.cache().entries, what="the renamed download")
        assert running.fingerprinted == [("x.jpg", (lib / "x.jpg").stat().st_size)]


def test_a_growing_file_is_read_only_once_complete(lib, stand_in):
    data = save(scene(7, size=(1600, 1200)), lib.parent / "big.jpg", quality=95).read_bytes()
    # settle_seconds well above the writer's pauses, so a busy test machine does not make it look finished
    with start(lib, dataclasses.replace(FAST, settle_seconds=0.5)) as running:
        runs = running.settle()
        chunks = 30  # written over ~1.5 s, longer than max_delay: a run is forced while it still grows
        with open(lib / "big.jpg", "wb") as fh:
            for i in range(chunks):
                fh.write(data[i * len(data) // chunks:(i + 1) * len(data) // chunks])
                fh.flush()
                time.sleep(0.05)
            assert running.daemon.runs > runs  # that run held the growing file back
        wait_for(lambda: "big.jpg" in running.cache().entries, what="the finished photo")
        assert running.fingerprinted == [("big.jpg", len(data))]
        assert running.cache().entries["big.jpg"].error is None


def test_a_file_closed_after_writing_is_read_without_waiting_to_settle(lib, stand_in):
    # settle_seconds and max_delay far beyond the wait below: only the close event can let the photo in sooner
    with start(lib, dataclasses.replace(FAST, settle_seconds=60, max_delay_seconds=120)) as running:
        save(scene(1), lib / "a.jpg")  # opened, written, closed (IN_CLOSE_WRITE)
        wait_for(lambda: "a.jpg" in running.cache().entries, timeout=15, what="the closed photo")


def test_a_photo_rewritten_in_place_is_fingerprinted_again_through_its_event(lib, stand_in, monkeypatch):
    from photocluster import scan_state

    save(scene(1), lib / "trip" / "a.jpg")
    save(scene(2), lib / "trip" / "b.jpg")
    long_ago = time.time() - 3600
    for folder in (lib, lib / "trip"):
        os.utime(folder, (long_ago, long_ago))
    # The scans' clock a minute ahead, so they trust the folders' own stat (utime set the ctime to now)
    monkeypatch.setattr(scan_state, "time_ns", lambda: time.time_ns() + 60 * 10**9)
    with start(lib) as running:
        data = save(scene(3), lib.parent / "other.jpg").read_bytes()
        with open(lib / "trip" / "a.jpg", "r+b") as fh:  # in place: neither folder's stat changes
            fh.truncate(0)
            fh.write(data)
        wait_for(lambda: ("trip/a.jpg", len(data)) in running.fingerprinted, timeout=15, what="the rewritten photo")
        assert (lib / "trip").stat().st_mtime == pytest.approx(long_ago)
        assert running.library.dirty is not None  # these runs scanned only what the events named


def test_a_root_that_vanishes_and_comes_back(tmp_path, lib, stand_in):
    out = tmp_path / "out"
    with start(lib, out=out) as running:
        cached = set(running.cache().entries)
        away = tmp_path / "away"
        os.rename(lib, away)  # unmounted, or moved away
        wait_for(lambda: running.library.root_id is None, what="the root to be missed")
        assert "missing: " + str(lib) in running.daemon.status_line()
        save(scene(1), away / "while-away.jpg")
        save(scene(1).resize((200, 150)), away / "while-away-2.jpg")
        time.sleep(3 * FAST.quiet_seconds)
        assert set(running.cache().entries) == cached  # nothing forgotten while it was gone
        os.rename(away, lib)
        wait_for(lambda: "while-away.jpg" in links(out), what="the rescan after the return")
        # the watch is live again: a new photo shows up
        save(scene(1).resize((210, 160)), lib / "after.jpg")
        wait_for(lambda: "after.jpg" in links(out), what="an event after the return")
        # replaced by another folder (a remount): a new inode, watched afresh
        shutil.copytree(lib, tmp_path / "copy")
        os.rename(lib, tmp_path / "old")
        os.rename(tmp_path / "copy", lib)
        save(scene(1).resize((220, 170)), lib / "after-remount.jpg")
        wait_for(lambda: "after-remount.jpg" in links(out), what="a photo in the remounted root")
        counts = Counter(rel for rel, _ in running.fingerprinted)
        assert set(counts.values()) == {1}


def test_an_empty_root_is_not_taken_for_a_library_whose_photos_all_went(tmp_path, lib, stand_in):
    out = tmp_path / "out"
    save(scene(0).resize((200, 150)), lib / "seed-copy.jpg")
    with start(lib, out=out) as running:
        assert len(links(out)) == 2
        for photo in list(lib.iterdir()):  # what an unmounted share's mount point looks like
            photo.unlink()
        time.sleep(5 * FAST.quiet_seconds)
        assert len(links(out)) == 2 and len(running.cache().entries) == 2


def test_an_output_in_use_by_another_run_is_retried_not_waited_for(lib, stand_in, caplog):
    from filelock import FileLock

    with start(lib) as running:
        other_run = FileLock(lib / "photocluster" / ".lock")
        with other_run:
            save(scene(1), lib / "a.jpg")
            save(scene(1).resize((200, 150)), lib / "b.jpg")
            wait_for(lambda: "its output is in use by another photocluster run; waiting" in caplog.text,
                     what="the retry")
            assert running.fingerprinted == []
        wait_for(lambda: {"a.jpg", "b.jpg"} <= set(links(lib / "photocluster")), what="the run after the release")


def test_inotify_overflow_makes_a_full_rescan(lib, stand_in, caplog):
    # watchdog 7 reports an overflow only with this warning; the daemon relies on its wording
    import watchdog.observers.inotify_c as inotify_c

    assert "Inotify queue overflowed" in inspect.getsource(inotify_c)
    with start(lib) as running:
        runs = running.daemon.runs
        logging.getLogger(WATCHDOG_INOTIFY_LOGGER).warning("Inotify queue overflowed; filesystem events were lost")
        wait_for(lambda: running.daemon.runs > runs, what="the rescan")
        assert "inotify queue overflowed: events were lost; rescanning every library" in caplog.text


def test_reload_adds_a_library_and_a_bad_reload_keeps_the_config(tmp_path, lib, stand_in, caplog):
    other = tmp_path / "other"
    save(scene(3), other / "o1.jpg")
    save(scene(3).resize((200, 150)), other / "o2.jpg")
    config_file = tmp_path / "config.toml"
    one = f'[[library]]\npath = "{lib}"\nmodel = "squeezenet"\n[library.patterns]\nenabled = false\n'
    config_file.write_text(one)
    from photocluster.config import load_config

    config = load_config(config_file)
    config.timings = FAST
    with Running(config) as running:
        config_file.write_text(one + one.replace(str(lib), str(other)) + "[daemon]\nquiet_seconds = 0.2\n"
                               "max_delay_seconds = 1\nroot_check_seconds = 0.1\nsettle_seconds = 0.1\n")
        running.daemon.request_reload()
        wait_for(lambda: len(links(other / "photocluster")) == 2, what="the added library")
        assert [x.root for x in running.daemon.libraries] == [str(lib), str(other)]
        config_file.write_text(one.replace("squeezenet", "resnet"))
        running.daemon.request_reload()
        wait_for(lambda: "config reload failed" in caplog.text, what="the bad reload")
        assert "keeping the current config: " + str(config_file) in caplog.text
        assert len(running.daemon.libraries) == 2


# --- end to end: the real CLI, SqueezeNet, the notify socket, SIGHUP and SIGTERM ---------------------------------

@contextlib.contextmanager
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()


def receive_until(sock, predicate, timeout, seen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(message)
        if predicate(message):
            return message
    raise AssertionError(f"no such notification; got {seen[-5:]}")


def test_service_end_to_end_with_squeezenet(tmp_path, squeezenet_weights):
    lib, out = tmp_path / "lib", tmp_path / "out"
    save(scene(1), lib / "a.jpg")
    save(scene(1).resize((200, 150)), lib / "b.jpg")
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[daemon]\nquiet_seconds = 0.3\nmax_delay_seconds = 2\n'
                           f'[[library]]\npath = "{lib}"\nout = "{out}"\nmodel = "squeezenet"\nbatch_size = 4\n')
    with notify_socket(tmp_path) as (sock, address):
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "300000", "INVOCATION_ID": "test"}
        env.pop("WATCHDOG_PID", None)
        log_file = tmp_path / "daemon.log"
        daemon = subprocess.Popen([sys.executable, "-m", "photocluster", "watch", "-v", "--config", str(config_file)],
                                  env=env, stderr=log_file.open("w"))
        seen: list[str] = []
        try:
            receive_until(sock, lambda m: m == "READY=1", 120, seen)
            assert links(out).keys() == {"a.jpg", "b.jpg"}  # READY=1 comes after the first reconcile
            receive_until(sock, lambda m: m == "STATUS=2 photos, 1 cluster, idle", 10, seen)
            receive_until(sock, lambda m: m == "WATCHDOG=1", 5, seen)
            daemon.send_signal(signal.SIGHUP)
            receive_until(sock, lambda m: m == "RELOADING=1", 5, seen)
            receive_until(sock, lambda m: m == "READY=1", 5, seen)
            small = [scene(i, size=(160, 120)) for i in range(20)]
            for i in range(400):
                save(small[i % 20], lib / "burst" / f"{i:03}.jpg", quality=60 + i // 20)
            receive_until(sock, lambda m: m.startswith("STATUS=") and "fingerprinting" in m, 60, seen)
            time.sleep(0.3)
            daemon.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert daemon.wait(10) == 0
            assert time.monotonic() - stopped < 5
            receive_until(sock, lambda m: m == "STOPPING=1", 1, seen)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            log = log_file.read_text()
    # the cache is whole and loadable, and holds what was done before the stop
    cache = FingerprintCache.load(out / "fingerprints.pk")
    assert {"a.jpg", "b.jpg"} <= set(cache.entries) and len(cache.entries) < 402
    # the worker went with the daemon, and the log suits the journal (no timestamps of its own)
    worker_pid = int(log.split("fingerprint worker started (pid ")[1].split(")")[0])
    assert not Path(f"/proc/{worker_pid}").exists()
    assert "stopped mid-update" in log and all(line.split()[0] in {"DEBUG", "INFO", "WARNING", "ERROR"}
                                               for line in log.splitlines() if line)


# --- missing model weights: a configuration error, never retried forever -----------------------------------------

def weights_required_factory(name: str, weights: str | None = None, runtime: str = "openvino"):
    """A stand-in (run in the worker process) that, like the real loader, has no ImageNet weights here."""
    from photocluster.weights import WeightsUnavailable

    from .conftest import StandInModel

    if weights != "random":
        raise WeightsUnavailable(f"{name} weights are missing; run `photocluster fetch-weights {name}`")
    return StandInModel()


class _StatusLines:
    """A ServiceNotifier that keeps the STATUS= lines it is given."""

    def __init__(self):
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        self.lines.append(text)

    def __getattr__(self, name):
        return lambda *args: None


def test_a_library_whose_worker_finds_no_weights_is_failed_once_and_the_others_run(tmp_path, stand_in, caplog):
    caplog.set_level(logging.INFO)
    without, other = tmp_path / "without", tmp_path / "other"
    for root in (without, other):
        save(scene(1), root / "a.jpg")
        save(scene(1).resize((200, 150)), root / "b.jpg")
    config = Config([library_settings(without), library_settings(other, weights="random")],
                    dataclasses.replace(FAST, retry_seconds=0.01, retry_max_seconds=0.02))
    notifier = _StatusLines()
    daemon = Daemon(config, model_factory="tests.test_daemon:weights_required_factory", notifier=notifier)
    thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(daemon.ready.is_set, what="the first reconcile")
        assert set(links(other / "photocluster")) == {"a.jpg", "b.jpg"}  # the other library runs
        time.sleep(1.0)  # 50 retry periods: a retrying daemon would try many times meanwhile
    finally:
        daemon.request_stop()
        thread.join(15)
    assert caplog.text.count("squeezenet weights are missing") == 1, caplog.text
    assert "update failed" not in caplog.text
    assert f"{without}: cannot run: squeezenet weights are missing" in caplog.text
    assert f"failed (weights missing): {without}" in notifier.lines[-1]


def test_missing_weights_found_at_start_mark_only_that_library_failed(tmp_path, stand_in, monkeypatch, caplog):
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(tmp_path / "empty"))
    without, other = tmp_path / "without", tmp_path / "other"
    for root in (without, other):
        save(scene(1), root / "a.jpg")
        save(scene(1).resize((200, 150)), root / "b.jpg")
    config = Config([library_settings(without), library_settings(other, weights="random")], FAST)
    notifier = _StatusLines()
    daemon = Daemon(config, model_factory=STAND_IN, notifier=notifier, check_weights=True)
    thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(daemon.ready.is_set, what="the first reconcile")
        assert set(links(other / "photocluster")) == {"a.jpg", "b.jpg"}
        assert not (without / "photocluster").exists()  # never run
    finally:
        daemon.request_stop()
        thread.join(15)
    assert f"{without}: cannot run: SqueezeNet weights are missing from {tmp_path / 'empty'}" in caplog.text
    assert f"failed (weights missing): {without}" in notifier.lines[-1]


def run_photocluster(*args: str, weights_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    code = ("import sys; from photocluster.cli import main; status = main(sys.argv[1:]); "
            "print('loaded:', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)); sys.exit(status)")
    env = {**os.environ, "PHOTOCLUSTER_WEIGHTS_DIR": str(weights_dir), "KERAS_HOME": str(weights_dir / "keras")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_watch_check_finds_missing_weights_without_loading_tensorflow(tmp_path, lib, squeezenet_weights):
    empty, fetched = tmp_path / "empty", tmp_path / "fetched"
    fetched.mkdir()
    shutil.copy(squeezenet_weights, fetched)
    for model in ("squeezenet", "vgg16"):
        # (--objects imagenet: the model's weights only; the detector's are checked in their own test)
        missing = run_photocluster("watch", "--check", str(lib), "--model", model, "--objects", "imagenet",
                                   weights_dir=empty)
        assert missing.returncode == 2, missing.stderr
        assert missing.stderr.count("\n") == 1 and missing.stderr.startswith(f"photocluster: error: {lib}: ")
        assert "weights are missing" in missing.stderr
        assert "loaded: []" in missing.stdout
    present = run_photocluster("watch", "--check", str(lib), "--model", "squeezenet", "--objects", "imagenet",
                               weights_dir=fetched)
    assert present.returncode == 0 and "OK" in present.stdout, present.stderr
    assert "loaded: []" in present.stdout  # the check looked at files only


def test_a_single_library_without_weights_exits_2_with_one_line(tmp_path, lib):
    result = run_photocluster("watch", str(lib), "--model", "squeezenet", weights_dir=tmp_path / "empty",
                              timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "SqueezeNet weights are missing" in result.stderr, result.stderr
    assert not (lib / "photocluster").exists()


def test_a_reload_tries_a_failed_library_again(tmp_path, stand_in, monkeypatch, squeezenet_weights):
    from photocluster.config import load_config

    weights_dir = tmp_path / "weights"
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(weights_dir))
    without, other = tmp_path / "without", tmp_path / "other"
    for root in (without, other):
        save(scene(1), root / "a.jpg")
        save(scene(1).resize((200, 150)), root / "b.jpg")
    config_file = tmp_path / "config.toml"
    config_file.write_text("".join(f'[[library]]\npath = "{root}"\nmodel = "squeezenet"\nweights = "{weights}"\n'
                                   '[library.patterns]\nobjects = "imagenet"\n'  # the model's weights only
                                   for root, weights in ((without, "imagenet"), (other, "random"))))
    config = load_config(config_file)
    config.timings = FAST
    daemon = Daemon(config, model_factory=STAND_IN, check_weights=True, detector_factory=STAND_IN_DETECTOR)
    thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(daemon.ready.is_set, what="the first reconcile")
        assert daemon.libraries[0].failed and not (without / "photocluster").exists()
        weights_dir.mkdir()
        shutil.copy(squeezenet_weights, weights_dir)  # the user fetched the weights, then reloads
        daemon.request_reload()
        wait_for(lambda: set(links(without / "photocluster")) == {"a.jpg", "b.jpg"}, what="the library, now run")
        assert daemon.libraries[0].failed is None
    finally:
        daemon.request_stop()
        thread.join(15)


# --- the systemd watchdog through a long stage -------------------------------------------------------------------

class FakeWatchdog:
    """A notifier that plays systemd's watchdog: WatchdogSec=`unit_seconds`, which WATCHDOG_USEC= (extend_watchdog)
    replaces until the next; every gap between pings longer than the allowance then in force is noted (a restart)."""

    def __init__(self, unit_seconds: float):
        self.unit = self.allowance = unit_seconds
        self.last_ping = time.monotonic()
        self.missed: list[float] = []
        self._lock = threading.Lock()

    def watchdog(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self.last_ping > self.allowance:
                self.missed.append(now - self.last_ping)
            self.last_ping = now

    def extend_watchdog(self, seconds: float) -> None:
        allowance = max(self.unit, seconds)
        if allowance != self.allowance:  # only a change is sent, and systemd restarts its timer on it
            self.watchdog()
            self.allowance = allowance

    def restore_watchdog(self) -> None:
        self.extend_watchdog(0)

    def __getattr__(self, name):
        return lambda *args: None


def test_a_long_clustering_after_a_restart_is_not_taken_for_a_hang(lib, stand_in, monkeypatch):
    """The restart loop of issue 11: every photo is fingerprinted already, so no batch pings, and the clustering
    lasts longer than WatchdogSec. The allowance must come from the library's size, before the stage starts."""
    from photocluster import pipeline, watched
    from photocluster.pipeline import run_once

    save(scene(1), lib / "a.jpg")
    save(scene(1).resize((200, 150)), lib / "b.jpg")
    run_once(library_settings(lib, min_size=2))  # as before the restart: all 3 photos fingerprinted
    monkeypatch.setattr(watched, "watchdog_allowance", lambda photos: 1000.0 * photos)
    notifier = FakeWatchdog(unit_seconds=1.0)
    allowed_while_clustering = []
    real_cluster_cache = pipeline.cluster_cache

    def slow_cluster_cache(*args, **kwargs):
        allowed_while_clustering.append(notifier.allowance)
        time.sleep(2.5)  # longer than WatchdogSec, with no ping
        return real_cluster_cache(*args, **kwargs)

    monkeypatch.setattr(pipeline, "cluster_cache", slow_cluster_cache)
    config = Config([library_settings(lib, min_size=1)], FAST)  # another min_size: the clusters are made again
    daemon = Daemon(config, model_factory=STAND_IN, notifier=notifier)
    thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(daemon.ready.is_set, what="the first reconcile")
        assert allowed_while_clustering == [3000.0]  # 3 photos in the cache
        assert notifier.allowance == 1.0  # the unit's own, once the run is over
        assert daemon.libraries[0].last_report.fingerprinted.computed == 0
    finally:
        daemon.request_stop()
        thread.join(15)
    assert notifier.missed == []


def test_the_watchdog_allowance_grows_with_the_library():
    from photocluster.watched import watchdog_allowance

    # 250,000 photos took 2.4 min to cluster on a quiet machine: a busy one at Nice=10 needs far more
    assert watchdog_allowance(250_000) >= 10 * 2.4 * 60
    assert watchdog_allowance(1_000_000) >= 4 ** 2 * watchdog_allowance(250_000) * 0.9  # pair search: quadratic
    assert watchdog_allowance(1_000) < 5 * 60  # a small library keeps the unit's own WatchdogSec=5min
    sizes = [0, 10, 10_000, 100_000, 250_000, 1_000_000]
    assert [watchdog_allowance(n) for n in sizes] == sorted(watchdog_allowance(n) for n in sizes)


# --- issue 13: the worker runs both models; the daemon itself never loads TensorFlow ------------------------------

def detect_in_a_daemon(lib: str) -> None:
    """Run in a fresh process: a daemon fingerprints without patterns (no detections), then, with them, detects
    objects in those photos and fingerprints a new one with detections; print what it found as JSON."""
    import json

    from photocluster import inprocess

    from .standin import install

    real_load_detector = inprocess.load_detector
    install()  # the stand-in's model spec (the cache's width) in this process
    inprocess.load_detector = real_load_detector  # a detector in this process would be the real one, TensorFlow
    root = Path(lib)
    first = Daemon(Config([library_settings(root)], FAST), model_factory=STAND_IN,
                   detector_factory=STAND_IN_DETECTOR)
    _run_until_ready(first)
    save(scene(5), root / "new.jpg")
    second = Daemon(Config([library_settings(root, patterns=PatternOptions(enabled=True))], FAST),
                    model_factory=STAND_IN, detector_factory=STAND_IN_DETECTOR)
    _run_until_ready(second)
    cache = FingerprintCache.load(root / "photocluster" / "fingerprints.pk")
    print(json.dumps({"detections": {rel: None if e.detections is None else list(e.detections)
                                     for rel, e in cache.entries.items()},
                      "report": second.libraries[0].last_report.as_dict()["detected_earlier_photos"],
                      "loaded": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}))


def _run_until_ready(daemon: Daemon) -> None:
    thread = threading.Thread(target=daemon.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(daemon.ready.is_set, what="the first reconcile")
    finally:
        daemon.request_stop()
        thread.join(15)


def test_the_daemon_detects_through_its_worker_and_never_loads_tensorflow(lib):
    import json

    save(scene(1), lib / "a.jpg")
    code = "import sys; from tests.test_daemon import detect_in_a_daemon; detect_in_a_daemon(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    # the stand-in detector finds nothing: () where it ran, None where it did not
    assert found["detections"] == {"seed.jpg": [], "a.jpg": [], "new.jpg": []}
    assert found["report"] == 2  # seed.jpg and a.jpg, fingerprinted before; new.jpg with its fingerprint
    assert found["loaded"] == []


def test_watch_check_names_a_library_whose_detector_weights_are_missing(tmp_path, monkeypatch):
    """Issue 13: `watch --check` looks for the detector's files too, when the summaries use it."""
    from photocluster.config import Config
    from photocluster.daemon import check_weights
    from photocluster.settings import LibrarySettings, PatternOptions
    from photocluster.weights import WeightsUnavailable

    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(tmp_path / "empty"))
    lib = tmp_path / "lib"
    lib.mkdir()
    random_weights = {"model": "vgg16", "weights": "random"}  # the model needs no file: only the detector counts
    without = LibrarySettings(library=lib, patterns=PatternOptions(objects="imagenet"), **random_weights)
    check_weights(Config(libraries=[without]))  # no detector: nothing missing
    with pytest.raises(WeightsUnavailable, match="centernet"):
        check_weights(Config(libraries=[LibrarySettings(library=lib, **random_weights)]))
