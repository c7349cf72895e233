#!/usr/bin/env python3
"""Crash safety under SIGKILL: kill photocluster at random moments and check that nothing is lost.

Each iteration changes the library (photos moved in or out by the harness, another --sim, sometimes a deleted
cache), starts a photocluster run (the one-shot CLI, or `photocluster watch`) with the fast stand-in model, and
SIGKILLs it at a random moment: uniformly over the whole run, or inside the fingerprinting, the cache save or
the cluster tree build and swap (the child slows those steps down and says when it enters them; see
tests/standin.py). After every kill it checks:

  * every original photo is byte-identical (sha256), and no file of the library was added, moved or removed;
  * clusters/ is the previous complete tree or the new complete tree: every link of the cluster tree matches its
    layout state, is relative, and leads to a photo inside the library;
  * the cache loads (it is written atomically, so it must never be torn);
  * the next, uninterrupted run completes, and gives the same clusters as an uninterrupted run from scratch;
  * nothing photocluster did not make changed, byte for byte: before the kills the library and the output folder
    are seeded with foreign files and with symlinks to files and folders outside (which hold files named like
    photocluster's own), and after every kill and every re-run the sha256 of every regular file and the target of
    every symlink outside <out>, and of each foreign entry inside it, must be as they were.

    python scripts/kill_harness.py --iterations 500            # the one-shot CLI
    python scripts/kill_harness.py --iterations 50 --daemon    # photocluster watch

It prints one result line: `kill harness: N iterations (K killed: ...), 0 failures, data lost: none, foreign
entries unchanged: F`.

    python scripts/kill_harness.py --work-lost                 # work lost per kill, CLI and daemon

stops a first run of 40 photos with SIGINT, SIGTERM and SIGKILL after a known number of photos, and prints how
many the next run recomputes against how many were done before the signal (see stop_first_run).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import queue
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PHASES = ("random", "fingerprint", "save", "layout")
DELAY = {"fingerprint": 0.03, "save": 0.3, "layout": 0.3}  # seconds each slowed step takes in the child
SIMS = (0.5, 0.8, 0.0)


class HarnessFailure(AssertionError):
    """An invariant broke: data lost, a torn tree or cache, or a run that did not recover."""


@dataclass
class Outcome:
    phase: str
    killed: bool
    seconds: float


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# --- the library under test ------------------------------------------------------------------------------------

class World:
    """A library of ~24-30 generated photos, a stash of photos moved in and out, and an output folder."""

    def __init__(self, root: Path, scenes: int = 6, stash_scenes: int = 2, copies: int = 3):
        from tests.conftest import save, scene

        self.root, self.lib, self.stash, self.out = root, root / "lib", root / "stash", root / "out"
        self.digests: dict[str, str] = {}  # photo name (relative to lib) -> sha256, wherever it is now
        for g in range(scenes + stash_scenes):
            img = scene(g)
            home = self.lib if g < scenes else self.stash
            for c in range(copies):
                rel = f"scene{g}/copy{c}.jpg"
                save(img.resize((120 + 30 * c, 90 + 20 * c)), home / rel, quality=70 + 10 * c)
                self.digests[rel] = sha256(home / rel)
        self.stash_groups = [f"scene{g}" for g in range(scenes, scenes + stash_scenes)]
        self.present: frozenset[str] = frozenset()
        self.sim = SIMS[0]
        self.references: dict[tuple, list[list[str]]] = {}
        self.foreign: ForeignEntries | None = None  # seeded by run_harness once the output is photocluster's

    @property
    def variant(self) -> tuple:
        return (self.present, self.sim)

    def change(self, rng: random.Random) -> None:
        """Move a stash scene in or out (as a user would) and maybe pick another --sim."""
        group = rng.choice(self.stash_groups)
        src, dst = (self.lib, self.stash) if group in self.present else (self.stash, self.lib)
        os.rename(src / group, dst / group)
        self.present = self.present ^ {group}
        if rng.random() < 0.5:
            self.sim = rng.choice([s for s in SIMS if s != self.sim])

    def check_originals(self) -> None:
        found = {}
        for home in (self.lib, self.stash):
            for dirpath, dirnames, files in os.walk(home):
                for f in files:
                    if f.startswith(FOREIGN_PREFIX):  # the user's own entries: checked by ForeignEntries
                        continue
                    p = Path(dirpath) / f
                    found[str(p.relative_to(home))] = sha256(p)
        if found != self.digests:
            lost = sorted(set(self.digests) - set(found))
            changed = sorted(r for r in found if self.digests.get(r) != found[r])
            raise HarnessFailure(f"originals changed: lost {lost}, changed or new {changed}")

    def settings(self, out: Path | None = None):
        from photocluster.settings import LibrarySettings, PatternOptions

        return LibrarySettings(library=self.lib, out=out or self.out, model="squeezenet", sim=self.sim,
                               batch_size=4, patterns=PatternOptions(enabled=False))

    def reference(self) -> list[list[str]]:
        """The clusters of an uninterrupted run from scratch (in a fresh output folder) for this variant."""
        if self.variant not in self.references:
            from photocluster.pipeline import run_once

            scratch = Path(tempfile.mkdtemp(dir=self.root, prefix="reference-"))
            report = run_once(self.settings(scratch))
            self.references[self.variant] = sorted(sorted(m) for m in report.layout.clusters.values())
            shutil.rmtree(scratch)
        return self.references[self.variant]

    def argv(self, daemon: bool) -> list[str]:
        common = [str(self.lib), "--out", str(self.out), "--model", "squeezenet", "--sim", str(self.sim),
                  "--batch-size", "4", "--no-patterns"]
        if not daemon:
            return common
        return ["watch", *common, "--quiet-seconds", "0.1", "--max-delay-seconds", "0.5", "--settle-seconds", "0.05"]


# --- what a reader of clusters/ sees -----------------------------------------------------------------------------

def shown_clusters(world: World) -> list[list[str]] | None:
    """The clusters the shown tree holds, after checking that the tree is complete and every link is sound."""
    from photocluster.layout import CLUSTERS, STATE_FILE, read_layout

    link = world.out / CLUSTERS
    if not os.path.lexists(link):
        return None
    if not link.is_symlink() or not link.is_dir():
        raise HarnessFailure("clusters/ is not a symlink to a generation folder")
    state = read_layout(world.out)
    if state is None:
        raise HarnessFailure("the shown generation has no readable layout state: a half-built tree is shown")
    real_lib = os.path.realpath(world.lib)
    expected = {}
    for m, members in state.clusters.items():
        folder = f"cluster_with_{len(members)}/cluster_{m}"
        for rel in members:
            expected[(folder, rel)] = True
    found = {}
    generation = Path(os.path.realpath(link))
    for dirpath, dirnames, files in os.walk(generation):
        for name in files + dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            target = os.readlink(path)
            if os.path.isabs(target):
                raise HarnessFailure(f"absolute link {path} -> {target}")
            resolved = os.path.realpath(os.path.join(dirpath, target))
            # A link of the previous tree may dangle (the harness moved its photo out since): it must still
            # point into the library, at one of its photos.
            if not resolved.startswith(real_lib + "/") or os.path.relpath(resolved, real_lib) not in world.digests:
                raise HarnessFailure(f"link {path} leads outside the library or not at a photo: {target}")
            found[(os.path.relpath(dirpath, generation), os.path.relpath(resolved, real_lib))] = True
    files = [f for f in os.listdir(generation) if f not in (STATE_FILE,) and not f.startswith("cluster_with_")]
    found.update(lent_away(world, generation, expected))
    if found.keys() != expected.keys() or files:
        raise HarnessFailure(f"the shown tree disagrees with its layout state ({len(found)} links, "
                             f"{len(expected)} expected, stray {files})")
    return sorted(sorted(m) for m in state.clusters.values())


def lent_away(world: World, shown: Path, expected: dict) -> dict:
    """The links of the shown tree's cluster folders that a killed run had moved, whole, into its unfinished
    generation (layout_reuse: the next run moves them back). Each such folder must be complete there."""
    from photocluster.layout import STATE_FILE
    from photocluster.layout_reuse import LENT

    found = {}
    for gen in world.out.iterdir():
        state_path = gen / STATE_FILE
        if gen == shown or not state_path.is_file() or gen.is_symlink():
            continue
        state = json.loads(state_path.read_text())
        if state.get(LENT, {}).get("from") != shown.name:
            continue
        for m in state[LENT]["clusters"]:
            folder = f"cluster_with_{len(state['clusters'][str(m)])}/cluster_{m}"
            if (gen / folder).is_dir() and not (shown / folder).exists():
                links = {os.path.relpath(os.path.realpath(p), os.path.realpath(world.lib))
                         for p in (gen / folder).iterdir() if p.is_symlink()}
                members = {rel for (f, rel) in expected if f == folder}
                if links != members:
                    raise HarnessFailure(f"a cluster folder lent to {gen.name} is not complete: {folder}")
                found.update({(folder, rel): True for rel in links})
    return found


def check_cache(world: World) -> None:
    from photocluster.cache import FingerprintCache

    path = world.out / "fingerprints.pk"
    if path.exists():
        try:
            FingerprintCache.load(path)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            raise HarnessFailure(f"the cache does not load after a kill: {exc}") from None


# --- foreign entries: the user's own files and links, which photocluster must never touch ----------------------------

FOREIGN_PREFIX = "foreign-"
OUR_NAMES = ("fingerprints.pk", ".lock", ".cluster-input", ".photocluster", ".photocluster-layout.json",
             "summary.md", "patterns.txt", ".state.json", "clusters")


def entry_digest(path: Path) -> tuple:
    """A regular file's sha256, a symlink's target text, or the kind of anything else; never following a link."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return ("file", sha256(path))
    return ("dir",) if stat.S_ISDIR(st.st_mode) else ("special", stat.S_IFMT(st.st_mode))


