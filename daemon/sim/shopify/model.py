"""The simulated shop's objects and state, and the Python API that drives it directly.

`_Shop` holds every table of the shop (locations, products, variants, inventory items, the
quantities per stocked level, bulk operations, idempotency records, the bucket, issued tokens)
and the business events tests and the demo cause (`add_location`, `add_variant`,
`set_available_manually`, `place_order`...). The Admin API's parts build on it as mixins
(`resolvers`, `mutations`, `bulk`, `cost`) and `server.ShopifySim` puts them together.

Ids come from one sequence shared by every resource type, so a variant id never equals an item
id: a client that mixes them up gets "not found" instead of silently touching the wrong object.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from graphql import DocumentNode

from daemon.domain.models import LevelKey, ShopifyVariant
from daemon.sim.shopify.faults import ShopifyFaults

# --------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True, slots=True)
class BulkDownload:
    """One GET of a bulk operation's result file, as the storage host saw it."""

    operation_id: str
    status: int
    # Shopify's result URLs are signed storage URLs: the shop's token must never be sent there.
    with_access_token: bool


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One element applied by inventorySetQuantities: `available` before and after, sim clock."""

    at: float
    item: str
    location: str
    before: int
    after: int


# --------------------------------------------------------------------------------------------
# The shop's objects


def _gid(kind: str, num: int) -> str:
    return f"gid://shopify/{kind}/{num}"


@dataclass(slots=True, eq=False)
class _Location:
    num: int
    id: str
    name: str
    # Numbers of the items stocked here, ascending: the location's inventoryLevels order.
    item_nums: list[int] = field(default_factory=list)
    is_active: bool = True
    fulfills_online_orders: bool = True


@dataclass(slots=True, eq=False)
class _Product:
    num: int
    id: str
    title: str


@dataclass(slots=True, eq=False)
class _Item:
    num: int
    id: str
    sku: str | None
    tracked: bool
    variant: _Variant | None = None


@dataclass(slots=True, eq=False)
class _Variant:
    num: int
    id: str
    sku: str | None
    title: str
    product: _Product
    item: _Item


@dataclass(frozen=True, slots=True)
class _LevelRef:
    """An InventoryLevel being rendered: quantities are read from the sim when resolved."""

    item: _Item
    location: _Location


@dataclass(frozen=True, slots=True)
class _AdjustmentGroup:
    id: str
    created_at: str
    reason: str
    reference_document_uri: str | None
    changes: tuple[dict[str, Any], ...]


@dataclass(slots=True, eq=False)
class _BulkOperation:
    """A bulk query: submitted, then run once its delay has passed on the sim's clock."""

    num: int
    id: str
    query: str
    document: DocumentNode
    version: str
    group_objects: bool
    started_at: float
    created_at: str
    signature: str
    fail_with: str | None
    status: str = "CREATED"
    error_code: str | None = None
    finished_at: float | None = None
    completed_at: str | None = None
    jsonl: bytes | None = None
    # The result as written so far, encoded: lines by connection depth when ungrouped (top
    # level first in the file), all in one part when grouped; and where to go on.
    parts: dict[int, list[bytes]] = field(default_factory=dict)
    object_count: int = 0
    root_object_count: int = 0
    next_root: int = 0
    written: bool = False
    writer: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _IdempotencyRecord:
    fingerprint: str
    at: float
    payload: dict[str, Any]


# --------------------------------------------------------------------------------------------
# The shop's state


