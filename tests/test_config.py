"""The daemon's TOML config: what it holds, where it is found, and the one-line errors that stop the daemon."""
from __future__ import annotations

from pathlib import Path

import pytest

from photocluster import cli
from photocluster.config import SYSTEM_CONFIG, ConfigError, DaemonTimings, default_config_path, load_config

from .conftest import fails_after

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


def test_the_objects_key(place):
    def objects(value: str) -> str:
        return GOOD.replace('labels = "fine"', f'labels = "fine"\nobjects = {value}')

    family, other = load_config(write(place, objects('"imagenet"'))).libraries
    assert (family.patterns.objects, other.patterns.objects) == ("imagenet", "both")
    message = error_of(place, objects('"yolo"'))
    assert message.endswith("[[library]] #1: [patterns] objects must be one of detector, imagenet, both, got 'yolo'")
    assert "[patterns] objects must be a string" in error_of(place, objects("1"))


def test_verify_burst_seconds_and_time_weight(place):
    text = GOOD.replace("min_size = 3", "min_size = 3\nverify = false\nburst_seconds = 2\ntime_weight = 0.25")
    family, other = load_config(write(place, text)).libraries
    assert (family.verify, family.burst_seconds, family.time_weight) == (False, 2, 0.25)
    assert (other.verify, other.burst_seconds, other.time_weight) == (True, 5.0, 0.0)  # the defaults


def test_the_index_objects_key(place):
    family, other = load_config(write(place, GOOD.replace("min_size = 3", "min_size = 3\nindex_objects = true"))
                                ).libraries
    assert (family.index_objects, other.index_objects) == (True, False)  # off unless asked: it costs model time
    assert "index_objects must be true or false, got 1" in error_of(
        place, GOOD.replace("min_size = 3", "min_size = 3\nindex_objects = 1"))


def test_the_dask_keys(place):
    family, other = load_config(write(place, GOOD.replace(
        "min_size = 3", 'min_size = 3\ndask = "tcp://sched:8786"\ndask_path_map = "/srv=/mnt/nas"'))).libraries
    assert (family.dask, family.dask_path_map, other.dask) == ("tcp://sched:8786", "/srv=/mnt/nas", None)
    assert "dask_path_map must be CLIENT_PREFIX=WORKER_PREFIX" in error_of(
        place, GOOD.replace("min_size = 3", 'min_size = 3\ndask_path_map = "srv"'))


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
    (GOOD.replace("sim = 0.6", "verify = 'on'"), "[[library]] #1: verify must be true or false, got 'on' (a string)"),
    (GOOD.replace("sim = 0.6", "verify = 1"), "[[library]] #1: verify must be true or false, got 1 (a whole number)"),
    (GOOD.replace("sim = 0.6", "burst_seconds = -1"),
     "[[library]] #1: burst_seconds must be a number of seconds from 0 (off) to 3600, got -1"),
    (GOOD.replace("sim = 0.6", "burst_seconds = '5s'"), "[[library]] #1: burst_seconds must be a number, got '5s'"),
    (GOOD.replace("sim = 0.6", "time_weight = 1"),
     "[[library]] #1: time_weight must be from 0 (off) up to but not including 1, got 1"),
    (GOOD.replace("sim = 0.6", "time_weight = nan"), "[[library]] #1: time_weight must be from 0"),
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


# --- hostile configs (issue 9, class 6) and every problem reported (issue 10, point 7) ----------------------------
import itertools  # noqa: E402
import os  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TIMINGS = [name for name in DaemonTimings.__dataclass_fields__]
# TOML spellings of values no timing, similarity or threshold may take: not finite, negative, absurd, wrong types.
NOT_A_NUMBER = ["nan", "+nan", "-nan", "inf", "+inf", "-inf", "1e400", "-1", "-0.5", "1e300",
                "99999999999999999999", "'2'", "true", "[1]", "{a = 1}", "1979-05-27T07:32:00Z"]
LIBRARY_NUMBERS = {"sim": ["1.5", "-0.1"], "cut": ["1.5", "-1.5"], "patterns.threshold": ["0", "1.5"],
                   "patterns.min_support": ["0", "2.5"], "burst_seconds": ["-1", "3601"],
                   "time_weight": ["1", "-0.1"]}
_HYPOTHESIS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


_IN_GOOD = {"quiet_seconds": "quiet_seconds = 1.5\n", "max_delay_seconds": "max_delay_seconds = 20\n",
            "rescan_seconds": "rescan_seconds = 0\n", "sim": "sim = 0.6\n", "patterns.threshold": "threshold = 0.3\n",
            "patterns.min_support": "min_support = 4\n"}


