"""The state of one simulated Katana account, its clock, and the reads made of it.

`_Account` holds every table and index, the running totals (in stock, committed, expected per
(variant, location)), the business clock (one strictly increasing millisecond timestamp per
event) and the id sequences. Its reads serve oracles, scenario drivers and the HTTP layer; the
business events that change the state are the parts `account.KatanaSim` is made of.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from daemon.sim.katana.faults import KatanaFaults
from daemon.sim.katana.records import (
    SALES_STATUSES,
    ZERO,
    Json,
    SimVariant,
    StockKey,
    _BomEntry,
    _Item,
    _Line,
    _Location,
    _ManufacturingOrder,
    _money_text,
    _Movement,
    _OutsourcedRecipeRow,
    _PurchaseOrder,
    _RecipeRow,
    _SalesOrder,
    _StockAdjustment,
    _StockTransfer,
    _Table,
    _Variant,
    quantity_text,
)
from daemon.sim.katana.webhooks import KatanaWebhooks


def _utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC during a bulk load (nests).

    A 100k-variant catalogue creates about a million small objects; CPython would rescan the
    whole heap many times meanwhile (halving throughput) although none of them is garbage.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Account:
    """One Katana account's state and reads; `KatanaSim` adds the business events and the API."""

    def __init__(
        self,
        *,
        api_key: str = "katana-sim-key",
        requests_per_minute: int = 60,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api_key = api_key
        self.requests_per_minute = requests_per_minute
        self.faults = KatanaFaults()
        self.requests_total = 0
        self.requests_by_path: Counter[str] = Counter()
        self.throttled_total = 0
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._last_stamp: datetime | None = None
        self._last_ids: dict[str, int] = {}

        self._locations: _Table[_Location] = _Table()
        # Products and materials have separate id sequences in Katana, hence two tables.
        self._products: _Table[_Item] = _Table()
        self._materials: _Table[_Item] = _Table()
        self._variants: _Table[_Variant] = _Table()
        self._bom: _Table[_BomEntry] = _Table()
        self._movements: _Table[_Movement] = _Table()
        self._sales_orders: _Table[_SalesOrder] = _Table()
        self._manufacturing_orders: _Table[_ManufacturingOrder] = _Table()
        self._recipe_rows: _Table[_RecipeRow] = _Table()
        self._transfers: _Table[_StockTransfer] = _Table()
        self._adjustments: _Table[_StockAdjustment] = _Table()
        self._purchase_orders: _Table[_PurchaseOrder] = _Table()
        # Rows Katana lists on their own (/sales_order_rows, /purchase_order_rows, ...), and edits
        # or deletes without touching their document.
        self._sales_order_rows: _Table[_Line] = _Table()
        self._purchase_order_rows: _Table[_Line] = _Table()
        self._outsourced_recipe_rows: _Table[_OutsourcedRecipeRow] = _Table()
        self._bom_by_uuid: dict[str, _BomEntry] = {}
        self._bom_by_kit: dict[int, dict[int, _BomEntry]] = {}
        self._kits_by_ingredient: dict[int, Counter[int]] = {}  # ingredient -> kit -> rows

        self._in_stock: dict[StockKey, Decimal] = {}
        self._committed: dict[StockKey, Decimal] = {}
        self._expected: dict[StockKey, Decimal] = {}
        self._sales_by_status: dict[str, dict[int, None]] = {s: {} for s in SALES_STATUSES}
        self._open_mos: dict[int, None] = {}
        self._open_transfers: dict[int, None] = {}
        self._open_pos: dict[int, None] = {}
        self._visible_cache: dict[bool, tuple[tuple[int, ...], list[int]]] = {}
        # Webhook subscriptions and deliveries (webhooks.py): every table is watched.
        self.webhooks = KatanaWebhooks(sleep=sleep)
        self._watch_tables()

    # ---- webhooks -----------------------------------------------------------------------------

    def _watch_tables(self) -> None:
        """Route each table's changes to the webhook event Katana fires for them."""
        hooks = self.webhooks

        def document(
            resource: str, done: str | None, done_action: str
        ) -> Callable[[Any, bool], None]:
            def observe(row: Any, created: bool) -> None:
                def event() -> tuple[str, str, str | None]:
                    status = getattr(row, "status", None)
                    kind = resource
                    if getattr(row, "entity_type", "regular") == "outsourced":
                        kind = "outsourced_" + resource
                    if row.deleted_at is not None:
                        return kind, f"{kind}.deleted", status
                    if created:
                        return kind, f"{kind}.created", status
                    if done is not None and status == done:
                        return kind, f"{kind}.{done_action}", status
                    if resource == "sales_order" and status == "PACKED":
                        return kind, f"{kind}.packed", status
                    return kind, f"{kind}.updated", status

                hooks.changed((resource, str(row.id)), event, created)

            return observe

        def row_event(resource: str) -> Callable[[Any, bool], None]:
            def observe(row: Any, created: bool) -> None:
                def event() -> tuple[str, str, str | None]:
                    action = "deleted" if row.deleted_at is not None else "updated"
                    return resource, f"{resource}.{'created' if created else action}", None

                hooks.changed((resource, str(row.id)), event, created)

            return observe

        def sales_row(row: Any, created: bool) -> None:
            # Katana has no sales-order-row events: the order's `updated` fires.
            order = self._sales_orders.rows.get(row.parent_id)
            if order is None:
                return  # the order being created: its own `created` says it
            hooks.changed(("sales_order", str(order.id)), lambda: _updated(order, "sales_order"))

        def purchase_row(row: Any, created: bool) -> None:
            order = self._purchase_orders.rows.get(row.parent_id)
            kind = "purchase_order_row"
            if order is not None and order.entity_type == "outsourced":
                kind = "outsourced_purchase_order_row"
            row_event(kind)(row, created)

        def stock(row: Any, created: bool) -> None:
            # No adjustment or transfer events: each variant's current_inventory fires.
            for line in row.rows:
                variant = self._variants.rows.get(line.variant_id)
                kind = "material" if variant is not None and variant.material_id else "product"
                hooks.changed(("current_inventory", str(line.variant_id)), _inventory_event(kind))

        self._sales_orders.observer = document("sales_order", "DELIVERED", "delivered")
        self._manufacturing_orders.observer = document("manufacturing_order", "DONE", "done")
        self._purchase_orders.observer = document("purchase_order", "RECEIVED", "received")
        self._sales_order_rows.observer = sales_row
        self._recipe_rows.observer = row_event("manufacturing_order_recipe_row")
        self._purchase_order_rows.observer = purchase_row
        self._outsourced_recipe_rows.observer = row_event("outsourced_purchase_order_recipe_row")
        self._adjustments.observer = stock
        self._transfers.observer = stock
        self._variants.observer = row_event("variant")
        self._products.observer = row_event("product")
        self._materials.observer = row_event("material")
        self._bom.observer = row_event("product_recipe_row")

    # ---- time and ids -------------------------------------------------------------------------

    def _tick(self) -> datetime:
        """One business event's timestamp: the clock, at ms precision, strictly increasing."""
        now = self._clock().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = now
        return now

    @property
    def last_event_at(self) -> datetime | None:
        """The timestamp of the latest business event (None before the first)."""
        return self._last_stamp

    def _next_id(self, kind: str) -> int:
        last = self._last_ids[kind] = self._last_ids.get(kind, 0) + 1
        return last

    # ---- reads (for oracles, scenario drivers and the HTTP layer) -----------------------------

    def location_names(self) -> dict[int, str]:
        """Live locations, id -> name."""
        return {lo.id: lo.name for lo in self._locations.created if lo.deleted_at is None}

    def location_id(self, name: str) -> int:
        """The id of the live location with this name."""
        for location_id, location_name in self.location_names().items():
            if location_name == name:
                return location_id
        raise ValueError(f"no location named {name!r}")

    def variants(self) -> list[SimVariant]:
        """Every variant ever created (deleted ones too), in creation order."""
        return [self.variant(v.id) for v in self._variants.created]

    def variant(self, variant_id: int) -> SimVariant:
        """A read-only view of one variant."""
        row = self._variants.get(variant_id, "variant")
        parent = self._parent(row)
        return SimVariant(
            id=row.id,
            sku=row.sku,
            product_id=row.product_id,
            material_id=row.material_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deleted=row.deleted_at is not None,
            archived=parent is not None and parent.archived_at is not None,
            is_kit=parent is not None and parent.kind == "product" and parent.is_auto_assembly,
        )

    def _parent(self, row: _Variant) -> _Item | None:
        if row.product_id is not None:
            return self._products.rows.get(row.product_id)
        if row.material_id is not None:
            return self._materials.rows.get(row.material_id)
        return None

    def is_kit(self, variant_id: int) -> bool:
        """True when the variant's product is auto-assembled (a kit or bundle)."""
        row = self._variants.rows.get(variant_id)
        parent = None if row is None else self._parent(row)
        return parent is not None and parent.kind == "product" and parent.is_auto_assembly

    def recipe(self, kit_variant_id: int) -> dict[int, Decimal]:
        """A kit's live recipe: ingredient variant id -> quantity per kit."""
        return {
            e.ingredient_variant_id: e.quantity
            for e in self._bom_by_kit.get(kit_variant_id, {}).values()
        }

    def kits_using(self, variant_ids: Iterable[int]) -> set[int]:
        """Kits whose potential depends on these variants, following nested kits."""
        found: set[int] = set()
        frontier = list(variant_ids)
        while frontier:
            for kit_id in self._kits_by_ingredient.get(frontier.pop(), ()):
                if kit_id not in found:
                    found.add(kit_id)
                    frontier.append(kit_id)
        return found

    def in_stock(self, variant_id: int, location_id: int) -> Decimal:
        """Physical stock of a variant at a location."""
        return self._in_stock.get((variant_id, location_id), ZERO)

    def committed(self, variant_id: int, location_id: int) -> Decimal:
        """Stock held back by open sales orders, manufacturing orders and transfers."""
        return self._committed.get((variant_id, location_id), ZERO)

    def expected(self, variant_id: int, location_id: int) -> Decimal:
        """Stock on its way from open purchase and manufacturing orders."""
        return self._expected.get((variant_id, location_id), ZERO)

    def potential(self, variant_id: int, location_id: int) -> Decimal | None:
        """Kits that could be assembled from free component stock (None for non-kits)."""
        if not self.is_kit(variant_id):
            return None
        entries = self._bom_by_kit.get(variant_id, {})
        if not entries:
            return ZERO
        best: Decimal | None = None
        for entry in entries.values():
            ingredient = entry.ingredient_variant_id
            free = self.in_stock(ingredient, location_id) - self.committed(ingredient, location_id)
            kits = (free / entry.quantity).to_integral_value(rounding=ROUND_FLOOR)
            best = kits if best is None else min(best, kits)
        return max(best or ZERO, ZERO)

    def stock_row(self, variant_id: int, location_id: int) -> Json:
        """The /inventory row of a variant at a location, exactly as the API serves it."""
        in_stock = self.in_stock(variant_id, location_id)
        committed = self.committed(variant_id, location_id)
        expected = self.expected(variant_id, location_id)
        potential = self.potential(variant_id, location_id)
        return {
            "variant_id": variant_id,
            "location_id": location_id,
            "reorder_point": quantity_text(ZERO),
            "safety_stock_level": quantity_text(ZERO),
            "average_cost": _money_text(ZERO),
            "value_in_stock": _money_text(ZERO),
            "quantity_in_stock": quantity_text(in_stock),
            "quantity_committed": quantity_text(committed),
            "quantity_expected": quantity_text(expected),
            "quantity_missing_or_excess": quantity_text(in_stock + expected - committed),
            "quantity_potential": None if potential is None else quantity_text(potential),
        }

    def sales_order_ids(self, statuses: Collection[str]) -> list[int]:
        """Live sales orders in any of these statuses, oldest first."""
        return [i for s in sorted(statuses) for i in self._sales_by_status.get(s, {})]

    def sales_order_rows(self, order_id: int) -> list[tuple[int, Decimal]]:
        """A sales order's rows as (variant id, quantity)."""
        order = self._sales_orders.get(order_id, "sales order")
        return [(line.variant_id, line.quantity) for line in order.rows]

    def sales_order_row_ids(self, order_id: int) -> list[int]:
        """The ids of a sales order's live rows, in order."""
        return [line.id for line in self._sales_orders.get(order_id, "sales order").rows]

    def recipe_row_ids(self, mo_id: int) -> list[int]:
        """The ids of a manufacturing order's live ingredient rows, in order."""
        return list(self._manufacturing_orders.get(mo_id, "manufacturing order").recipe_row_ids)

    def recipe_row_variant(self, row_id: int) -> int:
        """The ingredient variant of a manufacturing order's ingredient row."""
        return self._recipe_rows.get(row_id, "recipe row").variant_id

    def purchase_order_row_ids(self, order_id: int) -> list[int]:
        """The ids of a purchase order's live rows, in order."""
        return [line.id for line in self._purchase_orders.get(order_id, "purchase order").rows]

    def outsourced_recipe_row_ids(self, order_id: int) -> list[int]:
        """The ids of an outsourced purchase order's live ingredient rows, in order."""
        return list(self._purchase_orders.get(order_id, "purchase order").recipe_row_ids)

    def sales_order_location(self, order_id: int) -> int:
        """The location a sales order ships from."""
        return self._sales_orders.get(order_id, "sales order").location_id

    def open_manufacturing_order_ids(self) -> list[int]:
        """Manufacturing orders not yet done or deleted, oldest first."""
        return list(self._open_mos)

    def open_stock_transfer_ids(self) -> list[int]:
        """Transfers not yet completed, oldest first."""
        return list(self._open_transfers)

    def open_purchase_order_ids(self) -> list[int]:
        """Purchase orders not yet received, oldest first."""
        return list(self._open_pos)

    def manufacturing_order_variant(self, mo_id: int) -> tuple[int, int]:
        """(produced variant id, location id) of a manufacturing order."""
        mo = self._manufacturing_orders.get(mo_id, "manufacturing order")
        return mo.variant_id, mo.location_id

    def inventory_variant_ids(self, include_archived: bool = False) -> list[int]:
        """Variants /inventory lists, ascending: live, and not archived unless asked."""
        # Only catalogue changes invalidate it; orders and stock movements do not.
        token = (self._variants.revision, self._products.revision, self._materials.revision)
        cached = self._visible_cache.get(include_archived)
        if cached is not None and cached[0] == token:
            return cached[1]
        visible = [
            v.id for v in self._variants.created if self.in_inventory(v.id, include_archived)
        ]
        self._visible_cache[include_archived] = (token, visible)
        return visible

    def in_inventory(self, variant_id: int, include_archived: bool = False) -> bool:
        """Whether /inventory lists this variant: live, and not archived unless asked."""
        row = self._variants.rows.get(variant_id)
        if row is None or row.deleted_at is not None:
            return False
        return include_archived or not self._archived(row)

    def _archived(self, row: _Variant) -> bool:
        parent = self._parent(row)
        return parent is not None and parent.archived_at is not None


def _updated(record: Any, resource: str) -> tuple[str, str, str | None]:
    """A document's event when one of its rows changed on its own."""
    action = "deleted" if record.deleted_at is not None else "updated"
    return resource, f"{resource}.{action}", getattr(record, "status", None)


def _inventory_event(kind: str) -> Callable[[], tuple[str, str, str | None]]:
    return lambda: ("current_inventory", f"current_inventory.{kind}_updated", None)