class _Shop:
    """The shop's state, and the business events tests and the demo drive it by.

    The constructor's arguments are `ShopifySim`'s (see there).
    """

    def __init__(
        self,
        *,
        bucket_size: float = 1000,
        restore_rate: float = 100.0,
        access_token: str = "shpat_sim",
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        shop: str = "sim-shop.myshopify.com",
        clock: Callable[[], float] = time.monotonic,
        bulk_delay: float = 0.2,
        bulk_query_limit: int | None = None,
    ) -> None:
        self.shop = shop
        self.bulk_delay = bulk_delay
        self.bulk_query_limit = bulk_query_limit
        self.bulk_downloads: list[BulkDownload] = []
        self.bucket_size = float(bucket_size)
        self.restore_rate = float(restore_rate)
        self.faults = ShopifyFaults()
        self.mutation_calls: collections.Counter[str] = collections.Counter()
        # Executed queries by operation name ("Variants", "AvailableLevels", ...).
        self.query_calls: collections.Counter[str] = collections.Counter()
        # The idempotency key of every inventorySetQuantities call executed, in order.
        self.set_quantities_keys: list[str | None] = []
        self.set_quantities_sizes: list[int] = []
        self.throttled_total = 0
        self.requests_total = 0
        # Query points charged (the actual cost of every executed request), so tests can hold
        # a read to its budget without a clock.
        self.points_spent = 0
        self.changes: list[AppliedChange] = []
        self._access_token = access_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._bucket = self.bucket_size
        self._bucket_at = clock()
        self._issued_tokens: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._locations: dict[str, _Location] = {}
        self._location_nums: dict[int, _Location] = {}
        self._products: dict[str, _Product] = {}
        self._variants: dict[str, _Variant] = {}
        self._variant_nums: dict[int, _Variant] = {}
        self._variant_order: list[int] = []
        self._variants_by_sku: dict[str, list[_Variant]] = {}
        self._items: dict[str, _Item] = {}
        self._item_nums: dict[int, _Item] = {}
        self._item_order: list[int] = []
        # Quantities per stocked (item, location); on_hand = available + committed. Committed
        # is stored only where an order put some (most of 300k levels never have any).
        self._available: dict[LevelKey, int] = {}
        self._committed: dict[LevelKey, int] = {}
        self._idempotency: dict[str, _IdempotencyRecord] = {}
        # Requests held by `faults.hold_next_set`, still to be applied; and whether the one
        # being applied bypasses the idempotency records.
        self._held: set[asyncio.Task[dict[str, Any]]] = set()
        self._bypass_idempotency = False
        self._held_release = asyncio.Event()
        self._bulk_operations: dict[str, _BulkOperation] = {}

    # -- the shop, driven directly by tests and the demo ------------------------------------

    def add_location(self, name: str) -> str:
        """Create an active location; returns its gid."""
        num = next(self._ids)
        location = _Location(num=num, id=_gid("Location", num), name=name)
        self._locations[location.id] = location
        self._location_nums[num] = location
        return location.id

    def deactivate_location(self, location_id: str) -> None:
        """Deactivate a location: `locations` lists it only with `includeInactive: true`."""
        self._locations[location_id].is_active = False

    def add_variant(
        self,
        sku: str | None,
        *,
        tracked: bool = True,
        stocked_at: Iterable[str] | None = None,
        available: int = 0,
    ) -> ShopifyVariant:
        """Create a product with one variant and its inventory item, stocked at `stocked_at`.

        `stocked_at` None means every location that exists now; `available` is set at each.
        """
        location_ids = list(self._locations if stocked_at is None else stocked_at)
        for location_id in location_ids:
            if location_id not in self._locations:
                raise KeyError(f"unknown location {location_id}")
        product_num = next(self._ids)
        product = _Product(product_num, _gid("Product", product_num), f"Product {product_num}")
        variant_num, item_num = next(self._ids), next(self._ids)
        item = _Item(item_num, _gid("InventoryItem", item_num), sku, tracked)
        variant = _Variant(
            variant_num, _gid("ProductVariant", variant_num), sku, "Default Title", product, item
        )
        item.variant = variant
        self._products[product.id] = product
        self._variants[variant.id] = variant
        self._variant_nums[variant_num] = variant
        self._variant_order.append(variant_num)
        self._items[item.id] = item
        self._item_nums[item_num] = item
        self._item_order.append(item_num)
        if sku is not None:
            self._variants_by_sku.setdefault(sku.casefold(), []).append(variant)
        for location_id in location_ids:
            self._stock(item, self._locations[location_id], available)
        return ShopifyVariant(id=variant.id, sku=sku, inventory_item_id=item.id, tracked=tracked)

    def stock_item(self, item_id: str, location_id: str, available: int = 0) -> None:
        """The merchant stocks an item at a location (a no-op where it is stocked already)."""
        self._stock(self._items[item_id], self._locations[location_id], available)

    def available(self, item_id: str, location_id: str) -> int | None:
        """Shopify's available quantity, or None when the item is not stocked there."""
        return self._available.get((item_id, location_id))

    def set_available_manually(self, item_id: str, location_id: str, qty: int) -> None:
        """A merchant edits available in the admin (drift stocksync must overwrite)."""
        key = self._stocked_key(item_id, location_id)
        self._available[key] = qty

    def place_order(self, item_id: str, location_id: str, qty: int) -> None:
        """A customer orders `qty`: Shopify lowers available and commits the units at once."""
        if qty <= 0:
            raise ValueError("an order is for a positive quantity")
        key = self._stocked_key(item_id, location_id)
        self._available[key] -= qty
        self._committed[key] = self._committed.get(key, 0) + qty

    @property
    def levels(self) -> Mapping[LevelKey, int]:
        """Read-only live view: (item gid, location gid) -> available, stocked pairs only."""
        return MappingProxyType(self._available)

    def _stock(self, item: _Item, location: _Location, available: int) -> None:
        key = (item.id, location.id)
        if key in self._available:
            return
        self._available[key] = available
        _insert_sorted(location.item_nums, item.num)

    def _stocked_key(self, item_id: str, location_id: str) -> LevelKey:
        if item_id not in self._items:
            raise KeyError(f"unknown inventory item {item_id}")
        if location_id not in self._locations:
            raise KeyError(f"unknown location {location_id}")
        key = (item_id, location_id)
        if key not in self._available:
            raise ValueError(f"{item_id} is not stocked at {location_id}")
        return key

    def _level(self, item_id: str, location_id: str) -> _LevelRef | None:
        if (item_id, location_id) not in self._available:
            return None
        return _LevelRef(self._items[item_id], self._locations[location_id])

    def _quantity(self, key: LevelKey, name: str) -> int:
        if name == "available":
            return self._available[key]
        if name == "committed":
            return self._committed.get(key, 0)
        if name == "on_hand":
            return self._available[key] + self._committed.get(key, 0)
        return 0


# --------------------------------------------------------------------------------------------
# Small helpers


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _insert_sorted(values: list[int], value: int) -> None:
    # Objects are mostly created in id order, so appending is the common case.
    if not values or values[-1] < value:
        values.append(value)
    else:
        values.insert(bisect_left(values, value), value)
