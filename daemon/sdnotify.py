"""The systemd notify protocol over a unix datagram socket, with the stdlib only.

Modelled on systemd's man/notify-selfcontained-example.py. Without NOTIFY_SOCKET (not started by
systemd, or a Type= that does not listen) every call is a no-op, so callers never need to check.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog
from structlog.typing import FilteringBoundLogger

_log: FilteringBoundLogger = structlog.get_logger(__name__)


def _socket_address(notify_socket: str) -> str | None:
    # "@name" is a Linux abstract socket: the kernel spells it with a leading NUL byte.
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    return None


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid.strip() != str(pid):
        # The watchdog belongs to another process (e.g. our parent before an exec).
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    # Ping at half the timeout, as sd_watchdog_enabled(3) recommends.
    return usec / 2 / 1_000_000


class Notifier:
    """Sends READY/RELOADING/STOPPING/STATUS/WATCHDOG messages to the service manager."""

    def __init__(
        self, notify_socket: str | None, *, watchdog_interval: float | None = None
    ) -> None:
        self._notify_socket = notify_socket or None
        self._address = _socket_address(notify_socket) if notify_socket else None
        self._watchdog_interval = watchdog_interval
        self._error_logged = False

    @classmethod
    def from_environment(
        cls, env: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """Build from NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (default: os.environ)."""
        env = os.environ if env is None else env
        pid = os.getpid() if pid is None else pid
        return cls(env.get("NOTIFY_SOCKET"), watchdog_interval=_watchdog_interval(env, pid))

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening (NOTIFY_SOCKET was set)."""
        return self._notify_socket is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when off."""
        return self._watchdog_interval

    def ready(self) -> None:
        """Start-up or reload finished: the service is ready."""
        self.notify("READY=1")

    def reloading(self) -> None:
        """A reload started; MONOTONIC_USEC is required by Type=notify-reload."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """Shutdown started."""
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        """A one-line human-readable status for `systemctl status`."""
        # The protocol is newline-separated assignments: a newline would start a new one.
        self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Tell the watchdog the main loop is making progress."""
        self.notify("WATCHDOG=1")

    def notify(self, *assignments: str) -> None:
        """Send one datagram of KEY=VALUE lines; errors are logged once, never raised."""
        if self._notify_socket is None:
            return
        message = "\n".join(assignments).encode()
        try:
            if self._address is None:
                raise OSError(f"unsupported NOTIFY_SOCKET address {self._notify_socket!r}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop on a manager that is not reading.
                sock.setblocking(False)
                sock.connect(self._address)
                sock.sendall(message)
        except OSError as exc:
            if not self._error_logged:
                self._error_logged = True
                _log.warning(
                    "sd_notify_failed", socket=self._notify_socket, error=str(exc) or repr(exc)
                )
            return
        if self._error_logged:
            # Re-arm so that a later, separate outage is reported too.
            self._error_logged = False
            _log.info("sd_notify_recovered", socket=self._notify_socket)