class ForeignEntries:
    """A folder outside everything (files named like photocluster's, and photos), and foreign files and symlinks
    to it seeded into the library and into <out>. `check` compares all of them, byte for byte, with the seeding."""

    def __init__(self, world: World):
        self.world, self.outside = world, world.root / "outside"
        self.before: dict[Path, tuple] = {}

    def seed_outside(self) -> None:
        from tests.conftest import save, scene

        for folder in (self.outside / "notes", self.outside / "notes" / "deeper"):
            folder.mkdir(parents=True, exist_ok=True)
            for name in OUR_NAMES:
                (folder / name).write_text(f"the user's own {name}\n")
        save(scene(99), self.outside / "photos" / "outside.jpg")
        (self.outside / "file.txt").write_text("a file outside the library and the output\n")

    def seed_library(self) -> None:
        """Symlinks from the library to photos, files and folders outside, and foreign files (never photos)."""
        lib, outside = self.world.lib, self.outside
        self._link(lib / f"{FOREIGN_PREFIX}photos", outside / "photos")
        self._link(lib / "scene0" / f"{FOREIGN_PREFIX}outside.jpg", outside / "photos" / "outside.jpg")
        self._link(lib / f"{FOREIGN_PREFIX}file.txt", outside / "file.txt")
        self._file(lib / f"{FOREIGN_PREFIX}notes.txt")
        self._file(lib / "scene1" / f"{FOREIGN_PREFIX}caption.txt")

    def seed_output(self) -> None:
        """Into a folder photocluster has made its own: foreign files, folders and symlinks to the outside."""
        out, outside = self.world.out, self.outside
        self._file(out / f"{FOREIGN_PREFIX}notes.txt")
        self._file(out / f"{FOREIGN_PREFIX}folder" / f"{FOREIGN_PREFIX}a.txt")
        self._link(out / f"{FOREIGN_PREFIX}link-to-folder", outside / "notes")
        self._link(out / f"{FOREIGN_PREFIX}link-to-file", outside / "file.txt")
        self._link(out / ".clusters.swap-1", outside / "notes")  # a name like our temporary link's, not ours

    def _link(self, path: Path, target: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        self.before[path] = entry_digest(path)

    def _file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"the user's {path.name}\n")
        self.before[path] = entry_digest(path)
        self.before[path.parent] = entry_digest(path.parent)

    def snapshot_outside(self) -> None:
        for dirpath, dirnames, files in os.walk(self.outside):
            for name in dirnames + files:
                path = Path(dirpath) / name
                self.before[path] = entry_digest(path)

    def check(self) -> int:
        """Raise HarnessFailure when a foreign entry changed; return how many were checked."""
        changed = []
        for path, digest in self.before.items():
            try:
                now = entry_digest(path)
            except FileNotFoundError:
                now = ("missing",)
            if now != digest:
                changed.append(f"{path} ({digest[0]} -> {now[0]})")
        if changed:
            raise HarnessFailure(f"entries photocluster did not make changed: {changed}")
        return len(self.before)


