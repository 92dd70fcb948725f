"""Send a plan to one Shopify connection: in-flight marks, concurrent batches, stale overwrite.

The order of writes is what makes a crash harmless: pairs are marked in flight (committed)
before their batch is sent, and only Shopify's answer clears the mark. A pair left in flight is
never trusted as "already pushed" (the planner re-pushes it with `changeFromQuantity` null).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import structlog

from daemon.config import ConnectionSettings
from daemon.domain.models import LevelKey, PlannedPush, PushResult
from daemon.domain.plan import batches
from daemon.metrics import Metrics
from daemon.shopify.client import ShopifyClient, ShopifyError
from daemon.store import StateStore

log = structlog.get_logger(__name__)

NOT_STOCKED = "ITEM_NOT_STOCKED_AT_LOCATION"
# A level that keeps changing under us between re-read and overwrite is left for the next cycle.
MAX_STALE_ROUNDS = 3


@dataclass
class PushReport:
    """What happened to a plan, pair by pair."""

    applied: list[PushResult] = field(default_factory=list)
    rejected: list[PushResult] = field(default_factory=list)
    # Pairs whose outcome is unknown or unresolved: their variants stay dirty.
    unresolved: set[LevelKey] = field(default_factory=set)
    stale_overwrites: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


class Pusher:
    """Pushes planned levels for one connection through its Shopify client."""

    def __init__(self, store: StateStore, metrics: Metrics, *, concurrency: int = 4) -> None:
        self._store = store
        self._metrics = metrics
        self._concurrency = concurrency

    async def push(
        self,
        conn: ConnectionSettings,
        client: ShopifyClient,
        plan: Sequence[PlannedPush],
        run_id: str,
    ) -> PushReport:
        """Push every planned level; batches run concurrently, bounded."""
        report = PushReport()
        if not plan:
            return report
        # Sorted by location so that batches fan out per Shopify location while staying full.
        ordered = sorted(plan, key=lambda p: (p.location_id, p.inventory_item_id))
        gate = asyncio.Semaphore(self._concurrency)

        async def run(batch: list[PlannedPush]) -> None:
            async with gate:
                await self._push_batch(conn, client, batch, run_id, report)

        async with asyncio.TaskGroup() as tg:
            for batch in batches(ordered):
                tg.create_task(run(batch))
        self._count(conn.name, report)
        return report

    async def _push_batch(
        self,
        conn: ConnectionSettings,
        client: ShopifyClient,
        batch: list[PlannedPush],
        run_id: str,
        report: PushReport,
    ) -> None:
        reference = f"gid://stocksync/SyncRun/{run_id}"
        pending = batch
        for round_no in range(MAX_STALE_ROUNDS + 1):
            await self._store.mark_in_flight(conn.name, [p.key for p in pending])
            try:
                results = await client.set_available(pending, reference=reference)
            except ShopifyError as exc:
                # Outcome unknown: the pairs stay in flight and their variants dirty.
                report.errors.append(str(exc))
                report.unresolved.update(p.key for p in pending)
                log.warning(
                    "push_batch_failed", connection=conn.name, size=len(pending), error=str(exc)
                )
                return
            await self._store.record_pushed(conn.name, run_id, results)
            stale: list[PushResult] = []
            for result in results:
                if result.status == "applied":
                    report.applied.append(result)
                    if round_no > 0:
                        report.stale_overwrites += 1
                elif result.status == "stale":
                    stale.append(result)
                else:
                    await self._rejected(conn, client, result, run_id, report)
            # Stale policy: Shopify's value moved since our last push (a manual edit, or Shopify
            # lowering "available" for an order Katana has not seen yet). Katana is the source of
            # truth, so overwrite with Katana's value, comparing against the value just re-read,
            # and count it: a steady stale rate means someone is editing stock in Shopify.
            pending = []
            for result in stale:
                if result.current is None:
                    await self._rejected(
                        conn,
                        client,
                        replace(result, status="rejected", code=NOT_STOCKED),
                        run_id,
                        report,
                    )
                else:
                    pending.append(result.push._replace(change_from=result.current))
            if not pending:
                return
        report.unresolved.update(p.key for p in pending)

    async def _rejected(
        self,
        conn: ConnectionSettings,
        client: ShopifyClient,
        result: PushResult,
        run_id: str,
        report: PushReport,
    ) -> None:
        push = result.push
        if result.code == NOT_STOCKED and conn.activate_missing:
            try:
                activated = await client.activate(
                    push.inventory_item_id, push.location_id, push.quantity
                )
            except ShopifyError as exc:
                report.errors.append(str(exc))
                report.unresolved.add(push.key)
                return
            if activated:
                applied = PushResult(push=push, status="applied")
                await self._store.record_pushed(conn.name, run_id, [applied])
                report.applied.append(applied)
                return
        report.rejected.append(result)

    def _count(self, connection: str, report: PushReport) -> None:
        m = self._metrics
        m.quantities_pushed.labels(connection=connection).inc(len(report.applied))
        m.stale_overwrites.labels(connection=connection).inc(report.stale_overwrites)
        for result in report.rejected:
            m.push_errors.labels(connection=connection, code=result.code or "UNKNOWN").inc()
        if report.errors:
            m.push_errors.labels(connection=connection, code="TRANSPORT").inc(len(report.errors))