def with_setting(key: str, value: str, text: str = GOOD) -> str:
    """`text` (GOOD) with `key` (a daemon timing, a key of library #1, or patterns.key) set to the TOML `value`."""
    header = ("[daemon]\n" if key in TIMINGS else "[library.patterns]\n" if key.startswith("patterns.")
              else "[[library]]\n")
    text = text.replace(_IN_GOOD.get(key, "\0"), "", 1)
    return text.replace(header, f"{header}{key.split('.')[-1]} = {value}\n", 1)


def _legal(key: str, value: str) -> bool:
    """The few draws that are sound: a cosine cut may be negative, and min_support may be any whole photo count."""
    return ((key == "cut" and value in ("-1", "-0.5"))
            or (key == "patterns.min_support" and value in ("1e300", "99999999999999999999")))


def problems_of(place: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(place, text))
    lines = info.value.problems
    assert all("\n" not in line and line.startswith(f"{place / 'config.toml'}: ") for line in lines)
    return lines


@_HYPOTHESIS
@given(key=st.sampled_from(TIMINGS + list(LIBRARY_NUMBERS)), value=st.sampled_from(NOT_A_NUMBER))
def test_every_number_must_be_finite_and_in_range(place, key, value):
    if _legal(key, value):
        return
    lines = problems_of(place, with_setting(key, value))
    name = key.split(".")[-1]
    assert any(f" {name} " in line for line in lines), lines


@pytest.mark.parametrize("key, value", [(k, v) for k, values in LIBRARY_NUMBERS.items() for v in values]
                         + [(k, v) for k in TIMINGS for v in ("0", "-3", "400000000") if (k, v) != ("rescan_seconds", "0")])
def test_numbers_out_of_range_are_refused(place, key, value):
    assert any(f" {key.split('.')[-1]} " in line for line in problems_of(place, with_setting(key, value)))


def test_nan_settle_seconds_is_refused_by_name(place):
    """The case seen: with settle_seconds = nan, new photos were never fingerprinted."""
    assert problems_of(place, with_setting("settle_seconds", "nan")) == [
        f"{place / 'config.toml'}: [daemon] settle_seconds must be a finite number of seconds up to 31536000, got nan"]


@_HYPOTHESIS
@given(st.lists(st.tuples(st.sampled_from(TIMINGS + list(LIBRARY_NUMBERS)), st.sampled_from(NOT_A_NUMBER)),
                min_size=1, max_size=8, unique_by=lambda kv: kv[0]))
def test_every_bad_key_is_reported_once_not_only_the_first(place, bad):
    bad = [(key, value) for key, value in bad if not _legal(key, value)]
    text = GOOD
    for key, value in bad:
        text = with_setting(key, value, text)
    if not bad:
        return
    lines = problems_of(place, text)
    assert len(lines) == len(bad), lines
    for key, _ in bad:
        assert sum(f" {key.split('.')[-1]} " in line for line in lines) == 1, (key, lines)


def test_several_problems_in_several_tables_are_all_reported(place):
    text = (GOOD.replace("quiet_seconds = 1.5", "quiet_seconds = nan\nsettle = 1")
            .replace("sim = 0.6", "sim = inf").replace("min_size = 3", "min_size = 'x'")
            .replace("threshold = 0.3", "threshold = -1").replace('labels = "fine"', 'labels = "none"')
            + "\n[[library]]\npath = 'nowhere'\n")
    lines = problems_of(place, text)
    expected = ["[daemon] quiet_seconds must be a finite", "[daemon] unknown key 'settle'", "#1: sim must be",
                "#1: min_size must be a whole number", "#1: [patterns] threshold must be",
                "#1: [patterns] labels must be one of", "#3: path"]
    assert len(lines) == len(expected), lines
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, (fragment, lines)


@pytest.mark.parametrize("how", ["--check", "start"])
def test_watch_prints_every_problem_one_line_each_and_exits_2(place, capsys, how):
    path = write(place, GOOD.replace("sim = 0.6", "sim = nan").replace("quiet_seconds = 1.5", "quiet_seconds = -inf"))
    argv = ["watch", "--config", str(path)] + (["--check"] if how == "--check" else [])
    assert cli.main(argv) == cli.EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"photocluster: error: {path}: ") for line in lines)
    assert "quiet_seconds" in lines[0] and "sim" in lines[1]


def _one_line_exit_2(capsys, path: Path, *extra: str) -> str:
    with fails_after(20, "the config check"):
        status = cli.main(["watch", "--check", "--config", str(path), *extra])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE, err
    assert err.count("\n") == 1 and err.startswith(f"photocluster: error: {path}") and "internal error" not in err
    return err


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "cp1252"])
def test_a_config_not_in_utf8_is_one_line_exit_2(place, capsys, encoding):
    path = place / "config.toml"
    path.write_bytes(GOOD.replace("{other}", str(place / "other")).replace("# ", "").replace(
        "[daemon]", "# café à la crème\n[daemon]").encode(encoding))
    assert "UTF-8" in _one_line_exit_2(capsys, path)


