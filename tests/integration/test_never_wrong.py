"""Nothing unreadable, late or rejected leaves a wrong number behind (PRODUCT.md §3).

Whole cycles of the engine with the real clients against the simulators over loopback. A
"restart" is a fresh runtime on the same state file; a "crash" cancels a cycle mid-push.
"""

from __future__ import annotations

import asyncio

import pytest

from daemon.domain.models import ShopifyVariant
from daemon.sync.levels import park_backoff
from daemon.sync.report import CycleReport
from tests.integration.conftest import World

# Short enough to wait out in a test: how long Shopify may still apply a lost push.
LATE_PUSH = "late_push_seconds = 0.2"


async def crash_while_held(world: World) -> None:
    """Run a cycle until Shopify holds its push, then kill it there (the answer is lost)."""
    cycle = asyncio.create_task(world.cycle(world.settings(LATE_PUSH)))
    while world.shop.held_requests == 0:
        assert not cycle.done(), "the cycle ended without sending a push"
        await asyncio.sleep(0.01)
    cycle.cancel()
    await asyncio.gather(cycle, return_exceptions=True)


async def cycle(world: World) -> CycleReport:
    return await world.cycle(world.settings(LATE_PUSH))


async def wait_out_late_pushes() -> None:
    await asyncio.sleep(0.3)


# ---------------------------------------------------------------- unreadable Katana data


async def test_unreadable_stock_row_is_never_pushed_as_zero_and_stays_dirty(world: World) -> None:
    variant_id, twin = world.product("CUP", stock=10)
    assert twin is not None
    await cycle(world)
    world.katana.adjust_stock(variant_id, world.warehouse, -3)
    world.katana.faults.malformed_next(1)  # the next /inventory row: quantity_in_stock "abc"

    await cycle(world)

    assert world.levels(twin) == (10, 10)  # not 0, not a guess: left as last pushed
    async with world.runtime() as runtime:
        assert variant_id in await runtime.store.dirty("shop")
        problems = await runtime.store.problems("shop")
    assert problems[f"katana_variant:{variant_id}"].kind == "stock_unreadable"
    assert (
        world.metrics.registry.get_sample_value(
            "stocksync_unreadable_variants", {"connection": "shop"}
        )
        == 1
    )

    await cycle(world)  # Katana answers properly again: the retry pushes the real value

    assert world.levels(twin) == (7, 7)
    async with world.runtime() as runtime:
        assert variant_id not in await runtime.store.dirty("shop")
        assert f"katana_variant:{variant_id}" not in await runtime.store.problems("shop")


async def test_stock_row_without_a_variant_id_makes_its_variant_unreadable_not_zero(
    world: World,
) -> None:
    variant_id, twin = world.product("JUG", stock=6)
    assert twin is not None
    await cycle(world)
    world.katana.adjust_stock(variant_id, world.warehouse, 1)
    world.katana.faults.malformed_next(1, kind="missing_id")

    await cycle(world)

    assert world.levels(twin) == (6, 6)
    await cycle(world)
    assert world.levels(twin) == (7, 7)


async def test_unreadable_row_in_a_full_sync_keeps_only_that_variant_waiting(
    world: World,
) -> None:
    first, _ = world.product("AAA", stock=4, shopify=False)
    first_twin = world.shop.add_variant("AAA", available=99)  # what the shop showed before
    _, second_twin = world.product("BBB", stock=5)
    assert second_twin is not None
    world.katana.faults.malformed_next(1)  # the first row of the full read: AAA's

    report = await cycle(world)

    assert report.ok
    assert world.levels(first_twin) == (99, 99)  # never pushed, not even as 0
    assert world.levels(second_twin) == (5, 5)
    async with world.runtime() as runtime:
        assert await runtime.store.connection_synced("shop") is not None  # no full sync again
        assert first in await runtime.store.dirty("shop")
    await cycle(world)
    assert world.levels(first_twin) == (4, 4)


async def test_quantity_too_high_is_reported_and_kept_dirty(world: World) -> None:
    variant_id, twin = world.product("BOLT", stock=5)
    assert twin is not None
    await cycle(world)
    world.katana.set_stock(variant_id, world.warehouse, 2_000_000_000)

    await cycle(world)

    assert world.levels(twin) == (5, 5)
    async with world.runtime() as runtime:
        assert variant_id in await runtime.store.dirty("shop")
        problem = (await runtime.store.problems("shop"))[f"katana_variant:{variant_id}"]
    assert problem.kind == "quantity_too_high"
    world.katana.set_stock(variant_id, world.warehouse, 9)
    await cycle(world)
    assert world.levels(twin) == (9, 9)


# ---------------------------------------------------------------- late requests


