"""Simulated Katana MRP: in-memory business state, its public REST API, and fault injection.

The HTTP side follows the Katana API notes (shared/spec/katana-api.md) and the payload shapes
of docs/design.md ("Katana payloads"). The business side models what moves Katana's numbers:
sales orders commit stock until they are packed, manufacturing orders commit their ingredients
until done, open stock transfers commit at their source, and an inventory movement exists
exactly when in-stock changes. Tests, the demo and the benchmarks drive it through the Python
methods below and read it back through the API, as the daemon does. See README.md beside it.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import math
import re
import time
import uuid
from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from aiohttp import web

Quantity = int | str | Decimal
Json = dict[str, Any]
StockKey = tuple[int, int]  # (variant id, location id)

ZERO = Decimal(0)
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
WINDOW_SECONDS = 60.0

# Sales-order statuses. PENDING is a quote: it commits nothing. The sim has no per-row
# fulfilment, so the PARTIALLY_* statuses keep the whole order committed.
SALES_COMMITTING = frozenset({"NOT_SHIPPED", "PARTIALLY_PACKED", "PARTIALLY_DELIVERED"})
SALES_FULFILLED = frozenset({"PACKED", "DELIVERED"})
SALES_STATUSES = SALES_COMMITTING | SALES_FULFILLED | {"PENDING"}
# A sales-order row can be edited or deleted only while its order is in one of these
# (update-sales-order-row.md, delete-sales-order-row.md).
SALES_ROW_EDITABLE = frozenset({"NOT_SHIPPED", "PENDING"})
MO_OPEN = frozenset({"NOT_STARTED", "IN_PROGRESS", "BLOCKED"})
MO_DONE = "DONE"
# katana-openapi.yaml StockTransferStatus. A draft commits its rows at the source; in transit the
# stock has left the source and not reached the target; received, it is at the target.
TRANSFER_DRAFT = "draft"
TRANSFER_IN_TRANSIT = "inTransit"
TRANSFER_RECEIVED = "received"
PO_OPEN = "NOT_RECEIVED"
PO_DONE = "RECEIVED"

# The customer of every simulated sales order (Katana requires one).
SIM_CUSTOMER_ID = 1
_BOM_NAMESPACE = uuid.UUID("6b1d5d0e-3c59-4e8e-9d1a-7a0c2f5b9e41")
_INTEGER = re.compile(r"-?\d+")


def iso(at: datetime) -> str:
    """Katana's timestamp format: UTC, milliseconds, `Z`."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def quantity_text(value: Decimal) -> str:
    """Katana's quantity format: a decimal string with 5 places ("7.00000")."""
    return f"{(value if value != 0 else ZERO):.5f}"


def _money_text(value: Decimal) -> str:
    return f"{(value if value != 0 else ZERO):.10f}"


