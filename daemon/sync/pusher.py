"""Send a plan to one Shopify connection: recorded requests, concurrent batches, stale overwrite.

The order of writes is what makes a crash harmless (PRODUCT.md §3): each request is recorded,
key and exact variables, with its levels marked in flight under it (committed) before it is
sent, and only that request's answer clears the marks. A request whose answer never arrived is
re-sent unchanged under its key before its levels are planned again, and where an answer was
lost its levels are read back from Shopify once the request can no longer land.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from daemon.config import ConnectionSettings
from daemon.domain.models import LevelKey, PlannedPush, PushRequest, PushResult
from daemon.domain.plan import batches
from daemon.metrics import Metrics
from daemon.shopify.client import ShopifyClient, ShopifyError
from daemon.store import PendingRequest, StateStore

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


class _Journal:
    """Records one batch's requests in the store as the Shopify client sends them."""

    def __init__(self, store: StateStore, connection: str, pending: PendingRequest | None) -> None:
        self._store = store
        self._connection = connection
        self.request_id = None if pending is None else pending.id
        # A request found recorded at start-up lost its answer with the process that sent it.
        self.was_lost = pending is not None

    async def sending(self, request: PushRequest) -> None:
        if self.request_id is None:
            self.request_id = await self._store.begin_request(self._connection, request)
        else:
            await self._store.next_attempt(self.request_id, request)

    async def lost(self) -> None:
        if not self.was_lost and self.request_id is not None:
            await self._store.request_lost(self.request_id)
        self.was_lost = True


class Pusher:
    """Pushes planned levels for one connection through its Shopify client."""

    def __init__(
        self,
        store: StateStore,
        metrics: Metrics,
        *,
        now: Callable[[], datetime],
        concurrency: int = 4,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._now = now
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

    async def resend(
        self,
        conn: ConnectionSettings,
        client: ShopifyClient,
        pending: Sequence[PendingRequest],
        run_id: str,
    ) -> PushReport:
        """Re-send recorded requests whose answer never arrived, unchanged, under their keys."""
        report = PushReport()
        for request in pending:
            log.info(
                "push_request_resent",
                connection=conn.name,
                request_id=request.id,
                size=len(request.request.pushes),
            )
            await self._push_batch(
                conn, client, list(request.request.pushes), run_id, report, request
            )
        self._count(conn.name, report)
        return report

    async def _push_batch(
        self,
        conn: ConnectionSettings,
        client: ShopifyClient,
        batch: list[PlannedPush],
        run_id: str,
        report: PushReport,
        resend: PendingRequest | None = None,
    ) -> None:
        reference = f"gid://stocksync/SyncRun/{run_id}"
        pending = batch
        for round_no in range(MAX_STALE_ROUNDS + 1):
            journal = _Journal(self._store, conn.name, resend)
            try:
                results = await client.set_available(
                    pending,
                    reference=reference,
                    journal=journal,
                    resend=None if resend is None else resend.request,
                )
            except ShopifyError as exc:
                # Outcome unknown: the request stays recorded, its levels in flight and their
                # variants dirty; the next cycle re-sends it under the same key.
                report.errors.append(str(exc))
                report.unresolved.update(p.key for p in pending)
                log.warning(
                    "push_batch_failed", connection=conn.name, size=len(pending), error=str(exc)
                )
                return
            resent, resend = resend is not None, None
            verify_after = (
                self._now() + timedelta(seconds=conn.late_push_seconds)
                if journal.was_lost
                else None
            )
            await self._store.record_pushed(
                conn.name,
                run_id,
                results,
                request_id=journal.request_id,
                verify_after=verify_after,
            )
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
            if resent:
                # The re-sent levels are what an earlier cycle wanted; a stale one now holds
                # Shopify's value in the snapshot, and this cycle's plan overwrites it with
                # Katana's value of today (its variant is still dirty).
                return
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
        m.activity.pushed(connection, self._now().timestamp(), len(report.applied))
        m.stale_overwrites.labels(connection=connection).inc(report.stale_overwrites)
        for result in report.rejected:
            m.push_errors.labels(connection=connection, code=result.code or "UNKNOWN").inc()
        if report.errors:
            m.push_errors.labels(connection=connection, code="TRANSPORT").inc(len(report.errors))
