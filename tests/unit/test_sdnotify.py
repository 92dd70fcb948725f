"""sd_notify against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.sdnotify import Notifier


class Manager:
    """The service manager's end of NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        # Unix datagrams are delivered by the time sendall returns: never wait for them.
        self.sock.setblocking(False)

    def received(self) -> list[str]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return messages


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "notify")


@pytest.fixture
def manager(socket_path: str) -> Iterator[Manager]:
    listener = Manager(socket_path)
    yield listener
    listener.sock.close()


@pytest.fixture
def notifier(manager: Manager, socket_path: str) -> Notifier:
    return Notifier.from_environment({"NOTIFY_SOCKET": socket_path})


def test_ready_sends_ready(notifier: Notifier, manager: Manager) -> None:
    notifier.ready()

    assert manager.received() == ["READY=1"]


def test_stopping_sends_stopping(notifier: Notifier, manager: Manager) -> None:
    notifier.stopping()

    assert manager.received() == ["STOPPING=1"]


def test_watchdog_sends_watchdog(notifier: Notifier, manager: Manager) -> None:
    notifier.watchdog()

    assert manager.received() == ["WATCHDOG=1"]


def test_status_is_sent_as_a_single_line(notifier: Notifier, manager: Manager) -> None:
    notifier.status("syncing 3 connections\nsecond line")

    assert manager.received() == ["STATUS=syncing 3 connections second line"]


def test_reloading_carries_the_monotonic_clock_in_microseconds(
    notifier: Notifier, manager: Manager
) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    [message] = manager.received()
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket_address_is_used_for_an_at_sign() -> None:
    name = "stocksync-test-" + secrets.token_hex(6)
    manager = Manager("\0" + name)
    try:
        Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).ready()
        assert manager.received() == ["READY=1"]
    finally:
        manager.sock.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(manager: Manager) -> None:
    notifier = Notifier.from_environment({})

    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()

    assert not notifier.enabled
    assert manager.received() == []
    assert logs == []


def test_send_errors_are_logged_once_and_never_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "missing")})

    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
        notifier.stopping()

    [entry] = logs
    assert entry["event"] == "sd_notify_failed"
    assert entry["log_level"] == "warning"


def test_unsupported_socket_address_is_logged_once(manager: Manager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})

    with capture_logs() as logs:
        notifier.ready()
        notifier.ready()

    assert [entry["event"] for entry in logs] == ["sd_notify_failed"]
    assert "unsupported" in logs[0]["error"]


def test_a_new_outage_is_logged_after_a_recovery(socket_path: str) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": socket_path})

    with capture_logs() as logs:
        notifier.watchdog()
        manager = Manager(socket_path)
        notifier.watchdog()
        manager.sock.close()
        os.unlink(socket_path)
        notifier.watchdog()

    assert [entry["event"] for entry in logs] == [
        "sd_notify_failed",
        "sd_notify_recovered",
        "sd_notify_failed",
    ]


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"})

    assert notifier.watchdog_interval == 15.0


def test_watchdog_interval_applies_when_watchdog_pid_is_ours() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}

    assert Notifier.from_environment(env, pid=4242).watchdog_interval == 10.0


def test_watchdog_interval_is_none_when_watchdog_pid_is_another_process() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4243"}

    assert Notifier.from_environment(env, pid=4242).watchdog_interval is None


@pytest.mark.parametrize("usec", [None, "", "soon", "0", "-5"])
def test_watchdog_interval_is_none_without_a_valid_watchdog_usec(usec: str | None) -> None:
    env = {} if usec is None else {"WATCHDOG_USEC": usec}

    assert Notifier.from_environment(env).watchdog_interval is None


def test_default_environment_is_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, manager: Manager, socket_path: str
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", socket_path)
    monkeypatch.setenv("WATCHDOG_USEC", "8000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    notifier = Notifier.from_environment()
    notifier.ready()

    assert notifier.watchdog_interval == 4.0
    assert manager.received() == ["READY=1"]
