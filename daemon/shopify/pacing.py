"""Cost-based pacing for Shopify's GraphQL leaky bucket, learned from every response.

Shopify charges each query its requested cost up front from a bucket that refills at a fixed
restore rate. The bucket's size and rate depend on the shop's plan, which stocksync never
assumes: every response's `extensions.cost.throttleStatus` says what they are. Before a query is
sent, the bucket is modelled forward from the last observation and the sender waits until it
holds the query's cost, so a THROTTLED answer is the exception rather than the pacing mechanism.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Waits shorter than this are float noise from the refill arithmetic, not a reason to sleep.
_NEGLIGIBLE_WAIT = 1e-3


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    """The bucket as Shopify reported it: size, points left, points restored per second."""

    maximum_available: float
    currently_available: float
    restore_rate: float


@dataclass(frozen=True, slots=True)
class QueryCost:
    """A response's `extensions.cost`: what the query asked for and the bucket after it."""

    requested: float | None
    actual: float | None
    throttle_status: ThrottleStatus | None


def _number(value: object) -> float | None:
    # JSON booleans are ints in Python; a cost is never a boolean.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _throttle_status(status: object) -> ThrottleStatus | None:
    if not isinstance(status, Mapping):
        return None
    maximum = _number(status.get("maximumAvailable"))
    available = _number(status.get("currentlyAvailable"))
    rate = _number(status.get("restoreRate"))
    if maximum is None or available is None or rate is None:
        return None
    # A bucket without size or refill cannot be modelled: better unpaced than wedged.
    if maximum <= 0 or rate <= 0:
        return None
    return ThrottleStatus(maximum, available, rate)


def parse_cost(extensions: object) -> QueryCost | None:
    """Read `extensions.cost` from a GraphQL response; None when absent."""
    if not isinstance(extensions, Mapping):
        return None
    cost = extensions.get("cost")
    if not isinstance(cost, Mapping):
        return None
    return QueryCost(
        requested=_number(cost.get("requestedQueryCost")),
        actual=_number(cost.get("actualQueryCost")),
        throttle_status=_throttle_status(cost.get("throttleStatus")),
    )


def throttle_wait(requested: float, status: ThrottleStatus) -> float:
    """Seconds to refill for `requested`: (requested − currentlyAvailable) / restoreRate."""
    target = min(requested, status.maximum_available)
    return max(0.0, (target - status.currently_available) / status.restore_rate)


class CostBucket:
    """A model of one app-and-shop bucket, shared by every task using one client."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._status: ThrottleStatus | None = None
        self._level = 0.0
        self._level_at = 0.0
        # Points reserved by queries not answered yet. An answer reports the bucket as Shopify
        # saw it when that one query was charged; queries still in flight may be charged after
        # it, so they stay debited (at worst counted twice: a little slower, never THROTTLED).
        self._in_flight = 0.0
        # Reservations queue in arrival order, so a costly query is not starved by cheap ones.
        self._lock = asyncio.Lock()

    @property
    def status(self) -> ThrottleStatus | None:
        """The last throttle status Shopify reported, or None before the first response."""
        return self._status

    def observe(self, status: ThrottleStatus) -> None:
        """Adopt Shopify's latest view of the bucket, less what queries in flight reserved."""
        self._status = status
        self._level = status.currently_available - self._in_flight
        self._level_at = self._clock()

    def settle(self, cost: float) -> None:
        """A query reserved with `cost` was answered (or failed): it is no longer in flight."""
        self._in_flight = max(0.0, self._in_flight - cost)

    def available(self) -> float | None:
        """Points the bucket holds now, restored since the last observation; None if unknown."""
        if self._status is None:
            return None
        restored = self._status.restore_rate * max(0.0, self._clock() - self._level_at)
        return min(self._status.maximum_available, self._level + restored)

    def wait_for(self, cost: float) -> float:
        """Seconds until the modelled bucket holds `cost` (0 when it does, or when unknown)."""
        level = self.available()
        if level is None or self._status is None:
            return 0.0
        # A query larger than the bucket can never fit: a full bucket is the best there is.
        target = min(cost, self._status.maximum_available)
        return max(0.0, (target - level) / self._status.restore_rate)

    @asynccontextmanager
    async def spend(self, cost: float) -> AsyncIterator[None]:
        """Reserve `cost` for one query, held as in flight until the query is answered."""
        await self.reserve(cost)
        try:
            yield
        finally:
            self.settle(cost)

    async def reserve(self, cost: float) -> float:
        """Wait until the bucket holds `cost`, then take it; returns the seconds waited.

        The points count as in flight until `settle(cost)` (`spend` pairs the two).
        """
        waited = 0.0
        async with self._lock:
            while (wait := self.wait_for(cost)) > _NEGLIGIBLE_WAIT:
                await self._sleep(wait)
                waited += wait
            level = self.available()
            if level is not None:
                # Debit now so that the next task's reservation sees this query's charge before
                # Shopify's answer (with the true level) arrives.
                self._level = level - cost
                self._level_at = self._clock()
            self._in_flight += cost
        return waited
