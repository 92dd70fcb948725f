"""The SKU view's Katana stock cache: one read per period, never a hung page."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from daemon.domain.models import StockRow
from daemon.domain.stock import StockTable
from daemon.katana.client import KatanaUnavailable
from daemon.status.model import StockCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Katana:
    """Answers /inventory for the cache, counting reads; can fail or stall."""

    def __init__(self) -> None:
        self.reads = 0
        self.fail = False
        self.stall: asyncio.Event | None = None

    async def inventory(self, variant_ids: Collection[int]) -> StockTable:
        self.reads += 1
        if self.stall is not None:
            await self.stall.wait()
        if self.fail:
            raise KatanaUnavailable("Katana answered 503")
        return StockTable(StockRow(v, 1, 5 + self.reads, 1) for v in variant_ids)


async def test_a_sku_is_read_from_katana_once_per_cache_period() -> None:
    clock, katana = Clock(), Katana()
    cache = StockCache(ttl=30, clock=clock)

    first, _, _ = await cache.read([7], katana.inventory)
    again, _, _ = await cache.read([7], katana.inventory)
    clock.now += 31
    later, _, _ = await cache.read([7], katana.inventory)

    assert katana.reads == 2
    assert first is again
    assert later is not None
    assert later.quantities_at(7) == {1: (7, 1, None)}


async def test_pages_asking_at_once_share_one_read() -> None:
    katana = Katana()
    katana.stall = asyncio.Event()
    cache = StockCache(wait=5)

    pages = [asyncio.create_task(cache.read([7], katana.inventory)) for _ in range(3)]
    await asyncio.sleep(0)
    katana.stall.set()
    answers = await asyncio.gather(*pages)

    assert katana.reads == 1
    assert all(stock is answers[0][0] for stock, _, _ in answers)


async def test_a_slow_read_never_holds_the_page_and_serves_the_next_one() -> None:
    katana = Katana()
    katana.stall = asyncio.Event()
    cache = StockCache(wait=0.01)

    stock, read_at, error = await cache.read([7], katana.inventory)
    assert (stock, read_at) == (None, None)
    assert error is not None
    assert "still being read" in error

    katana.stall.set()
    await asyncio.sleep(0.01)
    stock, read_at, error = await cache.read([7], katana.inventory)
    assert stock is not None
    assert read_at is not None
    assert error is None
    assert katana.reads == 1


async def test_a_failed_read_says_why_and_keeps_showing_the_previous_one() -> None:
    clock, katana = Clock(), Katana()
    cache = StockCache(ttl=30, clock=clock)
    before, before_at, _ = await cache.read([7], katana.inventory)

    clock.now += 31
    katana.fail = True
    stock, read_at, error = await cache.read([7], katana.inventory)

    assert stock is before
    assert read_at == before_at  # the figures shown are the earlier read's, and say so
    assert error is not None
    assert "KatanaUnavailable: Katana answered 503" in error
