"""What the status page shows, gathered read-only from the engine, the store and the metrics.

Nothing here writes: the page answers "why didn't this SKU update?" from what the daemon already
knows (its mappings, the problems it recorded, the snapshot of what Shopify was last told, the
audit log), plus, for one SKU on demand, a fresh Katana stock read of that SKU's variants.

`StatusModel` gathers here; the data it returns is in `data.py`, the problem groups and reasons
in `problems.py`, a connection's state in `states.py`, the on-demand Katana stock in `stock.py`.
"""

from __future__ import annotations

import heapq
import shlex
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon import __version__
from daemon.config import ConnectionSettings
from daemon.domain.mapping import normalize_sku
from daemon.domain.models import KatanaVariant, LevelKey, Problem
from daemon.domain.plan import desired_levels
from daemon.domain.stock import StockTable
from daemon.katana.client import KatanaError
from daemon.logs import Outage
from daemon.metrics import Metrics
from daemon.status.data import (
    ActivityStep,
    ConnectionStatus,
    HeldInfo,
    HistoryRow,
    KatanaState,
    KatanaStock,
    LagFigures,
    ProblemGroup,
    ProblemRow,
    Problems,
    Reconciliation,
    ShopifyLevel,
    SkuVariant,
    SkuView,
    Status,
)
from daemon.status.problems import _MAPPING_KINDS, GROUPS, REASONS, group_of, reason_for
from daemon.status.states import _state
from daemon.status.stock import StockCache, StockReader, _katana_stock
from daemon.store import AuditEntry, Parked
from daemon.sync.engine import Engine
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.reconcile import NIGHTLY
from daemon.sync.report import CycleReport

# Problem rows shown per group; the counts always cover every row, and the SKU filter is
# applied before the cap, so a search finds rows beyond it.
DEFAULT_ROWS_PER_GROUP = 200
MAX_ROWS_PER_GROUP = 100_000
# The chart: the last six hours in ten-minute steps.
CHART_SPAN_SECONDS = 6 * 3600.0
CHART_STEP_SECONDS = 600.0
LAG_WINDOW_SECONDS = 3600.0
HISTORY_ROWS = 20

LAST_POLL_SAMPLE = "stocksync_last_successful_poll_timestamp_seconds"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class StatusSources:
    """What the page reads, all owned by the daemon (nothing here is written)."""

    engine: Engine
    metrics: Metrics
    # The current outage of a HealthLog source ("poll", "push"), None while it works.
    outage: Callable[[str], Outage | None]
    last_cycle: Callable[[], CycleReport | None]
    started_at: datetime


class _MappingFacts:
    """What the page derives from one connection mapping, worked out once per mapping (a
    mapping is replaced, never changed, when the catalogue or config changes)."""

    def __init__(self, mapping: ConnectionMapping) -> None:
        self.mapping = mapping
        table = mapping.table
        # O(catalogue): 100,000 mapped variants take ~40 ms, too much for every refresh.
        self.mapped_levels = mapping.mapped_levels
        self.problems = table.problems()
        self._variants: dict[str, str | None] = {v.id: v.sku for v in table.untracked}
        # A Katana variant whose only twins are untracked is "unmapped" too; the untracked row
        # already says why it does not sync.
        self.untracked_skus = {normalize_sku(v.sku) for v in table.untracked} - {None}

    def variant_sku(self, shopify_variant: str) -> str | None:
        """The SKU of an untracked Shopify variant."""
        return self._variants.get(shopify_variant)


# --------------------------------------------------------------------------- gathering


