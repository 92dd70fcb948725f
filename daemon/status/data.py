"""The status page's data: what `StatusModel.gather` returns and `/status.json` serialises.

Frozen dataclasses, one per thing the page shows (a connection, a problem, a SKU's stock and
levels), and `jsonable`/`format_quantity`, which turn them into JSON-ready values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.domain.models import Quantity


@dataclass(frozen=True, slots=True)
class LagFigures:
    """Katana change to Shopify acknowledgement over the last hour."""

    p50_seconds: float | None
    p99_seconds: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class ActivityStep:
    """One step of the chart."""

    start: datetime
    seconds: float
    pushes: int
    lag_p50_seconds: float | None
    lag_max_seconds: float | None


@dataclass(frozen=True, slots=True)
class HeldInfo:
    """Why and since when the safety valve holds a connection, and how to release it."""

    reason: str
    since: datetime | None
    release_command: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The latest finished reconciliation covering a connection."""

    finished_at: datetime
    ok: bool
    drift: int  # levels found different in Shopify and overwritten (the run's total)
    scope: str  # "this connection" or "all connections"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """One connection, as a merchant reads it."""

    name: str
    shop: str
    sync_enabled: bool
    # off | starting | katana_unreachable | failing | held | shopify_errors |
    # full_sync_pending | catching_up | in_sync
    state: str
    summary: str  # the state in one plain sentence
    since: datetime | None
    waiting_variants: int
    held: HeldInfo | None
    error: str | None
    last_successful_poll: datetime | None
    last_full_sync: datetime | None
    lag_last_hour: LagFigures
    last_reconciliation: Reconciliation | None
    mapped_variants: int | None
    mapped_levels: int | None
    problem_counts: dict[str, int]
    activity: list[ActivityStep]


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """One problem, with the SKU it concerns and what it means."""

    connection: str
    group: str
    kind: str
    sku: str | None
    subject: str
    where: str | None  # the Shopify location, for a rejected level
    reason: str
    detail: str


@dataclass(slots=True)
class ProblemGroup:
    """Problems of one kind of situation, over every connection."""

    key: str
    title: str
    total: int = 0
    matching: int = 0
    rows: list[ProblemRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Problems:
    """Every group, filtered by `query` (a SKU substring, case-insensitive)."""

    query: str
    rows_per_group: int
    groups: list[ProblemGroup]


@dataclass(frozen=True, slots=True)
class KatanaStock:
    """One Katana location's stock of a variant and what the formula makes of it."""

    location_id: int
    location: str
    mapped: bool  # feeds a Shopify location in some connection
    # Katana's exact decimals as text ("7", "2.5"): never rounded through a float.
    in_stock: str
    committed: str
    potential: str | None
    formula: str
    result: int | None  # the formula, floored and clamped at 0 (before a connection's buffer)


@dataclass(frozen=True, slots=True)
class ShopifyLevel:
    """One Shopify (inventory item, location) the variant feeds."""

    connection: str
    shopify_variant_id: str
    inventory_item_id: str
    location_id: str
    katana_location_id: int
    katana_location: str
    desired: int | None  # None: not pushable now (see the variant's problems)
    last_told: int | None  # what stocksync last set; None: never acknowledged
    in_flight: bool
    parked_until: datetime | None  # rejected at this value: retried then


@dataclass(frozen=True, slots=True)
class SkuVariant:
    """One Katana variant with the SKU asked for."""

    katana_variant_id: int
    sku: str | None
    kind: str  # "kit", "product" or "material"
    retired: bool
    stock_read_at: datetime | None
    stock_error: str | None
    katana: list[KatanaStock]
    levels: list[ShopifyLevel]
    problems: list[ProblemRow]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One push of the SKU (the audit log)."""

    at: datetime
    connection: str
    inventory_item_id: str
    location_id: str
    from_quantity: int | None
    to_quantity: int
    outcome: str


@dataclass(frozen=True, slots=True)
class SkuView:
    """Everything about one SKU."""

    sku: str
    variants: list[SkuVariant]
    history: list[HistoryRow]


@dataclass(frozen=True, slots=True)
class KatanaState:
    """Whether the daemon's polls of Katana work."""

    reachable: bool
    unreachable_since: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Status:
    """The whole page."""

    generated_at: datetime
    version: str
    started_at: datetime
    poll_interval_seconds: float
    last_successful_poll: datetime | None
    katana: KatanaState
    cycle_error: str | None  # a cycle failing for another reason than Katana
    cycle_failing_since: datetime | None
    connections: list[ConnectionStatus]
    problems: Problems
    sku: SkuView | None


def jsonable(value: Any) -> Any:
    """The status as JSON-ready values: datetimes ISO 8601 UTC, Katana decimals as strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return format_quantity(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    slots = getattr(type(value), "__slots__", None)
    if slots is not None:
        return {name: jsonable(getattr(value, name)) for name in slots}
    raise TypeError(f"cannot express {type(value).__name__} as JSON")


def format_quantity(value: Quantity | None) -> str:
    """A Katana quantity as people write it: 7, 2.5 (never 7.00000 or 1E+1)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    return str(value)
