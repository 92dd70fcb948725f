"""Katana deltas → the outbox: every source read since its cursor, the variants it touched
made dirty together with the advanced cursors, in one transaction.

docs/design.md ("Change capture") has the table of which Katana change each source sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.katana.models import DELTA_SOURCES, ROW_SOURCES, Change, Read
from daemon.sync.catalogue import BOM_FULL_READ_CURSOR, CatalogueKeeper
from daemon.sync.context import SyncContext

# Re-read a little before each cursor: Katana's clock, equal timestamps and late commits. The
# diff makes re-processing harmless, so a generous overlap costs nothing but a few rows.
CURSOR_OVERLAP = timedelta(minutes=2)
# With no cursor yet, start this far back: the first cycle of a connection is a full sync anyway.
BOOTSTRAP_LOOKBACK = timedelta(minutes=10)
# Katana requests of a cycle in which nothing changed: one page per delta source, plus variants,
# products, materials and BOM rows for the catalogue. (Once per BOM_FULL_READ_INTERVAL the BOM
# is read whole instead: one page per 250 BOM rows.)
IDLE_CYCLE_REQUESTS = len(DELTA_SOURCES) + 4
# Katana's /bom_rows has no deleted rows: a removed BOM row is found only by reading them all,
# this often (a removed ingredient raises its kit's potential). The time of the last full read
# is kept among the cursors, on the engine's clock.
BOM_FULL_READ_INTERVAL = timedelta(minutes=30)


# Set once the row memory was filled by one full read of the document-row lists.
ROW_MEMORY_CURSOR = "row_memory_seeded"
ROW_MEMORY_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The row lists in a fixed order (ROW_SOURCES is a set).
ROW_SEEDED = tuple(source for source in DELTA_SOURCES if source in ROW_SOURCES)


def sustainable_poll_interval(requests_per_minute: int) -> float:
    """The shortest poll interval whose idle cycles fit Katana's request budget."""
    return IDLE_CYCLE_REQUESTS * 60 / requests_per_minute


