"""open_regular: opening a file as a stream without blocking on a FIFO, and without following a link unless asked."""
import os
import socket

import pytest

from photocluster.fsutil import NotAFileError, open_regular

from .conftest import fails_after


def _plant(path, kind, tmp_path):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        return server
    elif kind == "link to a file":
        (tmp_path / "outside.txt").write_text("{}")
        path.symlink_to(tmp_path / "outside.txt")
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")


KINDS = ["fifo", "folder", "socket", "link to a file", "link to /dev/zero"]


@pytest.mark.parametrize("kind", KINDS)
def test_open_regular_refuses_all_but_a_regular_file_at_once(tmp_path, kind):
    path = tmp_path / "state"
    keep = _plant(path, kind, tmp_path)
    with fails_after(10, "opening it"), pytest.raises(NotAFileError):
        open_regular(path)
    del keep


def test_open_regular_reads_a_file_and_follows_a_link_only_when_asked(tmp_path):
    (tmp_path / "real").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with open_regular(tmp_path / "real") as fh:
        assert fh.read() == b"data"
    with open_regular(tmp_path / "link", follow_symlinks=True) as fh:
        assert fh.read() == b"data"
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "fifo-link").symlink_to(tmp_path / "fifo")
    with fails_after(10, "opening it"), pytest.raises(NotAFileError):
        open_regular(tmp_path / "fifo-link", follow_symlinks=True)
