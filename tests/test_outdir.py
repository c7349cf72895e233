"""Nothing outside the output folder, ever (issue 9, class 1 and the deep paths of class 3).

Generated variants: foreign symlinks (to folders and to files outside) planted at every kind of place under <out>,
foreign files and folders beside photocluster's own, foreign and system folders given as --out, folders of photos
inside the library, a symlink at the lock, dry runs, and photos at legal path lengths with a deeper --out. Each
checks, entry by entry (sha256 of files, the target text of links), that nothing outside <out> changed and that
nothing inside it that photocluster did not make changed.

The photocluster names used here (.photocluster, .photocluster-folder...) are written out rather than imported,
so the file also runs against older code, where these tests fail.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from photocluster.cli import EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, main
from photocluster.library import printable_path
from photocluster.settings import SettingsError, check_output_dir

from .hostile import good_photos

OUR_NAMES = ("summary.md", "patterns.txt", "transactions.txt", "photos.txt", ".photocluster-folder", ".state.json",
             ".photocluster-layout.json", "fingerprints.pk", ".lock", ".cluster-input", ".photocluster")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`, links not followed: a file's sha256, a link's target text, a folder."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):  # a linked folder is listed, never entered
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = entry(path)
    return found


def entry(path: str | Path) -> tuple:
    st_ = os.lstat(path)
    if stat.S_ISLNK(st_.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(st_.st_mode):
        return ("dir",)
    if stat.S_ISREG(st_.st_mode):
        with open(path, "rb") as fh:
            return ("file", hashlib.sha256(fh.read()).hexdigest())
    return ("special", stat.S_IFMT(st_.st_mode))


def make_outside(root: Path) -> Path:
    """A folder outside every output, holding a file of each name photocluster writes or removes, and photos."""
    for folder in ("notes", "notes/deeper", "cluster_with_2/cluster_0"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in OUR_NAMES:
            (root / folder / name).write_text(f"the user's own {name} in {folder}\n")
    good_photos(root / "photos", scenes=1, copies=2)
    (root / "file.txt").write_text("a file outside\n")
    return root


def cli(*args) -> tuple[int, str]:
    return main([str(a) for a in args])


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("photocluster: error:")]


# --- 1. foreign symlinks at every kind of place under <out> -----------------------------------------------------

def _shown(out: Path) -> Path:
    return out / os.readlink(out / "clusters")


# place -> (where the symlink goes, given <out> after a first run; whether it replaces what is there)
PLACES = {
    "patterns-folder": lambda out: out / "patterns" / "good" / "scene0",
    "patterns-stale-folder": lambda out: out / "patterns" / "good" / "scene2",
    "patterns-middle-folder": lambda out: out / "patterns" / "good",
    "patterns-library-folder": lambda out: out / "patterns" / "_library",
    "patterns": lambda out: out / "patterns",
    "patterns-new-folder": lambda out: out / "patterns" / "good" / "scene9",
    "patterns-file": lambda out: out / "patterns" / "good" / "scene0" / "summary.md",
    "patterns-stale-file": lambda out: out / "patterns" / "good" / "scene2" / "patterns.txt",
    "patterns-stale-mark": lambda out: out / "patterns" / "good" / "scene2" / ".photocluster-folder",
    "patterns-stale-temp": lambda out: out / "patterns" / "good" / "scene2" / ".summary.md.0a1b2c3d.tmp",
    "patterns-state": lambda out: out / "patterns" / ".state.json",
    "clusters": lambda out: out / "clusters",
    "generation-shown": _shown,
    "generation-new-name": lambda out: out / ".clusters-abc-1",
    "generation-cluster-folder": lambda out: _shown(out) / "cluster_with_2" / "cluster_0",
    "generation-size-folder": lambda out: _shown(out) / "cluster_with_2",
    "generation-new-link": lambda out: _shown(out) / "cluster_with_2" / "cluster_0" / "planted.jpg",
    "generation-state": lambda out: _shown(out) / ".photocluster-layout.json",
    "lock": lambda out: out / ".lock",
    "cache": lambda out: out / "fingerprints.pk",
    "cache-temporary": lambda out: out / ".fingerprints.pk.0a1b2c3d.tmp",
    "cluster-key": lambda out: out / ".cluster-input",
    "swap-link": lambda out: out / ".clusters.swap-1",
    "marker": lambda out: out / ".photocluster",
}
# Where the run refuses, with one line (and the status it exits with); everywhere else it completes.
REFUSED = {"clusters": EXIT_OUTPUT, "lock": EXIT_OUTPUT, "cache": EXIT_OUTPUT, "marker": EXIT_USAGE}

# Foreign entries a user keeps inside <out>, beside and inside photocluster's own (seeded where their folder is a
# real folder after the planting).
FOREIGN_FILES = (
    "notes.txt", "my folder/a.txt", "patterns/my-notes.md", "patterns/sewing/summary.md",
    "patterns/sewing/patterns.txt", "patterns/good/scene2/my-notes.txt", "patterns/good/my-list.txt",
    ".clusters-user/keep.txt", "SHOWN/user-notes.txt",
)
FOREIGN_LINKS = ("my-shortcut", "patterns/sewing/my-shortcut", "SHOWN/cluster_with_2/cluster_0/user-link")


def _plant(path: Path, target: Path) -> None:
    if os.path.lexists(path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    os.symlink(target, path)


def _under_real_folders(out: Path, path: Path) -> bool:
    """True when no folder between `out` and `path` is a symlink (a seed is never written through one)."""
    return not any(p.is_symlink() for p in path.parents if out in p.parents)


def _seed_foreign(out: Path, outside: Path, shown: str) -> list[Path]:
    seeded = []
    for rel in FOREIGN_FILES + FOREIGN_LINKS:
        path = out / rel.replace("SHOWN", shown)
        if not _under_real_folders(out, path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel in FOREIGN_LINKS:
            os.symlink(outside / "notes", path)
        else:
            path.write_text(f"mine: {rel}\n")
        seeded.append(path)
    return seeded


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A library and its output after one complete run: copied afresh for each variant."""
    root = tmp_path_factory.mktemp("first")
    lib, out = root / "lib", root / "out"
    good_photos(lib, scenes=3, copies=2)
    mp = pytest.MonkeyPatch()
    from .standin import install

    install(mp)
    try:
        assert cli(lib, "--out", out, "--model", "squeezenet") == EXIT_OK
    finally:
        mp.undo()
    assert (out / "patterns" / "good" / "scene2" / "summary.md").is_file()
    return root


