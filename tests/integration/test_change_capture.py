"""Every Katana change that moves in stock, committed or potential reaches Shopify (issue 12).

Whole cycles of the engine against the simulated Katana, which models what the real one does
(katana-openapi.yaml, live-gateway.yaml, the portal pages): a document row is edited, re-pointed
or deleted without touching its document or writing a movement; /bom_rows keeps no deleted rows.
Katana's clock is moved on by hand where a test needs Katana to have gone quiet (past the
cursors' overlap), so a change can only be found by the source meant to see it. The table in
docs/design.md ("Change capture") names each test here.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.domain.models import ShopifyVariant
from daemon.katana.models import DELTA_SOURCES
from daemon.runtime import Runtime
from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim, ProductSpec
from daemon.sim.shopify import ShopifySim
from daemon.sync import sources
from tests.integration.conftest import KATANA_KEY, SHOPIFY_TOKEN, KatanaClock, World


def product(
    world: World, sku: str, *, stock: int = 0, kit: bool = False
) -> tuple[int, ShopifyVariant]:
    """A Katana product variant with stock at the warehouse, and its Shopify twin."""
    variant_id, twin = world.product(sku, stock=stock, kit=kit)
    assert twin is not None
    return variant_id, twin


async def quiet_cycle(runtime: Runtime, katana_clock: KatanaClock) -> None:
    """Let Katana go quiet past the overlap, then run a cycle that sees everything so far."""
    katana_clock.advance()
    await runtime.engine.cycle()


async def settle(runtime: Runtime, katana_clock: KatanaClock) -> None:
    """The first (full) sync, a cycle that settles what it left dirty, then Katana goes quiet
    past the overlap: a later change is found only by the source meant to see it."""
    await runtime.engine.cycle()
    await quiet_cycle(runtime, katana_clock)
    katana_clock.advance()


# ---- sales-order rows --------------------------------------------------------------------------


async def test_deleting_a_row_of_an_open_sales_order_raises_shopify(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    lamp, _ = product(world, "LAMP", stock=5)
    order = world.katana.create_sales_order([(lamp, 1), (chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(twin) == (6, 6)

        _, chair_row = world.katana.sales_order_row_ids(order)
        world.katana.delete_sales_order_row(chair_row)
        await runtime.engine.cycle()

        assert world.levels(twin) == (10, 10)


async def test_repointing_a_sales_order_row_updates_the_old_and_the_new_variant(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, chair_twin = product(world, "CHAIR", stock=10)
    lamp, lamp_twin = product(world, "LAMP", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((6, 6), (10, 10))

        [row] = world.katana.sales_order_row_ids(order)
        world.katana.update_sales_order_row(row, variant_id=lamp, quantity=3)
        await runtime.engine.cycle()

        assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((10, 10), (7, 7))


async def test_a_row_remembered_from_an_earlier_run_is_repointed_both_ways(
    world: World, katana_clock: KatanaClock
) -> None:
    # The row was last seen by an earlier process, and Katana has moved on since.
    chair, chair_twin = product(world, "CHAIR", stock=10)
    lamp, lamp_twin = product(world, "LAMP", stock=10)
    desk, _ = product(world, "DESK", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    await world.cycle()
    for _ in range(2):
        katana_clock.advance()
        world.katana.create_sales_order([(desk, 1)], world.warehouse)
        world.katana.adjust_stock(desk, world.warehouse, 1)
        await world.cycle()
    katana_clock.advance()

    [row] = world.katana.sales_order_row_ids(order)
    world.katana.update_sales_order_row(row, variant_id=lamp)
    await world.cycle()

    assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((10, 10), (6, 6))


async def test_packing_a_sales_order_moves_its_stock_out_once(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        world.katana.pack_sales_order(order)
        world.katana.set_stock(chair, world.warehouse, 9)  # a recount after packing
        await runtime.engine.cycle()

        assert world.levels(twin) == (9, 9)


async def test_deleting_a_sales_order_releases_its_commitment(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        world.katana.delete_sales_order(order)
        await runtime.engine.cycle()

        assert world.levels(twin) == (10, 10)


async def test_a_row_added_to_an_open_sales_order_lowers_shopify(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, _ = product(world, "CHAIR", stock=10)
    lamp, twin = product(world, "LAMP", stock=5)
    order = world.katana.create_sales_order([(chair, 1)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        # Later business: the order is no longer the newest one Katana changed.
        world.katana.create_sales_order([(chair, 1)], world.warehouse)
        await quiet_cycle(runtime, katana_clock)
        katana_clock.advance()

        world.katana.add_sales_order_row(order, lamp, 2)
        await runtime.engine.cycle()

        assert world.levels(twin) == (3, 3)


async def test_editing_an_order_whole_updates_the_variants_its_rows_left(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, chair_twin = product(world, "CHAIR", stock=10)
    lamp, lamp_twin = product(world, "LAMP", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        world.katana.update_sales_order(order, rows=[(lamp, 2)])
        await runtime.engine.cycle()
        assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((10, 10), (8, 8))


# ---- manufacturing orders ------------------------------------------------------------------------


async def test_repointing_a_manufacturing_order_ingredient_updates_both_ingredients(
    world: World, katana_clock: KatanaClock
) -> None:
    oak, oak_twin = product(world, "OAK", stock=10)
    pine, pine_twin = product(world, "PINE", stock=10)
    stool, _ = product(world, "STOOL")
    world.katana.add_bom_row(stool, oak, 2)
    mo = world.katana.create_manufacturing_order(stool, world.warehouse, 3)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert (world.levels(oak_twin), world.levels(pine_twin)) == ((4, 4), (10, 10))

        [row] = world.katana.recipe_row_ids(mo)
        world.katana.update_recipe_row(row, variant_id=pine)
        await runtime.engine.cycle()

        assert (world.levels(oak_twin), world.levels(pine_twin)) == ((10, 10), (4, 4))


async def test_deleting_a_manufacturing_order_ingredient_row_raises_shopify(
    world: World, katana_clock: KatanaClock
) -> None:
    oak, twin = product(world, "OAK", stock=10)
    stool, _ = product(world, "STOOL")
    world.katana.add_bom_row(stool, oak, 2)
    mo = world.katana.create_manufacturing_order(stool, world.warehouse, 3)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        [row] = world.katana.recipe_row_ids(mo)
        world.katana.delete_recipe_row(row)
        await runtime.engine.cycle()

        assert world.levels(twin) == (10, 10)


async def test_unlinking_a_made_to_order_manufacturing_order_re_reads_its_product(
    world: World, katana_clock: KatanaClock
) -> None:
    # Unlinking moves no number Katana serves (the order row still commits); what matters is
    # that the variants involved are read again, whatever Katana recomputes.
    table, _ = product(world, "TABLE", stock=3)
    order = world.katana.create_sales_order([(table, 1)], world.warehouse)
    [row] = world.katana.sales_order_row_ids(order)
    world.katana.make_to_order(row)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        reads = world.katana.requests_by_path["/inventory"]

        world.katana.unlink_manufacturing_order(row)
        await runtime.engine.cycle()

        assert world.katana.requests_by_path["/inventory"] == reads + 1


# ---- purchase orders -----------------------------------------------------------------------------


async def test_deleting_a_received_purchase_order_row_lowers_shopify(
    world: World, katana_clock: KatanaClock
) -> None:
    mug, twin = product(world, "MUG", stock=1)
    cup, _ = product(world, "CUP", stock=1)
    po = world.katana.receive_purchase_order([(cup, 6), (mug, 24)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(twin) == (25, 25)

        _, mug_row = world.katana.purchase_order_row_ids(po)
        world.katana.delete_purchase_order_row(mug_row)
        await runtime.engine.cycle()

        assert world.levels(twin) == (1, 1)


async def test_an_outsourced_purchase_order_commits_its_ingredients(
    world: World, katana_clock: KatanaClock
) -> None:
    oak, twin = product(world, "OAK", stock=10)
    stool, _ = product(world, "STOOL")
    world.katana.add_bom_row(stool, oak, 2)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        world.katana.create_outsourced_purchase_order(stool, world.warehouse, 3)
        await runtime.engine.cycle()

        assert world.levels(twin) == (4, 4)


async def test_repointing_an_outsourced_purchase_order_ingredient_updates_both_ingredients(
    world: World, katana_clock: KatanaClock
) -> None:
    oak, oak_twin = product(world, "OAK", stock=10)
    pine, pine_twin = product(world, "PINE", stock=10)
    stool, _ = product(world, "STOOL")
    world.katana.add_bom_row(stool, oak, 2)
    po = world.katana.create_outsourced_purchase_order(stool, world.warehouse, 3)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(oak_twin) == (4, 4)

        [row] = world.katana.outsourced_recipe_row_ids(po)
        world.katana.update_outsourced_recipe_row(row, variant_id=pine)
        await runtime.engine.cycle()

        assert (world.levels(oak_twin), world.levels(pine_twin)) == ((10, 10), (4, 4))


# ---- transfers and adjustments -------------------------------------------------------------------


async def test_a_draft_stock_transfer_commits_at_its_source(
    world: World, katana_clock: KatanaClock
) -> None:
    rug, twin = product(world, "RUG", stock=9)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        world.katana.create_stock_transfer([(rug, 4)], world.warehouse, world.outlet)
        await runtime.engine.cycle()

        assert world.levels(twin) == (5, 5)


async def test_a_stock_transfer_received_from_transit_raises_its_target(
    world: World, katana_clock: KatanaClock
) -> None:
    rug, twin = product(world, "RUG")
    world.katana.set_stock(rug, world.outlet, 9)
    transfer = world.katana.create_stock_transfer([(rug, 4)], world.outlet, world.warehouse)
    world.katana.ship_stock_transfer(transfer)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(twin) == (0, 0)

        world.katana.complete_stock_transfer(transfer)
        await runtime.engine.cycle()

        assert world.levels(twin) == (4, 4)


async def test_deleting_a_draft_stock_transfer_raises_shopify(
    world: World, katana_clock: KatanaClock
) -> None:
    rug, twin = product(world, "RUG", stock=9)
    transfer = world.katana.create_stock_transfer([(rug, 4)], world.warehouse, world.outlet)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)

        world.katana.delete_stock_transfer(transfer)
        await runtime.engine.cycle()

        assert world.levels(twin) == (9, 9)


async def test_deleting_a_stock_adjustment_restores_shopify(
    world: World, katana_clock: KatanaClock
) -> None:
    rug, twin = product(world, "RUG", stock=9)
    adjustment = world.katana.adjust_stock(rug, world.warehouse, -4)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(twin) == (5, 5)

        world.katana.delete_stock_adjustment(adjustment)
        await runtime.engine.cycle()

        assert world.levels(twin) == (9, 9)


# ---- BOM rows ------------------------------------------------------------------------------------


async def test_an_ingredient_committed_elsewhere_lowers_the_kits_that_use_it(
    world: World, katana_clock: KatanaClock
) -> None:
    leg, _ = product(world, "LEG", stock=8)
    kit, twin = product(world, "TABLE-KIT", kit=True)
    world.katana.add_bom_row(kit, leg, 4)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(twin) == (2, 2)

        world.katana.create_sales_order([(leg, 4)], world.warehouse)
        await runtime.engine.cycle()

        assert world.levels(twin) == (1, 1)


async def test_a_removed_bom_row_is_found_by_the_periodic_full_bom_read(
    world: World, katana_clock: KatanaClock
) -> None:
    leg, _ = product(world, "LEG", stock=8)
    glue, _ = product(world, "GLUE", stock=1)
    kit, twin = product(world, "TABLE-KIT", kit=True)
    world.katana.add_bom_row(kit, leg, 4)
    glue_row = world.katana.add_bom_row(kit, glue, 1)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(twin) == (1, 1)  # glue is the scarcest
        world.katana.delete_bom_row(glue_row)  # potential 2 now; nothing else records it
        # The last full BOM read is now older than the interval.
        due = runtime.engine.now() - sources.BOM_FULL_READ_INTERVAL
        await runtime.store.record_changes({}, {sources.BOM_FULL_READ_CURSOR: due}, [])

        await runtime.engine.cycle()

    assert world.levels(twin) == (2, 2)


async def test_bom_row_edits_advance_the_bom_cursor(
    world: World, katana_clock: KatanaClock
) -> None:
    # 300 BOM rows edited at once: two pages. Once Katana is quiet they are read no more.
    kit, _ = product(world, "KIT", kit=True)
    parts = world.katana.add_products([ProductSpec(f"Part {i}", [f"PART-{i}"]) for i in range(300)])
    rows = world.katana.add_bom_rows((kit, part, 1) for [part] in parts)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        for row in rows:
            world.katana.update_bom_row(row, 2)
        await quiet_cycle(runtime, katana_clock)

        before = world.katana.requests_by_path["/bom_rows"]
        await quiet_cycle(runtime, katana_clock)

        assert world.katana.requests_by_path["/bom_rows"] - before == 1


# ---- cursors -------------------------------------------------------------------------------------


def polled_paths() -> list[str]:
    return ["/variants", "/products", "/materials", "/bom_rows"] + [f"/{s}" for s in DELTA_SOURCES]


async def test_an_idle_cycle_after_a_burst_reads_one_page_per_source(
    world: World, katana_clock: KatanaClock
) -> None:
    # A catalogue import (300 products, two pages), 300 kit ingredients and a stock count of
    # them all (300 movements), then nothing.
    parts = world.katana.add_products([ProductSpec(f"Part {i}", [f"PART-{i}"]) for i in range(300)])
    kit, _ = product(world, "KIT", kit=True)
    world.katana.add_bom_rows((kit, part, 1) for [part] in parts)
    world.katana.set_stock_levels((part, world.warehouse, 3) for [part] in parts)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        katana_clock.advance()
        await runtime.engine.cycle()  # reads what the overlap still covers
        katana_clock.advance()

        before = Counter(world.katana.requests_by_path)
        await runtime.engine.cycle()
        made = Counter(world.katana.requests_by_path) - before

    assert made == Counter(polled_paths())
    assert sum(made.values()) == sources.IDLE_CYCLE_REQUESTS


async def test_a_change_committed_late_within_the_overlap_is_not_skipped(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        # A transaction stamped now but committed only after the next read has begun.
        world.katana.faults.hold_back(timedelta(seconds=30))
        world.katana.create_sales_order([(chair, 4)], world.warehouse)
        katana_clock.advance(timedelta(seconds=10))
        await runtime.engine.cycle()
        assert world.levels(twin) == (10, 10)  # not visible yet

        world.katana.faults.hold_back(timedelta(0))
        katana_clock.advance(timedelta(seconds=10))
        await runtime.engine.cycle()

        assert world.levels(twin) == (6, 6)


class HistoryClock:
    """A Katana clock writing the catalogue's history years back, then live."""

    def __init__(self) -> None:
        self._history: datetime | None = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        if self._history is None:
            return datetime.now(UTC)
        self._history += timedelta(minutes=5)
        return self._history

    def go_live(self) -> None:
        self._history = None


