"""The process-wide Katana request limiter.

Katana allows 60 requests per 60 s per account, and every part of the daemon (delta polls,
catalogue refreshes, inventory reads, reconciliation) shares that one budget. One `RateLimiter`
is created per process and every request holds a place in it.

Algorithm: a sliding-window log of when requests *ended*. A request holds a place in the budget
from before it is sent until its answer arrives (`async with limiter.request():`), and then for
one window after that answer. Katana counts arrivals, and a request arrives somewhere between
those two moments — possibly late, when it queued for a connection — so counting from its end
guarantees what Katana enforces, at most N arrivals in ANY 60 s window, however long requests
queue. (Counting from the start is not enough: a burst admitted at once queues for the
session's few connections, so some of it arrives seconds after its start, inside the window of
the next burst.) Unlike a token bucket with capacity N (which allows up to 2N-1 arrivals in some
60 s span: a full burst, then the refill), a log still lets a cold start burst N requests. The
window is widened by a little slack for the two clocks.

On top of its own count it obeys the server: `X-Ratelimit-Remaining: 0` holds every caller until
`X-Ratelimit-Reset`, and a 429's Retry-After holds everyone through `pause()`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

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
        self._in_flight = 0
        self._ends: deque[float] = deque()  # when recent requests ended, oldest first
        self._ended = asyncio.Event()  # set whenever a request ends
        self._blocked_until = -math.inf
        # Fair (FIFO) and held while waiting: the first waiter is the next to start, and no
        # caller can slip past it between its wake-up and its start.
        self._lock = asyncio.Lock()

    @property
    def requests_per_minute(self) -> int:
        """The budget this limiter keeps to."""
        return self._budget

    def used(self) -> float:
        """The share of the budget taken now: requests in flight or ended within the window."""
        now = self._clock()
        recent = sum(1 for end in self._ends if end + self._span > now + _EPSILON)
        return (self._in_flight + recent) / self._budget

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """Hold one place in the budget while a request is sent and until its answer arrives."""
        await self._admit()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._ends.append(self._clock())
            self._ended.set()

    async def _admit(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._ends and self._ends[0] + self._span <= now + _EPSILON:
                    self._ends.popleft()
                delay = self._blocked_until - now
                if self._in_flight + len(self._ends) >= self._budget:
                    if not self._ends:
                        # The whole budget is in flight: no place frees before an answer.
                        self._ended.clear()
                        await self._ended.wait()
                        continue
                    delay = max(delay, self._ends[0] + self._span - now)
                if delay <= _EPSILON:
                    self._in_flight += 1
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
