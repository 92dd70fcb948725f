"""The catalogue of a simulated Katana account: locations, products, materials, variants, BOM.

Products and materials have separate id sequences, like Katana's. BOM rows (UUID ids) say how
much of an ingredient variant one unit of a product variant needs; a removed BOM row is gone
(Katana's `/bom_rows` keeps no deleted rows). Bulk methods are one event (an import).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from daemon.sim.katana.records import (
    ProductSpec,
    Quantity,
    _BomEntry,
    _decimal,
    _Item,
    _Location,
    _Table,
    _Variant,
)
from daemon.sim.katana.state import _Account, gc_paused

_BOM_NAMESPACE = uuid.UUID("6b1d5d0e-3c59-4e8e-9d1a-7a0c2f5b9e41")


class _Catalogue(_Account):
    """Catalogue events: what exists, under which SKUs, made of what."""

    def add_location(self, name: str, *, is_primary: bool | None = None) -> int:
        """Create a location; names are unique. The first one is primary unless told otherwise."""
        if any(loc.name == name for loc in self._locations.rows.values() if not loc.deleted_at):
            raise ValueError(f"a location named {name!r} already exists")
        at = self._tick()
        primary = not self._locations.rows if is_primary is None else is_primary
        location = _Location(
            id=self._next_id("location"),
            name=name,
            is_primary=primary,
            created_at=at,
            updated_at=at,
        )
        return self._locations.add(location).id

    def add_product(
        self,
        name: str,
        skus: Sequence[str | None] = (None,),
        *,
        is_auto_assembly: bool = False,
        category: str | None = None,
    ) -> list[int]:
        """Create a product with one variant per SKU (None = no SKU); returns the variant ids."""
        return self.add_products([ProductSpec(name, skus, is_auto_assembly, category)])[0]

    def add_products(self, specs: Sequence[ProductSpec]) -> list[list[int]]:
        """Create many products in one event (an import): same timestamp, variant ids each."""
        at = self._tick()
        with gc_paused():
            return [self._create_item("product", spec, at) for spec in specs]

    def add_material(
        self, name: str, skus: Sequence[str | None] = (None,), *, category: str | None = None
    ) -> list[int]:
        """Create a material with one variant per SKU; returns the variant ids."""
        return self.add_materials([ProductSpec(name, skus, category=category)])[0]

    def add_materials(self, specs: Sequence[ProductSpec]) -> list[list[int]]:
        """Create many materials in one event; variant ids each."""
        at = self._tick()
        with gc_paused():
            return [self._create_item("material", spec, at) for spec in specs]

    def _create_item(
        self, kind: Literal["product", "material"], spec: ProductSpec, at: datetime
    ) -> list[int]:
        if not spec.skus:
            raise ValueError(f"{kind} {spec.name!r} needs at least one variant")
        if kind == "material" and spec.is_auto_assembly:
            raise ValueError("materials cannot be auto-assembled")
        item = _Item(
            id=self._next_id(kind),
            kind=kind,
            name=spec.name,
            is_auto_assembly=spec.is_auto_assembly,
            category=spec.category,
            created_at=at,
            updated_at=at,
        )
        self._items_of(kind).add(item)
        for sku in spec.skus:
            variant = _Variant(
                id=self._next_id("variant"),
                sku=sku,
                product_id=item.id if kind == "product" else None,
                material_id=item.id if kind == "material" else None,
                created_at=at,
                updated_at=at,
            )
            self._variants.add(variant)
            item.variant_ids.append(variant.id)
        return list(item.variant_ids)

    def _items_of(self, kind: str) -> _Table[_Item]:
        return self._products if kind == "product" else self._materials

    def add_bom_row(
        self, kit_variant_id: int, ingredient_variant_id: int, quantity: Quantity
    ) -> str:
        """Add an ingredient to a product variant's recipe; returns the row's UUID."""
        return self.add_bom_rows([(kit_variant_id, ingredient_variant_id, quantity)])[0]

    def add_bom_rows(self, rows: Iterable[tuple[int, int, Quantity]]) -> list[str]:
        """Add many recipe rows in one event; their UUIDs."""
        at = self._tick()
        made: list[str] = []
        for kit_id, ingredient_id, quantity in rows:
            kit = self._variants.live(kit_id, "variant")
            self._variants.live(ingredient_id, "variant")
            amount = _decimal(quantity)
            if kit.product_id is None:
                raise ValueError(f"variant {kit_id} is a material: only products have recipes")
            if kit_id == ingredient_id:
                raise ValueError("a variant cannot be its own ingredient")
            if amount <= 0:
                raise ValueError(f"recipe quantity must be positive, got {amount}")
            row_id = self._next_id("bom_row")
            entry = _BomEntry(
                id=row_id,
                uuid=str(uuid.uuid5(_BOM_NAMESPACE, str(row_id))),
                product_item_id=kit.product_id,
                product_variant_id=kit_id,
                ingredient_variant_id=ingredient_id,
                quantity=amount,
                created_at=at,
                updated_at=at,
            )
            self._bom.add(entry)
            self._bom_by_uuid[entry.uuid] = entry
            self._bom_by_kit.setdefault(kit_id, {})[row_id] = entry
            self._kits_by_ingredient.setdefault(ingredient_id, Counter())[kit_id] += 1
            made.append(entry.uuid)
        return made

    def update_bom_row(self, row_uuid: str, quantity: Quantity) -> None:
        """Change how much of an ingredient a kit needs."""
        entry = self._bom_entry(row_uuid)
        amount = _decimal(quantity)
        if amount <= 0:
            raise ValueError(f"recipe quantity must be positive, got {amount}")
        entry.quantity = amount
        self._bom.touch(entry, self._tick())

    def delete_bom_row(self, row_uuid: str) -> None:
        """Remove an ingredient from a recipe: the row is gone (Katana's /bom_rows has no
        include_deleted and no deleted_at), and nothing else records that it went."""
        entry = self._bom_entry(row_uuid)
        self._tick()
        self._bom.remove(entry)
        del self._bom_by_uuid[row_uuid]
        self._bom_by_kit[entry.product_variant_id].pop(entry.id, None)
        kits = self._kits_by_ingredient[entry.ingredient_variant_id]
        kits[entry.product_variant_id] -= 1
        if kits[entry.product_variant_id] <= 0:
            del kits[entry.product_variant_id]

    def _bom_entry(self, row_uuid: str) -> _BomEntry:
        entry = self._bom_by_uuid.get(row_uuid)
        if entry is None:
            raise ValueError(f"no recipe row {row_uuid}")
        return entry

    def set_sku(self, variant_id: int, sku: str | None) -> None:
        """Edit a variant's SKU."""
        variant = self._variants.live(variant_id, "variant")
        variant.sku = sku
        self._variants.touch(variant, self._tick())

    def delete_variant(self, variant_id: int) -> None:
        """Soft-delete a variant: it leaves /inventory and shows in /variants?include_deleted."""
        variant = self._variants.live(variant_id, "variant")
        at = self._tick()
        variant.deleted_at = at
        self._variants.touch(variant, at)

    def set_category(
        self, kind: Literal["product", "material"], item_id: int, category: str | None
    ) -> None:
        """Edit a product's or material's category_name (None: no category)."""
        item = self._items_of(kind).live(item_id, kind)
        item.category = category
        self._items_of(kind).touch(item, self._tick())

    def archive_product(self, product_id: int) -> None:
        """Archive a product: its variants leave /inventory unless include_archived."""
        product = self._products.live(product_id, "product")
        at = self._tick()
        product.archived_at = at
        self._products.touch(product, at)