async def test_a_row_of_an_order_open_for_years_is_repointed_both_ways(tmp_path: Path) -> None:
    # Nothing stocksync ever read listed this row: only a full read of the row lists at the
    # first cycle can tell which variant it committed before it is re-pointed.
    clock = HistoryClock()
    katana = KatanaSim(api_key=KATANA_KEY, requests_per_minute=10000, clock=clock)
    shop = ShopifySim(access_token=SHOPIFY_TOKEN, bucket_size=2000, restore_rate=1000)
    warehouse = katana.add_location("Warehouse")
    outlet = katana.add_location("Outlet")
    main, pop_up = shop.add_location("Main"), shop.add_location("Pop-up")
    async with run_simulators(katana, shop) as urls:
        world = World(katana, shop, urls, tmp_path, warehouse, outlet, main, pop_up)
        chair, chair_twin = product(world, "CHAIR", stock=10)
        lamp, lamp_twin = product(world, "LAMP", stock=10)
        order = katana.create_sales_order([(chair, 4)], warehouse)
        clock.go_live()
        await world.cycle()
        assert world.levels(chair_twin) == (6, 6)

        [row] = katana.sales_order_row_ids(order)
        katana.update_sales_order_row(row, variant_id=lamp)
        await world.cycle()

        assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((10, 10), (6, 6))