class StatusModel:
    """Builds a Status from the daemon's live objects; holds only caches."""

    def __init__(
        self,
        sources: StatusSources,
        *,
        stock_cache: StockCache | None = None,
        stock_reader: StockReader | None = None,
    ) -> None:
        self.sources = sources
        self.stock_cache = stock_cache if stock_cache is not None else StockCache()
        # Katana's /inventory for a SKU view's variants; the engine's client (read when asked,
        # as a reload replaces it) unless given.
        self._stock_reader = stock_reader
        self._facts: dict[str, _MappingFacts] = {}

    async def _read_stock(self, variant_ids: Collection[int]) -> StockTable:
        if self._stock_reader is not None:
            return await self._stock_reader(variant_ids)
        return await self.sources.engine.katana.inventory(variant_ids)

    async def gather(
        self,
        *,
        query: str = "",
        sku: str | None = None,
        rows_per_group: int = DEFAULT_ROWS_PER_GROUP,
    ) -> Status:
        """The status now; `query` filters problems by SKU, `sku` adds that SKU's view."""
        engine = self.sources.engine
        now = time.time()
        generated_at = _utc(now)
        katana, cycle_error, cycle_since = self._cycle_health()
        last_poll = self.sources.metrics.registry.get_sample_value(LAST_POLL_SAMPLE)
        last_successful_poll = _utc(last_poll) if last_poll else None
        holds = await engine.store.holds()
        hold_times = await engine.store.hold_times()
        problems, counts = await self._problems(query.strip(), rows_per_group)
        connections = [
            await self._connection(
                conn,
                now=now,
                katana=katana,
                cycle_error=cycle_error,
                cycle_since=cycle_since,
                last_successful_poll=last_successful_poll,
                holds=holds,
                hold_times=hold_times,
                counts=counts.get(conn.name, {}),
            )
            for conn in engine.settings.connections
        ]
        sku_view = await self._sku_view(sku.strip()) if sku and sku.strip() else None
        return Status(
            generated_at=generated_at,
            version=__version__,
            started_at=self.sources.started_at,
            poll_interval_seconds=engine.settings.daemon.poll_interval_seconds,
            last_successful_poll=last_successful_poll,
            katana=katana,
            cycle_error=cycle_error,
            cycle_failing_since=cycle_since,
            connections=connections,
            problems=problems,
            sku=sku_view,
        )

    def _cycle_health(self) -> tuple[KatanaState, str | None, datetime | None]:
        outage = self.sources.outage("poll")
        if outage is None:
            return KatanaState(True, None, None), None, None
        since = _utc(outage.started_at)
        if outage.error_type is not None and issubclass(outage.error_type, KatanaError):
            return KatanaState(False, since, outage.message), None, None
        return KatanaState(True, None, None), outage.message, since

    async def _connection(
        self,
        conn: ConnectionSettings,
        *,
        now: float,
        katana: KatanaState,
        cycle_error: str | None,
        cycle_since: datetime | None,
        last_successful_poll: datetime | None,
        holds: Mapping[str, str],
        hold_times: Mapping[str, datetime],
        counts: dict[str, int],
    ) -> ConnectionStatus:
        engine, name = self.sources.engine, conn.name
        store = engine.store
        mapping = engine.mappings.get(name) if conn.sync_inventory else None
        waiting = await store.dirty_count(name)
        last_full_sync = await store.connection_synced(name)
        run = await store.last_run(NIGHTLY, name)
        held = None
        if name in holds:
            command = " ".join(
                [
                    "stocksync",
                    "release-hold",
                    "-c",
                    shlex.quote(str(engine.settings.source)),
                    shlex.quote(name),
                ]
            )
            held = HeldInfo(holds[name], hold_times.get(name), command)
        push_error = self._push_error(name)
        push_outage = self.sources.outage("push")
        state, summary, since, error = _state(
            conn,
            mapping=mapping,
            held=held,
            katana=katana,
            cycle_error=cycle_error,
            cycle_since=cycle_since,
            push_error=push_error,
            push_since=_utc(push_outage.started_at) if push_outage else None,
            synced=last_full_sync is not None,
            waiting=waiting,
        )
        activity = self.sources.metrics.activity
        lag = activity.lag_summary(name, now, LAG_WINDOW_SECONDS)
        return ConnectionStatus(
            name=name,
            shop=conn.shop,
            sync_enabled=conn.sync_inventory,
            state=state,
            summary=summary,
            since=since,
            waiting_variants=waiting,
            held=held,
            error=error,
            last_successful_poll=last_successful_poll,
            last_full_sync=last_full_sync,
            lag_last_hour=LagFigures(lag.p50_seconds, lag.p99_seconds, lag.samples),
            last_reconciliation=None
            if run is None
            else Reconciliation(
                finished_at=run.finished_at,
                ok=run.ok,
                drift=run.drift,
                scope="all connections" if run.connection is None else "this connection",
            ),
            mapped_variants=None if mapping is None else len(mapping.table.targets),
            mapped_levels=None if mapping is None else self._facts_of(mapping).mapped_levels,
            problem_counts=counts,
            activity=[
                ActivityStep(
                    _utc(p.start), p.seconds, p.pushes, p.lag_p50_seconds, p.lag_max_seconds
                )
                for p in activity.series(
                    name, now, span=CHART_SPAN_SECONDS, step=CHART_STEP_SECONDS
                )
            ],
        )

    def _push_error(self, name: str) -> str | None:
        report = self.sources.last_cycle()
        if report is None:
            return None
        for outcome in report.connections:
            if outcome.name == name and outcome.errors:
                return outcome.errors[0]
        return None

    # ------------------------------------------------------------------ problems

    def _facts_of(self, mapping: ConnectionMapping) -> _MappingFacts:
        facts = self._facts.get(mapping.name)
        if facts is None or facts.mapping is not mapping:
            facts = self._facts[mapping.name] = _MappingFacts(mapping)
        return facts

    async def _connection_problems(self, name: str) -> Iterator[ProblemRow]:
        """Every current problem of a connection, read from the store and its mapping."""
        store = self.sources.engine.store
        return self._problem_rows(name, await store.problems(name), await store.parked(name))

    def _problem_rows(
        self, name: str, stored: Mapping[str, Problem], parked: Mapping[LevelKey, Parked]
    ) -> Iterator[ProblemRow]:
        """Every problem of a connection: those recorded, and those of its current mapping."""
        engine = self.sources.engine
        variants = engine.katana_variants()
        mapping = engine.mappings.get(name)
        facts = None if mapping is None else self._facts_of(mapping)
        problems: Iterable[Problem] = stored.values()
        if facts is not None:
            # The mapping is the truth for its own problems: the recorded ones are a log that a
            # later cycle may have cleared (or not yet written).
            problems = [
                *(p for p in stored.values() if p.kind not in _MAPPING_KINDS),
                *facts.problems,
            ]
        for problem in problems:
            subject = problem.subject
            sku, where = None, None
            if subject.startswith("katana_variant:"):
                variant = variants.get(_int(subject.removeprefix("katana_variant:")))
                sku = None if variant is None else variant.sku
            elif "@" in subject:
                item, _, where = subject.partition("@")
                rejected = parked.get((item, where))
                if rejected is None:
                    # A rejection is recorded once and kept; the level is parked only while
                    # Shopify still refuses it. Unparked, it was taken since (or is being
                    # pushed at a new value): no longer a problem.
                    continue
                variant = variants.get(rejected.katana_variant_id)
                sku = None if variant is None else variant.sku
            elif facts is not None:
                sku = facts.variant_sku(subject)
            yield ProblemRow(
                connection=name,
                group=group_of(problem.kind),
                kind=problem.kind,
                sku=sku,
                subject=subject,
                where=where,
                reason=reason_for(problem.kind),
                detail=problem.detail,
            )
        if mapping is not None and facts is not None:
            for variant_id in mapping.table.unmapped_katana:
                variant = variants.get(variant_id)
                sku = None if variant is None else variant.sku
                if sku is not None and normalize_sku(sku) in facts.untracked_skus:
                    continue
                if variant_id in mapping.table.shadowed:
                    continue  # its shadowed_sku row says why
                yield ProblemRow(
                    connection=name,
                    group="unmapped",
                    kind="unmapped",
                    sku=sku,
                    subject=f"katana_variant:{variant_id}",
                    where=None,
                    reason=REASONS["unmapped" if sku else "unmapped_no_sku"],
                    detail=f"Katana variant {variant_id}",
                )

    async def _problems(
        self, query: str, rows_per_group: int
    ) -> tuple[Problems, dict[str, dict[str, int]]]:
        """The grouped problems, filtered and capped; and every connection's count per group."""
        engine = self.sources.engine
        needle = query.casefold()
        groups = {key: ProblemGroup(key, title) for key, title in GROUPS.items()}
        matching: dict[str, list[tuple[str, str, str, ProblemRow]]] = {key: [] for key in GROUPS}
        counts: dict[str, dict[str, int]] = {}
        for conn in engine.settings.connections:
            per_group = counts.setdefault(conn.name, dict.fromkeys(GROUPS, 0))
            for row in await self._connection_problems(conn.name):
                group = groups[row.group]
                group.total += 1
                per_group[row.group] += 1
                sku = row.sku or ""
                if needle and needle not in sku.casefold():
                    continue
                group.matching += 1
                matching[row.group].append((sku, row.connection, row.subject, row))
        for key, group in groups.items():
            # The first rows by SKU: nsmallest keeps only `rows_per_group` of 100,000 unmapped.
            chosen = heapq.nsmallest(rows_per_group, matching[key], key=lambda r: r[:3])
            group.rows = [r[3] for r in chosen]
        return Problems(query, rows_per_group, list(groups.values())), counts

    # ------------------------------------------------------------------ one SKU

    async def _sku_view(self, sku: str) -> SkuView:
        engine = self.sources.engine
        wanted = normalize_sku(sku)
        matches = sorted(
            (v for v in engine.katana_variants().values() if normalize_sku(v.sku) == wanted),
            key=lambda v: v.id,
        )
        stock, read_at, error = (None, None, None)
        if matches:
            stock, read_at, error = await self.stock_cache.read(
                [v.id for v in matches], self._read_stock
            )
        problems = [
            row
            for conn in engine.settings.connections
            for row in await self._connection_problems(conn.name)
            if row.sku is not None and normalize_sku(row.sku) == wanted
        ]
        variants = [await self._sku_variant(v, stock, read_at, error, problems) for v in matches]
        history = [_history_row(e) for e in await engine.store.history(wanted or sku, HISTORY_ROWS)]
        return SkuView(sku=sku, variants=variants, history=history)

    async def _sku_variant(
        self,
        variant: KatanaVariant,
        stock: StockTable | None,
        read_at: datetime | None,
        error: str | None,
        problems: Iterable[ProblemRow],
    ) -> SkuVariant:
        engine = self.sources.engine
        names = {loc.id: loc.name for loc in engine.katana_locations or ()}
        mapped_locations = {location for m in engine.mappings.values() for location in m.locations}
        katana: list[KatanaStock] = []
        if stock is not None:
            for location_id, (in_stock, committed, potential) in sorted(
                stock.quantities_at(variant.id).items()
            ):
                katana.append(
                    _katana_stock(
                        location_id,
                        names.get(location_id, f"location {location_id}"),
                        location_id in mapped_locations,
                        in_stock,
                        committed,
                        potential,
                        is_kit=variant.is_kit,
                    )
                )
        levels: list[ShopifyLevel] = []
        for mapping in engine.mappings.values():
            targets = mapping.table.targets.get(variant.id)
            if not targets:
                continue
            levels.extend(await self._levels(mapping, variant, targets, stock, names))
        kind = "kit" if variant.is_kit else "material" if variant.material_id else "product"
        return SkuVariant(
            katana_variant_id=variant.id,
            sku=variant.sku,
            kind=kind,
            retired=variant.retired,
            stock_read_at=read_at,
            stock_error=error,
            katana=katana,
            levels=levels,
            problems=[
                p
                for p in problems
                if p.subject == f"katana_variant:{variant.id}" or p.group == "rejected"
            ],
        )

    async def _levels(
        self,
        mapping: ConnectionMapping,
        variant: KatanaVariant,
        targets: Iterable[Any],
        stock: StockTable | None,
        names: Mapping[int, str],
    ) -> list[ShopifyLevel]:
        engine = self.sources.engine
        desired: dict[tuple[str, str], int] = {}
        if stock is not None:
            levels, _ = desired_levels(
                stock,
                engine.katana_variants(),
                mapping.table,
                mapping.locations,
                mapping.settings.policy,
                only=[variant.id],
                policies=mapping.policies,
            )
            desired = {level.key: level.quantity for level in levels}
        targets = list(targets)
        snapshot = await engine.store.snapshot(mapping.name, {t.inventory_item_id for t in targets})
        parked = await engine.store.parked(mapping.name)
        # Each Shopify location is fed by at most one Katana location (config validation).
        fed_by = {
            shopify: katana
            for katana, shopifies in mapping.locations.items()
            for shopify in shopifies
        }
        out = []
        for target in targets:
            for location, katana_location in sorted(fed_by.items()):
                key = (target.inventory_item_id, location)
                entry = snapshot.get(key)
                rejected = parked.get(key)
                out.append(
                    ShopifyLevel(
                        connection=mapping.name,
                        shopify_variant_id=target.id,
                        inventory_item_id=target.inventory_item_id,
                        location_id=location,
                        katana_location_id=katana_location,
                        katana_location=names.get(katana_location, f"location {katana_location}"),
                        desired=desired.get(key),
                        last_told=None if entry is None else entry.quantity,
                        in_flight=bool(entry is not None and entry.in_flight),
                        parked_until=None if rejected is None else rejected.retry_at,
                    )
                )
        return out


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _history_row(entry: AuditEntry) -> HistoryRow:
    return HistoryRow(
        at=entry.at,
        connection=entry.connection,
        inventory_item_id=entry.inventory_item_id,
        location_id=entry.location_id,
        from_quantity=entry.from_quantity,
        to_quantity=entry.to_quantity,
        outcome=entry.outcome,
    )
