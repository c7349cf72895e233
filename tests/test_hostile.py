"""Hostile and odd inputs (tests/hostile.py) mixed with good photos: the one-shot run and the daemon complete,
cluster the good photos as they would alone, name each bad file once in a warning and never print a traceback.
Also the path rules: what photocluster deletes, where it refuses to write, where its links may point."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from photocluster import layout, pipeline
from photocluster.cache import FingerprintCache
from photocluster.cli import EXIT_USAGE, main
from photocluster.library import printable_path
from photocluster.pipeline import run_once
from photocluster.settings import LibrarySettings, PatternOptions

from .conftest import wait_for
from .hostile import good_photos, make_corpus, race_hooks

REPO = Path(__file__).resolve().parent.parent


def cluster_sets(out: Path) -> list[list[str]]:
    shown = layout.read_layout(out)
    return sorted(sorted(m) for m in shown.clusters.values()) if shown else []


def restricted(clusters: list[list[str]], keep: set[str], min_size: int = 2) -> list[list[str]]:
    """The clusters as seen through `keep` only."""
    seen = (sorted(set(c) & keep) for c in clusters)
    return sorted(c for c in seen if len(c) >= min_size)


def tree_links(out: Path) -> dict[str, str]:
    """Every symlink in the shown cluster tree -> its target text."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(out / "clusters", followlinks=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                found[path] = os.readlink(path)
    return found


def digest_tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p) or not os.path.isfile(p) or f.startswith("IMG_"):
                continue
            with open(p, "rb") as fh:
                out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def clean_clusters(tmp_path_factory):
    """How the good photos cluster in a library of their own."""
    root = tmp_path_factory.mktemp("clean") / "lib"
    good_photos(root)
    mp = pytest.MonkeyPatch()
    from .standin import install

    install(mp)
    try:
        run_once(LibrarySettings(library=root, model="squeezenet", patterns=PatternOptions(enabled=False)))
    finally:
        mp.undo()
    clusters = cluster_sets(root / "photocluster")
    assert len(clusters) == 4 and all(len(c) == 3 for c in clusters)
    return clusters


def check_tree(out: Path, lib: Path, allowed: set[str]) -> None:
    """Every link is relative and leads to an allowed photo inside the library."""
    real_lib = os.path.realpath(lib)
    links = tree_links(out)
    assert links
    for path, target in links.items():
        assert not os.path.isabs(target), (path, target)
        resolved = os.path.realpath(os.path.join(os.path.dirname(path), target))
        assert resolved.startswith(real_lib + "/"), (path, target)
        assert os.path.relpath(resolved, real_lib) in allowed
        assert os.path.isfile(resolved)


def test_one_shot_over_the_hostile_corpus(tmp_path, stand_in, capfd, monkeypatch, clean_clusters):
    lib, outside = tmp_path / "lib", tmp_path / "outside"
    corpus = make_corpus(lib, outside)
    hooks = race_hooks(corpus)
    assert len(corpus.kinds) >= 25, sorted(corpus.kinds)
    before = digest_tree(lib) | digest_tree(outside)

    real_scan = pipeline.scan_library

    def scan_then_race(*a, **k):
        found = real_scan(*a, **k)
        assert "hostile/vanishing.jpg" in found and "hostile/growing.jpg" in found
        hooks["delete"]()
        hooks["finish_writing"]()
        return found

    monkeypatch.setattr(pipeline, "scan_library", scan_then_race)
    status = main([str(lib), "--model", "squeezenet"])  # patterns on: odd names go through the summaries too
    monkeypatch.setattr(pipeline, "scan_library", real_scan)
    out, err = capfd.readouterr()
    assert status == 0, err
    assert "Traceback" not in err and "Traceback" not in out

    for rel in corpus.bad:
        assert err.count(printable_path(rel)) == 1, (rel, err)
    for rel in corpus.odd + corpus.ignored:
        assert printable_path(rel) not in err, (rel, err)
    assert err.count(printable_path("hostile/growing.jpg")) <= 1

    cache = FingerprintCache.load(lib / "photocluster" / "fingerprints.pk")
    assert all(cache.entries[rel].error is None for rel in corpus.good + corpus.odd)
    assert all(cache.entries[rel].error for rel in corpus.bad if rel != "hostile/vanishing.jpg")
    assert not set(corpus.ignored) & set(cache.entries)

    clusters = cluster_sets(lib / "photocluster")
    assert restricted(clusters, set(corpus.good)) == clean_clusters
    check_tree(lib / "photocluster", lib, set(corpus.good + corpus.odd + ["hostile/growing.jpg"]))
    assert digest_tree(outside) == {k: v for k, v in before.items() if k.startswith(str(outside))}
    after = digest_tree(lib)
    assert all(after[p] == d for p, d in before.items() if p in after and "growing" not in p)
    assert not os.path.exists("/tmp/photocluster-pwned") and not (lib / "hostile" / "pwned").exists()

    # The next run reads nothing again and warns of nothing again: failures are remembered.
    stand_in.calls = 0
    status = main([str(lib), "--model", "squeezenet"])
    out, err = capfd.readouterr()
    assert status == 0 and "Traceback" not in err
    assert all(printable_path(rel) not in err for rel in corpus.bad + corpus.odd if "growing" not in rel)
    assert stand_in.calls <= 1  # at most the file that was still growing