def number(value: Decimal) -> int | float:
    """A quantity as a JSON number, where Katana's schema has `number` (row quantities)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _decimal(value: Quantity) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise TypeError(f"quantity must be int, str or Decimal, not {type(value).__name__}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"quantity must be finite, got {value!r}")
    return result


def _add(totals: dict[StockKey, Decimal], key: StockKey, amount: Decimal) -> None:
    value = totals.get(key, ZERO) + amount
    if value == 0:
        totals.pop(key, None)
    else:
        totals[key] = value


# --------------------------------------------------------------------------------------------
# Records (mutable, in memory). Every record has Katana's bookkeeping fields.
# --------------------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True, eq=False)
class _Record:
    id: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    seq: int = 0  # position in creation order, set by the table


@dataclass(slots=True, kw_only=True, eq=False)
class _Location(_Record):
    name: str
    is_primary: bool


@dataclass(slots=True, kw_only=True, eq=False)
class _Item(_Record):
    kind: Literal["product", "material"]
    name: str
    is_auto_assembly: bool
    category: str | None = None
    archived_at: datetime | None = None
    variant_ids: list[int] = field(default_factory=list)


@dataclass(slots=True, kw_only=True, eq=False)
class _Variant(_Record):
    sku: str | None
    product_id: int | None
    material_id: int | None


@dataclass(slots=True, kw_only=True, eq=False)
class _BomEntry(_Record):
    uuid: str
    product_item_id: int
    product_variant_id: int
    ingredient_variant_id: int
    quantity: Decimal


@dataclass(slots=True, kw_only=True, eq=False)
class _Movement(_Record):
    variant_id: int
    location_id: int
    resource_type: str
    resource_id: int
    caused_by_order_no: str | None
    caused_by_resource_id: int | None
    quantity_change: Decimal
    balance_after: Decimal


@dataclass(slots=True, kw_only=True, eq=False)
class _Line(_Record):
    """A row of an order, transfer or adjustment (`parent_id` is that document's id)."""

    variant_id: int
    quantity: Decimal
    location_id: int
    parent_id: int = 0
    received_date: datetime | None = None
    linked_manufacturing_order_id: int | None = None  # sales-order rows made to order


@dataclass(slots=True, kw_only=True, eq=False)
class _SalesOrder(_Record):
    order_no: str
    status: str
    location_id: int
    rows: list[_Line]


@dataclass(slots=True, kw_only=True, eq=False)
class _ManufacturingOrder(_Record):
    order_no: str
    status: str
    variant_id: int
    location_id: int
    planned_quantity: Decimal
    actual_quantity: Decimal | None = None
    done_date: datetime | None = None
    recipe_row_ids: list[int] = field(default_factory=list)
    sales_order_row_id: int | None = None  # made to order for this sales-order row


@dataclass(slots=True, kw_only=True, eq=False)
class _RecipeRow(_Record):
    manufacturing_order_id: int
    variant_id: int
    planned_quantity_per_unit: Decimal
    total_actual_quantity: Decimal = ZERO


@dataclass(slots=True, kw_only=True, eq=False)
class _StockTransfer(_Record):
    number: str
    status: str
    source_location_id: int
    target_location_id: int
    rows: list[_Line]


@dataclass(slots=True, kw_only=True, eq=False)
class _StockAdjustment(_Record):
    number: str
    location_id: int
    reason: str
    rows: list[_Line]


@dataclass(slots=True, kw_only=True, eq=False)
class _PurchaseOrder(_Record):
    order_no: str
    status: str
    location_id: int
    rows: list[_Line]
    # "outsourced": a subcontractor makes `rows` from the ingredients of `recipe_row_ids`.
    entity_type: Literal["regular", "outsourced"] = "regular"
    recipe_row_ids: list[int] = field(default_factory=list)


@dataclass(slots=True, kw_only=True, eq=False)
class _OutsourcedRecipeRow(_Record):
    purchase_order_id: int
    purchase_order_row_id: int
    ingredient_variant_id: int
    planned_quantity_per_unit: Decimal


R = TypeVar("R", bound=_Record)


class _Cause(NamedTuple):
    """When a movement happened and which order caused it."""

    at: datetime
    order_no: str | None = None
    resource_id: int | None = None


class _Table(Generic[R]):
    """Rows of one resource with the indexes the list endpoints need (no per-request scans)."""

    def __init__(self) -> None:
        self.rows: dict[int, R] = {}
        self.created: list[R] = []  # ascending created_at (the sim's clock never goes back)
        self.recent: OrderedDict[int, R] = OrderedDict()  # ascending updated_at
        self.revision = 0  # bumped by every change: list caches compare it
        self._added = 0  # rows ever added: a removed row's position is never reused

    def add(self, row: R) -> R:
        self.revision += 1
        row.seq = self._added
        self._added += 1
        self.rows[row.id] = row
        self.created.append(row)
        self.recent[row.id] = row
        return row

    def touch(self, row: R, at: datetime) -> None:
        self.revision += 1
        row.updated_at = at
        self.recent.move_to_end(row.id)

    def remove(self, row: R) -> None:
        """Drop a row for good (what Katana keeps no trace of); rare, so a linear scan."""
        self.revision += 1
        del self.rows[row.id]
        self.recent.pop(row.id, None)
        self.created.remove(row)

    def get(self, row_id: int, what: str) -> R:
        row = self.rows.get(row_id)
        if row is None:
            raise ValueError(f"no {what} with id {row_id}")
        return row

    def live(self, row_id: int, what: str) -> R:
        row = self.get(row_id, what)
        if row.deleted_at is not None:
            raise ValueError(f"{what} {row_id} is deleted")
        return row

    def candidates(self, query: _ListQuery) -> Iterable[R]:
        """Rows that may match, narrowed through the cheapest index the query allows."""
        if query.ids is not None:
            return [self.rows[i] for i in query.ids if i in self.rows]
        if query.updated_min is not None:
            found: list[R] = []
            for row in reversed(self.recent.values()):
                if row.updated_at < query.updated_min:
                    break
                found.append(row)
            return found
        if query.created_min is not None:
            start = bisect_left(self.created, query.created_min, key=lambda r: r.created_at)
            return self.created[start:]
        return self.created


# --------------------------------------------------------------------------------------------
# Public read models and fault switches
# --------------------------------------------------------------------------------------------


class ProductSpec(NamedTuple):
    """One product (or material) to create: its name and one SKU (or None) per variant."""

    name: str
    skus: Sequence[str | None]
    is_auto_assembly: bool = False
    category: str | None = None  # category_name


@dataclass(frozen=True, slots=True)
class SimVariant:
    """A read-only view of one Katana variant, for oracles and scenario drivers."""

    id: int
    sku: str | None
    product_id: int | None
    material_id: int | None
    created_at: datetime
    updated_at: datetime
    deleted: bool
    archived: bool
    is_kit: bool


@dataclass
class KatanaFaults:
    """Failures to inject into the HTTP API (the business state is unaffected)."""

    latency: float = 0.0  # seconds slept before every request is handled
    outage: bool = False  # every request answers 503 until cleared
    _fail: int = 0
    _fail_status: int = 500
    _throttle: int = 0
    _throttle_retry_after: int = 1
    _malformed: int = 0
    _malformed_kind: str = "quantity"
    _hold_back: timedelta = timedelta(0)

    def fail_next(self, n: int, status: int = 500) -> None:
        """The next `n` requests answer `status` with Katana's error body."""
        self._fail, self._fail_status = n, status

    def throttle_next(self, n: int, retry_after: int = 1) -> None:
        """The next `n` requests answer 429 with `Retry-After: retry_after` (a burst)."""
        self._throttle, self._throttle_retry_after = n, retry_after

    def malformed_next(self, n: int, kind: Literal["quantity", "missing_id"] = "quantity") -> None:
        """The next `n` /inventory rows served are broken: `quantity_in_stock: "abc"` or no id."""
        self._malformed, self._malformed_kind = n, kind

    def hold_back(self, window: timedelta) -> None:
        """Lists leave out rows changed within the last `window` of the account's clock, as if
        their transactions had not committed yet (a late commit); timedelta(0) ends it."""
        self._hold_back = window

    def clear(self) -> None:
        """Back to a healthy API."""
        self.latency, self.outage = 0.0, False
        self._fail = self._throttle = self._malformed = 0
        self._hold_back = timedelta(0)


# --------------------------------------------------------------------------------------------
# The business model
# --------------------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC during a bulk load (nests).

    A 100k-variant catalogue creates about a million small objects; CPython would rescan the
    whole heap many times meanwhile (halving throughput) although none of them is garbage.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class KatanaSim:
    """One Katana account: catalogue, stock, orders, and the REST API that serves them."""

    def __init__(
        self,
        *,
        api_key: str = "katana-sim-key",
        requests_per_minute: int = 60,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api_key = api_key
        self.requests_per_minute = requests_per_minute
        self.faults = KatanaFaults()
        self.requests_total = 0
        self.requests_by_path: Counter[str] = Counter()
        self.throttled_total = 0
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._last_stamp: datetime | None = None
        self._last_ids: dict[str, int] = {}

        self._locations: _Table[_Location] = _Table()
        # Products and materials have separate id sequences in Katana, hence two tables.
        self._products: _Table[_Item] = _Table()
        self._materials: _Table[_Item] = _Table()
        self._variants: _Table[_Variant] = _Table()
        self._bom: _Table[_BomEntry] = _Table()
        self._movements: _Table[_Movement] = _Table()
        self._sales_orders: _Table[_SalesOrder] = _Table()
        self._manufacturing_orders: _Table[_ManufacturingOrder] = _Table()
        self._recipe_rows: _Table[_RecipeRow] = _Table()
        self._transfers: _Table[_StockTransfer] = _Table()
        self._adjustments: _Table[_StockAdjustment] = _Table()
        self._purchase_orders: _Table[_PurchaseOrder] = _Table()
        # Rows Katana lists on their own (/sales_order_rows, /purchase_order_rows, ...), and edits
        # or deletes without touching their document.
        self._sales_order_rows: _Table[_Line] = _Table()
        self._purchase_order_rows: _Table[_Line] = _Table()
        self._outsourced_recipe_rows: _Table[_OutsourcedRecipeRow] = _Table()
        self._bom_by_uuid: dict[str, _BomEntry] = {}
        self._bom_by_kit: dict[int, dict[int, _BomEntry]] = {}
        self._kits_by_ingredient: dict[int, Counter[int]] = {}  # ingredient -> kit -> rows

        self._in_stock: dict[StockKey, Decimal] = {}
        self._committed: dict[StockKey, Decimal] = {}
        self._expected: dict[StockKey, Decimal] = {}
        self._sales_by_status: dict[str, dict[int, None]] = {s: {} for s in SALES_STATUSES}
        self._open_mos: dict[int, None] = {}
        self._open_transfers: dict[int, None] = {}
        self._open_pos: dict[int, None] = {}
        self._visible_cache: dict[bool, tuple[tuple[int, ...], list[int]]] = {}

    # ---- time and ids ------------------------------------------------------------------

    def _tick(self) -> datetime:
        """One business event's timestamp: the clock, at ms precision, strictly increasing."""
        now = self._clock().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = now
        return now

    @property
    def last_event_at(self) -> datetime | None:
        """The timestamp of the latest business event (None before the first)."""
        return self._last_stamp

    def _next_id(self, kind: str) -> int:
        last = self._last_ids[kind] = self._last_ids.get(kind, 0) + 1
        return last

    # ---- catalogue -----------------------------------------------------------------------

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

    # ---- stock ---------------------------------------------------------------------------

    def set_stock(self, variant_id: int, location_id: int, quantity: Quantity) -> int | None:
        """Count stock to an absolute level (a stock adjustment); None when nothing changed."""
        made = self.set_stock_levels([(variant_id, location_id, quantity)])
        return made[0] if made else None

    def set_stock_levels(self, levels: Iterable[tuple[int, int, Quantity]]) -> list[int]:
        """One stock count over many (variant, location) levels, as one event.

        Katana adjustments belong to one location: one adjustment per location that changed.
        Returns their ids (none when every level was already right).
        """
        by_location: dict[int, list[tuple[int, Decimal]]] = {}
        live_locations = self.location_names()
        with gc_paused():
            for variant_id, location_id, quantity in levels:
                self._check_stock_key(variant_id, location_id, live_locations)
                delta = _decimal(quantity) - self._in_stock.get((variant_id, location_id), ZERO)
                if delta != 0:
                    by_location.setdefault(location_id, []).append((variant_id, delta))
            if not by_location:
                return []
            at = self._tick()
            return [
                self._record_adjustment(location_id, deltas, "Stock count", at)
                for location_id, deltas in by_location.items()
            ]

    def adjust_stock(self, variant_id: int, location_id: int, delta: Quantity) -> int:
        """Add (or remove, if negative) stock through a stock adjustment; its id."""
        self._check_stock_key(variant_id, location_id, self.location_names())
        amount = _decimal(delta)
        if amount == 0:
            raise ValueError("an adjustment of 0 changes nothing")
        return self._record_adjustment(
            location_id, [(variant_id, amount)], "Adjustment", self._tick()
        )

    def _record_adjustment(
        self, location_id: int, deltas: list[tuple[int, Decimal]], reason: str, at: datetime
    ) -> int:
        adjustment_id = self._next_id("stock_adjustment")
        cause = _Cause(at, f"SA-{adjustment_id}", adjustment_id)
        rows: list[_Line] = []
        for variant_id, delta in deltas:
            line = self._line(variant_id, delta, location_id, at, adjustment_id)
            rows.append(line)
            self._move(cause, "StockAdjustmentRow", line.id, variant_id, location_id, delta)
        adjustment = _StockAdjustment(
            id=adjustment_id,
            number=f"SA-{adjustment_id}",
            location_id=location_id,
            reason=reason,
            rows=rows,
            created_at=at,
            updated_at=at,
        )
        self._adjustments.add(adjustment)
        return adjustment_id

    def delete_stock_adjustment(self, adjustment_id: int) -> None:
        """Delete an adjustment: its stock goes back and its movements are withdrawn.

        Katana's movement types have no "reversal": a deleted document is modelled as leaving no
        movement at all (the strictest case for a poller), seen only as the deleted document.
        """
        adjustment = self._adjustments.live(adjustment_id, "stock adjustment")
        at = self._tick()
        self._withdraw("StockAdjustmentRow", {line.id for line in adjustment.rows})
        adjustment.deleted_at = at
        self._adjustments.touch(adjustment, at)

    def _withdraw(self, resource_type: str, line_ids: Collection[int]) -> None:
        """Undo the movements of these rows: their stock goes back and the movements vanish."""
        gone = [
            m
            for m in self._movements.created
            if m.resource_type == resource_type and m.resource_id in line_ids
        ]
        for movement in gone:
            key = (movement.variant_id, movement.location_id)
            self._in_stock[key] = self._in_stock.get(key, ZERO) - movement.quantity_change
            self._movements.remove(movement)

    def _check_stock_key(
        self, variant_id: int, location_id: int, live_locations: Collection[int]
    ) -> None:
        variant = self._variants.rows.get(variant_id)
        if variant is None or variant.deleted_at is not None:
            raise ValueError(f"no live variant with id {variant_id}")
        if location_id not in live_locations:
            raise ValueError(f"no live location with id {location_id}")

    def _line(
        self, variant_id: int, quantity: Decimal, location_id: int, at: datetime, parent_id: int
    ) -> _Line:
        return _Line(
            id=self._next_id("row"),
            variant_id=variant_id,
            quantity=quantity,
            location_id=location_id,
            parent_id=parent_id,
            created_at=at,
            updated_at=at,
        )

    def _move(
        self,
        cause: _Cause,
        resource_type: str,
        resource_id: int,
        variant_id: int,
        location_id: int,
        delta: Decimal,
    ) -> None:
        """Change in-stock and record its movement (callers never pass a zero change)."""
        key = (variant_id, location_id)
        balance = self._in_stock.get(key, ZERO) + delta
        self._in_stock[key] = balance
        self._movements.add(
            _Movement(
                id=self._next_id("movement"),
                variant_id=variant_id,
                location_id=location_id,
                resource_type=resource_type,
                resource_id=resource_id,
                caused_by_order_no=cause.order_no,
                caused_by_resource_id=cause.resource_id,
                quantity_change=delta,
                balance_after=balance,
                created_at=cause.at,
                updated_at=cause.at,
            )
        )

    # ---- commitments -----------------------------------------------------------------------

    def _commitments(self, resource: _Record) -> dict[StockKey, Decimal]:
        """What a resource commits now (what sales/manufacturing/transfers hold back)."""
        found: dict[StockKey, Decimal] = {}
        if resource.deleted_at is not None:
            return found
        if isinstance(resource, _SalesOrder) and resource.status in SALES_COMMITTING:
            for line in resource.rows:
                _add(found, (line.variant_id, line.location_id), line.quantity)
        elif isinstance(resource, _ManufacturingOrder) and resource.status in MO_OPEN:
            for row_id in resource.recipe_row_ids:
                row = self._recipe_rows.rows[row_id]
                need = row.planned_quantity_per_unit * resource.planned_quantity
                _add(found, (row.variant_id, resource.location_id), need)
        elif isinstance(resource, _StockTransfer) and resource.status == TRANSFER_DRAFT:
            for line in resource.rows:
                _add(found, (line.variant_id, resource.source_location_id), line.quantity)
        elif isinstance(resource, _PurchaseOrder) and resource.status == PO_OPEN:
            # An outsourced order holds the ingredients the subcontractor will use.
            for ingredient, made in self._outsourced_needs(resource):
                need = ingredient.planned_quantity_per_unit * made.quantity
                _add(found, (ingredient.ingredient_variant_id, resource.location_id), need)
        return found

    def _outsourced_needs(
        self, order: _PurchaseOrder
    ) -> Iterator[tuple[_OutsourcedRecipeRow, _Line]]:
        """Each live recipe row of an outsourced order with the order row it is made into."""
        made = {line.id: line for line in order.rows}
        for row_id in order.recipe_row_ids:
            row = self._outsourced_recipe_rows.rows[row_id]
            if row.deleted_at is None and row.purchase_order_row_id in made:
                yield row, made[row.purchase_order_row_id]

    def _expectations(self, resource: _Record) -> dict[StockKey, Decimal]:
        """What a resource will bring in (open purchase and manufacturing orders)."""
        found: dict[StockKey, Decimal] = {}
        if resource.deleted_at is not None:
            return found
        if isinstance(resource, _PurchaseOrder) and resource.status == PO_OPEN:
            for line in resource.rows:
                _add(found, (line.variant_id, resource.location_id), line.quantity)
        elif isinstance(resource, _ManufacturingOrder) and resource.status in MO_OPEN:
            _add(found, (resource.variant_id, resource.location_id), resource.planned_quantity)
        return found

    def _settle(
        self,
        resource: _Record,
        committed_before: dict[StockKey, Decimal],
        expected_before: dict[StockKey, Decimal],
    ) -> None:
        """Apply the change in what `resource` commits and expects since the `before` snapshot."""
        for totals, before, after in (
            (self._committed, committed_before, self._commitments(resource)),
            (self._expected, expected_before, self._expectations(resource)),
        ):
            for key, amount in before.items():
                _add(totals, key, -amount)
            for key, amount in after.items():
                _add(totals, key, amount)

    # ---- sales orders --------------------------------------------------------------------

    def create_sales_order(
        self,
        rows: Sequence[tuple[int, Quantity]],
        location_id: int,
        status: str = "NOT_SHIPPED",
    ) -> int:
        """Create a sales order (rows of (variant id, quantity)) at a location; its id."""
        self._check_sales_status(status)
        self._locations.live(location_id, "location")
        wanted = self._row_specs(rows)
        at = self._tick()
        order_id = self._next_id("sales_order")
        order = _SalesOrder(
            id=order_id,
            order_no=f"SO-{order_id}",
            status="PENDING",
            location_id=location_id,
            rows=self._new_lines(wanted, location_id, at, order_id, self._sales_order_rows),
            created_at=at,
            updated_at=at,
        )
        self._sales_orders.add(order)
        self._sales_by_status["PENDING"][order_id] = None
        self._change_sales_status(order, status, at)
        return order_id

    def update_sales_order(
        self,
        order_id: int,
        *,
        rows: Sequence[tuple[int, Quantity]] | None = None,
        status: str | None = None,
        location_id: int | None = None,
    ) -> None:
        """Edit an order: replace its rows, move it, or change its status.

        Rows are edited in place by position (keeping their ids); rows beyond the new list are
        deleted, extra ones added. Packing (PACKED/DELIVERED) takes the stock out; reverting a
        packed order puts it back. Rows and location of a packed order cannot change: revert it
        first, as in Katana.
        """
        order = self._sales_orders.live(order_id, "sales order")
        if status is not None:
            self._check_sales_status(status)
        if (rows is not None or location_id is not None) and order.status in SALES_FULFILLED:
            raise ValueError(f"sales order {order_id} is {order.status}: revert it to edit rows")
        if location_id is not None:
            self._locations.live(location_id, "location")
        wanted = None if rows is None else self._row_specs(rows)
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        if location_id is not None:
            order.location_id = location_id
            for line in order.rows:
                line.location_id = location_id
                self._sales_order_rows.touch(line, at)
        if wanted is not None:
            kept = order.rows[: len(wanted)]
            for line, (variant_id, amount) in zip(kept, wanted, strict=False):
                line.variant_id, line.quantity = variant_id, amount
                self._sales_order_rows.touch(line, at)
            for line in order.rows[len(wanted) :]:
                line.deleted_at = at
                self._sales_order_rows.touch(line, at)
            extra = wanted[len(kept) :]
            order.rows = kept + self._new_lines(
                extra, order.location_id, at, order.id, self._sales_order_rows
            )
        self._settle(order, committed, expected)
        self._sales_orders.touch(order, at)
        if status is not None and status != order.status:
            self._change_sales_status(order, status, at)

    def pack_sales_order(self, order_id: int) -> None:
        """Mark an order PACKED: its stock leaves in-stock (and its commitment ends)."""
        self.update_sales_order(order_id, status="PACKED")

    def deliver_sales_order(self, order_id: int) -> None:
        """Mark an order DELIVERED (packing it first if it was not)."""
        self.update_sales_order(order_id, status="DELIVERED")

    def delete_sales_order(self, order_id: int) -> None:
        """Delete an unfulfilled order, releasing its commitment (seen with include_deleted).

        Its rows are deleted with it (listed by /sales_order_rows with include_deleted).
        """
        order = self._sales_orders.live(order_id, "sales order")
        if order.status in SALES_FULFILLED:
            raise ValueError(f"sales order {order_id} is {order.status}: revert it first")
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        order.deleted_at = at
        for line in order.rows:
            line.deleted_at = at
            self._sales_order_rows.touch(line, at)
        self._settle(order, committed, expected)
        self._sales_orders.touch(order, at)
        self._sales_by_status[order.status].pop(order_id, None)

    # Row by row, as /sales_order_rows does it: the order itself is not touched (its updated_at
    # stays) and no movement is written, yet committed moves.

    def add_sales_order_row(self, order_id: int, variant_id: int, quantity: Quantity) -> int:
        """Add a row to an open order; the new row's id."""
        order = self._row_editable_order(order_id)
        wanted = self._row_specs([(variant_id, quantity)])
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        [line] = self._new_lines(wanted, order.location_id, at, order.id, self._sales_order_rows)
        order.rows.append(line)
        self._settle(order, committed, expected)
        return line.id

    def update_sales_order_row(
        self,
        row_id: int,
        *,
        variant_id: int | None = None,
        quantity: Quantity | None = None,
        location_id: int | None = None,
    ) -> None:
        """Edit one row of an open order: re-point it to another variant, change its quantity
        or the location it ships from."""
        line = self._sales_order_rows.live(row_id, "sales order row")
        order = self._row_editable_order(line.parent_id)
        if location_id is not None:
            self._locations.live(location_id, "location")
            if line.linked_manufacturing_order_id is not None:
                raise ValueError(f"sales order row {row_id} is made to order: unlink it first")
        [(new_variant, amount)] = self._row_specs(
            [
                (
                    line.variant_id if variant_id is None else variant_id,
                    line.quantity if quantity is None else quantity,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        line.variant_id, line.quantity = new_variant, amount
        if location_id is not None:
            line.location_id = location_id
        self._sales_order_rows.touch(line, at)
        self._settle(order, committed, expected)

    def delete_sales_order_row(self, row_id: int) -> None:
        """Delete one row of an open order (listed with include_deleted)."""
        line = self._sales_order_rows.live(row_id, "sales order row")
        order = self._row_editable_order(line.parent_id)
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        line.deleted_at = at
        self._sales_order_rows.touch(line, at)
        order.rows.remove(line)
        self._settle(order, committed, expected)

    def _row_editable_order(self, order_id: int) -> _SalesOrder:
        order = self._sales_orders.live(order_id, "sales order")
        if order.status not in SALES_ROW_EDITABLE:
            raise ValueError(
                f"sales order {order_id} is {order.status}: its rows can change only while "
                f"{' or '.join(sorted(SALES_ROW_EDITABLE))}"
            )
        return order

    def make_to_order(self, row_id: int) -> int:
        """Create a manufacturing order for a sales-order row, linked to it; its id."""
        line = self._sales_order_rows.live(row_id, "sales order row")
        self._row_editable_order(line.parent_id)
        if line.linked_manufacturing_order_id is not None:
            raise ValueError(f"sales order row {row_id} is already made to order")
        mo_id = self.create_manufacturing_order(line.variant_id, line.location_id, line.quantity)
        mo = self._manufacturing_orders.rows[mo_id]
        mo.sales_order_row_id, line.linked_manufacturing_order_id = row_id, mo_id
        self._sales_order_rows.touch(line, mo.created_at)
        return mo_id

    def unlink_manufacturing_order(self, row_id: int) -> None:
        """POST /manufacturing_order_unlink: the order and the row forget each other.

        Both are updated; no stock moves and nothing else changes (the row still commits).
        """
        line = self._sales_order_rows.live(row_id, "sales order row")
        mo_id = line.linked_manufacturing_order_id
        if mo_id is None:
            raise ValueError(f"sales order row {row_id} is not linked to a manufacturing order")
        mo = self._manufacturing_orders.get(mo_id, "manufacturing order")
        at = self._tick()
        line.linked_manufacturing_order_id, mo.sales_order_row_id = None, None
        self._sales_order_rows.touch(line, at)
        self._manufacturing_orders.touch(mo, at)

    def _check_sales_status(self, status: str) -> None:
        if status not in SALES_STATUSES:
            raise ValueError(f"unknown sales order status {status!r}")

    def _row_specs(self, rows: Sequence[tuple[int, Quantity]]) -> list[tuple[int, Decimal]]:
        """Rows checked before an event changes anything: live variants, positive quantities."""
        if not rows:
            raise ValueError("a document needs at least one row")
        wanted = []
        for variant_id, quantity in rows:
            self._variants.live(variant_id, "variant")
            amount = _decimal(quantity)
            if amount <= 0:
                raise ValueError(f"row quantity must be positive, got {amount}")
            wanted.append((variant_id, amount))
        return wanted

    def _new_lines(
        self,
        wanted: Sequence[tuple[int, Decimal]],
        location_id: int,
        at: datetime,
        parent_id: int,
        table: _Table[_Line] | None = None,
    ) -> list[_Line]:
        lines = [self._line(v, amount, location_id, at, parent_id) for v, amount in wanted]
        if table is not None:
            for line in lines:
                table.add(line)
        return lines

    def _change_sales_status(self, order: _SalesOrder, status: str, at: datetime) -> None:
        old = order.status
        committed, expected = self._commitments(order), self._expectations(order)
        order.status = status
        self._settle(order, committed, expected)
        self._sales_orders.touch(order, at)
        self._sales_by_status[old].pop(order.id, None)
        self._sales_by_status[status][order.id] = None
        shipping = status in SALES_FULFILLED and old not in SALES_FULFILLED
        returning = old in SALES_FULFILLED and status not in SALES_FULFILLED
        if not (shipping or returning):
            return
        cause = _Cause(at, order.order_no, order.id)
        for line in order.rows:
            if shipping:
                self._assemble_if_short(cause, line)
            delta = -line.quantity if shipping else line.quantity
            self._move(cause, "SalesOrderRow", line.id, line.variant_id, line.location_id, delta)

    def _assemble_if_short(self, cause: _Cause, line: _Line) -> None:
        """Auto-assembly: packing a kit beyond its in-stock builds the rest from its recipe."""
        if not self.is_kit(line.variant_id):
            return
        short = line.quantity - max(self.in_stock(line.variant_id, line.location_id), ZERO)
        if short <= 0:
            return
        for entry in self._bom_by_kit.get(line.variant_id, {}).values():
            used = -entry.quantity * short
            ingredient = entry.ingredient_variant_id
            self._move(cause, "ProductionIngredient", line.id, ingredient, line.location_id, used)
        self._move(cause, "Production", line.id, line.variant_id, line.location_id, short)

    # ---- manufacturing orders ------------------------------------------------------------

    def create_manufacturing_order(
        self, variant_id: int, location_id: int, quantity: Quantity, status: str = "NOT_STARTED"
    ) -> int:
        """Plan production of a product variant; commits its recipe's ingredients. Its id."""
        variant = self._variants.live(variant_id, "variant")
        self._locations.live(location_id, "location")
        if variant.product_id is None:
            raise ValueError(f"variant {variant_id} is a material: it cannot be manufactured")
        if status not in MO_OPEN:
            raise ValueError(f"a new manufacturing order must be open, not {status!r}")
        amount = _decimal(quantity)
        if amount <= 0:
            raise ValueError(f"planned quantity must be positive, got {amount}")
        at = self._tick()
        mo_id = self._next_id("manufacturing_order")
        mo = _ManufacturingOrder(
            id=mo_id,
            order_no=f"MO-{mo_id}",
            status=status,
            variant_id=variant_id,
            location_id=location_id,
            planned_quantity=amount,
            created_at=at,
            updated_at=at,
        )
        for entry in self._bom_by_kit.get(variant_id, {}).values():
            row = _RecipeRow(
                id=self._next_id("recipe_row"),
                manufacturing_order_id=mo_id,
                variant_id=entry.ingredient_variant_id,
                planned_quantity_per_unit=entry.quantity,
                created_at=at,
                updated_at=at,
            )
            self._recipe_rows.add(row)
            mo.recipe_row_ids.append(row.id)
        self._manufacturing_orders.add(mo)
        self._settle(mo, {}, {})
        self._open_mos[mo_id] = None
        return mo_id

    def set_manufacturing_order_status(self, mo_id: int, status: str) -> None:
        """Move an open manufacturing order between NOT_STARTED, IN_PROGRESS and BLOCKED."""
        mo = self._open_mo(mo_id)
        if status not in MO_OPEN:
            raise ValueError(f"use complete_manufacturing_order for {status!r}")
        mo.status = status
        self._manufacturing_orders.touch(mo, self._tick())

    def complete_manufacturing_order(self, mo_id: int) -> None:
        """Finish production: ingredients are consumed and the product is added (movements)."""
        mo = self._open_mo(mo_id)
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        mo.status, mo.actual_quantity, mo.done_date = MO_DONE, mo.planned_quantity, at
        for row_id in mo.recipe_row_ids:
            row = self._recipe_rows.rows[row_id]
            row.total_actual_quantity = row.planned_quantity_per_unit * mo.planned_quantity
            self._recipe_rows.touch(row, at)
            self._move(
                _Cause(at, mo.order_no, mo.id),
                "ManufacturingOrderRecipeRow",
                row.id,
                row.variant_id,
                mo.location_id,
                -row.total_actual_quantity,
            )
        self._move(
            _Cause(at, mo.order_no, mo.id),
            "ManufacturingOrder",
            mo.id,
            mo.variant_id,
            mo.location_id,
            mo.planned_quantity,
        )
        self._settle(mo, committed, expected)
        self._manufacturing_orders.touch(mo, at)
        self._open_mos.pop(mo_id, None)

    def delete_manufacturing_order(self, mo_id: int) -> None:
        """Delete an open manufacturing order, releasing the ingredients it committed."""
        mo = self._open_mo(mo_id)
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        mo.deleted_at = at
        for row_id in mo.recipe_row_ids:
            row = self._recipe_rows.rows[row_id]
            row.deleted_at = at
            self._recipe_rows.touch(row, at)
        self._settle(mo, committed, expected)
        self._manufacturing_orders.touch(mo, at)
        self._open_mos.pop(mo_id, None)

    # Ingredient rows one by one (/manufacturing_order_recipe_rows): the order is not touched and
    # no movement is written, yet what it commits moves.

    def add_recipe_row(
        self, mo_id: int, variant_id: int, planned_quantity_per_unit: Quantity
    ) -> int:
        """Add an ingredient to an open manufacturing order; the new row's id."""
        mo = self._open_mo(mo_id)
        [(ingredient, per_unit)] = self._row_specs([(variant_id, planned_quantity_per_unit)])
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        row = _RecipeRow(
            id=self._next_id("recipe_row"),
            manufacturing_order_id=mo_id,
            variant_id=ingredient,
            planned_quantity_per_unit=per_unit,
            created_at=at,
            updated_at=at,
        )
        self._recipe_rows.add(row)
        mo.recipe_row_ids.append(row.id)
        self._settle(mo, committed, expected)
        return row.id

    def update_recipe_row(
        self,
        row_id: int,
        *,
        variant_id: int | None = None,
        planned_quantity_per_unit: Quantity | None = None,
    ) -> None:
        """Re-point an ingredient row to another variant, or change how much a unit needs."""
        row = self._recipe_rows.live(row_id, "recipe row")
        mo = self._open_mo(row.manufacturing_order_id)
        [(ingredient, per_unit)] = self._row_specs(
            [
                (
                    row.variant_id if variant_id is None else variant_id,
                    row.planned_quantity_per_unit
                    if planned_quantity_per_unit is None
                    else planned_quantity_per_unit,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        row.variant_id, row.planned_quantity_per_unit = ingredient, per_unit
        self._recipe_rows.touch(row, at)
        self._settle(mo, committed, expected)

    def delete_recipe_row(self, row_id: int) -> None:
        """Remove an ingredient row from an open manufacturing order (listed as deleted)."""
        row = self._recipe_rows.live(row_id, "recipe row")
        mo = self._open_mo(row.manufacturing_order_id)
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        row.deleted_at = at
        self._recipe_rows.touch(row, at)
        mo.recipe_row_ids.remove(row_id)
        self._settle(mo, committed, expected)

    def _open_mo(self, mo_id: int) -> _ManufacturingOrder:
        mo = self._manufacturing_orders.live(mo_id, "manufacturing order")
        if mo.status not in MO_OPEN:
            raise ValueError(f"manufacturing order {mo_id} is {mo.status}")
        return mo

    # ---- transfers and purchases -----------------------------------------------------------

    def create_stock_transfer(
        self, rows: Sequence[tuple[int, Quantity]], from_location: int, to_location: int
    ) -> int:
        """Start a transfer as a draft: it commits its rows at the source. Its id."""
        at = self._tick()
        return self._new_transfer(rows, from_location, to_location, at).id

    def ship_stock_transfer(self, transfer_id: int) -> None:
        """Send a draft transfer on its way (inTransit): the stock leaves the source."""
        transfer = self._transfers.live(transfer_id, "stock transfer")
        if transfer.status != TRANSFER_DRAFT:
            raise ValueError(f"stock transfer {transfer_id} is {transfer.status}")
        at = self._tick()
        committed, expected = self._commitments(transfer), self._expectations(transfer)
        transfer.status = TRANSFER_IN_TRANSIT
        self._move_transfer(transfer, at, source=True, target=False)
        self._settle(transfer, committed, expected)
        self._transfers.touch(transfer, at)

    def complete_stock_transfer(self, transfer_id: int) -> None:
        """Receive a draft or in-transit transfer: the stock arrives at the target."""
        transfer = self._transfers.live(transfer_id, "stock transfer")
        if transfer.status == TRANSFER_RECEIVED:
            raise ValueError(f"stock transfer {transfer_id} is {transfer.status}")
        self._finish_transfer(transfer, self._tick())

    def delete_stock_transfer(self, transfer_id: int) -> None:
        """Delete a draft transfer, releasing what it committed (seen with include_deleted)."""
        transfer = self._transfers.live(transfer_id, "stock transfer")
        if transfer.status != TRANSFER_DRAFT:
            raise ValueError(f"stock transfer {transfer_id} is {transfer.status}")
        at = self._tick()
        committed, expected = self._commitments(transfer), self._expectations(transfer)
        transfer.deleted_at = at
        self._settle(transfer, committed, expected)
        self._transfers.touch(transfer, at)
        self._open_transfers.pop(transfer.id, None)

    def transfer_stock(
        self, variant_id: int, from_location: int, to_location: int, quantity: Quantity
    ) -> int:
        """Move stock between locations in one step (movements at both); the transfer id."""
        at = self._tick()
        transfer = self._new_transfer([(variant_id, quantity)], from_location, to_location, at)
        self._finish_transfer(transfer, at)
        return transfer.id

    def _new_transfer(
        self,
        rows: Sequence[tuple[int, Quantity]],
        from_location: int,
        to_location: int,
        at: datetime,
    ) -> _StockTransfer:
        self._locations.live(from_location, "location")
        self._locations.live(to_location, "location")
        if from_location == to_location:
            raise ValueError("a transfer needs two different locations")
        wanted = self._row_specs(rows)
        transfer_id = self._next_id("stock_transfer")
        transfer = _StockTransfer(
            id=transfer_id,
            number=f"ST-{transfer_id}",
            status=TRANSFER_DRAFT,
            source_location_id=from_location,
            target_location_id=to_location,
            rows=self._new_lines(wanted, from_location, at, transfer_id),
            created_at=at,
            updated_at=at,
        )
        self._transfers.add(transfer)
        # A draft from birth, even when received in the same event: receiving releases this.
        self._settle(transfer, {}, {})
        self._open_transfers[transfer.id] = None
        return transfer

    def _finish_transfer(self, transfer: _StockTransfer, at: datetime) -> None:
        committed, expected = self._commitments(transfer), self._expectations(transfer)
        # A draft still holds its stock at the source; in transit, it has already left.
        from_draft = transfer.status == TRANSFER_DRAFT
        transfer.status = TRANSFER_RECEIVED
        self._move_transfer(transfer, at, source=from_draft, target=True)
        self._settle(transfer, committed, expected)
        self._transfers.touch(transfer, at)
        self._open_transfers.pop(transfer.id, None)

    def _move_transfer(
        self, transfer: _StockTransfer, at: datetime, *, source: bool, target: bool
    ) -> None:
        for line in transfer.rows:
            for location_id, delta, moves in (
                (transfer.source_location_id, -line.quantity, source),
                (transfer.target_location_id, line.quantity, target),
            ):
                if moves:
                    self._move(
                        _Cause(at, transfer.number, transfer.id),
                        "StockTransferRow",
                        line.id,
                        line.variant_id,
                        location_id,
                        delta,
                    )

    def create_purchase_order(self, rows: Sequence[tuple[int, Quantity]], location_id: int) -> int:
        """Order stock from a supplier (NOT_RECEIVED): it shows as expected. Its id."""
        return self._new_purchase_order(rows, location_id, self._tick()).id

    def create_outsourced_purchase_order(
        self, variant_id: int, location_id: int, quantity: Quantity
    ) -> int:
        """Order a product from a subcontractor who makes it from our ingredients (its recipe).

        Until received the ingredients are committed, like a manufacturing order's; receiving
        consumes them (PurchaseOrderRecipeRow movements) and adds the product. Its id.
        """
        variant = self._variants.live(variant_id, "variant")
        if variant.product_id is None:
            raise ValueError(f"variant {variant_id} is a material: it cannot be outsourced")
        at = self._tick()
        return self._new_purchase_order(
            [(variant_id, quantity)], location_id, at, outsourced=True
        ).id

    def mark_purchase_order_received(self, order_id: int) -> None:
        """Receive an open purchase order: its rows enter in-stock (movements)."""
        order = self._purchase_orders.live(order_id, "purchase order")
        if order.status != PO_OPEN:
            raise ValueError(f"purchase order {order_id} is {order.status}")
        self._receive(order, self._tick())

    def receive_purchase_order(self, rows: Sequence[tuple[int, Quantity]], location_id: int) -> int:
        """Create and receive a purchase order in one step; its id."""
        at = self._tick()
        order = self._new_purchase_order(rows, location_id, at)
        self._receive(order, at)
        return order.id

    # Rows one by one (/purchase_order_rows, /outsourced_purchase_order_recipe_rows): the order
    # is not touched.

    def update_purchase_order_row(
        self, row_id: int, *, variant_id: int | None = None, quantity: Quantity | None = None
    ) -> None:
        """Edit a row not yet received (updatepurchaseorderrow.md: only while received_date is
        null): only what is expected moves."""
        line = self._purchase_order_rows.live(row_id, "purchase order row")
        if line.received_date is not None:
            raise ValueError(f"purchase order row {row_id} is received: it cannot be edited")
        order = self._purchase_orders.live(line.parent_id, "purchase order")
        [(new_variant, amount)] = self._row_specs(
            [
                (
                    line.variant_id if variant_id is None else variant_id,
                    line.quantity if quantity is None else quantity,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        line.variant_id, line.quantity = new_variant, amount
        self._purchase_order_rows.touch(line, at)
        self._settle(order, committed, expected)

    def delete_purchase_order_row(self, row_id: int) -> None:
        """Delete a row of a regular purchase order. A received row takes its stock back, and
        its receipt movement is withdrawn (see delete_stock_adjustment)."""
        line = self._purchase_order_rows.live(row_id, "purchase order row")
        order = self._purchase_orders.live(line.parent_id, "purchase order")
        if order.entity_type == "outsourced":
            raise ValueError(f"purchase order {order.id} is outsourced: its product row stays")
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        if line.received_date is not None:
            self._withdraw("PurchaseOrderRow", {line.id})
        line.deleted_at = at
        self._purchase_order_rows.touch(line, at)
        order.rows.remove(line)
        self._settle(order, committed, expected)

    def update_outsourced_recipe_row(
        self,
        row_id: int,
        *,
        variant_id: int | None = None,
        planned_quantity_per_unit: Quantity | None = None,
    ) -> None:
        """Re-point an open outsourced order's ingredient, or change how much a unit needs."""
        row = self._outsourced_recipe_rows.live(row_id, "outsourced recipe row")
        order = self._open_purchase_order(row.purchase_order_id)
        [(ingredient, per_unit)] = self._row_specs(
            [
                (
                    row.ingredient_variant_id if variant_id is None else variant_id,
                    row.planned_quantity_per_unit
                    if planned_quantity_per_unit is None
                    else planned_quantity_per_unit,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        row.ingredient_variant_id, row.planned_quantity_per_unit = ingredient, per_unit
        self._outsourced_recipe_rows.touch(row, at)
        self._settle(order, committed, expected)

    def delete_outsourced_recipe_row(self, row_id: int) -> None:
        """Remove an ingredient from an open outsourced order (listed as deleted)."""
        row = self._outsourced_recipe_rows.live(row_id, "outsourced recipe row")
        order = self._open_purchase_order(row.purchase_order_id)
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        row.deleted_at = at
        self._outsourced_recipe_rows.touch(row, at)
        order.recipe_row_ids.remove(row_id)
        self._settle(order, committed, expected)

    def _open_purchase_order(self, order_id: int) -> _PurchaseOrder:
        order = self._purchase_orders.live(order_id, "purchase order")
        if order.status != PO_OPEN:
            raise ValueError(f"purchase order {order_id} is {order.status}")
        return order

    def _new_purchase_order(
        self,
        rows: Sequence[tuple[int, Quantity]],
        location_id: int,
        at: datetime,
        *,
        outsourced: bool = False,
    ) -> _PurchaseOrder:
        self._locations.live(location_id, "location")
        wanted = self._row_specs(rows)
        order_id = self._next_id("purchase_order")
        order = _PurchaseOrder(
            id=order_id,
            order_no=f"PO-{order_id}",
            status=PO_OPEN,
            location_id=location_id,
            rows=self._new_lines(wanted, location_id, at, order_id, self._purchase_order_rows),
            entity_type="outsourced" if outsourced else "regular",
            created_at=at,
            updated_at=at,
        )
        if outsourced:
            for line in order.rows:
                for entry in self._bom_by_kit.get(line.variant_id, {}).values():
                    row = _OutsourcedRecipeRow(
                        id=self._next_id("outsourced_recipe_row"),
                        purchase_order_id=order_id,
                        purchase_order_row_id=line.id,
                        ingredient_variant_id=entry.ingredient_variant_id,
                        planned_quantity_per_unit=entry.quantity,
                        created_at=at,
                        updated_at=at,
                    )
                    self._outsourced_recipe_rows.add(row)
                    order.recipe_row_ids.append(row.id)
        self._purchase_orders.add(order)
        # Expected from birth, even when received in the same event: receiving releases this.
        self._settle(order, {}, {})
        self._open_pos[order.id] = None
        return order

    def _receive(self, order: _PurchaseOrder, at: datetime) -> None:
        committed, expected = self._commitments(order), self._expectations(order)
        cause = _Cause(at, order.order_no, order.id)
        for row, made in list(self._outsourced_needs(order)):
            used = -row.planned_quantity_per_unit * made.quantity
            self._move(
                cause,
                "PurchaseOrderRecipeRow",
                row.id,
                row.ingredient_variant_id,
                order.location_id,
                used,
            )
        order.status = PO_DONE
        for line in order.rows:
            line.received_date = at
            self._purchase_order_rows.touch(line, at)
            self._move(
                cause,
                "PurchaseOrderRow",
                line.id,
                line.variant_id,
                order.location_id,
                line.quantity,
            )
        self._settle(order, committed, expected)
        self._purchase_orders.touch(order, at)
        self._open_pos.pop(order.id, None)

    # ---- reads (for oracles, scenario drivers and the HTTP layer) ----------------------------

    def location_names(self) -> dict[int, str]:
        """Live locations, id -> name."""
        return {lo.id: lo.name for lo in self._locations.created if lo.deleted_at is None}

    def location_id(self, name: str) -> int:
        """The id of the live location with this name."""
        for location_id, location_name in self.location_names().items():
            if location_name == name:
                return location_id
        raise ValueError(f"no location named {name!r}")

    def variants(self) -> list[SimVariant]:
        """Every variant ever created (deleted ones too), in creation order."""
        return [self.variant(v.id) for v in self._variants.created]

    def variant(self, variant_id: int) -> SimVariant:
        """A read-only view of one variant."""
        row = self._variants.get(variant_id, "variant")
        parent = self._parent(row)
        return SimVariant(
            id=row.id,
            sku=row.sku,
            product_id=row.product_id,
            material_id=row.material_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deleted=row.deleted_at is not None,
            archived=parent is not None and parent.archived_at is not None,
            is_kit=parent is not None and parent.kind == "product" and parent.is_auto_assembly,
        )

    def _parent(self, row: _Variant) -> _Item | None:
        if row.product_id is not None:
            return self._products.rows.get(row.product_id)
        if row.material_id is not None:
            return self._materials.rows.get(row.material_id)
        return None

    def is_kit(self, variant_id: int) -> bool:
        """True when the variant's product is auto-assembled (a kit or bundle)."""
        row = self._variants.rows.get(variant_id)
        parent = None if row is None else self._parent(row)
        return parent is not None and parent.kind == "product" and parent.is_auto_assembly

    def recipe(self, kit_variant_id: int) -> dict[int, Decimal]:
        """A kit's live recipe: ingredient variant id -> quantity per kit."""
        return {
            e.ingredient_variant_id: e.quantity
            for e in self._bom_by_kit.get(kit_variant_id, {}).values()
        }

    def kits_using(self, variant_ids: Iterable[int]) -> set[int]:
        """Kits whose potential depends on these variants, following nested kits."""
        found: set[int] = set()
        frontier = list(variant_ids)
        while frontier:
            for kit_id in self._kits_by_ingredient.get(frontier.pop(), ()):
                if kit_id not in found:
                    found.add(kit_id)
                    frontier.append(kit_id)
        return found

    def in_stock(self, variant_id: int, location_id: int) -> Decimal:
        """Physical stock of a variant at a location."""
        return self._in_stock.get((variant_id, location_id), ZERO)

    def committed(self, variant_id: int, location_id: int) -> Decimal:
        """Stock held back by open sales orders, manufacturing orders and transfers."""
        return self._committed.get((variant_id, location_id), ZERO)

    def expected(self, variant_id: int, location_id: int) -> Decimal:
        """Stock on its way from open purchase and manufacturing orders."""
        return self._expected.get((variant_id, location_id), ZERO)

    def potential(self, variant_id: int, location_id: int) -> Decimal | None:
        """Kits that could be assembled from free component stock (None for non-kits)."""
        if not self.is_kit(variant_id):
            return None
        entries = self._bom_by_kit.get(variant_id, {})
        if not entries:
            return ZERO
        best: Decimal | None = None
        for entry in entries.values():
            ingredient = entry.ingredient_variant_id
            free = self.in_stock(ingredient, location_id) - self.committed(ingredient, location_id)
            kits = (free / entry.quantity).to_integral_value(rounding=ROUND_FLOOR)
            best = kits if best is None else min(best, kits)
        return max(best or ZERO, ZERO)

    def stock_row(self, variant_id: int, location_id: int) -> Json:
        """The /inventory row of a variant at a location, exactly as the API serves it."""
        in_stock = self.in_stock(variant_id, location_id)
        committed = self.committed(variant_id, location_id)
        expected = self.expected(variant_id, location_id)
        potential = self.potential(variant_id, location_id)
        return {
            "variant_id": variant_id,
            "location_id": location_id,
            "reorder_point": quantity_text(ZERO),
            "safety_stock_level": quantity_text(ZERO),
            "average_cost": _money_text(ZERO),
            "value_in_stock": _money_text(ZERO),
            "quantity_in_stock": quantity_text(in_stock),
            "quantity_committed": quantity_text(committed),
            "quantity_expected": quantity_text(expected),
            "quantity_missing_or_excess": quantity_text(in_stock + expected - committed),
            "quantity_potential": None if potential is None else quantity_text(potential),
        }

    def sales_order_ids(self, statuses: Collection[str]) -> list[int]:
        """Live sales orders in any of these statuses, oldest first."""
        return [i for s in sorted(statuses) for i in self._sales_by_status.get(s, {})]

    def sales_order_rows(self, order_id: int) -> list[tuple[int, Decimal]]:
        """A sales order's rows as (variant id, quantity)."""
        order = self._sales_orders.get(order_id, "sales order")
        return [(line.variant_id, line.quantity) for line in order.rows]

    def sales_order_row_ids(self, order_id: int) -> list[int]:
        """The ids of a sales order's live rows, in order."""
        return [line.id for line in self._sales_orders.get(order_id, "sales order").rows]

    def recipe_row_ids(self, mo_id: int) -> list[int]:
        """The ids of a manufacturing order's live ingredient rows, in order."""
        return list(self._manufacturing_orders.get(mo_id, "manufacturing order").recipe_row_ids)

    def recipe_row_variant(self, row_id: int) -> int:
        """The ingredient variant of a manufacturing order's ingredient row."""
        return self._recipe_rows.get(row_id, "recipe row").variant_id

    def purchase_order_row_ids(self, order_id: int) -> list[int]:
        """The ids of a purchase order's live rows, in order."""
        return [line.id for line in self._purchase_orders.get(order_id, "purchase order").rows]

    def outsourced_recipe_row_ids(self, order_id: int) -> list[int]:
        """The ids of an outsourced purchase order's live ingredient rows, in order."""
        return list(self._purchase_orders.get(order_id, "purchase order").recipe_row_ids)

    def sales_order_location(self, order_id: int) -> int:
        """The location a sales order ships from."""
        return self._sales_orders.get(order_id, "sales order").location_id

    def open_manufacturing_order_ids(self) -> list[int]:
        """Manufacturing orders not yet done or deleted, oldest first."""
        return list(self._open_mos)

    def open_stock_transfer_ids(self) -> list[int]:
        """Transfers not yet completed, oldest first."""
        return list(self._open_transfers)

    def open_purchase_order_ids(self) -> list[int]:
        """Purchase orders not yet received, oldest first."""
        return list(self._open_pos)

    def manufacturing_order_variant(self, mo_id: int) -> tuple[int, int]:
        """(produced variant id, location id) of a manufacturing order."""
        mo = self._manufacturing_orders.get(mo_id, "manufacturing order")
        return mo.variant_id, mo.location_id

    def inventory_variant_ids(self, include_archived: bool = False) -> list[int]:
        """Variants /inventory lists, ascending: live, and not archived unless asked."""
        # Only catalogue changes invalidate it; orders and stock movements do not.
        token = (self._variants.revision, self._products.revision, self._materials.revision)
        cached = self._visible_cache.get(include_archived)
        if cached is not None and cached[0] == token:
            return cached[1]
        visible = [
            v.id for v in self._variants.created if self.in_inventory(v.id, include_archived)
        ]
        self._visible_cache[include_archived] = (token, visible)
        return visible

    def in_inventory(self, variant_id: int, include_archived: bool = False) -> bool:
        """Whether /inventory lists this variant: live, and not archived unless asked."""
        row = self._variants.rows.get(variant_id)
        if row is None or row.deleted_at is not None:
            return False
        return include_archived or not self._archived(row)

    def _archived(self, row: _Variant) -> bool:
        parent = self._parent(row)
        return parent is not None and parent.archived_at is not None

    def app(self) -> web.Application:
        """The REST API (mounted under /v1) serving this account."""
        return _KatanaApi(self).application()


# --------------------------------------------------------------------------------------------
# The HTTP API
# --------------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A bad query parameter value: Katana answers 422 VALIDATION_FAILED."""

    def __init__(self, name: str, code: str, message: str, info: Json) -> None:
        super().__init__(message)
        self.detail: Json = {"path": f".{name}", "code": code, "message": message, "info": info}


@dataclass(frozen=True, slots=True)
class _ListQuery:
    ids: tuple[int, ...] | None
    created_min: datetime | None
    created_max: datetime | None
    updated_min: datetime | None
    updated_max: datetime | None
    include_deleted: bool
    limit: int
    page: int


class _Params:
    """Typed access to a request's query string, raising _Invalid like Katana's validator."""

    def __init__(self, request: web.Request) -> None:
        self._query = request.query

    def has(self, name: str) -> bool:
        return name in self._query

    def text(self, name: str) -> str | None:
        return self._query.get(name)

    def texts(self, name: str) -> list[str]:
        return list(self._query.getall(name, []))

    def integer(self, name: str, *, minimum: int | None = None) -> int | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        value = self._parse_int(name, raw)
        if minimum is not None and value < minimum:
            raise _Invalid(name, "minimum", f"should be >= {minimum}", {"limit": minimum})
        return value

    def integers(self, name: str) -> tuple[int, ...] | None:
        """An array: repeated keys (`a=1&a=2`) and comma lists (`a=1,2`) both work."""
        raw = self._query.getall(name, [])
        if not raw:
            return None
        parts = [p.strip() for value in raw for p in value.split(",") if p.strip()]
        return tuple(dict.fromkeys(self._parse_int(name, p) for p in parts))

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self._query.get(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise _Invalid(name, "type", "should be boolean", {"type": "boolean"})

    def timestamp(self, name: str) -> datetime | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise _Invalid(
                name, "format", 'should match format "date-time"', {"format": "date-time"}
            ) from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @staticmethod
    def _parse_int(name: str, raw: str) -> int:
        if not _INTEGER.fullmatch(raw.strip()):
            raise _Invalid(name, "type", "should be integer", {"type": "integer"})
        return int(raw)

    def list_query(self, *, with_ids: bool = True) -> _ListQuery:
        limit = self.integer("limit", minimum=1)
        page = self.integer("page", minimum=1)
        return _ListQuery(
            ids=self.integers("ids") if with_ids else None,
            created_min=self.timestamp("created_at_min"),
            created_max=self.timestamp("created_at_max"),
            updated_min=self.timestamp("updated_at_min"),
            updated_max=self.timestamp("updated_at_max"),
            include_deleted=self.boolean("include_deleted"),
            # Katana cuts an oversized limit to the maximum without complaining.
            limit=min(limit or DEFAULT_LIMIT, MAX_LIMIT),
            page=page or 1,
        )


Predicate = Callable[[Any], bool]
_PAGING = frozenset({"limit", "page"})


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One list endpoint: its table, its own filters, and how a row is rendered."""

    table: _Table[Any]
    render: Callable[[Any], Json]
    filters: Callable[[_Params], list[Predicate]]
    uuid_ids: bool = False  # /bom_rows ids are UUID strings
    # Other tables whose changes can change which rows match (archiving hides variants).
    also: tuple[_Table[Any], ...] = ()

    def revision(self) -> tuple[int, ...]:
        return (self.table.revision, *(t.revision for t in self.also))


def _equals(attr: str, value: object) -> Predicate:
    return lambda row: getattr(row, attr) == value


def _not_before(attr: str, bound: datetime) -> Predicate:
    return lambda row: bool(getattr(row, attr) >= bound)


def _not_after(attr: str, bound: datetime) -> Predicate:
    return lambda row: bool(getattr(row, attr) <= bound)


class _KatanaApi:
    """Routes, auth, rate limit and faults in front of a KatanaSim."""

    def __init__(self, sim: KatanaSim) -> None:
        self.sim = sim
        self._window: list[float] = []  # monotonic times of the requests in the last 60 s
        self._cache: OrderedDict[tuple[Any, ...], tuple[tuple[int, ...], list[Any]]] = OrderedDict()
        self.endpoints: dict[str, _Endpoint] = {
            "locations": _Endpoint(sim._locations, self._location, lambda p: []),
            "products": _Endpoint(sim._products, self._item, self._item_filters),
            "materials": _Endpoint(sim._materials, self._item, self._item_filters),
            "variants": _Endpoint(
                sim._variants,
                self._variant,
                self._variant_filters,
                also=(sim._products, sim._materials),
            ),
            "bom_rows": _Endpoint(sim._bom, self._bom_row, self._bom_filters, uuid_ids=True),
            "inventory_movements": _Endpoint(
                sim._movements, self._movement, self._movement_filters
            ),
            # An order lists its rows, which change on their own: the cache follows them too.
            "sales_orders": _Endpoint(
                sim._sales_orders,
                self._sales_order,
                self._order_filters,
                also=(sim._sales_order_rows,),
            ),
            "sales_order_rows": _Endpoint(
                sim._sales_order_rows, self._sales_order_row, self._sales_row_filters
            ),
            "manufacturing_orders": _Endpoint(
                sim._manufacturing_orders, self._manufacturing_order, self._order_filters
            ),
            "manufacturing_order_recipe_rows": _Endpoint(
                sim._recipe_rows, self._recipe_row, self._recipe_filters
            ),
            "stock_transfers": _Endpoint(sim._transfers, self._transfer, lambda p: []),
            "stock_adjustments": _Endpoint(
                sim._adjustments, self._adjustment, self._location_filter
            ),
            "purchase_orders": _Endpoint(
                sim._purchase_orders,
                self._purchase_order,
                self._order_filters,
                also=(sim._purchase_order_rows,),
            ),
            "purchase_order_rows": _Endpoint(
                sim._purchase_order_rows, self._purchase_order_row, self._purchase_row_filters
            ),
            "outsourced_purchase_order_recipe_rows": _Endpoint(
                sim._outsourced_recipe_rows,
                self._outsourced_recipe_row,
                self._outsourced_recipe_filters,
            ),
        }

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/v1/inventory", self._inventory)
        for name in self.endpoints:
            app.router.add_get(f"/v1/{name}", self._list_handler(name))
            app.router.add_get(f"/v1/{name}/{{id}}", self._one_handler(name))
        return app

    # ---- transport: counters, faults, auth, rate limit -------------------------------------

    @web.middleware
    async def _gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._serve(request, handler)
        # The account's clock, as Katana's own Date header: a poller may set its cursors by it.
        response.headers["Date"] = formatdate(self.sim._clock().timestamp(), usegmt=True)
        return response

    async def _serve(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        sim, faults = self.sim, self.sim.faults
        sim.requests_total += 1
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        sim.requests_by_path[path.removeprefix("/v1")] += 1
        if faults.latency > 0:
            await sim._sleep(faults.latency)
        if faults.outage:
            return _error(503)
        if not self._authorized(request):
            return _error(401)
        if faults._fail > 0:
            faults._fail -= 1
            return _error(faults._fail_status)
        if faults._throttle > 0:
            faults._throttle -= 1
            sim.throttled_total += 1
            response = _error(429)
            response.headers["Retry-After"] = str(faults._throttle_retry_after)
            return response
        now = sim._monotonic()
        self._window = [t for t in self._window if t > now - WINDOW_SECONDS]
        if len(self._window) >= sim.requests_per_minute:
            sim.throttled_total += 1
            response = _error(429)
            wait = self._window[0] + WINDOW_SECONDS - now
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            self._rate_headers(response, now)
            return response
        self._window.append(now)
        served: web.StreamResponse
        try:
            served = await handler(request)
        except _Invalid as invalid:
            served = _error(422, details=[invalid.detail])
        except web.HTTPNotFound:
            served = _error(404)
        self._rate_headers(served, now)
        return served

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.sim.api_key.encode()
        )

    def _rate_headers(self, response: web.StreamResponse, now: float) -> None:
        limit = self.sim.requests_per_minute
        oldest = self._window[0] if self._window else now
        reset_ms = self.sim._clock().timestamp() * 1000 + (oldest + WINDOW_SECONDS - now) * 1000
        response.headers["X-Ratelimit-Limit"] = str(limit)
        response.headers["X-Ratelimit-Remaining"] = str(max(0, limit - len(self._window)))
        response.headers["X-Ratelimit-Reset"] = str(int(reset_ms))

    # ---- lists -----------------------------------------------------------------------------

    def _list_handler(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        endpoint = self.endpoints[name]

        async def handle(request: web.Request) -> web.StreamResponse:
            params = _Params(request)
            query = params.list_query(with_ids=not endpoint.uuid_ids)
            predicates = self._common_filters(query) + endpoint.filters(params)
            if endpoint.uuid_ids and params.has("ids"):
                wanted = {p for v in params.texts("ids") for p in v.split(",") if p}
                predicates.append(lambda row: row.uuid in wanted)
            key = (name, *sorted(i for i in request.query.items() if i[0] not in _PAGING))
            rows = self._matching(key, endpoint, query, predicates)
            hold_back = self.sim.faults._hold_back
            if hold_back:
                cutoff = self.sim._clock() - hold_back
                rows = [row for row in rows if row.updated_at <= cutoff]
            start = (query.page - 1) * query.limit
            page = [endpoint.render(row) for row in rows[start : start + query.limit]]
            return _page(page, len(rows), query)

        return handle

    def _matching(
        self,
        key: tuple[Any, ...],
        endpoint: _Endpoint,
        query: _ListQuery,
        predicates: list[Predicate],
    ) -> list[Any]:
        """Rows matching a query, newest first; cached per query until its tables change."""
        revision = endpoint.revision()
        cached = self._cache.get(key)
        if cached is not None and cached[0] == revision:
            self._cache.move_to_end(key)
            return cached[1]
        candidates = endpoint.table.candidates(query)
        rows = [row for row in candidates if all(p(row) for p in predicates)]
        rows.sort(key=lambda row: row.seq, reverse=True)
        self._cache[key] = (revision, rows)
        if len(self._cache) > 64:
            self._cache.popitem(last=False)
        return rows

    @staticmethod
    def _common_filters(query: _ListQuery) -> list[Predicate]:
        checks: list[Predicate] = []
        if not query.include_deleted:
            checks.append(lambda row: row.deleted_at is None)
        if query.ids is not None:
            wanted = set(query.ids)
            checks.append(lambda row: row.id in wanted)
        bounds = (
            ("created_at", query.created_min, query.created_max),
            ("updated_at", query.updated_min, query.updated_max),
        )
        for attr, low, high in bounds:
            if low is not None:
                checks.append(_not_before(attr, low))
            if high is not None:
                checks.append(_not_after(attr, high))
        return checks

    def _item_filters(self, params: _Params) -> list[Predicate]:
        if params.boolean("include_archived"):
            return []
        return [lambda item: item.archived_at is None]

    def _variant_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        if not params.boolean("include_archived"):
            checks.append(lambda v: not self.sim._archived(v))
        skus = params.texts("sku")
        if skus:
            wanted = set(skus)
            checks.append(lambda v: v.sku in wanted)
        for attr in ("product_id", "material_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        kind = params.text("type")
        if kind is not None:
            checks.append(lambda v: ("product" if v.product_id else "material") == kind)
        return checks

    def _bom_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        for attr in ("product_variant_id", "ingredient_variant_id", "product_item_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        return checks

    def _movement_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        variant_ids = params.integers("variant_ids")
        if variant_ids is not None:
            wanted = set(variant_ids)
            checks.append(lambda m: m.variant_id in wanted)
        for attr in ("resource_id", "caused_by_resource_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        for attr in ("resource_type", "caused_by_order_no"):
            text = params.text(attr)
            if text is not None:
                checks.append(_equals(attr, text))
        return checks

    def _order_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        status = params.text("status")
        if status is not None:
            checks.append(_equals("status", status))
        return checks

    def _sales_row_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        orders = params.integers("sales_order_ids")
        if orders is not None:
            wanted = set(orders)
            checks.append(lambda line: line.parent_id in wanted)
        variant_id = params.integer("variant_id")
        if variant_id is not None:
            checks.append(_equals("variant_id", variant_id))
        return checks

    def _purchase_row_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        order_id = params.integer("purchase_order_id")
        if order_id is not None:
            checks.append(_equals("parent_id", order_id))
        variant_id = params.integer("variant_id")
        if variant_id is not None:
            checks.append(_equals("variant_id", variant_id))
        return checks

    def _outsourced_recipe_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        for attr in ("purchase_order_id", "purchase_order_row_id", "ingredient_variant_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        return checks

    def _recipe_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        for attr in ("manufacturing_order_id", "variant_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        return checks

    @staticmethod
    def _location_filter(params: _Params) -> list[Predicate]:
        location_id = params.integer("location_id")
        return [] if location_id is None else [_equals("location_id", location_id)]

    def _one_handler(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        endpoint = self.endpoints[name]

        async def handle(request: web.Request) -> web.StreamResponse:
            raw = request.match_info["id"]
            if endpoint.uuid_ids:
                row = self.sim._bom_by_uuid.get(raw)
            else:
                row = endpoint.table.rows.get(_Params._parse_int("id", raw))
            if row is None:
                raise web.HTTPNotFound()
            return web.json_response(endpoint.render(row))

        return handle

    # ---- /inventory --------------------------------------------------------------------

    async def _inventory(self, request: web.Request) -> web.StreamResponse:
        params = _Params(request)
        query = params.list_query(with_ids=False)
        sim = self.sim
        include_archived = params.boolean("include_archived")
        wanted = params.integers("variant_id")
        if wanted is None:
            variant_ids = sim.inventory_variant_ids(include_archived)
        else:
            variant_ids = sorted(v for v in set(wanted) if sim.in_inventory(v, include_archived))
        locations = sorted(sim.location_names())
        location_id = params.integer("location_id")
        if location_id is not None:
            locations = [location_id] if location_id in locations else []
        extend = {p for v in params.texts("extend") for p in v.split(",")}
        # Rows are (variant, location) pairs in a fixed order: index arithmetic, not a scan.
        total = len(variant_ids) * len(locations)
        start = (query.page - 1) * query.limit
        rows: list[Json] = []
        for index in range(start, min(start + query.limit, total)):
            variant_id = variant_ids[index // len(locations)]
            row = sim.stock_row(variant_id, locations[index % len(locations)])
            if "variant" in extend:
                row["variant"] = self._variant(sim._variants.rows[variant_id])
            if "location" in extend:
                row["location"] = self._location(sim._locations.rows[row["location_id"]])
            rows.append(self._maybe_malformed(row))
        return _page(rows, total, query)

    def _maybe_malformed(self, row: Json) -> Json:
        faults = self.sim.faults
        if faults._malformed <= 0:
            return row
        faults._malformed -= 1
        if faults._malformed_kind == "missing_id":
            row.pop("variant_id", None)
        else:
            row["quantity_in_stock"] = "abc"
        return row

    # ---- renderers ---------------------------------------------------------------------

    @staticmethod
    def _stamps(row: _Record) -> Json:
        return {
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
            "deleted_at": None if row.deleted_at is None else iso(row.deleted_at),
        }

    def _location(self, row: _Location) -> Json:
        return {
            "id": row.id,
            "name": row.name,
            "legal_name": row.name,
            "address_id": None,
            "is_primary": row.is_primary,
            "sales_allowed": True,
            "manufacturing_allowed": True,
            "purchase_allowed": True,
            **self._stamps(row),
        }

    def _variant(self, row: _Variant) -> Json:
        return {
            "id": row.id,
            "sku": row.sku,
            "product_id": row.product_id,
            "material_id": row.material_id,
            "type": "product" if row.product_id is not None else "material",
            # No prices: the sim models none, and katana-openapi.yaml has them as non-null
            # numbers (optional), so they are left out rather than sent as null.
            "config_attributes": [],
            "internal_barcode": None,
            "registered_barcode": None,
            "supplier_item_codes": [],
            **self._stamps(row),
        }

    def _item(self, row: _Item) -> Json:
        body: Json = {
            "id": row.id,
            "name": row.name,
            "uom": "pcs",
            "type": row.kind,
            "is_sellable": row.kind == "product",
            "is_purchasable": True,
            "archived_at": None if row.archived_at is None else iso(row.archived_at),
            **self._stamps(row),
        }
        if row.category is not None:
            body["category_name"] = row.category
        if row.kind == "product":
            body["is_producible"] = any(self.sim._bom_by_kit.get(v) for v in row.variant_ids)
            body["is_auto_assembly"] = row.is_auto_assembly
        variants = (self.sim._variants.rows[v] for v in row.variant_ids)
        body["variants"] = [self._variant(v) for v in variants if v.deleted_at is None]
        return body

    def _bom_row(self, row: _BomEntry) -> Json:
        # katana-openapi.yaml BomRow: a numeric quantity, a rank, and no deleted_at.
        return {
            "id": row.uuid,
            "product_item_id": row.product_item_id,
            "product_variant_id": row.product_variant_id,
            "ingredient_variant_id": row.ingredient_variant_id,
            "quantity": number(row.quantity),
            "notes": None,
            "rank": (row.seq + 1) * 10_000,
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
        }

    def _movement(self, row: _Movement) -> Json:
        return {
            "id": row.id,
            "variant_id": row.variant_id,
            "location_id": row.location_id,
            "resource_type": row.resource_type,
            "resource_id": row.resource_id,
            "caused_by_order_no": row.caused_by_order_no,
            "caused_by_resource_id": row.caused_by_resource_id,
            "movement_date": iso(row.created_at),
            # Numbers here, unlike /inventory's decimal strings (katana-openapi.yaml and the
            # portal's example agree).
            "quantity_change": number(row.quantity_change),
            "balance_after": number(row.balance_after),
            "value_per_unit": 0,
            "value_in_stock_after": 0,
            "average_cost_after": 0,
            "rank": row.id,
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
        }

    @staticmethod
    def _line(line: _Line, parent_key: str, parent_id: int, **extra: Any) -> Json:
        return {
            "id": line.id,
            parent_key: parent_id,
            "variant_id": line.variant_id,
            "quantity": number(line.quantity),
            **extra,
            "created_at": iso(line.created_at),
            "updated_at": iso(line.updated_at),
        }

    def _sales_order_row(self, line: _Line) -> Json:
        return {
            "id": line.id,
            "sales_order_id": line.parent_id,
            "quantity": number(line.quantity),
            "variant_id": line.variant_id,
            "location_id": line.location_id,
            "linked_manufacturing_order_id": line.linked_manufacturing_order_id,
            **self._stamps(line),
        }

    def _purchase_order_row(self, line: _Line) -> Json:
        return {
            "id": line.id,
            "purchase_order_id": line.parent_id,
            "quantity": number(line.quantity),
            "variant_id": line.variant_id,
            "location_id": line.location_id,
            "received_date": None if line.received_date is None else iso(line.received_date),
            **self._stamps(line),
        }

    def _outsourced_recipe_row(self, row: _OutsourcedRecipeRow) -> Json:
        return {
            "id": row.id,
            "purchase_order_id": row.purchase_order_id,
            "purchase_order_row_id": row.purchase_order_row_id,
            "ingredient_variant_id": row.ingredient_variant_id,
            "planned_quantity_per_unit": number(row.planned_quantity_per_unit),
            "notes": None,
            "batch_transactions": [],
            "cost": None,
            **self._stamps(row),
        }

    def _sales_order(self, row: _SalesOrder) -> Json:
        return {
            "id": row.id,
            "order_no": row.order_no,
            "status": row.status,
            "location_id": row.location_id,
            # Katana requires a customer on every order; the sim has one.
            "customer_id": SIM_CUSTOMER_ID,
            "source": "api",
            "order_created_date": iso(row.created_at),
            **self._stamps(row),
            "sales_order_rows": [self._sales_order_row(line) for line in row.rows],
        }

    def _manufacturing_order(self, row: _ManufacturingOrder) -> Json:
        actual = row.actual_quantity
        return {
            "id": row.id,
            "order_no": row.order_no,
            "status": row.status,
            "variant_id": row.variant_id,
            "location_id": row.location_id,
            "planned_quantity": number(row.planned_quantity),
            "actual_quantity": None if actual is None else number(actual),
            "done_date": None if row.done_date is None else iso(row.done_date),
            "is_linked_to_sales_order": row.sales_order_row_id is not None,
            **self._linked(row.sales_order_row_id),
            **self._stamps(row),
        }

    def _linked(self, row_id: int | None) -> Json:
        # katana-openapi.yaml has both ids as non-null integers: an unlinked order has neither.
        order_id = self._linked_order(row_id)
        if row_id is None or order_id is None:
            return {}
        return {"sales_order_id": order_id, "sales_order_row_id": row_id}

    def _linked_order(self, row_id: int | None) -> int | None:
        line = None if row_id is None else self.sim._sales_order_rows.rows.get(row_id)
        return None if line is None else line.parent_id

    def _recipe_row(self, row: _RecipeRow) -> Json:
        return {
            "id": row.id,
            "manufacturing_order_id": row.manufacturing_order_id,
            "variant_id": row.variant_id,
            "planned_quantity_per_unit": quantity_text(row.planned_quantity_per_unit),
            "total_actual_quantity": quantity_text(row.total_actual_quantity),
            **self._stamps(row),
        }

    def _transfer(self, row: _StockTransfer) -> Json:
        return {
            "id": row.id,
            "stock_transfer_number": row.number,
            "source_location_id": row.source_location_id,
            "target_location_id": row.target_location_id,
            "status": row.status,
            "transfer_date": iso(row.created_at),
            **self._stamps(row),
            "stock_transfer_rows": [
                self._line(line, "stock_transfer_id", row.id) for line in row.rows
            ],
        }

    def _adjustment(self, row: _StockAdjustment) -> Json:
        return {
            "id": row.id,
            "stock_adjustment_number": row.number,
            "location_id": row.location_id,
            "reason": row.reason,
            "stock_adjustment_date": iso(row.created_at),
            **self._stamps(row),
            # katana-openapi.yaml StockAdjustmentRow allows no other fields (no timestamps, no
            # location: the adjustment's own).
            "stock_adjustment_rows": [
                {"id": line.id, "variant_id": line.variant_id, "quantity": number(line.quantity)}
                for line in row.rows
            ],
        }

    def _purchase_order(self, row: _PurchaseOrder) -> Json:
        return {
            "id": row.id,
            "order_no": row.order_no,
            "status": row.status,
            "entity_type": row.entity_type,
            "location_id": row.location_id,
            # Where an outsourced order's ingredients are processed (required for those, null
            # on regular orders); the sim's subcontractor works from the receiving location.
            "tracking_location_id": row.location_id if row.entity_type == "outsourced" else None,
            **self._stamps(row),
            "purchase_order_rows": [self._purchase_order_row(line) for line in row.rows],
        }


def _page(rows: list[Json], total: int, query: _ListQuery) -> web.Response:
    """A list response: `{"data": [...]}` plus X-Pagination with string values, as Katana."""
    pages = math.ceil(total / query.limit)
    pagination = {
        "total_records": str(total),
        "total_pages": str(pages),
        "offset": str((query.page - 1) * query.limit),
        "page": str(query.page),
        "first_page": "true" if query.page == 1 else "false",
        "last_page": "true" if query.page >= pages else "false",
    }
    return web.json_response({"data": rows}, headers={"X-Pagination": json.dumps(pagination)})


_ERROR_NAMES = {
    401: "UnauthorizedError",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    429: "TooManyRequestsError",
}


def _error(status: int, details: list[Json] | None = None) -> web.Response:
    """Katana's error body: statusCode, name, message (+ code and details for 422)."""
    phrase = HTTPStatus(status).phrase
    body: Json = {
        "statusCode": status,
        "name": _ERROR_NAMES.get(status, phrase.replace(" ", "").replace("-", "") + "Error"),
        "message": phrase,
    }
    if details is not None:
        body["message"] = "The request has invalid parameters. See `details` for more info."
        body["code"] = "VALIDATION_FAILED"
        body["details"] = details
    return web.json_response(body, status=status)
