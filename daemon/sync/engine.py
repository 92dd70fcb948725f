"""One poll-and-push cycle: Katana deltas → outbox → read dirty stock → plan → push → commit.

The engine owns the in-memory catalogue and mappings; the store owns everything that must
survive a crash. A cycle either advances cursors together with the variants they made dirty, or
records nothing; a variant leaves the outbox only after Shopify acknowledged all of its levels.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from daemon.config import ConnectionSettings, Settings
from daemon.domain.models import (
    DesiredLevel,
    KatanaVariant,
    LevelKey,
    PlannedPush,
    Problem,
    ShopifyVariant,
    SnapshotEntry,
)
from daemon.domain.plan import (
    desired_levels,
    drops_to_zero,
    plan_pushes,
    safety_valve,
)
from daemon.domain.stock import StockTable
from daemon.katana.client import KatanaClient
from daemon.katana.models import (
    DELTA_SOURCES,
    ROW_SOURCES,
    Catalogue,
    Change,
    KatanaLocation,
    KatanaVariantRow,
    Read,
)
from daemon.mappings import ConnectionMapping, build_connection_mapping
from daemon.metrics import Metrics
from daemon.pusher import Pusher, PushReport
from daemon.recovery import Recovery
from daemon.shopify.client import ShopifyClient, ShopifyError
from daemon.store import DirtyMark, StateStore

log = structlog.get_logger(__name__)

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
BOM_FULL_READ_CURSOR = "bom_rows_full_read"
# A full sync plans and pushes this many variants at a time (about 15,000 levels with three
# locations): memory stays bounded by a chunk (~7 MiB of plan, snapshot and results), and 60
# full Shopify calls keep the pusher busy.
FULL_SYNC_CHUNK = 5_000
# A cold start merges and stores the Katana variants this many at a time, as they are read.
CATALOGUE_WRITE_BATCH = 5_000
# A level Shopify rejected is tried again after a minute, then after pauses doubling up to an
# hour (and at once when Katana's value moves, on a reload or with a fresh Shopify catalogue).
PARK_FIRST_PAUSE_SECONDS = 60.0
PARK_MAX_PAUSE_SECONDS = 3600.0


def park_backoff(attempts: int) -> float:
    """Seconds a level rejected `attempts` times in a row waits before it is tried again."""
    return min(PARK_MAX_PAUSE_SECONDS, PARK_FIRST_PAUSE_SECONDS * 2.0 ** min(attempts - 1, 16))


def full_sync_chunks(mapping: ConnectionMapping) -> list[list[int]]:
    """Every mapped Katana variant, in FULL_SYNC_CHUNK-sized parts (in id order)."""
    ids = sorted(mapping.table.targets)
    return [ids[start : start + FULL_SYNC_CHUNK] for start in range(0, len(ids), FULL_SYNC_CHUNK)]


def sustainable_poll_interval(requests_per_minute: int) -> float:
    """The shortest poll interval whose idle cycles fit Katana's request budget."""
    return IDLE_CYCLE_REQUESTS * 60 / requests_per_minute


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass
class ConnectionOutcome:
    """One connection's share of a cycle."""

    name: str
    full_sync: bool = False
    considered: int = 0
    planned: int = 0
    applied: int = 0
    rejected: int = 0
    stale_overwrites: int = 0
    held: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class CycleReport:
    """What one cycle did."""

    run_id: str
    changed_variants: int = 0
    connections: list[ConnectionOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.errors for c in self.connections)

    @property
    def pushed(self) -> int:
        return sum(c.applied for c in self.connections)


