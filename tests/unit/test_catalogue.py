"""The in-memory Katana catalogue: one resolved record per variant, kept up to date by merges."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from daemon.katana.models import Catalogue, KatanaItem, KatanaVariantRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(vid: int, *, product: int | None = 1, material: int | None = None) -> KatanaVariantRow:
    return KatanaVariantRow(vid, f"SKU-{vid}", product, material, T0, T0 + timedelta(days=1))


def product(pid: int, *, kit: bool = False, archived: bool = False) -> KatanaItem:
    return KatanaItem(pid, "product", is_auto_assembly=kit, archived=archived, updated_at=T0)


def test_a_variant_takes_kit_and_retired_from_its_product() -> None:
    catalogue = Catalogue()
    catalogue.merge([row(1), row(2, product=2)], [product(1, kit=True), product(2, archived=True)])

    assert catalogue.variants[1].is_kit
    assert not catalogue.variants[1].retired
    assert catalogue.variants[2].retired
    assert not catalogue.variants[2].deleted


def test_archiving_a_product_later_retires_the_variants_already_known() -> None:
    catalogue = Catalogue()
    catalogue.merge([row(1), row(2, product=2)], [product(1), product(2)])

    catalogue.merge(items=[product(1, archived=True)])

    assert catalogue.variants[1].retired
    assert not catalogue.variants[2].retired
    assert catalogue.variants_of({("product", 1)}) == [1]


def test_a_deleted_variant_stays_retired_when_its_product_is_restored() -> None:
    catalogue = Catalogue()
    catalogue.merge([replace(row(1), deleted_at=T0)], [product(1, archived=True)])

    catalogue.merge(items=[product(1)])

    assert catalogue.variants[1].retired
    assert catalogue.variants[1].deleted


def test_a_material_variant_is_never_a_kit() -> None:
    catalogue = Catalogue()
    catalogue.merge(
        [row(1, product=None, material=1)],
        [KatanaItem(1, "material", is_auto_assembly=False, archived=False, updated_at=T0)],
    )

    assert not catalogue.variants[1].is_kit
    assert not catalogue.variants[1].retired


def test_a_re_read_row_is_held_even_with_a_newer_updated_at() -> None:
    # The cursor overlap re-reads rows: only a change the rules can see counts as a change.
    catalogue = Catalogue()
    catalogue.merge([row(1)], [product(1)])

    assert catalogue.holds(replace(row(1), updated_at=T0 + timedelta(days=9)))
    assert not catalogue.holds(replace(row(1), sku="SKU-NEW"))
    assert not catalogue.holds(replace(row(1), deleted_at=T0))
    assert not catalogue.holds(row(2))


def test_a_re_read_product_is_held_unless_a_flag_changed() -> None:
    catalogue = Catalogue()
    catalogue.merge(items=[product(1, kit=True)])

    assert catalogue.holds_item(replace(product(1, kit=True), updated_at=T0 + timedelta(days=3)))
    assert not catalogue.holds_item(product(1, kit=True, archived=True))
    assert not catalogue.holds_item(product(1))
    assert not catalogue.holds_item(product(2, kit=True))
