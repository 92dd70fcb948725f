"""Reconciliation: the nightly run, and `stocksync reconcile` / `stocksync plan` on demand.

(a) Variants on sales orders packed, delivered or updated within the lookback are re-evaluated
    and pushed even when no stock movement occurred (the seed's overnight run).
(b) With `full = true`, the whole mapped catalogue is recomputed and compared with Shopify's
    actual levels; drift (a level that is not what stocksync last pushed: a manual edit in
    Shopify) is overwritten with Katana's value and counted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from apscheduler.triggers.cron import CronTrigger

from daemon.config import ConnectionSettings
from daemon.domain.models import LevelKey, PlannedPush, SnapshotEntry
from daemon.domain.plan import plan_pushes
from daemon.domain.stock import StockTable
from daemon.engine import ConnectionOutcome, Engine, full_sync_chunks
from daemon.mappings import ConnectionMapping

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
    """Runs reconciliations through the engine's catalogue, pusher and store."""

    def __init__(self, engine: Engine, progress: Callable[[str], None] | None = None) -> None:
        self.engine = engine
        # Told each phase of a long run (an operator's terminal shows it; the daemon does not).
        self._progress = progress or (lambda _phase: None)

    async def run(
        self,
        *,
        connection: str | None = None,
        dry_run: bool = False,
        full: bool | None = None,
    ) -> ReconciliationReport:
        """Reconcile one connection (or every eligible one) now."""
        engine = self.engine
        settings = engine.settings
        full = settings.reconciliation.full if full is None else full
        report = ReconciliationReport(run_id=uuid.uuid4().hex[:12], dry_run=dry_run, full=full)
        if connection is not None:
            targets = [settings.connection(connection)]
        else:
            targets = list(settings.connections) if dry_run else engine.enabled()
        store = engine.store
        run_row = None if dry_run else await store.start_run(NIGHTLY, connection)
        ok = False
        try:
            with structlog.contextvars.bound_contextvars(run_id=report.run_id):
                self._progress("reading the Katana and Shopify catalogues")
                if full:
                    await engine.refresh_shopify_catalogues()
                else:
                    await engine.prepare()
                lookback = timedelta(hours=settings.reconciliation.lookback_hours)
                recent = await self._recent_order_variants(engine.now() - lookback)
                self._progress(
                    "reading Katana stock of "
                    + ("every variant" if full else f"{len(recent)} recently ordered variants")
                )
                stock = await self._read_stock(None if full else recent)
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
            engine.metrics.reconciliation_runs.labels(result="success" if ok else "error").inc()
            if ok:
                engine.metrics.reconciliation_last_success.set(time.time())
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
        engine = self.engine
        changes = await engine.katana.changes("sales_orders", since)
        variants = {c.variant_id for c in changes}
        assert engine.catalogue is not None
        return variants | engine.catalogue.kits_using(variants)

    async def _read_stock(self, variant_ids: set[int] | None) -> StockTable:
        return await self.engine.katana.inventory(variant_ids)

    async def _reconcile_connection(
        self,
        conn: ConnectionSettings,
        recent: set[int],
        stock: StockTable,
        report: ReconciliationReport,
    ) -> ConnectionReconciliation:
        engine = self.engine
        result = ConnectionReconciliation(name=conn.name)
        if not conn.sync_inventory and not report.dry_run:
            result.skipped = "sync_inventory is off"
            return result
        mapping = await engine.mapping_for(conn)
        if report.full:
            # The whole catalogue, a chunk at a time like a full sync: desired levels, Shopify's
            # levels and the snapshot are held for one chunk, only the (small) plan for all.
            chunks = full_sync_chunks(mapping)
        else:
            chunks = [sorted(recent & set(mapping.table.targets))]
        plan: list[PlannedPush] = []
        baseline: dict[LevelKey, SnapshotEntry] = {}
        for number, chunk in enumerate(chunks, start=1):
            desired, _ = await engine.desired(mapping, stock, chunk)
            result.considered += len(desired)
            snapshot = await engine.store.snapshot(
                conn.name, {d.inventory_item_id for d in desired}
            )
            if report.full:
                self._progress(
                    f"{conn.name}: comparing {len(desired)} levels with Shopify "
                    f"(part {number} of {len(chunks)})"
                )
                # The plan is diffed against what Shopify shows now.
                against = await self._shopify_levels(mapping, [d.key for d in desired])
                result.not_stocked += sum(1 for d in desired if d.key not in against)
                # Drift = Shopify holds something other than what stocksync last pushed there.
                result.drift += sum(
                    1
                    for key, entry in against.items()
                    if (last := snapshot.get(key)) is not None
                    and not last.in_flight
                    and last.quantity is not None
                    and last.quantity != entry.quantity
                )
                part = plan_pushes(desired, against)
            else:
                # The overnight run pushes even when nothing moved: force past the diff.
                against = snapshot
                part = plan_pushes(desired, snapshot, force=True)
            result.differences.extend(_differences(part, against, snapshot))
            plan.extend(part)
            baseline.update((p.key, against[p.key]) for p in part if p.key in against)
        if report.dry_run:
            return result
        result.outcome = ConnectionOutcome(name=conn.name, considered=result.considered)
        self._progress(f"{conn.name}: pushing {len(plan)} levels")
        await engine.execute(mapping, plan, baseline, report.run_id, result.outcome)
        engine.metrics.reconciliation_drift.labels(connection=conn.name).inc(result.drift)
        return result

    async def _shopify_levels(
        self, mapping: ConnectionMapping, keys: Sequence[LevelKey]
    ) -> dict[LevelKey, SnapshotEntry]:
        items = sorted({k[0] for k in keys})
        locations = sorted({k[1] for k in keys})
        if not items:
            return {}
        actual = await self.engine.shopify[mapping.name].available_levels(items, locations)
        return {k: SnapshotEntry(quantity=q) for k, q in actual.items() if q is not None}


def _differences(
    plan: Sequence[PlannedPush],
    baseline: dict[LevelKey, SnapshotEntry],
    snapshot: dict[LevelKey, SnapshotEntry],
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
