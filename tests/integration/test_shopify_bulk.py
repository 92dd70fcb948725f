"""Large shops: the Shopify client reads catalogue and levels through bulk operations.

Mostly against the simulated Shopify served on loopback (the same GraphQL, JSONL and storage URL
as the real thing), so both paths read the very same data; aioresponses where Shopify's answer
has to be broken on purpose.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from yarl import URL

from daemon.domain.models import ShopifyVariant
from daemon.metrics import Metrics
from daemon.secrets import Secret
from daemon.shopify import bulk, queries
from daemon.shopify.auth import StaticToken
from daemon.shopify.client import ShopifyClient, ShopifyError, ShopifyUnavailable
from daemon.sim.shopify import BulkDownload, ShopifySim
from daemon.sync.reconcile import Reconciler
from tests.aioresponses_compat import CompatResponse
from tests.helpers import FakeTime
from tests.integration.conftest import World

TOKEN = "shpat_bulk_test_token"
VERSION_PATH = "/admin/api/2026-10/graphql.json"
CATALOGUE = 300  # more than one page of 250, so the paged read is really paged
THRESHOLD = 10


def new_sim(fake_time: FakeTime) -> ShopifySim:
    return ShopifySim(
        access_token=TOKEN,
        bucket_size=20_000,
        restore_rate=1000,
        clock=fake_time.clock,
        bulk_delay=1.0,
    )


@pytest.fixture
def sim(fake_time: FakeTime) -> ShopifySim:
    """Two locations and 300 variants: varied levels, some stocked at one location only,
    some untracked."""
    shop = new_sim(fake_time)
    main = shop.add_location("Main")
    shop.add_location("Pop-up")
    for n in range(CATALOGUE):
        shop.add_variant(
            f"SKU-{n}" if n % 13 else None,
            tracked=n % 17 != 0,
            stocked_at=[main] if n % 5 == 0 else None,
            available=n % 11,
        )
    return shop


@asynccontextmanager
async def serve(shop: ShopifySim) -> AsyncIterator[str]:
    """Serve the simulator on loopback; yields its GraphQL URL."""
    async with TestServer(shop.app()) as server:
        yield str(server.make_url(VERSION_PATH))


@pytest.fixture
async def graphql_url(sim: ShopifySim) -> AsyncIterator[str]:
    async with serve(sim) as url:
        yield url


def make_client(
    session: aiohttp.ClientSession,
    url: str,
    fake_time: FakeTime,
    *,
    threshold: int = THRESHOLD,
    **options: Any,
) -> ShopifyClient:
    return ShopifyClient(
        session,
        url,
        StaticToken(Secret(TOKEN)),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        bulk_threshold=threshold,
        **options,
    )


def locations(shop: ShopifySim) -> list[str]:
    return sorted({location for _, location in shop.levels})


def items(shop: ShopifySim) -> list[str]:
    return sorted({item for item, _ in shop.levels})


def bulk_runs(shop: ShopifySim) -> int:
    return shop.mutation_calls["bulkOperationRunQuery"]


# -- the same answers as paging -------------------------------------------------------------------


async def test_a_catalogue_above_the_threshold_is_read_by_one_bulk_operation_as_paging_reads_it(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    in_bulk = await make_client(session, graphql_url, fake_time).variants()
    runs_after_bulk = bulk_runs(sim)
    paged = await make_client(session, graphql_url, fake_time, threshold=CATALOGUE).variants()

    assert runs_after_bulk == 1
    assert bulk_runs(sim) == 1  # the paged read started none
    assert len(in_bulk) == CATALOGUE
    assert in_bulk == paged
    assert ShopifyVariant(in_bulk[0].id, None, in_bulk[0].inventory_item_id, False) in in_bulk


async def test_levels_for_more_items_than_the_threshold_are_read_by_one_bulk_operation_as_chunks(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    pop_up = locations(sim)[1]
    # Some of the shop's items, one it does not have; one of its locations, one unknown.
    wanted_items = [*items(sim)[:40], "gid://shopify/InventoryItem/999999"]
    wanted_locations = [pop_up, "gid://shopify/Location/999999"]

    in_bulk = await make_client(session, graphql_url, fake_time).available_levels(
        wanted_items, wanted_locations
    )
    chunked = await make_client(
        session, graphql_url, fake_time, threshold=CATALOGUE
    ).available_levels(wanted_items, wanted_locations)

    assert bulk_runs(sim) == 1
    assert in_bulk == chunked
    assert in_bulk == {
        (item, pop_up): sim.available(item, pop_up)
        for item in wanted_items
        if sim.available(item, pop_up) is not None
    }
    assert 0 < len(in_bulk) < 40  # items stocked only at the main location are absent


async def test_at_the_threshold_reads_page_and_chunk_without_a_bulk_operation(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    client = make_client(session, graphql_url, fake_time, threshold=CATALOGUE)

    variants = await client.variants()
    levels = await client.available_levels(items(sim), locations(sim))

    assert len(variants) == CATALOGUE
    assert len(levels) == len(sim.levels)
    assert bulk_runs(sim) == 0


async def test_a_paged_level_read_spends_at_most_3_points_and_1_query_per_250_pairs_asked(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    # `plan` and the full reconciliation compare every mapped level with Shopify: the read is
    # paced by Shopify's query points, so its cost per level is what an operator waits for.
    client = make_client(session, graphql_url, fake_time, threshold=CATALOGUE)
    wanted_items, wanted_locations = items(sim), locations(sim)
    pairs = len(wanted_items) * len(wanted_locations)
    spent, requests = sim.points_spent, sim.requests_total

    levels = await client.available_levels(wanted_items, wanted_locations)

    assert len(levels) == len(sim.levels)
    assert sim.points_spent - spent <= 3 * pairs
    assert sim.requests_total - requests <= -(-len(wanted_items) // 250) * len(wanted_locations)


async def test_a_catalogue_that_fits_one_page_is_read_without_counting_it(
    session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    small = new_sim(fake_time)
    small.add_location("Main")
    small.add_variant("ONLY-ONE")

    async with serve(small) as url:
        found = await make_client(session, url, fake_time, threshold=0).variants()

    assert [variant.sku for variant in found] == ["ONLY-ONE"]
    assert small.requests_total == 1
    assert bulk_runs(small) == 0


# -- waiting --------------------------------------------------------------------------------------


async def test_status_polls_wait_half_a_second_then_double_up_to_five_seconds(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    sim.bulk_delay = 30.0

    await make_client(session, graphql_url, fake_time).variants()

    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0]


async def test_a_bulk_read_gives_up_as_unavailable_once_the_bulk_timeout_is_spent(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    sim.bulk_delay = 10_000.0
    client = make_client(session, graphql_url, fake_time, bulk_timeout=20.0)

    with pytest.raises(ShopifyUnavailable, match="gave up waiting for bulk operation"):
        await client.variants()

    assert fake_time.now == pytest.approx(20.0)


async def test_a_bulk_query_already_running_is_waited_for_then_ours_runs(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    # Another process of ours holds the shop's only bulk slot for 3 s.
    sim.bulk_query_limit = 1
    sim.bulk_delay = 3.0
    started = sim.execute(
        "mutation($q: String!) { bulkOperationRunQuery(query: $q) { userErrors { code } } }",
        {"q": queries.BULK_VARIANTS},
    )
    assert started["data"]["bulkOperationRunQuery"]["userErrors"] == []

    with capture_logs() as logs:
        found = await make_client(session, graphql_url, fake_time).variants()

    busy = [entry for entry in logs if entry["event"] == "shopify_bulk_busy"]
    assert [entry["wait_seconds"] for entry in busy] == [0.5, 1.0, 2.0]
    assert bulk_runs(sim) == 1 + len(busy) + 1
    assert len(found) == CATALOGUE


async def test_a_failed_bulk_operation_raises_shopify_unavailable_naming_its_error_code(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    sim.faults.bulk_fail_next(error_code="TIMEOUT")
    client = make_client(session, graphql_url, fake_time)

    with pytest.raises(ShopifyUnavailable, match=r"ended FAILED \(errorCode TIMEOUT\)"):
        await client.available_levels(items(sim), locations(sim))


# -- the download ---------------------------------------------------------------------------------


async def test_the_result_is_downloaded_without_the_access_token(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    await make_client(session, graphql_url, fake_time).variants()

    [download] = sim.bulk_downloads
    assert download.status == 200
    assert download.with_access_token is False


async def test_a_failed_download_is_retried_from_the_start(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    sim.faults.bulk_download_fail_next(1, status=503)

    found = await make_client(session, graphql_url, fake_time).variants()

    assert [d.status for d in sim.bulk_downloads] == [503, 200]
    assert len(found) == CATALOGUE


async def test_bulk_requests_are_counted_and_timed_like_every_other_request(
    session: aiohttp.ClientSession, graphql_url: str, sim: ShopifySim, fake_time: FakeTime
) -> None:
    metrics = Metrics(process=False)

    await make_client(session, graphql_url, fake_time, metrics=metrics).variants()

    requests = sim.requests_total + len(sim.bulk_downloads)
    labels = {"api": "shopify", "status": "200"}
    assert metrics.registry.get_sample_value("stocksync_api_requests_total", labels) == requests
    assert (
        metrics.registry.get_sample_value(
            "stocksync_api_request_duration_seconds_count", {"api": "shopify"}
        )
        == requests
    )


# -- splitting the file ---------------------------------------------------------------------------

LINE_OBJECTS = st.lists(
    st.dictionaries(st.text(max_size=5), st.text(max_size=12) | st.integers(), max_size=3),
    max_size=8,
)


@given(objects=LINE_OBJECTS, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_lines_come_out_whole_wherever_the_download_chunks_break(
    objects: list[dict[str, Any]], cuts: list[int]
) -> None:
    text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()
    bounds = [0, *sorted(min(cut, len(text)) for cut in cuts), len(text)]
    lines = bulk.JsonlLines()

    out = [line for a, b in itertools.pairwise(bounds) for line in lines.feed(text[a:b])]
    out += list(lines.finish())

    assert [bulk.decode_line(line) for line in out] == objects
    assert lines.count == len(objects)


# -- answers broken on purpose (aioresponses) -----------------------------------------------------

GRAPHQL_URL = "https://eu-store.myshopify.com/admin/api/2026-10/graphql.json"
RESULT_URL = "https://storage.googleapis.com/shopify-bulk/1.jsonl?X-Goog-Signature=abc"


def answer(mocked: aioresponses, data: dict[str, Any]) -> None:
    mocked.post(GRAPHQL_URL, response_class=CompatResponse, payload={"data": data})


def variant_node(n: int) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ProductVariant/{n}",
        "sku": f"S-{n}",
        "inventoryItem": {"id": f"gid://shopify/InventoryItem/{n}", "tracked": True},
    }


def full_first_page(mocked: aioresponses) -> None:
    nodes = [variant_node(n) for n in range(queries.PAGE_SIZE)]
    answer(
        mocked,
        {"productVariants": {"nodes": nodes, "pageInfo": {"hasNextPage": True, "endCursor": "c1"}}},
    )


def bulk_started(mocked: aioresponses) -> None:
    operation = {"id": "gid://shopify/BulkOperation/1", "status": "CREATED"}
    answer(mocked, {"bulkOperationRunQuery": {"bulkOperation": operation, "userErrors": []}})


def bulk_completed(mocked: aioresponses) -> None:
    operation = {
        "id": "gid://shopify/BulkOperation/1",
        "status": "COMPLETED",
        "errorCode": None,
        "objectCount": "3",
        "url": RESULT_URL,
    }
    answer(mocked, {"bulkOperation": operation})


def posted(mocked: aioresponses) -> list[dict[str, Any]]:
    return [call.kwargs["json"] for call in mocked.requests[("POST", URL(GRAPHQL_URL))]]


async def test_the_count_asks_one_past_the_threshold_and_paging_resumes_after_the_first_page(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    full_first_page(mocked)
    # Shopify caps counts at `limit`: 301 then means "more than 300".
    answer(mocked, {"productVariantsCount": {"count": 300, "precision": "EXACT"}})
    answer(
        mocked,
        {
            "productVariants": {
                "nodes": [variant_node(250)],
                "pageInfo": {"hasNextPage": False, "endCursor": "c2"},
            }
        },
    )

    found = await make_client(session, GRAPHQL_URL, fake_time, threshold=300).variants()

    assert len(found) == 251
    assert [body["variables"] for body in posted(mocked)] == [
        {"after": None},
        {"limit": 301},
        {"after": "c1"},
    ]
    assert posted(mocked)[1]["query"] == queries.VARIANTS_COUNT


async def test_an_unreadable_count_falls_back_to_paging_and_is_counted_as_malformed(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    full_first_page(mocked)
    answer(mocked, {"productVariantsCount": {"count": "many", "precision": "EXACT"}})
    answer(
        mocked,
        {"productVariants": {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}},
    )
    metrics = Metrics(process=False)

    found = await make_client(session, GRAPHQL_URL, fake_time, metrics=metrics).variants()

    assert len(found) == queries.PAGE_SIZE
    assert (
        metrics.registry.get_sample_value(
            "stocksync_malformed_rows_total",
            {"api": "shopify", "resource": "product_variants_count"},
        )
        == 1
    )


async def test_malformed_result_lines_are_logged_and_skipped(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    full_first_page(mocked)
    answer(mocked, {"productVariantsCount": {"count": 11, "precision": "AT_LEAST"}})
    bulk_started(mocked)
    bulk_completed(mocked)
    lines = [
        '{"id":"gid://shopify/ProductVariant/1","sku":"A","inventoryItem":'
        '{"id":"gid://shopify/InventoryItem/1","tracked":true}}',
        '{"id": "gid://shopify/ProductVariant/2", "sku": ',  # cut short
        "",
        "[1, 2]",  # JSON, but not an object
        '{"id":"gid://shopify/ProductVariant/3","sku":null,"inventoryItem":'
        '{"id":"gid://shopify/InventoryItem/3","tracked":false}}',  # no final newline
    ]
    mocked.get(RESULT_URL, response_class=CompatResponse, body="\n".join(lines))
    metrics = Metrics(process=False)

    with capture_logs() as logs:
        found = await make_client(session, GRAPHQL_URL, fake_time, metrics=metrics).variants()

    assert found == [
        ShopifyVariant(
            "gid://shopify/ProductVariant/1", "A", "gid://shopify/InventoryItem/1", True
        ),
        ShopifyVariant(
            "gid://shopify/ProductVariant/3", None, "gid://shopify/InventoryItem/3", False
        ),
    ]
    malformed = [entry for entry in logs if entry["event"] == "shopify_bulk_line_malformed"]
    assert [entry["line"] for entry in malformed] == [2, 4]
    assert all(entry["log_level"] == "warning" for entry in malformed)
    assert (
        metrics.registry.get_sample_value(
            "stocksync_malformed_rows_total", {"api": "shopify", "resource": "product_variants"}
        )
        == 2
    )
    # The signed storage URL is fetched as given, and never with the shop's token.
    [download] = mocked.requests[("GET", URL(RESULT_URL))]
    assert "X-Shopify-Access-Token" not in (download.kwargs.get("headers") or {})
    # Nor does the URL (a capability to the shop's data) reach the logs.
    assert all(RESULT_URL not in str(entry) for entry in logs)


async def test_a_bulk_query_shopify_refuses_is_an_error_not_a_wait(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    refused = {
        "code": "INVALID",
        "field": ["query"],
        "message": "Invalid bulk query: Field 'bogus' doesn't exist on type 'ProductVariant'",
    }
    answer(mocked, {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [refused]}})
    client = make_client(session, GRAPHQL_URL, fake_time, threshold=0)

    with pytest.raises(ShopifyError, match="INVALID: Invalid bulk query") as raised:
        await client.available_levels(["gid://shopify/InventoryItem/1"], ["L"])

    assert not isinstance(raised.value, ShopifyUnavailable)
    assert fake_time.sleeps == []


# -- the daemon, configured ----------------------------------------------------------------------


async def test_full_reconciliation_above_the_configured_threshold_reads_levels_in_bulk(
    world: World,
) -> None:
    world.shop.bulk_delay = 0.0  # the world runs on real time: complete at the first poll
    _, twin = world.product("BULKY", stock=5)
    assert twin is not None
    settings = world.settings("bulk_read_threshold = 0")
    async with world.runtime(settings) as runtime:
        await runtime.engine.cycle()
        world.shop.set_available_manually(twin.inventory_item_id, world.shop_pop_up, 1)

        report = await Reconciler.of(runtime.engine).run(full=True)

    assert report.connections[0].drift == 1
    assert world.levels(twin) == (5, 5)
    assert world.shop.mutation_calls["bulkOperationRunQuery"] == 1
    assert world.shop.bulk_downloads == [
        BulkDownload(world.shop.bulk_downloads[0].operation_id, 200, with_access_token=False)
    ]