def seed_foreign(world: World) -> ForeignEntries:
    """Seed the library and the output (after photocluster has made it its own) and record everything."""
    foreign = ForeignEntries(world)
    foreign.seed_outside()
    foreign.seed_library()
    foreign.seed_output()
    foreign.snapshot_outside()
    foreign.check()
    return foreign


# --- the child ---------------------------------------------------------------------------------------------------

class Child:
    """A photocluster process with the stand-in model; its stdout lines (phase markers) arrive on a queue."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, fork: bool):
        self.lines: queue.Queue[str] = queue.Queue()
        self.started = time.monotonic()
        self.log_path = log_path
        self._status: int | None = None
        read_end, write_end = os.pipe()
        if fork:
            self.proc = None
            self.pid = os.fork()
            if self.pid == 0:  # pragma: no cover - the child
                self._child(argv, env, read_end, write_end)
            os.close(write_end)
        else:
            with open(log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "tests.standin", *argv], cwd=REPO, env={**os.environ, **env},
                    stdout=write_end, stderr=log, start_new_session=True)
            self.pid = self.proc.pid
            os.close(write_end)
        threading.Thread(target=self._read, args=(read_end,), daemon=True).start()

    def _child(self, argv, env, read_end, write_end) -> None:
        status = 99
        try:
            os.setsid()
            os.close(read_end)
            os.dup2(write_end, 1)
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ.update(env)
            from tests import standin

            status = standin.main(argv)
        except BaseException:  # noqa: BLE001 - shown in the log, which the harness reads
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    def _read(self, fd: int) -> None:
        with open(fd, "rb") as stream:
            for line in stream:
                self.lines.put(line.decode(errors="replace").strip())
        self.lines.put("<eof>")

    def wait_phase(self, phase: str, timeout: float) -> bool:
        """Wait until the child says it entered `phase`; False when it ended (or timed out) first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line == f"phase:{phase}":
                return True
            if line == "<eof>":
                return False
        return False

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._status = os.waitstatus_to_exitcode(status)
        return self._status is None

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the daemon's worker process too
        except ProcessLookupError:  # not yet its own process group (or already gone)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        if self.proc is not None:
            return self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise TimeoutError("the child did not end")
            time.sleep(0.01)
        return self._status


