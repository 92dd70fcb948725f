"""Typed Katana rows, and the in-memory Katana catalogue the mapping is built from."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, TypeVar

from daemon.domain.models import KatanaVariant, Quantity, VariantFlag

ItemKind = Literal["product", "material"]

# Delta sources polled by `updated_at_min` (movements by `created_at_min`), deleted rows included
# where Katana lists them. Variants and BOM rows are polled too, through the catalogue refresh.
# docs/design.md ("Change capture") says which Katana change each one sees.
DELTA_SOURCES: tuple[str, ...] = (
    "inventory_movements",
    "sales_orders",
    "sales_order_rows",
    "manufacturing_orders",
    "manufacturing_order_recipe_rows",
    "stock_transfers",
    "stock_adjustments",
    "purchase_orders",
    "purchase_order_rows",
    "outsourced_purchase_order_recipe_rows",
)
# Sources that list one document row each. Katana edits and deletes such a row without touching
# its document or recording a movement, and a row can be re-pointed to another variant: the
# engine remembers each row's last-known variant so the old one is re-read too.
ROW_SOURCES: frozenset[str] = frozenset(
    {
        "sales_order_rows",
        "manufacturing_order_recipe_rows",
        "purchase_order_rows",
        "outsourced_purchase_order_recipe_rows",
    }
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Read(Generic[T]):
    """The rows of one list read, and Katana's clock when the read began.

    `as_of` is the `Date` header of the read's first page (None when Katana sent none): every
    row updated after it is left for the next read, so a cursor may advance to it.
    """

    rows: list[T]
    as_of: datetime | None


@dataclass(frozen=True, slots=True)
class KatanaLocation:
    id: int
    name: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class KatanaVariantRow:
    """One `/variants` row as read (the catalogue keeps a smaller KatanaVariant of it)."""

    id: int
    sku: str | None
    product_id: int | None
    material_id: int | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class KatanaItem:
    """A Katana product or material (the parent of variants)."""

    id: int
    kind: ItemKind
    is_auto_assembly: bool
    archived: bool
    updated_at: datetime
    category: str | None = None  # category_name: what sync filters match (issue 18)


@dataclass(frozen=True, slots=True)
class BomRow:
    """One ingredient of a kit: `product_variant_id` is assembled from `ingredient_variant_id`."""

    id: str
    product_variant_id: int
    ingredient_variant_id: int
    quantity: Quantity | None  # Katana allows a null quantity
    deleted: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One delta: this variant's in-stock or committed quantity may have changed at `at`.

    For a row source (ROW_SOURCES) `resource_id` is the row's id and `deleted` says the row is
    gone (Katana lists it with `deleted_at`).
    """

    source: str
    resource_id: int | str
    variant_id: int
    at: datetime
    deleted: bool = False


# What a product or material passes on to its variants, in the variants' own flags: archived
# (or deleted) retires them; is_auto_assembly makes them kits.
_ARCHIVED, _KIT = int(VariantFlag.RETIRED), int(VariantFlag.KIT)


def _flags(item: KatanaItem) -> int:
    # Materials cannot be kits (the parser already makes sure).
    kit = item.kind == "product" and item.is_auto_assembly
    return (_ARCHIVED if item.archived else 0) | (_KIT if kit else 0)


