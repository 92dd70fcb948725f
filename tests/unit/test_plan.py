"""Desired levels, the planner, batching and the safety valve: one test per rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from daemon.domain.mapping import MappingTable, build_mapping
from daemon.domain.models import (
    DesiredLevel,
    KatanaVariant,
    PlannedPush,
    Problem,
    ShopifyVariant,
    SnapshotEntry,
    StockRow,
)
from daemon.domain.plan import (
    Hold,
    batches,
    desired_levels,
    drops_to_zero,
    plan_pushes,
    safety_valve,
)
from daemon.domain.quantity import QuantityPolicy
from daemon.domain.stock import StockTable

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SHOP_A = "gid://shopify/Location/1"
SHOP_B = "gid://shopify/Location/2"
SHOP_C = "gid://shopify/Location/3"
DEFAULT = QuantityPolicy()


def item(n: int) -> str:
    return f"gid://shopify/InventoryItem/{n}"


def kv(variant_id: int, sku: str | None, *, is_kit: bool = False) -> KatanaVariant:
    return KatanaVariant(id=variant_id, sku=sku, created_at=T0, product_id=1, is_kit=is_kit)


def sv(n: int, sku: str | None) -> ShopifyVariant:
    return ShopifyVariant(
        id=f"gid://shopify/ProductVariant/{n}", sku=sku, inventory_item_id=item(n), tracked=True
    )


def stock(
    variant_id: int,
    location_id: int,
    in_stock: str,
    committed: str = "0",
    potential: str | None = None,
) -> StockRow:
    return StockRow(
        variant_id,
        location_id,
        Decimal(in_stock),
        Decimal(committed),
        None if potential is None else Decimal(potential),
    )


def setup(
    katana: Sequence[KatanaVariant], shopify: Sequence[ShopifyVariant]
) -> tuple[dict[int, KatanaVariant], MappingTable]:
    return {k.id: k for k in katana}, build_mapping(katana, shopify, {})


def desired_from_rows(
    rows: Iterable[StockRow], *args: Any, **kwargs: Any
) -> tuple[list[DesiredLevel], list[Problem]]:
    """`desired_levels` over a flat list of stock rows, as the tests write them."""
    return desired_levels(StockTable(rows), *args, **kwargs)


def level(n: int, location: str, quantity: int, variant_id: int = 1) -> DesiredLevel:
    return DesiredLevel(variant_id, f"SKU{n}", item(n), location, quantity)


def push(n: int, location: str, quantity: int, change_from: int | None = None) -> PlannedPush:
    return PlannedPush(1, f"SKU{n}", item(n), location, quantity, change_from)


# --- desired levels -------------------------------------------------------------------------


def test_desired_level_per_mapped_variant_location_and_target() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A"), sv(11, "A")])
    levels, problems = desired_from_rows(
        [stock(1, 100, "7.00000", "2.00000")], variants, table, {100: (SHOP_A, SHOP_B)}, DEFAULT
    )
    assert problems == []
    assert {(d.inventory_item_id, d.location_id, d.quantity) for d in levels} == {
        (item(10), SHOP_A, 5),
        (item(10), SHOP_B, 5),
        (item(11), SHOP_A, 5),
        (item(11), SHOP_B, 5),
    }
    assert all(d.katana_variant_id == 1 and d.sku == "A" for d in levels)


def test_each_katana_location_feeds_only_its_own_shopify_locations() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    rows = [stock(1, 100, "3"), stock(1, 200, "8")]
    levels, _ = desired_from_rows(rows, variants, table, {100: (SHOP_A,), 200: (SHOP_B,)}, DEFAULT)
    assert {(d.location_id, d.quantity) for d in levels} == {(SHOP_A, 3), (SHOP_B, 8)}


def test_kit_desired_level_includes_potential() -> None:
    variants, table = setup([kv(1, "KIT", is_kit=True)], [sv(10, "KIT")])
    levels, _ = desired_from_rows(
        [stock(1, 100, "1", "2", potential="6")], variants, table, {100: (SHOP_A,)}, DEFAULT
    )
    assert [d.quantity for d in levels] == [5]


def test_missing_stock_row_at_a_mapped_location_counts_as_zero() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    levels, problems = desired_from_rows([], variants, table, {100: (SHOP_A,)}, DEFAULT)
    assert problems == []
    assert [(d.inventory_item_id, d.location_id, d.quantity) for d in levels] == [
        (item(10), SHOP_A, 0)
    ]


def test_missing_stock_row_with_buffer_and_allow_negative_goes_below_zero() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    policy = QuantityPolicy(buffer=2, allow_negative=True)
    levels, _ = desired_from_rows([], variants, table, {100: (SHOP_A,)}, policy)
    assert [d.quantity for d in levels] == [-2]


def test_stock_at_unmapped_katana_location_never_reaches_shopify() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    rows = [stock(1, 100, "4"), stock(1, 999, "50")]
    levels, _ = desired_from_rows(rows, variants, table, {100: (SHOP_A,)}, DEFAULT)
    assert [(d.location_id, d.quantity) for d in levels] == [(SHOP_A, 4)]


def test_unmapped_katana_variant_gets_no_desired_level() -> None:
    variants, table = setup([kv(1, "A"), kv(2, "NOPE")], [sv(10, "A")])
    rows = [stock(1, 100, "1"), stock(2, 100, "9")]
    levels, _ = desired_from_rows(rows, variants, table, {100: (SHOP_A,)}, DEFAULT)
    assert {d.katana_variant_id for d in levels} == {1}


def test_only_restricts_levels_to_the_given_variants() -> None:
    variants, table = setup([kv(1, "A"), kv(2, "B")], [sv(10, "A"), sv(20, "B")])
    rows = [stock(1, 100, "1"), stock(2, 100, "2")]
    levels, _ = desired_from_rows(rows, variants, table, {100: (SHOP_A,)}, DEFAULT, only=[2, 3])
    assert [(d.katana_variant_id, d.quantity) for d in levels] == [(2, 2)]


def test_retired_variant_in_catalogue_gets_no_desired_level() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    variants[1] = KatanaVariant(id=1, sku="A", created_at=T0, retired=True)
    levels, _ = desired_from_rows([stock(1, 100, "3")], variants, table, {100: (SHOP_A,)}, DEFAULT)
    assert levels == []


def test_invalid_quantity_is_a_problem_and_that_location_gets_no_level() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    rows = [StockRow(1, 100, Decimal("NaN"), Decimal(0)), stock(1, 200, "4")]
    levels, problems = desired_from_rows(
        rows, variants, table, {100: (SHOP_A,), 200: (SHOP_B,)}, DEFAULT
    )
    assert [(d.location_id, d.quantity) for d in levels] == [(SHOP_B, 4)]
    [problem] = problems
    assert problem.kind == "quantity_invalid"
    assert problem.subject == "katana_variant:1"
    assert "in_stock" in problem.detail
    assert "Katana location 100" in problem.detail


def test_quantity_too_high_is_a_problem_and_not_pushed() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    levels, problems = desired_from_rows(
        [stock(1, 100, "1000000001")], variants, table, {100: (SHOP_A,)}, DEFAULT
    )
    assert levels == []
    assert [(p.kind, p.subject) for p in problems] == [("quantity_too_high", "katana_variant:1")]
    assert "1000000001" in problems[0].detail


def test_quantity_too_low_with_allow_negative_is_a_problem() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    policy = QuantityPolicy(allow_negative=True)
    levels, problems = desired_from_rows(
        [stock(1, 100, "0", "1000000001")], variants, table, {100: (SHOP_A,)}, policy
    )
    assert levels == []
    assert [p.kind for p in problems] == ["quantity_too_low"]


def test_one_problem_per_variant_even_when_several_locations_fail() -> None:
    variants, table = setup([kv(1, "A")], [sv(10, "A")])
    rows = [stock(1, 100, "2000000000"), StockRow(1, 200, Decimal("sNaN"), Decimal(0))]
    _, problems = desired_from_rows(
        rows, variants, table, {100: (SHOP_A,), 200: (SHOP_B,)}, DEFAULT
    )
    [problem] = problems
    assert problem.kind == "quantity_invalid"
    assert "Katana location 100" in problem.detail
    assert "Katana location 200" in problem.detail


def test_desired_levels_order_is_deterministic_by_variant_then_location() -> None:
    variants, table = setup([kv(2, "B"), kv(1, "A")], [sv(20, "B"), sv(10, "A")])
    rows = [stock(2, 200, "1"), stock(1, 100, "1"), stock(2, 100, "1"), stock(1, 200, "1")]
    locations = {200: (SHOP_B,), 100: (SHOP_A,)}
    levels, _ = desired_from_rows(rows, variants, table, locations, DEFAULT)
    assert [(d.katana_variant_id, d.location_id) for d in levels] == [
        (1, SHOP_A),
        (1, SHOP_B),
        (2, SHOP_A),
        (2, SHOP_B),
    ]
    again, _ = desired_from_rows(list(reversed(rows)), variants, table, locations, DEFAULT)
    assert again == levels


def test_desired_level_carries_the_normalised_sku() -> None:
    variants, table = setup([kv(1, " A ")], [sv(10, "A")])
    levels, _ = desired_from_rows([], variants, table, {100: (SHOP_A,)}, DEFAULT)
    assert [d.sku for d in levels] == ["A"]


# --- planning -------------------------------------------------------------------------------


def test_unchanged_level_is_not_pushed() -> None:
    snapshot = {(item(1), SHOP_A): SnapshotEntry(5)}
    assert plan_pushes([level(1, SHOP_A, 5)], snapshot) == []


def test_changed_level_is_pushed_with_change_from_the_snapshot() -> None:
    snapshot = {(item(1), SHOP_A): SnapshotEntry(5)}
    assert plan_pushes([level(1, SHOP_A, 3)], snapshot) == [push(1, SHOP_A, 3, change_from=5)]


def test_never_pushed_level_is_pushed_with_unknown_change_from() -> None:
    assert plan_pushes([level(1, SHOP_A, 3)], {}) == [push(1, SHOP_A, 3, change_from=None)]


def test_snapshot_with_unknown_quantity_is_pushed_with_unknown_change_from() -> None:
    snapshot = {(item(1), SHOP_A): SnapshotEntry(None)}
    assert plan_pushes([level(1, SHOP_A, 0)], snapshot) == [push(1, SHOP_A, 0, change_from=None)]


def test_in_flight_pair_is_pushed_even_when_desired_equals_old_value() -> None:
    snapshot = {(item(1), SHOP_A): SnapshotEntry(5, in_flight=True)}
    assert plan_pushes([level(1, SHOP_A, 5)], snapshot) == [push(1, SHOP_A, 5, change_from=5)]


def test_in_flight_pair_is_compared_against_the_last_acknowledged_value_never_null() -> None:
    # A request that may still land must never meet an unconditional set (PRODUCT.md §3).
    snapshot = {(item(1), SHOP_A): SnapshotEntry(5, in_flight=True)}
    assert plan_pushes([level(1, SHOP_A, 7)], snapshot) == [push(1, SHOP_A, 7, change_from=5)]


def test_pair_never_acknowledged_is_pushed_with_a_null_compare() -> None:
    snapshot = {(item(1), SHOP_A): SnapshotEntry(None, in_flight=True)}
    assert plan_pushes([level(1, SHOP_A, 7)], {}) == [push(1, SHOP_A, 7, change_from=None)]
    assert plan_pushes([level(1, SHOP_A, 7)], snapshot) == [push(1, SHOP_A, 7, change_from=None)]


def test_confirmed_variant_is_pushed_unchanged_compared_against_the_snapshot() -> None:
    # Katana changed and came back: Shopify may have drifted meanwhile, so the unchanged value
    # is set again, compared against the last pushed one (a no-op where Shopify still shows it).
    snapshot = {(item(1), SHOP_A): SnapshotEntry(5), (item(2), SHOP_A): SnapshotEntry(3)}
    desired = [level(1, SHOP_A, 5), level(2, SHOP_A, 3, variant_id=2)]
    assert plan_pushes(desired, snapshot, confirm={1}) == [push(1, SHOP_A, 5, change_from=5)]


def test_force_pushes_unchanged_levels_keeping_change_from() -> None:
    snapshot = {(item(1), SHOP_A): SnapshotEntry(5)}
    planned = plan_pushes([level(1, SHOP_A, 5)], snapshot, force=True)
    assert planned == [push(1, SHOP_A, 5, change_from=5)]


def test_plan_preserves_desired_order() -> None:
    desired = [level(3, SHOP_A, 1), level(1, SHOP_A, 1), level(2, SHOP_A, 1)]
    assert [p.inventory_item_id for p in plan_pushes(desired, {})] == [item(3), item(1), item(2)]


# --- batching -------------------------------------------------------------------------------


def test_batches_hold_at_most_250_pushes_in_order() -> None:
    pushes = [push(n, SHOP_A, 1) for n in range(600)]
    split = batches(pushes)
    assert [len(b) for b in split] == [250, 250, 100]
    assert [p for b in split for p in b] == pushes


def test_batches_honour_a_smaller_size() -> None:
    pushes = [push(n, SHOP_A, 1) for n in range(5)]
    assert [len(b) for b in batches(pushes, size=2)] == [2, 2, 1]


def test_no_pushes_means_no_batches() -> None:
    assert batches([]) == []


def test_same_item_at_different_locations_is_not_a_duplicate() -> None:
    assert batches([push(1, SHOP_A, 1), push(1, SHOP_B, 1)]) == [
        [push(1, SHOP_A, 1), push(1, SHOP_B, 1)]
    ]


def test_duplicate_pair_in_one_call_raises_value_error() -> None:
    # Shopify rejects a pair twice in one call; the planner never yields one (properties test).
    pushes = [*[push(n, SHOP_B, 1) for n in range(300)], push(1, SHOP_A, 1), push(1, SHOP_A, 2)]
    with pytest.raises(ValueError, match="duplicate push"):
        batches(pushes)


@pytest.mark.parametrize("size", [0, -1, 251])
def test_batch_size_outside_shopify_limit_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="batch size"):
        batches([push(1, SHOP_A, 1)], size=size)


# --- safety valve ---------------------------------------------------------------------------


def drops_plan(count: int) -> tuple[list[PlannedPush], dict[tuple[str, str], SnapshotEntry]]:
    plan = [push(n, SHOP_A, 0, change_from=4) for n in range(count)]
    return plan, {p.key: SnapshotEntry(4) for p in plan}


def test_safety_valve_holds_when_drops_exceed_fraction_and_minimum() -> None:
    plan, snapshot = drops_plan(30)
    hold = safety_valve(
        drops_to_zero(plan, snapshot), mapped_levels=50, max_drop_fraction=0.5, min_drop_count=20
    )
    assert hold == Hold(drops=30, mapped=50, fraction=0.6)


def test_safety_valve_does_not_hold_at_exactly_the_fraction() -> None:
    plan, snapshot = drops_plan(25)
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 50, max_drop_fraction=0.5, min_drop_count=20)
        is None
    )


def test_safety_valve_compares_the_decimal_fraction_exactly() -> None:
    # 0.57 * 100 is 56.99999999999999 in floats: 57 drops must not trip the valve.
    plan, snapshot = drops_plan(57)
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 100, max_drop_fraction=0.57, min_drop_count=1)
        is None
    )
    plan, snapshot = drops_plan(58)
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 100, max_drop_fraction=0.57, min_drop_count=1)
        is not None
    )


def test_safety_valve_does_not_hold_below_min_drop_count() -> None:
    plan, snapshot = drops_plan(19)
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 20, max_drop_fraction=0.5, min_drop_count=20)
        is None
    )


def test_safety_valve_holds_at_exactly_min_drop_count() -> None:
    plan, snapshot = drops_plan(20)
    assert safety_valve(
        drops_to_zero(plan, snapshot), 20, max_drop_fraction=0.5, min_drop_count=20
    ) == Hold(20, 20, 1.0)


def test_push_to_zero_from_zero_or_unknown_is_not_a_drop() -> None:
    plan = [push(1, SHOP_A, 0), push(2, SHOP_A, 0), push(3, SHOP_A, 0)]
    snapshot = {(item(1), SHOP_A): SnapshotEntry(0), (item(2), SHOP_A): SnapshotEntry(None)}
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 3, max_drop_fraction=0.0, min_drop_count=1)
        is None
    )


def test_push_to_a_positive_value_is_not_a_drop() -> None:
    plan = [push(1, SHOP_A, 1, change_from=9)]
    snapshot = {(item(1), SHOP_A): SnapshotEntry(9)}
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 1, max_drop_fraction=0.0, min_drop_count=1)
        is None
    )


def test_in_flight_pair_with_positive_last_value_counts_as_a_drop() -> None:
    plan = [push(1, SHOP_A, 0)]
    snapshot = {(item(1), SHOP_A): SnapshotEntry(7, in_flight=True)}
    assert safety_valve(
        drops_to_zero(plan, snapshot), 1, max_drop_fraction=0.5, min_drop_count=1
    ) == Hold(1, 1, 1.0)


@pytest.mark.parametrize("mapped", [0, -5])
def test_safety_valve_never_holds_without_mapped_levels(mapped: int) -> None:
    plan, snapshot = drops_plan(30)
    assert (
        safety_valve(drops_to_zero(plan, snapshot), mapped, max_drop_fraction=0.5, min_drop_count=1)
        is None
    )


def test_safety_valve_ignores_rises_when_counting_drops() -> None:
    plan, snapshot = drops_plan(10)
    plan += [push(n, SHOP_C, 5) for n in range(100)]
    assert (
        safety_valve(drops_to_zero(plan, snapshot), 20, max_drop_fraction=0.5, min_drop_count=10)
        is None
    )
