"""Manufacturing orders in a simulated Katana account, and their ingredient rows.

An open order (NOT_STARTED, IN_PROGRESS, BLOCKED) commits its ingredients (per unit x planned)
and expects its output; completing it consumes the ingredients and adds the product (movements).
"""

from __future__ import annotations

from daemon.sim.katana.records import (
    MO_DONE,
    MO_OPEN,
    Quantity,
    _Cause,
    _decimal,
    _ManufacturingOrder,
    _RecipeRow,
)
from daemon.sim.katana.stock import _Stock


class _Manufacturing(_Stock):
    """Manufacturing-order events."""

    def create_manufacturing_order(
        self, variant_id: int, location_id: int, quantity: Quantity, status: str = "NOT_STARTED"
    ) -> int:
        """Plan production of a product variant; commits its recipe's ingredients. Its id."""
        variant = self._variants.live(variant_id, "variant")
        self._locations.live(location_id, "location")
        if variant.product_id is None:
            raise ValueError(f"variant {variant_id} is a material: it cannot be manufactured")
        if status not in MO_OPEN:
            raise ValueError(f"a new manufacturing order must be open, not {status!r}")
        amount = _decimal(quantity)
        if amount <= 0:
            raise ValueError(f"planned quantity must be positive, got {amount}")
        at = self._tick()
        mo_id = self._next_id("manufacturing_order")
        mo = _ManufacturingOrder(
            id=mo_id,
            order_no=f"MO-{mo_id}",
            status=status,
            variant_id=variant_id,
            location_id=location_id,
            planned_quantity=amount,
            created_at=at,
            updated_at=at,
        )
        for entry in self._bom_by_kit.get(variant_id, {}).values():
            row = _RecipeRow(
                id=self._next_id("recipe_row"),
                manufacturing_order_id=mo_id,
                variant_id=entry.ingredient_variant_id,
                planned_quantity_per_unit=entry.quantity,
                created_at=at,
                updated_at=at,
            )
            self._recipe_rows.add(row)
            mo.recipe_row_ids.append(row.id)
        self._manufacturing_orders.add(mo)
        self._settle(mo, {}, {})
        self._open_mos[mo_id] = None
        return mo_id

    def set_manufacturing_order_status(self, mo_id: int, status: str) -> None:
        """Move an open manufacturing order between NOT_STARTED, IN_PROGRESS and BLOCKED."""
        mo = self._open_mo(mo_id)
        if status not in MO_OPEN:
            raise ValueError(f"use complete_manufacturing_order for {status!r}")
        mo.status = status
        self._manufacturing_orders.touch(mo, self._tick())

    def complete_manufacturing_order(self, mo_id: int) -> None:
        """Finish production: ingredients are consumed and the product is added (movements)."""
        mo = self._open_mo(mo_id)
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        mo.status, mo.actual_quantity, mo.done_date = MO_DONE, mo.planned_quantity, at
        for row_id in mo.recipe_row_ids:
            row = self._recipe_rows.rows[row_id]
            row.total_actual_quantity = row.planned_quantity_per_unit * mo.planned_quantity
            self._recipe_rows.touch(row, at)
            self._move(
                _Cause(at, mo.order_no, mo.id),
                "ManufacturingOrderRecipeRow",
                row.id,
                row.variant_id,
                mo.location_id,
                -row.total_actual_quantity,
            )
        self._move(
            _Cause(at, mo.order_no, mo.id),
            "ManufacturingOrder",
            mo.id,
            mo.variant_id,
            mo.location_id,
            mo.planned_quantity,
        )
        self._settle(mo, committed, expected)
        self._manufacturing_orders.touch(mo, at)
        self._open_mos.pop(mo_id, None)

    def delete_manufacturing_order(self, mo_id: int) -> None:
        """Delete an open manufacturing order, releasing the ingredients it committed."""
        mo = self._open_mo(mo_id)
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        mo.deleted_at = at
        for row_id in mo.recipe_row_ids:
            row = self._recipe_rows.rows[row_id]
            row.deleted_at = at
            self._recipe_rows.touch(row, at)
        self._settle(mo, committed, expected)
        self._manufacturing_orders.touch(mo, at)
        self._open_mos.pop(mo_id, None)

    # Ingredient rows one by one (/manufacturing_order_recipe_rows): the order is not touched and
    # no movement is written, yet what it commits moves.

    def add_recipe_row(
        self, mo_id: int, variant_id: int, planned_quantity_per_unit: Quantity
    ) -> int:
        """Add an ingredient to an open manufacturing order; the new row's id."""
        mo = self._open_mo(mo_id)
        [(ingredient, per_unit)] = self._row_specs([(variant_id, planned_quantity_per_unit)])
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        row = _RecipeRow(
            id=self._next_id("recipe_row"),
            manufacturing_order_id=mo_id,
            variant_id=ingredient,
            planned_quantity_per_unit=per_unit,
            created_at=at,
            updated_at=at,
        )
        self._recipe_rows.add(row)
        mo.recipe_row_ids.append(row.id)
        self._settle(mo, committed, expected)
        return row.id

    def update_recipe_row(
        self,
        row_id: int,
        *,
        variant_id: int | None = None,
        planned_quantity_per_unit: Quantity | None = None,
    ) -> None:
        """Re-point an ingredient row to another variant, or change how much a unit needs."""
        row = self._recipe_rows.live(row_id, "recipe row")
        mo = self._open_mo(row.manufacturing_order_id)
        [(ingredient, per_unit)] = self._row_specs(
            [
                (
                    row.variant_id if variant_id is None else variant_id,
                    row.planned_quantity_per_unit
                    if planned_quantity_per_unit is None
                    else planned_quantity_per_unit,
                )
            ]
        )
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        row.variant_id, row.planned_quantity_per_unit = ingredient, per_unit
        self._recipe_rows.touch(row, at)
        self._settle(mo, committed, expected)

    def delete_recipe_row(self, row_id: int) -> None:
        """Remove an ingredient row from an open manufacturing order (listed as deleted)."""
        row = self._recipe_rows.live(row_id, "recipe row")
        mo = self._open_mo(row.manufacturing_order_id)
        at = self._tick()
        committed, expected = self._commitments(mo), self._expectations(mo)
        row.deleted_at = at
        self._recipe_rows.touch(row, at)
        mo.recipe_row_ids.remove(row_id)
        self._settle(mo, committed, expected)

    def _open_mo(self, mo_id: int) -> _ManufacturingOrder:
        mo = self._manufacturing_orders.live(mo_id, "manufacturing order")
        if mo.status not in MO_OPEN:
            raise ValueError(f"manufacturing order {mo_id} is {mo.status}")
        return mo
