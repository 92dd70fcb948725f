"""The quantity formula: what Shopify's "available" should be for one Katana stock row."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation

from daemon.domain.models import StockRow

# Shopify rejects a total outside ±1e9 (INVALID_QUANTITY_TOO_HIGH / INVALID_QUANTITY_TOO_LOW).
MAX_SHOPIFY_QUANTITY = 1_000_000_000
MIN_SHOPIFY_QUANTITY = -1_000_000_000

# A plain decimal number as Katana writes it ("7.00000", "-2", ".5", "1E+3"). Stricter than
# Decimal(): no NaN/Infinity and no Python-only spellings such as "1_000".
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

# Exact arithmetic: any result that would need rounding is an error, never a silent round-up.
# 60 digits covers every plausible stock figure with room to spare.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


@dataclass(frozen=True, slots=True)
class QuantityPolicy:
    """A connection's adjustments to the Katana formula."""

    buffer: int = 0
    allow_negative: bool = False

    def __post_init__(self) -> None:
        # A negative buffer would promise stock that is not there.
        if self.buffer < 0:
            raise ValueError(f"buffer must be an integer >= 0, got {self.buffer!r}")


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


def parse_quantity(text: str | int | float | Decimal | None, *, field: str) -> Decimal:
    """Parse a Katana quantity exactly; raise ValueError naming the field and the value."""
    if text is None:
        raise ValueError(f"{field} is missing")
    if isinstance(text, bool):  # bool is an int subclass; True is not a quantity
        raise ValueError(f"{field} is not a number: {_shown(text)}")
    if isinstance(text, Decimal):
        value = text
    elif isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, float):
        # repr() is the shortest text that round-trips: the number the JSON actually said,
        # without the binary noise Decimal(float) would carry.
        value = _parse_text(repr(text), field=field, original=text)
    elif isinstance(text, str):
        value = _parse_text(text.strip(), field=field, original=text)
    else:
        raise ValueError(f"{field} is not a number: {_shown(text)}")
    if not value.is_finite():
        raise ValueError(f"{field} is not a finite number: {_shown(text)}")
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
    in_stock = parse_quantity(row.in_stock, field="in_stock")
    committed = parse_quantity(row.committed, field="committed")
    # A kit's potential (what can be assembled from components) is sellable too; null = 0.
    potential = Decimal(0)
    if is_kit and row.potential is not None:
        potential = parse_quantity(row.potential, field="potential")
    try:
        total = _EXACT.subtract(_EXACT.add(in_stock, potential), committed)
        total = _EXACT.subtract(total, Decimal(policy.buffer))
    except ArithmeticError as exc:
        raise ValueError(
            f"in_stock={in_stock}, committed={committed}, potential={potential} "
            "cannot be combined exactly"
        ) from exc
    # Floor, never round: 2.9 available units are 2 sellable ones, and -0.5 is a shortfall.
    quantity = math.floor(total)
    if quantity > MAX_SHOPIFY_QUANTITY:
        raise QuantityTooHigh(quantity)
    if quantity < 0 and not policy.allow_negative:
        return 0
    if quantity < MIN_SHOPIFY_QUANTITY:
        raise QuantityTooLow(quantity)
    return quantity