async def test_lost_request_is_resent_unchanged_under_its_key_before_new_plans(
    world: World,
) -> None:
    variant_id, twin = world.product("PAN", stock=10)
    assert twin is not None
    world.shop.faults.hold_next_set(1, dedup=True)
    await crash_while_held(world)
    async with world.runtime() as runtime:
        [pending] = await runtime.store.pending_requests("shop")
    world.katana.create_sales_order([(variant_id, 3)], world.warehouse)

    await cycle(world)

    # The first call Shopify executed is the re-sent request, under its recorded key.
    assert world.shop.set_quantities_keys[0] == pending.request.key
    assert world.levels(twin) == (7, 7)
    world.shop.release_held()
    await world.shop.held_applied()  # Shopify's dedup works here: the late copy replays
    assert world.levels(twin) == (7, 7)
    async with world.runtime() as runtime:
        assert await runtime.store.pending_requests("shop") == []


async def test_unconditional_late_request_is_read_back_and_corrected(world: World) -> None:
    # A first push has nothing to compare against (changeFromQuantity null): if it lands after
    # newer pushes it overwrites them unconditionally.
    variant_id, twin = world.product("POT", stock=10)
    assert twin is not None
    world.shop.faults.hold_next_set(1, dedup=False)
    await crash_while_held(world)
    world.katana.create_sales_order([(variant_id, 3)], world.warehouse)
    async with world.runtime(world.settings(LATE_PUSH)) as restarted:
        await restarted.engine.cycle()  # re-sends the request (10), then 7 compared against 10
        await restarted.engine.cycle()  # settled: nothing left in the outbox
        assert world.levels(twin) == (7, 7)

        world.shop.release_held()
        await world.shop.held_applied()
        assert world.levels(twin) == (10, 10)  # the late request reverted the newer push

        await wait_out_late_pushes()
        await restarted.engine.cycle()

    assert world.levels(twin) == (7, 7)
    corrections = world.metrics.registry.get_sample_value(
        "stocksync_late_push_corrections_total", {"connection": "shop"}
    )
    assert corrections == 2


async def test_late_request_meeting_the_value_it_compares_against_is_corrected(
    world: World,
) -> None:
    variant_id, twin = world.product("LID", stock=10)
    assert twin is not None
    await cycle(world)  # Shopify acknowledged 10
    order = world.katana.create_sales_order([(variant_id, 3)], world.warehouse)
    world.shop.faults.hold_next_set(1, dedup=False)
    await crash_while_held(world)  # the request: 7, compared against 10
    async with world.runtime(world.settings(LATE_PUSH)) as restarted:
        await restarted.engine.cycle()  # re-sent: Shopify 7
        world.katana.delete_sales_order(order)  # Katana returns to 10
        await restarted.engine.cycle()  # 10, compared against 7
        await restarted.engine.cycle()  # settled: nothing left in the outbox
        assert world.levels(twin) == (10, 10)

        world.shop.release_held()
        await world.shop.held_applied()
        assert world.levels(twin) == (7, 7)  # the late request found the 10 it compared against

        await wait_out_late_pushes()
        await restarted.engine.cycle()

    assert world.levels(twin) == (10, 10)


