"""Crash safety under SIGKILL, with real processes: scripts/kill_harness.py run for a few dozen iterations.

The harness kills photocluster (the one-shot CLI, and the daemon) at random moments, uniformly over a run and
inside the fingerprinting, the cache save and the layout swap, and after every kill checks that the originals are
byte-identical, clusters/ is the previous or the new complete tree, the cache loads, and the next run gives the
clusters of an uninterrupted run. Any broken invariant raises HarnessFailure with what broke.

Below: interrupts keep the work (a first run stopped by SIGINT, SIGTERM or SIGKILL after a known number of photos,
and what the next run recomputes), and SIGTERM stops the CLI and the daemon within seconds in every state.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HARNESS_PATH = Path(__file__).resolve().parent.parent / "scripts" / "kill_harness.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("kill_harness", HARNESS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_harness"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_one_shot_survives_30_sigkills(harness, tmp_path, monkeypatch):
    tried, killed = harness.run_harness(30, seed=30, workdir=tmp_path, monkeypatch=monkeypatch)
    assert sum(tried.values()) == 30
    # Every targeted phase was really reached and killed inside, not just the random moments.
    assert all(killed[phase] == tried[phase] for phase in ("fingerprint", "save", "layout")), (tried, killed)
    assert sum(killed.values()) >= 22


def test_one_shot_killed_in_a_fresh_interpreter(harness, tmp_path, monkeypatch):
    """Two iterations with `python -m tests.standin` children (no fork): the real entry point dies the same way."""
    tried, killed = harness.run_harness(2, seed=4, fork=False, workdir=tmp_path, monkeypatch=monkeypatch,
                                        phases=("save", "layout"))
    assert killed["save"] == 1 and killed["layout"] == 1


def test_daemon_survives_sigkills(harness, tmp_path, monkeypatch):
    tried, killed = harness.run_harness(4, seed=7, daemon=True, workdir=tmp_path, monkeypatch=monkeypatch)
    assert sum(killed.values()) == 4


def test_a_broken_invariant_is_caught(harness, tmp_path, monkeypatch):
    """The harness is not vacuous: a layout swap that tears the tree (links made in place) is reported."""
    from photocluster import layout

    real_build = layout._build_generation

    def torn(generation, *args):
        real_build(generation, *args)
        (generation / layout.STATE_FILE).unlink()  # a tree without its state: what a half-built swap looks like

    monkeypatch.setattr(layout, "_build_generation", torn)
    with pytest.raises(harness.HarnessFailure):
        harness.run_harness(1, seed=1, workdir=tmp_path, monkeypatch=monkeypatch)


# --- interrupts keep the work: a first run stopped after a known number of photos -----------------------------
# The child's stand-in model sleeps PREDICT_DELAY per call of 4 photos and announces each call, so the photos
# whose model call began before the signal are known: `started`. The next run recomputes `recomputed` of the 40.

PREDICT_DELAY = 0.3
CHECKPOINT = 0.6  # seconds between checkpoints in these children (60 in real use)


def unsaved_bound(harness, checkpoint: float, delay: float, daemon: bool) -> int:
    """The most photos a SIGKILL may cost: the rest of the call at whose first photo the last checkpoint came
    (B - 1), the calls that finished in the checkpoint interval after it (each takes at least `delay`, so at
    most ceil(checkpoint / delay) of them), and the call in flight (B); the daemon adds one call of results on
    their way from its worker."""
    import math

    batch = harness.LOSS_BATCH
    return batch - 1 + batch * math.ceil(checkpoint / delay) + batch + (batch if daemon else 0)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_every_fingerprint_of_a_one_shot_run(harness, tmp_path, monkeypatch, signum):
    from tests.standin import install

    install(monkeypatch)
    result = harness.stop_first_run(tmp_path, daemon=False, signum=signum, after_calls=4,
                                    predict_delay=PREDICT_DELAY)
    assert result.status == 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM
    # The call in flight finishes, then everything computed is saved: the next run does only the rest.
    assert 16 <= result.started < result.photos
    assert result.recomputed == result.photos - result.started


def test_sigkill_of_a_one_shot_run_loses_only_the_photos_since_the_last_checkpoint(harness, tmp_path, monkeypatch):
    from tests.standin import install

    install(monkeypatch)
    result = harness.stop_first_run(tmp_path, daemon=False, signum=signal.SIGKILL, after_calls=7,
                                    predict_delay=PREDICT_DELAY, checkpoint_seconds=CHECKPOINT)
    assert result.status == -signal.SIGKILL
    # 7 calls take at least 2.1 s, so checkpoints came; the work after the last one is all that is lost.
    assert result.saved > 0
    assert result.lost <= unsaved_bound(harness, CHECKPOINT, PREDICT_DELAY, daemon=False), result.line()


def test_sigterm_makes_the_daemon_save_its_workers_results(harness, tmp_path, monkeypatch):
    from tests.standin import install

    install(monkeypatch)
    result = harness.stop_first_run(tmp_path, daemon=True, signum=signal.SIGTERM, after_calls=4,
                                    predict_delay=PREDICT_DELAY)
    assert result.status == 0
    # The daemon stops its worker at once: only the call in flight there is lost.
    assert result.saved > 0
    assert result.lost <= harness.LOSS_BATCH, result.line()


def test_sigkill_of_the_daemon_loses_only_the_photos_since_the_last_checkpoint(harness, tmp_path, monkeypatch):
    from tests.standin import install

    install(monkeypatch)
    result = harness.stop_first_run(tmp_path, daemon=True, signum=signal.SIGKILL, after_calls=7,
                                    predict_delay=PREDICT_DELAY, checkpoint_seconds=CHECKPOINT)
    assert result.saved > 0  # the daemon's worker path checkpoints too
    assert result.lost <= unsaved_bound(harness, CHECKPOINT, PREDICT_DELAY, daemon=True), result.line()


def test_work_lost_report_covers_every_driver_and_signal(harness, tmp_path, monkeypatch):
    """scripts/kill_harness.py --work-lost: each driver stopped by each signal, with the bounds reasoned above."""
    delay, checkpoint = 0.2, 0.5
    results = harness.work_lost_per_kill(tmp_path, monkeypatch, predict_delay=delay, checkpoint_seconds=checkpoint,
                                         after_calls=4)
    assert [(r.driver, r.signal) for r in results] == [
        (driver, name) for driver in ("one-shot", "daemon") for name in ("SIGINT", "SIGTERM", "SIGKILL")]
    most = {("one-shot", "SIGINT"): 0, ("one-shot", "SIGTERM"): 0,
            ("one-shot", "SIGKILL"): unsaved_bound(harness, checkpoint, delay, daemon=False),
            ("daemon", "SIGINT"): harness.LOSS_BATCH, ("daemon", "SIGTERM"): harness.LOSS_BATCH,
            ("daemon", "SIGKILL"): unsaved_bound(harness, checkpoint, delay, daemon=True)}
    for r in results:
        assert r.started >= 16 and 0 <= r.lost <= most[(r.driver, r.signal)], r.line()


# --- SIGTERM stops the CLI and the daemon within a few seconds, whatever they are doing ----------------------------
# Each state is reached in a child whose step there is slowed down (tests/standin.py): waiting there for the step
# to end would take 30 s, so a stop within STOP_WITHIN seconds shows the signal was acted on in that state.

STOP_WITHIN = 8.0
SLOW = "30"


def _await_log(path, text: str, timeout: float = 60) -> None:
    from .conftest import wait_for

    wait_for(lambda: path.exists() and text in path.read_text(errors="replace"), timeout, f"{text!r} in the log")


STATES = {
    # state: (environment of the child, the phase to wait for, how many times)
    "the first model call": ({"PHOTOCLUSTER_TEST_PREDICT_DELAY": SLOW}, "fingerprint", 1),
    "a later model call": ({"PHOTOCLUSTER_TEST_PREDICT_DELAY": "1"}, "fingerprint", 3),
    "saving the cache": ({"PHOTOCLUSTER_TEST_SAVE_DELAY": "3"}, "save", 1),
    "building the cluster tree": ({"PHOTOCLUSTER_TEST_LAYOUT_DELAY": SLOW}, "layout", 1),
    "waiting for the output lock": ({}, None, 0),  # the one-shot CLI only: the daemon never waits for it
    "idle": ({}, None, 0),  # the daemon only
}
CASES = [(daemon, state) for daemon in (False, True) for state in STATES
         if not (daemon and state == "waiting for the output lock") and not (not daemon and state == "idle")]


@pytest.mark.parametrize("daemon,state", CASES, ids=[f"{'daemon' if d else 'one-shot'}-{s}" for d, s in CASES])
def test_sigterm_stops_within_seconds_in_every_state(harness, tmp_path, monkeypatch, daemon, state):
    from filelock import FileLock

    from tests.standin import install

    install(monkeypatch)
    world = harness.World(tmp_path, scenes=4, stash_scenes=0, copies=4)  # 16 photos: 4 model calls
    env, phase, times = STATES[state]
    lock = None
    if state == "waiting for the output lock":
        world.out.mkdir()
        lock = FileLock(world.out / ".lock")
        lock.acquire()
    log = tmp_path / "child.log"
    # A fresh interpreter every time: a forked child can inherit a lock held by one of the model runtime's threads.
    child = harness.Child(world.argv(daemon), env, log, fork=False)
    try:
        if phase is not None:
            for _ in range(times):
                assert child.wait_phase(phase, timeout=60), log.read_text()
        elif lock is not None:
            _await_log(log, "another photocluster run is using")
        else:
            _await_log(log, "16 fingerprinted")
        signalled = time.monotonic()
        os.kill(child.pid, signal.SIGTERM)
        status = child.wait(STOP_WITHIN)
        assert time.monotonic() - signalled < STOP_WITHIN
    finally:
        if child.alive():
            child.kill()
            child.wait(30)
        if lock is not None:
            lock.release()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert status == (0 if daemon else 143), text
    if state == "saving the cache":  # the save in progress was finished, not abandoned
        from photocluster.cache import FingerprintCache

        assert len(FingerprintCache.load(world.out / "fingerprints.pk").entries) == 16


def test_sigterm_while_tensorflow_loads_stops_within_seconds(tmp_path, squeezenet_weights):
    """The real model: importing TensorFlow and building SqueezeNet take seconds and cannot poll a flag."""
    from .conftest import save, scene

    lib = tmp_path / "lib"
    for i in range(4):
        save(scene(i), lib / f"p{i}.jpg")
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "photocluster", str(lib), "--model", "squeezenet",
                                  "--out", str(tmp_path / "out")], stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        _await_log(log, "fingerprinting 4 new or changed photos")  # logged just before the model is loaded
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        status = child.wait(STOP_WITHIN)
        assert time.monotonic() - signalled < STOP_WITHIN
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    text = log.read_text(errors="replace")
    assert status == 143 and "Traceback" not in text, text
    assert "photocluster: interrupted by SIGTERM" in text


def test_a_second_ctrl_c_stops_at_once_even_while_saving(harness, tmp_path, monkeypatch):
    """The first SIGINT waits for the save of the work done; a user who presses Ctrl-C again is not kept waiting."""
    from tests.standin import install

    install(monkeypatch)
    world = harness.World(tmp_path, scenes=4, stash_scenes=0, copies=4)
    child = harness.Child(world.argv(False), {"PHOTOCLUSTER_TEST_SAVE_DELAY": SLOW}, tmp_path / "child.log", True)
    try:
        assert child.wait_phase("save", timeout=60)
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.5)
        assert child.alive()  # saving: the first Ctrl-C waits for it
        os.kill(child.pid, signal.SIGINT)
        assert child.wait(STOP_WITHIN) == 130
    finally:
        if child.alive():
            child.kill()
            child.wait(30)
    assert "Traceback" not in (tmp_path / "child.log").read_text(errors="replace")
