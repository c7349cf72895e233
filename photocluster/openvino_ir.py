"""Models on OpenVINO: converted once (with TensorFlow) to OpenVINO IR, stored in the weights folder, and from then on
loaded and run with OpenVINO alone, without importing TensorFlow.

    <weights folder>/openvino/<name>-<source key>-ov<OpenVINO version>/model.xml, model.bin, ir.json

The folder name holds what the IR was made from (a key of the source weights and of the conversion code) and the
OpenVINO version that made it, so a new version or new weights convert again instead of reading a stale IR.
ir.json records the SHA-256 of both IR files; an IR that does not match it (a torn copy, a tampered file) is
converted again. The IR is written into a temporary folder beside its final one and renamed into place, so a killed
conversion leaves no half IR under the final name, only a temporary folder that the next conversion clears.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import interrupts
from .fsutil import fsync_dir
from .weights import file_digests, weights_dir

log = logging.getLogger(__name__)

IR_FILES = ("model.xml", "model.bin")
RECORD = "ir.json"
_TEMPORARY = ".converting-"


class IrUnavailable(RuntimeError):
    """OpenVINO is missing, or a model cannot be converted or read. The message is one line."""


def ir_folder(name: str, source_key: str) -> Path:
    """Where the IR of model `name` made from `source_key` by this OpenVINO version lives."""
    return weights_dir() / "openvino" / f"{name}-{source_key}-ov{_openvino().__version__.split('-')[0]}"


def load_or_convert(name: str, source_key: str, convert: Callable[[], Any]) -> Any:
    """The stored IR of `name` read as an openvino.Model; converted first with `convert()` (which returns an
    openvino.Model and may import TensorFlow) when there is none, or none that matches its record."""
    folder = ir_folder(name, source_key)
    model = _read_checked(folder)
    if model is None:
        converted = convert()
        try:
            _store(converted, folder)
        except OSError as error:
            raise IrUnavailable(f"cannot store the OpenVINO model in {folder}: {error}") from None
        model = _read_checked(folder)
        if model is None:
            raise IrUnavailable(f"cannot read back the OpenVINO model just stored in {folder}")
    return model


def compile_model(model: Any, precision: str, throughput: bool = False) -> Any:
    """`model` compiled for the CPU at `precision` ("f32" or "bf16"): OpenVINO's default on a CPU with bf16
    support is bf16, so the precision is always stated. `throughput`: several streams, each on part of the
    cores, for many small requests run at once (AsyncInferQueue) rather than one request on every core."""
    config = {"INFERENCE_PRECISION_HINT": precision}
    if throughput:
        config["PERFORMANCE_HINT"] = "THROUGHPUT"
    return _openvino().Core().compile_model(model, "CPU", config)


def best_precision() -> str:
    """bf16 where the CPU computes it natively (AVX512_BF16 or AMX: OpenVINO lists BF16 among its capabilities),
    else f32. Measured here (AMX): VGG16 runs about 5 times faster in bf16 than in f32."""
    capabilities = _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "f32"


def _read_checked(folder: Path) -> Any | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        for file in IR_FILES:
            if file_digests(folder / file, "sha256")["sha256"] != record[file]:
                log.warning("the OpenVINO model in %s does not match its record; converting it again", folder)
                return None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("cannot read the OpenVINO model in %s (%s); converting it again", folder, error)
        return None
    try:
        return _openvino().Core().read_model(str(folder / "model.xml"))
    except RuntimeError as error:
        log.warning("OpenVINO cannot read %s (%s); converting it again", folder, " ".join(str(error).split())[:200])
        return None


def _store(model: Any, folder: Path) -> None:
    """Save `model` as IR into `folder`, whole or not at all (see the module's docstring)."""
    ov = _openvino()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(folder)
    temporary = folder.parent / f"{_TEMPORARY}{folder.name}-{os.getpid()}"
    temporary.mkdir()
    try:
        # compress_to_fp16=False: the stored weights stay float32; the precision is chosen when compiling.
        ov.save_model(model, str(temporary / "model.xml"), compress_to_fp16=False)
        record = {file: file_digests(temporary / file, "sha256")["sha256"] for file in IR_FILES}
        (temporary / RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
        for file in (*IR_FILES, RECORD):
            with open(temporary / file, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(temporary)
        if folder.exists():
            if _read_checked(folder) is not None:  # another process converted it meanwhile
                shutil.rmtree(temporary)
                return
            shutil.rmtree(folder)  # a bad IR (its record did not match): ours to replace
        os.rename(temporary, folder)
        fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    log.info("stored the OpenVINO model in %s", folder)


def _clear_leftovers(folder: Path) -> None:
    """Remove the temporary folders that killed conversions of this model left (ours: the name says so; the
    suffix is the converting process, so a conversion still running elsewhere keeps its folder)."""
    for leftover in folder.parent.glob(f"{_TEMPORARY}{folder.name}-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _is_running(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        # A stop signal while its native module starts comes out as ImportError("initialization failed")
        interrupts.raise_if_stopped()
        raise IrUnavailable(f"OpenVINO is not installed ({error}); reinstall photocluster") from None
    return openvino
