"""One connection's bad configuration stops only that connection (issue 13, item 6).

Two connections on the simulated shop: "good" feeds the main Shopify location from Katana's
warehouse, "late" feeds the pop-up from a Katana location that does not exist yet.
"""

from __future__ import annotations

from pathlib import Path

from daemon.config import Settings, load_settings
from daemon.sync.reconcile import Reconciler
from tests.integration.conftest import KATANA_KEY, SHOPIFY_TOKEN, World


def two_connections(world: World, late_location: str = "Opening soon") -> Settings:
    text = f"""
[daemon]
state_path = "state/state.db"
poll_interval_seconds = 1

[katana]
base_url = "{world.urls.katana}"
requests_per_minute = 10000

[[connections]]
name = "good"
shop = "sim-shop.myshopify.com"
admin_url = "{world.urls.shopify[0]}"
access_token_env = "SHOPIFY_TOKEN"
sync_inventory = true

  [[connections.locations]]
  katana = "Warehouse"
  shopify = ["{world.shop_main}"]

[[connections]]
name = "late"
shop = "sim-shop.myshopify.com"
admin_url = "{world.urls.shopify[0]}"
access_token_env = "SHOPIFY_TOKEN"
sync_inventory = true

  [[connections.locations]]
  katana = "{late_location}"
  shopify = ["{world.shop_pop_up}"]
"""
    path: Path = world.folder / "stocksync.toml"
    path.write_text(text)
    return load_settings(path, {"KATANA_API_KEY": KATANA_KEY, "SHOPIFY_TOKEN": SHOPIFY_TOKEN})


async def test_a_connection_naming_an_unknown_katana_location_does_not_stop_the_others(
    world: World,
) -> None:
    variant, twin = world.product("ISOLATED", stock=4)
    assert twin is not None
    settings = two_connections(world)

    async with world.runtime(settings) as runtime:
        first = await runtime.engine.cycle()
        pop_up_before = world.levels(twin)[1]

        assert first.ok
        assert [c.name for c in first.connections] == ["good"]
        assert world.levels(twin)[0] == 4
        problems = await runtime.store.problems("late")
        assert "Opening soon" in problems["locations"].detail

        # Still waiting: nothing is pushed for it, and the others keep syncing.
        world.katana.set_stock(variant, world.warehouse, 6)
        second = await runtime.engine.cycle()
        assert [c.name for c in second.connections] == ["good"]
        assert world.levels(twin) == (6, pop_up_before)


async def test_a_connection_whose_katana_location_appears_syncs_on_a_later_cycle(
    world: World,
) -> None:
    variant, twin = world.product("LATER", stock=4)
    assert twin is not None
    settings = two_connections(world)

    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()
        opened = world.katana.add_location("Opening soon")
        world.katana.set_stock(variant, opened, 9)

        # The next cycle finds the location (Katana's locations are read again each cycle while
        # a connection waits) and maps the connection; the one after syncs it.
        await runtime.engine.cycle()
        assert "late" in runtime.engine.mappings
        report = await runtime.engine.cycle()

        assert report.ok
        assert sorted(c.name for c in report.connections) == ["good", "late"]
        assert world.levels(twin) == (4, 9)
        assert "locations" not in await runtime.store.problems("late")


async def test_a_reconciliation_reconciles_the_others_and_reports_the_unknown_location(
    world: World,
) -> None:
    _, twin = world.product("NIGHTLY", stock=4)
    assert twin is not None
    settings = two_connections(world)

    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()
        world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 1)  # drift

        report = await Reconciler.of(runtime.engine).run()

    by_name = {c.name: c for c in report.connections}
    assert not report.ok
    assert by_name["good"].drift == 1
    assert world.levels(twin)[0] == 4
    outcome = by_name["late"].outcome
    assert outcome is not None
    assert any("Opening soon" in e for e in outcome.errors)
