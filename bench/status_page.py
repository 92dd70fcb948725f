"""The status page's render time on a large shop.

`python -m bench.status_page [VARIANTS] [PROBLEMS]` (default 100,000 and 5,000).

Builds, in a fresh interpreter, what a daemon with a 100,000-variant catalogue holds (the Katana
catalogue, the mapping of one connection onto three Shopify locations, six hours of activity)
and a real state database carrying 5,000 problems across the page's groups, then times the
page's request work end to end: gathering the data (SQLite reads included) and rendering the
HTML (or the JSON). Printed as figures, never asserted: timings belong in bench/RESULTS.md.

The 5,000 problems are split as a large shop shows them: half rejected by Shopify (not stocked
at a location), a fifth unreadable in Katana, a fifth Katana-only SKUs (unmapped), and the rest
shadowed SKUs and untracked Shopify variants, which the mapping itself reports.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import structlog

from daemon.config import load_settings
from daemon.domain.models import KatanaVariant, PlannedPush, Problem, ShopifyVariant, StockRow
from daemon.domain.stock import StockTable
from daemon.katana.client import KatanaClient
from daemon.katana.models import Catalogue, KatanaLocation
from daemon.katana.ratelimit import RateLimiter
from daemon.logs import HealthLog
from daemon.memory import tune_garbage_collector
from daemon.metrics import Metrics
from daemon.status.data import jsonable
from daemon.status.model import StatusModel, StatusSources
from daemon.status.page import render_page
from daemon.store import StateStore
from daemon.sync.context import Clients
from daemon.sync.engine import Engine
from daemon.sync.mappings import build_connection_mapping
from daemon.sync.reconcile import NIGHTLY

VARIANTS = 100_000
PROBLEMS = 5_000
TARGET_SECONDS = 0.3
RUNS = 10
CONNECTION = "shop"
LOCATION_3 = "gid://shopify/Location/3"
WAREHOUSE, STORE = 1, 2
SHOPIFY_LOCATIONS = {
    WAREHOUSE: ("gid://shopify/Location/1", "gid://shopify/Location/2"),
    STORE: ("gid://shopify/Location/3",),
}
CONFIG = """
[daemon]
state_path = "state.db"

[katana]
base_url = "http://127.0.0.1:9/v1"

[[connections]]
name = "shop"
shop = "bench.myshopify.com"
access_token_env = "SHOPIFY_TOKEN"
sync_inventory = true

  [[connections.locations]]
  katana = 1
  shopify = ["gid://shopify/Location/1", "gid://shopify/Location/2"]

  [[connections.locations]]
  katana = 2
  shopify = ["gid://shopify/Location/3"]
