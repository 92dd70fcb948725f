"""One poll-and-push cycle: Katana deltas → outbox → settle open pushes → read dirty stock →
plan → push → commit; and the parts of a sync put together.

The engine holds the in-memory state (catalogues, mappings, valve) through its parts; the store
owns everything that must survive a crash. A cycle either advances cursors together with the
variants they made dirty, or records nothing; a variant leaves the outbox only after Shopify
acknowledged all of its levels.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from daemon.config import ConnectionSettings, Settings
from daemon.domain.models import KatanaVariant
from daemon.domain.stock import StockTable
from daemon.katana.client import KatanaClient, KatanaError
from daemon.katana.models import Catalogue, KatanaLocation
from daemon.metrics import Metrics
from daemon.shopify.client import ShopifyClient, ShopifyError
from daemon.store import DirtyMark, StateStore
from daemon.sync.catalogue import CatalogueKeeper
from daemon.sync.context import Clients, SyncContext, utcnow
from daemon.sync.levels import FULL_SYNC_CHUNK, LevelSync
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.pusher import Pusher, PushReport
from daemon.sync.recovery import Recovery
from daemon.sync.report import ConnectionOutcome, CycleReport
from daemon.sync.sources import BOOTSTRAP_LOOKBACK, CURSOR_OVERLAP, DeltaSources
from daemon.sync.targeted import TargetedReads
from daemon.sync.valve import SafetyValve
from daemon.webhooks import Hint

log = structlog.get_logger(__name__)

Work = dict[str, tuple[bool, dict[int, DirtyMark]]]
T = TypeVar("T")


@dataclass(frozen=True)
class Tuning:
    """Sizes and windows that tests and benchmarks may change (production uses the defaults)."""

    full_sync_chunk: int = FULL_SYNC_CHUNK
    catalogue_write_batch: int = 5_000
    cursor_overlap: float = CURSOR_OVERLAP.total_seconds()
    bootstrap_lookback: float = BOOTSTRAP_LOOKBACK.total_seconds()
    push_concurrency: int = 4


DEFAULT_TUNING = Tuning()


class Engine:
    """Keeps Shopify's available levels in step with Katana, one cycle at a time."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        clients: Clients,
        metrics: Metrics,
        *,
        now: Callable[[], datetime] = utcnow,
        tuning: Tuning = DEFAULT_TUNING,
    ) -> None:
        self.context = ctx = SyncContext(settings, clients, store, metrics, now)
        self.keeper = CatalogueKeeper(ctx, write_batch=tuning.catalogue_write_batch)
        self.sources = DeltaSources(
            ctx,
            self.keeper,
            overlap=timedelta(seconds=tuning.cursor_overlap),
            bootstrap=timedelta(seconds=tuning.bootstrap_lookback),
        )
        self.targeted = TargetedReads(ctx, self.keeper, self.sources)
        self.valve = SafetyValve(ctx)
        pusher = Pusher(store, metrics, now=now, concurrency=tuning.push_concurrency)
        self.recovery = Recovery(store, pusher, metrics, now)
        self.levels = LevelSync(
            ctx, self.keeper, self.valve, pusher, full_sync_chunk=tuning.full_sync_chunk
        )
        # (connection, variant) -> the dirty mark whose unchanged levels were confirmed against
        # Shopify already (a variant kept dirty is confirmed once per Katana change).
        self._confirmed: dict[tuple[str, int], int] = {}

    # ---------------------------------------------------------------- what the parts share

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def store(self) -> StateStore:
        return self.context.store

    @property
    def metrics(self) -> Metrics:
        return self.context.metrics

    @property
    def katana(self) -> KatanaClient:
        return self.context.katana

    @property
    def shopify(self) -> Mapping[str, ShopifyClient]:
        return self.context.shopify

    @property
    def mappings(self) -> Mapping[str, ConnectionMapping]:
        return self.keeper.mappings

    @property
    def catalogue(self) -> Catalogue | None:
        return self.keeper.catalogue

    @property
    def katana_locations(self) -> Sequence[KatanaLocation] | None:
        return self.keeper.katana_locations

    def katana_variants(self) -> Mapping[int, KatanaVariant]:
        """Every known Katana variant by id."""
        return self.keeper.katana_variants()

    def now(self) -> datetime:
        """The engine's clock (UTC)."""
        return self.context.now()

    def enabled(self) -> list[ConnectionSettings]:
        """Connections whose sync_inventory is on."""
        return self.context.enabled()

    async def prepare(self) -> None:
        """Load or read whatever the catalogues and mappings still lack (cheap when warm)."""
        await self.keeper.prepare()

    async def mapping_for(self, conn: ConnectionSettings) -> ConnectionMapping:
        """The mapping of any connection, enabled or not (read-only commands, dry runs)."""
        return await self.keeper.mapping_for(conn)

    async def collect_changes(self) -> int:
        """Read every Katana delta source into the outbox; how many variants became dirty."""
        return await self.sources.collect()

    # ---------------------------------------------------------------- configuration

    async def start(self) -> None:
        """Take the current settings into account (at start-up and after each reload)."""
        ctx = self.context
        for conn in ctx.settings.connections:
            ctx.metrics.sync_enabled.labels(connection=conn.name).set(int(conn.sync_inventory))
            ctx.metrics.connection_started(conn.name)
            if not conn.sync_inventory:
                # Changes made while a connection is off are not replayed one by one: when it is
                # switched on again its first cycle is a full sync.
                await ctx.store.set_connection_synced(conn.name, None)

    async def apply(self, settings: Settings, clients: Clients) -> None:
        """Swap in a validated new configuration and its clients (SIGHUP), in one call; then
        re-read Katana's locations and the Shopify catalogues."""
        previous = self.context.apply(settings, clients)
        await self.valve.release_raised_limits(previous, settings)
        # A reload may be the fix for what Shopify rejected: every parked level is tried again.
        await self.store.retry_parked_now()
        self.keeper.forget_remote()
        await self.start()
        await self.keeper.prepare()

    async def refresh_shopify_catalogues(self) -> None:
        """Re-read Katana's locations and every enabled Shopify catalogue (reconciliation)."""
        self.keeper.forget_remote()
        await self.keeper.prepare()

    # ---------------------------------------------------------------- one cycle

    async def cycle(self, hints: Sequence[Hint | None] | None = None) -> CycleReport:
        """Poll Katana, push what changed to every enabled connection, record the result.

        With `hints` (webhook deliveries) only what they name is read (a targeted cycle, see
        targeted.py); one that cannot be targeted, or whose read fails, is a delta cycle.
        """
        report = CycleReport(run_id=uuid.uuid4().hex[:12])
        store = self.store
        with structlog.contextvars.bound_contextvars(run_id=report.run_id):
            # A connection whose Katana locations do not resolve waits (the keeper reports it
            # and looks again each cycle); the others sync.
            errors = self.keeper.location_errors
            enabled = [c for c in self.enabled() if c.name not in errors]
            if not enabled:
                await self.keeper.prepare()
                return report
            full = {c.name: await store.connection_synced(c.name) is None for c in enabled}
            if any(full.values()):
                report.changed_variants, work, stock = await self._full_sync_reads(full)
                full, work = self._mapped(full), self._mapped(work)
                settled = await self._settle(full, report.run_id)
            else:
                await self.keeper.prepare()
                full = self._mapped(full)
                report.changed_variants = await self._collect(hints, report)
                # Before the marks are taken: what the settling makes dirty is pushed now.
                settled = await self._settle(full, report.run_id)
                work = await self._work(full)
                stock = await self._read_stock(work)
            await self.valve.sync()
            outcomes = await asyncio.gather(
                *(
                    self._sync_connection(
                        self.mappings[name], is_full, marks, stock, report.run_id, settled[name]
                    )
                    for name, (is_full, marks) in work.items()
                )
            )
            report.connections.extend(outcomes)
            self.metrics.dirty_variants.set(await store.dirty_count())
        return report

    async def _collect(self, hints: Sequence[Hint | None] | None, report: CycleReport) -> int:
        """Targeted reads for webhook hints, else (or when they fail) every delta source."""
        if hints:
            try:
                changed = await self.targeted.collect(hints)
            except (KatanaError, OSError, TimeoutError) as exc:
                log.warning("targeted_read_failed", error=str(exc), hints=len(hints))
                changed = None
            if changed is not None:
                report.targeted = True
                return changed
        changed = await self.sources.collect()
        if hints is None:
            # A safety-net poll: what it found that no delivery announced (a lost webhook).
            report.unannounced = len(self.sources.marked - self.targeted.announced)
        self.targeted.announced.clear()
        return changed

    def _mapped(self, by_name: Mapping[str, T]) -> dict[str, T]:
        """Only the connections mapped now: one whose locations failed to resolve in this
        cycle's catalogue read has no mapping, and waits."""
        return {name: value for name, value in by_name.items() if name in self.mappings}

    async def _settle(self, names: Collection[str], run_id: str) -> dict[str, PushReport]:
        """Settle every connection's open pushes (see recovery.py), side by side."""

        async def settle(name: str) -> PushReport:
            with structlog.contextvars.bound_contextvars(connection=name):
                try:
                    return await self.recovery.settle(
                        self.mappings[name], self.shopify[name], run_id
                    )
                except ShopifyError as exc:
                    log.warning("open_pushes_not_settled", error=str(exc))
                    return PushReport(errors=[str(exc)])

        reports = await asyncio.gather(*(settle(name) for name in names))
        return dict(zip(names, reports, strict=True))

    async def _work(self, full: Mapping[str, bool]) -> Work:
        """Each connection's share: full sync or not, and the dirty marks it will settle."""
        return {name: (is_full, await self.store.dirty(name)) for name, is_full in full.items()}

    async def _full_sync_reads(self, full: Mapping[str, bool]) -> tuple[int, Work, StockTable]:
        """A cycle with a full sync: read all Katana stock while the catalogues are read.

        The full stock read is the longest Katana job and the Shopify catalogue read the longest
        Shopify one; each API has its own budget, so they run side by side. The dirty marks are
        taken before the stock read starts: changes recorded during it get fresh marks that
        stay in the outbox for the next cycle, so none is settled with older stock.
        """
        work = await self._work(full)
        stock_read = asyncio.create_task(self.katana.inventory(None))
        try:
            await self.keeper.prepare()
            changed = await self.sources.collect()
            stock = await stock_read
        finally:
            if not stock_read.done():
                stock_read.cancel()
            # Retrieved either way: a read that failed beside a failing catalogue read must
            # not end as "Task exception was never retrieved".
            with contextlib.suppress(BaseException):
                await stock_read
        return changed, work, stock

    async def _read_stock(self, work: Work) -> StockTable:
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
        await self.levels.absorb(name, outcome, settled)
        with structlog.contextvars.bound_contextvars(connection=name):
            # A variant changed in Katana is confirmed against Shopify even where its value
            # came back to the last pushed one (Shopify may have drifted meanwhile), once per
            # change: a variant kept dirty is not confirmed again every cycle.
            confirm = {v for v, m in marks.items() if self._confirmed.get((name, v)) != m.seq}
            unresolved = await self.levels.push(
                mapping,
                stock,
                None if full else set(marks),
                run_id=run_id,
                outcome=outcome,
                marks=marks,
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
                kept = {v: self.now() for v in unresolved if v not in marks}
                await self.store.record_changes(kept, {}, [name])
                if not outcome.errors:
                    await self.store.set_connection_synced(name, self.now())
                    log.info("full_sync_done", applied=outcome.applied, rejected=outcome.rejected)
        return outcome
