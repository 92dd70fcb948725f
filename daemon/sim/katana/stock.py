"""Stock in a simulated Katana account: counts, adjustments, transfers, and what documents hold.

In-stock changes only through a business event, and every change writes an inventory movement
(`_move`), except deleting a document that moved stock, whose movements are withdrawn. What a
document commits and expects is kept incrementally: every event takes a snapshot of what the
document committed and expected before (`_commitments`, `_expectations`) and `_settle`s the
difference after. The row helpers every kind of document uses are here too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal

from daemon.sim.katana.records import (
    MO_OPEN,
    PO_OPEN,
    SALES_COMMITTING,
    TRANSFER_DRAFT,
    TRANSFER_IN_TRANSIT,
    TRANSFER_RECEIVED,
    ZERO,
    Quantity,
    StockKey,
    _Cause,
    _decimal,
    _Line,
    _ManufacturingOrder,
    _Movement,
    _OutsourcedRecipeRow,
    _PurchaseOrder,
    _Record,
    _SalesOrder,
    _StockAdjustment,
    _StockTransfer,
    _Table,
)
from daemon.sim.katana.state import _Account, gc_paused


def _add(totals: dict[StockKey, Decimal], key: StockKey, amount: Decimal) -> None:
    value = totals.get(key, ZERO) + amount
    if value == 0:
        totals.pop(key, None)
    else:
        totals[key] = value


class _Stock(_Account):
    """Stock events, movements, and the commitments and expectations of every document."""

    # ---- stock --------------------------------------------------------------------------------

    def set_stock(self, variant_id: int, location_id: int, quantity: Quantity) -> int | None:
        """Count stock to an absolute level (a stock adjustment); None when nothing changed."""
        made = self.set_stock_levels([(variant_id, location_id, quantity)])
        return made[0] if made else None

    def set_stock_levels(self, levels: Iterable[tuple[int, int, Quantity]]) -> list[int]:
        """One stock count over many (variant, location) levels, as one event.

        Katana adjustments belong to one location: one adjustment per location that changed.
        Returns their ids (none when every level was already right).
        """
        by_location: dict[int, list[tuple[int, Decimal]]] = {}
        live_locations = self.location_names()
        with gc_paused():
            for variant_id, location_id, quantity in levels:
                self._check_stock_key(variant_id, location_id, live_locations)
                delta = _decimal(quantity) - self._in_stock.get((variant_id, location_id), ZERO)
                if delta != 0:
                    by_location.setdefault(location_id, []).append((variant_id, delta))
            if not by_location:
                return []
            at = self._tick()
            return [
                self._record_adjustment(location_id, deltas, "Stock count", at)
                for location_id, deltas in by_location.items()
            ]

    def adjust_stock(self, variant_id: int, location_id: int, delta: Quantity) -> int:
        """Add (or remove, if negative) stock through a stock adjustment; its id."""
        self._check_stock_key(variant_id, location_id, self.location_names())
        amount = _decimal(delta)
        if amount == 0:
            raise ValueError("an adjustment of 0 changes nothing")
        return self._record_adjustment(
            location_id, [(variant_id, amount)], "Adjustment", self._tick()
        )

    def _record_adjustment(
        self, location_id: int, deltas: list[tuple[int, Decimal]], reason: str, at: datetime
    ) -> int:
        adjustment_id = self._next_id("stock_adjustment")
        cause = _Cause(at, f"SA-{adjustment_id}", adjustment_id)
        rows: list[_Line] = []
        for variant_id, delta in deltas:
            line = self._line(variant_id, delta, location_id, at, adjustment_id)
            rows.append(line)
            self._move(cause, "StockAdjustmentRow", line.id, variant_id, location_id, delta)
        adjustment = _StockAdjustment(
            id=adjustment_id,
            number=f"SA-{adjustment_id}",
            location_id=location_id,
            reason=reason,
            rows=rows,
            created_at=at,
            updated_at=at,
        )
        self._adjustments.add(adjustment)
        return adjustment_id

    def delete_stock_adjustment(self, adjustment_id: int) -> None:
        """Delete an adjustment: its stock goes back and its movements are withdrawn.

        Katana's movement types have no "reversal": a deleted document is modelled as leaving no
        movement at all (the strictest case for a poller), seen only as the deleted document.
        """
        adjustment = self._adjustments.live(adjustment_id, "stock adjustment")
        at = self._tick()
        self._withdraw("StockAdjustmentRow", {line.id for line in adjustment.rows})
        adjustment.deleted_at = at
        self._adjustments.touch(adjustment, at)

    def _withdraw(self, resource_type: str, line_ids: Collection[int]) -> None:
        """Undo the movements of these rows: their stock goes back and the movements vanish."""
        gone = [
            m
            for m in self._movements.created
            if m.resource_type == resource_type and m.resource_id in line_ids
        ]
        for movement in gone:
            key = (movement.variant_id, movement.location_id)
            self._in_stock[key] = self._in_stock.get(key, ZERO) - movement.quantity_change
            self._movements.remove(movement)

    def _check_stock_key(
        self, variant_id: int, location_id: int, live_locations: Collection[int]
    ) -> None:
        variant = self._variants.rows.get(variant_id)
        if variant is None or variant.deleted_at is not None:
            raise ValueError(f"no live variant with id {variant_id}")
        if location_id not in live_locations:
            raise ValueError(f"no live location with id {location_id}")

    def _line(
        self, variant_id: int, quantity: Decimal, location_id: int, at: datetime, parent_id: int
    ) -> _Line:
        return _Line(
            id=self._next_id("row"),
            variant_id=variant_id,
            quantity=quantity,
            location_id=location_id,
            parent_id=parent_id,
            created_at=at,
            updated_at=at,
        )

    def _move(
        self,
        cause: _Cause,
        resource_type: str,
        resource_id: int,
        variant_id: int,
        location_id: int,
        delta: Decimal,
    ) -> None:
        """Change in-stock and record its movement (callers never pass a zero change)."""
        key = (variant_id, location_id)
        balance = self._in_stock.get(key, ZERO) + delta
        self._in_stock[key] = balance
        self._movements.add(
            _Movement(
                id=self._next_id("movement"),
                variant_id=variant_id,
                location_id=location_id,
                resource_type=resource_type,
                resource_id=resource_id,
                caused_by_order_no=cause.order_no,
                caused_by_resource_id=cause.resource_id,
                quantity_change=delta,
                balance_after=balance,
                created_at=cause.at,
                updated_at=cause.at,
            )
        )

    # ---- commitments --------------------------------------------------------------------------

    def _commitments(self, resource: _Record) -> dict[StockKey, Decimal]:
        """What a resource commits now (what sales/manufacturing/transfers hold back)."""
        found: dict[StockKey, Decimal] = {}
        if resource.deleted_at is not None:
            return found
        if isinstance(resource, _SalesOrder) and resource.status in SALES_COMMITTING:
            for line in resource.rows:
                _add(found, (line.variant_id, line.location_id), line.quantity)
        elif isinstance(resource, _ManufacturingOrder) and resource.status in MO_OPEN:
            for row_id in resource.recipe_row_ids:
                row = self._recipe_rows.rows[row_id]
                need = row.planned_quantity_per_unit * resource.planned_quantity
                _add(found, (row.variant_id, resource.location_id), need)
        elif isinstance(resource, _StockTransfer) and resource.status == TRANSFER_DRAFT:
            for line in resource.rows:
                _add(found, (line.variant_id, resource.source_location_id), line.quantity)
        elif isinstance(resource, _PurchaseOrder) and resource.status == PO_OPEN:
            # An outsourced order holds the ingredients the subcontractor will use.
            for ingredient, made in self._outsourced_needs(resource):
                need = ingredient.planned_quantity_per_unit * made.quantity
                _add(found, (ingredient.ingredient_variant_id, resource.location_id), need)
        return found

    def _outsourced_needs(
        self, order: _PurchaseOrder
    ) -> Iterator[tuple[_OutsourcedRecipeRow, _Line]]:
        """Each live recipe row of an outsourced order with the order row it is made into."""
        made = {line.id: line for line in order.rows}
        for row_id in order.recipe_row_ids:
            row = self._outsourced_recipe_rows.rows[row_id]
            if row.deleted_at is None and row.purchase_order_row_id in made:
                yield row, made[row.purchase_order_row_id]

    def _expectations(self, resource: _Record) -> dict[StockKey, Decimal]:
        """What a resource will bring in (open purchase and manufacturing orders)."""
        found: dict[StockKey, Decimal] = {}
        if resource.deleted_at is not None:
            return found
        if isinstance(resource, _PurchaseOrder) and resource.status == PO_OPEN:
            for line in resource.rows:
                _add(found, (line.variant_id, resource.location_id), line.quantity)
        elif isinstance(resource, _ManufacturingOrder) and resource.status in MO_OPEN:
            _add(found, (resource.variant_id, resource.location_id), resource.planned_quantity)
        return found

    def _settle(
        self,
        resource: _Record,
        committed_before: dict[StockKey, Decimal],
        expected_before: dict[StockKey, Decimal],
    ) -> None:
        """Apply the change in what `resource` commits and expects since the `before` snapshot."""
        for totals, before, after in (
            (self._committed, committed_before, self._commitments(resource)),
            (self._expected, expected_before, self._expectations(resource)),
        ):
            for key, amount in before.items():
                _add(totals, key, -amount)
            for key, amount in after.items():
                _add(totals, key, amount)

    # ---- document rows ------------------------------------------------------------------------

    def _row_specs(self, rows: Sequence[tuple[int, Quantity]]) -> list[tuple[int, Decimal]]:
        """Rows checked before an event changes anything: live variants, positive quantities."""
        if not rows:
            raise ValueError("a document needs at least one row")
        wanted = []
        for variant_id, quantity in rows:
            self._variants.live(variant_id, "variant")
            amount = _decimal(quantity)
            if amount <= 0:
                raise ValueError(f"row quantity must be positive, got {amount}")
            wanted.append((variant_id, amount))
        return wanted

    def _new_lines(
        self,
        wanted: Sequence[tuple[int, Decimal]],
        location_id: int,
        at: datetime,
        parent_id: int,
        table: _Table[_Line] | None = None,
    ) -> list[_Line]:
        lines = [self._line(v, amount, location_id, at, parent_id) for v, amount in wanted]
        if table is not None:
            for line in lines:
                table.add(line)
        return lines

    # ---- transfers ----------------------------------------------------------------------------

    def create_stock_transfer(
        self, rows: Sequence[tuple[int, Quantity]], from_location: int, to_location: int
    ) -> int:
        """Start a transfer as a draft: it commits its rows at the source. Its id."""
        at = self._tick()
        return self._new_transfer(rows, from_location, to_location, at).id

    def ship_stock_transfer(self, transfer_id: int) -> None:
        """Send a draft transfer on its way (inTransit): the stock leaves the source."""
        transfer = self._transfers.live(transfer_id, "stock transfer")
        if transfer.status != TRANSFER_DRAFT:
            raise ValueError(f"stock transfer {transfer_id} is {transfer.status}")
        at = self._tick()
        committed, expected = self._commitments(transfer), self._expectations(transfer)
        transfer.status = TRANSFER_IN_TRANSIT
        self._move_transfer(transfer, at, source=True, target=False)
        self._settle(transfer, committed, expected)
        self._transfers.touch(transfer, at)

    def complete_stock_transfer(self, transfer_id: int) -> None:
        """Receive a draft or in-transit transfer: the stock arrives at the target."""
        transfer = self._transfers.live(transfer_id, "stock transfer")
        if transfer.status == TRANSFER_RECEIVED:
            raise ValueError(f"stock transfer {transfer_id} is {transfer.status}")
        self._finish_transfer(transfer, self._tick())

    def delete_stock_transfer(self, transfer_id: int) -> None:
        """Delete a draft transfer, releasing what it committed (seen with include_deleted)."""
        transfer = self._transfers.live(transfer_id, "stock transfer")
        if transfer.status != TRANSFER_DRAFT:
            raise ValueError(f"stock transfer {transfer_id} is {transfer.status}")
        at = self._tick()
        committed, expected = self._commitments(transfer), self._expectations(transfer)
        transfer.deleted_at = at
        self._settle(transfer, committed, expected)
        self._transfers.touch(transfer, at)
        self._open_transfers.pop(transfer.id, None)

    def transfer_stock(
        self, variant_id: int, from_location: int, to_location: int, quantity: Quantity
    ) -> int:
        """Move stock between locations in one step (movements at both); the transfer id."""
        at = self._tick()
        transfer = self._new_transfer([(variant_id, quantity)], from_location, to_location, at)
        self._finish_transfer(transfer, at)
        return transfer.id

    def _new_transfer(
        self,
        rows: Sequence[tuple[int, Quantity]],
        from_location: int,
        to_location: int,
        at: datetime,
    ) -> _StockTransfer:
        self._locations.live(from_location, "location")
        self._locations.live(to_location, "location")
        if from_location == to_location:
            raise ValueError("a transfer needs two different locations")
        wanted = self._row_specs(rows)
        transfer_id = self._next_id("stock_transfer")
        transfer = _StockTransfer(
            id=transfer_id,
            number=f"ST-{transfer_id}",
            status=TRANSFER_DRAFT,
            source_location_id=from_location,
            target_location_id=to_location,
            rows=self._new_lines(wanted, from_location, at, transfer_id),
            created_at=at,
            updated_at=at,
        )
        self._transfers.add(transfer)
        # A draft from birth, even when received in the same event: receiving releases this.
        self._settle(transfer, {}, {})
        self._open_transfers[transfer.id] = None
        return transfer

    def _finish_transfer(self, transfer: _StockTransfer, at: datetime) -> None:
        committed, expected = self._commitments(transfer), self._expectations(transfer)
        # A draft still holds its stock at the source; in transit, it has already left.
        from_draft = transfer.status == TRANSFER_DRAFT
        transfer.status = TRANSFER_RECEIVED
        self._move_transfer(transfer, at, source=from_draft, target=True)
        self._settle(transfer, committed, expected)
        self._transfers.touch(transfer, at)
        self._open_transfers.pop(transfer.id, None)

    def _move_transfer(
        self, transfer: _StockTransfer, at: datetime, *, source: bool, target: bool
    ) -> None:
        for line in transfer.rows:
            for location_id, delta, moves in (
                (transfer.source_location_id, -line.quantity, source),
                (transfer.target_location_id, line.quantity, target),
            ):
                if moves:
                    self._move(
                        _Cause(at, transfer.number, transfer.id),
                        "StockTransferRow",
                        line.id,
                        line.variant_id,
                        location_id,
                        delta,
                    )