class DeltaSources:
    """Reads what changed in Katana and records it in the outbox."""

    def __init__(
        self,
        ctx: SyncContext,
        keeper: CatalogueKeeper,
        *,
        overlap: timedelta = CURSOR_OVERLAP,
        bootstrap: timedelta = BOOTSTRAP_LOOKBACK,
    ) -> None:
        self._ctx = ctx
        self._keeper = keeper
        self._overlap = overlap
        self._bootstrap = bootstrap
        # Changes already recorded, kept for the cursor overlap so re-reads cost no new work.
        self._seen: dict[tuple[str, str, int, datetime], None] = {}
        # The variants the latest collect marked (the daemon compares them with what webhook
        # deliveries announced).
        self.marked: set[int] = set()

    async def since(self) -> Callable[[str], datetime]:
        """Where the next read of each source starts (its cursor less the overlap)."""
        cursors = await self._ctx.store.cursors()
        started = self._ctx.now()

        def since(source: str) -> datetime:
            return cursors.get(source, started - self._bootstrap) - self._overlap

        return since

    def unseen(self, changes: Iterable[Change]) -> list[Change]:
        """The changes no read has recorded yet (within the overlap)."""
        return [
            c
            for c in changes
            if (c.source, str(c.resource_id), c.variant_id, c.at) not in self._seen
        ]

    def remember(self, changes: Iterable[Change]) -> None:
        """Changes recorded by a targeted read: the next delta read does not mark them again."""
        for c in changes:
            self._seen[(c.source, str(c.resource_id), c.variant_id, c.at)] = None

    async def _seed_row_memory(self, cursors: Mapping[str, datetime]) -> dict[tuple[str, str], int]:
        """Once per state file: every document row Katana lists, with its variant.

        A row is remembered when a delta read lists it; a row written long before stocksync's
        first start (an order open for months) is listed only when it changes, too late to
        know which variant it committed before. Re-pointed then, its old variant's commitment
        would be released unseen. One full read of the row lists, at the first cycle, fills
        the memory (rows deleted are left out).
        """
        if ROW_MEMORY_CURSOR in cursors:
            return {}
        reads = await asyncio.gather(
            *(self._ctx.katana.read_changes(source, ROW_MEMORY_EPOCH) for source in ROW_SEEDED)
        )
        return {
            (c.source, str(c.resource_id)): c.variant_id
            for read in reads
            for c in read.rows
            if not c.deleted
        }

    async def collect(self) -> int:
        """Read every delta source since its cursor; record dirty variants and cursors at once."""
        catalogue = self._keeper.catalogue
        assert catalogue is not None
        ctx = self._ctx
        cursors = await ctx.store.cursors()
        started = ctx.now()

        def since(source: str) -> datetime:
            return cursors.get(source, started - self._bootstrap) - self._overlap

        # Katana's /bom_rows keeps no deleted rows: only a read of them all shows which went.
        last_full = cursors.get(BOM_FULL_READ_CURSOR)
        full_bom = last_full is None or started - last_full >= BOM_FULL_READ_INTERVAL
        variants, items, bom = await asyncio.gather(
            ctx.katana.read_variants(since("variants")),
            # No items cursor (a state file from before categories were kept): read them all.
            ctx.katana.read_items(since("items") if "items" in cursors else None),
            ctx.katana.read_bom_rows(None if full_bom else since("bom_rows")),
        )
        reads: list[Read[Change]] = await asyncio.gather(
            *(ctx.katana.read_changes(s, since(s)) for s in DELTA_SOURCES)
        )
        seeded = await self._seed_row_memory(cursors)

        dirty: dict[int, datetime] = {}

        def mark(variant_id: int, at: datetime) -> None:
            if variant_id not in dirty or at < dirty[variant_id]:
                dirty[variant_id] = at

        def advanced(source: str, read: Read[Any], times: Iterable[datetime]) -> datetime:
            # Past everything read, on Katana's clock: an idle cycle then reads one page per
            # source, and the overlap still covers a row committed after the read began.
            if read.as_of is not None:
                return read.as_of
            # No Date header: only the rows themselves say how far Katana's clock got.
            base = cursors.get(source, started - self._bootstrap)
            return max([base, *times])

        new_cursors: dict[str, datetime] = {}
        seen = self._seen
        # A row re-pointed to another variant moved the commitment of both: the old one is
        # known only from what was remembered when the row was last seen.
        known = await ctx.store.row_variants(
            (c.source, str(c.resource_id))
            for source, read in zip(DELTA_SOURCES, reads, strict=True)
            if source in ROW_SOURCES
            for c in read.rows
        )
        # A row first met by the seeding read has no earlier variant to go back to: what the
        # seed saw is as far back as anything can be known (rows remembered before win).
        known = {**seeded, **known}
        rows: dict[tuple[str, str], int | None] = {
            row: variant for row, variant in seeded.items() if known[row] == variant
        }
        for source, read in zip(DELTA_SOURCES, reads, strict=True):
            for c in read.rows:
                key = (source, str(c.resource_id), c.variant_id, c.at)
                if key in seen:
                    continue
                seen[key] = None
                mark(c.variant_id, c.at)
                if source in ROW_SOURCES:
                    row = (source, str(c.resource_id))
                    before = rows[row] if row in rows else known.get(row)
                    if before is not None and before != c.variant_id:
                        mark(before, c.at)
                    # A deleted row can change no more: nothing left to remember.
                    rows[row] = None if c.deleted else c.variant_id
            new_cursors[source] = advanced(source, read, (c.at for c in read.rows))
        horizon = min(new_cursors.values()) - 2 * self._overlap
        for key in [k for k in seen if k[3] < horizon]:
            del seen[key]

        new_cursors["variants"] = advanced(
            "variants", variants, (v.updated_at for v in variants.rows)
        )
        new_cursors["items"] = advanced("items", items, (i.updated_at for i in items.rows))
        new_cursors["bom_rows"] = advanced(
            "bom_rows", bom, (b.updated_at for b in bom.rows if b.updated_at)
        )
        bom_rows = bom.rows
        if full_bom:
            present = {b.id for b in bom_rows}
            # Gone since the last read; undated, so its kit is marked as changed now.
            bom_rows = bom_rows + [
                replace(b, deleted=True, updated_at=None)
                for b in catalogue.bom.values()
                if b.id not in present
            ]
            new_cursors[BOM_FULL_READ_CURSOR] = started
        # Rows re-read through the cursor overlap are usually unchanged: keep only real changes,
        # so an idle cycle neither rebuilds the mappings nor re-reads any stock.
        changed_variants = [v for v in variants.rows if not catalogue.holds(v)]
        changed_items = [i for i in items.rows if not catalogue.holds_item(i)]
        # A category edited alone moves no quantity: it only rebuilds the mappings (filters).
        reflagged = [i for i in changed_items if not catalogue.holds_item_flags(i)]
        changed_bom = [
            b
            for b in bom_rows
            if (b.id in catalogue.bom if b.deleted else catalogue.bom.get(b.id) != b)
        ]
        catalogue_changed = bool(changed_variants or changed_items or changed_bom)
        if catalogue_changed:
            for b in changed_bom:
                mark(b.product_variant_id, b.updated_at or started)
            for v in changed_variants:
                mark(v.id, v.updated_at)
            # Archiving a product retires its variants; is_auto_assembly makes them kits.
            for variant_id in catalogue.variants_of({(i.kind, i.id) for i in reflagged}):
                mark(variant_id, started)
            catalogue.merge(changed_variants, changed_items, changed_bom)
            await ctx.store.save_catalogue(changed_variants, changed_items, changed_bom)

        # A kit's potential depends on its ingredients' stock: a dirty ingredient dirties kits.
        for ingredient, at in list(dirty.items()):
            for kit in catalogue.kits_using([ingredient]):
                mark(kit, at)

        if seeded or ROW_MEMORY_CURSOR not in cursors:
            new_cursors[ROW_MEMORY_CURSOR] = started
        await ctx.store.record_changes(
            dirty, new_cursors, [c.name for c in ctx.enabled()], rows=rows
        )
        self.marked = set(dirty)
        if catalogue_changed:
            await self._keeper.rebuild_mappings()
        return len(dirty)
