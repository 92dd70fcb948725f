"""Reconciliation: the overnight run and the full catalogue comparison (PRODUCT.md §2)."""

from __future__ import annotations

import pytest

from daemon.sync.engine import Tuning
from daemon.sync.reconcile import Reconciler
from tests.integration.conftest import World


async def test_overnight_run_pushes_recent_sales_order_variants_without_stock_movement(
    world: World,
) -> None:
    variant_id, twin = world.product("NIGHT", stock=10)
    _, other = world.product("QUIET", stock=4)
    assert twin is not None
    assert other is not None
    order = world.katana.create_sales_order([(variant_id, 2)], world.warehouse)
    world.katana.deliver_sales_order(order)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        # Shopify drifted for both; only the order's variant is in the overnight window.
        world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 50)
        world.shop.set_available_manually(other.inventory_item_id, world.shop_main, 50)

        report = await Reconciler.of(runtime.engine).run(full=False)

    assert report.ok
    assert world.levels(twin) == (8, 8)
    assert world.levels(other) == (50, 4)


async def test_full_reconciliation_overwrites_drift_and_counts_it(world: World) -> None:
    _, twin = world.product("FULL", stock=5)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.shop.set_available_manually(twin.inventory_item_id, world.shop_pop_up, 1)

        report = await Reconciler.of(runtime.engine).run(full=True)

    assert report.connections[0].drift == 1
    assert world.levels(twin) == (5, 5)
    drift = world.metrics.registry.get_sample_value(
        "stocksync_reconciliation_drift_total", {"connection": "shop"}
    )
    assert drift == 1
    assert world.metrics.registry.get_sample_value(
        "stocksync_reconciliation_last_success_timestamp_seconds"
    )


async def test_full_reconciliation_compares_the_catalogue_chunk_by_chunk(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    twins = [world.product(f"PART{i}", stock=3)[1] for i in range(5)]
    async with world.runtime(tuning=Tuning(full_sync_chunk=2)) as runtime:
        await runtime.engine.cycle()
        for twin in twins:
            assert twin is not None
            world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 9)

        report = await Reconciler.of(runtime.engine).run(full=True)

    assert report.connections[0].drift == 5  # spread over 3 chunks of up to 2 variants
    assert report.connections[0].considered == 10
    assert all(world.levels(twin) == (3, 3) for twin in twins if twin)


async def test_dry_run_reports_differences_and_writes_nothing(world: World) -> None:
    _, twin = world.product("DRY", stock=5)
    assert twin is not None
    async with world.runtime() as runtime:
        report = await Reconciler.of(runtime.engine).run(full=True, dry_run=True)

    assert {(d.sku, d.desired) for d in report.connections[0].differences} == {("DRY", 5)}
    assert world.set_calls() == 0
    assert world.levels(twin) == (0, 0)


async def test_full_reconciliation_maps_shopify_variants_created_since_start(world: World) -> None:
    world.product("LATE", stock=3, shopify=False)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        late = world.shop.add_variant("LATE")

        await Reconciler.of(runtime.engine).run(full=True)

    assert world.levels(late) == (3, 3)
