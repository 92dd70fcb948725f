"""Every resource of a simulated Katana account rendered as Katana's API returns it.

The shapes are those of docs/design.md ("Katana payloads") and katana-openapi.yaml:
timestamps ``2026-03-01T12:00:00.000Z``, `/inventory` quantities as decimal strings with 5
places, row quantities as JSON numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.sim.katana.records import (
    Json,
    _BomEntry,
    _Item,
    _Line,
    _Location,
    _ManufacturingOrder,
    _Movement,
    _OutsourcedRecipeRow,
    _PurchaseOrder,
    _RecipeRow,
    _Record,
    _SalesOrder,
    _StockAdjustment,
    _StockTransfer,
    _Variant,
    iso,
    number,
    quantity_text,
)

if TYPE_CHECKING:
    from daemon.sim.katana.account import KatanaSim


# The customer of every simulated sales order (Katana requires one).
SIM_CUSTOMER_ID = 1


class _Payloads:
    """The renderers of the REST API: one method per resource, a record in, JSON out."""

    sim: KatanaSim

    @staticmethod
    def _stamps(row: _Record) -> Json:
        return {
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
            "deleted_at": None if row.deleted_at is None else iso(row.deleted_at),
        }

    def _location(self, row: _Location) -> Json:
        return {
            "id": row.id,
            "name": row.name,
            "legal_name": row.name,
            "address_id": None,
            "is_primary": row.is_primary,
            "sales_allowed": True,
            "manufacturing_allowed": True,
            "purchase_allowed": True,
            **self._stamps(row),
        }

    def _variant(self, row: _Variant) -> Json:
        return {
            "id": row.id,
            "sku": row.sku,
            "product_id": row.product_id,
            "material_id": row.material_id,
            "type": "product" if row.product_id is not None else "material",
            # No prices: the sim models none, and katana-openapi.yaml has them as non-null
            # numbers (optional), so they are left out rather than sent as null.
            "config_attributes": [],
            "internal_barcode": None,
            "registered_barcode": None,
            "supplier_item_codes": [],
            **self._stamps(row),
        }

    def _item(self, row: _Item) -> Json:
        body: Json = {
            "id": row.id,
            "name": row.name,
            "uom": "pcs",
            "type": row.kind,
            "is_sellable": row.kind == "product",
            "is_purchasable": True,
            "archived_at": None if row.archived_at is None else iso(row.archived_at),
            **self._stamps(row),
        }
        if row.category is not None:
            body["category_name"] = row.category
        if row.kind == "product":
            body["is_producible"] = any(self.sim._bom_by_kit.get(v) for v in row.variant_ids)
            body["is_auto_assembly"] = row.is_auto_assembly
        variants = (self.sim._variants.rows[v] for v in row.variant_ids)
        body["variants"] = [self._variant(v) for v in variants if v.deleted_at is None]
        return body

    def _bom_row(self, row: _BomEntry) -> Json:
        # katana-openapi.yaml BomRow: a numeric quantity, a rank, and no deleted_at.
        return {
            "id": row.uuid,
            "product_item_id": row.product_item_id,
            "product_variant_id": row.product_variant_id,
            "ingredient_variant_id": row.ingredient_variant_id,
            "quantity": number(row.quantity),
            "notes": None,
            "rank": (row.seq + 1) * 10_000,
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
        }

    def _movement(self, row: _Movement) -> Json:
        return {
            "id": row.id,
            "variant_id": row.variant_id,
            "location_id": row.location_id,
            "resource_type": row.resource_type,
            "resource_id": row.resource_id,
            "caused_by_order_no": row.caused_by_order_no,
            "caused_by_resource_id": row.caused_by_resource_id,
            "movement_date": iso(row.created_at),
            # Numbers here, unlike /inventory's decimal strings (katana-openapi.yaml and the
            # portal's example agree).
            "quantity_change": number(row.quantity_change),
            "balance_after": number(row.balance_after),
            "value_per_unit": 0,
            "value_in_stock_after": 0,
            "average_cost_after": 0,
            "rank": row.id,
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
        }

    @staticmethod
    def _line(line: _Line, parent_key: str, parent_id: int, **extra: Any) -> Json:
        return {
            "id": line.id,
            parent_key: parent_id,
            "variant_id": line.variant_id,
            "quantity": number(line.quantity),
            **extra,
            "created_at": iso(line.created_at),
            "updated_at": iso(line.updated_at),
        }

    def _sales_order_row(self, line: _Line) -> Json:
        return {
            "id": line.id,
            "sales_order_id": line.parent_id,
            "quantity": number(line.quantity),
            "variant_id": line.variant_id,
            "location_id": line.location_id,
            "linked_manufacturing_order_id": line.linked_manufacturing_order_id,
            **self._stamps(line),
        }

    def _purchase_order_row(self, line: _Line) -> Json:
        return {
            "id": line.id,
            "purchase_order_id": line.parent_id,
            "quantity": number(line.quantity),
            "variant_id": line.variant_id,
            "location_id": line.location_id,
            "received_date": None if line.received_date is None else iso(line.received_date),
            **self._stamps(line),
        }

    def _outsourced_recipe_row(self, row: _OutsourcedRecipeRow) -> Json:
        return {
            "id": row.id,
            "purchase_order_id": row.purchase_order_id,
            "purchase_order_row_id": row.purchase_order_row_id,
            "ingredient_variant_id": row.ingredient_variant_id,
            "planned_quantity_per_unit": number(row.planned_quantity_per_unit),
            "notes": None,
            "batch_transactions": [],
            "cost": None,
            **self._stamps(row),
        }

    def _sales_order(self, row: _SalesOrder) -> Json:
        return {
            "id": row.id,
            "order_no": row.order_no,
            "status": row.status,
            "location_id": row.location_id,
            # Katana requires a customer on every order; the sim has one.
            "customer_id": SIM_CUSTOMER_ID,
            "source": "api",
            "order_created_date": iso(row.created_at),
            **self._stamps(row),
            "sales_order_rows": [self._sales_order_row(line) for line in row.rows],
        }

    def _manufacturing_order(self, row: _ManufacturingOrder) -> Json:
        actual = row.actual_quantity
        return {
            "id": row.id,
            "order_no": row.order_no,
            "status": row.status,
            "variant_id": row.variant_id,
            "location_id": row.location_id,
            "planned_quantity": number(row.planned_quantity),
            "actual_quantity": None if actual is None else number(actual),
            "done_date": None if row.done_date is None else iso(row.done_date),
            "is_linked_to_sales_order": row.sales_order_row_id is not None,
            **self._linked(row.sales_order_row_id),
            **self._stamps(row),
        }

    def _linked(self, row_id: int | None) -> Json:
        # katana-openapi.yaml has both ids as non-null integers: an unlinked order has neither.
        order_id = self._linked_order(row_id)
        if row_id is None or order_id is None:
            return {}
        return {"sales_order_id": order_id, "sales_order_row_id": row_id}

    def _linked_order(self, row_id: int | None) -> int | None:
        line = None if row_id is None else self.sim._sales_order_rows.rows.get(row_id)
        return None if line is None else line.parent_id

    def _recipe_row(self, row: _RecipeRow) -> Json:
        return {
            "id": row.id,
            "manufacturing_order_id": row.manufacturing_order_id,
            "variant_id": row.variant_id,
            "planned_quantity_per_unit": quantity_text(row.planned_quantity_per_unit),
            "total_actual_quantity": quantity_text(row.total_actual_quantity),
            **self._stamps(row),
        }

    def _transfer(self, row: _StockTransfer) -> Json:
        return {
            "id": row.id,
            "stock_transfer_number": row.number,
            "source_location_id": row.source_location_id,
            "target_location_id": row.target_location_id,
            "status": row.status,
            "transfer_date": iso(row.created_at),
            **self._stamps(row),
            "stock_transfer_rows": [
                self._line(line, "stock_transfer_id", row.id) for line in row.rows
            ],
        }

    def _adjustment(self, row: _StockAdjustment) -> Json:
        return {
            "id": row.id,
            "stock_adjustment_number": row.number,
            "location_id": row.location_id,
            "reason": row.reason,
            "stock_adjustment_date": iso(row.created_at),
            **self._stamps(row),
            # katana-openapi.yaml StockAdjustmentRow allows no other fields (no timestamps, no
            # location: the adjustment's own).
            "stock_adjustment_rows": [
                {"id": line.id, "variant_id": line.variant_id, "quantity": number(line.quantity)}
                for line in row.rows
            ],
        }

    def _purchase_order(self, row: _PurchaseOrder) -> Json:
        return {
            "id": row.id,
            "order_no": row.order_no,
            "status": row.status,
            "entity_type": row.entity_type,
            "location_id": row.location_id,
            # Where an outsourced order's ingredients are processed (required for those, null
            # on regular orders); the sim's subcontractor works from the receiving location.
            "tracking_location_id": row.location_id if row.entity_type == "outsourced" else None,
            **self._stamps(row),
            "purchase_order_rows": [self._purchase_order_row(line) for line in row.rows],
        }