class Engine:
    """Keeps Shopify's available levels in step with Katana, one cycle at a time."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        katana: KatanaClient,
        shopify: Mapping[str, ShopifyClient],
        metrics: Metrics,
        *,
        now: Callable[[], datetime] = utcnow,
        push_concurrency: int = 4,
    ) -> None:
        self.settings = settings
        self.store = store
        self.katana = katana
        self.shopify = dict(shopify)
        self.metrics = metrics
        self._now = now
        self._pusher = Pusher(store, metrics, now=now, concurrency=push_concurrency)
        self._recovery = Recovery(store, self._pusher, metrics, now)
        self.catalogue: Catalogue | None = None
        self.katana_locations: list[KatanaLocation] | None = None
        self.shopify_variants: dict[str, list[ShopifyVariant]] = {}
        self.mappings: dict[str, ConnectionMapping] = {}
        # Changes already recorded, kept for the cursor overlap so re-reads cost no new work.
        self._seen_changes: dict[tuple[str, str, int, datetime], None] = {}
        # (connection, variant) -> the dirty mark whose unchanged levels were confirmed against
        # Shopify already (a variant kept dirty is confirmed once per Katana change).
        self._confirmed: dict[tuple[str, int], int] = {}
        # Set whenever an input of the mappings changed; the rebuild is O(catalogue).
        self._mappings_stale = True
        # Connections this process saw held; one that leaves the store's hold table was
        # released by an operator, and its next push skips the valve once.
        self._held: set[str] = set()
        self._released: set[str] = set()
        self._holds_loaded = False

    # ---------------------------------------------------------------- configuration

    def enabled(self) -> list[ConnectionSettings]:
        """Connections whose sync_inventory is on."""
        return [c for c in self.settings.connections if c.sync_inventory]

    async def start(self) -> None:
        """Take the current settings into account (at start-up and after each reload)."""
        for conn in self.settings.connections:
            self.metrics.sync_enabled.labels(connection=conn.name).set(int(conn.sync_inventory))
            self.metrics.connection_started(conn.name)
            if not conn.sync_inventory:
                # Changes made while a connection is off are not replayed one by one: when it is
                # switched on again its first cycle is a full sync.
                await self.store.set_connection_synced(conn.name, None)

    async def apply_settings(
        self, settings: Settings, shopify: Mapping[str, ShopifyClient]
    ) -> None:
        """Swap in a validated new configuration (SIGHUP), then re-read Shopify catalogues."""
        await self._release_raised_limits(self.settings, settings)
        # A reload may be the fix for what Shopify rejected: every parked level is tried again.
        await self.store.retry_parked_now()
        self.settings = settings
        self.shopify = dict(shopify)
        self.katana_locations = None
        self.shopify_variants = {}
        self.mappings = {k: v for k, v in self.mappings.items() if k in self.shopify}
        await self.start()
        await self.prepare()

    async def _release_raised_limits(self, old: Settings, new: Settings) -> None:
        """A reload with a higher safety-valve limit releases that connection's hold."""
        holds = await self.store.holds()
        before = {c.name: c for c in old.connections}
        for conn in new.connections:
            previous = before.get(conn.name)
            if conn.name not in holds or previous is None:
                continue
            if (
                conn.max_drop_fraction > previous.max_drop_fraction
                or conn.min_drop_count > previous.min_drop_count
            ):
                # Not an operator override: the next cycle is judged again with the new limits.
                await self.store.release_hold(conn.name)
                self._held.discard(conn.name)
                log.warning("safety_valve_released_by_reload", connection=conn.name)

    # ---------------------------------------------------------------- catalogue and mappings

    async def prepare(self) -> None:
        """Load or read whatever the catalogue and mappings still lack (cheap when warm).

        Katana and each Shopify store have budgets of their own, so their catalogues are read
        at the same time: a cold start costs the slower of the reads, not their sum.
        """

        async def katana_catalogue() -> None:
            if self.catalogue is None:
                self.catalogue = await self._load_catalogue()
                self._mappings_stale = True

        async def katana_locations() -> None:
            if self.katana_locations is None:
                self.katana_locations = await self.katana.locations()
                self._mappings_stale = True

        async def shopify_catalogue(name: str) -> None:
            self.shopify_variants[name] = await self.shopify[name].variants()
            # A fresh Shopify catalogue may have fixed what Shopify rejected: try again now.
            await self.store.retry_parked_now(name)
            self._mappings_stale = True

        missing = [c.name for c in self.enabled() if c.name not in self.shopify_variants]
        # gather, not a TaskGroup: the first failure propagates as itself (KatanaError,
        # ShopifyError), which is what the callers handle.
        await asyncio.gather(
            katana_catalogue(), katana_locations(), *(shopify_catalogue(n) for n in missing)
        )
        if self._mappings_stale:
            await self.rebuild_mappings()

    async def mapping_for(self, conn: ConnectionSettings) -> ConnectionMapping:
        """The mapping of any connection, enabled or not (read-only commands, dry runs)."""
        if conn.sync_inventory and conn.name in self.mappings:
            return self.mappings[conn.name]
        assert self.catalogue is not None
        if self.katana_locations is None:
            self.katana_locations = await self.katana.locations()
        if conn.name not in self.shopify_variants:
            self.shopify_variants[conn.name] = await self.shopify[conn.name].variants()
        return build_connection_mapping(
            conn,
            self.catalogue.variants.values(),
            self.shopify_variants[conn.name],
            self.katana_locations,
        )

    async def refresh_shopify_catalogues(self) -> None:
        """Re-read every enabled connection's Shopify catalogue (reconciliation, reload)."""
        self.katana_locations = None
        self.shopify_variants = {}
        await self.prepare()

    async def _load_catalogue(self) -> Catalogue:
        catalogue = await self.store.catalogue()
        # The variants cursor is recorded once the whole catalogue is stored: without it the
        # stored part is from a read that was cut short.
        if catalogue.variants and "variants" in await self.store.cursors():
            return catalogue
        log.info("katana_catalogue_full_read")
        started = self._now()
        (variants, newest), items, bom = await asyncio.gather(
            self._read_variants_into(catalogue), self.katana.items(), self.katana.bom_rows()
        )
        catalogue.merge(items=items, bom=bom)
        await self.store.save_catalogue([], items, bom)
        cursors = {
            "variants": newest or started,
            "items": max((i.updated_at for i in items), default=started),
            "bom_rows": started,
            BOM_FULL_READ_CURSOR: started,
        }
        await self.store.record_changes({}, cursors, [])
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
            await self.store.save_catalogue(batch, [], [])
            batch.clear()

        async for row in self.katana.each_variant():
            batch.append(row)
            count += 1
            newest = row.updated_at if newest is None else max(newest, row.updated_at)
            if len(batch) >= CATALOGUE_WRITE_BATCH:
                await keep()
        await keep()
        return count, newest

    def now(self) -> datetime:
        """The engine's clock (UTC)."""
        return self._now()

    def katana_variants(self) -> Mapping[int, KatanaVariant]:
        """Every known Katana variant by id."""
        return {} if self.catalogue is None else self.catalogue.variants

    async def rebuild_mappings(self) -> None:
        """Re-apply the mapping rules; variants whose targets changed are made dirty."""
        assert self.catalogue is not None
        assert self.katana_locations is not None
        variants = self.catalogue.variants.values()
        now = self._now()
        fresh: dict[str, ConnectionMapping] = {}
        for conn in self.enabled():
            mapping = build_connection_mapping(
                conn, variants, self.shopify_variants[conn.name], self.katana_locations
            )
            fresh[conn.name] = mapping
            previous = self.mappings.get(conn.name)
            # A first mapping (start-up, a connection switched on) records no changes: what
            # the connection needs is already in its outbox, or it is due a full sync.
            changed = set() if previous is None else mapping.changed_variants(previous)
            if changed:
                await self.store.record_changes(dict.fromkeys(changed, now), {}, [conn.name])
            if changed or previous is None:
                await self._report_mapping(mapping)
        self.mappings = fresh
        self._mappings_stale = False

    async def _report_mapping(self, mapping: ConnectionMapping) -> None:
        table, name, m = mapping.table, mapping.name, self.metrics
        m.mapped_variants.labels(connection=name).set(len(table.targets))
        m.unmapped_variants.labels(connection=name).set(len(table.unmapped_katana))
        m.duplicate_skus.labels(connection=name, side="katana").set(
            len(table.duplicate_skus_katana)
        )
        m.duplicate_skus.labels(connection=name, side="shopify").set(
            len(table.duplicate_skus_shopify)
        )
        m.untracked_items.labels(connection=name).set(len(table.untracked))
        await self._note_problems(name, table.problems())
        log.info(
            "mapping_refreshed",
            connection=name,
            mapped=len(table.targets),
            unmapped=len(table.unmapped_katana),
            shadowed=len(table.shadowed),
            duplicate_skus_katana=len(table.duplicate_skus_katana),
            duplicate_skus_shopify=len(table.duplicate_skus_shopify),
            untracked=len(table.untracked),
            shopify_levels=mapping.mapped_levels,
        )

    async def _note_problems(self, connection: str, problems: Iterable[Problem]) -> None:
        """Record per-item problems; log only the new or changed ones (reported once)."""
        problems = list(problems)
        if not problems:
            return
        for p in await self.store.note_problems(connection, problems):
            log.warning(
                "item_problem",
                connection=connection,
                kind=p.kind,
                subject=p.subject,
                detail=p.detail,
            )

    # ---------------------------------------------------------------- deltas → outbox

    async def collect_changes(self) -> int:
        """Read every delta source since its cursor; record dirty variants and cursors at once."""
        assert self.catalogue is not None
        cursors = await self.store.cursors()
        started = self._now()

        def since(source: str) -> datetime:
            return cursors.get(source, started - BOOTSTRAP_LOOKBACK) - CURSOR_OVERLAP

        # Katana's /bom_rows keeps no deleted rows: only a read of them all shows which went.
        last_full = cursors.get(BOM_FULL_READ_CURSOR)
        full_bom = last_full is None or started - last_full >= BOM_FULL_READ_INTERVAL
        variants, items, bom = await asyncio.gather(
            self.katana.read_variants(since("variants")),
            self.katana.read_items(since("items")),
            self.katana.read_bom_rows(None if full_bom else since("bom_rows")),
        )
        reads: list[Read[Change]] = await asyncio.gather(
            *(self.katana.read_changes(s, since(s)) for s in DELTA_SOURCES)
        )

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
            base = cursors.get(source, started - BOOTSTRAP_LOOKBACK)
            return max([base, *times])

        new_cursors: dict[str, datetime] = {}
        seen = self._seen_changes
        # A row re-pointed to another variant moved the commitment of both: the old one is
        # known only from what was remembered when the row was last seen.
        known = await self.store.row_variants(
            (c.source, str(c.resource_id))
            for source, read in zip(DELTA_SOURCES, reads, strict=True)
            if source in ROW_SOURCES
            for c in read.rows
        )
        rows: dict[tuple[str, str], int | None] = {}
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
        horizon = min(new_cursors.values()) - 2 * CURSOR_OVERLAP
        for key in [k for k in seen if k[3] < horizon]:
            del seen[key]

        new_cursors["variants"] = advanced(
            "variants", variants, (v.updated_at for v in variants.rows)
        )
        new_cursors["items"] = advanced("items", items, (i.updated_at for i in items.rows))
        new_cursors["bom_rows"] = advanced(
            "bom_rows", bom, (b.updated_at for b in bom.rows if b.updated_at)
        )
        catalogue = self.catalogue
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
            for variant_id in catalogue.variants_of({(i.kind, i.id) for i in changed_items}):
                mark(variant_id, started)
            catalogue.merge(changed_variants, changed_items, changed_bom)
            await self.store.save_catalogue(changed_variants, changed_items, changed_bom)

        # A kit's potential depends on its ingredients' stock: a dirty ingredient dirties kits.
        for ingredient, at in list(dirty.items()):
            for kit in self.catalogue.kits_using([ingredient]):
                mark(kit, at)

        await self.store.record_changes(
            dirty, new_cursors, [c.name for c in self.enabled()], rows=rows
        )
        if catalogue_changed:
            await self.rebuild_mappings()
        return len(dirty)

    # ---------------------------------------------------------------- one cycle

    async def cycle(self) -> CycleReport:
        """Poll Katana, push what changed to every enabled connection, record the result."""
        report = CycleReport(run_id=uuid.uuid4().hex[:12])
        with structlog.contextvars.bound_contextvars(run_id=report.run_id):
            if not self.enabled():
                await self.prepare()
                return report
            full = {
                c.name: await self.store.connection_synced(c.name) is None for c in self.enabled()
            }
            if any(full.values()):
                report.changed_variants, work, stock = await self._full_sync_reads(full)
                settled = await self._settle(full, report.run_id)
            else:
                await self.prepare()
                report.changed_variants = await self.collect_changes()
                # Before the marks are taken: what the settling makes dirty is pushed now.
                settled = await self._settle(full, report.run_id)
                work = await self._work(full)
                stock = await self._read_stock(work)
            await self._sync_holds()
            outcomes = await asyncio.gather(
                *(
                    self._sync_connection(
                        self.mappings[name], is_full, marks, stock, report.run_id, settled[name]
                    )
                    for name, (is_full, marks) in work.items()
                )
            )
            report.connections.extend(outcomes)
            self.metrics.dirty_variants.set(await self.store.dirty_count())
        return report

    async def _settle(self, names: Collection[str], run_id: str) -> dict[str, PushReport]:
        """Settle every connection's open pushes (see daemon/recovery.py), side by side."""

        async def settle(name: str) -> PushReport:
            with structlog.contextvars.bound_contextvars(connection=name):
                try:
                    return await self._recovery.settle(
                        self.mappings[name], self.shopify[name], run_id
                    )
                except ShopifyError as exc:
                    log.warning("open_pushes_not_settled", error=str(exc))
                    return PushReport(errors=[str(exc)])

        reports = await asyncio.gather(*(settle(name) for name in names))
        return dict(zip(names, reports, strict=True))

    async def _work(self, full: Mapping[str, bool]) -> dict[str, tuple[bool, dict[int, DirtyMark]]]:
        """Each connection's share: full sync or not, and the dirty marks it will settle."""
        return {name: (is_full, await self.store.dirty(name)) for name, is_full in full.items()}

    async def _full_sync_reads(
        self, full: Mapping[str, bool]
    ) -> tuple[int, dict[str, tuple[bool, dict[int, DirtyMark]]], StockTable]:
        """A cycle with a full sync: read all Katana stock while the catalogues are read.

        The full stock read is the longest Katana job and the Shopify catalogue read the longest
        Shopify one; each API has its own budget, so they run side by side. The dirty marks are
        taken before the stock read starts: changes recorded during it get fresh marks that
        stay in the outbox for the next cycle, so none is settled with older stock.
        """
        work = await self._work(full)
        stock_read = asyncio.create_task(self.katana.inventory(None))
        try:
            await self.prepare()
            changed = await self.collect_changes()
            stock = await stock_read
        finally:
            if not stock_read.done():
                stock_read.cancel()
        return changed, work, stock

    async def _sync_holds(self) -> None:
        holds = await self.store.holds()
        if not self._holds_loaded:
            self._held |= set(holds)
            self._holds_loaded = True
        for name in list(self._held):
            if name not in holds:
                self._held.discard(name)
                self._released.add(name)
                log.warning("safety_valve_released", connection=name)
        self.metrics.held_connections.set(len(holds))
        for conn in self.settings.connections:
            self.metrics.connection_held.labels(connection=conn.name).set(int(conn.name in holds))

    async def _read_stock(
        self, work: Mapping[str, tuple[bool, Mapping[int, DirtyMark]]]
    ) -> StockTable:
        """Read current Katana stock of the dirty variants that some connection maps."""
        wanted: set[int] = set()
        for name, (_, marks) in work.items():
            targets = self.mappings[name].table.targets
            wanted.update(v for v in marks if v in targets)
        return await self.katana.inventory(wanted)

    async def _sync_connection(
        self,
        mapping: ConnectionMapping,
        full: bool,
        marks: Mapping[int, DirtyMark],
        stock: StockTable,
        run_id: str,
        settled: PushReport,
    ) -> ConnectionOutcome:
        name = mapping.name
        outcome = ConnectionOutcome(name=name, full_sync=full)
        await self._absorb(name, outcome, settled)
        with structlog.contextvars.bound_contextvars(connection=name):
            only: Collection[int] | None = None if full else set(marks)
            # A variant changed in Katana is confirmed against Shopify even where its value
            # came back to the last pushed one (Shopify may have drifted meanwhile), once per
            # change: a variant kept dirty is not confirmed again every cycle.
            confirm = {v for v, m in marks.items() if self._confirmed.get((name, v)) != m.seq}
            unresolved = await self.push_levels(
                mapping,
                stock,
                only=only,
                marks=marks,
                run_id=run_id,
                outcome=outcome,
                confirm=confirm,
            )
            if unresolved is None:  # held by the safety valve: every mark stays
                return outcome
            for v, m in marks.items():
                if v in unresolved:
                    self._confirmed[(name, v)] = m.seq
                else:
                    self._confirmed.pop((name, v), None)
            done = {v: m.seq for v, m in marks.items() if v not in unresolved}
            await self.store.clear_dirty(name, done)
            self.metrics.unreadable_variants.labels(connection=name).set(
                await self.store.count_problems(name, "stock_unreadable")
            )
            if full:
                # Variants the full sync could not settle (unreadable, in flight) wait in the
                # outbox, so the next delta cycles retry them instead of another full sync.
                kept = {v: self._now() for v in unresolved if v not in marks}
                await self.store.record_changes(kept, {}, [name])
                if not outcome.errors:
                    await self.store.set_connection_synced(name, self._now())
                    log.info("full_sync_done", applied=outcome.applied, rejected=outcome.rejected)
        return outcome

    async def desired(
        self,
        mapping: ConnectionMapping,
        stock: StockTable,
        only: Collection[int] | None,
        *,
        note_problems: bool = True,
    ) -> tuple[list[DesiredLevel], set[int]]:
        """What Shopify should show for `only` (None = every mapped variant), and the variants
        that cannot be pushed (unreadable, out of range: they stay dirty); problems noted."""
        desired, problems = desired_levels(
            stock,
            self.katana_variants(),
            mapping.table,
            mapping.locations,
            mapping.settings.policy,
            only=only,
        )
        blocked = {p.katana_variant_id for p in problems if p.katana_variant_id is not None}
        if note_problems:
            await self._note_problems(mapping.name, problems)
            # A variant planned without a problem has none left: a recurrence is reported anew.
            wanted = mapping.table.targets.keys() if only is None else only
            await self.store.clear_problems(
                mapping.name, [f"katana_variant:{v}" for v in wanted if v not in blocked]
            )
        return desired, blocked

    async def push_levels(
        self,
        mapping: ConnectionMapping,
        stock: StockTable,
        *,
        only: Collection[int] | None,
        marks: Mapping[int, DirtyMark],
        run_id: str,
        outcome: ConnectionOutcome,
        confirm: Collection[int] = (),
    ) -> set[int] | None:
        """Make Shopify show Katana's levels for `only` (None = every mapped variant).

        Returns the variants whose push is unresolved (they stay dirty), or None when the
        safety valve holds the connection. A full sync plans and pushes FULL_SYNC_CHUNK
        variants at a time, so its memory is bounded by a chunk rather than the catalogue
        (each chunk is planned twice: the valve must judge the whole plan before any push).
        """
        chunks: list[Collection[int]] = [*full_sync_chunks(mapping)] if only is None else [only]
        drops = 0
        kept: list[PlannedPush] | None = None
        unresolved: set[int] = set()
        for chunk in chunks:
            plan, snapshot, waiting = await self._plan(mapping, stock, chunk, confirm, outcome)
            unresolved |= waiting
            drops += drops_to_zero(plan, snapshot)
            outcome.planned += len(plan)
            kept = plan if len(chunks) == 1 else None
        if not await self._valve_allows(mapping, drops, outcome):
            return None
        unresolved_pairs = 0
        for chunk in chunks:
            plan = (
                kept if kept is not None else (await self._plan(mapping, stock, chunk, confirm))[0]
            )
            report = await self._push(mapping, plan, run_id, outcome)
            self._observe_lag(mapping.name, report, marks)
            if report.unresolved:
                unresolved_pairs += len(report.unresolved)
                unresolved.update(p.katana_variant_id for p in plan if p.key in report.unresolved)
        self._log_pushed(outcome, unresolved_pairs)
        return unresolved

    async def _plan(
        self,
        mapping: ConnectionMapping,
        stock: StockTable,
        only: Collection[int],
        confirm: Collection[int] = (),
        outcome: ConnectionOutcome | None = None,
    ) -> tuple[list[PlannedPush], dict[LevelKey, SnapshotEntry], set[int]]:
        """The pushes for `only`, the snapshot they were diffed against, and the variants that
        must wait (not pushable now, or a level still in flight under an earlier request).

        With `outcome` (the first look at these variants) problems are noted and the levels
        counted; without, the same plan is rebuilt quietly.
        """
        name = mapping.name
        desired, waiting = await self.desired(
            mapping, stock, only, note_problems=outcome is not None
        )
        snapshot = await self.store.snapshot(name, {d.inventory_item_id for d in desired})
        parked = await self.store.parked(name)
        now = self._now()
        ready: list[DesiredLevel] = []
        moved_on: list[LevelKey] = []
        for level in desired:
            entry = snapshot.get(level.key)
            if entry is not None and entry.in_flight:
                # Its request is settled first (re-sent under its key), never overtaken.
                waiting.add(level.katana_variant_id)
                continue
            rejected = parked.get(level.key)
            if rejected is not None:
                if rejected.quantity != level.quantity:
                    moved_on.append(level.key)  # Katana moved on: push the new value now
                elif rejected.retry_at > now:
                    continue  # rejected at this value: wait out the pause
                elif entry is not None and entry.quantity == level.quantity:
                    moved_on.append(level.key)  # Shopify already shows it: nothing to retry
            ready.append(level)
        if outcome is not None:
            await self.store.unpark(name, moved_on)
            outcome.considered += len(ready)
        return plan_pushes(ready, snapshot, confirm=confirm), snapshot, waiting

    async def execute(
        self,
        mapping: ConnectionMapping,
        plan: Sequence[PlannedPush],
        baseline: Mapping[LevelKey, SnapshotEntry],
        run_id: str,
        outcome: ConnectionOutcome,
    ) -> PushReport | None:
        """Guard a plan with the safety valve, push it, report rejections. None when held.

        Levels still in flight under an earlier request are left out: that request is
        settled first, by the next cycle.
        """
        in_flight = await self.store.snapshot(mapping.name, {p.inventory_item_id for p in plan})
        plan = [p for p in plan if not ((e := in_flight.get(p.key)) and e.in_flight)]
        outcome.planned += len(plan)
        if not await self._valve_allows(mapping, drops_to_zero(plan, baseline), outcome):
            return None
        report = await self._push(mapping, plan, run_id, outcome)
        self._log_pushed(outcome, len(report.unresolved))
        return report

    async def _valve_allows(
        self, mapping: ConnectionMapping, drops: int, outcome: ConnectionOutcome
    ) -> bool:
        """False (and the connection held) when `drops` levels to 0 trip the safety valve."""
        name = mapping.name
        if name in self._released:
            # An operator released the hold: this push goes through once, unjudged.
            self._released.discard(name)
        else:
            hold = safety_valve(
                drops,
                mapping.mapped_levels,
                mapping.settings.max_drop_fraction,
                mapping.settings.min_drop_count,
            )
            if hold is not None:
                await self._hold(name, hold.drops, hold.mapped)
        if name in self._held:
            outcome.held = True
            return False
        return True

    async def _push(
        self,
        mapping: ConnectionMapping,
        plan: Sequence[PlannedPush],
        run_id: str,
        outcome: ConnectionOutcome,
    ) -> PushReport:
        """Push a plan; count the outcome, park and report the rejected pairs."""
        report = await self._pusher.push(mapping.settings, self.shopify[mapping.name], plan, run_id)
        await self._absorb(mapping.name, outcome, report)
        return report

    async def _absorb(self, name: str, outcome: ConnectionOutcome, report: PushReport) -> None:
        """Count a push report into the outcome; park and report (once) what Shopify rejected:
        it is tried again after a growing pause, or at once when Katana's value moves."""
        outcome.applied += len(report.applied)
        outcome.rejected += len(report.rejected)
        outcome.stale_overwrites += report.stale_overwrites
        outcome.errors.extend(report.errors)
        await self.store.park(name, [r.push for r in report.rejected], park_backoff)
        await self._note_problems(
            name,
            [
                Problem(
                    kind=r.code or "rejected",
                    subject=f"{r.push.inventory_item_id}@{r.push.location_id}",
                    detail=f"sku {r.push.sku!r}: {r.message or r.code}",
                )
                for r in report.rejected
            ],
        )

    @staticmethod
    def _log_pushed(outcome: ConnectionOutcome, unresolved: int) -> None:
        """One line per connection and push: totals, `unresolved` pairs of unknown outcome."""
        if outcome.planned:
            log.info(
                "pushed",
                planned=outcome.planned,
                applied=outcome.applied,
                rejected=outcome.rejected,
                stale_overwrites=outcome.stale_overwrites,
                unresolved=unresolved,
            )

    async def _hold(self, name: str, drops: int, mapped: int) -> None:
        reason = (
            f"cycle would set {drops} of {mapped} mapped levels from above 0 to 0; "
            f"run `stocksync release-hold {name}` if this is real"
        )
        await self.store.hold(name, reason)
        if name not in self._held:
            log.error("safety_valve_hold", connection=name, drops=drops, mapped=mapped)
        self._held.add(name)
        self.metrics.connection_held.labels(connection=name).set(1)
        self.metrics.held_connections.set(len(await self.store.holds()))

    def _observe_lag(
        self, connection: str, report: PushReport, marks: Mapping[int, DirtyMark]
    ) -> None:
        now = self._now()
        at = now.timestamp()
        seen: set[int] = set()
        for result in report.applied:
            vid = result.push.katana_variant_id
            if vid in marks and vid not in seen:
                seen.add(vid)
                lag = max(0.0, (now - marks[vid].changed_at).total_seconds())
                self.metrics.sync_lag.labels(connection=connection).observe(lag)
                self.metrics.activity.lag(connection, at, lag)