@pytest.mark.parametrize("target_kind", ["folder", "file"])
@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_foreign_symlink_anywhere_in_out_is_never_followed_nor_touched(
        tmp_path, stand_in, capfd, first_run, place, target_kind):
    shutil.copytree(first_run / "lib", tmp_path / "lib", symlinks=True)
    shutil.copytree(first_run / "out", tmp_path / "out", symlinks=True)
    lib, out = tmp_path / "lib", tmp_path / "out"
    outside = make_outside(tmp_path / "outside")
    shown, planted = os.readlink(out / "clusters"), PLACES[place](out)
    _plant(planted, outside / ("notes" if target_kind == "folder" else "file.txt"))
    foreign = {p: entry(p) for p in [planted, *_seed_foreign(out, outside, shown)]}
    outside_before = snapshot(outside)
    capfd.readouterr()

    # The next run has work that writes and removes: a folder of photos gone, another --sim (a new tree).
    (tmp_path / "stash").mkdir()
    os.rename(lib / "good" / "scene2", tmp_path / "stash" / "scene2")
    status = cli(lib, "--out", out, "--model", "squeezenet", "--sim", "0.0")
    err = capfd.readouterr().err

    assert snapshot(outside) == outside_before
    assert {p: entry(p) for p in foreign} == foreign
    assert "Traceback" not in err
    assert status == REFUSED.get(place, EXIT_OK), err
    assert len(error_lines(err)) == (1 if place in REFUSED else 0), err


def test_without_foreign_entries_the_second_run_swaps_the_tree_and_removes_the_stale_summary(
        tmp_path, stand_in, first_run):
    """The baseline of the variants above: their second run does replace the tree and remove a summary."""
    shutil.copytree(first_run / "lib", tmp_path / "lib", symlinks=True)
    shutil.copytree(first_run / "out", tmp_path / "out", symlinks=True)
    lib, out = tmp_path / "lib", tmp_path / "out"
    before = os.readlink(out / "clusters")
    os.rename(lib / "good" / "scene2", tmp_path / "scene2")
    assert cli(lib, "--out", out, "--model", "squeezenet", "--sim", "0.0") == EXIT_OK
    assert os.readlink(out / "clusters") != before and not (out / before).exists()
    assert not (out / "patterns" / "good" / "scene2").exists()


