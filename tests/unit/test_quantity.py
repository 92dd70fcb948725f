"""The quantity formula (PRODUCT.md §1): one test per rule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.domain.models import StockRow
from daemon.domain.quantity import (
    MAX_SHOPIFY_QUANTITY,
    QuantityPolicy,
    QuantityTooHigh,
    QuantityTooLow,
    available_quantity,
    parse_quantity,
)

DEFAULT = QuantityPolicy()


def row(in_stock: str, committed: str = "0", potential: str | None = None) -> StockRow:
    return StockRow(
        variant_id=1,
        location_id=1,
        in_stock=Decimal(in_stock),
        committed=Decimal(committed),
        potential=None if potential is None else Decimal(potential),
    )


# --- parsing ---------------------------------------------------------------------------------


def test_katana_decimal_string_parses_exactly() -> None:
    assert parse_quantity("7.00000", field="in_stock") == Decimal(7)
    assert parse_quantity("0.10000", field="in_stock") == Decimal("0.1")


def test_surrounding_whitespace_in_a_quantity_is_ignored() -> None:
    assert parse_quantity(" 3.5 ", field="committed") == Decimal("3.5")


def test_integer_and_decimal_inputs_are_accepted() -> None:
    assert parse_quantity(4, field="in_stock") == Decimal(4)
    assert parse_quantity(Decimal("-1.25"), field="in_stock") == Decimal("-1.25")


def test_float_input_is_read_as_its_shortest_decimal_not_binary_noise() -> None:
    # Decimal(0.1) would be 0.1000000000000000055511151231257827...
    assert parse_quantity(0.1, field="in_stock") == Decimal("0.1")


@pytest.mark.parametrize(
    "value",
    ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "", "   ", "abc", "1,5", "1_000", "7 u"],
)
def test_garbage_quantity_text_raises_value_error_naming_field_and_value(value: str) -> None:
    with pytest.raises(ValueError, match="quantity_committed") as info:
        parse_quantity(value, field="quantity_committed")
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN")]
)
def test_non_finite_numbers_are_rejected(value: float | Decimal) -> None:
    with pytest.raises(ValueError, match="in_stock"):
        parse_quantity(value, field="in_stock")


def test_missing_quantity_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="in_stock is missing"):
        parse_quantity(None, field="in_stock")


def test_boolean_is_not_a_quantity() -> None:
    with pytest.raises(ValueError, match="in_stock"):
        parse_quantity(True, field="in_stock")


def test_exponent_beyond_decimal_range_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_quantity("1e1000000000000000000000", field="in_stock")


def test_huge_bad_value_is_shortened_in_the_error_message() -> None:
    with pytest.raises(ValueError, match="in_stock") as info:
        parse_quantity("x" * 10_000, field="in_stock")
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7.00000", 7), ("7", 7), ("-2.0", -2), ("+3.", 3), ("1E+3", 1000), ("0.000", 0)],
)
def test_whole_quantity_parses_to_an_int(text: str, expected: int) -> None:
    value = parse_quantity(text, field="in_stock")
    assert type(value) is int
    assert value == expected


@pytest.mark.parametrize("text", ["0.10000", "2.5", "-0.5", "1E-3"])
def test_fractional_quantity_stays_an_exact_decimal(text: str) -> None:
    value = parse_quantity(text, field="in_stock")
    assert isinstance(value, Decimal)
    assert value == Decimal(text)


def test_whole_quantity_too_long_for_an_int_stays_a_decimal() -> None:
    # int() of a 5,000-digit text would raise; such a value is only ever "too high" later.
    value = parse_quantity("9" * 5_000, field="in_stock")
    assert value == Decimal("9" * 5_000)


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12))
def test_any_katana_decimal_text_parses_to_its_exact_value(number: Decimal) -> None:
    assert parse_quantity(str(number), field="in_stock") == number


# --- the formula ----------------------------------------------------------------------------


def test_standard_available_is_in_stock_minus_committed() -> None:
    assert available_quantity(row("7.00000", "2.00000"), is_kit=False, policy=DEFAULT) == 5


def test_standard_product_ignores_potential() -> None:
    assert available_quantity(row("7", "2", potential="100"), is_kit=False, policy=DEFAULT) == 5


def test_kit_available_is_in_stock_plus_potential_minus_committed() -> None:
    assert available_quantity(row("3", "4", potential="200"), is_kit=True, policy=DEFAULT) == 199


def test_kit_null_potential_counts_as_zero() -> None:
    assert available_quantity(row("3", "1", potential=None), is_kit=True, policy=DEFAULT) == 2


def test_all_committed_quantity_counts() -> None:
    # Committed from any channel reduces what Shopify may sell.
    assert available_quantity(row("10", "10"), is_kit=False, policy=DEFAULT) == 0


def test_fraction_is_floored_never_rounded_up() -> None:
    assert available_quantity(row("2.9"), is_kit=False, policy=DEFAULT) == 2
    assert available_quantity(row("5", "0.00001"), is_kit=False, policy=DEFAULT) == 4


def test_negative_fraction_floors_down_before_the_clamp() -> None:
    allow = QuantityPolicy(allow_negative=True)
    assert available_quantity(row("0", "0.5"), is_kit=False, policy=allow) == -1


def test_negative_result_is_pushed_as_zero_by_default() -> None:
    assert available_quantity(row("1", "5"), is_kit=False, policy=DEFAULT) == 0


def test_negative_result_is_kept_when_allow_negative() -> None:
    allow = QuantityPolicy(allow_negative=True)
    assert available_quantity(row("1", "5"), is_kit=False, policy=allow) == -4


def test_buffer_is_subtracted_before_the_clamp() -> None:
    buffer2 = QuantityPolicy(buffer=2)
    assert available_quantity(row("10", "3"), is_kit=False, policy=buffer2) == 5
    assert available_quantity(row("1"), is_kit=False, policy=buffer2) == 0
    allow = QuantityPolicy(buffer=2, allow_negative=True)
    assert available_quantity(row("1"), is_kit=False, policy=allow) == -1


def test_buffer_applies_to_kits_too() -> None:
    policy = QuantityPolicy(buffer=5)
    assert available_quantity(row("0", "0", potential="8"), is_kit=True, policy=policy) == 3


def test_negative_buffer_is_rejected() -> None:
    with pytest.raises(ValueError, match="buffer"):
        QuantityPolicy(buffer=-1)


def test_quantity_at_shopify_maximum_is_allowed() -> None:
    exact = row(str(MAX_SHOPIFY_QUANTITY))
    assert available_quantity(exact, is_kit=False, policy=DEFAULT) == MAX_SHOPIFY_QUANTITY


def test_quantity_above_one_billion_raises_quantity_too_high() -> None:
    with pytest.raises(QuantityTooHigh) as info:
        available_quantity(row("1000000001"), is_kit=False, policy=DEFAULT)
    assert info.value.quantity == 1_000_000_001
    assert isinstance(info.value, ValueError)


def test_fraction_just_above_the_maximum_floors_to_an_allowed_value() -> None:
    assert available_quantity(row("1000000000.99"), is_kit=False, policy=DEFAULT) == 1_000_000_000


def test_negative_below_shopify_minimum_raises_quantity_too_low() -> None:
    allow = QuantityPolicy(allow_negative=True)
    with pytest.raises(QuantityTooLow) as info:
        available_quantity(row("0", "1000000001"), is_kit=False, policy=allow)
    assert info.value.quantity == -1_000_000_001


def test_large_negative_is_clamped_not_rejected_without_allow_negative() -> None:
    assert available_quantity(row("0", "5000000000"), is_kit=False, policy=DEFAULT) == 0


def test_quantities_that_cannot_be_combined_exactly_raise_value_error() -> None:
    # Rounding here could round up and promise stock that is not there.
    tiny = StockRow(1, 1, in_stock=Decimal("1e-999999"), committed=Decimal(1))
    with pytest.raises(ValueError, match="cannot be combined exactly"):
        available_quantity(tiny, is_kit=False, policy=DEFAULT)


def test_non_finite_decimal_in_a_stock_row_raises_value_error_naming_the_field() -> None:
    bad = StockRow(1, 1, in_stock=Decimal(5), committed=Decimal("NaN"))
    with pytest.raises(ValueError, match="committed"):
        available_quantity(bad, is_kit=False, policy=DEFAULT)


def test_potential_is_validated_only_for_kits() -> None:
    bad_potential = StockRow(1, 1, Decimal(4), Decimal(1), potential=Decimal("NaN"))
    assert available_quantity(bad_potential, is_kit=False, policy=DEFAULT) == 3
    with pytest.raises(ValueError, match="potential"):
        available_quantity(bad_potential, is_kit=True, policy=DEFAULT)
