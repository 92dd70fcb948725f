"""Katana JSON rows → typed rows. Pure: no I/O; a bad row raises `MalformedRow`, never more."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from daemon.domain.models import Quantity, StockRow
from daemon.domain.quantity import parse_quantity
from daemon.katana.models import (
    ROW_SOURCES,
    BomRow,
    Change,
    ItemKind,
    KatanaItem,
    KatanaLocation,
    KatanaVariantRow,
)

RowId = int | str | None


class MalformedRow(ValueError):
    """A row that cannot be read; `row_id` identifies it in logs (None when it has no id)."""

    def __init__(self, row_id: RowId, reason: str) -> None:
        super().__init__(f"row {row_id!r}: {reason}")
        self.row_id = row_id
        self.reason = reason


class _Row:
    """Typed, strict access to one JSON object; every failure names the field and the value."""

    def __init__(
        self, raw: object, row_id: Callable[[Mapping[str, Any]], RowId] | None = None
    ) -> None:
        if not isinstance(raw, Mapping):
            raise MalformedRow(None, f"expected a JSON object, got {_short(raw)}")
        self.raw: Mapping[str, Any] = raw
        self._row_id = row_id or _plain_id

    def bad(self, reason: str) -> MalformedRow:
        # The id for the log line is worked out only for a row that turns out malformed: a
        # 100k catalogue's 300k stock rows would otherwise each format one for nothing.
        return MalformedRow(self._row_id(self.raw), reason)

    def integer(self, field: str) -> int:
        value = self.optional_integer(field)
        if value is None:
            raise self.bad(f"{field} is missing")
        return value

    def optional_integer(self, field: str) -> int | None:
        value = self.raw.get(field)
        if value is None:
            return None
        # bool is an int subclass; `true` is not an id. Digit strings appear in webhook-shaped
        # payloads, so they are accepted.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise self.bad(f"{field} is not an integer: {_short(value)}")

    def optional_text(self, field: str) -> str | None:
        value = self.raw.get(field)
        if value is None or isinstance(value, str):
            return value
        raise self.bad(f"{field} is not a string: {_short(value)}")

    def flag(self, field: str) -> bool:
        """A boolean that may arrive as a JSON boolean or as "true"/"false"; missing = False."""
        value = self.raw.get(field)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self.bad(f"{field} is not a boolean: {_short(value)}")

    def timestamp(self, field: str) -> datetime:
        value = self.optional_timestamp(field)
        if value is None:
            raise self.bad(f"{field} is missing")
        return value

    def optional_timestamp(self, field: str) -> datetime | None:
        value = self.raw.get(field)
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except ValueError:
            raise self.bad(f"{field} is not an ISO 8601 timestamp: {_short(value)}") from None

    def quantity(self, field: str) -> Quantity:
        try:
            return parse_quantity(self.raw.get(field), field=field)
        except ValueError as exc:
            raise self.bad(str(exc)) from None

    def optional_quantity(self, field: str) -> Quantity | None:
        return None if self.raw.get(field) is None else self.quantity(field)

    def rows(self, field: str) -> list[object]:
        value = self.raw.get(field)
        if not isinstance(value, list):
            raise self.bad(f"{field} is not a list: {_short(value)}")
        return value


def parse_timestamp(value: object) -> datetime:
    """An ISO 8601 timestamp (`Z` or an offset) as an aware UTC datetime; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    parsed = datetime.fromisoformat(value.strip())
    # Katana always writes `Z`; a bare timestamp can only mean UTC there.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_timestamp(at: datetime) -> str:
    """`at` as Katana filters want it: ISO 8601 UTC with `Z`, to the millisecond (truncated)."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: stocksync timestamps are always aware UTC")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_location(raw: object) -> KatanaLocation:
    """One `/locations` row."""
    row = _Row(raw)
    name = row.optional_text("name")
    if name is None:
        raise row.bad("name is missing")
    return KatanaLocation(
        id=row.integer("id"), name=name, deleted=row.optional_timestamp("deleted_at") is not None
    )


def parse_variant(raw: object) -> KatanaVariantRow:
    """One `/variants` row."""
    row = _Row(raw)
    return KatanaVariantRow(
        id=row.integer("id"),
        sku=row.optional_text("sku"),
        product_id=row.optional_integer("product_id"),
        material_id=row.optional_integer("material_id"),
        created_at=row.timestamp("created_at"),
        updated_at=row.timestamp("updated_at"),
        deleted_at=row.optional_timestamp("deleted_at"),
    )


def parse_item(raw: object, kind: ItemKind) -> KatanaItem:
    """One `/products` or `/materials` row."""
    row = _Row(raw)
    # A deleted product retires its variants just as archiving does.
    gone = (
        row.optional_timestamp("archived_at") is not None
        or row.optional_timestamp("deleted_at") is not None
    )
    return KatanaItem(
        id=row.integer("id"),
        kind=kind,
        # Materials cannot be kits whatever the payload says.
        is_auto_assembly=kind == "product" and row.flag("is_auto_assembly"),
        archived=gone,
        updated_at=row.timestamp("updated_at"),
        category=_category(row.optional_text("category_name")),
    )


def _category(text: str | None) -> str | None:
    """A category as sync filters match it: surrounding spaces ignored, blank = none; interned
    (a catalogue holds a few categories thousands of times)."""
    if text is None or not text.strip():
        return None
    return sys.intern(text.strip())


def parse_bom_row(raw: object) -> BomRow:
    """One `/bom_rows` row (its id is a UUID string)."""
    row = _Row(raw)
    bom_id = row.raw.get("id")
    if isinstance(bom_id, bool) or not isinstance(bom_id, str | int) or str(bom_id).strip() == "":
        raise row.bad(f"id is missing or not a string: {_short(bom_id)}")
    return BomRow(
        id=str(bom_id),
        product_variant_id=row.integer("product_variant_id"),
        ingredient_variant_id=row.integer("ingredient_variant_id"),
        # Nullable in Katana's schema; stocksync only needs to know which kits use which
        # ingredients, so a row without a quantity still counts.
        quantity=row.optional_quantity("quantity"),
        # The real /bom_rows has no deleted_at (removed rows vanish); accepted when present.
        deleted=row.optional_timestamp("deleted_at") is not None,
        # Kept so the bom_rows cursor can follow it.
        updated_at=row.optional_timestamp("updated_at"),
    )


def parse_stock_row(raw: object) -> StockRow:
    """One `/inventory` row: quantities stay exact (int or Decimal); a null potential stays None."""
    row = _Row(raw, row_id=_stock_row_id)
    return StockRow(
        variant_id=row.integer("variant_id"),
        location_id=row.integer("location_id"),
        in_stock=row.quantity("quantity_in_stock"),
        committed=row.quantity("quantity_committed"),
        potential=row.optional_quantity("quantity_potential"),
    )


def stock_row_variant(raw: object) -> int | None:
    """The variant of an `/inventory` row that did not parse, when at least that is readable."""
    try:
        return _Row(raw).optional_integer("variant_id")
    except MalformedRow:
        return None


# Resource -> (the list of line rows whose variants it touches, or None when the row names one
# variant itself; the field holding that variant).
_SOURCES: dict[str, tuple[str | None, str]] = {
    "inventory_movements": (None, "variant_id"),
    "sales_orders": ("sales_order_rows", "variant_id"),
    "sales_order_rows": (None, "variant_id"),
    "manufacturing_orders": (None, "variant_id"),  # the produced variant
    "manufacturing_order_recipe_rows": (None, "variant_id"),  # the ingredient variant
    "stock_transfers": ("stock_transfer_rows", "variant_id"),
    "stock_adjustments": ("stock_adjustment_rows", "variant_id"),
    "purchase_orders": ("purchase_order_rows", "variant_id"),
    "purchase_order_rows": (None, "variant_id"),
    "outsourced_purchase_order_recipe_rows": (None, "ingredient_variant_id"),
}


def parse_changes(source: str, raw: object) -> tuple[list[Change], list[MalformedRow]]:
    """One delta-source row → one Change per variant it touches, plus any bad line rows.

    Raises MalformedRow when the row itself is unusable; a bad line row only drops that line
    (returned so it is reported), because the other lines' variants did change.
    """
    if source not in _SOURCES:
        raise ValueError(f"unknown Katana delta source {source!r}")
    row = _Row(raw)
    resource_id = row.integer("id")
    # Movements are filtered and reported by creation (they are never edited in a way that
    # matters); everything else by its last update.
    at = row.timestamp("created_at" if source == "inventory_movements" else "updated_at")
    lines_field, variant_field = _SOURCES[source]
    if lines_field is None:
        # Only a row's deletion matters on its own: it ends what the engine remembers of it.
        deleted = source in ROW_SOURCES and row.optional_timestamp("deleted_at") is not None
        return [Change(source, resource_id, row.integer(variant_field), at, deleted)], []
    changes: list[Change] = []
    problems: list[MalformedRow] = []
    seen: set[int] = set()
    for raw_line in row.rows(lines_field):
        try:
            variant_id = _Row(raw_line).integer(variant_field)
        except MalformedRow as exc:
            # Named by order and line (the line alone may not even be an object).
            problems.append(MalformedRow(_line_id(resource_id, raw_line), exc.reason))
            continue
        if variant_id not in seen:
            seen.add(variant_id)
            changes.append(Change(source, resource_id, variant_id, at))
    return changes, problems


def _line_id(resource_id: int, raw_line: object) -> str:
    line_id = raw_line.get("id") if isinstance(raw_line, Mapping) else None
    return f"{resource_id}/{_loggable_id(line_id)}"


def _plain_id(raw: Mapping[str, Any]) -> RowId:
    return _loggable_id(raw.get("id"))


def _stock_row_id(raw: Mapping[str, Any]) -> str:
    return f"{_loggable_id(raw.get('variant_id'))}@{_loggable_id(raw.get('location_id'))}"


def _loggable_id(value: object) -> RowId:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _short(value)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
