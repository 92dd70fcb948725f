"""The Katana catalogue cache, so a restart does not re-read 100k variants at 60 requests/min."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

from daemon.katana.models import BomRow, Catalogue, ItemKind, KatanaItem, KatanaVariantRow
from daemon.store.base import StoreBase, _from_iso, _iso, _maybe_from_iso, _maybe_iso

_ITEM_KINDS: Final[dict[str, ItemKind]] = {"product": "product", "material": "material"}


def _variant_row(row: Sequence[Any]) -> KatanaVariantRow:
    vid, sku, product_id, material_id, created_at, updated_at, deleted_at = row
    return KatanaVariantRow(
        id=vid,
        sku=sku,
        product_id=product_id,
        material_id=material_id,
        created_at=_from_iso(created_at),
        updated_at=_from_iso(updated_at),
        deleted_at=_maybe_from_iso(deleted_at),
    )


def _item(row: Sequence[Any]) -> KatanaItem:
    kind, iid, is_auto_assembly, archived, updated_at, category = row
    return KatanaItem(
        id=iid,
        kind=_ITEM_KINDS[kind],
        is_auto_assembly=bool(is_auto_assembly),
        archived=bool(archived),
        updated_at=_from_iso(updated_at),
        category=None if category is None else sys.intern(category),
    )


def _bom_row(row: Sequence[Any]) -> BomRow:
    bid, product_variant_id, ingredient_variant_id, quantity, updated_at = row
    return BomRow(
        id=bid,
        product_variant_id=product_variant_id,
        ingredient_variant_id=ingredient_variant_id,
        quantity=None if quantity is None else Decimal(quantity),
        updated_at=_maybe_from_iso(updated_at),
    )


class CatalogueStore(StoreBase):
    """Katana's variants, items and BOM rows as last read."""

    # -- Katana catalogue cache --------------------------------------------------------------

    async def save_catalogue(
        self,
        variants: Iterable[KatanaVariantRow],
        items: Iterable[KatanaItem],
        bom: Iterable[BomRow],
    ) -> None:
        """Upsert catalogue rows read from Katana; deleted BOM rows are removed."""
        variants, items = list(variants), list(items)
        # The parameters are generated as SQLite takes them: a cold start writes 100,000s of
        # rows, and their ISO strings, built all at once, would add tens of MiB to the peak.
        variant_rows = (
            (
                v.id,
                v.sku,
                v.product_id,
                v.material_id,
                _iso(v.created_at),
                _iso(v.updated_at),
                _maybe_iso(v.deleted_at),
            )
            for v in variants
        )
        item_rows = (
            (
                i.kind,
                i.id,
                int(i.is_auto_assembly),
                int(i.archived),
                _iso(i.updated_at),
                i.category,
            )
            for i in items
        )
        final_bom = {b.id: b for b in bom}  # rows arrive in order: the last one for an id wins
        bom_rows = [
            (
                b.id,
                b.product_variant_id,
                b.ingredient_variant_id,
                None if b.quantity is None else str(b.quantity),
                _maybe_iso(b.updated_at),
            )
            for b in final_bom.values()
            if not b.deleted
        ]
        bom_deleted = [(b.id,) for b in final_bom.values() if b.deleted]
        if not (variants or items or final_bom):
            return
        async with self._write() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO catalogue_variants (id, sku, product_id, material_id, "
                "created_at, updated_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                variant_rows,
            )
            await db.executemany(
                "INSERT OR REPLACE INTO catalogue_items (kind, id, is_auto_assembly, archived, "
                "updated_at, category) VALUES (?, ?, ?, ?, ?, ?)",
                item_rows,
            )
            await db.executemany(
                "INSERT OR REPLACE INTO catalogue_bom (id, product_variant_id, "
                "ingredient_variant_id, quantity, updated_at) VALUES (?, ?, ?, ?, ?)",
                bom_rows,
            )
            await db.executemany("DELETE FROM catalogue_bom WHERE id = ?", bom_deleted)

    async def catalogue(self) -> Catalogue:
        """The cached Katana catalogue."""
        async with self._lock:
            variant_rows = await self._db.execute_fetchall(
                "SELECT id, sku, product_id, material_id, created_at, updated_at, deleted_at "
                "FROM catalogue_variants"
            )
            item_rows = await self._db.execute_fetchall(
                "SELECT kind, id, is_auto_assembly, archived, updated_at, category "
                "FROM catalogue_items"
            )
            bom_rows = await self._db.execute_fetchall(
                "SELECT id, product_variant_id, ingredient_variant_id, quantity, updated_at "
                "FROM catalogue_bom"
            )
        catalogue = Catalogue()
        catalogue.merge(
            (_variant_row(row) for row in variant_rows),
            (_item(row) for row in item_rows),
            (_bom_row(row) for row in bom_rows),
        )
        return catalogue