# --- one iteration -----------------------------------------------------------------------------------------------

def one_iteration(world: World, rng: random.Random, phase: str, daemon: bool, fork: bool,
                  full_run_seconds: float) -> Outcome:
    world.change(rng)
    if phase == "fingerprint" or (phase == "random" and rng.random() < 0.5) or rng.random() < 0.15:
        with contextlib.suppress(FileNotFoundError):
            (world.out / "fingerprints.pk").unlink()  # a first run: everything is fingerprinted
    previous = shown_clusters(world)
    env = {"PHOTOCLUSTER_TEST_PREDICT_DELAY": "0", "PHOTOCLUSTER_TEST_SAVE_DELAY": "0",
           "PHOTOCLUSTER_TEST_LAYOUT_DELAY": "0"}
    if phase in DELAY:
        env[f"PHOTOCLUSTER_TEST_{'PREDICT' if phase == 'fingerprint' else phase.upper()}_DELAY"] = str(DELAY[phase])
    child = Child(world.argv(daemon), env, world.root / "child.log", fork)
    killed = False
    try:
        if phase == "random":
            time.sleep(rng.uniform(0, full_run_seconds))
            killed = child.alive() or daemon
        elif child.wait_phase(phase, timeout=60):
            # Inside the step: the fingerprinting takes 6 model calls (24+ photos, batches of 4) after the first.
            window = DELAY[phase] * (4 if phase == "fingerprint" else 1.0)
            time.sleep(rng.uniform(0, window))
            killed = True
        elif daemon:
            killed = True  # the daemon never ends by itself; it is killed whatever it was doing
    finally:
        if daemon or killed:
            child.kill()
        status = child.wait(60)
    log = (world.root / "child.log").read_text(errors="replace")
    if "Traceback" in log:
        raise HarnessFailure(f"the child printed a traceback:\n{log}")
    if not killed and status != 0:
        raise HarnessFailure(f"an uninterrupted child failed with status {status}:\n{log}")
    killed = killed and status == -signal.SIGKILL
    # --- the invariants, right after the kill ---
    world.check_originals()
    world.foreign.check()
    now = shown_clusters(world)
    expected = world.reference()
    if previous is not None and now is None:
        raise HarnessFailure("the previous cluster tree is gone and no new one is shown")
    if now is not None and now != previous and now != expected:
        raise HarnessFailure(f"clusters/ shows neither the previous nor the new tree: {now}")
    check_cache(world)
    # --- the next run completes and gives what an uninterrupted run gives ---
    recover(world)
    if shown_clusters(world) != expected:
        raise HarnessFailure("after the next run the clusters differ from an uninterrupted run's")
    world.check_originals()
    world.foreign.check()
    return Outcome(phase, killed, time.monotonic() - child.started)


