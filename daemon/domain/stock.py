"""Katana stock rows by variant, packed into bytes: the full sync's stock in a few MiB."""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Iterator, Mapping

from daemon.domain.models import Quantity, StockRow

# One row: the location's slot in StockTable._locations (16-bit), in stock, committed, potential
# (32-bit: Shopify takes at most 1,000,000,000). In a quantity the two lowest values are marks:
# _NULL (a null potential) and _ELSEWHERE (a fraction or an out-of-range number, kept exactly
# in StockTable._exact).
_ROW = struct.Struct("<Hiii")
_MAX_LOCATIONS = 2**16
_NULL, _ELSEWHERE = -(2**31), -(2**31) + 1
_PACKABLE = range(_ELSEWHERE + 1, 2**31)


class StockTable(Mapping[int, tuple[StockRow, ...]]):
    """Stock rows by Katana variant id, as `desired_levels` reads them.

    A full sync holds every stock row of the account at once (300,000 for 100,000 variants at
    three locations). As StockRow tuples grouped in lists they took ~47 MiB, the largest part
    of the daemon's peak memory; here each variant's rows are one bytes string (14 bytes a
    row), ~13 MiB with the index. A variant's rows are rebuilt as StockRows when asked for, in
    the order they were added.
    """

    def __init__(self, rows: Iterable[StockRow] = ()) -> None:
        self._packed: dict[int, bytes] = {}
        self._locations: list[int] = []  # Katana location ids, by slot
        self._slots: dict[int, int] = {}  # Katana location id -> its slot
        # (variant id, row position, field) -> a value the packing cannot hold.
        self._exact: dict[tuple[int, int, int], Quantity] = {}
        self._irregular: set[int] = set()  # variants with a value in _exact
        # Variants a row of which Katana sent but could not be read (PRODUCT.md §3): their
        # stock is unknown, never zero, so they are not planned and stay dirty.
        self.unreadable: set[int] = set()
        # A row dropped without even a readable variant id may belong to any variant of its
        # read: for those (all when `_unsure_all`) a location without a row is not zero stock.
        self._unsure: set[int] = set()
        self._unsure_all = False
        for row in rows:
            self.add(row)

    def mark_unreadable(self, variant_id: int) -> None:
        """A row of this variant could not be read."""
        self.unreadable.add(variant_id)

    def mark_unsure(self, variant_ids: Collection[int] | None) -> None:
        """A row of one of these variants (None: of any) could not be read."""
        if variant_ids is None:
            self._unsure_all = True
        else:
            self._unsure.update(variant_ids)

    def readable(self, variant_id: int, locations: Iterable[int]) -> bool:
        """Whether this variant's stock at these Katana locations is known.

        Katana lists no row where a variant never had stock, which is zero stock, unless a row
        of the read was dropped unread: then a missing row may be that one.
        """
        if variant_id in self.unreadable:
            return False
        if self._unsure_all or variant_id in self._unsure:
            present = self.quantities_at(variant_id)
            return all(location in present for location in locations)
        return True

    def add(self, row: StockRow) -> None:
        """Append one row (a later row for the same location does not replace an earlier one)."""
        earlier = self._packed.get(row.variant_id, b"")
        position = len(earlier) // _ROW.size
        quantities = [
            self._pack(row.variant_id, position, field, value)
            for field, value in enumerate((row.in_stock, row.committed, row.potential), start=1)
        ]
        packed = _ROW.pack(self._slot(row.location_id), *quantities)
        self._packed[row.variant_id] = earlier + packed

    def _slot(self, location_id: int) -> int:
        slot = self._slots.get(location_id)
        if slot is None:
            if len(self._locations) == _MAX_LOCATIONS:
                raise ValueError(f"more than {_MAX_LOCATIONS:,} Katana locations in stock rows")
            slot = self._slots[location_id] = len(self._locations)
            self._locations.append(location_id)
        return slot

    def _pack(self, variant_id: int, position: int, field: int, value: Quantity | None) -> int:
        if value is None:
            return _NULL
        if type(value) is int and value in _PACKABLE:
            return value
        self._exact[(variant_id, position, field)] = value
        self._irregular.add(variant_id)
        return _ELSEWHERE

    def __getitem__(self, variant_id: int) -> tuple[StockRow, ...]:
        packed = self._packed[variant_id]
        return tuple(self._row(variant_id, p) for p in range(len(packed) // _ROW.size))

    def _row(self, variant_id: int, position: int) -> StockRow:
        slot, in_stock, committed, potential = _ROW.unpack_from(
            self._packed[variant_id], position * _ROW.size
        )
        exact = self._exact
        return StockRow(
            variant_id,
            self._locations[slot],
            exact.get((variant_id, position, 1), in_stock),
            exact.get((variant_id, position, 2), committed),
            exact.get((variant_id, position, 3), None if potential == _NULL else potential),
        )

    def quantities_at(
        self, variant_id: int
    ) -> dict[int, tuple[Quantity, Quantity, Quantity | None]]:
        """A variant's (in stock, committed, potential) by location: what the planner reads.

        The planner's hot path (a full sync reads every row twice): unpacked in C, no StockRow
        built. A later row for a location wins, as in a dict built from the rows.
        """
        packed = self._packed.get(variant_id)
        if packed is None:
            return {}
        if variant_id in self._irregular:
            return {r.location_id: (r.in_stock, r.committed, r.potential) for r in self[variant_id]}
        locations = self._locations
        return {
            locations[slot]: (in_stock, committed, None if potential == _NULL else potential)
            for slot, in_stock, committed, potential in _ROW.iter_unpack(packed)
        }

    def __iter__(self) -> Iterator[int]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def rows(self) -> Iterator[StockRow]:
        """Every row, variant by variant (variants in the order first seen)."""
        for variant_id in self._packed:
            yield from self[variant_id]
