"""A full disk or a read-only output folder: the run stops with one line and exit 3, and the previous cache
and cluster tree are intact.

The disk is a real small tmpfs mounted on the output folder (CI runs as root, so `mount` works). Where mounting
is not permitted, the test says so in its output and falls back to an os.symlink/os.write that raise ENOSPC;
it never skips. Read-only is a real read-only bind mount (root ignores chmod, so chmod would prove nothing).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from photocluster import layout
from photocluster.cli import EXIT_OUTPUT, main

from .conftest import save, scene
from .hostile import good_photos
from .standin import install as install_stand_in


def mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    ok = mount(*args, str(target))
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def snapshot(out: Path) -> tuple:
    """The cache bytes, the shown generation and its whole tree of links."""
    cache = hashlib.sha256((out / "fingerprints.pk").read_bytes()).hexdigest()
    shown = os.readlink(out / "clusters")
    tree = sorted((os.path.relpath(os.path.join(d, f), out), os.readlink(os.path.join(d, f)))
                  for d, _, files in os.walk(out / shown) for f in files if os.path.islink(os.path.join(d, f)))
    return cache, shown, tree, layout.read_layout(out)


def run(capsys, lib: Path, out: Path, *extra: str) -> tuple[int, str]:
    status = main([str(lib), "--out", str(out), "--model", "squeezenet", "--no-patterns", *extra])
    return status, capsys.readouterr().err


def one_line(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.startswith("photocluster: error:")]
    return len(lines) == 1 and "Traceback" not in err


def fill(folder: Path) -> None:
    """Write a filler file until the file system says it is full."""
    with open(folder / "filler", "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()


@pytest.mark.parametrize("what_fills", ["bytes", "inodes"])
def test_disk_full_stops_with_one_line_and_keeps_the_previous_output(tmp_path, stand_in, capsys, monkeypatch,
                                                                    record_property, what_fills):
    lib, out = tmp_path / "lib", tmp_path / "out"
    good_photos(lib, scenes=3)
    out.mkdir()
    # bytes: the cache save hits ENOSPC. inodes: the cache (one new inode) fits, the cluster tree does not.
    options = "size=4m" if what_fills == "bytes" else "size=4m,nr_inodes=256"  # the scene store needs some too
    with mounted(out, "-t", "tmpfs", "-o", options, "tmpfs") as real_disk:
        # As root (CI) the real tmpfs must work: the fallback is for unprivileged runs only.
        assert real_disk or os.geteuid() != 0, "mounting a tmpfs failed although running as root"
        record_property("disk_full_simulated_with", "a real tmpfs" if real_disk else "a patched call raising ENOSPC")
        assert run(capsys, lib, out)[0] == 0
        before = snapshot(out)
        for g in range(3, 9):  # new photos: a bigger cache and many more links
            save(scene(g), lib / "new" / f"scene{g}" / "a.jpg")
            save(scene(g).resize((200, 150)), lib / "new" / f"scene{g}" / "b.jpg")
        if real_disk and what_fills == "bytes":
            fill(out)
        elif real_disk:
            while True:  # use up the inodes, leaving two: the cache's temporary and one more
                try:
                    (out / f"inode-{len(os.listdir(out))}").touch()
                except OSError:
                    break
            for name in sorted(n for n in os.listdir(out) if n.startswith("inode-"))[:2]:
                os.unlink(out / name)
        else:
            def no_space(*a, **k):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(os, "symlink" if what_fills == "inodes" else "fsync", no_space)
        status, err = run(capsys, lib, out)
        assert status == EXIT_OUTPUT and one_line(err) and "No space left on device" in err, err
        after = snapshot(out)
        if what_fills == "bytes":
            assert after == before  # the cache and the tree are exactly the previous ones
        else:
            assert after[1:] == before[1:]  # the tree is the previous one; the cache (it fit) may be newer
        assert not [n for n in os.listdir(out) if n.endswith(".tmp") or n.startswith(".clusters.swap")]
        monkeypatch.undo()
        install_stand_in(monkeypatch)  # undo() took the stand-in model away too
        for name in os.listdir(out):
            if name == "filler" or name.startswith("inode-"):
                os.unlink(out / name)
        status, err = run(capsys, lib, out)
        assert status == 0, err
        assert len(layout.read_layout(out).clusters) == 9


def test_read_only_output_stops_with_one_line_and_keeps_the_previous_output(tmp_path, stand_in, capsys):
    lib, out = tmp_path / "lib", tmp_path / "out"
    good_photos(lib, scenes=3)
    assert run(capsys, lib, out)[0] == 0
    before = snapshot(out)
    save(scene(7), lib / "new.jpg")
    with mounted(out, "--bind", str(out)) as bound:
        assert bound or os.geteuid() != 0, "bind mount failed although running as root"
        if not bound:  # unprivileged: chmod works for a non-root user (root would ignore it)
            os.chmod(out, 0o555)
        assert not bound or mount("-o", "remount,ro,bind", str(out)), "read-only remount failed"
        status, err = run(capsys, lib, out)
        assert status == EXIT_OUTPUT and one_line(err), err
        assert ("Read-only file system" if bound else "Permission denied") in err
        assert snapshot(out) == before
        if not bound:
            os.chmod(out, 0o755)
    assert run(capsys, lib, out)[0] == 0  # writable again: it catches up