def recover(world: World) -> None:
    """The next run, uninterrupted (in this process: the same pipeline, without the start-up cost)."""
    from photocluster.cache import FingerprintCache
    from photocluster.layout import GENERATION_PREFIX
    from photocluster.pipeline import run_once

    run_once(world.settings())
    cache = FingerprintCache.load(world.out / "fingerprints.pk")
    if any(e.error for e in cache.entries.values()):
        raise HarnessFailure("a photo is recorded as unreadable after a kill")
    generations = [n for n in os.listdir(world.out) if n.startswith(GENERATION_PREFIX)]
    if len(generations) != 1:
        raise HarnessFailure(f"generations left over after the next run: {generations}")
    temporaries = [n for n in os.listdir(world.out) if n.endswith(".tmp")]
    if temporaries:
        raise HarnessFailure(f"temporary files left over after the next run: {temporaries}")


def measure_full_run(world: World, daemon: bool, fork: bool) -> float:
    """How long an uninterrupted one-shot child takes (from start to exit), from scratch."""
    scratch_out = world.out
    with contextlib.suppress(FileNotFoundError):
        (scratch_out / "fingerprints.pk").unlink()
    child = Child(world.argv(False), {}, world.root / "child.log", fork)
    status = child.wait(120)
    if status != 0:
        raise HarnessFailure("the uninterrupted run failed:\n" + (world.root / "child.log").read_text())
    seconds = time.monotonic() - child.started
    return seconds * (1.5 if daemon else 1.0)


