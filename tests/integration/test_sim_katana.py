"""The simulated Katana: transport faithful to katana-api.md, and the business rules behind it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from daemon.sim.katana import KatanaSim, ProductSpec

KEY = "test-katana-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ISO_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class FakeClock:
    """Wall clock and monotonic clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self.mono = 1000.0
        self.slept: list[float] = []

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


Client = TestClient[web.Request, web.Application]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> KatanaSim:
    return KatanaSim(
        api_key=KEY,
        requests_per_minute=10_000,
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )


@pytest.fixture
async def client(sim: KatanaSim) -> AsyncIterator[Client]:
    async with TestClient(TestServer(sim.app())) as test_client:
        yield test_client


async def get(client: Client, path: str, **params: Any) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """Status, JSON body and (case-insensitive) headers of an authenticated GET."""
    response = await client.get(f"/v1{path}", params=params, headers=AUTH)
    return response.status, await response.json(), response.headers


async def data(client: Client, path: str, **params: Any) -> list[dict[str, Any]]:
    status, body, _ = await get(client, path, **params)
    assert status == 200, body
    rows: list[dict[str, Any]] = body["data"]
    return rows


async def inventory_row(client: Client, variant_id: int, location_id: int) -> dict[str, Any]:
    rows = await data(client, "/inventory", variant_id=variant_id, location_id=location_id)
    assert len(rows) == 1
    return rows[0]


# ---- transport -------------------------------------------------------------------------------


async def test_pages_are_capped_at_250_and_pagination_values_are_strings(
    sim: KatanaSim, client: Client
) -> None:
    sim.add_products([ProductSpec(f"P{i}", [f"SKU-{i}"]) for i in range(300)])

    status, body, headers = await get(client, "/variants", limit=1000)

    assert status == 200
    assert len(body["data"]) == 250
    assert json.loads(headers["X-Pagination"]) == {
        "total_records": "300",
        "total_pages": "2",
        "offset": "0",
        "page": "1",
        "first_page": "true",
        "last_page": "false",
    }
    _, body, headers = await get(client, "/variants", limit=1000, page=2)
    assert len(body["data"]) == 50
    pagination = json.loads(headers["X-Pagination"])
    assert (pagination["offset"], pagination["last_page"]) == ("250", "true")


async def test_default_page_size_is_50(sim: KatanaSim, client: Client) -> None:
    sim.add_products([ProductSpec(f"P{i}", [f"SKU-{i}"]) for i in range(60)])

    assert len(await data(client, "/variants")) == 50


async def test_lists_are_newest_first(sim: KatanaSim, client: Client) -> None:
    first = sim.add_product("Old", ["OLD"])[0]
    second = sim.add_product("New", ["NEW"])[0]

    assert [v["id"] for v in await data(client, "/variants")] == [second, first]


async def test_requests_over_the_budget_get_429_with_retry_after(
    clock: FakeClock, sim: KatanaSim, client: Client
) -> None:
    sim.requests_per_minute = 3
    remaining = []
    for _ in range(3):
        status, _, headers = await get(client, "/locations")
        assert status == 200
        remaining.append(headers["X-Ratelimit-Remaining"])
        assert headers["X-Ratelimit-Limit"] == "3"
        clock.advance(10)

    status, body, headers = await get(client, "/locations")

    assert remaining == ["2", "1", "0"]
    assert status == 429
    assert body["statusCode"] == 429
    # The oldest request (30 s ago) leaves the 60 s window in 30 s.
    assert headers["Retry-After"] == "30"
    reset_ms = int(headers["X-Ratelimit-Reset"])
    assert reset_ms == int((clock.now + timedelta(seconds=30)).timestamp() * 1000)
    assert sim.throttled_total == 1
    clock.advance(30.5)
    assert (await get(client, "/locations"))[0] == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
async def test_missing_or_wrong_key_gets_401_with_katana_body(
    client: Client, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/locations", headers=headers)

    assert response.status == 401
    assert await response.json() == {
        "statusCode": 401,
        "name": "UnauthorizedError",
        "message": "Unauthorized",
    }


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/sales_orders", {"ids": "12,abc"}, ".ids"),
        ("/inventory", {"variant_id": "x"}, ".variant_id"),
        ("/inventory", {"location_id": "1.5"}, ".location_id"),
        ("/variants", {"limit": "0"}, ".limit"),
        ("/variants", {"updated_at_min": "yesterday"}, ".updated_at_min"),
        ("/variants", {"include_deleted": "maybe"}, ".include_deleted"),
    ],
)
async def test_a_bad_parameter_value_gets_422_validation_failed(
    client: Client, path: str, params: dict[str, str], parameter: str
) -> None:
    status, body, _ = await get(client, path, **params)

    assert status == 422
    assert body["statusCode"] == 422
    assert body["name"] == "UnprocessableEntityError"
    assert body["code"] == "VALIDATION_FAILED"
    assert isinstance(body["message"], str)
    assert [d["path"] for d in body["details"]] == [parameter]


