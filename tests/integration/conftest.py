"""A small Katana + Shopify world served over loopback for whole-cycle tests of the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config import Settings, load_settings
from daemon.domain.models import ShopifyVariant
from daemon.metrics import Metrics
from daemon.runtime import Runtime, open_runtime
from daemon.sim.harness import SimulatorUrls, run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.shopify import ShopifySim
from daemon.sync.engine import DEFAULT_TUNING, Tuning
from daemon.sync.report import CycleReport

KATANA_KEY = "katana-test-key-0001"
SHOPIFY_TOKEN = "shpat_test_token_0001"


@dataclass
class World:
    """Katana with a mapped warehouse and an unmapped one; a shop with two locations."""

    katana: KatanaSim
    shop: ShopifySim
    urls: SimulatorUrls
    folder: Path
    warehouse: int
    outlet: int  # a Katana location mapped to nothing
    shop_main: str
    shop_pop_up: str
    metrics: Metrics = field(default_factory=lambda: Metrics(process=False))

    def product(
        self, sku: str | None, *, stock: int = 0, kit: bool = False, shopify: bool = True
    ) -> tuple[int, ShopifyVariant | None]:
        """A Katana product variant with stock at the warehouse, and its Shopify twin."""
        [variant_id] = self.katana.add_product(f"P {sku}", [sku], is_auto_assembly=kit)
        if stock:
            self.katana.set_stock(variant_id, self.warehouse, stock)
        twin = self.shop.add_variant(sku) if shopify and sku else None
        return variant_id, twin

    def levels(self, variant: ShopifyVariant) -> tuple[int | None, int | None]:
        """Shopify's available at (main, pop-up) for one variant."""
        item = variant.inventory_item_id
        return self.shop.available(item, self.shop_main), self.shop.available(
            item, self.shop_pop_up
        )

    def settings(
        self, connection: str = "", *, variant_map: str = "", sync: bool = True
    ) -> Settings:
        """Write and load a real config file (extra TOML lines go into the connection)."""
        map_line = ""
        if variant_map:
            (self.folder / "map.csv").write_text(
                "katana_variant_id,shopify_variant_id\n" + variant_map
            )
            map_line = 'variant_map_file = "map.csv"'
        text = f"""
[daemon]
state_path = "state/state.db"
poll_interval_seconds = 1

[katana]
base_url = "{self.urls.katana}"
requests_per_minute = 10000

[reconciliation]
lookback_hours = 48

[[connections]]
name = "shop"
shop = "sim-shop.myshopify.com"
admin_url = "{self.urls.shopify[0]}"
access_token_env = "SHOPIFY_TOKEN"
sync_inventory = {"true" if sync else "false"}
{map_line}
{connection}

  [[connections.locations]]
  katana = "Warehouse"
  shopify = ["{self.shop_main}", "{self.shop_pop_up}"]
"""
        path = self.folder / "stocksync.toml"
        path.write_text(text)
        return load_settings(path, {"KATANA_API_KEY": KATANA_KEY, "SHOPIFY_TOKEN": SHOPIFY_TOKEN})

    @asynccontextmanager
    async def runtime(
        self, settings: Settings | None = None, tuning: Tuning = DEFAULT_TUNING
    ) -> AsyncIterator[Runtime]:
        """The daemon's runtime (store, clients, engine) against this world."""
        opened = open_runtime(settings or self.settings(), metrics=self.metrics, tuning=tuning)
        del settings  # the engine alone holds the settings in force (a reload test checks)
        async with opened as runtime:
            yield runtime

    async def cycle(
        self, settings: Settings | None = None, tuning: Tuning = DEFAULT_TUNING
    ) -> CycleReport:
        """One cycle with a fresh runtime (as `stocksync sync-once` does)."""
        async with self.runtime(settings, tuning) as runtime:
            return await runtime.engine.cycle()

    def set_calls(self) -> int:
        """inventorySetQuantities calls Shopify has answered so far."""
        return self.shop.mutation_calls["inventorySetQuantities"]


# Longer than the cursors' overlap: Katana "goes quiet" for this long between cycles.
QUIET = timedelta(minutes=5)


class KatanaClock:
    """The simulated Katana's clock: real time, moved on by hand."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta = QUIET) -> None:
        self.offset += by


@pytest.fixture
def katana_clock() -> KatanaClock:
    """The clock of the `world` fixture's Katana (real time unless a test moves it)."""
    return KatanaClock()


@pytest.fixture
async def world(tmp_path: Path, katana_clock: KatanaClock) -> AsyncIterator[World]:
    """A fresh simulated Katana account and Shopify store on loopback."""
    katana = KatanaSim(api_key=KATANA_KEY, requests_per_minute=10000, clock=katana_clock)
    shop = ShopifySim(access_token=SHOPIFY_TOKEN, bucket_size=2000, restore_rate=1000)
    warehouse = katana.add_location("Warehouse")
    outlet = katana.add_location("Outlet")
    shop_main = shop.add_location("Main")
    shop_pop_up = shop.add_location("Pop-up")
    async with run_simulators(katana, shop) as urls:
        yield World(katana, shop, urls, tmp_path, warehouse, outlet, shop_main, shop_pop_up)
