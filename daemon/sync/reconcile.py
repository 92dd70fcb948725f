"""Reconciliation: the nightly run, and `stocksync reconcile` / `stocksync plan` on demand.

(a) Variants on sales orders packed, delivered or updated within the lookback are re-evaluated
    and pushed even when no stock movement occurred (the seed's overnight run).
(b) With `full = true`, the whole mapped catalogue is recomputed and compared with Shopify's
    actual levels; drift (a level that is not what stocksync last pushed: a manual edit in
    Shopify) is overwritten with Katana's value and counted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from apscheduler.triggers.cron import CronTrigger

from daemon.config import ConnectionSettings
from daemon.domain.mapping import LocationError
from daemon.domain.models import DesiredLevel, LevelKey, PlannedPush, SnapshotEntry
from daemon.domain.stock import StockTable
from daemon.sync.catalogue import CatalogueKeeper
from daemon.sync.context import SyncContext
from daemon.sync.engine import Engine
from daemon.sync.levels import ChunkPlan, LevelSync
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.report import ConnectionOutcome

log = structlog.get_logger(__name__)

NIGHTLY = "nightly"


@dataclass(frozen=True)
class LevelDifference:
    """One level Shopify shows differently from what Katana wants (for plan and dry runs)."""

    sku: str | None
    location_id: str
    inventory_item_id: str
    shopify_now: int | None
    desired: int
    drift: bool
    # The level's rules beyond the seed formula (pool, pack size, buffer of its own), in words.
    rule: str = ""


@dataclass
class ConnectionReconciliation:
    """One connection's share of a reconciliation."""

    name: str
    considered: int = 0
    drift: int = 0
    not_stocked: int = 0
    differences: list[LevelDifference] = field(default_factory=list)
    outcome: ConnectionOutcome | None = None
    skipped: str | None = None
    # Per Shopify location: the levels compared, and those Katana wants at 0 (`plan` warns of
    # a whole location going to 0: usually a wrong location mapping).
    levels_by_location: Counter[str] = field(default_factory=Counter)
    zero_by_location: Counter[str] = field(default_factory=Counter)
    # Katana variants with Shopify targets that the sync filters leave out (not compared).
    filtered: int = 0


@dataclass
class ReconciliationReport:
    """What a reconciliation found and did."""

    run_id: str
    dry_run: bool
    full: bool
    connections: list[ConnectionReconciliation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.outcome is not None and c.outcome.errors for c in self.connections)