# --- 1. whose folder --out is -------------------------------------------------------------------------------

NAME = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=60)
NAME = NAME.filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)
# the names an output of photocluster holds (OLD_LAYOUT below, and `clusters`)
OURS = re.compile(r"fingerprints\.pk(\.bad-.*)?|\.fingerprints\.pk\..*\.tmp|\.lock|\.\.?cluster-input(\..*\.tmp)?"
                  r"|clusters|\.clusters-[0-9a-f]+-[0-9]+|\.clusters\.swap-[0-9]+|patterns")


def _library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    if not lib.exists():
        good_photos(lib, scenes=1, copies=2)
    return lib


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME, kind=st.sampled_from(["file", "folder", "link-out", "link-in", "fifo"]))
def test_a_non_empty_folder_without_our_marker_is_refused(tmp_path, name, kind):
    assume(not OURS.fullmatch(name))
    lib = _library(tmp_path)
    out = Path(tempfile.mkdtemp(dir=tmp_path, prefix="out-"))
    path = out / name
    if kind == "file":
        path.write_bytes(b"the user's")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(tmp_path if kind == "link-out" else ".", path)
    before = snapshot(out)
    with pytest.raises(SettingsError, match="not photocluster's|folder of photos"):
        check_output_dir(lib, out)
    assert snapshot(out) == before


OLD_LAYOUT = {  # the entries of an output made before the marker, each of the right kind
    "fingerprints.pk": "file", ".lock": "file", ".cluster-input": "file", "patterns": "folder",
    ".clusters-18f2a3b4c5d6-4242": "folder", "fingerprints.pk.bad-20240101-120000": "file",
    ".fingerprints.pk.k3j4h5.tmp": "file", ".clusters.swap-77": "link",
}


def _make(path: Path, kind: str) -> None:
    if kind == "file":
        path.write_bytes(b"x")
    elif kind == "folder":
        path.mkdir()
    else:
        os.symlink(".clusters-18f2a3b4c5d6-4242", path)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.sets(st.sampled_from(sorted(OLD_LAYOUT)), min_size=1), clusters=st.booleans(),
       extra=st.one_of(st.none(), NAME))
def test_an_output_of_an_older_photocluster_is_recognised_strictly(tmp_path, chosen, clusters, extra):
    assume(extra is None or not OURS.fullmatch(extra))
    lib = _library(tmp_path)
    out = Path(tempfile.mkdtemp(dir=tmp_path, prefix="old-"))
    for name in chosen:
        _make(out / name, OLD_LAYOUT[name])
    if clusters:
        os.symlink(".clusters-18f2a3b4c5d6-4242", out / "clusters")
    if extra is not None and not os.path.lexists(out / extra):
        (out / extra).write_text("the user's")  # one entry photocluster never makes: not our folder after all
        with pytest.raises(SettingsError, match="not photocluster's"):
            check_output_dir(lib, out)
    else:
        check_output_dir(lib, out)


@pytest.mark.parametrize("shape", ["clusters-folder", "clusters-link-elsewhere", "cache-folder", "lock-link",
                                   "patterns-file", "marker-link", "marker-garbage"])
def test_our_names_with_the_wrong_shape_are_not_our_folder(tmp_path, shape):
    lib = _library(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "fingerprints.pk").write_bytes(b"x")
    name, make = {
        "clusters-folder": ("clusters", lambda p: p.mkdir()),
        "clusters-link-elsewhere": ("clusters", lambda p: os.symlink(tmp_path, p)),
        "cache-folder": ("fingerprints.pk.bad-1", lambda p: p.mkdir()),
        "lock-link": (".lock", lambda p: os.symlink(tmp_path / "x", p)),
        "patterns-file": ("patterns", lambda p: p.write_text("x")),
        "marker-link": (".photocluster", lambda p: os.symlink(tmp_path / "m", p)),
        "marker-garbage": (".photocluster", lambda p: p.write_text("not ours")),
    }[shape]
    (tmp_path / "m").write_text('{"format": "photocluster-output", "version": 1}\n')
    make(out / name)
    with pytest.raises(SettingsError, match="not photocluster's"):
        check_output_dir(lib, out)


