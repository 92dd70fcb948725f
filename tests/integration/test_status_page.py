"""The status page (/, /status, /status.json) over a real engine, store and simulators.

Each test runs real cycles against the simulated Katana and Shopify, then reads the page the
way a merchant's browser or a tool would: through the daemon's own aiohttp app.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from daemon.http import Health, build_app
from daemon.katana.client import KatanaUnavailable
from daemon.logs import HealthLog
from daemon.runtime import Runtime
from daemon.secrets import Secret
from daemon.status.model import StatusModel, StatusSources, StockCache
from daemon.status.routes import StatusRoutes
from daemon.sync.reconcile import Reconciler
from daemon.sync.report import CycleReport
from tests.integration.conftest import World

REPO = Path(__file__).resolve().parents[2]
Client = TestClient[web.Request, web.Application]


class WallClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def status_client(
    world: World,
    runtime: Runtime,
    *,
    health_log: HealthLog | None = None,
    token: Secret | None = None,
    report: Callable[[], CycleReport | None] = lambda: None,
    stock_cache: StockCache | None = None,
) -> AsyncIterator[Client]:
    """The daemon's HTTP app with the status page wired as `stocksync run` wires it."""
    log = health_log if health_log is not None else HealthLog()
    sources = StatusSources(
        engine=runtime.engine,
        metrics=world.metrics,
        outage=log.outage,
        last_cycle=report,
        started_at=datetime.now(UTC),
    )
    routes = StatusRoutes(StatusModel(sources, stock_cache=stock_cache), lambda: token)
    async with TestClient(TestServer(build_app(world.metrics, Health(30.0), status=routes))) as c:
        yield c


async def status_json(client: Client, query: str = "") -> dict[str, Any]:
    response = await client.get("/status.json" + query)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def connection(body: dict[str, Any], name: str = "shop") -> dict[str, Any]:
    [found] = [c for c in body["connections"] if c["name"] == name]
    return found


def group(body: dict[str, Any], key: str) -> dict[str, Any]:
    [found] = [g for g in body["problems"]["groups"] if g["key"] == key]
    return found