async def test_request_whose_answer_is_lost_without_a_crash_is_resent_next_cycle(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant_id, twin = world.product("TIN", stock=4)
    assert twin is not None
    async with world.runtime(world.settings(LATE_PUSH)) as runtime:
        await runtime.engine.cycle()
        monkeypatch.setattr(runtime.engine.shopify["shop"]._transport, "_sleep", no_wait)
        world.katana.adjust_stock(variant_id, world.warehouse, 1)
        world.shop.faults.fail_next(6, status=503)  # every attempt of the push: answer lost

        failed = await runtime.engine.cycle()

        assert not failed.ok
        [pending] = await runtime.store.pending_requests("shop")
        assert variant_id in await runtime.store.dirty("shop")
        await runtime.engine.cycle()

    assert pending.request.key in world.shop.set_quantities_keys
    assert world.levels(twin) == (5, 5)


async def no_wait(_seconds: float) -> None:
    """A retry pause that takes no time."""


async def test_in_flight_level_is_never_sent_with_a_null_compare_once_acknowledged(
    world: World,
) -> None:
    variant_id, twin = world.product("CAN", stock=10)
    assert twin is not None
    await cycle(world)
    world.katana.adjust_stock(variant_id, world.warehouse, -2)
    world.shop.faults.hold_next_set(1, dedup=True)
    await crash_while_held(world)
    async with world.runtime() as runtime:
        [pending] = await runtime.store.pending_requests("shop")
    quantities = pending.request.variables["input"]["quantities"]
    assert {q["changeFromQuantity"] for q in quantities} == {10}


# ---------------------------------------------------------------- rejected levels


def main_only_product(world: World, sku: str, stock: int) -> tuple[int, ShopifyVariant]:
    """A product whose Shopify twin is not stocked at the pop-up (pushes there are rejected)."""
    variant_id, _ = world.product(sku, stock=stock, shopify=False)
    return variant_id, world.shop.add_variant(sku, stocked_at=[world.shop_main])


async def test_rejected_level_is_retried_after_a_bounded_pause(world: World) -> None:
    main_only_product(world, "FAN", 3)
    async with world.runtime(world.settings(LATE_PUSH)) as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()  # the creation's own marks settled
        calls = world.set_calls()

        await runtime.engine.cycle()  # parked: not tried again at once
        assert world.set_calls() == calls

        [parked] = (await runtime.store.parked("shop")).values()
        assert parked.attempts == 1
        await runtime.store.retry_parked_now("shop")  # as if its pause were over
        await runtime.engine.cycle()  # due: made dirty, read and tried again

        assert world.set_calls() > calls
        [parked] = (await runtime.store.parked("shop")).values()
        assert parked.attempts == 2
    assert park_backoff(2) == 2 * park_backoff(1)
    assert park_backoff(100) == park_backoff(50)  # bounded


async def test_new_katana_value_unparks_a_rejected_level(world: World) -> None:
    variant_id, twin = main_only_product(world, "OAR", 3)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()  # the creation's own marks settled; the pop-up parked
        world.shop.stock_item(twin.inventory_item_id, world.shop_pop_up)
        world.katana.adjust_stock(variant_id, world.warehouse, 2)

        await runtime.engine.cycle()

    assert world.levels(twin) == (5, 5)


async def test_reload_retries_parked_levels(world: World) -> None:
    _, twin = main_only_product(world, "KEG", 3)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.shop.stock_item(twin.inventory_item_id, world.shop_pop_up)
        await runtime.engine.cycle()
        assert world.levels(twin) == (3, 0)  # still parked

        settings = world.settings(LATE_PUSH)
        await runtime.engine.apply(settings, runtime.clients(settings))
        await runtime.engine.cycle()

    assert world.levels(twin) == (3, 3)


# ---------------------------------------------------------------- drift between polls


async def test_katana_change_netting_back_is_confirmed_against_shopify(world: World) -> None:
    variant_id, twin = world.product("HAT", stock=10)
    assert twin is not None
    await cycle(world)
    world.shop.place_order(twin.inventory_item_id, world.shop_main, 1)  # storefront: 9
    order = world.katana.create_sales_order([(variant_id, 2)], world.warehouse)
    world.katana.delete_sales_order(order)  # Katana nets back to 10 within one poll

    report = await cycle(world)

    assert world.levels(twin) == (10, 10)
    assert sum(c.stale_overwrites for c in report.connections) == 1


async def test_unchanged_variant_costs_no_shopify_call(world: World) -> None:
    world.product("CAP", stock=10)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()  # the creation's own marks settled
        calls = world.set_calls()

        await runtime.engine.cycle()

    assert world.set_calls() == calls


async def test_variant_kept_dirty_is_confirmed_once_per_katana_change(world: World) -> None:
    third = world.shop.add_location("Third")
    outlet_feeds_third = f"""{LATE_PUSH}
  [[connections.locations]]
  katana = "Outlet"
  shopify = "{third}"
"""
    variant_id, twin = world.product("SOCK", stock=10)
    assert twin is not None
    # Out of range at the outlet: that level is reported and the variant kept dirty, while its
    # warehouse levels are pushed.
    world.katana.set_stock(variant_id, world.outlet, 2_000_000_000)
    settings = world.settings(outlet_feeds_third)
    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()  # full sync
        assert world.levels(twin) == (10, 10)
        await runtime.engine.cycle()  # its mark is new to this process: confirmed
        calls = world.set_calls()

        await runtime.engine.cycle()  # the same mark: not confirmed again
        assert world.set_calls() == calls
        assert variant_id in await runtime.store.dirty("shop")

        await runtime.store.record_changes({variant_id: runtime.engine.now()}, {}, ["shop"])
        await runtime.engine.cycle()  # a new Katana change: confirmed again
        assert world.set_calls() == calls + 1


async def test_a_stock_problem_clearing_keeps_the_variants_mapping_problems(world: World) -> None:
    # A shadowed Katana variant (its SKU is won by a newer one) changes stock: planning the
    # dirty variants must not forget that it is shadowed.
    older, _ = world.product("TWIN", stock=1, shopify=False)
    world.product("TWIN", stock=2)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        before = await runtime.store.problems("shop")
        world.katana.adjust_stock(older, world.warehouse, 3)
        await runtime.engine.cycle()
        after = await runtime.store.problems("shop")

    shadowed = f"katana_variant:{older}"
    assert before[shadowed].kind == after[shadowed].kind
