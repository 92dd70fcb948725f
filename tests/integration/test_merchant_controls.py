"""Merchant controls (issue 18) end to end: Katana categories kept in the state file, and whole
cycles against the simulators for pooled locations, sync filters, pack sizes and per-variant
buffers, reloads included."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from daemon.katana.models import KatanaItem, KatanaVariantRow
from daemon.store import APPLICATION_ID, MIGRATIONS, StateStore
from tests.integration.conftest import World

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


# --- categories in the catalogue cache ------------------------------------------------------------


async def test_a_products_category_is_kept_in_the_state_file_and_reaches_its_variants(
    tmp_path: Path,
) -> None:
    store = await StateStore.open(tmp_path / "state.db")
    try:
        await store.save_catalogue(
            [
                KatanaVariantRow(1, "A", 10, None, T0, T0),
                KatanaVariantRow(2, "M", None, 20, T0, T0),
            ],
            [
                KatanaItem(10, "product", False, False, T0, category="Finished goods"),
                KatanaItem(20, "material", False, False, T0),
            ],
            [],
        )
        catalogue = await store.catalogue()
    finally:
        await store.close()
    assert catalogue.variants[1].category == "Finished goods"
    assert catalogue.variants[2].category is None


async def test_a_state_file_from_before_categories_gets_the_column_and_reads_items_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    mine = next(i for i, m in enumerate(MIGRATIONS) if any("category" in s for s in m))
    raw = sqlite3.connect(path)
    for statement in (s for migration in MIGRATIONS[:mine] for s in migration):
        raw.execute(statement)
    stamp = "2025-03-01T12:00:00.000000+00:00"
    raw.execute("INSERT INTO catalogue_items VALUES ('product', 10, 0, 0, ?)", (stamp,))
    for source in ("items", "variants"):
        raw.execute("INSERT INTO cursors VALUES (?, '2025-03-01T12:00:00.000000+00:00')", (source,))
    raw.execute(f"PRAGMA user_version = {mine}")
    raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    raw.commit()
    raw.close()

    store = await StateStore.open(path)
    try:
        # Without the items cursor the next cycle reads every product and material again.
        assert set(await store.cursors()) == {"variants"}
        await store.save_catalogue(
            [], [KatanaItem(10, "product", False, False, T0, category="Tools")], []
        )
        catalogue = await store.catalogue()
    finally:
        await store.close()
    assert catalogue.holds_item(KatanaItem(10, "product", False, False, T0, category="Tools"))


async def test_a_category_edited_in_katana_rebuilds_the_mapping_but_rereads_no_stock(
    world: World,
) -> None:
    variant_id, twin = world.product("CAT", stock=4)
    assert twin is not None
    async with world.runtime() as runtime:
        engine = runtime.engine
        await engine.cycle()
        product_id = engine.katana_variants()[variant_id].product_id
        assert product_id is not None
        world.katana.set_category("product", product_id, "Seasonal")

        report = await engine.cycle()

        assert engine.katana_variants()[variant_id].category == "Seasonal"
        assert report.changed_variants == 0
        assert await runtime.store.dirty("shop") == {}


# --- whole cycles ---------------------------------------------------------------------------------


POOLED: dict[int, str] = {}  # id(world) -> its "Pooled" Shopify location


def pool(world: World, *members: str) -> str:
    """A Shopify location "Pooled" fed by the sum of `members` (Katana location names)."""
    gid = POOLED[id(world)] = world.shop.add_location("Pooled")
    names = ", ".join(f'"{m}"' for m in members)
    return f'  [[connections.locations]]\n  katana = [{names}]\n  shopify = "{gid}"\n'


def pooled_gid(world: World) -> str:
    return POOLED[id(world)]


def write_map(world: World, rows: str) -> str:
    (world.folder / "packs.csv").write_text(
        "katana_variant_id,shopify_variant_id,units_per_pack,buffer\n" + rows
    )
    return 'variant_map_file = "packs.csv"\n'


async def test_a_pooled_shopify_location_shows_the_sum_of_its_katana_locations(
    world: World,
) -> None:
    entry = pool(world, "Warehouse", "Outlet")
    variant_id, twin = world.product("POOL", stock=5)
    assert twin is not None
    world.katana.set_stock(variant_id, world.outlet, "2.5")
    settings = world.settings(entry)

    await world.cycle(settings)

    item = twin.inventory_item_id
    assert world.levels(twin) == (5, 5)  # the Warehouse alone, as before
    assert world.shop.available(item, pooled_gid(world)) == 7  # floor(5 + 2.5), once


async def test_a_change_at_any_pooled_katana_location_makes_the_pooled_level_dirty(
    world: World,
) -> None:
    entry = pool(world, "Warehouse", "Outlet")
    variant_id, twin = world.product("POOL2", stock=4)
    assert twin is not None
    settings = world.settings(entry)
    await world.cycle(settings)
    # Committed at the outlet: only the pool sees it (the outlet feeds nothing alone).
    world.katana.create_sales_order([(variant_id, 3)], world.outlet)

    await world.cycle(settings)

    assert world.levels(twin) == (4, 4)
    assert world.shop.available(twin.inventory_item_id, pooled_gid(world)) == 1


async def test_an_unreadable_row_at_a_pool_member_pushes_no_partial_sum(world: World) -> None:
    entry = pool(world, "Warehouse", "Outlet")
    variant_id, twin = world.product("POOL3", stock=4)
    assert twin is not None
    world.katana.set_stock(variant_id, world.outlet, 3)
    settings = world.settings(entry)
    await world.cycle(settings)
    world.katana.adjust_stock(variant_id, world.outlet, -1)
    world.katana.faults.malformed_next(1)  # one of its two rows cannot be read

    await world.cycle(settings)

    item = twin.inventory_item_id
    assert world.shop.available(item, pooled_gid(world)) == 7  # left as it was: not 4, not 3
    await world.cycle(settings)
    assert world.shop.available(item, pooled_gid(world)) == 6


async def test_a_pool_naming_a_missing_katana_location_waits_and_pushes_no_partial_sum(
    world: World,
) -> None:
    entry = pool(world, "Warehouse", "Annex")
    variant_id, twin = world.product("POOL4", stock=4)
    assert twin is not None
    settings = world.settings(entry)

    report = await world.cycle(settings)

    assert report.connections == []  # the connection waits, reported; nothing is pushed
    assert world.set_calls() == 0
    annex = world.katana.add_location("Annex")
    world.katana.set_stock(variant_id, annex, 6)
    await world.cycle(settings)
    assert world.shop.available(twin.inventory_item_id, pooled_gid(world)) == 10


async def test_single_six_pack_and_twelve_pack_are_fed_from_one_katana_variant(
    world: World,
) -> None:
    variant_id, single = world.product("CAN", stock=30)
    assert single is not None
    six = world.shop.add_variant("CAN-6")
    twelve = world.shop.add_variant("CAN-12")
    packs = write_map(
        world,
        f"{variant_id},{single.id},,\n{variant_id},{six.id},6,\n{variant_id},{twelve.id},12,\n",
    )
    settings = world.settings(packs)
    await world.cycle(settings)
    assert [world.levels(v) for v in (single, six, twelve)] == [(30, 30), (5, 5), (2, 2)]

    world.katana.create_sales_order([(variant_id, 7)], world.warehouse)
    await world.cycle(settings)

    assert [world.levels(v) for v in (single, six, twelve)] == [(23, 23), (3, 3), (1, 1)]


async def test_a_pack_size_larger_than_the_stock_shows_zero_packs(world: World) -> None:
    variant_id, single = world.product("BOX", stock=5)
    assert single is not None
    crate = world.shop.add_variant("BOX-24", available=3)
    settings = world.settings(
        write_map(world, f"{variant_id},{single.id},,\n{variant_id},{crate.id},24,\n")
    )

    await world.cycle(settings)

    assert world.levels(single) == (5, 5)
    assert world.levels(crate) == (0, 0)


async def test_a_variant_map_buffer_overrides_the_connection_buffer(world: World) -> None:
    kept, kept_twin = world.product("KEEP", stock=10)
    _, other_twin = world.product("OTHER", stock=10)
    assert kept_twin is not None
    assert other_twin is not None
    settings = world.settings("buffer = 4\n" + write_map(world, f"{kept},{kept_twin.id},,1\n"))

    await world.cycle(settings)

    assert world.levels(kept_twin) == (9, 9)
    assert world.levels(other_twin) == (6, 6)


async def test_a_pool_with_a_pack_size_and_a_buffer(world: World) -> None:
    entry = pool(world, "Warehouse", "Outlet")
    variant_id, single = world.product("INTERPLAY", stock=9)
    assert single is not None
    six = world.shop.add_variant("INTERPLAY-6")
    world.katana.set_stock(variant_id, world.outlet, 8)
    world.katana.create_sales_order([(variant_id, 1)], world.outlet)
    rows = f"{variant_id},{single.id},,\n{variant_id},{six.id},6,4\n"
    settings = world.settings("buffer = 2\n" + write_map(world, rows) + entry)

    await world.cycle(settings)

    pooled = pooled_gid(world)
    # Warehouse alone: 9 - 2 = 7 units, floor((9 - 4) / 6) = 0 packs. Pool: 9 + 8 - 1 = 16
    # units: 16 - 2 = 14 singles, floor((16 - 4) / 6) = 2 six-packs.
    assert world.levels(single) == (7, 7)
    assert world.levels(six) == (0, 0)
    assert world.shop.available(single.inventory_item_id, pooled) == 14
    assert world.shop.available(six.inventory_item_id, pooled) == 2


async def test_a_filtered_variant_is_reported_and_its_shopify_level_left_as_last_pushed(
    world: World,
) -> None:
    variant_id, twin = world.product("ACME-SAMPLE", stock=5)
    _, kept = world.product("ACME-1", stock=5)
    assert twin is not None
    assert kept is not None
    async with world.runtime(world.settings()) as runtime:
        engine = runtime.engine
        await engine.cycle()
        filtered = world.settings('[connections.filters]\nexclude_skus = "*-SAMPLE"\n')
        await engine.apply(filtered, runtime.clients(filtered))
        world.katana.adjust_stock(variant_id, world.warehouse, -4)

        await engine.cycle()

        assert world.levels(twin) == (5, 5)  # left as last pushed
        assert engine.mappings["shop"].table.filtered == {
            variant_id: "SKU 'ACME-SAMPLE' matches exclude_skus pattern '*-SAMPLE'"
        }
        assert (
            world.metrics.registry.get_sample_value(
                "stocksync_filtered_variants", {"connection": "shop"}
            )
            == 1
        )
        # Lifting the filter (a reload) pushes it again at once.
        plain = world.settings()
        await engine.apply(plain, runtime.clients(plain))
        await engine.cycle()
        assert world.levels(twin) == (1, 1)


async def test_a_filter_excluding_a_kits_ingredient_but_not_the_kit_keeps_the_kit_in_step(
    world: World,
) -> None:
    kit, kit_twin = world.product("KIT-1", kit=True)
    part, part_twin = world.product("PART-1", stock=6)
    assert kit_twin is not None
    assert part_twin is not None
    world.katana.add_bom_row(kit, part, 2)
    settings = world.settings('[connections.filters]\nexclude_skus = "PART-*"\n')
    part_twin_level = world.levels(part_twin)

    await world.cycle(settings)
    assert world.levels(kit_twin) == (3, 3)
    world.katana.adjust_stock(part, world.warehouse, -2)
    await world.cycle(settings)

    assert world.levels(kit_twin) == (2, 2)  # the ingredient's change reached the kit
    assert world.levels(part_twin) == part_twin_level  # the ingredient itself is never pushed


async def test_a_category_filter_follows_a_category_edited_in_katana(world: World) -> None:
    [shelf] = world.katana.add_product("Shelf", ["SHELF"], category="Furniture")
    [lamp] = world.katana.add_product("Lamp", ["LAMP"], category="Lighting")
    world.katana.set_stock(shelf, world.warehouse, 3)
    world.katana.set_stock(lamp, world.warehouse, 4)
    shelf_twin = world.shop.add_variant("SHELF")
    lamp_twin = world.shop.add_variant("LAMP", available=9)
    settings = world.settings('[connections.filters]\ninclude_categories = ["Furn*"]\n')
    async with world.runtime(settings) as runtime:
        engine = runtime.engine
        await engine.cycle()
        assert world.levels(shelf_twin) == (3, 3)
        assert world.levels(lamp_twin) == (9, 9)
        lamp_product = engine.katana_variants()[lamp].product_id
        assert lamp_product is not None

        world.katana.set_category("product", lamp_product, "Furniture")
        await engine.cycle()

        assert world.levels(lamp_twin) == (4, 4)


async def test_a_reload_that_changes_a_pack_size_repushes_only_the_affected_variants(
    world: World,
) -> None:
    variant_id, single = world.product("JAR", stock=24)
    _, other = world.product("LID", stock=5)
    assert single is not None
    assert other is not None
    six = world.shop.add_variant("JAR-6")
    first = world.settings(
        write_map(world, f"{variant_id},{single.id},,\n{variant_id},{six.id},6,\n")
    )
    async with world.runtime(first) as runtime:
        engine = runtime.engine
        await engine.cycle()
        await engine.cycle()  # the changes the full sync saw as they happened: none moves
        assert world.levels(six) == (4, 4)
        assert await runtime.store.dirty("shop") == {}
        second = world.settings(
            write_map(world, f"{variant_id},{single.id},,\n{variant_id},{six.id},12,\n")
        )
        calls = world.set_calls()
        await engine.apply(second, runtime.clients(second))
        assert set(await runtime.store.dirty("shop")) == {variant_id}

        await engine.cycle()

        assert world.levels(six) == (2, 2)
        assert world.levels(single) == (24, 24)
        assert world.set_calls() == calls + 1