async def test_each_connection_is_shown_in_sync_after_its_full_sync(world: World) -> None:
    for n in range(3):
        world.product(f"CALM-{n}", stock=4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()  # the full sync
        await runtime.engine.cycle()  # the changes recorded meanwhile (the new products)
        async with status_client(world, runtime) as client:
            body = await status_json(client)
            page = await (await client.get("/")).text()

    shop = connection(body)
    assert shop["state"] == "in_sync"
    assert shop["sync_enabled"] is True
    assert shop["waiting_variants"] == 0
    assert shop["mapped_variants"] == 3
    assert shop["mapped_levels"] == 6
    assert shop["last_full_sync"] is not None
    assert shop["held"] is None
    assert 'data-connection="shop" data-state="in_sync"' in page


async def test_a_connection_whose_sync_is_off_says_so(world: World) -> None:
    world.product("CALM", stock=4)
    async with world.runtime(world.settings(sync=False)) as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            body = await status_json(client)

    assert connection(body)["state"] == "off"
    assert connection(body)["sync_enabled"] is False


async def test_a_held_connection_shows_the_exact_command_that_releases_it(world: World) -> None:
    settings = world.settings("min_drop_count = 3\nmax_drop_fraction = 0.5\n")
    variants = [world.product(f"V{i}", stock=5) for i in range(4)]
    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()
        for variant_id, _ in variants:
            world.katana.adjust_stock(variant_id, world.warehouse, -5)
        assert (await runtime.engine.cycle()).connections[0].held
        async with status_client(world, runtime) as client:
            body = await status_json(client)
            page = await (await client.get("/status")).text()
            assert await runtime.store.release_hold("shop")
            released = await status_json(client)

    shop = connection(body)
    assert shop["state"] == "held"
    command = f"stocksync release-hold -c {settings.source} shop"
    assert shop["held"]["release_command"] == command
    assert shop["held"]["since"] is not None
    assert "release-hold" in shop["held"]["reason"]
    assert f'<code class="release">{command}</code>' in page
    assert connection(released)["held"] is None


async def test_katana_unreachable_shows_since_the_first_failed_poll_of_the_outage(
    world: World,
) -> None:
    world.product("CALM", stock=4)
    wall = WallClock(1_800_000_000.0)
    health_log = HealthLog(wall_clock=wall)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.engine.cycle()
        health_log.failed("poll", KatanaUnavailable("Katana answered 503 six times"))
        wall.now += 600
        health_log.failed("poll", KatanaUnavailable("Katana answered 503 six times"))
        async with status_client(world, runtime, health_log=health_log) as client:
            down = await status_json(client)
            health_log.succeeded("poll")
            back = await status_json(client)

    assert down["katana"]["reachable"] is False
    assert down["katana"]["unreachable_since"] == "2027-01-15T08:00:00Z"
    assert connection(down)["state"] == "katana_unreachable"
    assert connection(down)["since"] == "2027-01-15T08:00:00Z"
    assert "503" in connection(down)["error"]
    assert back["katana"]["reachable"] is True
    assert connection(back)["state"] == "in_sync"


async def test_a_cycle_failing_for_another_reason_is_not_called_katana_unreachable(
    world: World,
) -> None:
    world.product("CALM", stock=4)
    health_log = HealthLog()
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        health_log.failed("poll", OSError("disk full"))
        async with status_client(world, runtime, health_log=health_log) as client:
            body = await status_json(client)

    assert body["katana"]["reachable"] is True
    assert body["cycle_error"] == "OSError: disk full"
    assert connection(body)["state"] == "failing"


async def test_variants_waiting_to_be_pushed_show_as_catching_up(world: World) -> None:
    variant_id, _ = world.product("CALM", stock=4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        await runtime.store.record_changes({variant_id: datetime.now(UTC)}, {}, ["shop"])
        async with status_client(world, runtime) as client:
            body = await status_json(client)

    assert connection(body)["state"] == "catching_up"
    assert connection(body)["waiting_variants"] == 1
    assert "1 variant waiting" in connection(body)["summary"]


async def test_problems_are_grouped_counted_and_named_by_sku_with_a_plain_reason(
    world: World,
) -> None:
    world.product("CALM", stock=4)
    world.product("KATANA-ONLY", stock=2, shopify=False)
    world.katana.add_product("Older twin", ["TWIN"])
    world.product("TWIN", stock=1)  # created later: it wins the SKU, the older one is shadowed
    world.katana.add_product("Untracked", ["LOOSE"])
    world.shop.add_variant("LOOSE", tracked=False)
    [not_stocked] = world.katana.add_product("Pop-up missing", ["NOT-STOCKED"])
    world.katana.set_stock(not_stocked, world.warehouse, 3)
    world.shop.add_variant("NOT-STOCKED", stocked_at=[world.shop_main])
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            body = await status_json(client)
            page = await (await client.get("/")).text()

    skus = {g["key"]: sorted(r["sku"] for r in g["rows"]) for g in body["problems"]["groups"]}
    assert skus["unmapped"] == ["KATANA-ONLY"]
    assert skus["shadowed"] == ["TWIN"]
    assert skus["untracked"] == ["LOOSE"]
    assert skus["rejected"] == ["NOT-STOCKED"]
    [rejected] = group(body, "rejected")["rows"]
    assert rejected["kind"] == "ITEM_NOT_STOCKED_AT_LOCATION"
    assert rejected["where"] == world.shop_pop_up
    assert "does not stock this item at this location" in rejected["reason"]
    assert connection(body)["problem_counts"] == {
        "rejected": 1,
        "not_pushed": 0,
        "unmapped": 1,
        "shadowed": 1,
        "untracked": 1,
        "config": 0,
        "other": 0,
    }
    assert 'data-group="rejected" open' in page


async def test_the_sku_filter_narrows_problems_and_finds_rows_beyond_the_cap(
    world: World,
) -> None:
    for n in range(5):
        world.product(f"ONLY-{n}", stock=1, shopify=False)
    world.product("CALM", stock=1)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            everything = await status_json(client, "?limit=2")
            narrowed = await status_json(client, "?limit=2&q=only-4")
            html = await (await client.get("/status?limit=2&q=ONLY-4")).text()

    unmapped = group(everything, "unmapped")
    assert (unmapped["total"], unmapped["matching"]) == (5, 5)
    assert [r["sku"] for r in unmapped["rows"]] == ["ONLY-0", "ONLY-1"]
    found = group(narrowed, "unmapped")
    assert (found["total"], found["matching"]) == (5, 1)
    assert [r["sku"] for r in found["rows"]] == ["ONLY-4"]
    assert narrowed["problems"]["query"] == "only-4"
    assert 'data-sku="only-4"' in html
    assert 'data-sku="only-0"' not in html


async def test_the_sku_view_matches_katanas_formula_for_a_product_and_a_kit(
    world: World,
) -> None:
    component, _ = world.product("PART", stock=10)
    kit, _ = world.product("BUNDLE", stock=2, kit=True)
    world.katana.add_bom_row(kit, component, 2)  # potential = 10 // 2 = 5 bundles
    world.katana.create_sales_order([(component, 3), (kit, 1)], world.warehouse)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            part = await status_json(client, "?sku=PART")
            bundle = await status_json(client, "?sku=BUNDLE")

    [part_variant] = part["sku"]["variants"]
    [warehouse] = [r for r in part_variant["katana"] if r["location_id"] == world.warehouse]
    assert (warehouse["in_stock"], warehouse["committed"]) == ("10", "3")
    assert warehouse["result"] == 10 - 3
    assert {level["desired"] for level in part_variant["levels"]} == {7}
    assert {level["last_told"] for level in part_variant["levels"]} == {7}

    [kit_variant] = bundle["sku"]["variants"]
    assert kit_variant["kind"] == "kit"
    [row] = [r for r in kit_variant["katana"] if r["location_id"] == world.warehouse]
    potential = world.katana.potential(kit, world.warehouse)
    assert potential is not None
    expected = math.floor(2 + potential - 1)
    assert (row["in_stock"], row["committed"], row["potential"]) == ("2", "1", str(potential))
    assert row["result"] == expected
    assert {level["desired"] for level in kit_variant["levels"]} == {expected}
    assert "in stock +" in row["formula"]
    assert "potential" in row["formula"]
    assert {level["katana_location"] for level in kit_variant["levels"]} == {"Warehouse"}


async def test_the_sku_view_lists_recent_pushes_from_the_audit_log(world: World) -> None:
    variant_id, twin = world.product("CALM", stock=4)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.katana.adjust_stock(variant_id, world.warehouse, 2)
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            body = await status_json(client, "?sku=CALM")

    history = body["sku"]["history"]
    assert [(h["from_quantity"], h["to_quantity"]) for h in history[:2]] == [(4, 6), (4, 6)]
    assert {h["outcome"] for h in history} == {"applied"}
    assert {h["inventory_item_id"] for h in history} == {twin.inventory_item_id}


async def test_the_sku_view_reads_katana_stock_once_per_cache_period(world: World) -> None:
    world.product("CALM", stock=4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        before = world.katana.requests_by_path["/inventory"]
        async with status_client(world, runtime, stock_cache=StockCache(ttl=3600)) as client:
            for _ in range(3):
                await status_json(client, "?sku=CALM")
            await status_json(client)  # no SKU asked: no Katana read

    assert world.katana.requests_by_path["/inventory"] == before + 1


async def test_an_unknown_sku_says_no_katana_variant_has_it(world: World) -> None:
    world.product("CALM", stock=4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            body = await status_json(client, "?sku=NOPE")
            page = await (await client.get("/status?sku=NOPE")).text()

    assert body["sku"] == {"sku": "NOPE", "variants": [], "history": []}
    assert "No Katana variant has the SKU “NOPE”" in page


async def test_freshness_lag_and_pushes_of_the_last_hour_are_shown(world: World) -> None:
    variant_id, _ = world.product("CALM", stock=4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.katana.adjust_stock(variant_id, world.warehouse, 2)
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            body = await status_json(client)
            page = await (await client.get("/")).text()

    shop = connection(body)
    assert shop["lag_last_hour"]["samples"] == 1
    assert shop["lag_last_hour"]["p50_seconds"] is not None
    assert sum(step["pushes"] for step in shop["activity"]) == 4  # 2 levels, twice
    assert len(shop["activity"]) == 36  # six hours in ten-minute steps
    assert '<figure class="chart">' in page
    assert 'preserveAspectRatio="none" role="img"' in page
    assert '<polyline class="lag"' in page


async def test_the_last_reconciliation_and_its_drift_are_shown(world: World) -> None:
    _, twin = world.product("CALM", stock=4)
    assert twin is not None
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.shop.set_available_manually(twin.inventory_item_id, world.shop_main, 40)
        await Reconciler.of(runtime.engine).run()
        async with status_client(world, runtime) as client:
            body = await status_json(client)

    reconciliation = connection(body)["last_reconciliation"]
    assert reconciliation["ok"] is True
    assert reconciliation["drift"] == 1
    assert reconciliation["scope"] == "all connections"


async def test_a_connection_whose_last_push_failed_shows_shopify_errors(world: World) -> None:
    world.product("CALM", stock=4)
    async with world.runtime() as runtime:
        report = await runtime.engine.cycle()
        report.connections[0].errors.append("ShopifyUnavailable: HTTP 503")
        health_log = HealthLog()
        health_log.failed("push", "ShopifyUnavailable: HTTP 503")
        async with status_client(
            world, runtime, health_log=health_log, report=lambda: report
        ) as client:
            body = await status_json(client)

    assert connection(body)["state"] == "shopify_errors"
    assert connection(body)["error"] == "ShopifyUnavailable: HTTP 503"
    assert connection(body)["since"] is not None


async def test_the_status_token_guards_page_and_json_by_bearer_or_basic_not_metrics(
    world: World,
) -> None:
    token = Secret("s3cret-status-token")
    basic = base64.b64encode(b"merchant:s3cret-status-token").decode()
    wrong = base64.b64encode(b"merchant:guess").decode()
    async with world.runtime() as runtime, status_client(world, runtime, token=token) as client:
        for path in ("/", "/status", "/status.json", "/status?fragment=main"):
            anonymous = await client.get(path)
            assert anonymous.status == 401
            challenges = anonymous.headers.getall("WWW-Authenticate")
            assert any(c.startswith('Basic realm="stocksync status"') for c in challenges)
            assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status == 401
            assert (
                await client.get(path, headers={"Authorization": f"Basic {wrong}"})
            ).status == 401
            bearer = {"Authorization": "Bearer s3cret-status-token"}
            assert (await client.get(path, headers=bearer)).status == 200
            assert (
                await client.get(path, headers={"Authorization": f"Basic {basic}"})
            ).status == 200
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/healthz")).status == 200


async def test_without_a_token_the_page_is_open_and_only_reads(world: World) -> None:
    async with world.runtime() as runtime, status_client(world, runtime) as client:
        assert (await client.get("/")).status == 200
        for method in ("POST", "PUT", "DELETE"):
            assert (await client.request(method, "/status")).status == 405


async def test_the_page_loads_nothing_from_elsewhere_and_its_csp_allows_only_its_own_code(
    world: World,
) -> None:
    world.product("CALM", stock=4)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            response = await client.get("/")
            page = await response.text()

    csp = response.headers["Content-Security-Policy"]
    [nonce] = set(re.findall(r"'nonce-([^']+)'", csp))
    assert "default-src 'none'" in csp
    assert page.count(f'nonce="{nonce}"') == 2  # the one <style> and the one <script>
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page
    assert "url(" not in page
    assert response.headers["Cache-Control"] == "no-store"
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


async def test_the_fragment_is_the_refreshable_main_part_only(world: World) -> None:
    async with world.runtime() as runtime, status_client(world, runtime) as client:
        fragment = await (await client.get("/status?fragment=main")).text()

    assert fragment.startswith('<main id="status" data-generated="')
    assert 'data-refresh="2"' in fragment  # once per poll interval (1 s here), at least 2 s apart
    assert fragment.endswith("</main>")
    assert "<script" not in fragment


async def test_a_sku_is_escaped_everywhere_it_is_shown(world: World) -> None:
    world.product("<b>x</b>", stock=1, shopify=False)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            overview = await (await client.get("/")).text()
            view = await (await client.get("/status", params={"sku": "<b>x</b>"})).text()

    for page in (overview, view):
        assert "<b>x</b>" not in page
        assert "&lt;b&gt;x&lt;/b&gt;" in page


async def test_bad_query_parameters_are_refused_clearly(world: World) -> None:
    async with world.runtime() as runtime, status_client(world, runtime) as client:
        too_long = await client.get("/status.json", params={"q": "x" * 201})
        too_long_text = await too_long.text()
        bad_limit = await client.get("/status.json", params={"limit": "0"})

    assert too_long.status == 400
    assert "q is longer than 200" in too_long_text
    assert bad_limit.status == 400


def documented_fields() -> set[str]:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("### `GET /status.json`", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_.\[\]]+)` \|", section, re.MULTILINE))


def field_paths(value: Any, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            if prefix.endswith("problem_counts"):
                continue  # one key per group, listed with the groups
            paths.add(path)
            paths |= field_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= field_paths(item, prefix + "[]")
    return paths


async def test_every_status_json_field_is_documented_in_operations_md(world: World) -> None:
    component, _ = world.product("PART", stock=10)
    world.product("KATANA-ONLY", stock=2, shopify=False)
    settings = world.settings("min_drop_count = 1\nmax_drop_fraction = 0.1\n")
    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()
        await Reconciler.of(runtime.engine).run()
        world.katana.adjust_stock(component, world.warehouse, -10)
        await runtime.engine.cycle()  # held: the hold's fields appear
        world.metrics.activity.lag("shop", datetime.now(UTC).timestamp(), 1.0)
        async with status_client(world, runtime) as client:
            body = await status_json(client, "?sku=PART")

    missing = sorted(field_paths(body) - documented_fields())
    assert not missing, f"fields of /status.json not documented in docs/operations.md: {missing}"
    stale = sorted(documented_fields() - field_paths(body))
    assert not stale, f"docs/operations.md documents fields /status.json lacks: {stale}"
    assert json.dumps(body)  # plain JSON all the way down


async def test_a_shadowed_variant_stays_listed_after_its_stock_changes(world: World) -> None:
    [older] = world.katana.add_product("Older twin", ["TWIN"])
    world.product("TWIN", stock=1)
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        world.katana.adjust_stock(older, world.warehouse, 5)  # dirty, though it syncs nowhere
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            body = await status_json(client)

    assert [r["subject"] for r in group(body, "shadowed")["rows"]] == [f"katana_variant:{older}"]
    assert group(body, "unmapped")["total"] == 0


async def test_a_rejected_level_leaves_the_problems_once_shopify_takes_it(world: World) -> None:
    [variant_id] = world.katana.add_product("Pop-up missing", ["NOT-STOCKED"])
    world.katana.set_stock(variant_id, world.warehouse, 3)
    twin = world.shop.add_variant("NOT-STOCKED", stocked_at=[world.shop_main])
    async with world.runtime() as runtime:
        await runtime.engine.cycle()
        async with status_client(world, runtime) as client:
            rejected = await status_json(client)
            # The merchant stocks it at the pop-up; Katana moves, so it is pushed again.
            world.shop.stock_item(twin.inventory_item_id, world.shop_pop_up)
            world.katana.adjust_stock(variant_id, world.warehouse, 1)
            await runtime.engine.cycle()
            fixed = await status_json(client)

    assert [r["sku"] for r in group(rejected, "rejected")["rows"]] == ["NOT-STOCKED"]
    assert world.levels(twin) == (4, 4)
    assert group(fixed, "rejected")["total"] == 0