class Reconciler:
    """Runs reconciliations with the parts of a sync it needs: the settings and clients in
    force, the catalogues, and the one push entry point."""

    def __init__(
        self,
        ctx: SyncContext,
        keeper: CatalogueKeeper,
        levels: LevelSync,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._keeper = keeper
        self._levels = levels
        # Told each phase of a long run (an operator's terminal shows it; the daemon does not).
        self._progress = progress or (lambda _phase: None)

    @classmethod
    def of(cls, engine: Engine, progress: Callable[[str], None] | None = None) -> Reconciler:
        """A reconciler working with `engine`'s parts."""
        return cls(engine.context, engine.keeper, engine.levels, progress)

    async def run(
        self,
        *,
        connection: str | None = None,
        dry_run: bool = False,
        full: bool | None = None,
    ) -> ReconciliationReport:
        """Reconcile one connection (or every eligible one) now."""
        ctx = self._ctx
        settings = ctx.settings
        full = settings.reconciliation.full if full is None else full
        report = ReconciliationReport(run_id=uuid.uuid4().hex[:12], dry_run=dry_run, full=full)
        if connection is not None:
            targets = [settings.connection(connection)]
        else:
            targets = list(settings.connections) if dry_run else ctx.enabled()
        store = ctx.store
        run_row = None if dry_run else await store.start_run(NIGHTLY, connection)
        ok = False
        try:
            with structlog.contextvars.bound_contextvars(run_id=report.run_id):
                self._progress("reading the Katana and Shopify catalogues")
                # Only the shops asked about: `plan --connection A` reads no other catalogue.
                names = [c.name for c in targets]
                if full:
                    self._keeper.forget_remote(names)
                await self._keeper.prepare(names)
                recent: set[int] = set()
                if not full:
                    # A full run reads every variant's stock: the recent orders add nothing.
                    lookback = timedelta(hours=settings.reconciliation.lookback_hours)
                    recent = await self._recent_order_variants(ctx.now() - lookback)
                self._progress(
                    "reading Katana stock of "
                    + ("every variant" if full else f"{len(recent)} recently ordered variants")
                )
                stock = await ctx.katana.inventory(None if full else recent)
                self._progress(f"read Katana stock of {len(stock)} variants")
                if dry_run:
                    # Each shop has a query budget of its own: compared side by side, several
                    # connections take as long as the largest, not their sum.
                    report.connections.extend(
                        await asyncio.gather(
                            *(
                                self._reconcile_connection(conn, recent, stock, report)
                                for conn in targets
                            )
                        )
                    )
                else:
                    for conn in targets:
                        report.connections.append(
                            await self._reconcile_connection(conn, recent, stock, report)
                        )
            ok = report.ok
        finally:
            if run_row is not None:
                drift = sum(c.drift for c in report.connections)
                await store.finish_run(run_row, ok=ok, drift=drift)
        if not dry_run:
            ctx.metrics.reconciliation_runs.labels(result="success" if ok else "error").inc()
            if ok:
                ctx.metrics.reconciliation_last_success.set(time.time())
        log.info(
            "reconciliation_done",
            dry_run=dry_run,
            full=full,
            ok=ok,
            drift=sum(c.drift for c in report.connections),
            pushed=sum(c.outcome.applied for c in report.connections if c.outcome),
        )
        return report

    async def _recent_order_variants(self, since: datetime) -> set[int]:
        changes = await self._ctx.katana.changes("sales_orders", since)
        variants = {c.variant_id for c in changes}
        catalogue = self._keeper.catalogue
        assert catalogue is not None
        return variants | catalogue.kits_using(variants)

    async def _reconcile_connection(
        self,
        conn: ConnectionSettings,
        recent: set[int],
        stock: StockTable,
        report: ReconciliationReport,
    ) -> ConnectionReconciliation:
        result = ConnectionReconciliation(name=conn.name)
        if not conn.sync_inventory and not report.dry_run:
            result.skipped = "sync_inventory is off"
            return result
        try:
            mapping = await self._keeper.mapping_for(conn)
        except LocationError as exc:
            # Reported as this connection's failure; the other connections are reconciled.
            result.outcome = ConnectionOutcome(name=conn.name, errors=[f"locations: {exc}"])
            return result
        result.filtered = len(mapping.table.filtered)
        names = {loc.id: loc.name for loc in self._keeper.katana_locations or ()}
        # (a) recent orders: pushed even when nothing moved (force past the diff), against the
        # snapshot; (b) full: the whole catalogue, a chunk at a time like a full sync, diffed
        # against what Shopify shows now.
        only = None if report.full else recent & mapping.table.targets.keys()
        chunks = self._levels.chunks(mapping, only)
        seen = 0
        against = self._shopify_levels if report.full else None

        def observe(plan: ChunkPlan) -> None:
            nonlocal seen
            seen += 1
            if report.full:
                self._progress(
                    f"{conn.name}: compared {len(plan.levels)} levels with Shopify "
                    f"(part {seen} of {len(chunks)})"
                )
                result.not_stocked += sum(1 for d in plan.levels if d.key not in plan.baseline)
                result.drift += drift(plan.snapshot, plan.baseline)
            result.considered += len(plan.levels)
            for level in plan.levels:
                result.levels_by_location[level.location_id] += 1
                result.zero_by_location[level.location_id] += level.quantity == 0
            result.differences.extend(
                _differences(plan.pushes, plan.baseline, plan.snapshot, mapping, names)
            )

        if report.dry_run:
            for chunk in chunks:
                observe(
                    await self._levels.plan(
                        mapping, stock, chunk, force=not report.full, against=against, note=False
                    )
                )
            return result
        result.outcome = ConnectionOutcome(name=conn.name)
        self._progress(f"{conn.name}: planning and pushing")
        await self._levels.push(
            mapping,
            stock,
            only,
            run_id=report.run_id,
            outcome=result.outcome,
            force=not report.full,
            against=against,
            observe=observe,
        )
        self._ctx.metrics.reconciliation_drift.labels(connection=conn.name).inc(result.drift)
        return result

    async def _shopify_levels(
        self, mapping: ConnectionMapping, levels: Sequence[DesiredLevel]
    ) -> dict[LevelKey, SnapshotEntry]:
        items = sorted({d.inventory_item_id for d in levels})
        locations = sorted({d.location_id for d in levels})
        if not items:
            return {}
        name = mapping.name
        actual = await self._ctx.shopify[name].available_levels(
            items,
            locations,
            progress=_by_tenths(
                lambda done, total: self._progress(
                    f"{name}: read Shopify levels of {done}/{total} items"
                )
            ),
        )
        return {k: SnapshotEntry(quantity=q) for k, q in actual.items() if q is not None}


def _by_tenths(report: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """`report`, passed on at most once per tenth of the way (a large shop reads hundreds of
    pages) and at the end."""
    shown = -1

    def tell(done: int, total: int) -> None:
        nonlocal shown
        tenth = done * 10 // max(total, 1)
        if tenth > shown:
            shown = tenth
            report(done, total)

    return tell


def drift(
    snapshot: Mapping[LevelKey, SnapshotEntry], shopify: Mapping[LevelKey, SnapshotEntry]
) -> int:
    """Levels Shopify shows otherwise than stocksync last pushed (a manual edit in Shopify).

    Levels in flight are never in a plan (their request is settled first), so they are not
    counted here either: `stocksync plan` and the drift counter agree.
    """
    return sum(
        1
        for key, entry in shopify.items()
        if (last := snapshot.get(key)) is not None
        and not last.in_flight
        and last.quantity is not None
        and last.quantity != entry.quantity
    )


def _differences(
    plan: Sequence[PlannedPush],
    baseline: Mapping[LevelKey, SnapshotEntry],
    snapshot: Mapping[LevelKey, SnapshotEntry],
    mapping: ConnectionMapping,
    names: Mapping[int, str],
) -> list[LevelDifference]:
    out = []
    for p in plan:
        now = baseline.get(p.key)
        last = snapshot.get(p.key)
        shopify_now = now.quantity if now else None
        drift = (
            last is not None
            and last.quantity is not None
            and shopify_now is not None
            and last.quantity != shopify_now
        )
        out.append(
            LevelDifference(
                sku=p.sku,
                location_id=p.location_id,
                inventory_item_id=p.inventory_item_id,
                shopify_now=shopify_now,
                desired=p.quantity,
                drift=drift,
                rule=mapping.rule_of(p.inventory_item_id, p.location_id, names),
            )
        )
    return out


def previous_fire_time(cron: str, timezone: str, now: datetime) -> datetime | None:
    """The last time the cron schedule fired at or before `now` (within the past 8 days)."""
    trigger = CronTrigger.from_crontab(cron, timezone=timezone)
    cursor = now - timedelta(days=8)
    last: datetime | None = None
    fire: datetime | None = trigger.get_next_fire_time(None, cursor)
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last
