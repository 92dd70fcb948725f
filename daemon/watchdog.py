"""systemd's watchdog, fed only while the daemon makes progress (arq's heartbeat).

A ping proves more than a live event loop: the main loop is waiting for its next cycle, or work
is moving (a cycle turned, an API request completed). A cycle hung inside its lock (a request
that never returns, a deadlock) makes no progress, so the pings stop and systemd restarts the
daemon after WatchdogSec; a long full sync keeps completing requests, so it is never mistaken
for a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class Watchdog:
    """Pings every `interval` while there was progress within the watchdog timeout."""

    def __init__(
        self,
        ping: Callable[[], None],
        interval: float,
        activity: Callable[[], float],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._ping = ping
        self._interval = interval
        # systemd pings at half the timeout: no progress for the whole timeout is a hang.
        self._stuck_after = 2 * interval
        # A count that grows with work done (API requests completed, say).
        self._activity = activity
        self._clock = clock
        self._sleep = sleep
        self._last_progress = clock()
        self._seen = activity()
        self._idle = False
        self._starved = False

    def progress(self) -> None:
        """The main loop turned (a cycle started or ended)."""
        self._last_progress = self._clock()

    def idle(self, waiting: bool) -> None:
        """The main loop is (or no longer is) waiting for its next cycle: healthy by itself."""
        self._idle = waiting
        self.progress()

    def healthy(self) -> bool:
        """Whether the daemon made progress lately (or is waiting, as it should)."""
        now = self._clock()
        activity = self._activity()
        if activity != self._seen:
            self._seen, self._last_progress = activity, now
        return self._idle or now - self._last_progress < self._stuck_after

    async def run(self) -> None:
        """Ping while healthy; say once when the pings stop, and when they resume."""
        while True:
            await self._sleep(self._interval)
            if self.healthy():
                if self._starved:
                    log.info("watchdog_fed_again")
                    self._starved = False
                self._ping()
            elif not self._starved:
                self._starved = True
                log.error(
                    "watchdog_starved",
                    seconds_without_progress=round(self._clock() - self._last_progress),
                    detail="no cycle turned and no API request completed; systemd will restart",
                )
