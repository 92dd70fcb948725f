"""Desired levels → plan → safety valve → push: the one way levels reach Shopify.

A delta cycle, a full sync and a reconciliation all push through `LevelSync.push`; they differ
only in which variants they look at, what the plan is diffed against (the snapshot of what
Shopify was last told, or Shopify's own levels) and whether unchanged levels are sent anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import structlog

from daemon.domain.models import DesiredLevel, LevelKey, PlannedPush, Problem, SnapshotEntry
from daemon.domain.plan import desired_levels, drops_to_zero, plan_pushes
from daemon.domain.stock import StockTable
from daemon.store import DirtyMark
from daemon.sync.catalogue import CatalogueKeeper
from daemon.sync.context import SyncContext
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.problems import note_problems
from daemon.sync.pusher import Pusher, PushReport
from daemon.sync.report import ConnectionOutcome
from daemon.sync.valve import SafetyValve

log = structlog.get_logger(__name__)

# A full sync plans and pushes this many variants at a time (about 15,000 levels with three
# locations): memory stays bounded by a chunk (~7 MiB of plan, snapshot and results), and 60
# full Shopify calls keep the pusher busy.
FULL_SYNC_CHUNK = 5_000
# What desired_levels reports about a variant's stock (the rest are mapping problems).
STOCK_PROBLEM_KINDS = frozenset(
    {"stock_unreadable", "quantity_invalid", "quantity_too_high", "quantity_too_low"}
)
# A level Shopify rejected is tried again after a minute, then after pauses doubling up to an
# hour (and at once when Katana's value moves, on a reload or with a fresh Shopify catalogue).
PARK_FIRST_PAUSE_SECONDS = 60.0
PARK_MAX_PAUSE_SECONDS = 3600.0

# What a plan is diffed against instead of the snapshot: Shopify's levels for these desired
# levels (a full reconciliation), as snapshot entries.
Against = Callable[
    [ConnectionMapping, Sequence[DesiredLevel]], Awaitable[Mapping[LevelKey, SnapshotEntry]]
]


def park_backoff(attempts: int) -> float:
    """Seconds a level rejected `attempts` times in a row waits before it is tried again."""
    return min(PARK_MAX_PAUSE_SECONDS, PARK_FIRST_PAUSE_SECONDS * 2.0 ** min(attempts - 1, 16))


@dataclass
class ChunkPlan:
    """The plan for some variants of a connection, and what it was made from."""

    levels: list[DesiredLevel]  # the desired levels that may be pushed now
    pushes: list[PlannedPush]
    snapshot: Mapping[LevelKey, SnapshotEntry]  # what Shopify was last told
    baseline: Mapping[LevelKey, SnapshotEntry]  # what the plan was diffed against
    waiting: set[int]  # variants not pushable now (unreadable, in flight): they stay dirty


class LevelSync:
    """Plans and pushes one connection's levels for a set of variants."""

    def __init__(
        self,
        ctx: SyncContext,
        keeper: CatalogueKeeper,
        valve: SafetyValve,
        pusher: Pusher,
        *,
        full_sync_chunk: int = FULL_SYNC_CHUNK,
    ) -> None:
        self._ctx = ctx
        self._keeper = keeper
        self._valve = valve
        self._pusher = pusher
        self._chunk = full_sync_chunk

    def chunks(self, mapping: ConnectionMapping, only: Collection[int] | None) -> list[list[int]]:
        """`only` (None: every mapped variant), in id order, a chunk at a time."""
        ids = sorted(mapping.table.targets if only is None else only)
        return [ids[start : start + self._chunk] for start in range(0, len(ids), self._chunk)]

    async def desired(
        self, mapping: ConnectionMapping, stock: StockTable, only: Collection[int], *, note: bool
    ) -> tuple[list[DesiredLevel], set[int]]:
        """What Shopify should show for `only`, and the variants that cannot be pushed
        (unreadable, out of range: they stay dirty); with `note`, problems are recorded."""
        desired, problems = desired_levels(
            stock,
            self._keeper.katana_variants(),
            mapping.table,
            mapping.locations,
            mapping.settings.policy,
            only=only,
            policies=mapping.policies,
        )
        blocked = {p.katana_variant_id for p in problems if p.katana_variant_id is not None}
        if note:
            store = self._ctx.store
            await note_problems(store, mapping.name, problems)
            # A mapped variant planned without a stock problem has none left: a recurrence is
            # reported anew. (Mapping problems of the same variant, e.g. a shadowed SKU, stay.)
            targets = mapping.table.targets
            await store.clear_problems(
                mapping.name,
                [f"katana_variant:{v}" for v in only if v in targets and v not in blocked],
                kinds=STOCK_PROBLEM_KINDS,
            )
        return desired, blocked

    async def plan(
        self,
        mapping: ConnectionMapping,
        stock: StockTable,
        only: Collection[int],
        *,
        confirm: Collection[int] = (),
        force: bool = False,
        against: Against | None = None,
        note: bool = True,
    ) -> ChunkPlan:
        """The pushes for `only`, diffed against the snapshot (or `against`).

        Levels still in flight under an earlier request wait for it (it is re-sent first,
        never overtaken); parked levels wait out their pause unless Katana's value moved. With
        `note` (a first look, not a dry run) problems are recorded and moved-on levels unparked.
        """
        store, name = self._ctx.store, mapping.name
        desired, waiting = await self.desired(mapping, stock, only, note=note)
        snapshot = await store.snapshot(name, {d.inventory_item_id for d in desired})
        parked = await store.parked(name)
        now = self._ctx.now()
        ready: list[DesiredLevel] = []
        moved_on: list[LevelKey] = []
        for level in desired:
            entry = snapshot.get(level.key)
            if entry is not None and entry.in_flight:
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
        if note:
            await store.unpark(name, moved_on)
        baseline = snapshot if against is None else await against(mapping, ready)
        pushes = plan_pushes(ready, baseline, force=force, confirm=confirm)
        return ChunkPlan(ready, pushes, snapshot, baseline, waiting)

    async def push(
        self,
        mapping: ConnectionMapping,
        stock: StockTable,
        only: Collection[int] | None,
        *,
        run_id: str,
        outcome: ConnectionOutcome,
        marks: Mapping[int, DirtyMark] | None = None,
        confirm: Collection[int] = (),
        force: bool = False,
        against: Against | None = None,
        observe: Callable[[ChunkPlan], None] | None = None,
        reports: list[PushReport] | None = None,
    ) -> set[int] | None:
        """Make Shopify show Katana's levels for `only` (None = every mapped variant).

        Returns the variants whose push is unresolved (they stay dirty), or None when the
        safety valve holds the connection. Large sets are planned and pushed a chunk at a time,
        so memory is bounded by a chunk rather than the catalogue; the valve judges the whole
        plan before any push, so a chunk is planned again when pushed unless the plans were
        small enough to keep. `observe` sees each chunk's first plan; `reports` (when given)
        receives each chunk's push report, level by level (`stocksync push` prints them).
        """
        chunks = self.chunks(mapping, only)

        async def plan(chunk: Collection[int], *, note: bool) -> ChunkPlan:
            return await self.plan(
                mapping, stock, chunk, confirm=confirm, force=force, against=against, note=note
            )

        drops = 0
        # Only the pushes are kept between the two passes: a chunk's desired levels and
        # snapshot are dropped as soon as it is judged (a full reconciliation has 20 chunks).
        kept: list[list[PlannedPush]] | None = []
        unresolved: set[int] = set()
        for chunk in chunks:
            first = await plan(chunk, note=True)
            if observe is not None:
                observe(first)
            unresolved |= first.waiting
            drops += drops_to_zero(first.pushes, first.baseline)
            outcome.considered += len(first.levels)
            outcome.planned += len(first.pushes)
            if kept is not None and len(chunks) > 1 and outcome.planned > self._chunk:
                kept = None  # too large to hold: planned again chunk by chunk
            elif kept is not None:
                kept.append(first.pushes)
        if not await self._valve.allows(mapping, drops, outcome):
            return None
        unresolved_pairs = 0
        for number, chunk in enumerate(chunks):
            pushes = kept[number] if kept is not None else (await plan(chunk, note=False)).pushes
            report = await self._pusher.push(
                mapping.settings, self._ctx.shopify[mapping.name], pushes, run_id
            )
            await self.absorb(mapping.name, outcome, report)
            if reports is not None:
                reports.append(report)
            self._observe_lag(mapping.name, report, marks or {})
            if report.unresolved:
                unresolved_pairs += len(report.unresolved)
                unresolved.update(p.katana_variant_id for p in pushes if p.key in report.unresolved)
        outcome.log_pushed(unresolved_pairs)
        return unresolved

    async def absorb(self, name: str, outcome: ConnectionOutcome, report: PushReport) -> None:
        """Count a push report into the outcome; park and report (once) what Shopify rejected:
        it is tried again after a growing pause, or at once when Katana's value moves."""
        outcome.applied += len(report.applied)
        outcome.rejected += len(report.rejected)
        outcome.stale_overwrites += report.stale_overwrites
        outcome.errors.extend(report.errors)
        store = self._ctx.store
        await store.park(name, [r.push for r in report.rejected], park_backoff)
        await note_problems(
            store,
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

    def _observe_lag(
        self, connection: str, report: PushReport, marks: Mapping[int, DirtyMark]
    ) -> None:
        now = self._ctx.now()
        at = now.timestamp()
        seen: set[int] = set()
        for result in report.applied:
            vid = result.push.katana_variant_id
            if vid in marks and vid not in seen:
                seen.add(vid)
                lag = max(0.0, (now - marks[vid].changed_at).total_seconds())
                self._ctx.metrics.sync_lag.labels(connection=connection).observe(lag)
                self._ctx.metrics.activity.lag(connection, at, lag)
