"""Webhook hints → the outbox: read only what the named events can have changed.

A Katana delivery names a resource (`resource_type`, `action`, `object.id`). A targeted cycle
reads that resource's rows from Katana's API (the payload is only a hint: quantities always come
from `/inventory`), marks the variants they name dirty, and lets the cycle's usual tail (settle,
work, stock read, push) do the rest, without reading every delta source.

| event resource | read (deleted rows included) |
| --- | --- |
| `sales_order` | `/sales_order_rows?sales_order_ids=…` (rows edited alone fire `sales_order.*`) |
| `manufacturing_order` | `/manufacturing_orders?ids=…` (produced variant) and its recipe rows |
| `manufacturing_order_recipe_row` | `/manufacturing_order_recipe_rows?ids=…` |
| `purchase_order`, `outsourced_purchase_order` | its rows (and outsourced recipe rows) |
| `purchase_order_row`, `outsourced_purchase_order_row` | the row (and its recipe rows) |
| `outsourced_purchase_order_recipe_row` | the row |
| `current_inventory` | movements, adjustments and transfers since their cursors |

`current_inventory.*` is what stock adjustments and transfers fire (Katana has no events of
their own), and what its `object.id` names is not documented (katana-api.md, live-gateway.yaml):
the movement-bearing lists are read since their cursors instead, and only rows not already
recorded are marked. Catalogue events (`variant`, `product`, `material`, `product_recipe_row`)
change mappings or kits, which the delta cycle's catalogue merge handles: they, and any payload
that names nothing usable, fall back to a delta cycle (the caller's job when `collect` answers
None). Cursors never move here: the safety-net delta poll still reads everything since them.

A row re-pointed to another variant moves the commitment of both: the old one comes from the
row memory the delta sources keep (`StateStore.row_variants`), updated in the same transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.katana.models import ROW_SOURCES, Change
from daemon.sync.catalogue import CatalogueKeeper
from daemon.sync.context import SyncContext
from daemon.sync.sources import DeltaSources
from daemon.webhooks import Hint

log = structlog.get_logger(__name__)

# Ids per list request: Katana's array filters take many, a URL does not take unlimited.
IDS_PER_REQUEST = 50
# Lists a current_inventory event can concern: each stock movement, and what commits stock
# without a movement (an open transfer at its source).
MOVEMENT_SOURCES = ("inventory_movements", "stock_adjustments", "stock_transfers")
# Resources whose events change the catalogue (mappings, kits): a delta cycle handles them.
CATALOGUE_RESOURCES = frozenset({"variant", "product", "material", "product_recipe_row"})


@dataclass
class ReadPlan:
    """The reads a batch of hints needs, by kind (ids are Katana's integer ids)."""

    sales_orders: set[int] = field(default_factory=set)
    manufacturing_orders: set[int] = field(default_factory=set)
    recipe_rows: set[int] = field(default_factory=set)
    purchase_orders: set[int] = field(default_factory=set)
    outsourced_orders: set[int] = field(default_factory=set)
    purchase_rows: set[int] = field(default_factory=set)
    outsourced_rows: set[int] = field(default_factory=set)
    outsourced_recipe_rows: set[int] = field(default_factory=set)
    movements: bool = False


def plan_reads(hints: Iterable[Hint | None]) -> ReadPlan | None:
    """What to read for these hints; None when any of them cannot be targeted."""
    plan = ReadPlan()
    for hint in hints:
        if hint is None or hint.resource in CATALOGUE_RESOURCES:
            return None
        if hint.resource == "current_inventory":
            plan.movements = True
            continue
        object_id = _integer(hint.object_id)
        if object_id is None:
            return None
        target = {
            "sales_order": plan.sales_orders,
            "manufacturing_order": plan.manufacturing_orders,
            "manufacturing_order_recipe_row": plan.recipe_rows,
            "purchase_order": plan.purchase_orders,
            "outsourced_purchase_order": plan.outsourced_orders,
            "purchase_order_row": plan.purchase_rows,
            "outsourced_purchase_order_row": plan.outsourced_rows,
            "outsourced_purchase_order_recipe_row": plan.outsourced_recipe_rows,
        }.get(hint.resource)
        if target is None:
            return None
        target.add(object_id)
    return plan


class TargetedReads:
    """Marks dirty what a batch of webhook hints names, reading only those resources."""

    def __init__(self, ctx: SyncContext, keeper: CatalogueKeeper, sources: DeltaSources) -> None:
        self._ctx = ctx
        self._keeper = keeper
        self._sources = sources
        # Variants marked here since the last delta poll: what deliveries announced.
        self.announced: set[int] = set()

    async def collect(self, hints: Sequence[Hint | None]) -> int | None:
        """Read what `hints` name and mark its variants dirty; how many. None: not targetable
        (the caller runs a delta cycle). A failed read raises, as the delta sources do."""
        plan = plan_reads(hints)
        catalogue = self._keeper.catalogue
        if plan is None or catalogue is None:
            return None
        ctx = self._ctx
        named, window = await asyncio.gather(self._named(plan), self._window(plan))
        now = ctx.now()
        dirty: dict[int, datetime] = {}

        def mark(variant_id: int, at: datetime) -> None:
            if variant_id not in dirty or at < dirty[variant_id]:
                dirty[variant_id] = at

        # The event says the document changed even where its rows' timestamps did not (a
        # delivery, a completion): every variant it names is marked, seen before or not.
        known = await ctx.store.row_variants(
            (c.source, str(c.resource_id)) for c in named if c.source in ROW_SOURCES
        )
        rows: dict[tuple[str, str], int | None] = {}
        for c in named:
            mark(c.variant_id, now)
            if c.source in ROW_SOURCES:
                row = (c.source, str(c.resource_id))
                before = rows[row] if row in rows else known.get(row)
                if before is not None and before != c.variant_id:
                    mark(before, now)
                rows[row] = None if c.deleted else c.variant_id
        for c in window:
            mark(c.variant_id, c.at)
        # Packing a kit may assemble it, moving its ingredients; their kits follow them.
        kits = {v for v in dirty if (k := catalogue.variants.get(v)) is not None and k.is_kit}
        for b in catalogue.bom.values():
            if b.product_variant_id in kits and not b.deleted:
                mark(b.ingredient_variant_id, now)
        for ingredient, at in list(dirty.items()):
            for kit in catalogue.kits_using([ingredient]):
                mark(kit, at)
        self._sources.remember([*named, *window])
        await ctx.store.record_changes(dirty, {}, [c.name for c in ctx.enabled()], rows=rows)
        self.announced.update(dirty)
        log.debug("targeted_read", hints=len(hints), variants=len(dirty))
        return len(dirty)

    async def _named(self, plan: ReadPlan) -> list[Change]:
        """The rows of every document and row the hints name (deleted ones included)."""
        katana = self._ctx.katana
        reads: list[Awaitable[list[Change]]] = []
        for chunk in _chunks(plan.sales_orders):
            reads.append(katana.changes_where("sales_order_rows", _ids("sales_order_ids", chunk)))
        for chunk in _chunks(plan.manufacturing_orders):
            reads.append(katana.changes_where("manufacturing_orders", _ids("ids", chunk)))
        for mo in sorted(plan.manufacturing_orders):
            reads.append(
                katana.changes_where(
                    "manufacturing_order_recipe_rows", [("manufacturing_order_id", str(mo))]
                )
            )
        for chunk in _chunks(plan.recipe_rows):
            reads.append(
                katana.changes_where("manufacturing_order_recipe_rows", _ids("ids", chunk))
            )
        for po in sorted(plan.purchase_orders | plan.outsourced_orders):
            reads.append(
                katana.changes_where("purchase_order_rows", [("purchase_order_id", str(po))])
            )
        for po in sorted(plan.outsourced_orders):
            reads.append(
                katana.changes_where(
                    "outsourced_purchase_order_recipe_rows", [("purchase_order_id", str(po))]
                )
            )
        for chunk in _chunks(plan.purchase_rows | plan.outsourced_rows):
            reads.append(katana.changes_where("purchase_order_rows", _ids("ids", chunk)))
        for row in sorted(plan.outsourced_rows):
            reads.append(
                katana.changes_where(
                    "outsourced_purchase_order_recipe_rows", [("purchase_order_row_id", str(row))]
                )
            )
        for chunk in _chunks(plan.outsourced_recipe_rows):
            reads.append(
                katana.changes_where("outsourced_purchase_order_recipe_rows", _ids("ids", chunk))
            )
        found = await asyncio.gather(*reads)
        return [c for changes in found for c in changes]

    async def _window(self, plan: ReadPlan) -> list[Change]:
        """Movement-bearing rows since their cursors that no read has recorded yet."""
        if not plan.movements:
            return []
        since = await self._sources.since()
        katana = self._ctx.katana
        reads = await asyncio.gather(*(katana.read_changes(s, since(s)) for s in MOVEMENT_SOURCES))
        return self._sources.unseen([c for read in reads for c in read.rows])


def _integer(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= 2**31 - 1 else None


def _chunks(ids: set[int]) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[i : i + IDS_PER_REQUEST] for i in range(0, len(ordered), IDS_PER_REQUEST)]


def _ids(name: str, ids: Sequence[int]) -> list[tuple[str, str]]:
    # Repeated keys, as the stock read sends its variant ids (an array parameter).
    return [(name, str(i)) for i in ids]
