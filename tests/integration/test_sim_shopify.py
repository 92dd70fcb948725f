"""The simulated Shopify Admin API (daemon/sim/shopify/) fails the way Shopify fails."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from daemon.domain.models import ShopifyVariant
from daemon.sim.shopify import AppliedChange, ShopifySim

Client = TestClient[web.Request, web.Application]

SET = """
mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup {
      id reason referenceDocumentUri
      changes(quantityNames: ["available"]) {
        name delta quantityAfterChange item { id } location { id }
      }
    }
    userErrors { code field message }
  }
}
"""
SET_WITHOUT_KEY = """
mutation Set($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
"""
VARIANTS_PAGE = """
query Variants($after: String) {
  productVariants(first: 250, after: $after) {
    nodes { id sku inventoryItem { id tracked } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
LEVELS = """
query Levels($id: ID!) {
  inventoryItem(id: $id) {
    inventoryLevels(first: 10) {
      nodes {
        location { id }
        quantities(names: ["available", "on_hand", "committed"]) { name quantity }
      }
    }
  }
}
"""


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
    return ShopifySim(clock=clock)


@pytest.fixture
async def client(sim: ShopifySim) -> AsyncIterator[Client]:
    async with TestClient(TestServer(sim.app())) as test_client:
        yield test_client


@pytest.fixture
def shop(sim: ShopifySim) -> tuple[str, str, ShopifyVariant]:
    """Two locations and one tracked variant stocked at both with 5 available."""
    main = sim.add_location("Main warehouse")
    second = sim.add_location("Shop floor")
    return main, second, sim.add_variant("SKU-1", available=5)


async def gql(
    client: Client,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    version: str = "2026-10",
    token: str | None = "shpat_sim",
) -> tuple[int, Any]:
    headers = {"X-Shopify-Access-Token": token} if token is not None else {}
    response = await client.post(
        f"/admin/api/{version}/graphql.json",
        json={"query": query, "variables": variables or {}},
        headers=headers,
    )
    if response.content_type != "application/json":
        return response.status, await response.text()
    return response.status, await response.json()


def quantity(item: str, location: str, qty: int, **compare: int | None) -> dict[str, Any]:
    return {"inventoryItemId": item, "locationId": location, "quantity": qty, **compare}


def set_input(*quantities: dict[str, Any], name: str = "available") -> dict[str, Any]:
    return {
        "name": name,
        "reason": "correction",
        "referenceDocumentUri": "gid://stocksync/SyncRun/1",
        "quantities": list(quantities),
    }


def user_errors(body: Any) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = body["data"]["inventorySetQuantities"]["userErrors"]
    return errors


# -- validation ---------------------------------------------------------------------------------


async def test_unknown_field_is_an_undefined_field_validation_error_at_http_200(
    client: Client,
) -> None:
    status, body = await gql(client, "query Q { productVariants(first: 1) { nodes { id bogus } } }")

    assert status == 200
    assert "data" not in body
    assert body["errors"] == [
        {
            "message": "Field 'bogus' doesn't exist on type 'ProductVariant'",
            "locations": [{"line": 1, "column": 50}],
            "path": ["query Q", "productVariants", "nodes", "bogus"],
            "extensions": {
                "code": "undefinedField",
                "typeName": "ProductVariant",
                "fieldName": "bogus",
            },
        }
    ]


async def test_unknown_argument_is_rejected_as_argument_not_accepted(client: Client) -> None:
    status, body = await gql(client, "{ locations(first: 5, sortKey: NAME) { nodes { id } } }")

    assert status == 200
    [error] = body["errors"]
    assert error["message"] == "Field 'locations' doesn't accept argument 'sortKey'"
    assert error["extensions"]["code"] == "argumentNotAccepted"


async def test_missing_required_argument_is_reported_by_name(client: Client) -> None:
    _, body = await gql(client, "{ inventoryItem { id } }")

    [error] = body["errors"]
    assert error["message"] == "Field 'inventoryItem' is missing required arguments: id"
    assert error["extensions"]["code"] == "missingRequiredArguments"


async def test_idempotent_directive_on_the_operation_is_rejected(client: Client) -> None:
    _, body = await gql(
        client,
        'mutation @idempotent(key: "k") { inventoryActivate(inventoryItemId: "a", '
        'locationId: "b") { userErrors { message } } }',
    )

    [error] = body["errors"]
    assert error["message"] == "'@idempotent' can't be applied to mutations (allowed: fields)"


async def test_variable_of_the_wrong_type_is_an_invalid_variable_error(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    bad = set_input(
        {
            "inventoryItemId": variant.inventory_item_id,
            "locationId": main,
            "quantity": "seven",
            "changeFromQuantity": None,
        }
    )

    status, body = await gql(client, SET, {"input": bad, "key": "k"})

    assert status == 200
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_VARIABLE"
    assert error["extensions"]["problems"] == [
        {
            "path": ["quantities", 0, "quantity"],
            "explanation": 'Could not coerce value "seven" to Int',
        }
    ]
    assert error["message"].startswith("Variable $input of type InventorySetQuantitiesInput! ")


async def test_syntax_error_is_a_parse_error(client: Client) -> None:
    _, body = await gql(client, "{ locations(first: 1) { nodes { id }")

    assert body["errors"][0]["extensions"]["code"] == "PARSE_ERROR"


# -- reads ----------------------------------------------------------------------------------------


async def test_product_variants_paginate_250_a_page_with_opaque_cursors(
    client: Client, sim: ShopifySim, clock: FakeClock
) -> None:
    sim.add_location("Main")
    created = [sim.add_variant(f"SKU-{i}") for i in range(600)]

    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    while True:
        _, body = await gql(client, VARIANTS_PAGE, {"after": cursor})
        page = body["data"]["productVariants"]
        sizes.append(len(page["nodes"]))
        seen.extend(node["id"] for node in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
        assert base64.b64decode(cursor)  # opaque, but base64 like Shopify's
        clock.now += 10  # let the bucket refill: each page costs about 500 points

    assert sizes == [250, 250, 100]
    assert seen == [variant.id for variant in created]


async def test_reverse_and_backward_pages_follow_the_cursors(
    client: Client, sim: ShopifySim
) -> None:
    sim.add_location("Main")
    for i in range(5):
        sim.add_variant(f"S{i}")
    page = "{ productVariants(%s) { nodes { sku } pageInfo { hasNextPage endCursor } } }"

    _, newest = await gql(client, page % "first: 2, reverse: true")
    cursor = newest["data"]["productVariants"]["pageInfo"]["endCursor"]
    _, older = await gql(client, page % f'first: 2, reverse: true, after: "{cursor}"')
    _, before = await gql(client, page % f'last: 1, before: "{cursor}"')

    def skus(body: Any) -> list[str]:
        return [node["sku"] for node in body["data"]["productVariants"]["nodes"]]

    assert (skus(newest), skus(older), skus(before)) == (["S4", "S3"], ["S2", "S1"], ["S2"])


async def test_connection_without_first_or_last_fails(client: Client, sim: ShopifySim) -> None:
    sim.add_location("Main")

    _, body = await gql(client, "{ locations { nodes { id } } }")

    assert body["errors"][0]["message"] == "you must provide one of first or last"


async def test_first_above_250_fails_the_connection(client: Client, sim: ShopifySim) -> None:
    sim.add_location("Main")

    _, body = await gql(client, "{ productVariants(first: 251) { nodes { id } } }")

    assert body["data"] is None
    assert body["errors"][0]["message"] == "first cannot exceed 250"


async def test_product_variants_query_matches_sku_exactly_ignoring_case(
    client: Client, sim: ShopifySim
) -> None:
    sim.add_location("Main")
    wanted = sim.add_variant("ABC-1")
    sim.add_variant("ABC-10")
    other = sim.add_variant("XYZ")

    _, body = await gql(
        client,
        '{ productVariants(first: 10, query: "sku:abc-1 OR sku:XYZ") { nodes { id sku } } }',
    )

    assert [n["id"] for n in body["data"]["productVariants"]["nodes"]] == [wanted.id, other.id]


async def test_locations_list_id_name_and_flags(client: Client, sim: ShopifySim) -> None:
    main = sim.add_location("Main")

    _, body = await gql(
        client, "{ locations(first: 250) { nodes { id name isActive fulfillsOnlineOrders } } }"
    )

    assert body["data"]["locations"]["nodes"] == [
        {"id": main, "name": "Main", "isActive": True, "fulfillsOnlineOrders": True}
    ]


async def test_locations_leave_deactivated_ones_out_unless_include_inactive(
    client: Client, sim: ShopifySim
) -> None:
    main = sim.add_location("Main")
    closed = sim.add_location("Closed shop")
    sim.deactivate_location(closed)
    query = "query($all: Boolean) { locations(first: 250, includeInactive: $all) { nodes { id } } }"

    _, default = await gql(client, query)
    _, everything = await gql(client, query, {"all": True})

    assert [n["id"] for n in default["data"]["locations"]["nodes"]] == [main]
    assert [n["id"] for n in everything["data"]["locations"]["nodes"]] == [main, closed]


async def test_nodes_resolves_items_locations_and_variants_and_null_for_unknown(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    query = """
    query N($ids: [ID!]!) {
      nodes(ids: $ids) {
        id
        ... on InventoryItem { sku tracked }
        ... on Location { name }
        ... on ProductVariant { sku inventoryItem { id } }
      }
    }
    """
    ids = [variant.inventory_item_id, main, variant.id, "gid://shopify/InventoryItem/999999"]

    _, body = await gql(client, query, {"ids": ids})

    assert body["data"]["nodes"] == [
        {"id": variant.inventory_item_id, "sku": "SKU-1", "tracked": True},
        {"id": main, "name": "Main warehouse"},
        {"id": variant.id, "sku": "SKU-1", "inventoryItem": {"id": variant.inventory_item_id}},
        None,
    ]


async def test_an_order_lowers_available_and_commits_the_units(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop

    sim.place_order(variant.inventory_item_id, main, 2)
    _, body = await gql(client, LEVELS, {"id": variant.inventory_item_id})

    levels = body["data"]["inventoryItem"]["inventoryLevels"]["nodes"]
    at_main = next(level for level in levels if level["location"]["id"] == main)
    assert at_main["quantities"] == [
        {"name": "available", "quantity": 3},
        {"name": "on_hand", "quantity": 5},
        {"name": "committed", "quantity": 2},
    ]
    assert sim.available(variant.inventory_item_id, main) == 3


async def test_manual_edit_drifts_available(
    sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop

    sim.set_available_manually(variant.inventory_item_id, main, 42)

    assert sim.levels[(variant.inventory_item_id, main)] == 42


def test_levels_list_only_stocked_pairs(sim: ShopifySim) -> None:
    main = sim.add_location("Main")
    second = sim.add_location("Second")

    variant = sim.add_variant("SKU", stocked_at=[main], available=4)

    assert dict(sim.levels) == {(variant.inventory_item_id, main): 4}
    assert sim.available(variant.inventory_item_id, second) is None


# -- inventorySetQuantities: the 2026-04 rules -----------------------------------------------------


async def test_set_without_idempotent_directive_fails_at_run_time_from_2026_04(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 9, changeFromQuantity=5)

    status, body = await gql(
        client, SET_WITHOUT_KEY, {"input": set_input(element)}, version="2026-04"
    )

    assert status == 200
    assert body["data"] == {"inventorySetQuantities": None}
    assert body["errors"][0]["message"] == (
        "The @idempotent directive is required for this mutation but was not provided."
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert sim.available(variant.inventory_item_id, main) == 5


async def test_set_without_idempotent_directive_is_accepted_before_2026_04(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 9, changeFromQuantity=5)

    _, body = await gql(client, SET_WITHOUT_KEY, {"input": set_input(element)}, version="2026-01")

    assert user_errors(body) == []
    assert sim.available(variant.inventory_item_id, main) == 9


async def test_absent_change_from_quantity_fails_the_call_from_2026_04(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, second, variant = shop
    item = variant.inventory_item_id
    elements = [quantity(item, main, 9, changeFromQuantity=5), quantity(item, second, 9)]

    _, body = await gql(client, SET, {"input": set_input(*elements), "key": "k"})

    assert body["data"] == {"inventorySetQuantities": None}
    assert body["errors"][0]["message"] == (
        "InventoryQuantityInput must include the following argument: changeFromQuantity."
    )
    assert body["errors"][0]["extensions"] == {"code": "INVALID_FIELD_ARGUMENTS"}
    assert sim.available(item, main) == 5


async def test_absent_change_from_quantity_in_a_literal_is_detected_too(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    literal = (
        'mutation { inventorySetQuantities(input: {name: "available", reason: "correction", '
        f'quantities: [{{inventoryItemId: "{variant.inventory_item_id}", locationId: "{main}", '
        'quantity: 1}]}) @idempotent(key: "k") { userErrors { code } } }'
    )

    _, body = await gql(client, literal)

    assert body["errors"][0]["extensions"] == {"code": "INVALID_FIELD_ARGUMENTS"}


async def test_explicit_null_change_from_quantity_skips_the_compare(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 9, changeFromQuantity=None)

    _, body = await gql(client, SET, {"input": set_input(element), "key": "k"})

    assert user_errors(body) == []
    assert sim.available(variant.inventory_item_id, main) == 9


async def test_applied_set_moves_available_and_on_hand_and_logs_the_change(
    client: Client, sim: ShopifySim, clock: FakeClock, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    item = variant.inventory_item_id
    sim.place_order(item, main, 1)  # available 4, committed 1, on_hand 5
    clock.now = 1234.5

    _, body = await gql(
        client,
        SET,
        {"input": set_input(quantity(item, main, 10, changeFromQuantity=4)), "key": "k"},
    )

    group = body["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]
    assert group["reason"] == "correction"
    assert group["referenceDocumentUri"] == "gid://stocksync/SyncRun/1"
    assert group["changes"] == [
        {
            "name": "available",
            "delta": 6,
            "quantityAfterChange": None,
            "item": {"id": item},
            "location": {"id": main},
        }
    ]
    _, levels = await gql(client, LEVELS, {"id": item})
    at_main = levels["data"]["inventoryItem"]["inventoryLevels"]["nodes"][0]["quantities"]
    assert at_main[:2] == [
        {"name": "available", "quantity": 10},
        {"name": "on_hand", "quantity": 11},
    ]
    assert sim.changes == [AppliedChange(at=1234.5, item=item, location=main, before=4, after=10)]
    assert sim.mutation_calls["inventorySetQuantities"] == 1
    assert sim.set_quantities_sizes == [1]


async def test_more_than_250_quantities_exceed_the_max_input_size(
    client: Client, sim: ShopifySim
) -> None:
    main = sim.add_location("Main")
    variants = [sim.add_variant(f"SKU-{i}") for i in range(251)]
    elements = [quantity(v.inventory_item_id, main, 1, changeFromQuantity=None) for v in variants]

    _, body = await gql(client, SET, {"input": set_input(*elements), "key": "k"})

    assert "data" not in body
    assert body["errors"][0]["message"] == (
        "The input array size of 251 is greater than the maximum allowed of 250."
    )
    assert body["errors"][0]["path"] == ["inventorySetQuantities", "input", "quantities"]
    assert body["errors"][0]["extensions"] == {"code": "MAX_INPUT_SIZE_EXCEEDED"}
    assert sim.mutation_calls["inventorySetQuantities"] == 0


async def test_250_quantities_are_accepted(client: Client, sim: ShopifySim) -> None:
    main = sim.add_location("Main")
    variants = [sim.add_variant(f"SKU-{i}") for i in range(250)]
    elements = [quantity(v.inventory_item_id, main, 1, changeFromQuantity=0) for v in variants]

    _, body = await gql(client, SET, {"input": set_input(*elements), "key": "k"})

    assert user_errors(body) == []
    assert sim.set_quantities_sizes == [250]


# -- inventorySetQuantities: userErrors, all-or-nothing ------------------------------------------


async def test_duplicate_item_location_pair_is_rejected(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 1, changeFromQuantity=None)

    _, body = await gql(client, SET, {"input": set_input(element, element), "key": "k"})

    assert [(e["code"], e["field"]) for e in user_errors(body)] == [
        (
            "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
            ["input", "quantities", "0", "locationId"],
        ),
        (
            "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
            ["input", "quantities", "1", "locationId"],
        ),
    ]


async def test_item_not_stocked_at_location_is_rejected(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, second, _ = shop
    only_main = sim.add_variant("SKU-2", stocked_at=[main])
    element = quantity(only_main.inventory_item_id, second, 1, changeFromQuantity=None)

    _, body = await gql(client, SET, {"input": set_input(element), "key": "k"})

    assert user_errors(body) == [
        {
            "code": "ITEM_NOT_STOCKED_AT_LOCATION",
            "field": ["input", "quantities", "0", "locationId"],
            "message": "The specified inventory item is not stocked at the location.",
        }
    ]


async def test_unknown_item_and_unknown_location_are_rejected(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    elements = [
        quantity(variant.id, main, 1, changeFromQuantity=None),  # a variant id, not an item id
        quantity(
            variant.inventory_item_id, "gid://shopify/Location/999999", 1, changeFromQuantity=None
        ),
    ]

    _, body = await gql(client, SET, {"input": set_input(*elements), "key": "k"})

    assert [(e["code"], e["field"]) for e in user_errors(body)] == [
        ("INVALID_INVENTORY_ITEM", ["input", "quantities", "0", "inventoryItemId"]),
        ("INVALID_LOCATION", ["input", "quantities", "1", "locationId"]),
    ]


async def test_untracked_item_is_rejected_as_invalid_inventory_item(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, _ = shop
    untracked = sim.add_variant("SKU-U", tracked=False)
    element = quantity(untracked.inventory_item_id, main, 1, changeFromQuantity=None)

    _, body = await gql(client, SET, {"input": set_input(element), "key": "k"})

    assert [e["code"] for e in user_errors(body)] == ["INVALID_INVENTORY_ITEM"]


async def test_quantity_above_one_billion_is_rejected(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 1_000_000_001, changeFromQuantity=None)

    _, body = await gql(client, SET, {"input": set_input(element), "key": "k"})

    assert [(e["code"], e["field"]) for e in user_errors(body)] == [
        ("INVALID_QUANTITY_TOO_HIGH", ["input", "quantities", "0", "quantity"])
    ]


async def test_unknown_quantity_name_and_reason_are_rejected(
    client: Client, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 1, changeFromQuantity=None)

    _, by_name = await gql(client, SET, {"input": set_input(element, name="committed"), "key": "a"})
    _, by_reason = await gql(
        client, SET, {"input": {**set_input(element), "reason": "because"}, "key": "b"}
    )

    assert [(e["code"], e["field"]) for e in user_errors(by_name)] == [
        ("INVALID_NAME", ["input", "name"])
    ]
    assert [(e["code"], e["field"]) for e in user_errors(by_reason)] == [
        ("INVALID_REASON", ["input", "reason"])
    ]


@pytest.mark.parametrize(
    ("without_field", "field"),
    [(False, ["input", "quantities", "0", "changeFromQuantity"]), (True, None)],
)
async def test_stale_change_from_quantity_is_rejected_and_nothing_applied(
    client: Client,
    sim: ShopifySim,
    shop: tuple[str, str, ShopifyVariant],
    without_field: bool,
    field: list[str] | None,
) -> None:
    main, _, variant = shop
    sim.faults.stale_without_field = without_field
    sim.place_order(variant.inventory_item_id, main, 1)  # Shopify now holds 4, not 5
    element = quantity(variant.inventory_item_id, main, 8, changeFromQuantity=5)

    _, body = await gql(client, SET, {"input": set_input(element), "key": "k"})

    assert user_errors(body) == [
        {
            "code": "CHANGE_FROM_QUANTITY_STALE",
            "field": field,
            "message": "The changeFromQuantity argument no longer matches the persisted quantity.",
        }
    ]
    assert body["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"] is None
    assert sim.available(variant.inventory_item_id, main) == 4


async def test_one_bad_element_fails_the_whole_call_and_applies_nothing(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, second, variant = shop
    other = sim.add_variant("SKU-2", available=5)
    elements = [
        quantity(variant.inventory_item_id, main, 7, changeFromQuantity=5),
        quantity(other.inventory_item_id, second, 7, changeFromQuantity=99),  # stale
    ]

    _, body = await gql(client, SET, {"input": set_input(*elements), "key": "k"})

    assert [e["code"] for e in user_errors(body)] == ["CHANGE_FROM_QUANTITY_STALE"]
    assert sim.available(variant.inventory_item_id, main) == 5
    assert sim.available(other.inventory_item_id, second) == 5
    assert sim.changes == []


async def test_an_absent_change_from_quantity_skips_the_compare_before_2026_04(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    item = variant.inventory_item_id

    _, body = await gql(
        client, SET_WITHOUT_KEY, {"input": set_input(quantity(item, main, 6))}, version="2026-01"
    )

    assert user_errors(body) == []
    assert sim.available(item, main) == 6


@pytest.mark.parametrize(
    "variables",
    [
        {"input": set_input(quantity("gid://shopify/InventoryItem/1", "L", 6, compareQuantity=1))},
        {"input": {**set_input(), "ignoreCompareQuantity": True}},
    ],
    ids=["compareQuantity", "ignoreCompareQuantity"],
)
async def test_compare_quantity_fields_do_not_exist_in_2026_04(
    client: Client, sim: ShopifySim, variables: dict[str, Any]
) -> None:
    status, body = await gql(client, SET_WITHOUT_KEY, variables, version="2026-01")

    assert status == 200
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"
    assert sim.mutation_calls["inventorySetQuantities"] == 0


# -- idempotency ----------------------------------------------------------------------------------


async def test_idempotent_replay_returns_the_first_result_without_applying_twice(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    variables = {
        "input": set_input(quantity(variant.inventory_item_id, main, 9, changeFromQuantity=5)),
        "key": "retry-me",
    }

    _, first = await gql(client, SET, variables)
    sim.place_order(variant.inventory_item_id, main, 2)  # would make a re-run stale
    _, again = await gql(client, SET, variables)

    assert again["data"] == first["data"]
    assert user_errors(again) == []
    assert sim.available(variant.inventory_item_id, main) == 7
    assert len(sim.changes) == 1


async def test_reused_key_with_different_variables_is_a_parameter_mismatch(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    item = variant.inventory_item_id
    await gql(
        client, SET, {"input": set_input(quantity(item, main, 9, changeFromQuantity=5)), "key": "k"}
    )

    _, body = await gql(
        client, SET, {"input": set_input(quantity(item, main, 3, changeFromQuantity=9)), "key": "k"}
    )

    assert [e["code"] for e in user_errors(body)] == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
    assert sim.available(item, main) == 9


async def test_reused_key_after_a_failed_attempt_replays_its_user_errors_in_2026_04(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    # IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED only exists from 2026-10.
    main, _, variant = shop
    variables = {
        "input": set_input(quantity(variant.inventory_item_id, main, 9, changeFromQuantity=0)),
        "key": "k",
    }
    _, first = await gql(client, SET, variables)
    sim.set_available_manually(variant.inventory_item_id, main, 0)

    _, body = await gql(client, SET, variables)

    assert [e["code"] for e in user_errors(body)] == ["CHANGE_FROM_QUANTITY_STALE"]
    assert body["data"] == first["data"]
    assert sim.available(variant.inventory_item_id, main) == 0


async def test_idempotency_key_is_forgotten_after_24_hours(
    client: Client, sim: ShopifySim, clock: FakeClock, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    item = variant.inventory_item_id
    await gql(
        client, SET, {"input": set_input(quantity(item, main, 9, changeFromQuantity=5)), "key": "k"}
    )
    clock.now += 24 * 3600 + 1

    _, body = await gql(
        client, SET, {"input": set_input(quantity(item, main, 3, changeFromQuantity=9)), "key": "k"}
    )

    assert user_errors(body) == []
    assert sim.available(item, main) == 3


async def test_reexecute_fault_runs_a_retried_key_again_like_some_live_stores(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, _, variant = shop
    variables = {
        "input": set_input(quantity(variant.inventory_item_id, main, 9, changeFromQuantity=5)),
        "key": "k",
    }
    await gql(client, SET, variables)
    sim.faults.reexecute_idempotent_retries = True

    _, body = await gql(client, SET, variables)

    assert [e["code"] for e in user_errors(body)] == ["CHANGE_FROM_QUANTITY_STALE"]


# -- inventoryActivate -----------------------------------------------------------------------------


async def test_inventory_activate_stocks_the_item_with_its_initial_available(
    client: Client, sim: ShopifySim, shop: tuple[str, str, ShopifyVariant]
) -> None:
    main, second, _ = shop
    only_main = sim.add_variant("SKU-2", stocked_at=[main])
    activate = """
    mutation A($item: ID!, $location: ID!, $key: String!) {
      inventoryActivate(inventoryItemId: $item, locationId: $location, available: 3)
        @idempotent(key: $key) {
        inventoryLevel { location { id } quantities(names: ["available"]) { quantity } }
        userErrors { field message }
      }
    }
    """
    variables = {"item": only_main.inventory_item_id, "location": second, "key": "k"}

    _, body = await gql(client, activate, variables)

    assert body["data"]["inventoryActivate"] == {
        "inventoryLevel": {"location": {"id": second}, "quantities": [{"quantity": 3}]},
        "userErrors": [],
    }
    assert sim.available(only_main.inventory_item_id, second) == 3
    _, unkeyed = await gql(
        client,
        activate.replace(" @idempotent(key: $key)", "").replace(", $key: String!", ""),
        {"item": only_main.inventory_item_id, "location": second},
    )
    assert unkeyed["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}


# -- cost and throttling ---------------------------------------------------------------------------


async def test_every_executed_response_carries_extensions_cost(
    client: Client, sim: ShopifySim
) -> None:
    sim.add_location("Main")
    sim.add_variant("SKU-1")

    _, body = await gql(client, VARIANTS_PAGE)

    # Requested: connection 2 + 250 x (variant 1 + inventoryItem 1); actual: 2 + 1 x 2.
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 502,
        "actualQueryCost": 4,
        "throttleStatus": {
            "maximumAvailable": 1000.0,
            "currentlyAvailable": 996,
            "restoreRate": 100.0,
        },
    }


async def test_a_mutation_costs_ten(client: Client, shop: tuple[str, str, ShopifyVariant]) -> None:
    main, _, variant = shop
    element = quantity(variant.inventory_item_id, main, 1, changeFromQuantity=None)

    _, body = await gql(client, SET, {"input": set_input(element), "key": "k"})

    assert body["extensions"]["cost"]["requestedQueryCost"] == 10
    assert body["extensions"]["cost"]["actualQueryCost"] == 10


async def test_query_above_1000_points_is_max_cost_exceeded(
    client: Client, sim: ShopifySim
) -> None:
    sim.add_location("Main")
    query = (
        "{ productVariants(first: 250) "
        "{ nodes { inventoryItem { inventoryLevels(first: 5) { nodes { id } } } } } }"
    )

    status, body = await gql(client, query)

    assert status == 200
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    # 2 + 250 x (variant 1 + item 1 + levels connection (2 + 5 x level 1))
    assert body["errors"][0]["message"].startswith("Query cost is 2252, which exceeds")
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1000


async def test_empty_bucket_answers_throttled_at_http_200_and_recovers_after_restore(
    clock: FakeClock,
) -> None:
    sim = ShopifySim(bucket_size=1000, restore_rate=100.0, clock=clock)
    sim.add_location("Main")
    for i in range(250):
        sim.add_variant(f"SKU-{i}")
    query = "{ productVariants(first: 250) { nodes { id inventoryItem { id } } } }"  # 502 each
    async with TestClient(TestServer(sim.app())) as client:
        _, first = await gql(client, query)  # 1000 - 502 = 498 left
        status, throttled = await gql(client, query)
        clock.now += 0.5  # +50 = 548 >= 502
        _, recovered = await gql(client, query)

    assert first["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 498
    assert status == 200
    assert throttled == {
        "errors": [
            {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
        ],
        "extensions": {
            "cost": {
                "requestedQueryCost": 502,
                "actualQueryCost": None,
                "throttleStatus": {
                    "maximumAvailable": 1000.0,
                    "currentlyAvailable": 498,
                    "restoreRate": 100.0,
                },
            }
        },
    }
    assert sim.throttled_total == 1
    assert len(recovered["data"]["productVariants"]["nodes"]) == 250
    assert recovered["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 46


async def test_validation_errors_are_not_charged(client: Client, sim: ShopifySim) -> None:
    await gql(client, "{ bogus }")
    sim.add_location("Main")

    _, body = await gql(client, "{ locations(first: 1) { nodes { id } } }")

    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 997


# -- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "shpat_wrong"])
async def test_missing_or_wrong_token_is_401_with_shopify_body(
    client: Client, token: str | None
) -> None:
    status, body = await gql(client, "{ locations(first: 1) { nodes { id } } }", token=token)

    assert status == 401
    assert body == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


async def test_client_credentials_token_is_accepted_until_it_expires(
    client: Client, clock: FakeClock
) -> None:
    response = await client.post(
        "/admin/oauth/access_token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sim-client",
            "client_secret": "sim-secret",
        },
    )
    grant = await response.json()

    assert response.status == 200
    assert grant["expires_in"] == 86399
    assert grant["scope"]
    token = grant["access_token"]
    ok_status, _ = await gql(client, "{ locations(first: 1) { nodes { id } } }", token=token)
    clock.now += 86399
    expired_status, _ = await gql(client, "{ locations(first: 1) { nodes { id } } }", token=token)
    assert (ok_status, expired_status) == (200, 401)


async def test_client_credentials_with_a_wrong_secret_are_refused(client: Client) -> None:
    response = await client.post(
        "/admin/oauth/access_token",
        json={
            "grant_type": "client_credentials",
            "client_id": "sim-client",
            "client_secret": "nope",
        },
    )

    assert response.status == 400
    assert (await response.json())["error"] == "invalid_client"


async def test_api_version_that_is_not_a_version_is_404(client: Client) -> None:
    status, _ = await gql(client, "{ locations(first: 1) { nodes { id } } }", version="latest")

    assert status == 404


# -- faults ----------------------------------------------------------------------------------------


async def test_throttle_next_answers_throttled_at_http_200(client: Client, sim: ShopifySim) -> None:
    sim.faults.throttle_next(1)

    status, body = await gql(client, "{ locations(first: 1) { nodes { id } } }")
    _, after = await gql(client, "{ locations(first: 1) { nodes { id } } }")

    assert status == 200
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "errors" not in after
    assert sim.throttled_total == 1


async def test_http429_next_answers_429_with_retry_after(client: Client, sim: ShopifySim) -> None:
    sim.faults.http429_next(1)

    response = await client.post(
        "/admin/api/2026-10/graphql.json",
        json={"query": "{ locations(first: 1) { nodes { id } } }"},
        headers={"X-Shopify-Access-Token": "shpat_sim"},
    )

    assert response.status == 429
    assert response.headers["Retry-After"]


async def test_fail_next_answers_the_status_then_recovers(client: Client, sim: ShopifySim) -> None:
    sim.faults.fail_next(2, status=502)

    statuses = [
        (await gql(client, "{ locations(first: 1) { nodes { id } } }"))[0] for _ in range(3)
    ]

    assert statuses == [502, 502, 200]
    assert sim.requests_total == 3


async def test_outage_answers_503_everywhere(client: Client, sim: ShopifySim) -> None:
    sim.faults.outage = True

    graphql_status, _ = await gql(client, "{ locations(first: 1) { nodes { id } } }")
    token = await client.post(
        "/admin/oauth/access_token", data={"grant_type": "client_credentials"}
    )

    assert (graphql_status, token.status) == (503, 503)
