"""The mapping table and location resolution (PRODUCT.md §1): one test per rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.mapping import (
    LocationError,
    MappingTable,
    build_mapping,
    resolve_locations,
)
from daemon.domain.models import KatanaVariant, ShopifyVariant

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def kv(
    variant_id: int,
    sku: str | None,
    *,
    day: int = 0,
    retired: bool = False,
    is_kit: bool = False,
) -> KatanaVariant:
    return KatanaVariant(
        id=variant_id,
        sku=sku,
        created_at=T0 + timedelta(days=day),
        product_id=1,
        retired=retired,
        is_kit=is_kit,
    )


def gid(n: int) -> str:
    return f"gid://shopify/ProductVariant/{n}"


def sv(n: int, sku: str | None, *, tracked: bool = True) -> ShopifyVariant:
    return ShopifyVariant(
        id=gid(n), sku=sku, inventory_item_id=f"gid://shopify/InventoryItem/{n}", tracked=tracked
    )


def build(
    katana: Sequence[KatanaVariant],
    shopify: Sequence[ShopifyVariant],
    variant_map: Mapping[int, str] | None = None,
) -> MappingTable:
    return build_mapping(katana, shopify, variant_map or {})


def target_ids(table: MappingTable, katana_id: int) -> list[str]:
    return [s.id for s in table.targets.get(katana_id, ())]


# --- SKU matching ---------------------------------------------------------------------------


def test_katana_variant_maps_to_shopify_variant_with_same_sku() -> None:
    table = build([kv(1, "A")], [sv(10, "A"), sv(11, "B")])
    assert target_ids(table, 1) == [gid(10)]
    assert table.unmapped_katana == frozenset()


def test_sku_match_is_case_sensitive() -> None:
    table = build([kv(1, "abc")], [sv(10, "ABC")])
    assert table.targets == {}
    assert table.unmapped_katana == {1}


def test_sku_match_ignores_surrounding_whitespace() -> None:
    table = build([kv(1, "  A-1\t")], [sv(10, "A-1 ")])
    assert target_ids(table, 1) == [gid(10)]


def test_inner_whitespace_in_sku_is_significant() -> None:
    table = build([kv(1, "A 1")], [sv(10, "A1")])
    assert table.targets == {}


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_empty_or_whitespace_sku_is_no_sku_and_matches_nothing(blank: str | None) -> None:
    table = build([kv(1, blank)], [sv(10, blank), sv(11, "")])
    assert table.targets == {}
    assert table.unmapped_katana == {1}
    assert table.duplicate_skus_shopify == frozenset()


def test_several_shopify_variants_sharing_a_sku_all_receive_the_level() -> None:
    table = build([kv(1, "A")], [sv(10, "A"), sv(11, "A"), sv(12, "A")])
    assert target_ids(table, 1) == [gid(10), gid(11), gid(12)]
    assert table.duplicate_skus_shopify == {"A"}


def test_most_recently_created_katana_variant_wins_a_shared_sku() -> None:
    table = build([kv(1, "A", day=5), kv(2, "A", day=9), kv(3, "A", day=1)], [sv(10, "A")])
    assert target_ids(table, 2) == [gid(10)]
    assert table.shadowed == {1: 2, 3: 2}
    assert table.duplicate_skus_katana == {"A"}


def test_created_at_tie_is_broken_by_higher_id() -> None:
    table = build([kv(7, "A", day=3), kv(4, "A", day=3)], [sv(10, "A")])
    assert target_ids(table, 7) == [gid(10)]
    assert table.shadowed == {4: 7}


def test_shared_sku_after_whitespace_normalisation_counts_as_duplicate() -> None:
    table = build([kv(1, "A", day=1), kv(2, " A ", day=2)], [sv(10, "A")])
    assert table.shadowed == {1: 2}
    assert table.duplicate_skus_katana == {"A"}


def test_shadowed_variants_are_unmapped() -> None:
    table = build([kv(1, "A", day=1), kv(2, "A", day=2)], [sv(10, "A")])
    assert table.unmapped_katana == {1}


def test_retired_katana_variant_never_syncs() -> None:
    table = build([kv(1, "A", retired=True)], [sv(10, "A")])
    assert table.targets == {}
    assert table.unmapped_katana == frozenset()  # only live variants are "unmapped"


def test_retired_katana_variant_never_wins_a_sku() -> None:
    table = build([kv(1, "A", day=1), kv(2, "A", day=9, retired=True)], [sv(10, "A")])
    assert target_ids(table, 1) == [gid(10)]
    assert table.shadowed == {}
    assert table.duplicate_skus_katana == frozenset()


def test_katana_variant_without_sku_does_not_sync_without_map_entry() -> None:
    table = build([kv(1, None)], [sv(10, None)])
    assert table.targets == {}
    assert table.unmapped_katana == {1}


def test_katana_variant_with_no_matching_shopify_sku_is_unmapped() -> None:
    table = build([kv(1, "A"), kv(2, "B")], [sv(10, "A")])
    assert table.unmapped_katana == {2}


# --- explicit variant map -------------------------------------------------------------------


def test_katana_variant_without_sku_syncs_through_explicit_map_entry() -> None:
    table = build([kv(1, None)], [sv(10, None)], {1: gid(10)})
    assert target_ids(table, 1) == [gid(10)]
    assert table.unmapped_katana == frozenset()


def test_explicit_entry_is_the_only_mapping_of_its_katana_variant() -> None:
    table = build([kv(1, "A")], [sv(10, "A"), sv(11, "other")], {1: gid(11)})
    assert target_ids(table, 1) == [gid(11)]


def test_explicitly_mapped_shopify_variant_is_fed_by_no_other_katana_variant() -> None:
    table = build([kv(1, None), kv(2, "A")], [sv(10, "A"), sv(11, "A")], {1: gid(10)})
    assert target_ids(table, 1) == [gid(10)]
    assert target_ids(table, 2) == [gid(11)]


def test_explicit_entry_wins_over_sku_match_even_from_a_newer_variant() -> None:
    table = build([kv(1, None, day=1), kv(2, "A", day=9)], [sv(10, "A")], {1: gid(10)})
    assert target_ids(table, 1) == [gid(10)]
    assert 2 not in table.targets
    assert table.unmapped_katana == {2}


def test_explicitly_mapped_variant_leaves_its_sku_to_the_other_katana_variants() -> None:
    # Variant 2 is newer but mapped explicitly elsewhere: its SKU matches are dropped, so the
    # older variant 1 is the SKU's source and is not shadowed by it.
    table = build([kv(1, "A", day=1), kv(2, "A", day=9)], [sv(10, "A"), sv(11, "X")], {2: gid(11)})
    assert target_ids(table, 1) == [gid(10)]
    assert target_ids(table, 2) == [gid(11)]
    assert table.shadowed == {}
    assert table.duplicate_skus_katana == {"A"}


def test_two_map_entries_for_one_shopify_variant_follow_the_newest_wins_rule() -> None:
    table = build(
        [kv(1, None, day=1), kv(2, None, day=2)], [sv(10, None)], {1: gid(10), 2: gid(10)}
    )
    assert target_ids(table, 2) == [gid(10)]
    assert table.shadowed == {1: 2}
    assert table.unmapped_katana == {1}


def test_map_entry_naming_unknown_katana_variant_is_reported() -> None:
    table = build([kv(1, "A")], [sv(10, "A")], {99: gid(10)})
    assert table.unknown_map_entries == ((99, gid(10)),)
    # The unknown entry claims nothing: the SKU match still feeds the Shopify variant.
    assert target_ids(table, 1) == [gid(10)]


def test_map_entry_naming_unknown_shopify_variant_is_reported_and_maps_nothing() -> None:
    table = build([kv(1, "A")], [sv(10, "A")], {1: gid(404)})
    assert table.unknown_map_entries == ((1, gid(404)),)
    # The merchant pointed variant 1 elsewhere: no fallback to a SKU guess.
    assert table.targets == {}
    assert table.unmapped_katana == {1}


def test_map_entry_of_retired_katana_variant_is_inert() -> None:
    table = build([kv(1, None, retired=True), kv(2, "A")], [sv(10, "A")], {1: gid(10)})
    assert table.unknown_map_entries == ()
    assert 1 not in table.targets
    assert target_ids(table, 2) == [gid(10)]


# --- tracking -------------------------------------------------------------------------------


def test_untracked_shopify_variant_is_excluded_from_targets_and_listed() -> None:
    table = build([kv(1, "A")], [sv(10, "A"), sv(11, "A", tracked=False)])
    assert target_ids(table, 1) == [gid(10)]
    assert [s.id for s in table.untracked] == [gid(11)]


def test_katana_variant_whose_only_targets_are_untracked_is_unmapped() -> None:
    table = build([kv(1, "A")], [sv(10, "A", tracked=False)])
    assert table.targets == {}
    assert table.unmapped_katana == {1}
    assert [s.id for s in table.untracked] == [gid(10)]


def test_untracked_shopify_variant_matching_nothing_is_not_listed() -> None:
    table = build([kv(1, "A")], [sv(10, "A"), sv(11, "Z", tracked=False)])
    assert table.untracked == ()


def test_untracked_explicitly_mapped_shopify_variant_is_listed() -> None:
    table = build([kv(1, None)], [sv(10, None, tracked=False)], {1: gid(10)})
    assert table.targets == {}
    assert [s.id for s in table.untracked] == [gid(10)]


# --- problems -------------------------------------------------------------------------------


def test_problems_report_shadowed_untracked_and_unknown_map_entries() -> None:
    table = build(
        [kv(1, "A", day=1), kv(2, "A", day=2), kv(3, "B")],
        [sv(10, "A"), sv(11, "B", tracked=False)],
        {3: gid(11), 77: gid(10)},
    )
    problems = {(p.kind, p.subject): p.detail for p in table.problems()}
    assert set(problems) == {
        ("shadowed_sku", "katana_variant:1"),
        ("untracked", gid(11)),
        ("unknown_map_entry", "katana_variant:77"),
    }
    assert "Katana variant 2" in problems[("shadowed_sku", "katana_variant:1")]
    assert "not track" in problems[("untracked", gid(11))]
    assert (
        "Katana variant 77 does not exist" in problems[("unknown_map_entry", "katana_variant:77")]
    )


def test_unknown_shopify_side_of_map_entry_is_named_in_the_problem() -> None:
    table = build([kv(1, "A")], [], {1: gid(404)})
    [problem] = table.problems()
    assert problem.kind == "unknown_map_entry"
    assert f"Shopify variant {gid(404)} is not in the shop" in problem.detail


def test_clean_mapping_has_no_problems() -> None:
    assert build([kv(1, "A")], [sv(10, "A")]).problems() == []


# --- locations ------------------------------------------------------------------------------

KATANA_LOCATIONS = {1: "Main warehouse", 2: "Outlet", 12: "Store 12", 5: "12"}
SHOP_1 = "gid://shopify/Location/1"
SHOP_2 = "gid://shopify/Location/2"


def test_integer_location_reference_is_a_katana_id() -> None:
    assert resolve_locations([(1, [SHOP_1])], KATANA_LOCATIONS) == {1: (SHOP_1,)}


def test_string_location_reference_is_a_name_even_if_it_looks_like_a_number() -> None:
    assert resolve_locations([("12", [SHOP_1])], KATANA_LOCATIONS) == {5: (SHOP_1,)}
    assert resolve_locations([(12, [SHOP_1])], KATANA_LOCATIONS) == {12: (SHOP_1,)}


def test_one_katana_location_may_feed_many_shopify_locations() -> None:
    resolved = resolve_locations([("Main warehouse", [SHOP_1, SHOP_2])], KATANA_LOCATIONS)
    assert resolved == {1: (SHOP_1, SHOP_2)}


def test_unknown_location_name_raises_listing_known_names() -> None:
    with pytest.raises(LocationError, match="'Warehouse'") as info:
        resolve_locations([("Warehouse", [SHOP_1])], KATANA_LOCATIONS)
    assert "'Main warehouse' (id 1)" in str(info.value)
    assert "'Outlet' (id 2)" in str(info.value)


def test_unknown_location_id_raises() -> None:
    with pytest.raises(LocationError, match="id 99 does not exist"):
        resolve_locations([(99, [SHOP_1])], KATANA_LOCATIONS)


def test_boolean_location_reference_is_rejected() -> None:
    with pytest.raises(LocationError, match="True"):
        resolve_locations([(True, [SHOP_1])], KATANA_LOCATIONS)


def test_ambiguous_location_name_asks_for_the_id() -> None:
    with pytest.raises(LocationError, match="ambiguous"):
        resolve_locations([("Dup", [SHOP_1])], {3: "Dup", 4: "Dup"})


def test_shopify_location_fed_by_two_katana_locations_is_rejected_naming_both() -> None:
    with pytest.raises(LocationError) as info:
        resolve_locations([(1, [SHOP_1]), ("Outlet", [SHOP_2, SHOP_1])], KATANA_LOCATIONS)
    message = str(info.value)
    assert SHOP_1 in message
    assert "'Main warehouse' (id 1)" in message
    assert "'Outlet' (id 2)" in message


def test_every_location_error_is_reported_at_once() -> None:
    with pytest.raises(LocationError) as info:
        resolve_locations([("Nowhere", [SHOP_1]), (404, [SHOP_2])], KATANA_LOCATIONS)
    assert "'Nowhere'" in str(info.value)
    assert "404" in str(info.value)


def test_duplicate_shopify_location_within_one_entry_is_collapsed() -> None:
    resolved = resolve_locations([(1, [SHOP_1, SHOP_2, SHOP_1])], KATANA_LOCATIONS)
    assert resolved == {1: (SHOP_1, SHOP_2)}


def test_same_katana_location_listed_twice_is_merged() -> None:
    resolved = resolve_locations([(1, [SHOP_1]), ("Main warehouse", [SHOP_2])], KATANA_LOCATIONS)
    assert resolved == {1: (SHOP_1, SHOP_2)}


def test_katana_locations_not_in_config_are_ignored() -> None:
    resolved = resolve_locations([("Outlet", [SHOP_1])], KATANA_LOCATIONS)
    assert set(resolved) == {2}


def test_unknown_location_with_no_katana_locations_says_none_are_known() -> None:
    with pytest.raises(LocationError, match=r"known locations: \(none\)"):
        resolve_locations([("Main warehouse", [SHOP_1])], {})
