"""The output folder remembers the library's settings (issue 10, point 4): a run without --model uses the model of
the last run, a change of model takes an explicit --model and says what it recomputes, and no command deletes
output because a setting differs."""
import json
from dataclasses import replace

import pytest

from photocluster import models
from photocluster.cli import EXIT_USAGE
from photocluster.config import load_config

from .standin import install as install_stand_in
from .test_cli import one_line_error, run_cli
from .test_pipeline import make_library


@pytest.fixture
def two_models(monkeypatch):
    """The stand-in model under each real model's name, with each model's own model_id as real fingerprints have,
    so that a run with the wrong model shows (the plain stand_in fixture gives every name one id)."""
    model = install_stand_in(monkeypatch)
    stand_in_spec = models.model_spec("squeezenet")

    def spec(name, weights=None):
        models.calibration(name)  # an unknown name fails as it does for real
        return replace(stand_in_spec, name=name, model_id=f"{models._ARCHITECTURES[name].id_prefix}/imagenet")

    monkeypatch.setattr(models, "model_spec", spec)
    return model


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_run_without_model_uses_the_recorded_model(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib")
    assert run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")[0] == 0
    record = json.loads((lib / "photocluster" / "last-run.json").read_text())
    assert record["version"] == 1 and record["model"] == "squeezenet" and record["sim"] == 0.5
    two_models.calls = 0
    status, out, _ = run_cli(capsys, lib, "--no-patterns", "--json")
    assert status == 0 and json.loads(out)["model"] == "squeezenet"
    assert two_models.calls == 0  # not one fingerprint thrown away


def test_changing_the_model_takes_an_explicit_flag_and_says_what_it_recomputes(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib")
    assert run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")[0] == 0
    two_models.calls = 0
    status, _, err = run_cli(capsys, lib, "--model", "vgg16", "--no-patterns")
    assert status == 0 and two_models.calls == 12
    assert "12 fingerprints made by squeezenet-fire9/imagenet will be recomputed with vgg16-fc2/imagenet" in err, err
    two_models.calls = 0
    assert run_cli(capsys, lib, "--no-patterns")[0] == 0 and two_models.calls == 0  # vgg16 is recorded now


def test_an_output_made_before_the_record_existed_keeps_the_caches_model(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib")
    assert run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")[0] == 0
    (lib / "photocluster" / "last-run.json").unlink(missing_ok=True)
    two_models.calls = 0
    assert run_cli(capsys, lib, "--no-patterns")[0] == 0 and two_models.calls == 0


def test_the_recorded_weights_file_comes_with_the_recorded_model(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    weights = tmp_path / "my-weights.h5"
    weights.write_bytes(b"weights")
    assert run_cli(capsys, lib, "--model", "squeezenet", "--weights", weights, "--no-patterns")[0] == 0
    status, out, _ = run_cli(capsys, lib, "--no-patterns", "--json")
    assert status == 0 and json.loads(out)["weights"] == str(weights)
    weights.unlink()
    status, _, err = run_cli(capsys, lib, "--no-patterns")
    assert status == EXIT_USAGE and one_line_error(err) and str(weights) in err and "--weights" in err, err


def test_a_config_library_without_model_uses_the_recorded_model(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib", groups=1, singles=0)
    config = tmp_path / "config.toml"
    config.write_text(f'[[library]]\npath = "{lib}"\n')
    assert load_config(config).libraries[0].model == "vgg16"  # nothing recorded yet: the default
    assert run_cli(capsys, lib, "--model", "squeezenet", "--no-patterns")[0] == 0
    assert load_config(config).libraries[0].model == "squeezenet"
    config.write_text(f'[[library]]\npath = "{lib}"\nmodel = "vgg16"\n')
    assert load_config(config).libraries[0].model == "vgg16"  # an explicit model wins


def test_patterns_without_model_uses_the_caches_model(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib")
    assert run_cli(capsys, lib, "--model", "squeezenet")[0] == 0
    summaries = tree(lib / "photocluster" / "patterns")
    assert "trip0/summary.md" in summaries
    (lib / "photocluster" / "last-run.json").unlink(missing_ok=True)  # the cache alone says which model made it
    status, out, err = run_cli(capsys, "patterns", lib, "--labels", "fine")
    assert status == 0, err
    assert tree(lib / "photocluster" / "patterns") == summaries
    assert "tabby" in (lib / "photocluster" / "patterns" / "trip0" / "summary.md").read_text()  # fine labels


def test_patterns_with_another_model_refuses_and_deletes_nothing(tmp_path, two_models, capsys):
    lib = make_library(tmp_path / "lib")
    assert run_cli(capsys, lib, "--model", "squeezenet")[0] == 0
    out_dir = lib / "photocluster"
    before = {p: p.read_bytes() for p in (out_dir / "patterns").rglob("*") if p.is_file()}
    status, _, err = run_cli(capsys, "patterns", lib, "--model", "vgg16")
    assert status == EXIT_USAGE and one_line_error(err) and "squeezenet" in err, err
    assert {p: p.read_bytes() for p in (out_dir / "patterns").rglob("*") if p.is_file()} == before
