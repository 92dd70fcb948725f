"""Katana stock for a SKU view: `StockCache` (a few variants' stock read on demand and kept
briefly, so the page never hangs on Katana's rate limit) and one Katana location's row with the
quantity formula spelled out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime

import structlog

from daemon.domain.models import Quantity
from daemon.domain.quantity import QuantityPolicy, available, kit_potential
from daemon.domain.stock import StockTable
from daemon.logs import describe_error
from daemon.status.data import KatanaStock, format_quantity

log = structlog.get_logger(__name__)

# A SKU view reads Katana's /inventory for that SKU's variants. Katana allows 60 requests a
# minute for the whole account and the sync needs them: a page refreshing every few seconds
# costs at most one request per SKU per STOCK_CACHE_SECONDS, and never waits long for one.
STOCK_CACHE_SECONDS = 30.0
STOCK_READ_WAIT_SECONDS = 8.0
STOCK_CACHE_ENTRIES = 64

StockReader = Callable[[Collection[int]], Awaitable[StockTable]]


class StockCache:
    """Katana stock of a few variants, read on demand for SKU views and kept briefly.

    One read per set of variants at a time (a page open in several tabs shares it); a caller
    waits at most `wait` seconds and then sees the previous read (or none) while the read goes
    on in the background, so the page never hangs on Katana's rate limit.
    """

    def __init__(
        self,
        *,
        ttl: float = STOCK_CACHE_SECONDS,
        wait: float = STOCK_READ_WAIT_SECONDS,
        entries: int = STOCK_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.wait = wait
        self.entries = entries
        self._clock = clock
        # variants -> (monotonic time read, wall time read, stock or None, error or None)
        self._done: dict[frozenset[int], tuple[float, datetime, StockTable | None, str | None]] = {}
        self._reading: dict[frozenset[int], asyncio.Task[None]] = {}

    async def read(
        self, variants: Collection[int], reader: StockReader
    ) -> tuple[StockTable | None, datetime | None, str | None]:
        """(stock, when it was read, error) for these variants; stock None if never read."""
        key = frozenset(variants)
        cached = self._done.get(key)
        fresh = cached is not None and self._clock() - cached[0] < self.ttl
        if not fresh:
            task = self._reading.get(key)
            if task is None:
                task = asyncio.create_task(self._read(key, reader))
                self._reading[key] = task
                task.add_done_callback(lambda _t: self._reading.pop(key, None))
            # shield: a page that stops waiting does not cancel a read others will use.
            done, _ = await asyncio.wait({asyncio.shield(task)}, timeout=self.wait)
            cached = self._done.get(key)
            if not done and cached is None:
                return None, None, "Katana's stock is still being read: refresh shortly."
        if cached is None:  # pragma: no cover - a finished read always records something
            return None, None, "Katana's stock could not be read."
        _, read_at, stock, error = cached
        return stock, read_at, error

    async def _read(self, key: frozenset[int], reader: StockReader) -> None:
        read_at = datetime.now(UTC)
        try:
            stock: StockTable | None = await reader(sorted(key))
            error = None
        except Exception as exc:  # whatever it is, the page says so and keeps working
            log.warning("status_stock_read_failed", variants=len(key), error=describe_error(exc))
            previous = self._done.get(key)
            # The previous read, if any, stays on show under its own time.
            stock, read_at = (previous[2], previous[1]) if previous is not None else (None, read_at)
            error = f"Katana's stock could not be read just now ({describe_error(exc)})"
        self._done[key] = (self._clock(), read_at, stock, error)
        while len(self._done) > self.entries:
            del self._done[next(iter(self._done))]


def _katana_stock(
    location_id: int,
    name: str,
    mapped: bool,
    in_stock: Quantity,
    committed: Quantity,
    potential: Quantity | None,
    *,
    is_kit: bool,
) -> KatanaStock:
    """One location's row and the formula spelled out (PRODUCT.md §1, no buffer)."""
    fmt = format_quantity
    if is_kit:
        formula = (
            f"{fmt(in_stock)} in stock + {fmt(kit_potential(potential, is_kit=True))} potential"
            f" − {fmt(committed)} committed"
        )
    else:
        formula = f"{fmt(in_stock)} in stock − {fmt(committed)} committed"
    try:
        result: int | None = available(
            in_stock, committed, kit_potential(potential, is_kit=is_kit), QuantityPolicy()
        )
    except ValueError:
        result = None
    return KatanaStock(
        location_id=location_id,
        location=name,
        mapped=mapped,
        in_stock=fmt(in_stock),
        committed=fmt(committed),
        potential=None if potential is None else fmt(potential),
        formula=formula,
        result=result,
    )
