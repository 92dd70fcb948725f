"""What an operator reads from `plan`, `mappings`, `reconcile --dry-run` and `history`, and that
the read-only ones change nothing (issue 15). Real processes against the simulators."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import re
import sys
from pathlib import Path

from daemon.sync.reconcile import Reconciler
from tests.integration.conftest import KATANA_KEY, SHOPIFY_TOKEN, World
from tests.integration.test_commands import Run

SECOND_CONNECTION = """
[[connections]]
name = "other"
shop = "sim-shop.myshopify.com"
admin_url = "{admin_url}"
access_token_env = "SHOPIFY_TOKEN"
sync_inventory = true

  [[connections.locations]]
  katana = "Warehouse"
  shopify = ["{location}"]
"""


async def stocksync(world: World, *args: str, env: dict[str, str] | None = None) -> Run:
    """`python -m daemon ARGS -c <world config>`, output not a terminal."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        *args,
        "-c",
        str(world.folder / "stocksync.toml"),
        env={
            **os.environ,
            "KATANA_API_KEY": KATANA_KEY,
            "SHOPIFY_TOKEN": SHOPIFY_TOKEN,
            **(env or {}),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def state_folder(world: World) -> Path:
    return world.folder / "state"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def add_second_connection(world: World) -> None:
    """A second connection on the same simulated shop (its own Shopify catalogue read)."""
    path = world.folder / "stocksync.toml"
    second = SECOND_CONNECTION.format(admin_url=world.urls.shopify[0], location=world.shop_main)
    path.write_text(path.read_text() + second)


def table_rows(out: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose header starts with `first_header` (split on 2+ spaces)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


# -- plan --------------------------------------------------------------------------------------


async def test_plan_creates_no_state_file(world: World) -> None:
    world.product("NEW", stock=3)
    world.settings()

    run = await stocksync(world, "plan")

    assert run.code == 0, run.err
    assert "NEW" in run.out
    assert not state_folder(world).exists()


async def test_plan_leaves_an_existing_state_file_as_it_was(world: World) -> None:
    variant, _ = world.product("KEPT", stock=3)
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0
    world.katana.adjust_stock(variant, world.warehouse, 4)
    before = digests(state_folder(world))

    run = await stocksync(world, "plan")

    assert run.code == 0, run.err
    assert "KEPT" in run.out
    assert digests(state_folder(world)) == before


async def test_plan_for_one_connection_reads_only_that_connections_shopify_catalogue(
    world: World,
) -> None:
    world.product("ONE", stock=2)
    world.settings()
    add_second_connection(world)

    both = world.shop.query_calls["Variants"]
    run = await stocksync(world, "plan", "--connection", "other")
    only_one = world.shop.query_calls["Variants"] - both

    assert run.code == 0, run.err
    assert only_one == 1
    assert {row[0] for row in table_rows(run.out, "connection  sku")} == {"other"}


async def test_plan_shows_location_names_and_a_summary_of_changes_and_drops_to_0(
    world: World,
) -> None:
    going, _ = world.product("GOING", stock=5)
    world.product("STAYING", stock=5)
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0
    world.katana.set_stock(going, world.warehouse, 0)

    run = await stocksync(world, "plan")

    assert run.code == 0, run.err
    plan = table_rows(run.out, "connection  sku")
    # sku, location (by name), Shopify now, Katana-desired
    assert sorted(tuple(row[1:5]) for row in plan) == [
        ("GOING", "Main", "5", "0"),
        ("GOING", "Pop-up", "5", "0"),
    ]
    assert world.shop_main not in run.out
    summary = table_rows(run.out, "connection  location")
    # connection, location, levels, changes, to 0
    assert sorted(summary) == [
        ["shop", "Main", "2", "1", "1"],
        ["shop", "Pop-up", "2", "1", "1"],
    ]
    assert "2 levels would change, 2 of them to 0" in run.out


async def test_plan_warns_when_a_whole_location_would_go_to_0(world: World) -> None:
    first, _ = world.product("A", stock=5)
    second, _ = world.product("B", stock=5)
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0
    world.katana.set_stock(first, world.warehouse, 0)
    world.katana.set_stock(second, world.warehouse, 0)

    run = await stocksync(world, "plan")

    assert run.code == 0, run.err
    assert "every level at Main would go to 0" in run.out
    assert "every level at Pop-up would go to 0" in run.out


async def test_plan_progress_counts_the_levels_read_from_shopify(world: World) -> None:
    for n in range(3):
        world.product(f"P{n}", stock=n + 1)
    phases: list[str] = []

    async with world.runtime() as runtime:
        await Reconciler.of(runtime.engine, phases.append).run(dry_run=True, full=True)

    assert any(re.search(r"shop: read Shopify levels of 3/3 items", p) for p in phases), phases
    assert any(re.search(r"read Katana stock of \d+ variants", p) for p in phases), phases


# -- mappings ----------------------------------------------------------------------------------


async def test_mappings_of_an_unknown_connection_is_a_usage_error(world: World) -> None:
    world.settings()

    run = await stocksync(world, "mappings", "--connection", "nope")

    assert run.code == 2
    assert "no connection named 'nope' (known: shop)" in run.err
    assert run.out == ""


async def test_mappings_lists_a_shadowed_variant_once_and_shopify_only_variants(
    world: World,
) -> None:
    world.product("MAPPED", stock=1)
    world.product("DUP", shopify=False)
    world.product("DUP")
    world.shop.add_variant("SHOP-ONLY")
    world.settings()

    run = await stocksync(world, "mappings", "--format", "csv")

    assert run.code == 0, run.err
    rows = [line.split(",") for line in run.out.splitlines()[1:]]
    assert [(r[1], r[2]) for r in rows if r[2] == "DUP"] == [("mapped", "DUP"), ("shadowed", "DUP")]
    assert ("shopify_only", "SHOP-ONLY") in {(r[1], r[2]) for r in rows}
    assert not state_folder(world).exists()


async def test_mappings_ends_with_a_totals_line_per_connection(world: World) -> None:
    world.product("MAPPED", stock=1)
    world.product("KATANA-ONLY", shopify=False)
    world.shop.add_variant("SHOP-ONLY")
    world.settings()

    run = await stocksync(world, "mappings")

    assert run.code == 0, run.err
    assert run.out.splitlines()[-1] == (
        "shop: 1 mapped, 1 unmapped, 0 shadowed, 0 untracked, 1 Shopify-only, "
        "0 bad variant map entries"
    )


# -- reconcile --dry-run ------------------------------------------------------------------------


async def test_reconcile_dry_run_ends_with_a_summary_and_writes_nothing(world: World) -> None:
    _, twin = world.product("DRIFT", stock=6)
    assert twin is not None
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0
    world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 40)
    before = digests(state_folder(world))

    run = await stocksync(world, "reconcile", "--dry-run")

    assert run.code == 0, run.err
    assert run.out.splitlines()[-1] == (
        "dry run: 2 levels checked, 1 would change (1 drifted), 0 to 0; nothing was written"
    )
    assert digests(state_folder(world)) == before
    assert world.levels(twin) == (40, 6)


# -- history -----------------------------------------------------------------------------------


async def test_history_shows_local_time_with_its_utc_offset(world: World) -> None:
    world.product("WHEN", stock=3)
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0

    run = await stocksync(world, "history", "WHEN", env={"TZ": "Asia/Kolkata"})

    assert run.code == 0, run.err
    rows = table_rows(run.out, "when")
    assert rows
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+05:30", row[0]) for row in rows)


async def test_history_filters_by_connection_and_since(world: World) -> None:
    world.product("FILTER", stock=3)
    world.settings()
    assert (await stocksync(world, "sync-once")).code == 0

    recent = await stocksync(world, "history", "FILTER", "--since", "1h")
    elsewhere = await stocksync(world, "history", "FILTER", "--connection", "other")
    future = await stocksync(world, "history", "FILTER", "--since", "2099-01-01")

    assert len(table_rows(recent.out, "when")) == 2
    assert "no pushes recorded for SKU 'FILTER'" in elsewhere.out
    assert "no pushes recorded for SKU 'FILTER'" in future.out


async def test_history_without_a_state_file_says_so_and_creates_none(world: World) -> None:
    world.settings()

    run = await stocksync(world, "history", "ANY")

    assert run.code == 1
    assert "no state database at" in run.err
    assert not state_folder(world).exists()


async def test_mappings_says_why_a_shopify_variant_is_fed_by_nothing(world: World) -> None:
    # Katana's MOVED is mapped by the variant map to another Shopify variant, so the Shopify
    # variant with the SKU MOVED is fed by nothing; LONELY's SKU is in Shopify only.
    moved, _ = world.product("MOVED", stock=1)
    target = world.shop.add_variant("ELSEWHERE")
    world.shop.add_variant("LONELY")
    world.settings(variant_map=f"{moved},{target.id}\n")

    run = await stocksync(world, "mappings", "--format", "csv")

    assert run.code == 0, run.err
    notes = {
        row[2]: row[5] for row in csv.reader(run.out.splitlines()[1:]) if row[1] == "shopify_only"
    }
    assert (
        notes["MOVED"] == "the Katana variant with this SKU is mapped elsewhere by the variant map"
    )
    assert notes["LONELY"] == "no Katana variant has this SKU, and no variant map entry names it"


async def test_reconcile_dry_run_creates_no_state_file(world: World) -> None:
    world.product("FRESH", stock=2)
    world.settings()

    run = await stocksync(world, "reconcile", "--dry-run")

    assert run.code == 0, run.err
    assert "FRESH" in run.out
    assert not state_folder(world).exists()
