"""The simulated Shopify's bulk operations (daemon/sim/shopify/) behave as Shopify's do."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from daemon.domain.models import ShopifyVariant
from daemon.shopify import queries
from daemon.sim.shopify import BulkDownload, ShopifySim

Client = TestClient[web.Request, web.Application]

RUN = """
mutation Run($query: String!, $group: Boolean!) {
  bulkOperationRunQuery(query: $query, groupObjects: $group) {
    bulkOperation { id status url }
    userErrors { code field message }
  }
}
"""
POLL = """
query Poll($id: ID!) {
  bulkOperation(id: $id) {
    id status errorCode objectCount rootObjectCount fileSize url completedAt type query
  }
}
"""
LEVELS = """
{
  inventoryItems {
    edges {
      node {
        id
        sku
        inventoryLevels {
          edges { node { location { id } quantities(names: ["available"]) { name quantity } } }
        }
      }
    }
  }
}
"""
VARIANTS = "{ productVariants { edges { node { id sku inventoryItem { id tracked } } } } }"
DELAY = 0.2


class FakeClock:
    """The simulator's clock, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> ShopifySim:
    return ShopifySim(clock=clock, bulk_delay=DELAY)


@pytest.fixture
async def client(sim: ShopifySim) -> AsyncIterator[Client]:
    async with TestClient(TestServer(sim.app())) as test_client:
        yield test_client


@pytest.fixture
def shop(sim: ShopifySim) -> tuple[str, str, ShopifyVariant, ShopifyVariant]:
    """Two locations; one variant stocked at both (3 available), one only at the first (4)."""
    main = sim.add_location("Main")
    second = sim.add_location("Second")
    both = sim.add_variant("A-1", available=3)
    first_only = sim.add_variant("B-2", stocked_at=[main], available=4)
    return main, second, both, first_only


async def gql(
    client: Client,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    version: str = "2026-10",
) -> dict[str, Any]:
    response = await client.post(
        f"/admin/api/{version}/graphql.json",
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": "shpat_sim"},
    )
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def run(
    client: Client, query: str, *, group: bool = False, version: str = "2026-10"
) -> dict[str, Any]:
    """Submit a bulk query; returns the mutation's payload."""
    body = await gql(client, RUN, {"query": query, "group": group}, version=version)
    payload: dict[str, Any] = body["data"]["bulkOperationRunQuery"]
    return payload


async def started(client: Client, query: str, **kwargs: Any) -> str:
    """Submit a bulk query that must be accepted; returns its id."""
    payload = await run(client, query, **kwargs)
    assert payload["userErrors"] == []
    operation_id: str = payload["bulkOperation"]["id"]
    return operation_id


