"""The process-wide Katana request limiter.

Katana allows 60 requests per 60 s per account, and every part of the daemon (delta polls,
catalogue refreshes, inventory reads, reconciliation) shares that one budget. One `RateLimiter`
is created per process and every request waits on it before it starts.

Algorithm: a sliding-window log. It remembers when each of the last N requests started and lets
a new one start only when fewer than N started in the trailing window. Unlike a token bucket
with capacity N (which allows up to 2N-1 starts in some 60 s span: a full burst, then the
refill), this guarantees the property Katana enforces — at most N starts in ANY 60 s window —
whatever algorithm Katana's side uses, while still letting a cold start burst N requests. The
window is widened by a little slack because Katana counts arrivals, not our start times, and
network jitter can bring two starts 60.0 s apart within 60 s of each other on arrival.

On top of its own count it obeys the server: `X-Ratelimit-Remaining: 0` holds every caller until
`X-Ratelimit-Reset`, and a 429's Retry-After holds everyone through `pause()`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Differences below a microsecond are float noise, not a reason to sleep again.
_EPSILON = 1e-6
# Reset header magnitudes: epoch milliseconds are ~1.7e12 today, epoch seconds ~1.7e9. Anything
# below 1e8 (1973 as epoch seconds) can only be a relative "seconds until reset".
_EPOCH_MILLISECONDS_FLOOR = 1e11
_EPOCH_SECONDS_FLOOR = 1e8
# Longest hold a single Retry-After may impose: a bogus header must not freeze the daemon.
MAX_PAUSE_SECONDS = 900.0


class RateLimiter:
    """Keeps the whole process within `requests_per_minute` Katana requests per minute."""

    def __init__(
        self,
        requests_per_minute: int,
        *,
        window: float = 60.0,
        slack: float = 1.0,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {requests_per_minute!r}")
        self._budget = requests_per_minute
        self._span = window + slack
        self._clock = clock
        # Only to turn the server's epoch reset time into a delay; waiting uses `clock`.
        self._wall = wall
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._blocked_until = -math.inf
        # Fair (FIFO) and held while waiting: the first waiter is the next to start, and no
        # caller can slip past it between its wake-up and its start.
        self._lock = asyncio.Lock()

    @property
    def requests_per_minute(self) -> int:
        """The budget this limiter keeps to."""
        return self._budget

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it as started."""
        async with self._lock:
            while True:
                now = self._clock()
                delay = self._delay(now)
                if delay <= _EPSILON:
                    self._starts.append(now)
                    return
                await self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Start no request for `seconds` (capped), e.g. after a 429's Retry-After."""
        seconds = min(max(seconds, 0.0), MAX_PAUSE_SECONDS)
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read a response's rate-limit headers; hold everyone until the reset when none remain."""
        remaining = _number(_header(headers, "x-ratelimit-remaining"))
        if remaining is None or remaining > 0:
            return
        delay = self.seconds_until_reset(headers)
        # No usable reset: one full window is always long enough for Katana's 60 s window.
        self.pause(self._span if delay is None else delay)

    def seconds_until_reset(self, headers: Mapping[str, str]) -> float | None:
        """Seconds until `X-Ratelimit-Reset` (epoch ms, epoch s or relative s), at most a window."""
        raw = _number(_header(headers, "x-ratelimit-reset"))
        if raw is None:
            return None
        if raw >= _EPOCH_MILLISECONDS_FLOOR:
            delay = raw / 1000.0 - self._wall()
        elif raw >= _EPOCH_SECONDS_FLOOR:
            delay = raw - self._wall()
        else:
            delay = raw
        # Katana's window is 60 s: a reset further out than one window means our clock and
        # Katana's disagree, and one window is always enough.
        return min(max(delay, 0.0), self._span)

    def _delay(self, now: float) -> float:
        while self._starts and self._starts[0] + self._span <= now + _EPSILON:
            self._starts.popleft()
        delay = self._blocked_until - now
        if len(self._starts) >= self._budget:
            delay = max(delay, self._starts[0] + self._span - now)
        return delay


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp gives a case-insensitive multidict; plain dicts (tests, other callers) may not be.
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
