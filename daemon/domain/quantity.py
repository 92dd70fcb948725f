"""The quantity formula: what Shopify's "available" should be for one Katana stock row."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation

from daemon.domain.models import Quantity, StockRow

# Shopify rejects a total outside ±1e9 (INVALID_QUANTITY_TOO_HIGH / INVALID_QUANTITY_TOO_LOW).
MAX_SHOPIFY_QUANTITY = 1_000_000_000
MIN_SHOPIFY_QUANTITY = -1_000_000_000

# A plain decimal number as Katana writes it ("7.00000", "-2", ".5", "1E+3"). Stricter than
# Decimal(): no NaN/Infinity and no Python-only spellings such as "1_000".
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# A whole number as Katana writes it ("7", "-2", "7.00000"): parsed straight to an int.
_WHOLE_TEXT = re.compile(r"([+-]?[0-9]{1,60})(?:\.0*)?")
# Whole Decimals up to this many digits become ints; beyond, they stay Decimals (and are far
# outside anything Shopify accepts anyway).
_MAX_WHOLE_DIGITS = 60

# Exact arithmetic: any result that would need rounding is an error, never a silent round-up.
# 60 digits covers every plausible stock figure with room to spare.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


@dataclass(frozen=True, slots=True)
class QuantityPolicy:
    """Adjustments to the Katana formula: a connection's, or one Shopify variant's own.

    `buffer` is in Katana units (held back before anything else); `units_per_pack` makes the
    level a count of packs: floor(units / units_per_pack), after the buffer and the floor.
    """

    buffer: int = 0
    allow_negative: bool = False
    units_per_pack: int = 1

    def __post_init__(self) -> None:
        # A negative buffer would promise stock that is not there.
        if self.buffer < 0:
            raise ValueError(f"buffer must be an integer >= 0, got {self.buffer!r}")
        if self.units_per_pack < 1:
            raise ValueError(f"units_per_pack must be an integer >= 1, got {self.units_per_pack!r}")


class QuantityTooHigh(ValueError):
    """The computed level is above what Shopify accepts; the item is reported, not pushed."""

    def __init__(self, quantity: int) -> None:
        super().__init__(f"quantity {quantity} is above Shopify's maximum {MAX_SHOPIFY_QUANTITY}")
        self.quantity = quantity


class QuantityTooLow(ValueError):
    """The computed (negative) level is below what Shopify accepts; reported, not pushed."""

    def __init__(self, quantity: int) -> None:
        super().__init__(f"quantity {quantity} is below Shopify's minimum {MIN_SHOPIFY_QUANTITY}")
        self.quantity = quantity


def parse_quantity(text: str | int | float | Decimal | None, *, field: str) -> Quantity:
    """Parse a Katana quantity exactly: an int when whole, else a Decimal.

    Raises ValueError naming the field and the value.
    """
    if text is None:
        raise ValueError(f"{field} is missing")
    if isinstance(text, bool):  # bool is an int subclass; True is not a quantity
        raise ValueError(f"{field} is not a number: {_shown(text)}")
    if isinstance(text, int):
        return text
    if isinstance(text, str):
        # The common spelling, "7.00000", without building a Decimal first.
        whole = _WHOLE_TEXT.fullmatch(text.strip())
        if whole:
            return int(whole.group(1))
        value = _parse_text(text.strip(), field=field, original=text)
    elif isinstance(text, Decimal):
        value = text
    elif isinstance(text, float):
        # repr() is the shortest text that round-trips: the number the JSON actually said,
        # without the binary noise Decimal(float) would carry.
        value = _parse_text(repr(text), field=field, original=text)
    else:
        raise ValueError(f"{field} is not a number: {_shown(text)}")
    if not value.is_finite():
        raise ValueError(f"{field} is not a finite number: {_shown(text)}")
    # "1E+3" is whole too; an exponent too large for an int stays a Decimal.
    if value == value.to_integral_value() and abs(value.adjusted()) <= _MAX_WHOLE_DIGITS:
        return int(value)
    return value


def _parse_text(text: str, *, field: str, original: object) -> Decimal:
    if not _DECIMAL_TEXT.fullmatch(text):
        raise ValueError(f"{field} is not a number: {_shown(original)}")
    try:
        return Decimal(text)
    except ArithmeticError as exc:  # an exponent beyond what Decimal can hold
        raise ValueError(f"{field} is out of range: {_shown(original)}") from exc


def _shown(value: object) -> str:
    """The offending value for an error message, cut short so a huge payload stays readable."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def available_quantity(row: StockRow, *, is_kit: bool, policy: QuantityPolicy) -> int:
    """Shopify "available" for one Katana stock row: the formula, buffer, floor and clamp."""
    return available(
        row.in_stock, row.committed, kit_potential(row.potential, is_kit=is_kit), policy
    )


