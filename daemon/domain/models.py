"""Plain data shared by the pure core, the clients, the store and the engine.

Every type here is immutable. Shopify ids are GraphQL gids (strings); Katana ids are integers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

ShopifyGid = str
# (Shopify inventory item gid, Shopify location gid): the unit stocksync sets a level for.
LevelKey = tuple[ShopifyGid, ShopifyGid]
# An exact Katana quantity: an int when whole (almost always: "7.00000"), else a Decimal. Ints
# cost a fraction of a Decimal in memory and arithmetic, and a catalogue holds 100,000s of them.
Quantity = int | Decimal


class VariantFlag(enum.IntFlag):
    """What a Katana variant takes from itself and its product or material (one int each)."""

    RETIRED = 1  # deleted, or its product/material archived or deleted: it stops syncing
    KIT = 2  # its product has is_auto_assembly: potential counts
    DELETED = 4  # the variant itself is deleted


_RETIRED, _KIT, _DELETED = (int(f) for f in VariantFlag)


class _Value:
    """Equality, hash and immutability for the slots classes that stand in for NamedTuples
    where a catalogue holds 100,000s of them: fields are set once, by `_init`."""

    __slots__ = ()

    def _init(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        # Assigning would silently change the hash of a value held in sets and dict keys.
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Value) or type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class KatanaVariant(_Value):
    """A Katana product or material variant, as the mapping rules need it (immutable).

    The in-memory catalogue holds one of these per variant (100,000s): only what the rules
    read, with its product's or material's flags already applied, the three flags in one int
    (88 bytes a variant instead of a NamedTuple's 112). `category` is its product's or
    material's category_name (an interned string: sync filters read it).
    """

    __slots__ = ("_flags", "category", "created_at", "id", "material_id", "product_id", "sku")
    _flags: int
    category: str | None
    created_at: datetime
    id: int
    material_id: int | None
    product_id: int | None
    sku: str | None

    def __init__(
        self,
        id: int,
        sku: str | None,
        created_at: datetime,
        product_id: int | None = None,
        material_id: int | None = None,
        retired: bool = False,
        is_kit: bool = False,
        deleted: bool = False,
        category: str | None = None,
    ) -> None:
        self._init(
            id=id,
            sku=sku,
            created_at=created_at,
            product_id=product_id,
            material_id=material_id,
            _flags=(_RETIRED if retired else 0)
            | (_KIT if is_kit else 0)
            | (_DELETED if deleted else 0),
            category=category,
        )

    @property
    def retired(self) -> bool:
        """Deleted, or its product/material is archived: it stops syncing."""
        return bool(self._flags & _RETIRED)

    @property
    def is_kit(self) -> bool:
        """Its product has is_auto_assembly (a kit/bundle): potential counts."""
        return bool(self._flags & _KIT)

    @property
    def deleted(self) -> bool:
        """The variant itself is deleted (`retired` also follows its product or material)."""
        return bool(self._flags & _DELETED)

    def _key(
        self,
    ) -> tuple[int, str | None, datetime, int | None, int | None, int, str | None]:
        return (
            self.id,
            self.sku,
            self.created_at,
            self.product_id,
            self.material_id,
            self._flags,
            self.category,
        )

    def __repr__(self) -> str:
        return (
            f"KatanaVariant(id={self.id!r}, sku={self.sku!r}, created_at={self.created_at!r}, "
            f"product_id={self.product_id!r}, material_id={self.material_id!r}, "
            f"retired={self.retired}, is_kit={self.is_kit}, deleted={self.deleted}, "
            f"category={self.category!r})"
        )


class ShopifyVariant(_Value):
    """A Shopify product variant and its inventory item (immutable).

    A daemon holds one per variant of the shop, 100,000s of them, and gids are most of their
    weight: a standard gid ("gid://shopify/InventoryItem/4412...") is kept as its number (a
    32-byte int instead of an 80-byte string) and rebuilt when read. Any other id is kept as is.
    """

    __slots__ = ("_id", "_item", "sku", "tracked")
    _id: int | str
    _item: int | str
    sku: str | None
    tracked: bool

    def __init__(
        self, id: ShopifyGid, sku: str | None, inventory_item_id: ShopifyGid, tracked: bool
    ) -> None:
        self._init(
            _id=_pack_gid(id, _VARIANT_GID),
            _item=_pack_gid(inventory_item_id, _ITEM_GID),
            sku=sku,
            tracked=tracked,
        )

    @property
    def id(self) -> ShopifyGid:
        return _unpack_gid(self._id, _VARIANT_GID)

    @property
    def inventory_item_id(self) -> ShopifyGid:
        return _unpack_gid(self._item, _ITEM_GID)

    def _key(self) -> tuple[int | str, str | None, int | str, bool]:
        return (self._id, self.sku, self._item, self.tracked)

    def __repr__(self) -> str:
        return (
            f"ShopifyVariant(id={self.id!r}, sku={self.sku!r}, "
            f"inventory_item_id={self.inventory_item_id!r}, tracked={self.tracked!r})"
        )


_VARIANT_GID = "gid://shopify/ProductVariant/"
_ITEM_GID = "gid://shopify/InventoryItem/"


def _pack_gid(gid: ShopifyGid, prefix: str) -> int | str:
    """The number of a standard gid (exactly what the string says, no leading zero); else it."""
    number = gid.removeprefix(prefix)
    if (
        number is not gid
        and number.isascii()
        and number.isdigit()
        and (number == "0" or not number.startswith("0"))
    ):
        return int(number)
    return gid


def _unpack_gid(packed: int | str, prefix: str) -> ShopifyGid:
    return f"{prefix}{packed}" if type(packed) is int else str(packed)


class StockRow(NamedTuple):
    """Katana's current stock of one variant at one location (GET /inventory)."""

    variant_id: int
    location_id: int
    in_stock: Quantity
    committed: Quantity
    potential: Quantity | None = None


# DesiredLevel and PlannedPush are NamedTuples rather than frozen dataclasses: a full sync
# builds one of each per (item, location), 300,000s of them, and a NamedTuple is immutable too
# but a quarter of the cost to construct.
class DesiredLevel(NamedTuple):
    """What Shopify's "available" should be for one (inventory item, location)."""

    katana_variant_id: int
    sku: str | None
    inventory_item_id: ShopifyGid
    location_id: ShopifyGid
    quantity: int

    @property
    def key(self) -> LevelKey:
        return (self.inventory_item_id, self.location_id)


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """What stocksync last told Shopify for one (inventory item, location).

    `in_flight` means a push was sent whose answer was never recorded: Shopify's value is unknown.
    """

    quantity: int | None
    in_flight: bool = False


class PlannedPush(NamedTuple):
    """One element of an `inventorySetQuantities` call."""

    katana_variant_id: int
    sku: str | None
    inventory_item_id: ShopifyGid
    location_id: ShopifyGid
    quantity: int
    # Expected current value for compare-and-swap; None = unknown (skip the check).
    change_from: int | None

    @property
    def key(self) -> LevelKey:
        return (self.inventory_item_id, self.location_id)


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One `inventorySetQuantities` request exactly as sent: its idempotency key, its variables
    and the pushes its quantities stand for, in the same order."""

    key: str
    variables: Mapping[str, Any]
    pushes: tuple[PlannedPush, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """A per-item situation worth reporting once (untracked, shadowed, rejected, too high...).

    `katana_variant_id` names the variant a problem keeps from being pushed (it stays dirty).
    """

    kind: str
    subject: str
    detail: str
    katana_variant_id: int | None = None


@dataclass(frozen=True, slots=True)
class PushResult:
    """What Shopify said about one pushed element.

    status: "applied" (Shopify now holds push.quantity), "stale" (Shopify's value was not
    push.change_from; `current` is the value re-read), or "rejected" (`code`, `message`).
    """

    push: PlannedPush
    status: str
    current: int | None = None
    code: str | None = None
    message: str | None = None