async def test_unknown_paths_get_404_with_katana_body(client: Client) -> None:
    status, body, _ = await get(client, "/sales_orders/999")

    assert status == 404
    assert body["name"] == "NotFoundError"


async def test_unknown_filter_names_are_silently_ignored(sim: KatanaSim, client: Client) -> None:
    sim.add_product("P", ["A", "B"])

    assert len(await data(client, "/variants", updated_since="garbage")) == 2


async def test_timestamps_are_utc_with_milliseconds_and_distinct_per_event(
    sim: KatanaSim, client: Client
) -> None:
    # The clock does not move: the sim still gives each event its own timestamp.
    first = sim.add_product("A", ["A"])[0]
    second = sim.add_product("B", ["B"])[0]

    rows = {v["id"]: v for v in await data(client, "/variants")}

    assert ISO_MS_Z.fullmatch(rows[first]["created_at"])
    assert rows[first]["created_at"] < rows[second]["created_at"]


async def test_resources_can_be_read_by_id(sim: KatanaSim, client: Client) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    order = sim.create_sales_order([(variant, 2)], location)

    status, body, _ = await get(client, f"/sales_orders/{order}")

    assert status == 200
    assert body["id"] == order
    assert body["sales_order_rows"][0]["variant_id"] == variant


# ---- filters ---------------------------------------------------------------------------------


async def test_inventory_variant_id_accepts_repeated_keys_and_comma_lists(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    a, b, c = sim.add_product("P", ["A", "B", "C"])
    sim.set_stock_levels([(a, location, 1), (b, location, 2), (c, location, 3)])

    repeated = await client.get(
        "/v1/inventory", params=[("variant_id", a), ("variant_id", c)], headers=AUTH
    )
    comma = await data(client, "/inventory", variant_id=f"{a},{c}")

    assert {r["variant_id"] for r in (await repeated.json())["data"]} == {a, c}
    assert {r["variant_id"] for r in comma} == {a, c}


async def test_inventory_location_id_keeps_one_location(sim: KatanaSim, client: Client) -> None:
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]

    rows = await data(client, "/inventory", location_id=shop)

    assert [(r["variant_id"], r["location_id"]) for r in rows] == [(variant, shop)]
    assert len(await data(client, "/inventory")) == 2
    assert main != shop


