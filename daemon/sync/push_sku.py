"""Push one SKU now (`stocksync push SKU`): recompute its levels and push them at once, through
the same path as every cycle (`LevelSync.push`, `Pusher`: recorded requests, compare-and-set),
so a crash mid-push is exactly as safe as in the daemon.

Per connection: open pushes are settled first (as a cycle does: a request whose answer was lost
is re-sent before anything overtakes it), Katana's stock of the SKU's variants is read, Shopify's
current levels are read ("before"), and every level is set to Katana's value compared against
that read (a level Shopify changed meanwhile is re-read and overwritten, as in a cycle). The
caller holds the state file's writer lock (daemon/statelock.py): this never runs beside a daemon.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from daemon.config import ConnectionSettings
from daemon.domain.mapping import normalize_sku
from daemon.domain.models import DesiredLevel, KatanaVariant, LevelKey, SnapshotEntry
from daemon.domain.plan import desired_levels
from daemon.shopify.client import ShopifyError
from daemon.sync.engine import Engine
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.pusher import PushReport
from daemon.sync.report import ConnectionOutcome

log = structlog.get_logger(__name__)


UNRESOLVED = "unresolved (outcome unknown: the next cycle re-sends it)"


class UnknownSku(LookupError):
    """No Katana variant has this SKU (a usage error: exit 2)."""


@dataclass(frozen=True)
class LevelChange:
    """One level of the SKU: what Shopify showed, and what it was set to."""

    connection: str
    sku: str | None
    katana_variant_id: int
    shopify_variant_id: str
    shopify_sku: str | None
    inventory_item_id: str
    location_id: str
    before: int | None  # Shopify's available, read first (None: not stocked there)
    after: int | None  # what Shopify holds now by this push (None: not set)
    result: str  # applied | unchanged | rejected: CODE | unresolved | not pushed: why
    rule: str = ""  # a pool, a pack size, a buffer of its own


@dataclass
class SkuPushReport:
    """What `push_sku` did, per level, and why a connection pushed nothing."""

    run_id: str
    changes: list[LevelChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # nothing to push here, and why
    errors: list[str] = field(default_factory=list)  # could not complete

    @property
    def complete(self) -> bool:
        """Every level of the SKU was settled: set, or rejected by Shopify (reported)."""
        return (
            not self.errors
            and bool(self.changes)
            and all(
                c.result != UNRESOLVED and not c.result.startswith("not pushed")
                for c in self.changes
            )
        )


async def push_sku(engine: Engine, sku: str, connection: str | None = None) -> SkuPushReport:
    """Recompute and push the levels of every Katana variant with `sku`, now.

    UnknownConnection for an unknown `connection`, UnknownSku when no Katana variant has the
    SKU; KatanaError / ShopifyError when an API cannot be read at all.
    """
    report = SkuPushReport(run_id=uuid.uuid4().hex[:12])
    settings = engine.settings
    chosen = (
        [settings.connection(connection)] if connection is not None else list(settings.connections)
    )
    wanted = normalize_sku(sku)
    with structlog.contextvars.bound_contextvars(run_id=report.run_id):
        await engine.keeper.prepare([c.name for c in chosen if c.sync_inventory])
        variants = [
            v
            for v in engine.katana_variants().values()
            if wanted is not None and normalize_sku(v.sku) == wanted
        ]
        if not variants:
            raise UnknownSku(f"no Katana variant has the SKU {sku!r}")
        for conn in chosen:
            await _push_connection(engine, conn, variants, report)
    log.info(
        "sku_pushed",
        sku=wanted,
        levels=len(report.changes),
        applied=sum(1 for c in report.changes if c.result in ("applied", "unchanged")),
        errors=len(report.errors),
    )
    return report


async def _push_connection(
    engine: Engine,
    conn: ConnectionSettings,
    variants: Sequence[KatanaVariant],
    report: SkuPushReport,
) -> None:
    name = conn.name
    if not conn.sync_inventory:
        report.notes.append(f"{name}: sync_inventory is off: nothing pushed")
        return
    error = engine.keeper.location_errors.get(name)
    mapping = engine.mappings.get(name)
    if error is not None or mapping is None:
        report.errors.append(f"{name}: locations: {error or 'the connection is not mapped'}")
        return
    table = mapping.table
    ids = [v.id for v in variants if v.id in table.targets]
    for v in variants:
        if v.id not in table.targets:
            report.notes.append(f"{name}: Katana variant {v.id}: {_why_not(mapping, v)}")
    if not ids:
        return
    client = engine.shopify[name]
    with structlog.contextvars.bound_contextvars(connection=name):
        try:
            # As a cycle does first: a request whose answer was lost is re-sent before any
            # newer push of its levels.
            settled = await engine.recovery.settle(mapping, client, report.run_id)
        except ShopifyError as exc:
            report.errors.append(f"{name}: open pushes not settled: {exc}")
            return
        report.errors.extend(f"{name}: {e}" for e in settled.errors)
        stock = await engine.katana.inventory(ids)
        desired, problems = desired_levels(
            stock,
            engine.katana_variants(),
            table,
            mapping.locations,
            conn.policy,
            only=ids,
            policies=mapping.policies,
        )
        items = sorted({t.inventory_item_id for i in ids for t in table.targets[i]})
        locations = sorted({gid for gids in mapping.locations.values() for gid in gids})
        before = await client.available_levels(items, locations)

        async def shopify_now(
            _mapping: ConnectionMapping, _levels: Sequence[DesiredLevel]
        ) -> Mapping[LevelKey, SnapshotEntry]:
            # Read just now: the compare value of every set (Shopify's, not the snapshot's).
            return {k: SnapshotEntry(quantity=q) for k, q in before.items() if q is not None}

        outcome = ConnectionOutcome(name=name)
        reports: list[PushReport] = []
        unresolved = await engine.levels.push(
            mapping,
            stock,
            ids,
            run_id=report.run_id,
            outcome=outcome,
            force=True,
            against=shopify_now,
            reports=reports,
        )
    report.errors.extend(f"{name}: {e}" for e in outcome.errors)
    applied = {r.push.key: r for rep in reports for r in rep.applied}
    rejected = {r.push.key: r for rep in reports for r in rep.rejected}
    wanted = {d.key: d.quantity for d in desired}
    why = {p.katana_variant_id: p.detail for p in problems}
    sku_of = {v.id: normalize_sku(v.sku) for v in variants}
    names = {loc.id: loc.name for loc in engine.keeper.katana_locations or ()}
    for variant_id in ids:
        for target in table.targets[variant_id]:
            for location in locations:
                key = (target.inventory_item_id, location)
                was = before.get(key)
                after: int | None = None
                if unresolved is None:
                    result = "not pushed: held by the safety valve (see `stocksync plan`)"
                elif key in applied:
                    after = applied[key].push.quantity
                    result = "unchanged" if after == was else "applied"
                elif key in rejected:
                    result = f"rejected: {rejected[key].code or 'rejected'}"
                elif variant_id in why:
                    result = f"not pushed: {why[variant_id]}"
                elif key not in wanted:
                    result = "not pushed: no level for it here"
                else:
                    result = UNRESOLVED
                report.changes.append(
                    LevelChange(
                        connection=name,
                        sku=sku_of[variant_id],
                        katana_variant_id=variant_id,
                        shopify_variant_id=target.id,
                        shopify_sku=target.sku,
                        inventory_item_id=target.inventory_item_id,
                        location_id=location,
                        before=was,
                        after=after,
                        result=result,
                        rule=mapping.rule_of(target.inventory_item_id, location, names),
                    )
                )


def _why_not(mapping: ConnectionMapping, variant: KatanaVariant) -> str:
    """Why a Katana variant with the SKU is not pushed to this connection."""
    table = mapping.table
    if variant.retired:
        return "deleted or archived in Katana: its Shopify levels are left as last pushed"
    if variant.id in table.filtered:
        return f"left out by the sync filters ({table.filtered[variant.id]})"
    if variant.id in table.shadowed:
        return f"Katana variant {table.shadowed[variant.id]} wins this SKU"
    return "no tracked Shopify variant has this SKU (nor a variant map entry)"
