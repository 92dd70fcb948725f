"""ShopifyVariant keeps standard gids as numbers: every id must still read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.domain.models import KatanaVariant, ShopifyVariant

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


def test_domain_values_are_immutable_so_their_hash_never_changes() -> None:
    shopify = ShopifyVariant(
        "gid://shopify/ProductVariant/1", "A", "gid://shopify/InventoryItem/2", True
    )
    katana = KatanaVariant(1, "A", datetime(2026, 1, 1, tzinfo=UTC), product_id=3, is_kit=True)
    for value, field in ((shopify, "sku"), (shopify, "tracked"), (katana, "sku"), (katana, "id")):
        before = hash(value)
        with pytest.raises(AttributeError, match="immutable"):
            setattr(value, field, "changed")
        with pytest.raises(AttributeError, match="immutable"):
            delattr(value, field)
        assert hash(value) == before
    assert katana.is_kit
    assert not katana.retired
