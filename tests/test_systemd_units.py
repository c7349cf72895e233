"""The shipped systemd units pass `systemd-analyze verify` and carry the settings the service relies on.

The units name the installed program (/opt/photocluster/venv/bin/photocluster, ~/.local/bin/photocluster), which
a test machine does not have, and verify refuses a unit whose ExecStart is missing. So each unit is verified as a
copy whose program path points at a stand-in executable; nothing else in it changes.
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
SYSTEM_PROGRAM = "/opt/photocluster/venv/bin/photocluster"
USER_PROGRAM = "%h/.local/bin/photocluster"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: install Debian's systemd package (scripts/install.sh --test does)"
    return found


def verify(tmp_path: Path, unit: Path, user: bool, name: str | None = None) -> str:
    program = tmp_path / "photocluster"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    text = unit.read_text().replace(USER_PROGRAM if user else SYSTEM_PROGRAM, str(program))
    (tmp_path / unit.name).write_text(text)
    copy = tmp_path / (name or unit.name)  # an instance name: systemd finds the template beside it
    env = dict(os.environ)
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    command = [systemd_analyze()] + (["--user"] if user else []) + ["verify", str(copy)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # verify exits 0 on unknown keys and bad values; it only warns. A warning about our unit is a failure.
    ours = [line for line in output.splitlines() if copy.name in line or unit.name in line]
    assert ours == [], "\n".join(ours)
    return output


def directives(unit: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(unit)
    return parser


def test_system_unit_verifies(tmp_path):
    verify(tmp_path, UNITS / "photocluster.service", user=False)


def test_template_unit_verifies_as_an_instance(tmp_path):
    verify(tmp_path, UNITS / "photocluster@.service", user=False, name="photocluster@srv-photos-family.service")


def test_user_unit_verifies(tmp_path):
    verify(tmp_path, UNITS / "user" / "photocluster.service", user=True)


def test_a_broken_unit_is_caught(tmp_path):
    broken = tmp_path / "src" / "photocluster.service"
    broken.parent.mkdir()
    broken.write_text((UNITS / "photocluster.service").read_text().replace("Nice=10", "Nice=very"))
    with pytest.raises(AssertionError, match="nice"):
        verify(tmp_path, broken, user=False)


@pytest.mark.parametrize("unit", ["photocluster.service", "photocluster@.service", "user/photocluster.service"])
def test_units_are_notify_services_at_low_priority_and_hardened(unit):
    service = directives(UNITS / unit)["Service"]
    assert service["Type"] == "notify"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Nice"] == "10" and service["IOSchedulingClass"] == "idle"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes" and service["ProtectHome"] == "read-only"
    assert service["KillMode"] == "mixed" and "WatchdogSec" in service
    assert service["RestartPreventExitStatus"] == "2"  # a bad config is not retried forever


def test_each_unit_writes_only_where_its_output_goes():
    system = directives(UNITS / "photocluster.service")["Service"]
    assert system["User"] == "photocluster" and system["StateDirectory"] == "photocluster"
    assert system["ReadWritePaths"] == "/var/lib/photocluster"
    assert system["ExecStart"] == f"{SYSTEM_PROGRAM} watch --config /etc/photocluster/config.toml"
    template = directives(UNITS / "photocluster@.service")["Service"]
    assert template["User"] == "photocluster"
    assert template["ExecStart"] == f"{SYSTEM_PROGRAM} watch $PHOTOCLUSTER_OPTIONS %f"
    assert template["ReadWritePaths"] == "%f/photocluster"
    user = directives(UNITS / "user" / "photocluster.service")["Service"]
    assert user["ExecStart"] == f"{USER_PROGRAM} watch --model squeezenet %h/Pictures"
    assert user["ReadWritePaths"] == "%h/Pictures/photocluster"


def test_user_unit_agrees_with_the_readme_and_runs_offline_after_fetch_weights(tmp_path, squeezenet_weights):
    """The README's steps for the user unit fetch one model's weights and the detector's; the unit must run that
    model, and its settings must pass `watch --check` with nothing but those weights on the machine."""
    import re
    import sys

    readme = (UNITS.parent / "README.rst").read_text()
    steps = readme.split("**Your own ~/Pictures**")[1].split("Large libraries")[0]
    fetched = re.findall(r"photocluster fetch-weights (\w+)", steps)
    command = directives(UNITS / "user" / "photocluster.service")["Service"]["ExecStart"].split()
    assert command[:2] == [USER_PROGRAM, "watch"]
    model = command[command.index("--model") + 1] if "--model" in command else "vgg16"  # watch's default
    assert fetched == [model, "centernet"]
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    weights_dir = tmp_path / "weights"  # as after the two fetch-weights, and nothing else
    weights_dir.mkdir()
    shutil.copy(squeezenet_weights, weights_dir)
    from photocluster import weights

    shutil.copytree(weights.fetch_weights("centernet"), weights_dir / weights.CENTERNET.folder)
    env = {**os.environ, "PHOTOCLUSTER_WEIGHTS_DIR": str(weights_dir), "KERAS_HOME": str(tmp_path / "keras")}
    args = [arg.replace("%h", str(home)) for arg in command[2:]]
    result = subprocess.run([sys.executable, "-m", "photocluster", "watch", "--check", *args], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