def run_harness(iterations: int, seed: int = 0, daemon: bool = False, fork: bool = False,
                workdir: Path | None = None, progress=None, monkeypatch=None,
                phases: tuple[str, ...] = PHASES, checks: dict[str, int] | None = None) -> tuple[Counter, Counter]:
    """Run `iterations` kills; raise HarnessFailure on the first broken invariant. Returns (tried, killed) by phase.

    `checks`, when given, receives how many foreign entries were checked (after every kill and re-run).

    `monkeypatch` (pytest's) scopes the stand-in model of the harness's own runs to one test.
    """
    from tests.standin import install

    install(monkeypatch)  # the harness's own (recovery and reference) runs use the stand-in model too
    logging.getLogger().setLevel(logging.ERROR)
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="kill-harness-", dir=workdir))
    try:
        world = World(root)
        world.check_originals()
        full = measure_full_run(world, daemon, fork)
        recover(world)
        world.foreign = seed_foreign(world)
        tried, killed = Counter(), Counter()
        for i in range(iterations):
            phase = phases[i % len(phases)]
            try:
                outcome = one_iteration(world, rng, phase, daemon, fork, full)
            except HarnessFailure as exc:
                raise HarnessFailure(f"iteration {i} (phase {phase}, seed {seed}, variant {world.variant}): "
                                     f"{exc}") from None
            tried[phase] += 1
            killed[phase] += outcome.killed
            if progress:
                progress(i + 1, outcome)
        if checks is not None:
            checks["foreign entries"] = world.foreign.check()
        return tried, killed
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- work lost per kill: stop a first run after a known number of photos, count what the next run redoes ---------

LOSS_BATCH = 4  # photos per model call: World.argv's --batch-size
LOSS_PHOTOS = 40  # 10 scenes x 4 copies: 10 model calls of LOSS_BATCH


@dataclass
class WorkLost:
    """One first run stopped by a signal, and what the next run had to fingerprint again.

    `started` counts the photos whose model call had begun before the child ended (each call announces itself
    with phase:fingerprint): the work done, or in flight, when the signal came. `saved` is what the next run did
    not have to redo; `lost` = started - saved is the work thrown away.
    """

    driver: str
    signal: str
    photos: int
    started: int
    recomputed: int
    status: int | None
    stop_seconds: float  # from the signal to the child's exit

    @property
    def saved(self) -> int:
        return self.photos - self.recomputed

    @property
    def lost(self) -> int:
        return self.started - self.saved

    def line(self) -> str:
        return (f"{self.driver:8} {self.signal:7}: {self.started:2} of {self.photos} photos started before the kill, "
                f"{self.saved:2} saved, next run recomputed {self.recomputed:2}: work lost {self.lost:2} photos "
                f"(exit {self.status}, stopped {self.stop_seconds:.1f} s after the signal)")


def count_model_calls(child: Child, until: int | None, timeout: float) -> int:
    """Read the child's phase lines: wait for `until` model calls (None: until it ends); return how many came."""
    calls, deadline = 0, time.monotonic() + timeout
    while (until is None or calls < until) and time.monotonic() < deadline:
        try:
            line = child.lines.get(timeout=0.05)
        except queue.Empty:
            continue
        if line == "<eof>":
            child.lines.put(line)
            break
        calls += line == "phase:fingerprint"
    return calls


