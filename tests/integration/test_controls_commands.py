"""The merchant controls (issue 18) in the operator commands, run as real processes against the
simulators: plan shows each level's rule, mappings lists filtered variants, and `stocksync push
SKU` pushes one SKU now through the daemon's push path (and never beside a running daemon)."""

from __future__ import annotations

import asyncio
import os

from daemon.statelock import StateLock
from daemon.sync.push_sku import push_sku
from tests.integration.conftest import World
from tests.integration.test_commands import stocksync


def packs(world: World, rows: str) -> str:
    (world.folder / "packs.csv").write_text(
        "katana_variant_id,shopify_variant_id,units_per_pack,buffer\n" + rows
    )
    return 'variant_map_file = "packs.csv"\n'


async def test_plan_shows_each_levels_rule_a_pool_and_a_pack_size(world: World) -> None:
    pooled = world.shop.add_location("Pooled")
    variant_id, single = world.product("CUP", stock=13)
    assert single is not None
    six = world.shop.add_variant("CUP-6")
    world.katana.set_stock(variant_id, world.outlet, 5)
    world.settings(
        packs(world, f"{variant_id},{single.id},,\n{variant_id},{six.id},6,2\n")
        + f'  [[connections.locations]]\n  katana = ["Warehouse", "Outlet"]\n'
        f'  shopify = "{pooled}"\n'
    )

    run = await stocksync(world, "plan")

    assert run.code == 0, run.err
    line = next(line for line in run.out.splitlines() if "Pooled" in line and "pack" in line)
    assert line.split()[4] == "2"  # floor((13 + 5 - 2) / 6)
    assert line.rstrip().endswith("pool of Warehouse + Outlet; pack of 6, buffer 2")
    assert world.set_calls() == 0


async def test_mappings_lists_filtered_variants_with_the_rule_that_leaves_them_out(
    world: World,
) -> None:
    sample, sample_twin = world.product("TEA-SAMPLE", stock=1)
    assert sample_twin is not None
    variant_id, single = world.product("TEA", stock=1)
    assert single is not None
    six = world.shop.add_variant("TEA-6")
    world.settings(
        packs(world, f"{variant_id},{single.id},,\n{variant_id},{six.id},6,\n")
        + '[connections.filters]\nexclude_skus = ["*-SAMPLE"]\n'
    )

    run = await stocksync(world, "mappings", "--format", "csv")

    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert (
        f"shop,filtered,TEA-SAMPLE,{sample},{sample_twin.id},"
        "SKU 'TEA-SAMPLE' matches exclude_skus pattern '*-SAMPLE'"
    ) in lines
    assert f"shop,mapped,TEA,{variant_id},{six.id},pack of 6" in lines
    assert not any(line.startswith("shop,shopify_only,TEA-SAMPLE") for line in lines)
    assert ", 1 filtered" in run.err  # the totals line


async def test_push_sets_one_skus_levels_now_printing_before_and_after(world: World) -> None:
    _, mug = world.product("MUG", stock=8)
    _, other = world.product("BOWL", stock=5)
    assert mug is not None
    assert other is not None
    world.shop.set_available_manually(mug.inventory_item_id, world.shop_main, 3)
    world.settings()

    run = await stocksync(world, "push", "MUG")

    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == [
        "connection",
        "sku",
        "shopify_variant",
        "location",
        "before",
        "→",
        "after",
        "result",
        "rule",
    ]
    assert any("Main" in line and "3 → 8" in line and "applied" in line for line in lines)
    assert world.levels(mug) == (8, 8)
    assert world.levels(other) == (0, 0)  # only that SKU
    again = await stocksync(world, "push", "MUG")
    assert again.code == 0, again.err
    assert sum("8 → 8" in line and "unchanged" in line for line in again.out.splitlines()) == 2


async def test_push_of_an_unknown_sku_is_a_usage_error(world: World) -> None:
    world.product("KNOWN", stock=1)
    world.settings()

    run = await stocksync(world, "push", "NOPE")

    assert run.code == 2
    assert "no Katana variant has the SKU 'NOPE'" in run.err
    assert world.set_calls() == 0


async def test_push_of_a_filtered_sku_pushes_nothing_and_says_why(world: World) -> None:
    world.product("GIFT-SAMPLE", stock=4)
    world.settings('[connections.filters]\nexclude_skus = "*-SAMPLE"\n')

    run = await stocksync(world, "push", "GIFT-SAMPLE")

    assert run.code == 1
    assert "left out by the sync filters" in run.out
    assert world.set_calls() == 0


async def test_push_to_a_connection_whose_sync_is_off_says_so(world: World) -> None:
    world.product("OFFLINE", stock=4)
    world.settings(sync=False)

    run = await stocksync(world, "push", "OFFLINE", "--connection", "shop")

    assert run.code == 1
    assert "shop: sync_inventory is off: nothing pushed" in run.out
    assert world.set_calls() == 0


async def test_push_is_refused_while_a_daemon_holds_the_state_file_naming_the_holder(
    world: World,
) -> None:
    world.product("BUSY", stock=4)
    settings = world.settings()

    with StateLock.acquire(settings.daemon.state_path):  # as a running daemon holds it
        run = await stocksync(world, "push", "BUSY")

    assert run.code == 1
    assert f"in use by another stocksync process (pid {os.getpid()}" in run.err
    assert "does not run beside the daemon" in run.err
    assert world.set_calls() == 0


async def test_a_push_killed_mid_request_is_re_sent_by_the_next_cycle_under_its_key(
    world: World,
) -> None:
    variant_id, twin = world.product("JUG", stock=10)
    assert twin is not None
    await world.cycle()  # Shopify shows 10
    world.katana.create_sales_order([(variant_id, 4)], world.warehouse)
    world.shop.faults.hold_next_set(1, dedup=True)

    async def push() -> None:
        async with world.runtime() as runtime:
            await push_sku(runtime.engine, "JUG")

    task = asyncio.create_task(push())
    while world.shop.held_requests == 0:
        assert not task.done(), "the push ended without sending its request"
        await asyncio.sleep(0.01)
    task.cancel()  # killed with its request in Shopify's hands: the answer is lost
    await asyncio.gather(task, return_exceptions=True)
    async with world.runtime() as runtime:
        [pending] = await runtime.store.pending_requests("shop")
    sent_before = len(world.shop.set_quantities_keys)

    await world.cycle()

    # Recorded before it was sent, so the next cycle re-sends it first, under its own key.
    assert world.shop.set_quantities_keys[sent_before] == pending.request.key
    assert world.levels(twin) == (6, 6)
    world.shop.release_held()
    await world.shop.held_applied()
    assert world.levels(twin) == (6, 6)
    async with world.runtime() as runtime:
        assert await runtime.store.pending_requests("shop") == []