@pytest.mark.parametrize("case", ["docs", "docs2"])
def test_the_issue_examples_are_refused_and_left_as_they_were(tmp_path, stand_in, capfd, case):
    """`--out docs` deleted docs/patterns/sewing/summary.md and patterns.txt; `--out docs2` a user's symlink."""
    lib = _library(tmp_path)
    out = tmp_path / case
    if case == "docs":
        (out / "patterns" / "sewing").mkdir(parents=True)
        (out / "patterns" / "sewing" / "summary.md").write_text("my sewing notes")
        (out / "patterns.txt").write_text("my patterns")
    else:
        (out / "clusters").mkdir(parents=True)
        os.symlink(lib / "good", out / "clusters" / "my-shortcut")
    before = snapshot(out)
    status = cli(lib, "--out", out, "--model", "squeezenet")
    err = capfd.readouterr().err
    assert status == EXIT_USAGE and len(error_lines(err)) == 1 and "not photocluster's" in err, err
    assert snapshot(out) == before


def test_a_new_output_gets_the_marker_first_and_an_empty_one_is_adopted(tmp_path, stand_in):
    lib = _library(tmp_path)
    for out in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        assert cli(lib, "--out", out, "--model", "squeezenet", "--no-patterns") == EXIT_OK
        assert (out / ".photocluster").is_file() and not (out / ".photocluster").is_symlink()
        assert '"photocluster-output"' in (out / ".photocluster").read_text()
        # the marked folder, now holding our files, is ours on the next run
        assert cli(lib, "--out", out, "--model", "squeezenet", "--no-patterns") == EXIT_OK


# --- 1. system folders and folders of photos ------------------------------------------------------------------

SYSTEM = ["/var/log", "/var/lib", "/var/cache", "/var/spool", "/home", "/srv", "/opt", "/mnt", "/media", "/run/user",
          "/", "/var", "/tmp", "/root", "/run", "/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/var/tmp",
          "/var/mail", "/run/media"]
WORD = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), max_codepoint=127), min_size=1, max_size=12)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out=st.one_of(
    st.sampled_from(SYSTEM),
    # a user's or a service's own folder: /home/alice, /var/lib/mysql, /run/user/1000, /media/alice...
    st.builds("{}/{}".format, st.sampled_from(["/home", "/var/lib", "/var/cache", "/run/user", "/media", "/var",
                                                "/run/media"]), WORD),
    # anywhere inside the system's own trees
    st.builds("{}/{}/{}".format, st.sampled_from(["/var/log", "/var/spool", "/etc", "/usr", "/proc", "/sys", "/dev",
                                                   "/boot", "/run/lock", "/run/systemd", "/var/mail"]), WORD, WORD),
))
def test_system_folders_are_refused(tmp_path, out):
    lib = _library(tmp_path)
    with pytest.raises(SettingsError, match="system"):
        check_output_dir(lib, Path(out))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out=st.builds("{}/pc-test-{}/{}".format, st.sampled_from(
    ["/var/lib", "/srv", "/mnt", "/opt", "/home", "/run/user", "/media", "/var/cache"]), WORD, WORD))
def test_a_folder_of_its_own_inside_them_is_fine(tmp_path, out):
    """/var/lib/photocluster/x, /srv/photos-out/x, /mnt/disk/out: chosen by their owner, and empty."""
    check_output_dir(_library(tmp_path), Path(out))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(1, 4), at=st.integers(0, 3), names=st.lists(WORD, min_size=4, max_size=4, unique=True))
def test_a_folder_of_photos_inside_the_library_is_refused(tmp_path, depth, at, names):
    """--out at any folder on the way down to a photo (lib/2023, lib/2023/summer...) is refused."""
    lib = _library(tmp_path)
    folders = [f"pc{n}" for n in names[:depth]]
    photo = lib.joinpath(*folders) / "p.jpg"
    if not photo.exists():
        photo.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib / "good" / "scene0" / "v0.jpg", photo)
    out = lib.joinpath(*folders[: min(at, depth - 1) + 1])
    with pytest.raises(SettingsError, match="folder of photos"):
        check_output_dir(lib, out)


def test_out_at_a_subfolder_of_photos_is_refused_and_all_photos_are_kept(tmp_path, stand_in, capfd):
    lib = tmp_path / "lib"
    good_photos(lib / "2023", scenes=2, copies=2)
    before = snapshot(lib)
    status = cli(lib, "--out", lib / "2023", "--model", "squeezenet")
    err = capfd.readouterr().err
    assert status == EXIT_USAGE and len(error_lines(err)) == 1 and "folder of photos" in err, err
    assert snapshot(lib) == before