def stop_first_run(root: Path, daemon: bool, signum: int, after_calls: int, predict_delay: float,
                   checkpoint_seconds: float | None = None, fork: bool = False) -> WorkLost:
    """Start a first run of LOSS_PHOTOS photos, send `signum` after `after_calls` model calls, run again.

    SIGINT and SIGTERM go to the main process only (as a terminal's kill, or systemd's KillMode=mixed); SIGKILL
    goes to the whole process group (an OOM kill or a power cut takes the daemon's worker too).
    """
    from photocluster.pipeline import CHECKPOINT_ENV, run_once

    world = World(root, scenes=LOSS_PHOTOS // 4, stash_scenes=0, copies=4)
    env = {"PHOTOCLUSTER_TEST_PREDICT_DELAY": str(predict_delay), "PHOTOCLUSTER_TEST_SAVE_DELAY": "0",
           "PHOTOCLUSTER_TEST_LAYOUT_DELAY": "0", CHECKPOINT_ENV: "" if checkpoint_seconds is None
           else str(checkpoint_seconds)}
    child = Child(world.argv(daemon), env, root / "child.log", fork)
    calls = 0
    try:
        calls = count_model_calls(child, after_calls, timeout=120)
        if calls < after_calls:
            raise HarnessFailure(f"the child ended after {calls} model calls:\n{(root / 'child.log').read_text()}")
        signalled = time.monotonic()
        if signum == signal.SIGKILL:
            child.kill()
        else:
            os.kill(child.pid, signum)
        status = child.wait(60)
        stop_seconds = time.monotonic() - signalled
    finally:
        if child.alive():
            child.kill()
            child.wait(60)
    calls += count_model_calls(child, None, timeout=10)  # the calls that began after the signal, if any
    log = (root / "child.log").read_text(errors="replace")
    if "Traceback" in log:
        raise HarnessFailure(f"the child printed a traceback:\n{log}")
    world.check_originals()
    check_cache(world)
    recomputed = run_once(world.settings()).fingerprinted.computed
    return WorkLost("daemon" if daemon else "one-shot", signal.Signals(signum).name, LOSS_PHOTOS,
                    min(calls * LOSS_BATCH, LOSS_PHOTOS), recomputed, status, stop_seconds)


def work_lost_per_kill(workdir: Path | None = None, monkeypatch=None, fork: bool = False,
                       predict_delay: float = 0.25, checkpoint_seconds: float = 1.0,
                       after_calls: int = 6) -> list[WorkLost]:
    """Every driver and signal once: what a stop after `after_calls` model calls costs the next run.

    With the checkpoint interval shortened to `checkpoint_seconds` (60 s in real use), a SIGKILL may lose the
    photos of the last interval and the call in flight; SIGINT and SIGTERM lose nothing in the one-shot CLI
    (its call in flight finishes first), and at most the call in flight in the daemon (its worker is stopped).
    """
    from tests.standin import install

    install(monkeypatch)
    logging.getLogger().setLevel(logging.ERROR)
    results = []
    for daemon in (False, True):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            root = Path(tempfile.mkdtemp(prefix="work-lost-", dir=workdir))
            try:
                results.append(stop_first_run(root, daemon, signum, after_calls, predict_delay,
                                              checkpoint_seconds, fork))
            finally:
                shutil.rmtree(root, ignore_errors=True)
    return results


def summary(iterations: int, tried: Counter, killed: Counter, driver: str, foreign_checked: int = 0) -> str:
    by_phase = ", ".join(f"{p} {killed[p]}/{tried[p]}" for p in PHASES)
    return (f"kill harness ({driver}): {iterations} iterations, {sum(killed.values())} killed mid-run "
            f"(killed/tried by phase: {by_phase}), 0 failures, data lost: none, "
            f"foreign entries unchanged: {foreign_checked}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--daemon", action="store_true", help="kill `photocluster watch` instead of the one-shot CLI")
    p.add_argument("--exec", action="store_true",
                   help="start each child with a fresh interpreter (python -m tests.standin) instead of fork")
    p.add_argument("--work-lost", action="store_true",
                   help="instead: stop a first run of each driver with SIGINT, SIGTERM and SIGKILL after a known "
                   "number of photos, and report how many the next run recomputes")
    args = p.parse_args(argv)
    if args.work_lost:
        for result in work_lost_per_kill(fork=not args.exec):
            print(result.line())
        return 0
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    started = time.monotonic()

    def progress(done: int, outcome: Outcome) -> None:
        if done % 50 == 0:
            print(f"  {done} iterations ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)

    driver = ("daemon" if args.daemon else "one-shot") + (", exec" if args.exec else ", fork")
    try:
        checks: dict[str, int] = {}
        tried, killed = run_harness(args.iterations, seed, args.daemon, not args.exec, progress=progress,
                                    checks=checks)
    except HarnessFailure as exc:
        print(f"kill harness ({driver}): FAILED (seed {seed}): {exc}")
        return 1
    print(summary(args.iterations, tried, killed, driver, checks["foreign entries"])
          + f"; seed {seed}, {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
