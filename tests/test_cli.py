import json
import os
import subprocess
import sys

import pytest

from photocluster.cli import EXIT_OUTPUT, EXIT_USAGE, main

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


def test_help_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "photocluster", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for option in ["--sim", "--min-size", "--model", "--weights", "--out", "--cut", "--batch-size", "--dry-run",
                   "--json", "--verbose", "--quiet", "Exit status"]:
        assert option in done.stdout