def kit_potential(potential: Quantity | None, *, is_kit: bool) -> Quantity:
    """What a row's potential adds to "available": a kit's is sellable too; null (or no kit) = 0."""
    return potential if is_kit and potential is not None else 0


def available(
    in_stock: Quantity, committed: Quantity, potential: Quantity, policy: QuantityPolicy
) -> int:
    """The formula on quantities already chosen (`potential` 0 unless a kit's), then clamped.

    Units: in stock + potential - committed - buffer, floored; then packs: floor(units / N)
    (floor division, so a shortfall of part of a pack is a whole pack short); then the range
    checks and the clamp at 0, on what Shopify would be told.
    """
    if type(in_stock) is int and type(committed) is int and type(potential) is int:
        # Whole numbers (nearly every row): int arithmetic is exact and needs no checks.
        quantity = in_stock + potential - committed - policy.buffer
    else:
        quantity = _exact_available(in_stock, committed, potential, policy)
    if policy.units_per_pack != 1:
        # floor(floor(x) / n) == floor(x / n) for a whole n: flooring units first loses nothing.
        quantity //= policy.units_per_pack
    if quantity > MAX_SHOPIFY_QUANTITY:
        raise QuantityTooHigh(quantity)
    if quantity < 0 and not policy.allow_negative:
        return 0
    if quantity < MIN_SHOPIFY_QUANTITY:
        raise QuantityTooLow(quantity)
    return quantity


def sum_quantities(values: Iterable[Quantity], *, field: str) -> Quantity:
    """The exact sum of Katana quantities (a pooled location's): an int when all are ints.

    Raises ValueError naming `field` when a value is not a finite number or the sum cannot be
    held exactly.
    """
    values = list(values)
    if all(type(v) is int for v in values):
        return sum(values)
    total = Decimal(0)
    try:
        for value in values:
            total = _EXACT.add(total, Decimal(parse_quantity(value, field=field)))
    except ArithmeticError as exc:
        raise ValueError(f"{field} values {values} cannot be added exactly") from exc
    return parse_quantity(total, field=field)


def _exact_available(
    in_stock: Quantity, committed: Quantity, potential: Quantity, policy: QuantityPolicy
) -> int:
    """The formula with a fraction (or an unchecked value) involved: exact, then floored."""
    in_stock = Decimal(parse_quantity(in_stock, field="in_stock"))
    committed = Decimal(parse_quantity(committed, field="committed"))
    potential = Decimal(parse_quantity(potential, field="potential"))
    try:
        total = _EXACT.subtract(_EXACT.add(in_stock, potential), committed)
        total = _EXACT.subtract(total, Decimal(policy.buffer))
    except ArithmeticError as exc:
        raise ValueError(
            f"in_stock={in_stock}, committed={committed}, potential={potential} "
            "cannot be combined exactly"
        ) from exc
    # Floor, never round: 2.9 available units are 2 sellable ones, and -0.5 is a shortfall.
    return math.floor(total)
