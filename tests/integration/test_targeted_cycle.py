"""Webhook hints drive a targeted cycle: only the named resource is read (issue 17).

Whole cycles of the engine against the simulated Katana, as in test_change_capture.py: Katana's
clock is moved past the cursors' overlap after settling, so what a targeted cycle finds it can
only have found through the resource its hint names.
"""

from __future__ import annotations

import pytest

from daemon.katana.models import DELTA_SOURCES
from daemon.webhooks import Hint
from tests.integration.conftest import KatanaClock, World
from tests.integration.test_change_capture import product, settle


def hint(action: str, object_id: int | str) -> Hint:
    return Hint(action.partition(".")[0], action, str(object_id))


def paths(world: World) -> set[str]:
    return {p for p, n in world.katana.requests_by_path.items() if n}


async def test_a_targeted_cycle_reads_only_the_named_sales_order_and_pushes_the_change(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    product(world, "LAMP", stock=5)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
        world.katana.requests_by_path.clear()

        report = await runtime.engine.cycle([hint("sales_order.created", order)])

        assert report.targeted
        assert report.ok
        assert world.levels(twin) == (6, 6)
        assert paths(world) == {"/sales_order_rows", "/inventory"}


async def test_a_targeted_cycle_updates_both_variants_of_a_repointed_row(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, chair_twin = product(world, "CHAIR", stock=10)
    lamp, lamp_twin = product(world, "LAMP", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        [row] = world.katana.sales_order_row_ids(order)
        world.katana.update_sales_order_row(row, variant_id=lamp, quantity=3)

        report = await runtime.engine.cycle([hint("sales_order.updated", order)])

        assert report.targeted
        assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((10, 10), (7, 7))


async def test_a_targeted_cycle_for_a_delivered_order_whose_rows_did_not_change(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        world.katana.deliver_sales_order(order)
        world.katana.set_stock(chair, world.warehouse, 5)  # a recount after delivery

        report = await runtime.engine.cycle([hint("sales_order.delivered", order)])

        assert report.targeted
        assert world.levels(twin) == (5, 5)


async def test_a_targeted_cycle_for_current_inventory_reads_only_the_movement_lists(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        world.katana.adjust_stock(chair, world.warehouse, -3)
        world.katana.requests_by_path.clear()

        report = await runtime.engine.cycle([hint("current_inventory.product_updated", 99)])

        assert report.targeted
        assert world.levels(twin) == (7, 7)
        assert paths(world) <= {
            "/inventory_movements",
            "/stock_adjustments",
            "/stock_transfers",
            "/inventory",
        }


async def test_a_targeted_cycle_for_a_completed_manufacturing_order(
    world: World, katana_clock: KatanaClock
) -> None:
    table, table_twin = product(world, "TABLE", stock=0)
    leg, leg_twin = product(world, "LEG", stock=20)
    world.katana.add_bom_row(table, leg, 4)
    mo = world.katana.create_manufacturing_order(table, world.warehouse, 2)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        assert world.levels(leg_twin) == (12, 12)
        world.katana.complete_manufacturing_order(mo)
        world.katana.requests_by_path.clear()

        report = await runtime.engine.cycle([hint("manufacturing_order.done", mo)])

        assert report.targeted
        assert world.levels(table_twin) == (2, 2)
        assert world.levels(leg_twin) == (12, 12)
        assert "/inventory_movements" not in paths(world)


async def test_a_targeted_cycle_coalesces_several_orders_into_one_row_read(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, chair_twin = product(world, "CHAIR", stock=10)
    lamp, lamp_twin = product(world, "LAMP", stock=10)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        first = world.katana.create_sales_order([(chair, 1)], world.warehouse)
        second = world.katana.create_sales_order([(lamp, 2)], world.warehouse)
        world.katana.requests_by_path.clear()

        hints = [hint("sales_order.created", first), hint("sales_order.created", second)]
        report = await runtime.engine.cycle(hints)

        assert report.targeted
        assert (world.levels(chair_twin), world.levels(lamp_twin)) == ((9, 9), (8, 8))
        assert world.katana.requests_by_path["/sales_order_rows"] == 1


@pytest.mark.parametrize(
    "hints",
    [
        pytest.param([None], id="unknown-payload"),
        pytest.param([hint("sales_order.created", "SO-7")], id="non-numeric-id"),
        pytest.param([hint("variant.updated", 1)], id="catalogue-event"),
    ],
)
async def test_fallback_on_an_unknown_payload_is_a_delta_cycle(
    world: World, katana_clock: KatanaClock, hints: list[Hint | None]
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        world.katana.create_sales_order([(chair, 4)], world.warehouse)
        world.katana.requests_by_path.clear()

        report = await runtime.engine.cycle(hints)

        assert not report.targeted
        assert report.ok
        assert world.levels(twin) == (6, 6)
        assert {f"/{s}" for s in DELTA_SOURCES} <= paths(world)


async def test_fallback_when_the_targeted_read_fails_is_a_delta_cycle(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, twin = product(world, "CHAIR", stock=10)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        order = world.katana.create_sales_order([(chair, 4)], world.warehouse)
        world.katana.faults.fail_next(1, status=422)  # not retried: the targeted read fails

        report = await runtime.engine.cycle([hint("sales_order.created", order)])

        assert not report.targeted
        assert report.ok
        assert world.levels(twin) == (6, 6)


async def test_a_safety_net_poll_reports_changes_no_delivery_announced(
    world: World, katana_clock: KatanaClock
) -> None:
    chair, _ = product(world, "CHAIR", stock=10)
    lamp, _ = product(world, "LAMP", stock=10)
    async with world.runtime() as runtime:
        await settle(runtime, katana_clock)
        announced = world.katana.create_sales_order([(chair, 1)], world.warehouse)
        await runtime.engine.cycle([hint("sales_order.created", announced)])
        world.katana.create_sales_order([(lamp, 1)], world.warehouse)  # its delivery was lost

        report = await runtime.engine.cycle()

        assert report.unannounced == 1
        assert (await runtime.engine.cycle()).unannounced == 0