def test_daemon_over_the_hostile_corpus(tmp_path, clean_clusters):
    """The real `photocluster watch` process (stand-in model in its worker) over the corpus, then photos dropped in."""
    lib, outside = tmp_path / "lib", tmp_path / "outside"
    corpus = make_corpus(lib, outside, big_folder_entries=2_000)
    out = lib / "photocluster"
    cmd = [sys.executable, "-m", "tests.standin", "watch", str(lib), "--model", "squeezenet", "--no-patterns",
           "--quiet-seconds", "0.2", "--max-delay-seconds", "1", "--settle-seconds", "0.1"]
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            cache_path = out / "fingerprints.pk"
            expected = set(corpus.good + corpus.odd + corpus.bad)

            def cache_complete() -> bool:
                try:
                    return set(FingerprintCache.load(cache_path).entries) >= expected
                except Exception:  # noqa: BLE001 - not written yet, or mid-rename
                    return False

            wait_for(cache_complete, 60, "the daemon's first run over the corpus")
            wait_for(lambda: restricted(cluster_sets(out), set(corpus.good)) == clean_clusters, 20, "clusters")
            # A bad file arriving while it runs is warned about once too.
            (lib / "hostile" / "late-garbage.jpg").write_bytes(b"not a photo")
            wait_for(lambda: "hostile/late-garbage.jpg" in FingerprintCache.load(cache_path).entries, 30, "the late file")
            assert proc.poll() is None, "the daemon died"
        finally:
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(30)
    err = log_path.read_text(errors="replace")
    assert status == 0, err
    assert "Traceback" not in err
    for rel in corpus.bad + ["hostile/late-garbage.jpg"]:
        assert err.count(printable_path(rel)) == 1, (rel, err)
    for rel in corpus.odd + corpus.ignored:
        assert printable_path(rel) not in err, (rel, err)
    check_tree(out, lib, set(corpus.good + corpus.odd))


# --- paths ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where,fragment", [
    ("library", "library itself"),
    ("library-via-symlink", "library itself"),
    ("root", "system or home"),
    ("home", "system or home"),
    ("photos", "folder of photos"),
    ("parent", "contains the library"),
    ("git", "another tool"),
    ("thumbnails", "another tool"),
    ("lightroom", "another tool"),
    ("usr", "system folder"),
])
def test_out_that_could_harm_data_is_refused(tmp_path, stand_in, capsys, where, fragment):
    lib = tmp_path / "lib"
    good_photos(lib, scenes=1, copies=2)
    os.symlink(lib, tmp_path / "lib-link")
    out = {
        "library": lib, "library-via-symlink": tmp_path / "lib-link", "root": Path("/"), "home": Path.home(),
        "photos": lib / "good" / "scene0", "parent": tmp_path, "git": tmp_path / "proj" / ".git" / "pc",
        "thumbnails": tmp_path / ".thumbnails" / "pc", "lightroom": tmp_path / "Cat.lrdata" / "pc",
        "usr": Path("/usr/local/photocluster"),
    }[where]
    status = main([str(lib), "--out", str(out), "--model", "squeezenet"])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "proj").exists() and not (lib / "photocluster").exists()


