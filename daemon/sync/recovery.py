"""Before a connection's levels are planned: settle what earlier pushes left open.

PRODUCT.md §3. A push whose answer never arrived leaves Shopify's value unknown, and the request
itself may still be applied later, after newer pushes. So, each cycle and per connection:

1. Requests recorded but never answered are re-sent unchanged under their keys; their answers
   settle their levels (until then those levels are not planned again).
2. Levels whose request lost an answer are read back from Shopify once that request can no
   longer land (`late_push_seconds` after it), and made dirty where Shopify shows something
   else, so the plan corrects them.
3. Levels Shopify rejected whose pause is over are made dirty, to be tried again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from daemon.metrics import Metrics
from daemon.shopify.client import ShopifyClient
from daemon.store import StateStore
from daemon.sync.mappings import ConnectionMapping
from daemon.sync.pusher import Pusher, PushReport

log = structlog.get_logger(__name__)


class Recovery:
    """Settles one connection's open pushes at the start of a cycle."""

    def __init__(
        self, store: StateStore, pusher: Pusher, metrics: Metrics, now: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._pusher = pusher
        self._metrics = metrics
        self._now = now

    async def settle(
        self, mapping: ConnectionMapping, client: ShopifyClient, run_id: str
    ) -> PushReport:
        """Re-send, read back and re-mark as above; returns what the re-sends did.

        Raises ShopifyError when Shopify cannot be read: the levels stay as they are, the
        connection's cycle fails, and the next cycle tries again.
        """
        conn, name = mapping.settings, mapping.name
        now = self._now()
        orphans = await self._store.release_orphans(
            name, now + timedelta(seconds=conn.late_push_seconds)
        )
        if orphans:
            # Marks from before requests were recorded: their request is unknown, so they are
            # compared (never set blindly) and read back once nothing can land any more.
            log.info("in_flight_levels_released", connection=name, levels=orphans)
        pending = await self._store.pending_requests(name)
        report = PushReport()
        if pending:
            report = await self._pusher.resend(conn, client, pending, run_id)
        dirty = await self._read_back(mapping, client, now)
        dirty |= await self._parked_due(mapping, now)
        if dirty:
            await self._store.record_changes(dict.fromkeys(dirty, now), {}, [name])
        return report

    async def _read_back(
        self, mapping: ConnectionMapping, client: ShopifyClient, now: datetime
    ) -> set[int]:
        """Read back the levels whose lost request can no longer land; the variants to redo."""
        name = mapping.name
        due = await self._store.due_verifications(name, now)
        if not due:
            return set()
        items = {item for item, _ in due}
        actual = await client.available_levels(items, {location for _, location in due})
        known = await self._store.snapshot(name, items)
        wrong = {
            key
            for key in due
            if actual.get(key) is not None
            and (key not in known or known[key].quantity != actual[key])
        }
        await self._store.record_verified(name, {key: actual.get(key) for key in due})
        if not wrong:
            return set()
        log.warning(
            "late_push_corrected",
            connection=name,
            levels=len(wrong),
            detail="Shopify applied a push after newer ones; the levels are set again",
        )
        self._metrics.late_push_corrections.labels(connection=name).inc(len(wrong))
        return _variants_feeding(mapping, {item for item, _ in wrong})

    async def _parked_due(self, mapping: ConnectionMapping, now: datetime) -> set[int]:
        """Variants with a rejected level whose pause is over (no longer mapped: forgotten)."""
        parked = await self._store.parked(mapping.name)
        due = {key: p for key, p in parked.items() if p.retry_at <= now}
        targets = mapping.table.targets
        await self._store.unpark(
            mapping.name, [key for key, p in due.items() if p.katana_variant_id not in targets]
        )
        return {p.katana_variant_id for p in due.values() if p.katana_variant_id in targets}


def _variants_feeding(mapping: ConnectionMapping, items: set[str]) -> set[int]:
    """The Katana variants that feed these Shopify inventory items."""
    return {
        katana_id
        for katana_id, targets in mapping.table.targets.items()
        if any(t.inventory_item_id in items for t in targets)
    }
