"""What a simulated Katana account is made of: its vocabulary, records and tables.

Quantities are Decimals, formatted as Katana formats them (`quantity_text`, `number`, `iso`);
the statuses say which documents commit or expect stock. Every record carries Katana's
bookkeeping fields (`created_at`, `updated_at`, `deleted_at`), and a `_Table` keeps one
resource's records with the indexes the list endpoints narrow through. `ProductSpec` and
`SimVariant` are the public value types of the Python API.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, NamedTuple, TypeVar

Quantity = int | str | Decimal
Json = dict[str, Any]
StockKey = tuple[int, int]  # (variant id, location id)


ZERO = Decimal(0)


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


class _Table(Generic[R]):
    """Rows of one resource with the indexes the list endpoints need (no per-request scans)."""

    def __init__(self) -> None:
        self.rows: dict[int, R] = {}
        self.created: list[R] = []  # ascending created_at (the sim's clock never goes back)
        self.recent: OrderedDict[int, R] = OrderedDict()  # ascending updated_at
        self.revision = 0  # bumped by every change: list caches compare it
        self._added = 0  # rows ever added: a removed row's position is never reused
        # Told of every row added (True) or touched (False): the webhooks watch through it.
        self.observer: Callable[[R, bool], None] | None = None

    def add(self, row: R) -> R:
        self.revision += 1
        row.seq = self._added
        self._added += 1
        self.rows[row.id] = row
        self.created.append(row)
        self.recent[row.id] = row
        if self.observer is not None:
            self.observer(row, True)
        return row

    def touch(self, row: R, at: datetime) -> None:
        self.revision += 1
        row.updated_at = at
        self.recent.move_to_end(row.id)
        if self.observer is not None:
            self.observer(row, False)

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
# Public read models
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
