import json
import os
import subprocess
import sys

import pytest

from photocluster.cli import EXIT_OUTPUT, EXIT_USAGE, main

from .conftest import save, scene
from .test_pipeline import make_library


def run_cli(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err):
    errors = [line for line in err.splitlines() if line.startswith("photocluster: error:")]
    return len(errors) == 1 and "Traceback" not in err


def test_run_prints_imagecluster_summary(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")
    status, out, _ = run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")
    assert status == 0
    assert "cluster size : ncluster" in out and "           3 : 3" in out
    assert "3 clusters" in out


def test_json_output(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")
    status, out, _ = run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns", "--json")
    data = json.loads(out)
    assert status == 0 and data["photos"] == 12 and data["fingerprinted"] == 12 and len(data["clusters"]) == 3


@pytest.mark.parametrize("args,fragment", [
    (["{missing}"], "does not exist"),
    (["{lib}", "--sim", "1.5"], "sim must be between 0 and 1"),
    (["{lib}", "--sim", "abc"], "--sim must be a float"),
    (["{lib}", "--min-size", "0"], "min_size must be at least 1"),
    (["{lib}", "--min-size", "2.5"], "--min-size must be a int"),
    (["{lib}", "--batch-size", "0"], "batch_size"),
    (["{lib}", "--cut", "7"], "cut"),
    (["{lib}", "--model", "resnet"], "invalid choice"),
    (["{lib}", "--weights", "{missing}"], "weights file"),
    (["{lib}", "--threshold", "0"], "threshold"),
    (["{lib}", "--min-support", "-1"], "min_support"),
    (["{lib}", "--min-support", "2.5"], "min_support"),
    (["{lib}", "--labels", "medium"], "invalid choice"),
    (["{lib}", "--labels"], "expected one argument"),
    (["{lib}", "--sim", "nan"], "sim must be between 0 and 1"),
    (["{lib}", "--sim", "inf"], "sim must be between 0 and 1"),
    (["{lib}", "--sim="], "--sim must be a float"),
    (["{lib}", "--cut", "nan"], "cut"),
    (["{lib}", "--cut", "x"], "--cut must be a float"),
    (["{lib}", "--min-size", "-1"], "min_size must be at least 1"),
    (["{lib}", "--verify", "maybe"], "argument --verify: invalid choice: 'maybe'"),
    (["{lib}", "--verify"], "argument --verify: expected one argument"),
    (["{lib}", "--burst-seconds", "-1"], "burst_seconds must be a number of seconds from 0 (off) to 3600, got -1"),
    (["{lib}", "--burst-seconds", "3601"], "burst_seconds must be a number of seconds"),
    (["{lib}", "--burst-seconds", "nan"], "burst_seconds must be a number of seconds"),
    (["{lib}", "--burst-seconds", "inf"], "burst_seconds must be a number of seconds"),
    (["{lib}", "--burst-seconds", "soon"], "--burst-seconds must be a float"),
    (["{lib}", "--time-weight", "1"], "time_weight must be from 0 (off) up to but not including 1, got 1"),
    (["{lib}", "--time-weight", "-0.1"], "time_weight must be from 0"),
    (["{lib}", "--time-weight", "nan"], "time_weight must be from 0"),
    (["{lib}", "--time-weight", "half"], "--time-weight must be a float"),
    (["{lib}", "--batch-size", "5000"], "batch_size must be between 1 and 1024"),
    (["{lib}", "--batch-size", "abc"], "--batch-size must be a int"),
    (["{lib}", "--threshold", "1.5"], "threshold"),
    (["{lib}", "--threshold", "x"], "--threshold must be a float"),
    (["{lib}", "--min-support", "abc"], "min_support"),
    (["{lib}", "--min-support", "0"], "min_support"),
    (["{lib}", "--min-support", "150%"], "min_support"),
    (["{lib}", "--weights", "{tmp}"], "weights file"),
    (["{lib}", "--out"], "expected one argument"),
    (["patterns", "{lib}", "--threshold", "7"], "threshold"),
    (["patterns", "{lib}", "--labels", "x"], "invalid choice"),
    (["{lib}", "--objects", "yolo"], "argument --objects: invalid choice: 'yolo'"),
    (["patterns", "{lib}", "--objects", "x"], "argument --objects: invalid choice: 'x'"),
    (["fetch-weights", "resnet"], "invalid choice"),
    (["{lib}", "--model"], "expected one argument"),
    (["{lib}", "--out", "{lib}"], "library itself"),
    (["{lib}", "--out", "/"], "system or home"),
    (["{lib}", "--out", "/etc/photocluster"], "system folder"),
    (["{lib}", "--out", "{lib}/trip0"], "folder of photos"),
    (["{lib}", "--out", "{tmp}"], "contains the library"),
    (["{lib}", "--out", "{tmp}/repo/.git/out"], "another tool"),
    (["{lib}", "--bogus"], "unrecognized arguments"),
    ([], "required"),
])
def test_bad_usage_is_one_line_and_exit_2(tmp_path, stand_in, capsys, args, fragment):
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    args = [a.format(lib=lib, missing=tmp_path / "missing", tmp=tmp_path) for a in args]
    status, _, err = run_cli(capsys, *args)
    assert status == EXIT_USAGE and one_line_error(err) and fragment in err, err


@pytest.mark.parametrize("command", ["run", "watch"])
@pytest.mark.parametrize("flags, expected", [
    ([], (True, 5.0, 0.0)),
    (["--verify", "off", "--burst-seconds", "2.5", "--time-weight", "0.3"], (False, 2.5, 0.3)),
    (["--verify", "on", "--burst-seconds", "0", "--time-weight", "0.99"], (True, 0.0, 0.99)),
    (["--burst-seconds", "3600", "--time-weight", "0"], (True, 3600.0, 0.0)),
])
def test_verify_burst_and_time_weight_reach_the_settings(tmp_path, command, flags, expected):
    from photocluster.cli import build_run_parser, build_watch_parser, settings_from_args

    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    build = build_run_parser if command == "run" else build_watch_parser
    settings = settings_from_args(build().parse_args([str(lib), "--model", "squeezenet", *flags]), lib)
    assert (settings.verify, settings.burst_seconds, settings.time_weight) == expected


@pytest.mark.parametrize("command", ["run", "watch"])
@pytest.mark.parametrize("flags, expected", [([], "both"), (["--objects", "imagenet"], "imagenet"),
                                             (["--objects", "detector"], "detector")])
def test_objects_reach_the_settings(tmp_path, command, flags, expected):
    from photocluster.cli import build_run_parser, build_watch_parser, settings_from_args

    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    build = build_run_parser if command == "run" else build_watch_parser
    settings = settings_from_args(build().parse_args([str(lib), "--model", "squeezenet", *flags]), lib)
    assert settings.patterns.objects == expected


@pytest.mark.parametrize("flags, fragment", [
    (["--verify", "maybe"], "argument --verify: invalid choice"),
    (["--burst-seconds", "-5"], "burst_seconds must be a number of seconds"),
    (["--time-weight", "1.5"], "time_weight must be from 0"),
])
def test_watch_refuses_bad_verify_burst_and_time_weight(tmp_path, capsys, flags, fragment):
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    status, _, err = run_cli(capsys, "watch", "--check", lib, *flags)
    assert status == EXIT_USAGE and one_line_error(err) and fragment in err, err


def test_output_on_a_file_is_one_line_and_exit_3(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    (tmp_path / "afile").write_text("x")
    status, _, err = run_cli(capsys, lib, "--out", tmp_path / "afile" / "out", "--no-patterns")
    assert status == EXIT_OUTPUT and one_line_error(err), err


def test_vgg16_without_weights_exits_2_with_a_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached download; the network is off here
    monkeypatch.delenv("PHOTOCLUSTER_WEIGHTS", raising=False)
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    status, _, err = run_cli(capsys, lib, "--model", "vgg16", "--no-patterns")
    assert status == EXIT_USAGE and one_line_error(err) and "weights" in err


@pytest.mark.parametrize("objects, status", [("both", EXIT_USAGE), ("detector", EXIT_USAGE), ("imagenet", 0)])
def test_the_detector_without_weights_exits_2_unless_imagenet_objects_only(tmp_path, capsys, monkeypatch,
                                                                           objects, status):
    """The stand-in model fingerprints; the detector is the real loader, with its weights folder empty."""
    from photocluster import inprocess
    from photocluster.detector import load_detector

    from .standin import install

    install(monkeypatch)
    monkeypatch.setattr(inprocess, "load_detector", lambda runtime="openvino": load_detector(runtime=runtime))
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(tmp_path / "empty"))
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    got, _, err = run_cli(capsys, lib, "--objects", objects)
    assert got == status, err
    if status:
        assert one_line_error(err) and "fetch-weights centernet" in err, err


def test_help_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "photocluster", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for option in ["--sim", "--min-size", "--verify", "--burst-seconds", "--time-weight",
                   "--model", "--weights", "--out", "--cut", "--batch-size", "--dry-run",
                   "--json", "--verbose", "--quiet", "Exit status"]:
        assert option in done.stdout


# --- what was not grouped (issue 10, point 3) ----------------------------------------------------------------

def test_summary_says_how_many_photos_are_in_clusters_and_in_none(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")  # 3 scenes of 3 variants each, and 3 unrelated single photos
    status, out, _ = run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")
    assert status == 0 and "9 photos in clusters, 3 in none" in out, out


def test_json_lists_the_photos_in_no_cluster_with_model_cut_and_output(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")
    status, out, _ = run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns", "--json")
    data = json.loads(out)
    assert status == 0
    assert data["unclustered"] == ["misc/single0.png", "misc/single1.png", "misc/single2.png"]
    assert data["in_clusters"] == 9
    # the stand-in's calibration table maps sim 0.5 to the cosine cut 0.9
    assert data["model"] == "squeezenet" and data["sim"] == 0.5 and data["cut"] == 0.9
    assert data["out"] == str(lib / "photocluster")


@pytest.mark.parametrize("contents", [[], ["notes.txt", "sub/readme.md", "sub/deeper/.hidden.jpg"]])
@pytest.mark.parametrize("extra", [[], ["--dry-run"], ["--json"]])
def test_a_library_without_photos_says_so_writes_nothing_and_exits_0(tmp_path, stand_in, capsys, contents, extra):
    lib = tmp_path / "lib"
    lib.mkdir()
    for rel in contents:
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_text("not a photo")
    before = sorted(p.relative_to(lib) for p in lib.rglob("*"))
    status, out, err = run_cli(capsys, lib, "--model", "squeezenet", *extra)
    assert status == 0, err
    assert sorted(p.relative_to(lib) for p in lib.rglob("*")) == before  # no output folder, nothing at all
    if "--json" in extra:
        assert json.loads(out)["photos"] == 0
    else:
        assert out == f"no photos found in {lib}\n"


# --- smaller things (issue 10, point 7) ----------------------------------------------------------------------

def test_dry_run_without_a_cache_says_what_it_cannot_know(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")
    status, out, _ = run_cli(capsys, lib, "--model", "squeezenet", "--dry-run")
    assert status == 0
    assert ("12 photos would be fingerprinted (no speed measured on this machine yet); "
            "clusters are known after that") in out, out
    assert "clusters would be written" not in out


def test_dry_run_estimates_the_time_from_the_last_measured_speed(tmp_path, stand_in, capsys):
    lib = make_library(tmp_path / "lib")
    assert run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")[0] == 0
    record = lib / "photocluster" / "last-run.json"
    data = json.loads(record.read_text())
    data["images_per_second"] = 0.05  # as slow as VGG16 on a small NAS
    record.write_text(json.dumps(data))
    for i in range(6):
        save(scene(200 + i), lib / "new" / f"n{i}.jpg")
    status, out, _ = run_cli(capsys, lib, "--dry-run")
    # 6 photos at 0.05 photos/s take 120 seconds
    assert status == 0 and ("6 photos would be fingerprinted (about 2 minutes at the speed measured on this "
                            "machine); clusters are known after that") in out, out


def test_a_read_only_library_without_out_says_use_out(tmp_path, stand_in, capsys):
    from .test_disk_full import mount, mounted

    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    with mounted(lib, "--bind", str(lib)) as bound:
        if bound:
            assert mount("-o", "remount,ro,bind", str(lib)), "read-only remount failed"
        else:  # unprivileged: chmod works for a non-root user (root would ignore it)
            assert os.geteuid() != 0, "bind mount failed although running as root"
            os.chmod(lib, 0o555)
        try:
            status, _, err = run_cli(capsys, lib, "--model", "squeezenet")
        finally:
            os.chmod(lib, 0o755) if not bound else None
    assert status == EXIT_OUTPUT and one_line_error(err), err
    assert "the library is read-only" in err and "use --out DIR" in err, err


def test_watch_without_a_config_names_every_place_it_looked(tmp_path, capsys, monkeypatch):
    from photocluster import config

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "config.toml")
    status, _, err = run_cli(capsys, "watch")
    assert status == EXIT_USAGE and one_line_error(err), err
    assert str(tmp_path / "home-config" / "photocluster" / "config.toml") in err
    assert str(tmp_path / "etc" / "config.toml") in err


def test_counts_of_one_are_singular(tmp_path, stand_in, capsys):
    lib = tmp_path / "lib"
    save(scene(1), lib / "only.jpg")
    status, out, _ = run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns", "--min-size", "1")
    assert status == 0 and out.startswith("1 photo: 1 fingerprinted") and "1 cluster at" in out, out
    assert "1 photo in clusters, 0 in none" in out, out
    status, out, _ = run_cli(capsys, "watch", "--check", lib, "--model", "squeezenet")
    assert status == 0 and f"OK, 1 library: {lib}" in out, out


def test_every_watch_timing_option_has_help():
    from dataclasses import fields

    from photocluster.config import DaemonTimings
    from photocluster.cli import build_watch_parser

    helps = {action.dest: action.help for action in build_watch_parser()._actions}
    assert {f.name for f in fields(DaemonTimings)} <= helps.keys()
    assert all(helps[f.name] for f in fields(DaemonTimings)), helps


def test_a_reader_that_stops_early_ends_the_run_quietly(tmp_path):
    """`photocluster LIB --json | head`: head exits before the JSON is written; no error line, exit 0."""
    from pathlib import Path

    lib = tmp_path / "lib"
    for i in range(3):
        save(scene(i), lib / f"p{i}.jpg")
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen([sys.executable, "-m", "tests.standin", str(lib), "--model", "squeezenet", "--json"],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0 and "error" not in err and "Traceback" not in err
    assert (lib / "photocluster" / "clusters").is_symlink()  # the run itself was done


# --- start-up: nothing heavy before the run knows there is work (issue 15, point 3) --------------------------------

def test_a_run_with_nothing_new_imports_neither_tensorflow_nor_openvino(tmp_path, squeezenet_weights):
    """The first run fingerprints (so it loads OpenVINO, which the wrapper must see); the second finds every photo
    in the cache and must import no model runtime at all."""
    from pathlib import Path

    lib = make_library(tmp_path / "lib", groups=1, copies=2, singles=1)
    repo = Path(__file__).resolve().parent.parent
    code = ("import sys; from photocluster.cli import main; status = main(sys.argv[1:]); "
            "print('loaded:', *sorted(m for m in ('tensorflow', 'keras', 'openvino') if m in sys.modules)); "
            "sys.exit(status)")
    args = [str(lib), "--model", "squeezenet", "--objects", "imagenet", "--out", str(tmp_path / "out"), "--json"]

    def run() -> tuple[dict, list[str]]:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                              cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)))
        assert done.returncode == 0, done.stderr
        report, _, loaded = done.stdout.rpartition("loaded:")
        return json.loads(report), loaded.split()

    first, first_loaded = run()
    assert first["fingerprinted"] == 3 and "openvino" in first_loaded  # the default runtime did the work
    second, second_loaded = run()
    assert second["fingerprinted"] == 0 and second["photos"] == 3
    assert second_loaded == []