def test_stale_generation_with_planted_links_is_left_without_following_them(tmp_path, stand_in):
    """Links planted in a stale generation are not ours (its state does not name them): they stay, unfollowed."""
    lib, outside = tmp_path / "lib", tmp_path / "outside"
    good_photos(lib, scenes=2)
    good_photos(outside, scenes=1)
    before = digest_tree(outside)
    out = lib / "photocluster"
    settings = LibrarySettings(library=lib, model="squeezenet", patterns=PatternOptions(enabled=False))
    run_once(settings)
    stale = out / ".clusters-0-1"
    (stale / "cluster_with_9" / "cluster_9").mkdir(parents=True)
    os.symlink(outside / "good", stale / "cluster_with_9" / "cluster_9" / "dir-link")
    os.symlink(outside / "good", stale / "top-link")
    (stale / "user-notes.txt").write_text("mine")
    run_once(LibrarySettings(library=lib, model="squeezenet", sim=0.0, patterns=PatternOptions(enabled=False)))
    assert digest_tree(outside) == before
    assert (stale / "user-notes.txt").read_text() == "mine"  # not ours: kept
    assert os.readlink(stale / "top-link") == str(outside / "good")
    assert os.readlink(stale / "cluster_with_9" / "cluster_9" / "dir-link") == str(outside / "good")


# --- a tampered cache, end to end -----------------------------------------------------------------------------

class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_cache_that_would_run_a_command_is_refused_and_rebuilt(tmp_path, stand_in, capfd, protocol):
    import pickle

    lib = tmp_path / "lib"
    good_photos(lib, scenes=2)
    marker = tmp_path / "pwned"
    out = lib / "photocluster"
    out.mkdir()
    payload = {"format": "photocluster-fingerprints", "version": 1, "paths": [_RunsACommand(marker)]}
    (out / "fingerprints.pk").write_bytes(pickle.dumps(payload, protocol=protocol))
    status = main([str(lib), "--model", "squeezenet", "--no-patterns"])
    err = capfd.readouterr().err
    assert status == 0 and not marker.exists() and "Traceback" not in err
    assert [line for line in err.splitlines() if "refused" in line][0].count("WARNING") == 1
    assert sum("refused" in line for line in err.splitlines()) == 1 and len(cluster_sets(out)) == 2
    assert [p.name for p in out.iterdir() if p.name.startswith("fingerprints.pk.bad-")]  # kept aside, not deleted
    FingerprintCache.load(out / "fingerprints.pk")


def test_a_forged_cache_entry_cannot_make_a_link_outside_the_library(tmp_path, stand_in):
    """A cache that names '../outside/secret.jpg' (with the fingerprint of a real photo) gets no link made to it."""
    import numpy as np

    from photocluster.library import PhotoFile

    lib, outside = tmp_path / "lib", tmp_path / "outside"
    good_photos(lib, scenes=2)
    good_photos(outside, scenes=1)
    settings = LibrarySettings(library=lib, model="squeezenet", patterns=PatternOptions(enabled=False))
    run_once(settings)
    path = lib / "photocluster" / "fingerprints.pk"
    cache = FingerprintCache.load(path)
    vector = cache.vectors(["good/scene0/v0.jpg"])[0]
    for name in ("../../outside/good/scene0/v0.jpg", "/etc/passwd"):
        cache.put(PhotoFile(name, 1, 1), np.asarray(vector), ((281, 0.9),))
    cache.save(path)
    run_once(LibrarySettings(library=lib, model="squeezenet", sim=0.0, patterns=PatternOptions(enabled=False)))
    check_tree(lib / "photocluster", lib, set([
        f"good/scene{g}/v{c}.jpg" for g in range(2) for c in range(3)]))
    assert all(".." not in m and not m.startswith("/") for c in cluster_sets(lib / "photocluster") for m in c)