"""


@dataclass(frozen=True)
class Shape:
    """How the problems are made up (they add up to `problems`)."""

    variants: int
    problems: int

    @property
    def rejected(self) -> int:
        return self.problems // 2

    @property
    def unreadable(self) -> int:
        return self.problems // 5

    @property
    def unreadable_ids(self) -> range:
        """Mapped variants from the middle of the catalogue (their stock cannot be read)."""
        start = self.variants // 2
        return range(start, start + self.unreadable)

    @property
    def unmapped(self) -> int:
        return self.problems // 5

    @property
    def shadowed(self) -> int:
        return (self.problems - self.rejected - self.unreadable - self.unmapped) // 2

    @property
    def untracked(self) -> int:
        return self.problems - self.rejected - self.unreadable - self.unmapped - self.shadowed


@dataclass(frozen=True)
class Figure:
    """One timed request: the fastest, the median and every run, in seconds."""

    name: str
    runs: list[float]
    size: int  # bytes of the answer

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _catalogue(shape: Shape) -> tuple[list[KatanaVariant], list[ShopifyVariant]]:
    """Katana variants and the shop's variants, with the shape's mapping problems built in."""
    created = datetime(2025, 1, 1, tzinfo=UTC)
    katana: list[KatanaVariant] = []
    shopify: list[ShopifyVariant] = []
    # Shadowed: an older Katana variant sharing a newer one's SKU (the newer one syncs).
    plain = shape.variants - shape.shadowed
    for n in range(1, plain + 1):
        katana.append(KatanaVariant(id=n, sku=f"SKU-{n:06d}", created_at=created))
    for n in range(shape.shadowed):
        katana.append(
            KatanaVariant(
                id=plain + 1 + n, sku=f"SKU-{n + 1:06d}", created_at=created - timedelta(days=1)
            )
        )
    untracked = range(plain - shape.untracked + 1, plain + 1)
    katana_only = range(plain - shape.untracked - shape.unmapped + 1, untracked.start)
    for n in range(1, plain + 1):
        if n in katana_only:
            continue
        shopify.append(
            ShopifyVariant(
                id=f"gid://shopify/ProductVariant/{n}",
                sku=f"SKU-{n:06d}",
                inventory_item_id=f"gid://shopify/InventoryItem/{n}",
                tracked=n not in untracked,
            )
        )
    return katana, shopify


async def _state(store: StateStore, shape: Shape) -> None:
    """The problems the engine records, a reconciliation run and an outbox."""
    rejected = [
        Problem(
            kind="ITEM_NOT_STOCKED_AT_LOCATION",
            subject=f"gid://shopify/InventoryItem/{n}@{LOCATION_3}",
            detail=f"sku 'SKU-{n:06d}': The specified inventory item is not stocked at the "
            "location.",
        )
        for n in range(1, shape.rejected + 1)
    ]
    unreadable = [
        Problem(
            kind="stock_unreadable",
            subject=f"katana_variant:{n}",
            detail=f"Katana variant {n} (SKU 'SKU-{n:06d}') is not pushed: Katana sent stock "
            "rows for it that cannot be read; it is read again next cycle",
            katana_variant_id=n,
        )
        for n in shape.unreadable_ids
    ]
    await store.note_problems(CONNECTION, rejected + unreadable)
    # As the engine does for every rejected level: parked until Shopify takes it.
    await store.park(
        CONNECTION,
        [
            PlannedPush(n, f"SKU-{n:06d}", f"gid://shopify/InventoryItem/{n}", LOCATION_3, 7, None)
            for n in range(1, shape.rejected + 1)
        ],
        lambda attempts: 60.0,
    )
    now = datetime.now(UTC)
    await store.record_changes(dict.fromkeys(shape.unreadable_ids, now), {}, [CONNECTION])
    await store.set_connection_synced(CONNECTION, now)
    run = await store.start_run(NIGHTLY, None)
    await store.finish_run(run, ok=True, drift=12)


async def in_memory(ids: Collection[int]) -> StockTable:
    """The SKU view's one Katana read, answered from memory: its network time is Katana's, not
    the page's (and a cached read serves the refreshes anyway)."""
    return StockTable(StockRow(v, location, 12, 3) for v in ids for location in (WAREHOUSE, STORE))


def _activity(metrics: Metrics) -> None:
    """Six hours of a busy shop: 40 pushes and 20 measured changes a minute."""
    now = time.time()
    for minute in range(6 * 60):
        at = now - minute * 60
        metrics.activity.pushed(CONNECTION, at, 40)
        for n in range(20):
            metrics.activity.lag(CONNECTION, at, 2.0 + n * 0.7)


async def _timed(
    name: str, work: Callable[[], Awaitable[str]], runs: int = RUNS
) -> tuple[Figure, str]:
    times, answer = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        answer = await work()
        times.append(time.perf_counter() - started)
    return Figure(name, times, len(answer.encode("utf-8"))), answer