# --- 1. the lock -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["file", "missing", "folder"])
def test_a_symlink_at_the_lock_is_refused_and_its_target_left_byte_identical(tmp_path, stand_in, capfd, target):
    lib = _library(tmp_path)
    out = tmp_path / "out"
    assert cli(lib, "--out", out, "--model", "squeezenet", "--no-patterns") == EXIT_OK
    outside = make_outside(tmp_path / "outside")
    (out / ".lock").unlink()
    os.symlink({"file": outside / "file.txt", "missing": outside / "nothing-yet", "folder": outside}[target],
               out / ".lock")
    before = snapshot(outside)
    capfd.readouterr()
    status = cli(lib, "--out", out, "--model", "squeezenet", "--no-patterns")
    err = capfd.readouterr().err
    assert status == EXIT_OUTPUT and len(error_lines(err)) == 1 and ".lock" in error_lines(err)[0], err
    assert "symlink" in err and snapshot(outside) == before
    assert os.path.islink(out / ".lock")


def test_a_fifo_at_the_lock_is_refused_without_hanging(tmp_path, stand_in, capfd):
    lib = _library(tmp_path)
    out = tmp_path / "out"
    assert cli(lib, "--out", out, "--model", "squeezenet", "--no-patterns") == EXIT_OK
    (out / ".lock").unlink()
    os.mkfifo(out / ".lock")
    assert cli(lib, "--out", out, "--model", "squeezenet", "--no-patterns") == EXIT_OUTPUT
    assert stat.S_ISFIFO(os.lstat(out / ".lock").st_mode)


def test_the_daemon_looks_at_the_lock_without_following_a_link(tmp_path):
    from photocluster import fsutil, watched

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / ".lock")

    class Lib:
        class settings:
            out_dir = out

    assert watched.output_in_use(Lib) is False
    assert outside.read_text() == "precious" and os.path.islink(out / ".lock")
    # and a real lock held by another descriptor is seen as busy
    (out / ".lock").unlink()
    fd = fsutil.open_lock(out / ".lock")
    try:
        assert fsutil.try_lock(fd) and watched.output_in_use(Lib) is True
    finally:
        os.close(fd)
    assert watched.output_in_use(Lib) is False


# --- 1. the dry run --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["missing", "empty", "bad-cache", "old-layout"])
def test_a_dry_run_writes_nothing_anywhere(tmp_path, stand_in, state):
    lib = _library(tmp_path)
    out = tmp_path / "out"
    if state != "missing":
        out.mkdir()
    if state == "bad-cache":
        (out / "fingerprints.pk").write_bytes(b"not a cache at all")
    if state == "old-layout":
        assert cli(lib, "--out", out, "--model", "squeezenet") == EXIT_OK
        (out / ".photocluster").unlink()  # an output of a photocluster from before the marker and the record
        (out / "last-run.json").unlink()
        for later in (p for p in out.iterdir() if not OURS.fullmatch(p.name)):  # what came after the marker
            shutil.rmtree(later) if later.is_dir() and not later.is_symlink() else later.unlink()
        (out / "fingerprints.pk").write_bytes(b"now damaged")
    before_lib, before_tmp = snapshot(lib), snapshot(tmp_path)
    assert cli(lib, "--out", out, "--model", "squeezenet", "--dry-run") == EXIT_OK
    assert snapshot(tmp_path) == before_tmp and snapshot(lib) == before_lib
    assert os.path.lexists(out) == (state != "missing")


# --- 3. photos at legal path lengths, --out nested deeper ---------------------------------------------------------

