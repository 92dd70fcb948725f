"""Merchant controls (issue 18): pooled locations, pack sizes, per-variant buffers, sync filters.

One test per rule, pure code only. The pool rule: the formula is applied once, to the quantities
summed over the pool's Katana locations (daemon/domain/controls.py says why).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.domain.controls import (
    Quantities,
    SyncFilter,
    TargetRule,
    apply_filter,
    location_groups,
    pooled_quantities,
    rule_policies,
)
from daemon.domain.mapping import MappingTable, build_mapping
from daemon.domain.models import DesiredLevel, KatanaVariant, Problem, ShopifyVariant, StockRow
from daemon.domain.plan import desired_levels
from daemon.domain.quantity import (
    MAX_SHOPIFY_QUANTITY,
    QuantityPolicy,
    QuantityTooHigh,
    available,
    sum_quantities,
)
from daemon.domain.stock import StockTable

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SHOP_A = "gid://shopify/Location/1"
SHOP_B = "gid://shopify/Location/2"
WAREHOUSE, OVERFLOW, OUTLET = 100, 200, 300
DEFAULT = QuantityPolicy()


def item(n: int) -> str:
    return f"gid://shopify/InventoryItem/{n}"


def gid(n: int) -> str:
    return f"gid://shopify/ProductVariant/{n}"


def kv(variant_id: int, sku: str | None, *, is_kit: bool = False) -> KatanaVariant:
    return KatanaVariant(id=variant_id, sku=sku, created_at=T0, product_id=1, is_kit=is_kit)


def sv(n: int, sku: str | None) -> ShopifyVariant:
    return ShopifyVariant(id=gid(n), sku=sku, inventory_item_id=item(n), tracked=True)


def row(
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


def desired(
    rows: Sequence[StockRow],
    katana: Sequence[KatanaVariant],
    shopify: Sequence[ShopifyVariant],
    locations: Mapping[int, tuple[str, ...]],
    policy: QuantityPolicy = DEFAULT,
    *,
    variant_map: Mapping[int, str | tuple[str, ...]] | None = None,
    rules: Mapping[str, TargetRule] | None = None,
    table: StockTable | None = None,
) -> tuple[list[DesiredLevel], list[Problem]]:
    mapping = build_mapping(katana, shopify, variant_map or {})
    policies = rule_policies(mapping.targets.values(), rules or {}, policy)
    return desired_levels(
        table if table is not None else StockTable(rows),
        {k.id: k for k in katana},
        mapping,
        locations,
        policy,
        policies=policies,
    )


def quantities(levels: Sequence[DesiredLevel]) -> dict[tuple[str, str], int]:
    return {(d.inventory_item_id, d.location_id): d.quantity for d in levels}


POOL = {WAREHOUSE: (SHOP_A,), OVERFLOW: (SHOP_A,)}


# --- pooled locations ---------------------------------------------------------------------------


def test_pooled_location_is_fed_by_the_sum_of_its_katana_locations() -> None:
    levels, problems = desired(
        [row(1, WAREHOUSE, "7"), row(1, OVERFLOW, "5", "2")], [kv(1, "A")], [sv(10, "A")], POOL
    )
    assert problems == []
    assert quantities(levels) == {(item(10), SHOP_A): 10}


def test_pool_formula_applies_to_summed_quantities_so_fractions_add_up() -> None:
    # Per location then summed would be floor(0.5) + floor(0.5) = 0.
    levels, _ = desired(
        [row(1, WAREHOUSE, "0.5"), row(1, OVERFLOW, "0.5")], [kv(1, "A")], [sv(10, "A")], POOL
    )
    assert quantities(levels) == {(item(10), SHOP_A): 1}


def test_pool_member_shortfall_lowers_the_pool_instead_of_being_clamped_away() -> None:
    # Per location then summed would be 10 + max(0, -4) = 10: promising the 4 units the
    # overflow's orders will take from the warehouse.
    levels, _ = desired(
        [row(1, WAREHOUSE, "10"), row(1, OVERFLOW, "0", "4")], [kv(1, "A")], [sv(10, "A")], POOL
    )
    assert quantities(levels) == {(item(10), SHOP_A): 6}


def test_pool_below_zero_is_pushed_as_zero_unless_allow_negative() -> None:
    rows = [row(1, WAREHOUSE, "0.5"), row(1, OVERFLOW, "0.5", "2")]
    katana, shopify = [kv(1, "A")], [sv(10, "A")]
    levels, _ = desired(rows, katana, shopify, POOL)
    assert quantities(levels) == {(item(10), SHOP_A): 0}
    negative, _ = desired(rows, katana, shopify, POOL, QuantityPolicy(allow_negative=True))
    # 1 - 2 = -1; per location then summed would be floor(0.5) + floor(-1.5) = -2.
    assert quantities(negative) == {(item(10), SHOP_A): -1}


def test_pool_buffer_is_held_back_once_per_shopify_location() -> None:
    levels, _ = desired(
        [row(1, WAREHOUSE, "5"), row(1, OVERFLOW, "5")],
        [kv(1, "A")],
        [sv(10, "A")],
        POOL,
        QuantityPolicy(buffer=3),
    )
    assert quantities(levels) == {(item(10), SHOP_A): 7}


def test_pooled_kit_adds_the_potential_of_every_pool_location() -> None:
    levels, _ = desired(
        [row(1, WAREHOUSE, "1", "0", "2"), row(1, OVERFLOW, "0", "1", "3")],
        [kv(1, "KIT", is_kit=True)],
        [sv(10, "KIT")],
        POOL,
    )
    assert quantities(levels) == {(item(10), SHOP_A): 5}


def test_pool_member_without_a_stock_row_counts_as_zero_stock() -> None:
    levels, problems = desired([row(1, WAREHOUSE, "4")], [kv(1, "A")], [sv(10, "A")], POOL)
    assert problems == []
    assert quantities(levels) == {(item(10), SHOP_A): 4}


def test_unreadable_row_at_a_pool_member_makes_the_pooled_level_unreadable_never_partial() -> None:
    table = StockTable([row(1, WAREHOUSE, "4")])
    table.mark_unreadable(1)  # its overflow row could not be read
    levels, problems = desired([], [kv(1, "A")], [sv(10, "A")], POOL, table=table)
    assert levels == []
    assert [(p.kind, p.katana_variant_id) for p in problems] == [("stock_unreadable", 1)]


def test_pool_member_missing_after_a_row_was_dropped_unread_is_unknown_not_zero() -> None:
    table = StockTable([row(1, WAREHOUSE, "4")])
    table.mark_unsure(None)  # a row without a readable variant id: it may be the overflow's
    levels, problems = desired([], [kv(1, "A")], [sv(10, "A")], POOL, table=table)
    assert levels == []
    assert [p.kind for p in problems] == ["stock_unreadable"]


def test_pool_sum_above_shopify_maximum_is_a_problem_even_when_each_location_is_not() -> None:
    half = str(MAX_SHOPIFY_QUANTITY // 2 + 1)
    levels, problems = desired(
        [row(1, WAREHOUSE, half), row(1, OVERFLOW, half)], [kv(1, "A")], [sv(10, "A")], POOL
    )
    assert levels == []
    assert [p.kind for p in problems] == ["quantity_too_high"]
    assert "Katana locations 100 + 200 (pooled)" in problems[0].detail


def test_a_katana_location_may_feed_its_own_shopify_location_and_a_pool() -> None:
    locations = {WAREHOUSE: (SHOP_A, SHOP_B), OVERFLOW: (SHOP_A,)}
    levels, _ = desired(
        [row(1, WAREHOUSE, "3"), row(1, OVERFLOW, "4")], [kv(1, "A")], [sv(10, "A")], locations
    )
    assert quantities(levels) == {(item(10), SHOP_A): 7, (item(10), SHOP_B): 3}


def test_location_groups_put_each_shopify_location_with_the_katana_locations_feeding_it() -> None:
    groups = location_groups({WAREHOUSE: (SHOP_A, SHOP_B), OVERFLOW: (SHOP_A,), OUTLET: ()})
    assert groups == [((WAREHOUSE,), (SHOP_B,)), ((WAREHOUSE, OVERFLOW), (SHOP_A,))]


def test_without_pools_each_katana_location_keeps_its_shopify_locations_in_order() -> None:
    groups = location_groups({OVERFLOW: (SHOP_B,), WAREHOUSE: (SHOP_B + "0", SHOP_A)})
    assert groups == [((WAREHOUSE,), (SHOP_B + "0", SHOP_A)), ((OVERFLOW,), (SHOP_B,))]


def test_pooled_sum_is_exact_and_an_int_when_every_quantity_is_whole() -> None:
    at: dict[int, Quantities] = {WAREHOUSE: (3, 1, None), OVERFLOW: (Decimal("0.25"), 0, 4)}
    assert pooled_quantities(at, [WAREHOUSE, OVERFLOW], is_kit=False) == (
        Decimal("3.25"),
        1,
        0,
    )
    assert sum_quantities([1, 2, 3], field="in_stock") == 6
    assert type(sum_quantities([Decimal("0.5"), Decimal("0.5")], field="x")) is int


# --- pack sizes ---------------------------------------------------------------------------------


def test_pack_size_shows_whole_packs_the_floor_of_available_units_over_units_per_pack() -> None:
    assert available(13, 0, 0, QuantityPolicy(units_per_pack=6)) == 2
    assert available(12, 0, 0, QuantityPolicy(units_per_pack=6)) == 2
    assert available(Decimal("11.9"), 0, 0, QuantityPolicy(units_per_pack=6)) == 1


def test_pack_size_larger_than_the_stock_shows_zero_packs() -> None:
    assert available(5, 0, 0, QuantityPolicy(units_per_pack=12)) == 0


def test_pack_size_applies_after_the_buffer_which_is_in_katana_units() -> None:
    assert available(20, 0, 0, QuantityPolicy(buffer=3, units_per_pack=6)) == 2


def test_pack_size_of_a_shortfall_with_allow_negative_is_a_whole_pack_short() -> None:
    assert available(0, 5, 0, QuantityPolicy(allow_negative=True, units_per_pack=6)) == -1
    assert available(0, 5, 0, QuantityPolicy(units_per_pack=6)) == 0


def test_pack_size_is_range_checked_on_the_packs_shopify_is_told() -> None:
    units = 2 * MAX_SHOPIFY_QUANTITY
    with pytest.raises(QuantityTooHigh):
        available(units, 0, 0, DEFAULT)
    assert available(units, 0, 0, QuantityPolicy(units_per_pack=12)) == units // 12


@given(
    st.decimals(min_value=-1000, max_value=1000, places=3, allow_nan=False),
    st.integers(min_value=1, max_value=50),
)
def test_pack_count_is_the_floor_of_exact_units_over_the_pack_size(units: Decimal, n: int) -> None:
    policy = QuantityPolicy(allow_negative=True, units_per_pack=n)
    assert available(units, 0, 0, policy) == math.floor(units / n)


def test_a_pack_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="units_per_pack"):
        QuantityPolicy(units_per_pack=0)
    with pytest.raises(ValueError, match="units_per_pack"):
        TargetRule(units_per_pack=0)


def test_single_six_pack_and_twelve_pack_are_fed_from_one_katana_variant() -> None:
    variant_map = {1: (gid(10), gid(16), gid(112))}
    rules = {gid(16): TargetRule(units_per_pack=6), gid(112): TargetRule(units_per_pack=12)}
    shopify = [sv(10, "CAN"), sv(16, "CAN-6"), sv(112, "CAN-12")]
    levels, problems = desired(
        [row(1, WAREHOUSE, "20")],
        [kv(1, "CAN")],
        shopify,
        {WAREHOUSE: (SHOP_A,)},
        variant_map=variant_map,
        rules=rules,
    )
    assert problems == []
    assert quantities(levels) == {
        (item(10), SHOP_A): 20,
        (item(16), SHOP_A): 3,
        (item(112), SHOP_A): 1,
    }


def test_map_rows_of_a_katana_variant_are_its_only_mapping() -> None:
    # The single "CAN" is not listed: the rows replace the SKU match, as one row always did.
    mapping = build_mapping([kv(1, "CAN")], [sv(10, "CAN"), sv(16, "CAN-6")], {1: (gid(16),)})
    assert [t.id for t in mapping.targets[1]] == [gid(16)]


def test_one_map_row_naming_a_missing_shopify_variant_leaves_the_others_mapped() -> None:
    mapping = build_mapping([kv(1, "CAN")], [sv(10, "CAN")], {1: (gid(10), gid(99))})
    assert [t.id for t in mapping.targets[1]] == [gid(10)]
    assert mapping.unknown_map_entries == ((1, gid(99)),)


# --- per-variant buffers ------------------------------------------------------------------------


def test_per_variant_buffer_overrides_the_connection_buffer() -> None:
    variant_map = {1: (gid(10),), 2: (gid(20),)}
    levels, _ = desired(
        [row(1, WAREHOUSE, "10"), row(2, WAREHOUSE, "10")],
        [kv(1, "A"), kv(2, "B")],
        [sv(10, "A"), sv(20, "B")],
        {WAREHOUSE: (SHOP_A,)},
        QuantityPolicy(buffer=5),
        variant_map=variant_map,
        rules={gid(10): TargetRule(buffer=1)},
    )
    assert quantities(levels) == {(item(10), SHOP_A): 9, (item(20), SHOP_A): 5}


def test_per_variant_buffer_of_zero_releases_the_connection_buffer() -> None:
    policy = TargetRule(buffer=0).policy(QuantityPolicy(buffer=5, allow_negative=True))
    assert policy == QuantityPolicy(buffer=0, allow_negative=True)


def test_pack_row_without_a_buffer_keeps_the_connection_buffer() -> None:
    policy = TargetRule(units_per_pack=6).policy(QuantityPolicy(buffer=5))
    assert policy == QuantityPolicy(buffer=5, units_per_pack=6)


def test_pooled_location_with_a_pack_size_and_a_buffer() -> None:
    # (9 + 8 - 1) units summed, buffer 4 held once, in 6-packs: floor(12 / 6) = 2.
    levels, _ = desired(
        [row(1, WAREHOUSE, "9"), row(1, OVERFLOW, "8", "1")],
        [kv(1, "CAN")],
        [sv(10, "CAN"), sv(16, "CAN-6")],
        POOL,
        QuantityPolicy(buffer=2),
        variant_map={1: (gid(10), gid(16))},
        rules={gid(16): TargetRule(units_per_pack=6, buffer=4)},
    )
    assert quantities(levels) == {(item(10), SHOP_A): 14, (item(16), SHOP_A): 2}


def test_a_pack_whose_count_is_out_of_range_fails_alone() -> None:
    units = str(MAX_SHOPIFY_QUANTITY * 3)
    levels, problems = desired(
        [row(1, WAREHOUSE, units)],
        [kv(1, "CAN")],
        [sv(10, "CAN"), sv(16, "CAN-6")],
        {WAREHOUSE: (SHOP_A,)},
        variant_map={1: (gid(10), gid(16))},
        rules={gid(16): TargetRule(units_per_pack=6)},
    )
    assert quantities(levels) == {(item(16), SHOP_A): MAX_SHOPIFY_QUANTITY // 2}
    assert [p.kind for p in problems] == ["quantity_too_high"]


# --- sync filters -------------------------------------------------------------------------------


def table_of(katana: Sequence[KatanaVariant], shopify: Sequence[ShopifyVariant]) -> MappingTable:
    return build_mapping(katana, shopify, {})


def test_include_skus_keeps_only_variants_whose_sku_matches_a_glob() -> None:
    katana = [kv(1, "ACME-1"), kv(2, "OTHER-1")]
    table = apply_filter(
        table_of(katana, [sv(10, "ACME-1"), sv(20, "OTHER-1")]),
        katana,
        SyncFilter(include_skus=("ACME-*",)),
    )
    assert set(table.targets) == {1}
    assert table.filtered == {2: "SKU 'OTHER-1' matches no include_skus pattern"}


def test_exclude_skus_leaves_matching_variants_out() -> None:
    katana = [kv(1, "ACME-1"), kv(2, "ACME-1-SAMPLE")]
    table = apply_filter(
        table_of(katana, [sv(10, "ACME-1"), sv(20, "ACME-1-SAMPLE")]),
        katana,
        SyncFilter(include_skus=("ACME-*",), exclude_skus=("*-SAMPLE",)),
    )
    assert set(table.targets) == {1}
    assert table.filtered == {2: "SKU 'ACME-1-SAMPLE' matches exclude_skus pattern '*-SAMPLE'"}


def test_sku_patterns_are_case_sensitive_fnmatch_globs() -> None:
    sync = SyncFilter(include_skus=("AB?-[0-9]*",))
    assert sync.excludes("ABC-1", None) is None
    assert sync.excludes("abc-1", None) is not None
    assert sync.excludes("ABC-X", None) is not None
    assert sync.excludes(" ABC-12 ", None) is None  # the SKU as matched: spaces ignored


def test_category_filters_read_the_product_or_material_category() -> None:
    katana = [
        KatanaVariant(id=1, sku="A", created_at=T0, product_id=1, category="Finished goods"),
        KatanaVariant(id=2, sku="B", created_at=T0, material_id=2, category="Raw materials"),
        KatanaVariant(id=3, sku="C", created_at=T0, product_id=3),
    ]
    table = apply_filter(
        table_of(katana, [sv(10, "A"), sv(20, "B"), sv(30, "C")]),
        katana,
        SyncFilter(exclude_categories=("Raw*",)),
    )
    assert set(table.targets) == {1, 3}
    assert table.filtered == {
        2: "category 'Raw materials' matches exclude_categories pattern 'Raw*'"
    }


def test_variant_without_a_category_is_left_out_by_include_categories() -> None:
    sync = SyncFilter(include_categories=("Finished goods",))
    assert sync.excludes("A", "Finished goods") is None
    assert sync.excludes("A", None) == "no category, and include_categories is set"
    assert sync.excludes("A", "Spare parts") is not None


def test_variant_without_a_sku_matches_only_a_pattern_matching_the_empty_sku() -> None:
    assert SyncFilter(include_skus=("ACME-*",)).excludes(None, None) is not None
    assert SyncFilter(include_skus=("*",)).excludes(None, None) is None
    assert SyncFilter(exclude_skus=("ACME-*",)).excludes(None, None) is None


def test_every_configured_filter_narrows() -> None:
    sync = SyncFilter(include_skus=("ACME-*",), include_categories=("Finished*",))
    assert sync.excludes("ACME-1", "Finished goods") is None
    assert sync.excludes("ACME-1", "Raw") is not None
    assert sync.excludes("OTHER", "Finished goods") is not None


def test_no_filter_keeps_the_table_as_it_is() -> None:
    katana = [kv(1, "A")]
    table = table_of(katana, [sv(10, "A")])
    assert apply_filter(table, katana, SyncFilter()) is table
    assert not SyncFilter().active


def test_a_filtered_variant_keeps_its_shopify_variants_which_no_other_variant_takes() -> None:
    # Variant 2 wins the SKU over 1; filtering 2 out leaves the Shopify variant unfed (as last
    # pushed), never fed by the shadowed variant 1 instead.
    older = KatanaVariant(id=1, sku="A", created_at=T0, product_id=1, category="Keep")
    newer = KatanaVariant(
        id=2, sku="A", created_at=datetime(2025, 2, 1, tzinfo=UTC), product_id=2, category="Drop"
    )
    table = apply_filter(
        table_of([older, newer], [sv(10, "A")]),
        [older, newer],
        SyncFilter(exclude_categories=("Drop",)),
    )
    assert dict(table.targets) == {}
    assert set(table.filtered) == {2}
    assert dict(table.shadowed) == {1: 2}


def test_a_filter_that_excludes_a_kit_ingredient_keeps_the_kit_and_its_potential() -> None:
    kit, ingredient = kv(1, "KIT", is_kit=True), kv(2, "PART")
    sync = SyncFilter(exclude_skus=("PART",))
    table = apply_filter(
        table_of([kit, ingredient], [sv(10, "KIT"), sv(20, "PART")]),
        [kit, ingredient],
        sync,
    )
    levels, problems = desired_levels(
        StockTable([row(1, WAREHOUSE, "0", "0", "4"), row(2, WAREHOUSE, "8")]),
        {1: kit, 2: ingredient},
        table,
        {WAREHOUSE: (SHOP_A,)},
        DEFAULT,
    )
    assert problems == []
    assert quantities(levels) == {(item(10), SHOP_A): 4}


def test_filter_reasons_name_the_first_rule_that_leaves_a_variant_out() -> None:
    sync = SyncFilter(exclude_skus=("X*",), exclude_categories=("C",), include_skus=("Y*",))
    assert sync.excludes("X1", "C") == "SKU 'X1' matches exclude_skus pattern 'X*'"
    assert sync.excludes("Z1", "C") == "category 'C' matches exclude_categories pattern 'C'"
    assert sync.describe() == "include_skus ['Y*']; exclude_skus ['X*']; exclude_categories ['C']"
