"""Whole cycles of the engine, with the real clients, against the simulators over loopback.

Each test names the rule (seed or PRODUCT.md) it proves, checked on Shopify's end state.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.domain.models import LevelKey
from daemon.katana.models import KatanaVariantRow
from daemon.shopify import transport as shopify_transport
from daemon.store import StateStore
from daemon.sync.engine import Tuning
from tests.integration.conftest import World

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_standard_available_is_in_stock_minus_committed(world: World) -> None:
    variant_id, twin = world.product("CHAIR", stock=10)
    world.katana.create_sales_order([(variant_id, 3)], world.warehouse)
    assert twin is not None

    report = await world.cycle()

    assert report.ok
    assert world.levels(twin) == (7, 7)


async def test_kit_available_is_in_stock_plus_potential_minus_committed(world: World) -> None:
    leg, _ = world.product("LEG", stock=8)
    kit, twin = world.product("TABLE-KIT", stock=1, kit=True)
    world.katana.add_bom_row(kit, leg, 4)  # potential 2
    world.katana.create_sales_order([(kit, 1)], world.warehouse)
    assert twin is not None

    await world.cycle()

    assert world.levels(twin) == (2, 2)  # 1 + 2 − 1


async def test_sales_order_created_without_movement_lowers_shopify(world: World) -> None:
    variant_id, twin = world.product("LAMP", stock=5)
    assert twin is not None
    await world.cycle()
    world.katana.create_sales_order([(variant_id, 2)], world.warehouse)

    await world.cycle()

    assert world.levels(twin) == (3, 3)


async def test_manufacturing_order_completed_raises_product_and_lowers_ingredients(
    world: World,
) -> None:
    wood, wood_twin = world.product("WOOD", stock=10)
    stool, stool_twin = world.product("STOOL")
    world.katana.add_bom_row(stool, wood, 2)
    assert wood_twin is not None
    assert stool_twin is not None
    await world.cycle()
    mo = world.katana.create_manufacturing_order(stool, world.warehouse, 3)

    await world.cycle()
    assert world.levels(wood_twin) == (4, 4)  # 6 committed to the MO

    world.katana.complete_manufacturing_order(mo)
    await world.cycle()
    assert world.levels(wood_twin) == (4, 4)
    assert world.levels(stool_twin) == (3, 3)


async def test_purchase_order_received_raises_shopify(world: World) -> None:
    variant_id, twin = world.product("MUG", stock=1)
    assert twin is not None
    await world.cycle()
    world.katana.receive_purchase_order([(variant_id, 24)], world.warehouse)

    await world.cycle()

    assert world.levels(twin) == (25, 25)


async def test_stock_transfer_to_unmapped_location_lowers_shopify(world: World) -> None:
    variant_id, twin = world.product("RUG", stock=9)
    assert twin is not None
    await world.cycle()
    world.katana.transfer_stock(variant_id, world.warehouse, world.outlet, 4)

    await world.cycle()

    assert world.levels(twin) == (5, 5)


async def test_unmapped_katana_location_never_reaches_shopify(world: World) -> None:
    variant_id, twin = world.product("VASE", stock=2)
    world.katana.set_stock(variant_id, world.outlet, 50)
    world.katana.create_sales_order([(variant_id, 40)], world.outlet)
    assert twin is not None

    await world.cycle()

    assert world.levels(twin) == (2, 2)


async def test_one_katana_location_feeds_every_mapped_shopify_location(world: World) -> None:
    _, twin = world.product("SOFA", stock=6)
    assert twin is not None

    await world.cycle()

    assert world.levels(twin) == (6, 6)


async def test_shopify_variants_sharing_a_sku_all_receive_the_level(world: World) -> None:
    _, first = world.product("SHARED", stock=4)
    second = world.shop.add_variant("SHARED")
    assert first is not None

    await world.cycle()

    assert world.levels(first) == (4, 4)
    assert world.levels(second) == (4, 4)


async def test_katana_duplicate_sku_newest_created_variant_is_the_source(world: World) -> None:
    world.product("DUP", stock=1, shopify=False)
    _, twin = world.product("DUP", stock=9)
    assert twin is not None

    await world.cycle()

    assert world.levels(twin) == (9, 9)


async def test_variant_without_sku_syncs_only_through_the_variant_map(world: World) -> None:
    no_sku, _ = world.product(None, stock=3)
    world.product(None, stock=8)  # unmapped: no SKU and no map entry
    target = world.shop.add_variant("SHOPIFY-ONLY")
    number = target.id.rsplit("/", 1)[1]

    await world.cycle(world.settings(variant_map=f"{no_sku},{number}\n"))

    assert world.levels(target) == (3, 3)
    assert world.set_calls() == 1


async def test_untracked_shopify_item_is_skipped(world: World) -> None:
    world.katana.add_product("P GHOST", ["GHOST"])
    ghost = world.shop.add_variant("GHOST", tracked=False, available=5)

    report = await world.cycle()

    assert report.ok
    assert world.levels(ghost) == (5, 5)
    assert world.set_calls() == 0


async def test_unchanged_variants_cost_zero_shopify_calls(world: World) -> None:
    world.product("A", stock=1)
    world.product("B", stock=2)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()  # their creation, re-read after the full sync, confirmed
        calls = world.set_calls()

        report = await runtime.engine.cycle()

    assert report.ok
    assert report.pushed == 0
    assert world.set_calls() == calls


async def test_only_the_changed_variant_is_pushed(world: World) -> None:
    a, _ = world.product("A", stock=1)
    world.product("B", stock=2)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()  # their creation, re-read after the full sync, confirmed
        world.katana.adjust_stock(a, world.warehouse, 5)

        report = await runtime.engine.cycle()

    assert report.pushed == 2  # A at both Shopify locations, nothing of B


async def test_sync_off_writes_nothing_to_shopify(world: World) -> None:
    world.product("OFF", stock=3)

    report = await world.cycle(world.settings(sync=False))

    assert report.connections == []
    assert world.set_calls() == 0


async def test_failed_push_is_retried_on_the_next_cycle(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shopify_transport, "BACKOFF_BASE", 0.001)  # keep the retries quick
    variant_id, twin = world.product("RETRY", stock=4)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.katana.adjust_stock(variant_id, world.warehouse, 3)
        world.shop.faults.outage = True

        failed = await runtime.engine.cycle()
        world.shop.faults.outage = False
        assert not failed.ok
        assert world.levels(twin) == (4, 4)
        assert await runtime.store.dirty("shop")  # still waiting in the outbox

        await runtime.engine.cycle()
        assert world.levels(twin) == (7, 7)
        assert not await runtime.store.dirty("shop")


async def test_in_flight_pair_is_re_pushed_even_if_katana_returns_to_the_old_value(
    world: World,
) -> None:
    variant_id, twin = world.product("FLIGHT", stock=4)
    assert twin is not None
    await world.cycle()
    # A push whose answer was lost: marked in flight, Shopify got something else meanwhile.
    store = await StateStore.open(world.settings().daemon.state_path)
    key: LevelKey = (twin.inventory_item_id, world.shop_main)
    await store.mark_in_flight("shop", [key])
    await store.close()
    world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 99)
    world.katana.adjust_stock(variant_id, world.warehouse, 1)
    world.katana.adjust_stock(variant_id, world.warehouse, -1)  # back to 4

    await world.cycle()

    assert world.levels(twin) == (4, 4)


async def test_stale_level_in_shopify_is_overwritten_and_counted(world: World) -> None:
    variant_id, twin = world.product("STALE", stock=10)
    assert twin is not None
    await world.cycle()
    world.shop.place_order(twin.inventory_item_id, world.shop_main, 2)  # Shopify: 8
    world.katana.adjust_stock(variant_id, world.warehouse, 1)

    report = await world.cycle()

    assert world.levels(twin) == (11, 11)
    assert report.connections[0].stale_overwrites == 1
    stale = world.metrics.registry.get_sample_value(
        "stocksync_stale_overwrites_total", {"connection": "shop"}
    )
    assert stale == 1


async def test_stale_answer_without_field_path_is_still_overwritten(world: World) -> None:
    variant_id, twin = world.product("NOFIELD", stock=10)
    other, other_twin = world.product("CALM", stock=5)
    assert twin is not None
    assert other_twin is not None
    await world.cycle()
    world.shop.faults.stale_without_field = True
    world.shop.place_order(twin.inventory_item_id, world.shop_main, 2)
    world.katana.adjust_stock(variant_id, world.warehouse, 1)
    world.katana.adjust_stock(other, world.warehouse, 1)

    await world.cycle()

    assert world.levels(twin) == (11, 11)
    assert world.levels(other_twin) == (6, 6)


async def test_safety_valve_holds_a_mass_drop_until_released(world: World) -> None:
    settings = world.settings("min_drop_count = 3\nmax_drop_fraction = 0.5\n")
    variants = [world.product(f"V{i}", stock=5) for i in range(4)]
    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()
        for variant_id, _ in variants:
            world.katana.adjust_stock(variant_id, world.warehouse, -5)

        held = await runtime.engine.cycle()
        assert held.connections[0].held
        assert all(world.levels(t) == (5, 5) for _, t in variants if t)
        [reason] = (await runtime.store.holds()).values()
        # The exact command that releases it, config file included.
        assert f"stocksync release-hold -c {settings.source} shop" in reason
        assert world.metrics.registry.get_sample_value("stocksync_held_connections") == 1

        assert await runtime.store.release_hold("shop")
        released = await runtime.engine.cycle()
        assert not released.connections[0].held
        assert all(world.levels(t) == (0, 0) for _, t in variants if t)


async def test_full_sync_pushes_every_variant_chunk_by_chunk(world: World) -> None:
    variants = [world.product(f"V{i}", stock=i + 1) for i in range(5)]

    report = await world.cycle(tuning=Tuning(full_sync_chunk=2))

    assert report.ok
    assert report.connections[0].full_sync
    assert report.pushed == 10  # 5 variants x 2 Shopify locations, over 3 chunks
    assert all(world.levels(t) == (i + 1, i + 1) for i, (_, t) in enumerate(variants) if t)
    assert not (await world.cycle()).connections[0].full_sync  # synced: a delta cycle next


async def test_safety_valve_judges_a_whole_full_sync_not_each_chunk(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 variants per chunk: each chunk alone drops 4 levels, below min_drop_count = 5;
    # the whole full sync drops 8 of 8, which must hold the connection before any push.
    settings = world.settings("min_drop_count = 5\nmax_drop_fraction = 0.5\n")
    variants = [world.product(f"V{i}", stock=5) for i in range(4)]
    async with world.runtime(settings, Tuning(full_sync_chunk=2)) as runtime:
        await runtime.engine.cycle()
        for variant_id, _ in variants:
            world.katana.adjust_stock(variant_id, world.warehouse, -5)
        await runtime.store.set_connection_synced("shop", None)  # as after a crash mid-sync

        held = await runtime.engine.cycle()

        assert held.connections[0].full_sync
        assert held.connections[0].held
        assert all(world.levels(t) == (5, 5) for _, t in variants if t)


async def test_item_not_stocked_at_location_is_reported_and_others_pushed(world: World) -> None:
    world.katana.add_product("P HALF", ["HALF"])
    half_id = world.katana.add_product("P HALF2", ["HALF2"])[0]
    world.katana.set_stock(half_id, world.warehouse, 4)
    half = world.shop.add_variant("HALF2", stocked_at=[world.shop_main])

    report = await world.cycle()

    assert report.ok
    assert world.levels(half) == (4, None)
    assert report.connections[0].rejected == 1
    errors = world.metrics.registry.get_sample_value(
        "stocksync_push_errors_total",
        {"connection": "shop", "code": "ITEM_NOT_STOCKED_AT_LOCATION"},
    )
    assert errors == 1


async def test_activate_missing_stocks_the_item_at_the_location(world: World) -> None:
    variant_id = world.katana.add_product("P ACT", ["ACT"])[0]
    world.katana.set_stock(variant_id, world.warehouse, 4)
    act = world.shop.add_variant("ACT", stocked_at=[world.shop_main])

    await world.cycle(world.settings("activate_missing = true\n"))

    assert world.levels(act) == (4, 4)


async def test_buffer_is_held_back_from_shopify(world: World) -> None:
    _, twin = world.product("BUF", stock=10)
    assert twin is not None

    await world.cycle(world.settings("buffer = 3\n"))

    assert world.levels(twin) == (7, 7)


async def test_sku_change_in_katana_moves_the_mapping(world: World) -> None:
    variant_id, old_twin = world.product("OLD", stock=6)
    new_twin = world.shop.add_variant("NEW")
    assert old_twin is not None
    await world.cycle()
    world.katana.set_sku(variant_id, "NEW")

    await world.cycle()

    assert world.levels(new_twin) == (6, 6)
    assert world.levels(old_twin) == (6, 6)  # left as last pushed


async def test_deleted_katana_variant_stops_syncing_and_keeps_its_last_level(
    world: World,
) -> None:
    variant_id, twin = world.product("GONE", stock=6)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.katana.adjust_stock(variant_id, world.warehouse, -6)
        world.katana.delete_variant(variant_id)
        await runtime.engine.cycle()

    assert world.levels(twin) == (6, 6)


async def test_archived_product_stops_syncing(world: World) -> None:
    variant_id, twin = world.product("ARCHIVED", stock=6)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        product_id = world.katana.variant(variant_id).product_id
        assert product_id is not None
        world.katana.archive_product(product_id)
        world.katana.adjust_stock(variant_id, world.warehouse, 3)
        await runtime.engine.cycle()

    assert world.levels(twin) == (6, 6)


async def test_bom_change_recomputes_the_kit(world: World) -> None:
    leg, _ = world.product("LEG2", stock=8)
    kit, twin = world.product("KIT2", kit=True)
    row = world.katana.add_bom_row(kit, leg, 4)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        assert world.levels(twin) == (2, 2)
        world.katana.update_bom_row(row, 2)
        await runtime.engine.cycle()

    assert world.levels(twin) == (4, 4)


async def test_idle_cycles_read_no_katana_stock_and_write_nothing(world: World) -> None:
    leg, _ = world.product("LEG3", stock=8)
    kit, _ = world.product("KIT3", kit=True)
    world.katana.add_bom_row(kit, leg, 4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()  # the first delta cycle may re-read the overlap
        inventory_reads = world.katana.requests_by_path["/inventory"]
        assert inventory_reads > 0
        calls = world.set_calls()
        for _ in range(3):
            await runtime.engine.cycle()

    assert world.katana.requests_by_path["/inventory"] == inventory_reads
    assert world.set_calls() == calls


async def test_a_cold_start_reads_the_katana_catalogue_batch_by_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    variants = [world.product(f"V{i}", stock=i + 1) for i in range(5)]

    report = await world.cycle(tuning=Tuning(catalogue_write_batch=2))

    assert report.ok
    assert all(world.levels(t) == (i + 1, i + 1) for i, (_, t) in enumerate(variants) if t)
    store = await StateStore.open(world.settings().daemon.state_path)
    try:
        assert set((await store.catalogue()).variants) == {v for v, _ in variants}
    finally:
        await store.close()


async def test_a_catalogue_read_cut_short_is_read_again_in_full(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = world.product("A", stock=5)
    _, second = world.product("B", stock=7)
    # The delta polls look no further back than the cycle's start: only a full read of the
    # catalogue can find B.
    # An earlier cold start stored part of the catalogue, then died before it was complete.
    store = await StateStore.open(world.settings().daemon.state_path)
    try:
        await store.save_catalogue([KatanaVariantRow(first, "A", 1, None, T0, T0)], [], [])
    finally:
        await store.close()

    report = await world.cycle(tuning=Tuning(cursor_overlap=0, bootstrap_lookback=0))

    assert report.ok
    assert second is not None
    assert world.levels(second) == (7, 7)
