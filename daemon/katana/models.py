"""Typed Katana rows, and the in-memory Katana catalogue the mapping is built from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from daemon.domain.models import KatanaVariant, Quantity

ItemKind = Literal["product", "material"]

# Delta sources polled by `updated_at_min` (movements by `created_at_min`). Variants and BOM rows
# are polled too, through the catalogue refresh.
DELTA_SOURCES: tuple[str, ...] = (
    "inventory_movements",
    "sales_orders",
    "manufacturing_orders",
    "manufacturing_order_recipe_rows",
    "stock_transfers",
    "stock_adjustments",
    "purchase_orders",
)


@dataclass(frozen=True, slots=True)
class KatanaLocation:
    id: int
    name: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class KatanaVariantRow:
    id: int
    sku: str | None
    product_id: int | None
    material_id: int | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KatanaItem:
    """A Katana product or material (the parent of variants)."""

    id: int
    kind: ItemKind
    is_auto_assembly: bool
    archived: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BomRow:
    """One ingredient of a kit: `product_variant_id` is assembled from `ingredient_variant_id`."""

    id: str
    product_variant_id: int
    ingredient_variant_id: int
    quantity: Quantity
    deleted: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One delta: this variant's in-stock or committed quantity may have changed at `at`."""

    source: str
    resource_id: int | str
    variant_id: int
    at: datetime


@dataclass
class Catalogue:
    """The Katana catalogue as stocksync knows it: refreshed incrementally, cached in the store."""

    variants: dict[int, KatanaVariantRow] = field(default_factory=dict)
    items: dict[tuple[ItemKind, int], KatanaItem] = field(default_factory=dict)
    bom: dict[str, BomRow] = field(default_factory=dict)
    # ingredient variant id -> kits assembled from it; rebuilt lazily after a merge.
    _users: dict[int, set[int]] | None = field(default=None, repr=False, compare=False)

    def merge(
        self,
        variants: Iterable[KatanaVariantRow] = (),
        items: Iterable[KatanaItem] = (),
        bom: Iterable[BomRow] = (),
    ) -> None:
        """Apply rows read since the last refresh (newer rows replace older ones)."""
        for v in variants:
            self.variants[v.id] = v
        for i in items:
            self.items[(i.kind, i.id)] = i
        self._users = None
        for b in bom:
            if b.deleted:
                self.bom.pop(b.id, None)
            else:
                self.bom[b.id] = b

    def _parent(self, row: KatanaVariantRow) -> KatanaItem | None:
        if row.product_id is not None:
            return self.items.get(("product", row.product_id))
        if row.material_id is not None:
            return self.items.get(("material", row.material_id))
        return None

    def katana_variants(self) -> list[KatanaVariant]:
        """Every known variant with `retired` and `is_kit` resolved from its product/material."""
        out: list[KatanaVariant] = []
        for row in self.variants.values():
            parent = self._parent(row)
            out.append(
                KatanaVariant(
                    id=row.id,
                    sku=row.sku,
                    created_at=row.created_at,
                    product_id=row.product_id,
                    material_id=row.material_id,
                    retired=row.deleted_at is not None or (parent is not None and parent.archived),
                    is_kit=parent is not None
                    and parent.kind == "product"
                    and parent.is_auto_assembly,
                )
            )
        return out

    def kits_using(self, ingredient_ids: Iterable[int]) -> set[int]:
        """Kits whose potential depends on any of these variants, following nested kits."""
        if self._users is None:
            self._users = {}
            for b in self.bom.values():
                self._users.setdefault(b.ingredient_variant_id, set()).add(b.product_variant_id)
        users = self._users
        found: set[int] = set()
        frontier = list(ingredient_ids)
        while frontier:
            for kit in users.get(frontier.pop(), ()):
                if kit not in found:
                    found.add(kit)
                    frontier.append(kit)
        return found
