"""Only photocluster's own lines on stderr: TensorFlow's C++ start-up lines and matplotlib's font cache stay out."""
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from photocluster import weights

from .conftest import wait_for

NOT_OURS = ("absl", "oneDNN", "I0000", "cpu_feature_guard", "fontManager", "matplotlib")


@pytest.fixture
def fresh_user(tmp_path, squeezenet_weights):
    """The environment of a user who has never run photocluster, TensorFlow or matplotlib (only the weights,
    fetched once, are there), and a small library of real photographs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "MPL", "XDG_", "JOURNAL_STREAM", "INVOCATION_ID", "PYTEST_"))}
    env.update(HOME=str(tmp_path / "home"), MPLCONFIGDIR=str(tmp_path / "mplconfig"),
               PHOTOCLUSTER_WEIGHTS_DIR=str(weights.weights_dir()),
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), env.get("PYTHONPATH")])))
    (tmp_path / "home").mkdir()
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("chelsea", "rocket", "coffee"):
        Image.fromarray(getattr(data, name)()).save(lib / f"{name}.jpg")
    return env, lib


def assert_only_photocluster_lines(stderr: str, mplconfig: Path) -> None:
    lines = [line for line in stderr.splitlines() if line]
    assert lines and all(line.startswith("photocluster: ") for line in lines), stderr
    assert not any(word in line for line in lines for word in NOT_OURS), stderr
    assert not mplconfig.exists() or not any(mplconfig.iterdir())  # matplotlib built no font cache


def test_cli_run_with_squeezenet_prints_only_photocluster_lines(fresh_user, tmp_path):
    env, lib = fresh_user
    done = subprocess.run([sys.executable, "-m", "photocluster", str(lib), "--model", "squeezenet",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "photocluster: INFO: fingerprinting 3 new or changed photos with squeezenet" in done.stderr
    assert_only_photocluster_lines(done.stderr, tmp_path / "mplconfig")


def test_watch_daemon_and_worker_print_only_photocluster_lines(fresh_user, tmp_path):
    env, lib = fresh_user
    out = tmp_path / "out"
    log_file = tmp_path / "daemon.log"
    with log_file.open("w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "photocluster", "watch", str(lib), "--model", "squeezenet",
                                   "--out", str(out)], env=env, stderr=log, stdout=subprocess.DEVNULL)
    try:
        # the cache is written once the worker has fingerprinted the library, so TensorFlow has started by then
        wait_for(lambda: (out / "fingerprints.pk").exists() and (out / "clusters").exists(), 180,
                 "the daemon's first update")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert_only_photocluster_lines(log_file.read_text(), tmp_path / "mplconfig")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("JOURNAL_STREAM", None)
    env.pop("INVOCATION_ID", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=60)


HOLD_WHILE_ANOTHER_THREAD_LOGS = """
    import logging, os, sys, threading
    from photocluster import logs

    logs.setup_logging(verbose=sys.argv[1] == "-v")
    with logs.hold_native_stderr():
        os.write(2, b"I0000 00:00:1.5  42 port.cc:153] native start-up chatter\\n")
        other = threading.Thread(target=lambda: logging.getLogger("photocluster.images").warning("cannot decode x.jpg"))
        other.start()
        other.join()
        print("python's own stderr", file=sys.stderr)
    logging.getLogger("photocluster").info("after")
"""


def test_held_native_output_is_hidden_but_own_lines_pass_in_order():
    done = run_python(HOLD_WHILE_ANOTHER_THREAD_LOGS, "")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["photocluster: WARNING: cannot decode x.jpg", "python's own stderr",
                                        "photocluster: INFO: after"]


def test_held_native_output_shows_as_debug_lines_with_verbose():
    done = run_python(HOLD_WHILE_ANOTHER_THREAD_LOGS, "-v")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "photocluster: WARNING: cannot decode x.jpg", "python's own stderr",
        "photocluster: DEBUG: native: I0000 00:00:1.5  42 port.cc:153] native start-up chatter",
        "photocluster: INFO: after"]


def test_cli_setup_logging_is_still_importable():
    from photocluster import cli, logs

    assert cli.setup_logging is logs.setup_logging


def test_libraries_speak_only_from_warning_up_unless_verbose(capsys):
    from photocluster.logs import setup_logging

    font_log, our_log = logging.getLogger("matplotlib.font_manager"), logging.getLogger("photocluster.cli")
    setup_logging()
    font_log.info("generated new fontManager")
    font_log.warning("font not found")
    our_log.info("3 photos")
    assert capsys.readouterr().err.splitlines() == ["photocluster: WARNING: font not found",
                                                    "photocluster: INFO: 3 photos"]
    setup_logging(verbose=True)
    font_log.info("generated new fontManager")
    assert capsys.readouterr().err == "photocluster: INFO: generated new fontManager\n"


def test_pillows_own_error_lines_stay_off_the_terminal_after_setup(tmp_path, stand_in, capfd):
    """Pillow logs some refusals at ERROR, naming no file; the run's own skip line names the photo instead."""
    from photocluster.cli import main

    from .conftest import save, scene
    from .hostile import tiff_many_samples

    lib = tmp_path / "lib"
    for i in range(2):
        save(scene(i), lib / f"p{i}.jpg")
    (lib / "samples.tif").write_bytes(tiff_many_samples())
    assert main([str(lib), "--model", "squeezenet", "--out", str(tmp_path / "out")]) == 0
    err = capfd.readouterr().err
    assert "More samples per pixel" not in err
    assert [line for line in err.splitlines() if "samples.tif" in line] == [
        line for line in err.splitlines() if line.startswith("photocluster: WARNING: skipping samples.tif")]
    assert "samples.tif" in err


def test_each_stage_says_its_line_once(tmp_path, stand_in, capfd):
    """One run writes the summaries once, so it says so once."""
    from photocluster.cli import main

    from .conftest import save, scene

    lib = tmp_path / "lib"
    for i in range(3):
        save(scene(i), lib / "a" / f"p{i}.jpg")
    assert main([str(lib), "--model", "squeezenet", "--out", str(tmp_path / "out")]) == 0
    err = capfd.readouterr().err.splitlines()
    assert len([line for line in err if "patterns:" in line]) == 1
    assert len([line for line in err if "fingerprinting" in line]) == 1


def test_keras_download_progress_never_reaches_stdout(tmp_path, monkeypatch, capsys, caplog):
    """Keras prints 'Downloading data from ...' on stdout, which would corrupt --json; photocluster says it."""
    import keras
    from keras.src.utils import io_utils

    from photocluster import networks

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # nothing cached: a download would start
    built = object()

    def fake_vgg16(include_top, weights):
        io_utils.print_msg("Downloading data from https://example.invalid/vgg16.h5")
        return built

    monkeypatch.setattr(keras.applications, "VGG16", fake_vgg16)
    with caplog.at_level(logging.INFO, logger="photocluster"):
        assert networks._vgg16_from_keras_download() is built
    assert capsys.readouterr().out == ""
    assert "downloading the VGG16 ImageNet weights" in caplog.text
