"""Tell systemd how the daemon is doing: READY=1, STATUS=..., WATCHDOG=1, WATCHDOG_USEC=, RELOADING=1, STOPPING=1.

The messages go through cysystemd, a maintained binding whose wheels carry libsystemd's own sd_notify(3), so the
socket protocol (abstract sockets, credentials) is exactly systemd's. sdnotify (pure Python) has not been released
since 2017, and systemd-python needs libsystemd's headers and a compiler to install from PyPI.

Outside systemd ($NOTIFY_SOCKET unset) every call does nothing, and cysystemd is not even imported.
"""
from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


def watchdog_usec() -> int | None:
    """The unit's WatchdogSec= in microseconds, when systemd watches this process; else None.

    The rule of sd_watchdog_enabled(3): $WATCHDOG_USEC is meant for this process when $WATCHDOG_PID is unset or
    is our pid. cysystemd does not wrap that function, and it is only this reading of two variables.
    """
    usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec)


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings that systemd asked for (half of WatchdogSec=), or None."""
    usec = watchdog_usec()
    return None if usec is None else usec / 1e6 / 2


class ServiceNotifier:
    """sd_notify messages of one service. STATUS= is only sent when it changes, WATCHDOG=1 only when due."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self.ping_interval = watchdog_interval() if self.enabled else None
        self.unit_usec = watchdog_usec() if self.enabled else None  # the unit's own WatchdogSec=
        self._allowed_usec = self.unit_usec
        self._last_ping = float("-inf")
        self._last_status: str | None = None
        self._send = self._binding() if self.enabled else None

    @staticmethod
    def _binding():
        from cysystemd.daemon import Notification, notify

        def send(name: str, value: str | None = None) -> None:
            try:
                notify(Notification[name], value, return_exceptions=False)
            except Exception as exc:  # noqa: BLE001 - a lost status message must never stop the daemon
                log.debug("sd_notify %s failed: %s", name, exc)

        return send

    def ready(self) -> None:
        self._notify("READY")

    def reloading(self) -> None:
        self._notify("RELOADING")

    def stopping(self) -> None:
        self._notify("STOPPING")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self._notify("STATUS", text)

    def watchdog(self) -> None:
        """Ping the service manager's watchdog, at most every ping_interval seconds."""
        if self.ping_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.ping_interval:
            self._last_ping = now
            self._notify("WATCHDOG")

    def extend_watchdog(self, seconds: float) -> None:
        """Let up to `seconds` pass before the next ping, never less than the unit's WatchdogSec=.

        For a stage that cannot ping (clustering a large library): WATCHDOG_USEC= (systemd >= 236) resets the
        watchdog's timeout until the next WATCHDOG_USEC=, and restarts its timer. A hung stage is still killed,
        only later. EXTEND_TIMEOUT_USEC= would not do: it extends the start, runtime and stop timeouts only.
        Sent only when the value changes: the pipeline asks often, and a notify socket that nobody reads fills up
        (sd_notify then blocks).
        """
        if self.unit_usec is None:
            return
        usec = max(self.unit_usec, int(seconds * 1e6))
        if usec != self._allowed_usec:
            self._allowed_usec = usec
            self._notify("WATCHDOG_USEC", str(usec))

    def restore_watchdog(self) -> None:
        """Back to the unit's own WatchdogSec= (after extend_watchdog)."""
        self.extend_watchdog(0)

    def _notify(self, name: str, value: str | None = None) -> None:
        if self._send is not None:
            self._send(name, value)
