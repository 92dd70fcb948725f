"""The operator commands, run as real processes against the simulators (non-TTY output)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from tests.integration.conftest import KATANA_KEY, SHOPIFY_TOKEN, World


@dataclass
class Run:
    code: int
    out: str
    err: str


async def stocksync(world: World, *args: str, token: str = SHOPIFY_TOKEN) -> Run:
    """`python -m daemon ARGS -c <world config>` with the world's secrets in the environment."""
    env = {**os.environ, "KATANA_API_KEY": KATANA_KEY, "SHOPIFY_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        *args,
        "-c",
        str(world.folder / "stocksync.toml"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def test_sync_once_pushes_and_prints_a_table(world: World) -> None:
    _, twin = world.product("ONCE", stock=5)
    assert twin is not None
    world.settings()

    run = await stocksync(world, "sync-once")

    assert run.code == 0, run.err
    assert "connection" in run.out
    assert "full" in run.out
    assert world.levels(twin) == (5, 5)


async def test_sync_once_with_every_connection_off_says_so_and_exits_0(world: World) -> None:
    world.settings(sync=False)

    run = await stocksync(world, "sync-once")

    assert run.code == 0
    assert "nothing to sync" in run.out


async def test_sync_once_exits_1_on_a_shopify_auth_failure_without_leaking_the_token(
    world: World,
) -> None:
    world.product("DENIED", stock=5)
    world.settings()

    run = await stocksync(world, "sync-once", token="shpat_wrong_token_0002")

    assert run.code == 1
    assert "ShopifyAuthError" in run.err
    assert "shpat_wrong_token_0002" not in run.out + run.err


async def test_plan_lists_sku_location_shopify_now_and_desired_without_writing(
    world: World,
) -> None:
    _, twin = world.product("PLAN", stock=7)
    assert twin is not None
    world.settings()

    run = await stocksync(world, "plan")

    assert run.code == 0, run.err
    header = run.out.splitlines()[0].split()
    assert header == ["connection", "sku", "location", "shopify_now", "katana_desired", "drift"]
    assert "PLAN" in run.out
    assert world.set_calls() == 0
    assert KATANA_KEY not in run.out + run.err
    assert SHOPIFY_TOKEN not in run.out + run.err


async def test_reconcile_overwrites_drift_and_counts_it(world: World) -> None:
    _, twin = world.product("DRIFT", stock=6)
    assert twin is not None
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0
    world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 40)

    dry = await stocksync(world, "reconcile", "--dry-run")
    assert dry.code == 0, dry.err
    assert "DRIFT" in dry.out
    assert world.levels(twin) == (40, 6)

    run = await stocksync(world, "reconcile")
    assert run.code == 0, run.err
    assert "1 drifted" in run.out
    assert world.levels(twin) == (6, 6)


async def test_reconcile_never_writes_to_a_connection_whose_sync_is_off(world: World) -> None:
    _, twin = world.product("OFF", stock=6)
    assert twin is not None
    world.settings(sync=False)

    run = await stocksync(world, "reconcile", "--connection", "shop")

    assert run.code == 0, run.err
    assert "skipped" in run.out
    assert world.set_calls() == 0


async def test_mappings_reports_mapped_unmapped_shadowed_and_untracked_as_csv(
    world: World,
) -> None:
    world.product("MAPPED", stock=1)
    world.product("KATANA-ONLY", stock=1, shopify=False)
    world.product("DUP", shopify=False)
    world.product("DUP")
    world.katana.add_product("P GHOST", ["GHOST"])
    world.shop.add_variant("GHOST", tracked=False)
    world.settings()

    run = await stocksync(world, "mappings", "--format", "csv")

    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "connection,status,sku,katana_variant,shopify_variant,note"
    statuses = {(line.split(",")[1], line.split(",")[2]) for line in lines[1:]}
    assert ("mapped", "MAPPED") in statuses
    assert ("unmapped", "KATANA-ONLY") in statuses
    assert ("shadowed", "DUP") in statuses
    assert ("untracked", "GHOST") in statuses


async def test_history_shows_every_push_of_a_sku(world: World) -> None:
    variant_id, _ = world.product("HIST", stock=3)
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0
    world.katana.adjust_stock(variant_id, world.warehouse, 2)
    assert (await stocksync(world, "sync-once")).code == 0

    run = await stocksync(world, "history", "HIST")

    assert run.code == 0, run.err
    rows = run.out.splitlines()[2:]
    assert len(rows) == 4  # two locations × two pushes
    assert any(" 3  5 " in f" {row} " or row.split()[3:5] == ["3", "5"] for row in rows)


async def test_release_hold_on_a_connection_that_is_not_held_says_so(world: World) -> None:
    world.settings()

    run = await stocksync(world, "release-hold", "shop")

    assert run.code == 0, run.err
    assert "was not held" in run.out


async def test_check_config_online_verifies_credentials_and_locations(world: World) -> None:
    world.settings()
    good = await stocksync(world, "check-config", "--online")
    assert good.code == 0, good.err
    assert "katana: OK" in good.out

    text = (world.folder / "stocksync.toml").read_text()
    (world.folder / "stocksync.toml").write_text(
        text.replace(world.shop_pop_up, "gid://shopify/Location/999")
    )
    bad = await stocksync(world, "check-config", "--online")
    assert bad.code == 1
    assert "gid://shopify/Location/999 does not exist" in bad.err
    assert not (world.folder / "state").exists()  # checking a config touches no state


async def test_check_config_online_says_a_deactivated_location_is_deactivated(
    world: World,
) -> None:
    # Shopify's `locations` leaves deactivated locations out unless `includeInactive: true`.
    world.settings()
    world.shop.deactivate_location(world.shop_pop_up)

    run = await stocksync(world, "check-config", "--online")

    assert run.code == 1
    assert f"Shopify location {world.shop_pop_up} (Pop-up) is deactivated" in run.err
    assert "does not exist" not in run.err
