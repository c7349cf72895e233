"""What reaches the terminal: photocluster's own log lines, and nothing of the libraries it starts.

setup_logging() sends log lines to stderr as "photocluster: LEVEL: message" (under systemd "LEVEL logger:
message": the journal stamps each line itself). At the default verbosity only photocluster's loggers speak at
INFO; other libraries' records show from WARNING up, and all of them with -v.

hold_native_stderr() keeps what native code writes straight to file descriptor 2 off the terminal: TensorFlow's
C++ start-up lines ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
"I0000 ... oneDNN custom operations are on ..."), which TF_CPP_MIN_LOG_LEVEL no longer silences since
TensorFlow logs through absl (2.21). -v shows them afterwards as DEBUG lines.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

NOISY_LOGGERS = ("tensorflow", "absl", "h5py", "PIL", "filelock", "watchdog")


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (pytest's capture, or the terminal that
    hold_native_stderr() keeps open while it holds file descriptor 2)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def _ours_or_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name == "photocluster" or record.name.startswith(
        "photocluster.")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    # The journal stamps each line itself; on a terminal a short prefix is enough.
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd else "photocluster: %(levelname)s: %(message)s"
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(fmt))
    if not verbose:  # a library's INFO ("generated new fontManager") is not news to a photocluster user
        handler.addFilter(_ours_or_warning)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


_holding = threading.Lock()  # one hold at a time: file descriptor 2 is the whole process's


@contextlib.contextmanager
def hold_native_stderr() -> Iterator[None]:
    """Hold what is written to file descriptor 2 inside the block; log it afterwards at DEBUG ("native: ...").

    File descriptor 2 is pointed at a temporary file for the block. Python's own writes to sys.stderr meanwhile,
    from any thread (photocluster's log lines, warnings), still go to the terminal as they happen: sys.stderr is
    swapped for a stream on a copy of the real descriptor first. What a native crash inside the block wrote is
    lost with the process; the exit status still tells.
    """
    with _holding:
        try:
            terminal = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep quiet
            terminal = None
        if terminal is None:
            yield
            return
        try:
            with tempfile.TemporaryFile() as held:
                swapped = _swap_stderr(terminal)  # before fd 2 moves, so no line of Python's lands in `held`
                os.dup2(held.fileno(), 2)
                try:
                    yield
                finally:
                    os.dup2(terminal, 2)
                    if swapped is not None:
                        sys.stderr = swapped.original
                        swapped.close()  # a thread still holding it writes to the restored stderr
                    held.seek(0)
                    _log_held(held.read())
        finally:
            os.close(terminal)


def _swap_stderr(terminal_fd: int) -> _Terminal | None:
    """Point sys.stderr at `terminal_fd` if it writes to file descriptor 2 (not when a test captures it)."""
    try:
        on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        on_fd2 = False
    if not on_fd2:
        return None
    sys.stderr.flush()
    sys.stderr = _Terminal(terminal_fd, sys.stderr)
    return sys.stderr


class _Terminal(io.TextIOBase):
    """sys.stderr while fd 2 is held: writes go to a copy of the real descriptor, and once closed to the
    original sys.stderr, so a write that races the end of the hold never reaches a closed or reused descriptor.
    (contextlib.redirect_stderr swaps the object but has no such hand-over.)"""

    def __init__(self, fd: int, original):
        super().__init__()
        self.original = original
        self._fd: int | None = fd
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return self.original.encoding

    @property
    def errors(self) -> str:
        return self.original.errors

    def isatty(self) -> bool:
        return self.original.isatty()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self._fd is None:
                return self.original.write(text)
            data = text.encode(self.original.encoding or "utf-8", "backslashreplace")
            while data:
                data = data[os.write(self._fd, data):]
        return len(text)

    def close(self) -> None:
        with self._lock:
            self._fd = None  # the descriptor belongs to hold_native_stderr(), which closes it


def _log_held(output: bytes) -> None:
    for line in output.decode("utf-8", "replace").splitlines():
        if line.strip():
            log.debug("native: %s", line)
