"""Katana stock rows by variant, packed into bytes: the full sync's stock in a few MiB."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping

from daemon.domain.models import Quantity, StockRow

# One row: location id (64-bit), in stock, committed, potential (32-bit: Shopify takes at most
# 1,000,000,000). In each field the two lowest values are marks: _NULL (a null potential) and
# _ELSEWHERE (a fraction or an out-of-range number, kept exactly in StockTable._exact).
_ROW = struct.Struct("<qiii")
_NULL, _ELSEWHERE = -(2**31), -(2**31) + 1
_LOCATION_ELSEWHERE = -(2**63) + 1
_FIELD_RANGES = ((-(2**63) + 2, 2**63 - 1),) + ((-(2**31) + 2, 2**31 - 1),) * 3
_new_row = tuple.__new__


class StockTable(Mapping[int, tuple[StockRow, ...]]):
    """Stock rows by Katana variant id, as `desired_levels` reads them.

    A full sync holds every stock row of the account at once (300,000 for 100,000 variants at
    three locations). As StockRow tuples grouped in lists they took ~47 MiB, the largest part
    of the daemon's peak memory; here each variant's rows are one bytes string (20 bytes a
    row), ~14 MiB with the index. A variant's rows are unpacked (in C) and rebuilt as StockRows
    when asked for, in the order they were added.
    """

    def __init__(self, rows: Iterable[StockRow] = ()) -> None:
        self._packed: dict[int, bytes] = {}
        # (variant id, row position, field) -> a value the packing cannot hold.
        self._exact: dict[tuple[int, int, int], Quantity] = {}
        self._irregular: set[int] = set()  # variants with a value in _exact
        for row in rows:
            self.add(row)

    def add(self, row: StockRow) -> None:
        """Append one row (a later row for the same location does not replace an earlier one)."""
        earlier = self._packed.get(row.variant_id, b"")
        position = len(earlier) // _ROW.size
        fields = (row.location_id, row.in_stock, row.committed, row.potential)
        packed = [self._pack(row.variant_id, position, f, v) for f, v in enumerate(fields)]
        self._packed[row.variant_id] = earlier + _ROW.pack(*packed)

    def _pack(self, variant_id: int, position: int, field: int, value: Quantity | None) -> int:
        if value is None:
            return _NULL
        low, high = _FIELD_RANGES[field]
        if type(value) is int and low <= value <= high:
            return value
        self._exact[(variant_id, position, field)] = value
        self._irregular.add(variant_id)
        return _LOCATION_ELSEWHERE if field == 0 else _ELSEWHERE

    def __getitem__(self, variant_id: int) -> tuple[StockRow, ...]:
        # The planner's hot path (a full sync reads every row twice): unpacking is done in C,
        # and StockRow is built by tuple.__new__ directly (its generated __new__ costs a frame).
        packed = self._packed[variant_id]
        if variant_id in self._irregular:
            return tuple(self._exact_row(variant_id, p) for p in range(len(packed) // _ROW.size))
        return tuple(
            [
                _new_row(StockRow, (variant_id, location, in_stock, committed, potential))
                if potential != _NULL
                else _new_row(StockRow, (variant_id, location, in_stock, committed, None))
                for location, in_stock, committed, potential in _ROW.iter_unpack(packed)
            ]
        )

    def _exact_row(self, variant_id: int, position: int) -> StockRow:
        location, in_stock, committed, potential = _ROW.unpack_from(
            self._packed[variant_id], position * _ROW.size
        )
        exact = self._exact
        exact_location = exact.get((variant_id, position, 0), location)
        assert type(exact_location) is int  # ids are parsed as ints
        return StockRow(
            variant_id,
            exact_location,
            exact.get((variant_id, position, 1), in_stock),
            exact.get((variant_id, position, 2), committed),
            exact.get((variant_id, position, 3), None if potential == _NULL else potential),
        )

    def quantities_at(
        self, variant_id: int
    ) -> dict[int, tuple[Quantity, Quantity, Quantity | None]]:
        """A variant's (in stock, committed, potential) by location: what the planner reads.

        Cheaper than its StockRows (no object per row beyond the tuple); a later row for a
        location wins, as it would in a dict built from the rows.
        """
        packed = self._packed.get(variant_id)
        if packed is None:
            return {}
        if variant_id in self._irregular:
            return {r.location_id: (r.in_stock, r.committed, r.potential) for r in self[variant_id]}
        return {
            location: (in_stock, committed, None if potential == _NULL else potential)
            for location, in_stock, committed, potential in _ROW.iter_unpack(packed)
        }

    def get(  # type: ignore[override]
        self, variant_id: int, default: tuple[StockRow, ...] | None = None
    ) -> tuple[StockRow, ...] | None:
        # Mapping.get would add a frame and a try/except per variant.
        return self[variant_id] if variant_id in self._packed else default

    def __iter__(self) -> Iterator[int]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def rows(self) -> Iterator[StockRow]:
        """Every row, variant by variant (variants in the order first seen)."""
        for variant_id in self._packed:
            yield from self[variant_id]
