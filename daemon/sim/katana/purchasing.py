"""Purchase orders in a simulated Katana account: regular and outsourced, and their rows.

An open order (NOT_RECEIVED) expects its rows; an outsourced one also commits the ingredients
its subcontractor will use (its recipe rows, from the product's BOM). Orders are received whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from daemon.sim.katana.records import (
    PO_DONE,
    PO_OPEN,
    Quantity,
    _Cause,
    _OutsourcedRecipeRow,
    _PurchaseOrder,
)
from daemon.sim.katana.stock import _Stock


class _Purchasing(_Stock):
    """Purchase-order events."""

    def create_purchase_order(self, rows: Sequence[tuple[int, Quantity]], location_id: int) -> int:
        """Order stock from a supplier (NOT_RECEIVED): it shows as expected. Its id."""
        return self._new_purchase_order(rows, location_id, self._tick()).id

    def create_outsourced_purchase_order(
        self, variant_id: int, location_id: int, quantity: Quantity
    ) -> int:
        """Order a product from a subcontractor who makes it from our ingredients (its recipe).

        Until received the ingredients are committed, like a manufacturing order's; receiving
        consumes them (PurchaseOrderRecipeRow movements) and adds the product. Its id.
        """
        variant = self._variants.live(variant_id, "variant")
        if variant.product_id is None:
            raise ValueError(f"variant {variant_id} is a material: it cannot be outsourced")
        at = self._tick()
        return self._new_purchase_order(
            [(variant_id, quantity)], location_id, at, outsourced=True
        ).id

    def mark_purchase_order_received(self, order_id: int) -> None:
        """Receive an open purchase order: its rows enter in-stock (movements)."""
        order = self._purchase_orders.live(order_id, "purchase order")
        if order.status != PO_OPEN:
            raise ValueError(f"purchase order {order_id} is {order.status}")
        self._receive(order, self._tick())

    def receive_purchase_order(self, rows: Sequence[tuple[int, Quantity]], location_id: int) -> int:
        """Create and receive a purchase order in one step; its id."""
        at = self._tick()
        order = self._new_purchase_order(rows, location_id, at)
        self._receive(order, at)
        return order.id

    # Rows one by one (/purchase_order_rows, /outsourced_purchase_order_recipe_rows): the order
    # is not touched.

    def update_purchase_order_row(
        self, row_id: int, *, variant_id: int | None = None, quantity: Quantity | None = None
    ) -> None:
        """Edit a row not yet received (updatepurchaseorderrow.md: only while received_date is
        null): only what is expected moves."""
        line = self._purchase_order_rows.live(row_id, "purchase order row")
        if line.received_date is not None:
            raise ValueError(f"purchase order row {row_id} is received: it cannot be edited")
        order = self._purchase_orders.live(line.parent_id, "purchase order")
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
        self._purchase_order_rows.touch(line, at)
        self._settle(order, committed, expected)

    def delete_purchase_order_row(self, row_id: int) -> None:
        """Delete a row of a regular purchase order. A received row takes its stock back, and
        its receipt movement is withdrawn (see delete_stock_adjustment)."""
        line = self._purchase_order_rows.live(row_id, "purchase order row")
        order = self._purchase_orders.live(line.parent_id, "purchase order")
        if order.entity_type == "outsourced":
            raise ValueError(f"purchase order {order.id} is outsourced: its product row stays")
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        if line.received_date is not None:
            self._withdraw("PurchaseOrderRow", {line.id})
        line.deleted_at = at
        self._purchase_order_rows.touch(line, at)
        order.rows.remove(line)
        self._settle(order, committed, expected)

    def update_outsourced_recipe_row(
        self,
        row_id: int,
        *,
        variant_id: int | None = None,
        planned_quantity_per_unit: Quantity | None = None,
    ) -> None:
        """Re-point an open outsourced order's ingredient, or change how much a unit needs."""
        row = self._outsourced_recipe_rows.live(row_id, "outsourced recipe row")
        order = self._open_purchase_order(row.purchase_order_id)
        [(ingredient, per_unit)] = self._row_specs(
            [
                (
                    row.ingredient_variant_id if variant_id is None else variant_id,
                    row.planned_quantity_per_unit
                    if planned_quantity_per_unit is None
                    else planned_quantity_per_unit,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        row.ingredient_variant_id, row.planned_quantity_per_unit = ingredient, per_unit
        self._outsourced_recipe_rows.touch(row, at)
        self._settle(order, committed, expected)

    def delete_outsourced_recipe_row(self, row_id: int) -> None:
        """Remove an ingredient from an open outsourced order (listed as deleted)."""
        row = self._outsourced_recipe_rows.live(row_id, "outsourced recipe row")
        order = self._open_purchase_order(row.purchase_order_id)
        at = self._tick()
        committed, expected = self._commitments(order), self._expectations(order)
        row.deleted_at = at
        self._outsourced_recipe_rows.touch(row, at)
        order.recipe_row_ids.remove(row_id)
        self._settle(order, committed, expected)

    def _open_purchase_order(self, order_id: int) -> _PurchaseOrder:
        order = self._purchase_orders.live(order_id, "purchase order")
        if order.status != PO_OPEN:
            raise ValueError(f"purchase order {order_id} is {order.status}")
        return order

    def _new_purchase_order(
        self,
        rows: Sequence[tuple[int, Quantity]],
        location_id: int,
        at: datetime,
        *,
        outsourced: bool = False,
    ) -> _PurchaseOrder:
        self._locations.live(location_id, "location")
        wanted = self._row_specs(rows)
        order_id = self._next_id("purchase_order")
        order = _PurchaseOrder(
            id=order_id,
            order_no=f"PO-{order_id}",
            status=PO_OPEN,
            location_id=location_id,
            rows=self._new_lines(wanted, location_id, at, order_id, self._purchase_order_rows),
            entity_type="outsourced" if outsourced else "regular",
            created_at=at,
            updated_at=at,
        )
        if outsourced:
            for line in order.rows:
                for entry in self._bom_by_kit.get(line.variant_id, {}).values():
                    row = _OutsourcedRecipeRow(
                        id=self._next_id("outsourced_recipe_row"),
                        purchase_order_id=order_id,
                        purchase_order_row_id=line.id,
                        ingredient_variant_id=entry.ingredient_variant_id,
                        planned_quantity_per_unit=entry.quantity,
                        created_at=at,
                        updated_at=at,
                    )
                    self._outsourced_recipe_rows.add(row)
                    order.recipe_row_ids.append(row.id)
        self._purchase_orders.add(order)
        # Expected from birth, even when received in the same event: receiving releases this.
        self._settle(order, {}, {})
        self._open_pos[order.id] = None
        return order

    def _receive(self, order: _PurchaseOrder, at: datetime) -> None:
        committed, expected = self._commitments(order), self._expectations(order)
        cause = _Cause(at, order.order_no, order.id)
        for row, made in list(self._outsourced_needs(order)):
            used = -row.planned_quantity_per_unit * made.quantity
            self._move(
                cause,
                "PurchaseOrderRecipeRow",
                row.id,
                row.ingredient_variant_id,
                order.location_id,
                used,
            )
        order.status = PO_DONE
        for line in order.rows:
            line.received_date = at
            self._purchase_order_rows.touch(line, at)
            self._move(
                cause,
                "PurchaseOrderRow",
                line.id,
                line.variant_id,
                order.location_id,
                line.quantity,
            )
        self._settle(order, committed, expected)
        self._purchase_orders.touch(order, at)
        self._open_pos.pop(order.id, None)