@dataclass
class Catalogue:
    """The Katana catalogue as stocksync knows it: refreshed incrementally, cached in the store.

    Each variant is held once, as the KatanaVariant the mapping rules and the planner read
    (its `retired` and `is_kit` resolved from its product or material), not as the row read:
    a 100,000-variant catalogue is the largest thing a daemon keeps in memory.
    """

    variants: dict[int, KatanaVariant] = field(default_factory=dict)
    bom: dict[str, BomRow] = field(default_factory=dict)
    # Of a product or material only what its variants take: _ARCHIVED | _KIT, by kind and id.
    _items: dict[ItemKind, dict[int, int]] = field(
        default_factory=lambda: {"product": {}, "material": {}}, repr=False
    )
    # The category_name of the products and materials that have one (sync filters read it).
    _categories: dict[tuple[ItemKind, int], str] = field(default_factory=dict, repr=False)
    # ingredient variant id -> kits assembled from it; rebuilt lazily after a merge.
    _users: dict[int, list[int]] | None = field(default=None, repr=False, compare=False)

    def merge(
        self,
        variants: Iterable[KatanaVariantRow] = (),
        items: Iterable[KatanaItem] = (),
        bom: Iterable[BomRow] = (),
    ) -> None:
        """Apply rows read since the last refresh (newer rows replace older ones)."""
        changed_items: set[tuple[ItemKind, int]] = set()
        for i in items:
            self._items[i.kind][i.id] = _flags(i)
            changed_items.add((i.kind, i.id))
            if i.category is None:
                self._categories.pop((i.kind, i.id), None)
            else:
                self._categories[(i.kind, i.id)] = i.category
        for v in variants:
            self.variants[v.id] = self._resolved(v)
        # Archiving a product retires its variants; is_auto_assembly makes them kits; its
        # category is theirs.
        for variant_id in self.variants_of(changed_items):
            self.variants[variant_id] = self._resolved(self.variants[variant_id])
        self._users = None
        for b in bom:
            if b.deleted:
                self.bom.pop(b.id, None)
            else:
                self.bom[b.id] = b

    def variants_of(self, items: Collection[tuple[ItemKind, int]]) -> list[int]:
        """The variants whose product or material is one of `items`."""
        if not items:
            return []
        return [v.id for v in self.variants.values() if _parent_key(v) in items]

    def holds_item(self, item: KatanaItem) -> bool:
        """Whether the catalogue already knows this product or material as it is (a re-read)."""
        return self.holds_item_flags(item) and (
            self._categories.get((item.kind, item.id)) == item.category
        )

    def holds_item_flags(self, item: KatanaItem) -> bool:
        """Whether what the item passes on to its variants' stock (archived, kit) is known as
        it is: a change of category alone moves no quantity."""
        return self._items[item.kind].get(item.id) == _flags(item)

    def holds(self, row: KatanaVariantRow) -> bool:
        """Whether the catalogue already knows this row's variant as it is (a re-read)."""
        known = self.variants.get(row.id)
        return (
            known is not None
            and known.sku == row.sku
            and known.product_id == row.product_id
            and known.material_id == row.material_id
            and known.created_at == row.created_at
            and known.deleted == row.deleted
        )

    def _resolved(self, row: KatanaVariantRow | KatanaVariant) -> KatanaVariant:
        key = _parent_key(row)
        flags = 0 if key is None else self._items[key[0]].get(key[1], 0)
        return KatanaVariant(
            id=row.id,
            sku=row.sku,
            created_at=row.created_at,
            product_id=row.product_id,
            material_id=row.material_id,
            retired=row.deleted or bool(flags & _ARCHIVED),
            is_kit=bool(flags & _KIT),
            deleted=row.deleted,
            category=None if key is None else self._categories.get(key),
        )

    def kits_using(self, ingredient_ids: Iterable[int]) -> set[int]:
        """Kits whose potential depends on any of these variants, following nested kits."""
        if self._users is None:
            self._users = {}
            for b in self.bom.values():
                # Lists, not sets: a set costs 216 bytes even with one kit in it.
                self._users.setdefault(b.ingredient_variant_id, []).append(b.product_variant_id)
        users = self._users
        found: set[int] = set()
        frontier = list(ingredient_ids)
        while frontier:
            for kit in users.get(frontier.pop(), ()):
                if kit not in found:
                    found.add(kit)
                    frontier.append(kit)
        return found


def _parent_key(variant: KatanaVariantRow | KatanaVariant) -> tuple[ItemKind, int] | None:
    if variant.product_id is not None:
        return ("product", variant.product_id)
    if variant.material_id is not None:
        return ("material", variant.material_id)
    return None
