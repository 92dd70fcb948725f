"""Sales orders in a simulated Katana account, their rows, and make-to-order.

Open orders (NOT_SHIPPED, PARTIALLY_PACKED, PARTIALLY_DELIVERED) commit their rows; PENDING
quotes commit nothing; packing takes the stock out (auto-assembling a kit's shortfall first),
reverting a packed order puts it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from daemon.sim.katana.manufacturing import _Manufacturing
from daemon.sim.katana.records import (
    SALES_FULFILLED,
    SALES_ROW_EDITABLE,
    SALES_STATUSES,
    ZERO,
    Quantity,
    _Cause,
    _Line,
    _SalesOrder,
)


class _Sales(_Manufacturing):
    """Sales-order events (make-to-order creates manufacturing orders)."""

    def create_sales_order(
        self,
        rows: Sequence[tuple[int, Quantity]],
        location_id: int,
        status: str = "NOT_SHIPPED",
    ) -> int:
        """Create a sales order (rows of (variant id, quantity)) at a location; its id."""
        self._check_sales_status(status)
        self._locations.live(location_id, "location")
        wanted = self._row_specs(rows)
        at = self._tick()
        order_id = self._next_id("sales_order")
        order = _SalesOrder(
            id=order_id,
            order_no=f"SO-{order_id}",
            status="PENDING",
            location_id=location_id,
            rows=self._new_lines(wanted, location_id, at, order_id, self._sales_order_rows),
            created_at=at,
            updated_at=at,
        )
        self._sales_orders.add(order)
        self._sales_by_status["PENDING"][order_id] = None
        self._change_sales_status(order, status, at)
        return order_id

    def update_sales_order(
        self,
        order_id: int,
        *,
        rows: Sequence[tuple[int, Quantity]] | None = None,
        status: str | None = None,
        location_id: int | None = None,
    ) -> None:
        """Edit an order: replace its rows, move it, or change its status.

        Rows are edited in place by position (keeping their ids); rows beyond the new list are
        deleted, extra ones added. Packing (PACKED/DELIVERED) takes the stock out; reverting a
        packed order puts it back. Rows and location of a packed order cannot change: revert it
        first, as in Katana.
        """
        order = self._sales_orders.live(order_id, "sales order")
        if status is not None:
            self._check_sales_status(status)
        if (rows is not None or location_id is not None) and order.status in SALES_FULFILLED:
            raise ValueError(f"sales order {order_id} is {order.status}: revert it to edit rows")
        if location_id is not None:
            self._locations.live(location_id, "location")
        wanted = None if rows is None else self._row_specs(rows)
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        if location_id is not None:
            order.location_id = location_id
            for line in order.rows:
                line.location_id = location_id
                self._sales_order_rows.touch(line, at)
        if wanted is not None:
            kept = order.rows[: len(wanted)]
            for line, (variant_id, amount) in zip(kept, wanted, strict=False):
                line.variant_id, line.quantity = variant_id, amount
                self._sales_order_rows.touch(line, at)
            for line in order.rows[len(wanted) :]:
                line.deleted_at = at
                self._sales_order_rows.touch(line, at)
            extra = wanted[len(kept) :]
            order.rows = kept + self._new_lines(
                extra, order.location_id, at, order.id, self._sales_order_rows
            )
        self._settle(order, committed, expected)
        self._sales_orders.touch(order, at)
        if status is not None and status != order.status:
            self._change_sales_status(order, status, at)

    def pack_sales_order(self, order_id: int) -> None:
        """Mark an order PACKED: its stock leaves in-stock (and its commitment ends)."""
        self.update_sales_order(order_id, status="PACKED")

    def deliver_sales_order(self, order_id: int) -> None:
        """Mark an order DELIVERED (packing it first if it was not)."""
        self.update_sales_order(order_id, status="DELIVERED")

    def delete_sales_order(self, order_id: int) -> None:
        """Delete an unfulfilled order, releasing its commitment (seen with include_deleted).

        Its rows are deleted with it (listed by /sales_order_rows with include_deleted).
        """
        order = self._sales_orders.live(order_id, "sales order")
        if order.status in SALES_FULFILLED:
            raise ValueError(f"sales order {order_id} is {order.status}: revert it first")
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        order.deleted_at = at
        for line in order.rows:
            line.deleted_at = at
            self._sales_order_rows.touch(line, at)
        self._settle(order, committed, expected)
        self._sales_orders.touch(order, at)
        self._sales_by_status[order.status].pop(order_id, None)

    # Row by row, as /sales_order_rows does it: the order itself is not touched (its updated_at
    # stays) and no movement is written, yet committed moves.

    def add_sales_order_row(self, order_id: int, variant_id: int, quantity: Quantity) -> int:
        """Add a row to an open order; the new row's id."""
        order = self._row_editable_order(order_id)
        wanted = self._row_specs([(variant_id, quantity)])
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        [line] = self._new_lines(wanted, order.location_id, at, order.id, self._sales_order_rows)
        order.rows.append(line)
        self._settle(order, committed, expected)
        return line.id

    def update_sales_order_row(
        self,
        row_id: int,
        *,
        variant_id: int | None = None,
        quantity: Quantity | None = None,
        location_id: int | None = None,
    ) -> None:
        """Edit one row of an open order: re-point it to another variant, change its quantity
        or the location it ships from."""
        line = self._sales_order_rows.live(row_id, "sales order row")
        order = self._row_editable_order(line.parent_id)
        if location_id is not None:
            self._locations.live(location_id, "location")
            if line.linked_manufacturing_order_id is not None:
                raise ValueError(f"sales order row {row_id} is made to order: unlink it first")
        [(new_variant, amount)] = self._row_specs(
            [
                (
                    line.variant_id if variant_id is None else variant_id,
                    line.quantity if quantity is None else quantity,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        line.variant_id, line.quantity = new_variant, amount
        if location_id is not None:
            line.location_id = location_id
        self._sales_order_rows.touch(line, at)
        self._settle(order, committed, expected)

    def delete_sales_order_row(self, row_id: int) -> None:
        """Delete one row of an open order (listed with include_deleted)."""
        line = self._sales_order_rows.live(row_id, "sales order row")
        order = self._row_editable_order(line.parent_id)
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        line.deleted_at = at
        self._sales_order_rows.touch(line, at)
        order.rows.remove(line)
        self._settle(order, committed, expected)

    def _row_editable_order(self, order_id: int) -> _SalesOrder:
        order = self._sales_orders.live(order_id, "sales order")
        if order.status not in SALES_ROW_EDITABLE:
            raise ValueError(
                f"sales order {order_id} is {order.status}: its rows can change only while "
                f"{' or '.join(sorted(SALES_ROW_EDITABLE))}"
            )
        return order

    def make_to_order(self, row_id: int) -> int:
        """Create a manufacturing order for a sales-order row, linked to it; its id."""
        line = self._sales_order_rows.live(row_id, "sales order row")
        self._row_editable_order(line.parent_id)
        if line.linked_manufacturing_order_id is not None:
            raise ValueError(f"sales order row {row_id} is already made to order")
        mo_id = self.create_manufacturing_order(line.variant_id, line.location_id, line.quantity)
        mo = self._manufacturing_orders.rows[mo_id]
        mo.sales_order_row_id, line.linked_manufacturing_order_id = row_id, mo_id
        self._sales_order_rows.touch(line, mo.created_at)
        return mo_id

    def unlink_manufacturing_order(self, row_id: int) -> None:
        """POST /manufacturing_order_unlink: the order and the row forget each other.

        Both are updated; no stock moves and nothing else changes (the row still commits).
        """
        line = self._sales_order_rows.live(row_id, "sales order row")
        mo_id = line.linked_manufacturing_order_id
        if mo_id is None:
            raise ValueError(f"sales order row {row_id} is not linked to a manufacturing order")
        mo = self._manufacturing_orders.get(mo_id, "manufacturing order")
        at = self._tick()
        line.linked_manufacturing_order_id, mo.sales_order_row_id = None, None
        self._sales_order_rows.touch(line, at)
        self._manufacturing_orders.touch(mo, at)

    def _check_sales_status(self, status: str) -> None:
        if status not in SALES_STATUSES:
            raise ValueError(f"unknown sales order status {status!r}")

    def _change_sales_status(self, order: _SalesOrder, status: str, at: datetime) -> None:
        old = order.status
        committed, expected = self._commitments(order), self._expectations(order)
        order.status = status
        self._settle(order, committed, expected)
        self._sales_orders.touch(order, at)
        self._sales_by_status[old].pop(order.id, None)
        self._sales_by_status[status][order.id] = None
        shipping = status in SALES_FULFILLED and old not in SALES_FULFILLED
        returning = old in SALES_FULFILLED and status not in SALES_FULFILLED
        if not (shipping or returning):
            return
        cause = _Cause(at, order.order_no, order.id)
        for line in order.rows:
            if shipping:
                self._assemble_if_short(cause, line)
            delta = -line.quantity if shipping else line.quantity
            self._move(cause, "SalesOrderRow", line.id, line.variant_id, line.location_id, delta)

    def _assemble_if_short(self, cause: _Cause, line: _Line) -> None:
        """Auto-assembly: packing a kit beyond its in-stock builds the rest from its recipe."""
        if not self.is_kit(line.variant_id):
            return
        short = line.quantity - max(self.in_stock(line.variant_id, line.location_id), ZERO)
        if short <= 0:
            return
        for entry in self._bom_by_kit.get(line.variant_id, {}).values():
            used = -entry.quantity * short
            ingredient = entry.ingredient_variant_id
            self._move(cause, "ProductionIngredient", line.id, ingredient, line.location_id, used)
        self._move(cause, "Production", line.id, line.variant_id, line.location_id, short)