async def test_updated_at_min_returns_only_what_changed_since(
    clock: FakeClock, sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    older = sim.create_sales_order([(variant, 1)], location)
    clock.advance(60)
    since = "2026-03-01T12:00:30.000Z"
    newer = sim.create_sales_order([(variant, 1)], location)

    assert [o["id"] for o in await data(client, "/sales_orders", updated_at_min=since)] == [newer]
    sim.update_sales_order(older, rows=[(variant, 5)])
    changed = await data(client, "/sales_orders", updated_at_min=since)
    assert {o["id"] for o in changed} == {older, newer}


async def test_deleted_orders_show_only_with_include_deleted(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    order = sim.create_sales_order([(variant, 1)], location)
    sim.delete_sales_order(order)

    assert await data(client, "/sales_orders") == []
    deleted = await data(client, "/sales_orders", include_deleted="true")
    assert [o["id"] for o in deleted] == [order]
    assert ISO_MS_Z.fullmatch(deleted[0]["deleted_at"])


async def test_movements_filter_by_variant_ids_resource_type_and_created_at_min(
    clock: FakeClock, sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    a, b = sim.add_product("P", ["A", "B"])
    sim.set_stock_levels([(a, location, 10), (b, location, 10)])
    clock.advance(60)
    sim.receive_purchase_order([(a, 5), (b, 5)], location)

    by_variant = await data(client, "/inventory_movements", variant_ids=str(b))
    received = await data(
        client,
        "/inventory_movements",
        resource_type="PurchaseOrderRow",
        created_at_min="2026-03-01T12:00:30.000Z",
    )

    assert {m["variant_id"] for m in by_variant} == {b}
    assert [m["resource_type"] for m in by_variant] == ["PurchaseOrderRow", "StockAdjustmentRow"]
    assert {m["variant_id"] for m in received} == {a, b}


async def test_deleted_variants_and_archived_products_leave_inventory(
    sim: KatanaSim, client: Client
) -> None:
    sim.add_location("Main")
    kept, deleted = sim.add_product("P", ["A", "B"])
    archived = sim.add_product("Old", ["OLD"])[0]
    sim.delete_variant(deleted)
    sim.archive_product(sim.variant(archived).product_id or 0)

    assert [r["variant_id"] for r in await data(client, "/inventory")] == [kept]
    with_archived = await data(client, "/inventory", include_archived="true")
    assert [r["variant_id"] for r in with_archived] == [kept, archived]
    variants = await data(client, "/variants", include_deleted="true", include_archived="true")
    assert {v["id"] for v in variants} == {kept, deleted, archived}


# ---- business rules ---------------------------------------------------------------------------


async def test_quantities_are_decimal_strings_with_five_places(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, location, 7)

    row = await inventory_row(client, variant, location)

    assert row["quantity_in_stock"] == "7.00000"
    assert row["quantity_committed"] == "0.00000"
    assert row["quantity_potential"] is None


async def test_creating_a_sales_order_commits_stock_without_a_movement(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, location, 10)
    movements_before = await data(client, "/inventory_movements")

    sim.create_sales_order([(variant, 3)], location)

    row = await inventory_row(client, variant, location)
    assert (row["quantity_in_stock"], row["quantity_committed"]) == ("10.00000", "3.00000")
    assert await data(client, "/inventory_movements") == movements_before


async def test_packing_a_sales_order_moves_stock_out_once(sim: KatanaSim, client: Client) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, location, 10)
    order = sim.create_sales_order([(variant, 3)], location)

    sim.pack_sales_order(order)
    sim.deliver_sales_order(order)

    row = await inventory_row(client, variant, location)
    assert (row["quantity_in_stock"], row["quantity_committed"]) == ("7.00000", "0.00000")
    movements = await data(client, "/inventory_movements", resource_type="SalesOrderRow")
    assert len(movements) == 1
    # Movements carry JSON numbers; only /inventory spells quantities as decimal strings.
    assert movements[0]["quantity_change"] == -3
    assert movements[0]["balance_after"] == 7
    assert movements[0]["caused_by_order_no"] == f"SO-{order}"


async def test_quotes_and_fulfilled_orders_commit_nothing(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, location, 10)

    sim.create_sales_order([(variant, 2)], location, status="PENDING")
    sim.create_sales_order([(variant, 3)], location, status="DELIVERED")
    partly = sim.create_sales_order([(variant, 4)], location, status="PARTIALLY_PACKED")

    assert sim.committed(variant, location) == 4
    assert sim.in_stock(variant, location) == 7
    sim.delete_sales_order(partly)
    assert sim.committed(variant, location) == 0


async def test_reverting_a_packed_order_returns_its_stock(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, location, 10)
    order = sim.create_sales_order([(variant, 3)], location, status="PACKED")

    sim.update_sales_order(order, status="NOT_SHIPPED")

    assert (sim.in_stock(variant, location), sim.committed(variant, location)) == (
        Decimal(10),
        Decimal(3),
    )


async def test_editing_and_moving_an_order_moves_its_commitment(sim: KatanaSim) -> None:
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]
    order = sim.create_sales_order([(variant, 3)], main)

    sim.update_sales_order(order, rows=[(variant, 5)], location_id=shop)

    assert (sim.committed(variant, main), sim.committed(variant, shop)) == (Decimal(0), Decimal(5))


async def test_open_manufacturing_orders_commit_their_ingredients(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    part = sim.add_product("Part", ["PART"])[0]
    sim.add_bom_row(kit, part, 2)
    sim.set_stock(part, location, 20)

    mo = sim.create_manufacturing_order(kit, location, 3)

    row = await inventory_row(client, part, location)
    assert row["quantity_committed"] == "6.00000"
    assert (await inventory_row(client, kit, location))["quantity_expected"] == "3.00000"
    recipe = await data(client, "/manufacturing_order_recipe_rows", manufacturing_order_id=mo)
    assert [(r["variant_id"], r["planned_quantity_per_unit"]) for r in recipe] == [
        (part, "2.00000")
    ]


async def test_completing_a_manufacturing_order_consumes_ingredients_and_adds_product(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    part = sim.add_product("Part", ["PART"])[0]
    sim.add_bom_row(kit, part, 2)
    sim.set_stock(part, location, 20)
    mo = sim.create_manufacturing_order(kit, location, 3)

    sim.complete_manufacturing_order(mo)

    assert (sim.in_stock(part, location), sim.committed(part, location)) == (
        Decimal(14),
        Decimal(0),
    )
    assert sim.in_stock(kit, location) == 3
    kinds = {m["resource_type"] for m in await data(client, "/inventory_movements")}
    assert {"ManufacturingOrderRecipeRow", "ManufacturingOrder"} <= kinds
    (order,) = await data(client, "/manufacturing_orders")
    assert (order["status"], order["planned_quantity"]) == ("DONE", 3)


async def test_deleting_an_open_manufacturing_order_releases_its_ingredients(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    part = sim.add_product("Part", ["PART"])[0]
    sim.add_bom_row(kit, part, 1)
    mo = sim.create_manufacturing_order(kit, location, 4)

    sim.delete_manufacturing_order(mo)

    assert sim.committed(part, location) == 0
    deleted = await data(client, "/manufacturing_orders", include_deleted="true")
    assert deleted[0]["deleted_at"] is not None


async def test_draft_transfers_commit_at_the_source_only(sim: KatanaSim, client: Client) -> None:
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, main, 10)

    transfer = sim.create_stock_transfer([(variant, 4)], main, shop)

    assert (sim.committed(variant, main), sim.committed(variant, shop)) == (Decimal(4), Decimal(0))
    sim.complete_stock_transfer(transfer)
    assert (sim.in_stock(variant, main), sim.in_stock(variant, shop)) == (Decimal(6), Decimal(4))
    assert sim.committed(variant, main) == 0
    movements = await data(client, "/inventory_movements", resource_type="StockTransferRow")
    assert sorted(m["location_id"] for m in movements) == sorted([main, shop])
    (listed,) = await data(client, "/stock_transfers")
    assert (listed["source_location_id"], listed["target_location_id"]) == (main, shop)


async def test_a_one_step_transfer_leaves_nothing_committed(sim: KatanaSim) -> None:
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, main, 9)

    sim.transfer_stock(variant, main, shop, 4)

    assert (sim.in_stock(variant, main), sim.in_stock(variant, shop)) == (Decimal(5), Decimal(4))
    assert (sim.committed(variant, main), sim.committed(variant, shop)) == (Decimal(0), Decimal(0))
    assert sim.open_stock_transfer_ids() == []


async def test_kit_potential_is_the_scarcest_free_component_floored(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    frame, wheel = sim.add_product("Parts", ["FRAME", "WHEEL"])
    sim.add_bom_rows([(kit, frame, 1), (kit, wheel, 2)])
    sim.set_stock_levels([(frame, location, 10), (wheel, location, 9)])
    sim.create_sales_order([(wheel, 2)], location)  # 7 wheels free -> 3.5 kits -> 3

    row = await inventory_row(client, kit, location)

    assert row["quantity_potential"] == "3.00000"
    assert (await inventory_row(client, frame, location))["quantity_potential"] is None
    sim.create_sales_order([(wheel, 20)], location)
    assert (await inventory_row(client, kit, location))["quantity_potential"] == "0.00000"


async def test_bom_rows_are_served_with_uuid_ids(sim: KatanaSim, client: Client) -> None:
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    part = sim.add_product("Part", ["PART"])[0]
    row_id = sim.add_bom_row(kit, part, "1.5")

    (row,) = await data(client, "/bom_rows")

    assert row["id"] == row_id
    assert re.fullmatch(r"[0-9a-f-]{36}", row_id)
    assert (row["product_variant_id"], row["ingredient_variant_id"]) == (kit, part)
    assert row["quantity"] == 1.5


async def test_a_removed_bom_row_is_gone_as_in_katana_which_keeps_no_deleted_bom_rows(
    sim: KatanaSim, client: Client
) -> None:
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    part = sim.add_product("Part", ["PART"])[0]
    row_id = sim.add_bom_row(kit, part, 1)
    (row,) = await data(client, "/bom_rows")
    assert "deleted_at" not in row

    sim.delete_bom_row(row_id)

    assert await data(client, "/bom_rows") == []
    assert await data(client, "/bom_rows", include_deleted="true") == []
    status, _, _ = await get(client, f"/bom_rows/{row_id}")
    assert status == 404


async def test_packing_a_kit_beyond_its_stock_assembles_it_from_components(
    sim: KatanaSim,
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    part = sim.add_product("Part", ["PART"])[0]
    sim.add_bom_row(kit, part, 2)
    sim.set_stock_levels([(kit, location, 1), (part, location, 10)])
    order = sim.create_sales_order([(kit, 3)], location)

    sim.pack_sales_order(order)

    assert sim.in_stock(kit, location) == 0
    assert sim.in_stock(part, location) == 6


async def test_counting_stock_to_the_same_level_creates_no_movement(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    assert sim.set_stock(variant, location, 5) is not None

    assert sim.set_stock(variant, location, 5) is None


async def test_open_purchase_orders_are_expected_until_received(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    order = sim.create_purchase_order([(variant, 8)], location)
    assert (sim.expected(variant, location), sim.in_stock(variant, location)) == (
        Decimal(8),
        Decimal(0),
    )

    sim.mark_purchase_order_received(order)

    assert (sim.expected(variant, location), sim.in_stock(variant, location)) == (
        Decimal(0),
        Decimal(8),
    )


async def test_a_purchase_order_received_at_once_leaves_nothing_expected(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]

    sim.receive_purchase_order([(variant, 8)], location)

    assert (sim.expected(variant, location), sim.in_stock(variant, location)) == (
        Decimal(0),
        Decimal(8),
    )
    assert sim.open_purchase_order_ids() == []


async def test_stock_row_is_what_inventory_serves(sim: KatanaSim, client: Client) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.adjust_stock(variant, location, Decimal("2.5"))

    assert await inventory_row(client, variant, location) == sim.stock_row(variant, location)


async def test_business_errors_are_refused_clearly(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    packed = sim.create_sales_order([(variant, 1)], location, status="PACKED")

    with pytest.raises(ValueError, match="revert"):
        sim.delete_sales_order(packed)
    with pytest.raises(ValueError, match="variant with id 999"):
        sim.set_stock(999, location, 1)
    with pytest.raises(ValueError, match="already exists"):
        sim.add_location("Main")


# ---- fault injection --------------------------------------------------------------------------


async def test_fail_next_answers_the_given_status_then_recovers(
    sim: KatanaSim, client: Client
) -> None:
    sim.faults.fail_next(2, status=502)

    statuses = [(await get(client, "/locations"))[0] for _ in range(3)]

    assert statuses == [502, 502, 200]


async def test_throttle_next_answers_429_with_retry_after(sim: KatanaSim, client: Client) -> None:
    sim.faults.throttle_next(1, retry_after=7)

    status, body, headers = await get(client, "/locations")

    assert (status, body["name"], headers["Retry-After"]) == (429, "TooManyRequestsError", "7")
    assert sim.throttled_total == 1
    assert (await get(client, "/locations"))[0] == 200


async def test_outage_answers_503_until_cleared(sim: KatanaSim, client: Client) -> None:
    sim.faults.outage = True
    assert (await get(client, "/locations"))[0] == 503

    sim.faults.clear()

    assert (await get(client, "/locations"))[0] == 200


@pytest.mark.parametrize(
    ("kind", "broken"),
    [
        ("quantity", lambda row: row["quantity_in_stock"] == "abc"),
        ("missing_id", lambda row: "variant_id" not in row),
    ],
)
async def test_malformed_next_breaks_the_next_inventory_rows(
    sim: KatanaSim, client: Client, kind: Any, broken: Any
) -> None:
    sim.add_location("Main")
    sim.add_product("P", ["A", "B", "C"])
    sim.faults.malformed_next(2, kind=kind)

    rows = await data(client, "/inventory")
    again = await data(client, "/inventory")

    assert [bool(broken(r)) for r in rows] == [True, True, False]
    assert not any(broken(r) for r in again)


async def test_latency_sleeps_before_each_request(
    clock: FakeClock, sim: KatanaSim, client: Client
) -> None:
    sim.faults.latency = 0.25

    await get(client, "/locations")

    assert clock.slept == [0.25]


async def test_requests_are_counted_by_path(sim: KatanaSim, client: Client) -> None:
    await get(client, "/locations")
    await get(client, "/locations")
    await client.get("/v1/inventory")  # unauthenticated still counts

    assert sim.requests_total == 3
    assert sim.requests_by_path["/locations"] == 2
    assert sim.requests_by_path["/inventory"] == 1


# ---- scale -----------------------------------------------------------------------------------


async def test_inventory_serves_100k_variants_at_3_locations_by_index(
    sim: KatanaSim, client: Client
) -> None:
    for name in ("A", "B", "C"):
        sim.add_location(name)
    sim.add_products([ProductSpec(f"P{i}", [f"SKU-{i}"]) for i in range(100_000)])

    started = time.perf_counter()
    status, body, headers = await get(client, "/inventory", limit=250, page=1200)
    elapsed = time.perf_counter() - started

    assert status == 200
    assert len(body["data"]) == 250
    assert json.loads(headers["X-Pagination"])["total_records"] == "300000"
    assert body["data"][-1]["variant_id"] == 100_000
    # A linear scan rendering 300k rows takes seconds; index arithmetic takes milliseconds.
    assert elapsed < 1.0


# ---- statuses and shapes as the reference has them --------------------------------------------


async def test_stock_transfers_go_draft_in_transit_received(sim: KatanaSim, client: Client) -> None:
    # katana-openapi.yaml StockTransferStatus: draft, inTransit (camelCase), received.
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, main, 10)
    transfer = sim.create_stock_transfer([(variant, 4)], main, shop)
    assert (await data(client, "/stock_transfers"))[0]["status"] == "draft"

    sim.ship_stock_transfer(transfer)

    assert (await data(client, "/stock_transfers"))[0]["status"] == "inTransit"
    # On its way: gone from the source, not yet at the target, committed nowhere.
    assert (sim.in_stock(variant, main), sim.in_stock(variant, shop)) == (Decimal(6), Decimal(0))
    assert sim.committed(variant, main) == 0

    sim.complete_stock_transfer(transfer)

    assert (await data(client, "/stock_transfers"))[0]["status"] == "received"
    assert (sim.in_stock(variant, main), sim.in_stock(variant, shop)) == (Decimal(6), Decimal(4))
    movements = await data(client, "/inventory_movements", resource_type="StockTransferRow")
    assert sorted((m["location_id"], Decimal(str(m["quantity_change"]))) for m in movements) == (
        sorted([(main, Decimal(-4)), (shop, Decimal(4))])
    )


async def test_deleting_a_draft_transfer_releases_its_commitment(
    sim: KatanaSim, client: Client
) -> None:
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]
    transfer = sim.create_stock_transfer([(variant, 4)], main, shop)

    sim.delete_stock_transfer(transfer)

    assert sim.committed(variant, main) == 0
    assert await data(client, "/stock_transfers") == []
    (deleted,) = await data(client, "/stock_transfers", include_deleted="true")
    assert deleted["deleted_at"] is not None


async def test_row_quantities_are_json_numbers_as_katana_sends_them(
    sim: KatanaSim, client: Client
) -> None:
    main, shop = sim.add_location("Main"), sim.add_location("Shop")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, main, 10)
    sim.create_sales_order([(variant, "2.5")], main)
    sim.create_purchase_order([(variant, 3)], main)
    sim.create_stock_transfer([(variant, 1)], main, shop)

    (order,) = await data(client, "/sales_orders")
    (row,) = await data(client, "/sales_order_rows")
    (purchase,) = await data(client, "/purchase_orders")
    (purchase_row,) = await data(client, "/purchase_order_rows")
    (transfer,) = await data(client, "/stock_transfers")
    (adjustment,) = await data(client, "/stock_adjustments")

    assert order["sales_order_rows"][0]["quantity"] == 2.5
    assert row["quantity"] == 2.5
    assert purchase["purchase_order_rows"][0]["quantity"] == 3
    assert purchase_row["quantity"] == 3
    assert transfer["stock_transfer_rows"][0]["quantity"] == 1
    assert adjustment["stock_adjustment_rows"][0]["quantity"] == 10


async def test_responses_carry_the_accounts_clock_in_the_date_header(
    sim: KatanaSim, client: Client, clock: FakeClock
) -> None:
    _, _, headers = await get(client, "/sales_orders")
    assert headers["Date"] == "Sun, 01 Mar 2026 12:00:00 GMT"


# ---- document rows: edited and deleted on their own -------------------------------------------


async def test_deleting_a_sales_order_row_releases_it_without_touching_the_order_or_moving_stock(
    sim: KatanaSim, client: Client, clock: FakeClock
) -> None:
    location = sim.add_location("Main")
    chair, lamp = sim.add_product("P", ["CHAIR", "LAMP"])
    order = sim.create_sales_order([(chair, 2), (lamp, 3)], location)
    (before,) = await data(client, "/sales_orders")
    chair_row, lamp_row = sim.sales_order_row_ids(order)
    clock.advance(5)

    sim.delete_sales_order_row(lamp_row)

    assert (sim.committed(chair, location), sim.committed(lamp, location)) == (2, 0)
    (after,) = await data(client, "/sales_orders")
    assert after["updated_at"] == before["updated_at"]
    assert [r["id"] for r in after["sales_order_rows"]] == [chair_row]
    assert await data(client, "/inventory_movements") == []
    assert [r["id"] for r in await data(client, "/sales_order_rows")] == [chair_row]
    listed = await data(client, "/sales_order_rows", include_deleted="true")
    (deleted,) = [r for r in listed if r["id"] == lamp_row]
    assert deleted["deleted_at"] == deleted["updated_at"] != before["updated_at"]


async def test_repointing_a_sales_order_row_moves_its_commitment_without_touching_the_order(
    sim: KatanaSim, client: Client, clock: FakeClock
) -> None:
    location = sim.add_location("Main")
    chair, lamp = sim.add_product("P", ["CHAIR", "LAMP"])
    order = sim.create_sales_order([(chair, 2)], location)
    (row_id,) = sim.sales_order_row_ids(order)
    (before,) = await data(client, "/sales_orders")
    clock.advance(5)

    sim.update_sales_order_row(row_id, variant_id=lamp, quantity=4)

    assert (sim.committed(chair, location), sim.committed(lamp, location)) == (0, 4)
    (after,) = await data(client, "/sales_orders")
    assert after["updated_at"] == before["updated_at"]
    since = (clock.now - timedelta(seconds=1)).isoformat()
    (row,) = await data(client, "/sales_order_rows", updated_at_min=since)
    assert (row["id"], row["variant_id"], row["quantity"]) == (row_id, lamp, 4)
    assert await data(client, "/inventory_movements") == []


async def test_a_row_added_to_an_open_order_commits_without_touching_the_order(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    chair, lamp = sim.add_product("P", ["CHAIR", "LAMP"])
    order = sim.create_sales_order([(chair, 2)], location)
    (before,) = await data(client, "/sales_orders")

    row_id = sim.add_sales_order_row(order, lamp, 1)

    assert sim.committed(lamp, location) == 1
    (after,) = await data(client, "/sales_orders")
    assert after["updated_at"] == before["updated_at"]
    assert [r["id"] for r in after["sales_order_rows"]][-1] == row_id
    rows = await data(client, "/sales_order_rows", sales_order_ids=order, variant_id=lamp)
    assert [r["id"] for r in rows] == [row_id]


async def test_rows_of_a_packed_order_cannot_be_edited_as_in_katana(sim: KatanaSim) -> None:
    location = sim.add_location("Main")
    chair = sim.add_product("P", ["CHAIR"])[0]
    sim.set_stock(chair, location, 5)
    order = sim.create_sales_order([(chair, 2)], location)
    (row_id,) = sim.sales_order_row_ids(order)
    sim.pack_sales_order(order)

    with pytest.raises(ValueError, match="PACKED"):
        sim.update_sales_order_row(row_id, quantity=1)
    with pytest.raises(ValueError, match="PACKED"):
        sim.delete_sales_order_row(row_id)


async def test_editing_an_order_whole_keeps_its_row_ids_and_deletes_the_rows_it_drops(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    chair, lamp, desk = sim.add_product("P", ["CHAIR", "LAMP", "DESK"])
    order = sim.create_sales_order([(chair, 2), (lamp, 3)], location)
    first, second = sim.sales_order_row_ids(order)

    sim.update_sales_order(order, rows=[(desk, 1)])

    assert sim.sales_order_row_ids(order) == [first]
    assert (sim.committed(chair, location), sim.committed(desk, location)) == (0, 1)
    listed = await data(client, "/sales_order_rows", include_deleted="true")
    assert {r["id"]: (r["variant_id"], r["deleted_at"] is None) for r in listed} == {
        first: (desk, True),
        second: (lamp, False),
    }


async def test_repointing_or_deleting_a_recipe_row_moves_the_committed_ingredient(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    oak, pine, glue = sim.add_product("Parts", ["OAK", "PINE", "GLUE"])
    sim.add_bom_rows([(kit, oak, 2), (kit, glue, 1)])
    mo = sim.create_manufacturing_order(kit, location, 3)
    oak_row, glue_row = sim.recipe_row_ids(mo)
    (before,) = await data(client, "/manufacturing_orders")

    sim.update_recipe_row(oak_row, variant_id=pine)
    sim.delete_recipe_row(glue_row)
    added = sim.add_recipe_row(mo, glue, "0.5")

    assert [sim.committed(v, location) for v in (oak, pine, glue)] == [0, 6, Decimal("1.5")]
    (after,) = await data(client, "/manufacturing_orders")
    assert after["updated_at"] == before["updated_at"]
    assert await data(client, "/inventory_movements") == []
    rows = await data(client, "/manufacturing_order_recipe_rows", include_deleted="true")
    assert {r["id"]: (r["variant_id"], r["deleted_at"] is None) for r in rows} == {
        oak_row: (pine, True),
        glue_row: (glue, False),
        added: (glue, True),
    }


async def test_an_unlinked_make_to_order_manufacturing_order_and_its_row_are_updated(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    order = sim.create_sales_order([(kit, 2)], location)
    (row_id,) = sim.sales_order_row_ids(order)
    mo = sim.make_to_order(row_id)
    (linked,) = await data(client, "/manufacturing_orders")
    assert (linked["is_linked_to_sales_order"], linked["sales_order_row_id"]) == (True, row_id)
    (row,) = await data(client, "/sales_order_rows")
    assert row["linked_manufacturing_order_id"] == mo
    (order_before,) = await data(client, "/sales_orders")

    sim.unlink_manufacturing_order(row_id)

    (unlinked,) = await data(client, "/manufacturing_orders")
    # katana-openapi.yaml has the link ids as non-null integers: an unlinked order has none.
    assert unlinked["is_linked_to_sales_order"] is False
    assert "sales_order_row_id" not in unlinked
    assert unlinked["updated_at"] > linked["updated_at"]
    (row,) = await data(client, "/sales_order_rows")
    assert row["linked_manufacturing_order_id"] is None
    assert row["updated_at"] == unlinked["updated_at"]
    (order_after,) = await data(client, "/sales_orders")
    assert order_after["updated_at"] == order_before["updated_at"]


async def test_deleting_a_received_purchase_order_row_takes_its_stock_back_without_a_movement(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    mug, cup = sim.add_product("P", ["MUG", "CUP"])
    po = sim.receive_purchase_order([(mug, 24), (cup, 6)], location)
    mug_row, cup_row = sim.purchase_order_row_ids(po)
    (before,) = await data(client, "/purchase_orders")

    sim.delete_purchase_order_row(cup_row)

    assert (sim.in_stock(mug, location), sim.in_stock(cup, location)) == (24, 0)
    movements = await data(client, "/inventory_movements")
    assert [(m["variant_id"], m["resource_id"]) for m in movements] == [(mug, mug_row)]
    (after,) = await data(client, "/purchase_orders")
    assert after["updated_at"] == before["updated_at"]
    assert [r["id"] for r in after["purchase_order_rows"]] == [mug_row]
    listed = await data(client, "/purchase_order_rows", include_deleted="true")
    assert {r["id"]: r["deleted_at"] is None for r in listed} == {mug_row: True, cup_row: False}


async def test_an_open_purchase_order_row_can_be_repointed_and_a_received_one_cannot(
    sim: KatanaSim,
) -> None:
    location = sim.add_location("Main")
    mug, cup = sim.add_product("P", ["MUG", "CUP"])
    po = sim.create_purchase_order([(mug, 5)], location)
    (row_id,) = sim.purchase_order_row_ids(po)

    sim.update_purchase_order_row(row_id, variant_id=cup, quantity=7)

    assert (sim.expected(mug, location), sim.expected(cup, location)) == (0, 7)
    sim.mark_purchase_order_received(po)
    with pytest.raises(ValueError, match="received"):
        sim.update_purchase_order_row(row_id, quantity=1)


async def test_outsourced_purchase_orders_commit_their_recipe_rows_until_received(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    kit = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)[0]
    oak, pine = sim.add_product("Parts", ["OAK", "PINE"])
    sim.add_bom_row(kit, oak, 2)
    sim.set_stock(oak, location, 10)
    po = sim.create_outsourced_purchase_order(kit, location, 3)
    (recipe_row,) = sim.outsourced_recipe_row_ids(po)

    assert (sim.committed(oak, location), sim.expected(kit, location)) == (6, 3)
    (row,) = await data(client, "/outsourced_purchase_order_recipe_rows")
    assert (row["ingredient_variant_id"], row["planned_quantity_per_unit"]) == (oak, 2)
    assert (await data(client, "/purchase_orders"))[0]["entity_type"] == "outsourced"

    sim.update_outsourced_recipe_row(recipe_row, variant_id=pine)
    assert (sim.committed(oak, location), sim.committed(pine, location)) == (0, 6)
    sim.update_outsourced_recipe_row(recipe_row, variant_id=oak)
    sim.mark_purchase_order_received(po)

    assert (sim.in_stock(oak, location), sim.in_stock(kit, location)) == (4, 3)
    assert sim.committed(oak, location) == 0
    kinds = {m["resource_type"] for m in await data(client, "/inventory_movements")}
    assert {"PurchaseOrderRecipeRow", "PurchaseOrderRow"} <= kinds


async def test_deleting_a_stock_adjustment_takes_its_stock_back_and_withdraws_its_movements(
    sim: KatanaSim, client: Client
) -> None:
    location = sim.add_location("Main")
    variant = sim.add_product("P", ["A"])[0]
    sim.set_stock(variant, location, 10)
    adjustment = sim.adjust_stock(variant, location, -3)

    sim.delete_stock_adjustment(adjustment)

    assert sim.in_stock(variant, location) == 10
    movements = await data(client, "/inventory_movements")
    assert [Decimal(str(m["quantity_change"])) for m in movements] == [10]
    (deleted,) = [
        a
        for a in await data(client, "/stock_adjustments", include_deleted="true")
        if a["id"] == adjustment
    ]
    assert deleted["deleted_at"] is not None