def test_photos_at_4000_byte_paths_with_a_deeper_out_are_skipped_with_a_warning_and_the_run_succeeds(
        tmp_path, stand_in, capfd):
    lib = tmp_path / "lib"
    good_photos(lib, scenes=2, copies=2)
    room = 4000 - len(os.fsencode(lib)) - len("/p0.jpg")
    parts = []
    while room > 0:  # folders of 250-byte names, and a shorter last one, to a 4,000-byte path
        parts.append(("d" if room > 251 else "e") * min(250, room - 1))
        room -= len(parts[-1]) + 1
    deep = "/".join(parts)
    deep_rels = [f"{deep}/p{i}.jpg" for i in range(2)]
    for rel in deep_rels:
        (lib / deep).mkdir(parents=True, exist_ok=True)
        shutil.copy(lib / "good" / "scene0" / "v0.jpg", lib / rel)
    assert all(3900 < len(os.fsencode(lib / rel)) < 4096 for rel in deep_rels)
    # 600 levels: the out path itself is short enough to name, but each level adds "../" to every link's target
    out = tmp_path.joinpath(*["o"] * 600)
    status = cli(lib, "--out", out, "--model", "squeezenet")
    err = capfd.readouterr().err
    assert status == EXIT_OK, err
    for rel in deep_rels:
        assert err.count(printable_path(rel)) == 1, err
    assert len(error_lines(err)) == 0
    # the photos whose links fit are linked, and their links lead to them
    shown = out / "clusters"
    linked = {os.path.realpath(os.path.join(dirpath, name)) for dirpath, _, names in os.walk(shown, followlinks=True)
              for name in names if name.endswith(".jpg")}
    assert {os.path.realpath(lib / f"good/scene{g}/v{c}.jpg") for g in range(2) for c in range(2)} <= linked


# --- the hostile corpus against a seeded library and output ------------------------------------------------------

def test_the_hostile_corpus_with_foreign_entries_in_the_library_and_the_output_changes_nothing_else(
        tmp_path, stand_in, capfd):
    """tests/hostile.py's corpus (with its own links out of the library), then foreign files and links to the
    outside seeded into the output at every place that does not make the run refuse: a re-run with another --sim
    leaves the outside and every foreign entry byte-identical."""
    from .hostile import make_corpus

    lib, outside_corpus = tmp_path / "lib", tmp_path / "outside-corpus"
    make_corpus(lib, outside_corpus, big_folder_entries=200)
    out = lib / "photocluster"
    assert cli(lib, "--model", "squeezenet") == EXIT_OK
    outside = make_outside(tmp_path / "outside")
    shown = os.readlink(out / "clusters")
    places = [PLACES[p](out) for p in sorted(PLACES) if p not in REFUSED and p != "generation-shown"]
    leaves = [path for path in places if not any(path in other.parents for other in places)  # none inside another
              and path.parent.is_dir()]
    for i, path in enumerate(leaves):
        _plant(path, outside / ("notes" if i % 2 else "file.txt"))
    planted = leaves
    os.symlink(outside / "notes", lib / "good" / "linked-notes")
    (lib / "good" / "my-caption.txt").write_text("the user's")
    seeded = [*planted, *_seed_foreign(out, outside, shown), lib / "good" / "linked-notes",
              lib / "good" / "my-caption.txt"]
    foreign = {p: entry(p) for p in seeded}
    outside_before = snapshot(outside) | {f"corpus/{k}": v for k, v in snapshot(outside_corpus).items()}
    library_before = {k: v for k, v in snapshot(lib).items() if not k.startswith("photocluster")}
    capfd.readouterr()

    status = cli(lib, "--model", "squeezenet", "--sim", "0.0")
    err = capfd.readouterr().err
    assert status == EXIT_OK and "Traceback" not in err, err
    assert snapshot(outside) | {f"corpus/{k}": v for k, v in snapshot(outside_corpus).items()} == outside_before
    assert {k: v for k, v in snapshot(lib).items() if not k.startswith("photocluster")} == library_before
    assert {p: entry(p) for p in foreign} == foreign
    assert len(planted) >= 12


@pytest.mark.parametrize("own_file", ["fingerprints.pk", ".cluster-input", "last-run.json", ".photocluster"])
def test_temporaries_a_killed_write_left_of_any_own_file_are_swept_and_lookalike_links_kept(tmp_path, stand_in,
                                                                                          own_file):
    """A kill between the atomic writer's create and its rename leaves `.<name>.<token>.tmp`; the next run removes
    it, whichever of photocluster's own files it was writing. A symlink by such a name is not ours: it stays."""
    lib, out = _library(tmp_path), tmp_path / "out"
    assert cli(lib, "--out", out, "--model", "squeezenet") == EXIT_OK
    left = out / f".{own_file}.0123abcd.tmp"
    left.write_bytes(b"half written")
    lookalike = out / f".{own_file}.feedbeef.tmp"
    lookalike.symlink_to(tmp_path / "elsewhere")
    assert cli(lib, "--out", out, "--model", "squeezenet") == EXIT_OK
    assert not os.path.lexists(left)
    assert os.readlink(lookalike) == str(tmp_path / "elsewhere")
