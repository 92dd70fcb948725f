"""ShopifyVariant keeps standard gids as numbers: every id must still read back exactly."""

from __future__ import annotations

import pytest

from daemon.domain.models import ShopifyVariant

ODD_IDS = [
    "gid://shopify/ProductVariant/007",  # a leading zero would be lost as a number
    "gid://shopify/ProductVariant/",
    "gid://shopify/ProductVariant/12?shop=x",
    "gid://shopify/ProductVariant/\u00b2",  # a Unicode digit int() would accept
    "gid://shopify/InventoryItem/5",  # the other kind of gid
    "42",
    "",
]


@pytest.mark.parametrize(
    "gid", ["gid://shopify/ProductVariant/44012345678901", "gid://shopify/ProductVariant/0"]
)
def test_a_standard_gid_reads_back_exactly(gid: str) -> None:
    item = gid.replace("ProductVariant", "InventoryItem")
    variant = ShopifyVariant(gid, "SKU", item, True)

    assert variant.id == gid
    assert variant.inventory_item_id == item


@pytest.mark.parametrize("gid", ODD_IDS)
def test_any_other_id_reads_back_exactly(gid: str) -> None:
    variant = ShopifyVariant(gid, None, gid, False)

    assert variant.id == gid
    assert variant.inventory_item_id == gid


def test_variants_are_equal_and_hash_alike_by_value() -> None:
    a = ShopifyVariant("gid://shopify/ProductVariant/1", "A", "gid://shopify/InventoryItem/1", True)
    same = ShopifyVariant(
        "gid://shopify/ProductVariant/1", "A", "gid://shopify/InventoryItem/1", True
    )
    untracked = ShopifyVariant(
        "gid://shopify/ProductVariant/1", "A", "gid://shopify/InventoryItem/1", False
    )

    assert a == same
    assert hash(a) == hash(same)
    assert a != untracked
    assert "gid://shopify/InventoryItem/1" in repr(a)
