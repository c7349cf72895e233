"""sd_notify messages over a real AF_UNIX datagram socket set as $NOTIFY_SOCKET, as systemd sets it."""
from __future__ import annotations

import os
import socket
import time

import pytest

from photocluster.notify import ServiceNotifier, watchdog_interval


@pytest.fixture
def listener(tmp_path, monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def received(sock) -> list[str]:
    messages = []
    sock.settimeout(0.2)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except socket.timeout:
        return messages


def test_ready_status_stopping(listener):
    notifier = ServiceNotifier()
    notifier.ready()
    notifier.status("12,345 photos, 87 clusters, idle")
    notifier.status("12,345 photos, 87 clusters, idle")  # unchanged: not sent again
    notifier.reloading()
    notifier.stopping()
    notifier.watchdog()  # WatchdogSec not set: no pings
    assert received(listener) == ["READY=1", "STATUS=12,345 photos, 87 clusters, idle", "RELOADING=1", "STOPPING=1"]


def test_watchdog_pings_at_half_the_interval(listener, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = ServiceNotifier()
    assert notifier.ping_interval == pytest.approx(0.1)
    notifier.watchdog()
    notifier.watchdog()  # too soon
    time.sleep(0.12)
    notifier.watchdog()
    assert received(listener) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_meant_for_another_process_is_ignored(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None


def test_abstract_socket(monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"photocluster-test-{os.getpid()}"
    sock.bind("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        ServiceNotifier().ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_outside_systemd_nothing_is_sent_and_nothing_fails(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = ServiceNotifier()
    assert not notifier.enabled
    notifier.ready()
    notifier.status("x")
    notifier.stopping()


def test_a_vanished_socket_does_not_stop_the_daemon(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    ServiceNotifier().ready()  # logged at debug level, never raised


def test_a_long_stage_extends_the_watchdog_and_the_unit_value_comes_back(listener, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = ServiceNotifier()
    notifier.extend_watchdog(0.05)  # less than the unit's 0.2 s: nothing to extend
    notifier.extend_watchdog(600)
    notifier.extend_watchdog(600)  # unchanged: not sent again (an unread socket would fill up)
    notifier.restore_watchdog()
    notifier.restore_watchdog()
    assert received(listener) == ["WATCHDOG_USEC=600000000", "WATCHDOG_USEC=200000"]


def test_without_a_watchdog_nothing_is_extended(listener):
    notifier = ServiceNotifier()
    notifier.extend_watchdog(600)
    notifier.restore_watchdog()
    assert received(listener) == []
