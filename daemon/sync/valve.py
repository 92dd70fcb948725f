"""The safety valve's holds: a connection whose cycle would take too many levels to 0 at once is
held (pushes stop, an error is logged) until an operator releases it or a reload raises its limit.
"""

from __future__ import annotations

import shlex

import structlog

from daemon.config import Settings
from daemon.domain.plan import safety_valve
from daemon.sync.context import SyncContext
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.report import ConnectionOutcome

log = structlog.get_logger(__name__)


class SafetyValve:
    """Judges each connection's plan; keeps the holds in the store and the metrics in step."""

    def __init__(self, ctx: SyncContext) -> None:
        self._ctx = ctx
        # Connections this process saw held; one that leaves the store's hold table was
        # released by an operator, and its next push skips the valve once.
        self._held: set[str] = set()
        self._released: set[str] = set()
        self._loaded = False

    async def sync(self) -> None:
        """Notice holds released by an operator (`stocksync release-hold`) since the last look."""
        ctx = self._ctx
        holds = await ctx.store.holds()
        if not self._loaded:
            self._held |= set(holds)
            self._loaded = True
        for name in list(self._held):
            if name not in holds:
                self._held.discard(name)
                self._released.add(name)
                log.warning("safety_valve_released", connection=name)
        ctx.metrics.held_connections.set(len(holds))
        for conn in ctx.settings.connections:
            ctx.metrics.connection_held.labels(connection=conn.name).set(int(conn.name in holds))

    async def allows(
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

    async def release_raised_limits(self, old: Settings, new: Settings) -> None:
        """A reload with a higher safety-valve limit releases that connection's hold."""
        store = self._ctx.store
        holds = await store.holds()
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
                await store.release_hold(conn.name)
                self._held.discard(conn.name)
                log.warning("safety_valve_released_by_reload", connection=conn.name)

    async def _hold(self, name: str, drops: int, mapped: int) -> None:
        ctx = self._ctx
        reason = (
            f"cycle would set {drops} of {mapped} mapped levels from above 0 to 0; "
            f"run `stocksync release-hold -c {shlex.quote(str(ctx.settings.source))} {name}` "
            "if this is real"
        )
        await ctx.store.hold(name, reason)
        if name not in self._held:
            log.error("safety_valve_hold", connection=name, drops=drops, mapped=mapped)
        self._held.add(name)
        ctx.metrics.connection_held.labels(connection=name).set(1)
        ctx.metrics.held_connections.set(len(await ctx.store.holds()))
