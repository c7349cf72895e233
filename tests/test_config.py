"""The daemon's TOML config: what it holds, where it is found, and the one-line errors that stop the daemon."""
from __future__ import annotations

from pathlib import Path

import pytest

from photocluster import cli
from photocluster.config import SYSTEM_CONFIG, ConfigError, DaemonTimings, default_config_path, load_config

GOOD = """
[daemon]
quiet_seconds = 1.5
max_delay_seconds = 20
rescan_seconds = 0

[[library]]
path = "photos"
out = "out/family"
sim = 0.6
min_size = 3
model = "squeezenet"
batch_size = 8
[library.patterns]
threshold = 0.3
min_support = 4
labels = "fine"

[[library]]
path = "{other}"
"""


@pytest.fixture
def place(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "other").mkdir()
    return tmp_path


def write(place: Path, text: str) -> Path:
    path = place / "config.toml"
    path.write_text(text.replace("{other}", str(place / "other")), encoding="utf-8")
    return path


def error_of(place: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(place, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_full_config(place):
    config = load_config(write(place, GOOD))
    assert config.source == place / "config.toml"
    assert config.timings == DaemonTimings(quiet_seconds=1.5, max_delay_seconds=20, rescan_seconds=0)
    family, other = config.libraries
    assert family.library == place / "photos"  # relative to the config file's folder
    assert family.out_dir == place / "out/family"
    assert (family.sim, family.min_size, family.model, family.batch_size) == (0.6, 3, "squeezenet", 8)
    assert (family.patterns.threshold, family.patterns.min_support, family.patterns.labels) == (0.3, 4, "fine")
    assert family.patterns.enabled
    assert other.library == place / "other" and other.out_dir == place / "other/photocluster"
    assert other.model == "vgg16" and other.sim == 0.5


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("sim = 0.6", "sim = 'high'"),
     "[[library]] #1: sim must be a number, got 'high' (a string)"),
    (GOOD.replace("sim = 0.6", "simm = 0.6"), "[[library]] #1: unknown key 'simm'"),
    (GOOD.replace("min_size = 3", "min_size = 2.5"), "[[library]] #1: min_size must be a whole number, got 2.5"),
    (GOOD.replace("threshold = 0.3", "treshold = 0.3"), "[[library]] #1: [patterns] unknown key 'treshold'"),
    (GOOD.replace('labels = "fine"', "labels = 3"), "[[library]] #1: [patterns] labels must be a string"),
    (GOOD.replace("quiet_seconds = 1.5", "quiet_seconds = '2s'"), "[daemon] quiet_seconds must be a number"),
    (GOOD.replace("quiet_seconds = 1.5", "quiet = 2"), "[daemon] unknown key 'quiet'"),
    (GOOD + "\n[extra]\n", "unknown key 'extra'"),
    (GOOD.replace('path = "photos"', 'path = "nowhere"'), "[[library]] #1: path {place}/nowhere does not exist"),
    (GOOD.replace('path = "photos"', ""), "[[library]] #1: path is missing"),
    (GOOD.replace("sim = 0.6", "sim = 2"), "[[library]] #1: sim must be between 0 and 1, got 2"),
    (GOOD.replace('model = "squeezenet"', 'model = "resnet"'), "[[library]] #1: model must be one of"),
    (GOOD.replace("max_delay_seconds = 20", "max_delay_seconds = 1"), "[daemon] max_delay_seconds (1.0) must not"),
    (GOOD.replace("{other}", "photos"), "[[library]] #2: path {place}/photos is already [[library]] #1"),
    ("[daemon]\nquiet_seconds = 2\n", "no [[library]] tables"),
    ("[[library]\npath = 'x'\n", "not valid TOML: "),
])
def test_bad_configs_give_one_line_naming_file_and_key(place, text, expected):
    message = error_of(place, text)
    assert message.startswith(f"{place / 'config.toml'}: ")
    assert expected.format(place=place) in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file .*nope\.toml does not exist$"):
        load_config(tmp_path / "nope.toml")


def test_where_the_config_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_config_path() == SYSTEM_CONFIG == Path("/etc/photocluster/config.toml")
    user = tmp_path / "photocluster" / "config.toml"
    user.parent.mkdir()
    user.write_text("")
    assert default_config_path() == user


def test_the_daemon_refuses_to_start_on_a_bad_config(place, capsys):
    path = write(place, GOOD.replace("sim = 0.6", "sim = 'high'"))
    assert cli.main(["watch", "--config", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == f"photocluster: error: {path}: [[library]] #1: sim must be a number, got 'high' (a string)\n"


def test_check_validates_without_starting(place, capsys, monkeypatch, squeezenet_weights):
    # --check also looks for each library's weights file (never loading it): SqueezeNet's, and VGG16's (the second
    # library's default model) in a Keras cache made for this test.
    (place / "keras" / "models").mkdir(parents=True)
    (place / "keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"")
    monkeypatch.setenv("KERAS_HOME", str(place / "keras"))
    path = write(place, GOOD)
    assert cli.main(["watch", "--check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK, 2 libraries: ")


@pytest.mark.parametrize("argv, expected", [
    (["watch", "{place}/photos", "--config", "{place}/config.toml"], "give either PATHs or --config, not both"),
    (["watch", "{place}/photos", "{place}/other", "--out", "{place}/o"], "--out needs a single PATH"),
    (["watch", "{place}/photos", "--quiet-seconds", "0"], "quiet_seconds must be greater than 0"),
    (["watch", "{place}/missing"], "library {place}/missing does not exist"),
])
def test_watch_usage_errors(place, capsys, argv, expected):
    assert cli.main([a.format(place=place) for a in argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected.format(place=place) in err
