"""The packed stock table: exactly the rows read, grouped by variant, whatever their values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.domain.models import StockRow
from daemon.domain.stock import StockTable

BIG = 2**40  # beyond 32 bits: cannot be packed


def test_a_variants_rows_come_back_in_the_order_they_were_read() -> None:
    table = StockTable(
        [StockRow(7, 1, 5, 0), StockRow(8, 1, 3, 1), StockRow(7, 2, 4, 2), StockRow(7, 3, 0, 0)]
    )

    assert table[7] == (StockRow(7, 1, 5, 0), StockRow(7, 2, 4, 2), StockRow(7, 3, 0, 0))
    assert table[8] == (StockRow(8, 1, 3, 1),)
    assert list(table) == [7, 8]
    assert len(table) == 2


def test_fractions_null_potentials_and_huge_quantities_stay_exact() -> None:
    row = StockRow(1, 1, Decimal("2.5"), BIG, None)
    kit = StockRow(2, 1, -(2**31) + 1, -(2**31), Decimal("0.125"))  # the packing marks

    table = StockTable([row, kit])

    assert table[1] == (row,)
    assert type(table[1][0].in_stock) is Decimal
    assert table[2] == (kit,)


def test_a_variant_with_no_rows_is_missing() -> None:
    table = StockTable([StockRow(1, 1, 0, 0)])

    assert table.get(2) is None
    assert 2 not in table


def test_a_second_row_for_the_same_location_is_kept_not_merged() -> None:
    # Pages that shift while Katana is read can repeat a row: the planner decides, not the table.
    table = StockTable([StockRow(1, 1, 5, 0), StockRow(1, 1, 6, 0)])

    assert table[1] == (StockRow(1, 1, 5, 0), StockRow(1, 1, 6, 0))


quantities = (
    st.integers(min_value=-(2**64), max_value=2**64)
    | st.decimals(allow_nan=False, allow_infinity=False, places=5)
    | st.sampled_from([-(2**31), -(2**31) + 1, -(2**31) + 2, 2**31 - 1, 2**31])
)
rows = st.builds(
    StockRow,
    variant_id=st.integers(min_value=1, max_value=6),
    location_id=st.integers(min_value=1, max_value=2**40),
    in_stock=quantities,
    committed=quantities,
    potential=st.none() | quantities,
)


@given(st.lists(rows, max_size=40))
def test_the_table_holds_exactly_the_rows_read_grouped_by_variant(read: list[StockRow]) -> None:
    grouped: dict[int, list[StockRow]] = {}
    for row in read:
        grouped.setdefault(row.variant_id, []).append(row)

    table = StockTable(read)

    assert {v: list(table[v]) for v in table} == grouped
    assert list(table.rows()) == [row for group in grouped.values() for row in group]


def test_more_locations_than_the_packing_holds_is_a_clear_error() -> None:
    table = StockTable(StockRow(location, location, 0, 0) for location in range(2**16))

    with pytest.raises(ValueError, match="Katana locations"):
        table.add(StockRow(1, 2**16, 0, 0))
