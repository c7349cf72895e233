"""Stopping on SIGINT and SIGTERM: within a few seconds whatever the process is doing, and without losing work.

A stop signal sets a flag that the long loops poll (`stop_requested`, passed down as `should_stop`): the
fingerprinting looks at it between batches, the daemon's wait for its worker several times a second. Code that
holds work not yet saved says so with `keeping_work(...)`; while it does, a signal only sets the flag, and that
code saves and returns.

Everywhere else nothing is at risk, and several steps cannot poll: importing TensorFlow (seconds), clustering,
building the cluster tree, writing summaries, waiting for another run's lock. There the handler raises
`Interrupted` at once. That is safe because every file photocluster writes is written atomically (a temporary
file renamed into place): an interrupted write leaves the old file, and the next run sweeps a leftover
temporary file or half-built tree.

A second Ctrl-C (SIGINT) stops at once even while work is being saved: the user asked twice. A second SIGTERM
changes nothing (systemd follows it with SIGKILL when it runs out of patience).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None  # the first stop signal of this process, while handlers are installed
_unsaved: list[Callable[[], bool]] = []  # one predicate per `keeping_work` block that is open
_forced = False  # a second Ctrl-C came: nothing more is saved


class Interrupted(BaseException):
    """A stop signal ended the run. A BaseException, like KeyboardInterrupt, so no `except Exception` stops it.

    `saved` is the number of new fingerprints saved before stopping, when known.
    """

    def __init__(self, signum: int, saved: int | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.saved = saved

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def stop_requested() -> bool:
    return _received is not None


def raise_if_stopped(saved: int | None = None) -> None:
    """Raise Interrupted when a stop signal came (for a one-shot run that stopped early and saved)."""
    if _received is not None:
        raise Interrupted(_received, saved)


def forced() -> bool:
    """True after a second Ctrl-C: the user asked to stop at once, so no more saving on the way out."""
    return _forced


def work_at_risk() -> bool:
    return any(unsaved() for unsaved in _unsaved)


@contextlib.contextmanager
def keeping_work(unsaved: Callable[[], bool]) -> Iterator[None]:
    """While `unsaved()` is true, a stop signal only sets the flag: the code inside polls it, saves and returns."""
    _unsaved.append(unsaved)
    try:
        yield
    finally:
        _unsaved.remove(unsaved)


@contextlib.contextmanager
def stop_signals(on_stop: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as the module docstring says, inside the block (main thread only)."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; the caller's own ones stay
        return

    def handle(signum: int, frame) -> None:
        global _received, _forced
        if _received is not None:
            if signum == signal.SIGINT:
                _forced = True
                raise Interrupted(signum)  # a second Ctrl-C: stop now, whatever is lost
            return
        _received = signum
        on_stop()
        if not work_at_risk():
            raise Interrupted(signum)

    global _forced
    outer, outer_forced = _received, _forced
    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received, _forced = outer, outer_forced
