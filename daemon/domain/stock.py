"""Katana stock rows by variant, packed into arrays: the full sync's stock in a few MiB."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping

from daemon.domain.models import Quantity, StockRow

# Packed quantities are 32-bit ints (Shopify takes at most 1,000,000,000); the two lowest
# values mark the others.
_NULL = -(2**31)  # a null potential
_ELSEWHERE = _NULL + 1  # a fraction, or a whole number beyond 32 bits: kept in `_unpacked`
_PACKABLE_MIN = _ELSEWHERE + 1
_PACKABLE_MAX = 2**31 - 1
_NO_ROW = -1


class StockTable(Mapping[int, tuple[StockRow, ...]]):
    """Stock rows by Katana variant id, as `desired_levels` reads them.

    A full sync holds every stock row of the account at once (300,000 for 100,000 variants at
    three locations). As StockRow tuples grouped in lists they took ~47 MiB, the largest part
    of the daemon's peak memory; packed here they take ~8 MiB plus the index. A variant's
    rows are rebuilt as StockRows when asked for, in the order they were added.
    """

    def __init__(self, rows: Iterable[StockRow] = ()) -> None:
        self._latest: dict[int, int] = {}  # variant id -> index of its latest row
        self._earlier = array("i")  # row index -> the same variant's previous row, or _NO_ROW
        self._location = array("q")
        self._quantities = array("i")  # three per row: in stock, committed, potential
        self._unpacked: dict[int, Quantity] = {}  # position in _quantities -> the exact value
        for row in rows:
            self.add(row)

    def add(self, row: StockRow) -> None:
        """Append one row (a later row for the same location does not replace an earlier one)."""
        self._earlier.append(self._latest.get(row.variant_id, _NO_ROW))
        self._latest[row.variant_id] = len(self._location)
        self._location.append(row.location_id)
        for quantity in (row.in_stock, row.committed, row.potential):
            self._quantities.append(self._pack(quantity))

    def _pack(self, quantity: Quantity | None) -> int:
        if quantity is None:
            return _NULL
        if type(quantity) is int and _PACKABLE_MIN <= quantity <= _PACKABLE_MAX:
            return quantity
        self._unpacked[len(self._quantities)] = quantity
        return _ELSEWHERE

    def __getitem__(self, variant_id: int) -> tuple[StockRow, ...]:
        rows: list[StockRow] = []
        quantities, unpacked = self._quantities, self._unpacked
        index = self._latest[variant_id]
        while index != _NO_ROW:
            at = 3 * index
            in_stock: Quantity = quantities[at]
            committed: Quantity = quantities[at + 1]
            potential: Quantity | None = quantities[at + 2]
            # Inlined: a full sync unpacks every row twice (planning, then pushing each chunk).
            if in_stock == _ELSEWHERE:
                in_stock = unpacked[at]
            if committed == _ELSEWHERE:
                committed = unpacked[at + 1]
            if potential == _NULL:
                potential = None
            elif potential == _ELSEWHERE:
                potential = unpacked[at + 2]
            rows.append(StockRow(variant_id, self._location[index], in_stock, committed, potential))
            index = self._earlier[index]
        rows.reverse()
        return tuple(rows)

    def __iter__(self) -> Iterator[int]:
        return iter(self._latest)

    def __len__(self) -> int:
        return len(self._latest)

    def rows(self) -> Iterator[StockRow]:
        """Every row, variant by variant (variants in the order first seen)."""
        for variant_id in self._latest:
            yield from self[variant_id]