async def poll(client: Client, operation_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = (await gql(client, POLL, {"id": operation_id}))["data"][
        "bulkOperation"
    ]
    return operation


async def result_lines(client: Client, operation: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.session.get(operation["url"])
    assert response.status == 200
    return [json.loads(line) for line in (await response.text()).splitlines()]


# -- the JSONL result ---------------------------------------------------------------------------


async def test_each_node_is_a_line_and_nested_nodes_carry_their_parents_id(
    client: Client, clock: FakeClock, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    main, second, both, first_only = shop
    operation_id = await started(client, LEVELS)
    clock.now += DELAY

    operation = await poll(client, operation_id)

    def level(item: str, location: str, available: int) -> dict[str, Any]:
        return {
            "location": {"id": location},
            "quantities": [{"name": "available", "quantity": available}],
            "__parentId": item,
        }

    # groupObjects is false by default since 2026-01: every top-level line comes first.
    assert await result_lines(client, operation) == [
        {"id": both.inventory_item_id, "sku": "A-1"},
        {"id": first_only.inventory_item_id, "sku": "B-2"},
        level(both.inventory_item_id, main, 3),
        level(both.inventory_item_id, second, 3),
        level(first_only.inventory_item_id, main, 4),
    ]
    assert operation["objectCount"] == "5"
    assert operation["rootObjectCount"] == "2"


async def test_grouped_objects_put_each_child_right_after_its_parent(
    client: Client, clock: FakeClock, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    _, _, both, first_only = shop
    operation_id = await started(client, LEVELS, group=True)
    clock.now += DELAY

    lines = await result_lines(client, await poll(client, operation_id))

    assert [line["__parentId"] if "__parentId" in line else line["id"] for line in lines] == [
        both.inventory_item_id,
        both.inventory_item_id,
        both.inventory_item_id,
        first_only.inventory_item_id,
        first_only.inventory_item_id,
    ]


async def test_objects_that_are_not_connections_stay_inline_in_their_line(
    client: Client, clock: FakeClock, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    _, _, both, first_only = shop
    operation_id = await started(client, VARIANTS)
    clock.now += DELAY

    lines = await result_lines(client, await poll(client, operation_id))

    assert lines == [
        {
            "id": variant.id,
            "sku": variant.sku,
            "inventoryItem": {"id": variant.inventory_item_id, "tracked": True},
        }
        for variant in (both, first_only)
    ]


async def test_a_result_larger_than_one_write_slice_is_whole_and_in_order(
    client: Client, sim: ShopifySim, clock: FakeClock
) -> None:
    main = sim.add_location("Main")
    variants = [sim.add_variant(f"V-{n}", available=n) for n in range(1100)]
    operation_id = await started(client, LEVELS)
    clock.now += DELAY

    operation = await poll(client, operation_id)
    lines = await result_lines(client, operation)

    items = [{"id": v.inventory_item_id, "sku": v.sku} for v in variants]
    levels = [
        {
            "location": {"id": main},
            "quantities": [{"name": "available", "quantity": n}],
            "__parentId": v.inventory_item_id,
        }
        for n, v in enumerate(variants)
    ]
    assert lines == items + levels
    assert operation["rootObjectCount"] == "1100"


async def test_a_finished_result_no_longer_follows_the_shop(
    client: Client,
    sim: ShopifySim,
    clock: FakeClock,
    shop: tuple[str, str, ShopifyVariant, ShopifyVariant],
) -> None:
    main, _, _, first_only = shop
    operation_id = await started(client, LEVELS)
    clock.now += DELAY
    operation = await poll(client, operation_id)
    before = await result_lines(client, operation)

    sim.set_available_manually(first_only.inventory_item_id, main, 9)

    assert await result_lines(client, operation) == before


def test_outside_a_server_a_result_is_written_when_first_looked_at(
    clock: FakeClock, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    # No event loop runs here (a driver script calling execute() directly).
    submitted = sim.execute(RUN, {"query": VARIANTS, "group": False})
    operation_id = submitted["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    clock.now += DELAY

    operation = sim.execute(POLL, {"id": operation_id})["data"]["bulkOperation"]

    assert operation["status"] == "COMPLETED"
    assert operation["objectCount"] == "2"
    assert operation["url"].startswith("http://localhost/bulk/")


# -- lifecycle ------------------------------------------------------------------------------------


async def test_an_operation_is_created_runs_for_the_bulk_delay_then_completes(
    client: Client, clock: FakeClock, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    payload = await run(client, LEVELS)
    assert payload["bulkOperation"]["status"] == "CREATED"
    assert payload["bulkOperation"]["url"] is None
    operation_id = payload["bulkOperation"]["id"]

    clock.now += DELAY / 2
    running = await poll(client, operation_id)
    clock.now += DELAY / 2
    completed = await poll(client, operation_id)

    assert running["status"] == "RUNNING"
    assert running["url"] is None
    assert completed["status"] == "COMPLETED"
    assert completed["type"] == "QUERY"
    assert completed["query"] == LEVELS
    assert completed["completedAt"] is not None
    body = await (await client.session.get(completed["url"])).read()
    assert completed["fileSize"] == str(len(body))


async def test_an_operation_that_finds_nothing_completes_without_a_url(
    client: Client, clock: FakeClock
) -> None:
    operation_id = await started(client, VARIANTS)
    clock.now += DELAY

    operation = await poll(client, operation_id)

    assert operation["status"] == "COMPLETED"
    assert operation["objectCount"] == "0"
    assert operation["url"] is None


async def test_a_result_expires_after_seven_days(
    client: Client, clock: FakeClock, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    operation_id = await started(client, VARIANTS)
    clock.now += DELAY
    url = (await poll(client, operation_id))["url"]
    clock.now += 7 * 24 * 3600 + 1

    operation = await poll(client, operation_id)
    response = await client.session.get(url)

    assert operation["status"] == "EXPIRED"
    assert operation["url"] is None
    assert response.status == 400
    assert "ExpiredToken" in await response.text()


async def test_current_bulk_operation_is_the_latest_query_and_node_finds_one_by_id(
    client: Client, clock: FakeClock, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    first = await started(client, VARIANTS)
    clock.now += DELAY
    latest = await started(client, LEVELS)

    body = await gql(
        client,
        "query Q($id: ID!) { currentBulkOperation { id status } "
        "mutationOp: currentBulkOperation(type: MUTATION) { id } "
        "node(id: $id) { id ... on BulkOperation { status } } }",
        {"id": first},
    )

    assert body["data"] == {
        "currentBulkOperation": {"id": latest, "status": "RUNNING"},
        "mutationOp": None,
        "node": {"id": first, "status": "COMPLETED"},
    }


async def test_the_bulk_fault_fails_the_operation_with_its_error_code_and_no_data(
    client: Client,
    sim: ShopifySim,
    clock: FakeClock,
    shop: tuple[str, str, ShopifyVariant, ShopifyVariant],
) -> None:
    sim.faults.bulk_fail_next()
    operation_id = await started(client, VARIANTS)
    clock.now += DELAY

    operation = await poll(client, operation_id)

    assert operation["status"] == "FAILED"
    assert operation["errorCode"] == "INTERNAL_SERVER_ERROR"
    assert operation["url"] is None
    assert operation["completedAt"] is None


# -- the result URL ----------------------------------------------------------------------------


async def test_the_result_url_needs_its_signature_but_no_access_token(
    client: Client,
    sim: ShopifySim,
    clock: FakeClock,
    shop: tuple[str, str, ShopifyVariant, ShopifyVariant],
) -> None:
    operation_id = await started(client, VARIANTS)
    clock.now += DELAY
    url = (await poll(client, operation_id))["url"]

    plain = await client.session.get(url)
    forged = await client.session.get(url.replace("signature=", "signature=x"))
    with_token = await client.session.get(url, headers={"X-Shopify-Access-Token": "shpat_sim"})

    assert plain.status == 200
    assert plain.content_type == "application/jsonl"
    assert forged.status == 403
    assert with_token.status == 200
    # Each served download is recorded, with whether the shop's token was (wrongly) sent along.
    assert sim.bulk_downloads == [
        BulkDownload(operation_id, 200, with_access_token=False),
        BulkDownload(operation_id, 200, with_access_token=True),
    ]


async def test_the_download_fault_fails_the_next_download_only(
    client: Client,
    sim: ShopifySim,
    clock: FakeClock,
    shop: tuple[str, str, ShopifyVariant, ShopifyVariant],
) -> None:
    operation_id = await started(client, VARIANTS)
    clock.now += DELAY
    url = (await poll(client, operation_id))["url"]
    sim.faults.bulk_download_fail_next(1, status=503)

    assert (await client.session.get(url)).status == 503
    assert (await client.session.get(url)).status == 200


# -- one (or five) at a time ----------------------------------------------------------------------


async def test_before_2026_01_a_second_bulk_query_is_refused_as_operation_in_progress(
    client: Client, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    first = await started(client, VARIANTS, version="2025-10")

    second = await run(client, LEVELS, version="2025-10")

    assert second["bulkOperation"] is None
    assert second["userErrors"] == [
        {
            "code": "OPERATION_IN_PROGRESS",
            "field": None,
            "message": "A bulk query operation for this app and shop is already in progress: "
            f"{first}.",
        }
    ]


async def test_from_2026_01_five_bulk_queries_run_at_once_and_a_sixth_reaches_the_limit(
    client: Client, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    for _ in range(5):
        await started(client, VARIANTS)

    sixth = await run(client, VARIANTS)

    assert sixth["bulkOperation"] is None
    assert [error["code"] for error in sixth["userErrors"]] == ["LIMIT_REACHED"]


async def test_a_finished_operation_frees_its_slot(
    client: Client,
    sim: ShopifySim,
    clock: FakeClock,
    shop: tuple[str, str, ShopifyVariant, ShopifyVariant],
) -> None:
    sim.bulk_query_limit = 1
    await started(client, VARIANTS)
    refused = await run(client, VARIANTS)
    clock.now += DELAY

    accepted = await run(client, VARIANTS)

    assert [error["code"] for error in refused["userErrors"]] == ["LIMIT_REACHED"]
    assert accepted["userErrors"] == []
    assert sim.mutation_calls["bulkOperationRunQuery"] == 3


# -- what a bulk query may be -------------------------------------------------------------------

SIX_CONNECTIONS = (
    "{ inventoryItems { edges { node { id "
    + " ".join(
        f"l{n}: inventoryLevels {{ edges {{ node {{ location {{ id }} }} }} }}" for n in range(5)
    )
    + " } } } }"
)
THREE_DEEP = (
    "{ inventoryItems { edges { node { id inventoryLevels { edges { node { location { id "
    "inventoryLevels { edges { node { id } } } } } } } } } } }"
)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "{ productVariants { edges { node { id bogus } } } }",
            "Invalid bulk query: Field 'bogus' doesn't exist on type 'ProductVariant'",
        ),
        ("{ productVariants { edges { node { id }", "Invalid bulk query: Syntax Error"),
        (
            '{ nodes(ids: ["gid://shopify/Location/1"]) { id } }',
            "Invalid bulk query: the top-level node and nodes fields can't be used",
        ),
        (
            "{ location { id name } }",
            "Invalid bulk query: a bulk query must contain at least one connection",
        ),
        (
            "{ productVariants { edges { node { id } } } locations { edges { node { id } } } }",
            "Invalid bulk query: a bulk query selects exactly one top-level field",
        ),
        (
            "{ inventoryItems { edges { node { sku "
            "inventoryLevels { edges { node { id } } } } } } }",
            "Invalid bulk query: the parent 'node' field for a nested connection must select "
            "the 'id' field without an alias. Connection fields without 'id': inventoryLevels",
        ),
        (
            SIX_CONNECTIONS,
            "Invalid bulk query: bulk queries cannot contain more than 5 connections "
            "(this one has 6)",
        ),
        (
            THREE_DEEP,
            "Invalid bulk query: connections can be nested at most 2 levels deep "
            "(this query nests 3)",
        ),
        (
            "query Q($first: Int) { productVariants(first: $first) { edges { node { id } } } }",
            "Invalid bulk query: bulk queries take no variables",
        ),
        (
            'mutation { inventoryActivate(inventoryItemId: "a", locationId: "b") '
            "{ userErrors { message } } }",
            "Invalid bulk query: a bulk query is a single query operation",
        ),
    ],
)
async def test_a_query_breaking_the_bulk_rules_is_refused_as_invalid_on_the_query_field(
    client: Client, sim: ShopifySim, query: str, message: str
) -> None:
    payload = await run(client, query)

    assert payload["bulkOperation"] is None
    [error] = payload["userErrors"]
    assert error["code"] == "INVALID"
    assert error["field"] == ["query"]
    assert error["message"].startswith(message)
    assert sim.mutation_calls["bulkOperationRunQuery"] == 1


@pytest.mark.parametrize("query", [queries.BULK_VARIANTS, queries.BULK_AVAILABLE_LEVELS])
async def test_the_clients_bulk_queries_are_accepted(client: Client, query: str) -> None:
    payload = await run(client, query)

    assert payload["userErrors"] == []


async def test_connections_need_first_outside_bulk_queries(
    client: Client, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    body = await gql(client, VARIANTS)

    assert body["errors"][0]["message"] == "you must provide one of first or last"


# -- cost and counting ------------------------------------------------------------------------


async def test_starting_a_bulk_query_costs_ten_points_and_a_status_poll_one(
    client: Client, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    started_body = await gql(client, RUN, {"query": VARIANTS, "group": False})
    operation_id = started_body["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    poll_body = await gql(client, POLL, {"id": operation_id})

    assert started_body["extensions"]["cost"]["requestedQueryCost"] == 10
    assert poll_body["extensions"]["cost"]["requestedQueryCost"] == 1


async def test_product_variants_count_is_exact_up_to_its_limit_and_at_least_beyond(
    client: Client, shop: tuple[str, str, ShopifyVariant, ShopifyVariant]
) -> None:
    body = await gql(
        client,
        "{ capped: productVariantsCount(limit: 1) { count precision } "
        "exact: productVariantsCount(limit: 2) { count precision } "
        "unlimited: productVariantsCount(limit: null) { count precision } "
        "default: productVariantsCount { count precision } }",
    )

    assert body["data"] == {
        "capped": {"count": 1, "precision": "AT_LEAST"},
        "exact": {"count": 2, "precision": "EXACT"},
        "unlimited": {"count": 2, "precision": "EXACT"},
        "default": {"count": 2, "precision": "EXACT"},
    }
