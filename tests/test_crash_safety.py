"""Crash safety under SIGKILL, with real processes: scripts/kill_harness.py run for a few dozen iterations.

The harness kills photocluster (the one-shot CLI, and the daemon) at random moments, uniformly over a run and
inside the fingerprinting, the cache save and the layout swap, and after every kill checks that the originals are
byte-identical, clusters/ is the previous or the new complete tree, the cache loads, and the next run gives the
clusters of an uninterrupted run. Any broken invariant raises HarnessFailure with what broke.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS_PATH = Path(__file__).resolve().parent.parent / "scripts" / "kill_harness.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("kill_harness", HARNESS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_harness"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_one_shot_survives_30_sigkills(harness, tmp_path, monkeypatch):
    tried, killed = harness.run_harness(30, seed=30, workdir=tmp_path, monkeypatch=monkeypatch)
    assert sum(tried.values()) == 30
    # Every targeted phase was really reached and killed inside, not just the random moments.
    assert all(killed[phase] == tried[phase] for phase in ("fingerprint", "save", "layout")), (tried, killed)
    assert sum(killed.values()) >= 22


def test_one_shot_killed_in_a_fresh_interpreter(harness, tmp_path, monkeypatch):
    """Two iterations with `python -m tests.standin` children (no fork): the real entry point dies the same way."""
    tried, killed = harness.run_harness(2, seed=4, fork=False, workdir=tmp_path, monkeypatch=monkeypatch,
                                        phases=("save", "layout"))
    assert killed["save"] == 1 and killed["layout"] == 1


def test_daemon_survives_sigkills(harness, tmp_path, monkeypatch):
    tried, killed = harness.run_harness(4, seed=7, daemon=True, workdir=tmp_path, monkeypatch=monkeypatch)
    assert sum(killed.values()) == 4


def test_a_broken_invariant_is_caught(harness, tmp_path, monkeypatch):
    """The harness is not vacuous: a layout swap that tears the tree (links made in place) is reported."""
    from photocluster import layout

    real_build = layout._build_generation

    def torn(generation, library_root, lay):
        real_build(generation, library_root, lay)
        (generation / layout.STATE_FILE).unlink()  # a tree without its state: what a half-built swap looks like

    monkeypatch.setattr(layout, "_build_generation", torn)
    with pytest.raises(harness.HarnessFailure):
        harness.run_harness(1, seed=1, workdir=tmp_path, monkeypatch=monkeypatch)
