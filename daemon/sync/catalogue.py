"""The catalogues a sync maps with: Katana's (cached in the store, refreshed incrementally),
Katana's locations, each enabled connection's Shopify catalogue, and the mappings made of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from datetime import datetime

import structlog

from daemon.config import ConnectionSettings
from daemon.domain.mapping import LocationError
from daemon.domain.models import KatanaVariant, Problem, ShopifyVariant
from daemon.katana.models import Catalogue, KatanaLocation, KatanaVariantRow
from daemon.sync.context import SyncContext
from daemon.sync.mappings import ConnectionMapping, build_connection_mapping
from daemon.sync.problems import note_problems

log = structlog.get_logger(__name__)

# The cursor kept with the time of the last full read of Katana's BOM rows (see sources.py).
BOM_FULL_READ_CURSOR = "bom_rows_full_read"
# The problems-table subject of a connection whose Katana locations do not resolve.
LOCATIONS_SUBJECT = "locations"


class CatalogueKeeper:
    """Loads, refreshes and maps the catalogues; variants whose mapping changed are made dirty."""

    def __init__(self, ctx: SyncContext, *, write_batch: int = 5_000) -> None:
        self._ctx = ctx
        # A cold start merges and stores the Katana variants this many at a time, as read.
        self._write_batch = write_batch
        self.catalogue: Catalogue | None = None
        self.katana_locations: list[KatanaLocation] | None = None
        self.shopify_variants: dict[str, list[ShopifyVariant]] = {}
        self.mappings: dict[str, ConnectionMapping] = {}
        # Enabled connections whose configured Katana locations do not resolve: they have no
        # mapping (they do not sync; their outbox keeps filling) until Katana's locations or
        # the configuration change. Connection name -> the error.
        self.location_errors: dict[str, str] = {}
        # Set whenever an input of the mappings changed; the rebuild is O(catalogue).
        self._stale = True

    def katana_variants(self) -> Mapping[int, KatanaVariant]:
        """Every known Katana variant by id."""
        return {} if self.catalogue is None else self.catalogue.variants

    def forget_remote(self, connections: Collection[str] | None = None) -> None:
        """Read Katana's locations and the Shopify catalogues of `connections` (None: every
        one) again (a reload, a full reconciliation): a shop or its locations may have changed.
        """
        self.katana_locations = None
        if connections is None:
            self.shopify_variants = {}
        else:
            for name in connections:
                self.shopify_variants.pop(name, None)
        connections = {c.name for c in self._ctx.settings.connections}
        self.mappings = {k: v for k, v in self.mappings.items() if k in connections}

    async def prepare(self, connections: Collection[str] | None = None) -> None:
        """Load or read whatever the catalogue and mappings still lack (cheap when warm).

        Katana and each Shopify store have budgets of their own, so their catalogues are read
        at the same time: a cold start costs the slower of the reads, not their sum.
        `connections` limits the Shopify catalogues read to those (a command about one
        connection reads no other shop); None: every enabled connection's.
        """
        ctx = self._ctx

        async def katana_catalogue() -> None:
            if self.catalogue is None:
                self.catalogue = await self._load_catalogue()
                self._stale = True

        async def katana_locations() -> None:
            if self.katana_locations is None:
                self.katana_locations = await ctx.katana.locations()
                self._stale = True
            elif self.location_errors:
                # A missing location may be created in Katana any time: look again each cycle
                # (one request), and rebuild only when the locations changed.
                fresh = await ctx.katana.locations()
                if fresh != self.katana_locations:
                    self.katana_locations = fresh
                    self._stale = True

        async def shopify_catalogue(name: str) -> None:
            self.shopify_variants[name] = await ctx.shopify[name].variants()
            # A fresh Shopify catalogue may have fixed what Shopify rejected: try again now.
            await ctx.store.retry_parked_now(name)
            self._stale = True

        missing = [
            c.name
            for c in ctx.enabled()
            if c.name not in self.shopify_variants
            and (connections is None or c.name in connections)
        ]
        # gather, not a TaskGroup: the first failure propagates as itself (KatanaError,
        # ShopifyError), which is what the callers handle.
        await asyncio.gather(
            katana_catalogue(), katana_locations(), *(shopify_catalogue(n) for n in missing)
        )
        if self._stale:
            await self.rebuild_mappings()

    async def mapping_for(self, conn: ConnectionSettings) -> ConnectionMapping:
        """The mapping of any connection, enabled or not (read-only commands, dry runs)."""
        if conn.sync_inventory and conn.name in self.mappings:
            return self.mappings[conn.name]
        assert self.catalogue is not None
        if self.katana_locations is None:
            self.katana_locations = await self._ctx.katana.locations()
        if conn.name not in self.shopify_variants:
            self.shopify_variants[conn.name] = await self._ctx.shopify[conn.name].variants()
        return build_connection_mapping(
            conn,
            self.catalogue.variants.values(),
            self.shopify_variants[conn.name],
            self.katana_locations,
        )

    async def _load_catalogue(self) -> Catalogue:
        ctx = self._ctx
        catalogue = await ctx.store.catalogue()
        # The variants cursor is recorded once the whole catalogue is stored: without it the
        # stored part is from a read that was cut short.
        if catalogue.variants and "variants" in await ctx.store.cursors():
            return catalogue
        log.info("katana_catalogue_full_read")
        started = ctx.now()
        (variants, newest), items, bom = await asyncio.gather(
            self._read_variants_into(catalogue), ctx.katana.items(), ctx.katana.bom_rows()
        )
        catalogue.merge(items=items, bom=bom)
        await ctx.store.save_catalogue([], items, bom)
        cursors = {
            "variants": newest or started,
            "items": max((i.updated_at for i in items), default=started),
            "bom_rows": started,
            BOM_FULL_READ_CURSOR: started,
        }
        await ctx.store.record_changes({}, cursors, [])
        log.info("katana_catalogue_loaded", variants=variants, items=len(items), bom_rows=len(bom))
        return catalogue

    async def _read_variants_into(self, catalogue: Catalogue) -> tuple[int, datetime | None]:
        """Read every Katana variant into the catalogue and the store, a batch at a time.

        A 100,000-variant catalogue read whole held every row beside the records made from it
        (~20 MiB at the cold start's peak). Returns how many were read and the newest update.
        """
        count, newest = 0, None
        batch: list[KatanaVariantRow] = []

        async def keep() -> None:
            catalogue.merge(batch)
            await self._ctx.store.save_catalogue(batch, [], [])
            batch.clear()

        async for row in self._ctx.katana.each_variant():
            batch.append(row)
            count += 1
            newest = row.updated_at if newest is None else max(newest, row.updated_at)
            if len(batch) >= self._write_batch:
                await keep()
        await keep()
        return count, newest

    async def rebuild_mappings(self) -> None:
        """Re-apply the mapping rules; variants whose targets changed are made dirty."""
        assert self.catalogue is not None
        assert self.katana_locations is not None
        ctx = self._ctx
        variants = self.catalogue.variants.values()
        now = ctx.now()
        fresh: dict[str, ConnectionMapping] = {}
        for conn in ctx.enabled():
            if conn.name not in self.shopify_variants:
                continue  # its shop was not read: prepare() was asked about other connections
            try:
                mapping = build_connection_mapping(
                    conn, variants, self.shopify_variants[conn.name], self.katana_locations
                )
            except LocationError as exc:
                # One connection's bad location must not stop the others: it waits, reported.
                await self._locations_unknown(conn.name, str(exc))
                continue
            await self._locations_resolved(conn.name)
            fresh[conn.name] = mapping
            previous = self.mappings.get(conn.name)
            # A first mapping (start-up, a connection switched on) records no changes: what
            # the connection needs is already in its outbox, or it is due a full sync.
            changed = set() if previous is None else mapping.changed_variants(previous)
            if changed:
                await ctx.store.record_changes(dict.fromkeys(changed, now), {}, [conn.name])
            # A sync filter changed alone moves no target into a push, but it is reported.
            if changed or previous is None or previous.table.filtered != mapping.table.filtered:
                await self._report_mapping(mapping)
        self.mappings = fresh
        enabled = {c.name for c in ctx.enabled()}
        for name in [n for n in self.location_errors if n not in enabled]:
            # Switched off or removed: nothing waits on its locations any more.
            del self.location_errors[name]
            await ctx.store.clear_problems(name, [LOCATIONS_SUBJECT])
        self._stale = False

    async def _locations_unknown(self, name: str, error: str) -> None:
        """Report a connection whose locations do not resolve: logged once per error."""
        if self.location_errors.get(name) != error:
            log.error("connection_locations_unknown", connection=name, error=error)
        self.location_errors[name] = error
        problem = Problem(kind="unknown_location", subject=LOCATIONS_SUBJECT, detail=error)
        await self._ctx.store.note_problems(name, [problem])

    async def _locations_resolved(self, name: str) -> None:
        if self.location_errors.pop(name, None) is not None:
            log.info("connection_locations_resolved", connection=name)
            await self._ctx.store.clear_problems(name, [LOCATIONS_SUBJECT])

    async def _report_mapping(self, mapping: ConnectionMapping) -> None:
        table, name, m = mapping.table, mapping.name, self._ctx.metrics
        m.mapped_variants.labels(connection=name).set(len(table.targets))
        m.unmapped_variants.labels(connection=name).set(len(table.unmapped_katana))
        m.filtered_variants.labels(connection=name).set(len(table.filtered))
        m.duplicate_skus.labels(connection=name, side="katana").set(
            len(table.duplicate_skus_katana)
        )
        m.duplicate_skus.labels(connection=name, side="shopify").set(
            len(table.duplicate_skus_shopify)
        )
        m.untracked_items.labels(connection=name).set(len(table.untracked))
        await note_problems(self._ctx.store, name, table.problems())
        log.info(
            "mapping_refreshed",
            connection=name,
            mapped=len(table.targets),
            unmapped=len(table.unmapped_katana),
            filtered=len(table.filtered),
            shadowed=len(table.shadowed),
            duplicate_skus_katana=len(table.duplicate_skus_katana),
            duplicate_skus_shopify=len(table.duplicate_skus_shopify),
            untracked=len(table.untracked),
            shopify_levels=mapping.mapped_levels,
        )
