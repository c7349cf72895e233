"""openvino_ir: an IR is converted once, stored whole or not at all, checked against its record, and read back."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from photocluster import openvino_ir


@pytest.fixture(autouse=True)
def weights_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOCLUSTER_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path / "weights"


def doubling_model():
    """x -> 2x + 1 on a float32 [1, 3]: small enough to reason about the output."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 3], np.float32, name="x")
    return ov.Model([ops.add(ops.multiply(x, np.float32(2)), np.float32(1))], [x], "doubling")


class Counting:
    def __init__(self, make=doubling_model):
        self.calls, self.make = 0, make

    def __call__(self):
        self.calls += 1
        return self.make()


def run(model, values):
    compiled = openvino_ir.compile_model(model, "f32")
    return compiled([np.array([values], np.float32)])[0][0]


def test_the_first_load_converts_and_stores_later_loads_read_the_ir():
    convert = Counting()
    first = openvino_ir.load_or_convert("doubling", "k1", convert)
    second = openvino_ir.load_or_convert("doubling", "k1", convert)
    assert convert.calls == 1
    assert list(run(first, [0, 1, 2])) == [1, 3, 5]
    assert list(run(second, [0, 1, 2])) == [1, 3, 5]
    folder = openvino_ir.ir_folder("doubling", "k1")
    assert sorted(os.listdir(folder)) == ["ir.json", "model.bin", "model.xml"]


def test_a_new_source_key_or_version_converts_again():
    convert = Counting()
    openvino_ir.load_or_convert("doubling", "k1", convert)
    openvino_ir.load_or_convert("doubling", "k2", convert)
    assert convert.calls == 2
    import openvino

    assert openvino_ir.ir_folder("doubling", "k1").name == f"doubling-k1-ov{openvino.__version__.split('-')[0]}"


def test_a_tampered_ir_is_converted_again(caplog):
    convert = Counting()
    openvino_ir.load_or_convert("doubling", "k1", convert)
    xml = openvino_ir.ir_folder("doubling", "k1") / "model.xml"
    xml.write_text(xml.read_text().replace("doubling", "dubbling"))
    model = openvino_ir.load_or_convert("doubling", "k1", convert)
    assert convert.calls == 2
    assert "does not match its record" in caplog.text
    assert list(run(model, [1, 1, 1])) == [3, 3, 3]


def test_a_save_that_fails_half_way_leaves_no_ir_and_no_temporary_folder(weights_folder, monkeypatch):
    import openvino

    def save_half(model, path, **options):
        with open(path, "w") as handle:
            handle.write("<net")  # the XML begun, then the disk filled up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(openvino, "save_model", save_half)
    with pytest.raises(openvino_ir.IrUnavailable, match="cannot store the OpenVINO model .*No space left"):
        openvino_ir.load_or_convert("doubling", "k1", doubling_model)
    assert not openvino_ir.ir_folder("doubling", "k1").exists()
    assert os.listdir(weights_folder / "openvino") == []


def test_a_killed_conversion_leaves_no_ir_and_the_next_one_clears_its_leftover(weights_folder):
    """A conversion killed while saving: only its temporary folder is left, never a folder under the final name."""
    folder = openvino_ir.ir_folder("doubling", "k1")
    script = ("import os, openvino as ov, photocluster.openvino_ir as ir\n"
              "from tests.test_openvino_ir import doubling_model\n"
              "real = ov.save_model\n"
              "def save_then_die(model, path, **kw):\n"
              "    real(model, path, **kw)\n"
              "    os._exit(9)\n"
              "ov.save_model = save_then_die\n"
              "ir.load_or_convert('doubling', 'k1', doubling_model)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, "-c", script], env=env, cwd=os.path.dirname(os.path.dirname(__file__)),
                          timeout=120).returncode == 9
    leftovers = os.listdir(weights_folder / "openvino")
    assert len(leftovers) == 1 and leftovers[0].startswith(".converting-") and not folder.exists()
    convert = Counting()
    openvino_ir.load_or_convert("doubling", "k1", convert)
    assert convert.calls == 1
    assert os.listdir(weights_folder / "openvino") == [folder.name]


def test_a_conversion_still_running_elsewhere_keeps_its_temporary_folder(weights_folder):
    folder = openvino_ir.ir_folder("doubling", "k1")
    folder.parent.mkdir(parents=True)
    running = folder.parent / f".converting-{folder.name}-{os.getppid()}"  # our parent process: alive
    running.mkdir()
    openvino_ir.load_or_convert("doubling", "k1", Counting())
    assert running.exists()


@pytest.mark.parametrize("stopping", [True, False])
def test_a_stop_signal_while_openvino_starts_is_a_stop_not_a_missing_openvino(monkeypatch, stopping):
    import builtins
    import signal

    from photocluster import interrupts

    real_import = builtins.__import__

    def failing_import(name, *args, **kw):  # what a signal in its native module's start comes out as
        if name == "openvino":
            raise ImportError("initialization failed")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    monkeypatch.setattr(interrupts, "_received", signal.SIGTERM if stopping else None)
    expected = interrupts.Interrupted if stopping else openvino_ir.IrUnavailable
    with pytest.raises(expected):
        openvino_ir._openvino()
