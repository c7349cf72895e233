"""Two photocluster processes on one library, for real: the second waits for the output lock with a message
and never corrupts the cache; a lock left by a SIGKILLed process does not block the next run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from photocluster import layout
from photocluster.cache import FingerprintCache

from .hostile import good_photos

REPO = Path(__file__).resolve().parent.parent


def start(lib: Path, log: Path, predict_delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PHOTOCLUSTER_TEST_PREDICT_DELAY": str(predict_delay)}
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "tests.standin", str(lib), "--model", "squeezenet",
                                 "--batch-size", "2", "--no-patterns"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True)


def wait_for_line(proc: subprocess.Popen, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.strip() == wanted:
            return
        if not line:
            break
    raise AssertionError(f"the child never said {wanted!r}")


def check_output(lib: Path, photos: int) -> None:
    cache = FingerprintCache.load(lib / "photocluster" / "fingerprints.pk")  # loads: not torn, not mixed
    assert len(cache.fingerprinted()) == photos
    shown = layout.read_layout(lib / "photocluster")
    assert sorted(len(m) for m in shown.clusters.values()) == [3, 3, 3]


def test_a_second_run_waits_for_the_first_with_a_message(tmp_path):
    lib = tmp_path / "lib"
    good_photos(lib, scenes=3)
    first = start(lib, tmp_path / "first.log", predict_delay=0.4)  # 5 batches: about 2 s holding the lock
    wait_for_line(first, "phase:fingerprint")
    second = start(lib, tmp_path / "second.log")
    out_second, _ = second.communicate(timeout=120)
    out_first, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0
    err_second = (tmp_path / "second.log").read_text()
    assert "another photocluster run is using" in err_second and "Traceback" not in err_second
    assert b" 0 fingerprinted" in out_second  # it waited, then found the first run's work in the cache
    check_output(lib, 9)


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    lib = tmp_path / "lib"
    good_photos(lib, scenes=3)
    victim = start(lib, tmp_path / "victim.log", predict_delay=5)
    wait_for_line(victim, "phase:fingerprint")  # it holds the lock now
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert (lib / "photocluster" / ".lock").exists()  # the lock file stays; the flock on it died with its process
    started = time.monotonic()
    after = start(lib, tmp_path / "after.log")
    after.communicate(timeout=60)
    err = (tmp_path / "after.log").read_text()
    assert after.returncode == 0 and "another photocluster run" not in err and "Traceback" not in err
    assert time.monotonic() - started < 30
    check_output(lib, 9)
