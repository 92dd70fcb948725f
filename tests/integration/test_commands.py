"""The operator commands, run as real processes against the simulators (non-TTY output)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

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
    assert header == [
        "connection",
        "sku",
        "location",
        "shopify_now",
        "katana_desired",
        "drift",
        "rule",
    ]
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


async def test_an_unknown_connection_name_is_a_usage_error_not_a_failure(world: World) -> None:
    world.settings()

    run = await stocksync(world, "reconcile", "--connection", "nope")

    assert run.code == 2
    assert "no connection named 'nope' (known: shop)" in run.err


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
    # when (date, local time), connection, location, from, to, ...
    assert any(row.split()[4:6] == ["3", "5"] for row in rows)


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


def _levels(err: str) -> set[str]:
    return {json.loads(line)["level"] for line in err.splitlines() if line.startswith("{")}


async def test_log_level_option_drops_lines_below_it(world: World) -> None:
    world.product("QUIET", stock=1)
    world.settings()

    default = await stocksync(world, "sync-once")
    quiet = await stocksync(world, "sync-once", "--log-level", "warning")

    assert default.code == quiet.code == 0
    assert "info" in _levels(default.err)
    assert _levels(quiet.err) <= {"warning", "error", "critical"}


async def test_log_level_config_key_sets_the_level_and_the_option_wins(world: World) -> None:
    world.product("QUIET", stock=1)
    world.settings()
    path = world.folder / "stocksync.toml"
    path.write_text(path.read_text().replace("[daemon]\n", '[daemon]\nlog_level = "warning"\n'))

    from_config = await stocksync(world, "sync-once")
    overridden = await stocksync(world, "sync-once", "--log-level", "debug")

    assert _levels(from_config.err) <= {"warning", "error", "critical"}
    assert "debug" in _levels(overridden.err)


@asynccontextmanager
async def echoing_gateway() -> AsyncIterator[str]:
    """A server that refuses every request (HTTP 400) and echoes the request's headers, as a
    misconfigured proxy or gateway may: credentials included. Yields its base URL."""

    async def echo(request: web.Request) -> web.Response:
        said = "; ".join(f"{name}: {value}" for name, value in request.headers.items())
        if request.path.endswith("/graphql.json"):
            # GraphQL reports errors in the body of a 200 answer.
            return web.json_response({"errors": [{"message": f"rejected request with {said}"}]})
        return web.json_response({"message": f"rejected request with {said}"}, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _point_at(world: World, old_url: str, new_url: str) -> None:
    path = world.folder / "stocksync.toml"
    path.write_text(path.read_text().replace(old_url, new_url))


async def test_one_shot_commands_never_print_a_credential_a_server_echoes(world: World) -> None:
    world.product("ECHO", stock=1)
    world.settings()
    async with echoing_gateway() as gateway:
        _point_at(world, world.urls.katana, gateway + "/v1")
        runs = {
            command: await stocksync(world, *command.split())
            for command in ("sync-once", "plan", "check-config --online")
        }

    for command, run in runs.items():
        assert run.code == 1, (command, run.err)
        assert "rejected request with" in run.err, command  # the server's text is shown...
        assert KATANA_KEY not in run.out + run.err, command  # ...without the key it echoed
        assert "Bearer ***" in run.err, command


async def test_check_config_online_never_prints_a_shopify_token_a_server_echoes(
    world: World,
) -> None:
    world.settings()
    async with echoing_gateway() as gateway:
        _point_at(world, world.urls.shopify[0], gateway)
        run = await stocksync(world, "check-config", "--online")

    assert run.code == 1, run.err
    assert "katana: OK" in run.out
    assert "rejected request with" in run.err
    assert SHOPIFY_TOKEN not in run.out + run.err
    assert "X-Shopify-Access-Token: ***" in run.err