async def measure(
    variants: int = VARIANTS, problems: int = PROBLEMS
) -> tuple[list[Figure], dict[str, int]]:
    """Time the status page's requests on a shop of this size (see the module docstring); also
    the problem count of each group the page showed (the check that it saw them all)."""
    shape = Shape(variants, problems)
    katana_variants, shopify_variants = _catalogue(shape)
    locations = [
        KatanaLocation(WAREHOUSE, "Main warehouse", False),
        KatanaLocation(STORE, "Store", False),
    ]
    with tempfile.TemporaryDirectory(prefix="stocksync-bench-status-") as folder:
        config = Path(folder) / "stocksync.toml"
        config.write_text(CONFIG, encoding="utf-8")
        settings = load_settings(
            config, {"KATANA_API_KEY": "bench-key", "SHOPIFY_TOKEN": "shpat_x"}
        )
        metrics = Metrics(process=False)
        store = await StateStore.open(settings.daemon.state_path)
        try:
            async with aiohttp.ClientSession() as session:
                katana = KatanaClient(
                    session, settings.katana.base_url, settings.katana.api_key, RateLimiter(60)
                )
                engine = Engine(settings, store, Clients(katana, {}), metrics)
                engine.keeper.catalogue = Catalogue(variants={v.id: v for v in katana_variants})
                engine.keeper.katana_locations = locations
                engine.keeper.mappings = {
                    CONNECTION: build_connection_mapping(
                        settings.connections[0], katana_variants, shopify_variants, locations
                    )
                }
                await _state(store, shape)
                _activity(metrics)
                metrics.last_successful_poll.set(time.time())
                model = StatusModel(
                    StatusSources(
                        engine=engine,
                        metrics=metrics,
                        outage=HealthLog().outage,
                        last_cycle=lambda: None,
                        started_at=datetime.now(UTC),
                    ),
                    stock_reader=in_memory,
                )

                async def page(query: str = "", sku: str | None = None) -> str:
                    return render_page(await model.gather(query=query, sku=sku), nonce="bench")

                async def one_sku() -> str:
                    # SKU-000042 has a shadowed older twin: the view shows two variants.
                    return await page(sku="SKU-000042")

                async def as_json() -> str:
                    return json.dumps(jsonable(await model.gather()), ensure_ascii=False)

                gc.collect()
                figures = [
                    (await _timed("first page (works out the mapping facts once)", page, 1))[0],
                    (await _timed("page", page))[0],
                    (await _timed("page filtered by SKU (?q=)", lambda: page("SKU-0049")))[0],
                    (await _timed("page with one SKU's view (?sku=)", one_sku))[0],
                ]
                figure, answer = await _timed("/status.json", as_json)
                figures.append(figure)
                groups = {g["key"]: g["total"] for g in json.loads(answer)["problems"]["groups"]}
        finally:
            await store.close()
    return figures, groups


def render(figures: list[Figure], groups: dict[str, int], variants: int, problems: int) -> str:
    """The figures as a small table, and the problems the page counted."""
    lines = [
        f"status page: {variants:,} variants, {problems:,} problems "
        f"(python -m bench.status_page {variants} {problems}); wall time, gather + render",
        f"{'request':<48} {'median':>9} {'fastest':>9} {'runs':>5} {'size':>9}  target",
    ]
    for figure in figures:
        met = "yes" if figure.median < TARGET_SECONDS else "NO"
        lines.append(
            f"{figure.name:<48} {figure.median * 1000:>6.0f} ms "
            f"{min(figure.runs) * 1000:>6.0f} ms {len(figure.runs):>5} "
            f"{figure.size / 1024:>6.0f} KiB  < {TARGET_SECONDS * 1000:.0f} ms: {met}"
        )
    counted = ", ".join(f"{key} {count:,}" for key, count in groups.items() if count)
    lines.append(f"problems on the page: {sum(groups.values()):,} ({counted})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`python -m bench.status_page [VARIANTS] [PROBLEMS]`: print the figures."""
    variants = int(argv[0]) if argv else VARIANTS
    problems = int(argv[1]) if len(argv) > 1 else PROBLEMS
    tune_garbage_collector()  # as every stocksync process does
    # The state database's migration lines would interleave with the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures, groups = asyncio.run(measure(variants, problems))
    print(render(figures, groups, variants, problems))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
