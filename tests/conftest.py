"""Shared fixtures: a model stand-in for tests where the model is beside the point, and photo makers."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster import models, weights


from .standin import StandInModel, install as install_stand_in  # noqa: E402,F401 (re-exported)


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs its own log handler on stderr; take it away again so tests stay independent."""
    from photocluster.logs import NOISY_LOGGERS, SILENT_UNLESS_VERBOSE

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {name: logging.getLogger(name).level for name in NOISY_LOGGERS + SILENT_UNLESS_VERBOSE}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, other_level in others.items():
        logging.getLogger(name).setLevel(other_level)


@pytest.fixture
def stand_in(monkeypatch):
    """Make the pipeline use StandInModel whatever --model says."""
    return install_stand_in(monkeypatch)


def scene(seed: int, size=(320, 240)) -> Image.Image:
    """A synthetic 'photo': smooth random colour blobs, distinct per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture
def squeezenet_weights():
    """The real SqueezeNet ImageNet weights (fetched once into the user's weights folder; CI fetches them first)."""
    return weights.fetch_weights("squeezenet")


@pytest.fixture(scope="session")
def squeezenet():
    weights.fetch_weights("squeezenet")
    return models.load_fingerprinter("squeezenet")


GET_TEST_PHOTOS = Path(__file__).resolve().parents[1] / "scripts" / "get_test_photos.py"


def load_script(name: str):
    """scripts/NAME.py as a module (scripts/ is no package); registered under its name, as its imports expect."""
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GET_TEST_PHOTOS.with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]
PHOTO_SOURCE_UNREACHABLE = 3  # get_test_photos.py's exit status when no package source can be reached


@pytest.fixture(scope="session")
def devset():
    """A library of real photographs with ground truth in manifest.csv, from Debian packages (downloaded once,
    then cached: see scripts/get_test_photos.py)."""
    done = subprocess.run([sys.executable, str(GET_TEST_PHOTOS)], capture_output=True, text=True)
    if done.returncode == PHOTO_SOURCE_UNREACHABLE:
        pytest.skip(f"no real test photos: {done.stderr.strip().splitlines()[-1]}")
    if done.returncode != 0:
        pytest.fail(f"scripts/get_test_photos.py failed:\n{done.stderr}")
    return Path(done.stdout.strip())


def sha256_tree(root: Path) -> dict[str, str]:
    import hashlib

    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds (daemon and process tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class _Hung(BaseException):
    """Not an Exception: the code under test may catch those, and must not turn a hang into a refusal."""


@contextlib.contextmanager
def fails_after(seconds: int, what: str = "the call"):
    """Fail the test when the block runs past `seconds` (a FIFO once blocked loads for good), instead of hanging
    the suite. Uses SIGALRM, so only in the main thread."""
    def stop(signum, frame):
        raise _Hung()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    except _Hung:
        pytest.fail(f"{what} did not finish within {seconds} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