@pytest.mark.parametrize("depth", [50, 1000, 100_000])
@pytest.mark.parametrize("shape", ["arrays", "inline tables", "arrays of inline tables"])
def test_a_deeply_nested_config_is_one_line_exit_2(place, capsys, depth, shape):
    opening, closing = {"arrays": ("[", "]"), "inline tables": ("{a = ", "}"),
                        "arrays of inline tables": ("[{a = ", "}]")}[shape]
    path = write(place, f"deep = {opening * depth}1{closing * depth}\n" + GOOD)
    _one_line_exit_2(capsys, path)


@pytest.mark.parametrize("kind", ["fifo", "folder", "socket"])
def test_a_config_that_is_no_file_is_one_line_exit_2_without_hanging(tmp_path, capsys, kind):
    import socket

    path = tmp_path / "config.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    _one_line_exit_2(capsys, path)


def test_a_config_given_through_a_symlink_is_read(place):
    """The config is the user's own file (dotfiles are often links): reading it through a link is fine."""
    real = write(place, GOOD)
    link = place / "link.toml"
    link.symlink_to(real)
    assert len(load_config(link).libraries) == 2


# Overlaps: each root is one of ROOTS (made as folders) and each out one of OUTS (not made) or the default; all
# relative to `place`.
ROOTS = ["a", "a/b", "a/b/c", "d", "d/e", "f"]
OUTS = ROOTS + ["o", "o/p", "a/o", "a/b/o", "f/o"]


def _inside_or_same(one: str, other: str) -> bool:
    return one == other or one.startswith(other + "/")


@_HYPOTHESIS
@given(st.lists(st.tuples(st.sampled_from(ROOTS), st.sampled_from(OUTS + [None])), min_size=2, max_size=3))
def test_libraries_that_overlap_in_any_direction_are_refused(place, libraries):
    outs = [out if out is not None else f"{root}/photocluster" for root, out in libraries]
    for (root, _), out in zip(libraries, outs):  # each library valid on its own: out is not, nor holds, the root
        if _inside_or_same(root, out):
            return
    for name in ROOTS:
        (place / name).mkdir(parents=True, exist_ok=True)
    text = "".join(f"[[library]]\npath = '{root}'\n" + (f"out = '{out}'\n" if out else "") for root, out in libraries)
    folders = [(root, out) for (root, _), out in zip(libraries, outs)]
    overlapping = {j + 1 for i, j in itertools.combinations(range(len(folders)), 2)
                   if any(_inside_or_same(x, y) or _inside_or_same(y, x) for x in folders[i] for y in folders[j])}
    try:
        config = load_config(write(place, text))
    except ConfigError as error:  # an out that is a non-empty folder of ours may be refused too; only overlaps count
        lines = error.problems
    else:
        assert not overlapping and len(config.libraries) == len(libraries)
        return
    refused = {int(line.split("#")[1].split(":")[0]) for line in lines if "must not overlap" in line}
    assert refused == overlapping, lines


def test_an_overlap_through_a_symlink_is_refused(place):
    (place / "photos" / "sub").mkdir()
    (place / "alias").symlink_to(place / "photos" / "sub")
    lines = problems_of(place, "[[library]]\npath = 'photos'\n[[library]]\npath = 'alias'\n")
    assert len(lines) == 1 and "#2: path" in lines[0] and "[[library]] #1" in lines[0]


@pytest.mark.parametrize("case, fragment", [
    ("[[library]]\npath = 'a'\nout = 'o'\n[[library]]\npath = 'o'\n", "#2: path"),  # the case seen: out at a root
    ("[[library]]\npath = 'a'\nout = 'o'\n[[library]]\npath = 'o/x'\n", "#2: path"),  # a library inside an output
    ("[[library]]\npath = 'a'\n[[library]]\npath = 'a/photocluster/x'\n", "#2: path"),  # inside a default output
    ("[[library]]\npath = 'a'\nout = 'o/1'\n[[library]]\npath = 'b'\nout = 'o'\n", "#2: out"),  # nested outputs
    ("[[library]]\npath = 'a/b'\n[[library]]\npath = 'a'\n", "#2: path"),  # a root inside another
])
def test_the_overlaps_seen_are_refused_in_one_line(place, case, fragment):
    for name in ("a/b", "b", "o/x", "a/photocluster/x"):
        (place / name).mkdir(parents=True, exist_ok=True)
    overlaps = [line for line in problems_of(place, case) if "must not overlap" in line]  # "o" holding "x" is refused too
    assert len(overlaps) == 1 and fragment in overlaps[0], overlaps
