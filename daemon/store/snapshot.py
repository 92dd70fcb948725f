"""What Shopify was last told: the snapshot, push requests, read-backs, parked levels, audit.

Levels are marked in flight under a recorded request before it is sent and settled only by that
request's own answer (PRODUCT.md §3); levels Shopify rejected are parked; every answer is in the
audit log (`stocksync history`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from daemon.domain.models import LevelKey, PlannedPush, PushRequest, PushResult, SnapshotEntry
from daemon.store.base import StoreBase, _from_iso, _iso

# Inventory items per keyed snapshot query (well under SQLite's variable limit).
SNAPSHOT_CHUNK = 500

_MARK_IN_FLIGHT: Final = """
    INSERT INTO snapshot (connection, inventory_item_id, location_id, quantity, in_flight,
                          updated_at, request_id)
    VALUES (?, ?, ?, NULL, 1, ?, ?)
    ON CONFLICT (connection, inventory_item_id, location_id) DO UPDATE SET
        in_flight = 1, updated_at = excluded.updated_at, request_id = excluded.request_id"""
# Settling an answer that belongs to no recorded request (an activation).
_SETTLE: Final = """
    INSERT INTO snapshot (connection, inventory_item_id, location_id, quantity, in_flight,
                          updated_at)
    VALUES (?, ?, ?, ?, 0, ?)
    ON CONFLICT (connection, inventory_item_id, location_id) DO UPDATE SET
        quantity = excluded.quantity, in_flight = 0, request_id = NULL,
        updated_at = excluded.updated_at"""
_RELEASE: Final = """
    UPDATE snapshot SET in_flight = 0, request_id = NULL, updated_at = ?
    WHERE connection = ? AND inventory_item_id = ? AND location_id = ?"""
# Settling the answer to request `request_id`: only the levels still in flight under it.
_SETTLE_OWN: Final = """
    UPDATE snapshot SET quantity = ?4, in_flight = 0, request_id = NULL, updated_at = ?5
    WHERE connection = ?1 AND inventory_item_id = ?2 AND location_id = ?3 AND request_id = ?6"""
_RELEASE_OWN: Final = """
    UPDATE snapshot SET in_flight = 0, request_id = NULL, updated_at = ?
    WHERE connection = ? AND inventory_item_id = ? AND location_id = ? AND request_id = ?"""
_UNPARK: Final = """
    DELETE FROM parked WHERE connection = ? AND inventory_item_id = ? AND location_id = ?"""
_AUDIT: Final = """
    INSERT INTO audit (at, run_id, connection, sku, katana_variant_id, inventory_item_id,
                       location_id, from_quantity, to_quantity, outcome)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One pushed (item, location) and what Shopify made of it."""

    at: datetime
    run_id: str
    connection: str
    sku: str | None
    katana_variant_id: int
    inventory_item_id: str
    location_id: str
    from_quantity: int | None
    to_quantity: int
    outcome: str


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A recorded push request whose answer was never recorded (the process died, or the
    answer was lost): re-sent unchanged under its key before its levels are planned again."""

    id: int
    request: PushRequest
    sent_at: datetime
    lost: bool


@dataclass(frozen=True, slots=True)
class Parked:
    """A level Shopify rejected: not planned again at the same quantity before `retry_at`."""

    katana_variant_id: int
    quantity: int
    attempts: int
    retry_at: datetime


def _request_text(request: PushRequest) -> tuple[str, str]:
    """A request's variables and pushes as stored (JSON): exactly what is re-sent."""
    return (
        json.dumps(request.variables, separators=(",", ":")),
        json.dumps([list(push) for push in request.pushes], separators=(",", ":")),
    )


class _SharedEntries(dict[tuple[int | None, int], SnapshotEntry]):
    """One immutable SnapshotEntry per distinct (quantity, in_flight), not one per level."""

    def __missing__(self, key: tuple[int | None, int]) -> SnapshotEntry:
        entry = self[key] = SnapshotEntry(key[0], bool(key[1]))
        return entry


def _audit_entry(row: Sequence[Any]) -> AuditEntry:
    at, run_id, connection, sku, variant, item, location, from_quantity, to_quantity, outcome = row
    return AuditEntry(
        at=_from_iso(at),
        run_id=run_id,
        connection=connection,
        sku=sku,
        katana_variant_id=int(variant),
        inventory_item_id=item,
        location_id=location,
        from_quantity=from_quantity,
        to_quantity=int(to_quantity),
        outcome=outcome,
    )


class SnapshotStore(StoreBase):
    """The snapshot, push requests and their read-backs, parked levels, the audit log."""

    # -- snapshot of what Shopify was last told ----------------------------------------------

    async def snapshot(
        self, connection: str, items: Collection[str] | None = None
    ) -> dict[LevelKey, SnapshotEntry]:
        """The levels stocksync last set on `connection`: all, or those of these inventory items.

        A delta cycle asks for the few items it touches: loading all 300k pairs of a large shop
        every 30 s would cost a second of CPU for nothing.
        """
        base = (
            "SELECT inventory_item_id, location_id, quantity, in_flight FROM snapshot "
            "WHERE connection = ?"
        )
        if items is None:
            rows = await self._fetch(base, (connection,))
        else:
            wanted = sorted(set(items))
            rows = []
            for start in range(0, len(wanted), SNAPSHOT_CHUNK):
                chunk = wanted[start : start + SNAPSHOT_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += await self._fetch(
                    f"{base} AND inventory_item_id IN ({marks})", (connection, *chunk)
                )
        entries = _SharedEntries()
        return {
            (item, location): entries[quantity, in_flight]
            for item, location, quantity, in_flight in rows
        }

    async def mark_in_flight(self, connection: str, keys: Iterable[LevelKey]) -> None:
        """Mark levels about to be sent as unknown; committed before this returns."""
        now = _iso(self._clock())
        rows = [(connection, item, location, now, None) for item, location in keys]
        if not rows:
            return
        async with self._write() as db:
            await db.executemany(_MARK_IN_FLIGHT, rows)

    async def record_pushed(
        self,
        connection: str,
        run_id: str,
        results: Sequence[PushResult],
        *,
        request_id: int | None = None,
        verify_after: datetime | None = None,
    ) -> None:
        """Settle the snapshot and write the audit log for Shopify's answers, in one transaction.

        With `request_id` (the answer to a recorded request), only levels still in flight under
        that request are settled, whatever else its pushes name: an in-flight mark is cleared
        by the outcome of the request that set it, never by a newer one's. Levels of the request
        with no result here are released as unchanged, the request is forgotten, and with
        `verify_after` (an attempt's answer was lost) all its levels are read back then.
        """
        now = _iso(self._clock())
        own = request_id is not None
        # The request's id ends each row only where the statement compares it.
        mine: tuple[object, ...] = (request_id,) if own else ()
        settle: list[tuple[object, ...]] = []
        release: list[tuple[object, ...]] = []
        applied: list[tuple[str, str, str]] = []
        audit: list[tuple[object, ...]] = []
        for result in results:
            push = result.push
            item, location = push.inventory_item_id, push.location_id
            if result.status == "applied":
                settle.append((connection, item, location, push.quantity, now, *mine))
                applied.append((connection, item, location))
                outcome = "applied"
            elif result.status == "stale":
                # Shopify holds `current`, not what we sent; the engine overwrites it next.
                settle.append((connection, item, location, result.current, now, *mine))
                outcome = "stale"
            elif result.status == "rejected":
                # Shopify changed nothing: the last known quantity is still right.
                release.append((now, connection, item, location, *mine))
                outcome = result.code or "rejected"
            else:
                raise ValueError(f"unknown push status {result.status!r}")
            audit.append(
                (
                    now,
                    run_id,
                    connection,
                    push.sku,
                    push.katana_variant_id,
                    item,
                    location,
                    push.change_from,
                    push.quantity,
                    outcome,
                )
            )
        if not audit and not own:
            return
        async with self._write() as db:
            if own and verify_after is not None:
                await db.execute(
                    "UPDATE snapshot SET verify_after = ? WHERE connection = ? AND request_id = ?",
                    (_iso(verify_after), connection, request_id),
                )
            await db.executemany(_SETTLE_OWN if own else _SETTLE, settle)
            await db.executemany(_RELEASE_OWN if own else _RELEASE, release)
            await db.executemany(_AUDIT, audit)
            await db.executemany(_UNPARK, applied)
            if own:
                await db.execute(
                    "UPDATE snapshot SET in_flight = 0, request_id = NULL, updated_at = ? "
                    "WHERE connection = ? AND request_id = ?",
                    (now, connection, request_id),
                )
                await db.execute("DELETE FROM push_requests WHERE id = ?", (request_id,))

    # -- push requests whose answer is not recorded yet (PRODUCT.md §3) ----------------------

    async def begin_request(self, connection: str, request: PushRequest) -> int:
        """Record a request about to be sent and mark its levels in flight under it; its id."""
        now = _iso(self._clock())
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO push_requests (connection, idempotency_key, variables, pushes, "
                "sent_at) VALUES (?, ?, ?, ?, ?)",
                (connection, request.key, *_request_text(request), now),
            )
            request_id = cursor.lastrowid
            await cursor.close()
            assert request_id is not None
            await db.executemany(
                _MARK_IN_FLIGHT,
                [
                    (connection, p.inventory_item_id, p.location_id, now, request_id)
                    for p in request.pushes
                ],
            )
        return request_id

    async def next_attempt(self, request_id: int, request: PushRequest) -> None:
        """Record what the next attempt of a request sends (a new key, or fewer levels)."""
        async with self._write() as db:
            await db.execute(
                "UPDATE push_requests SET idempotency_key = ?, variables = ?, pushes = ?, "
                "sent_at = ? WHERE id = ?",
                (request.key, *_request_text(request), _iso(self._clock()), request_id),
            )

    async def request_lost(self, request_id: int) -> None:
        """An attempt of this request got no answer: Shopify may still apply it later."""
        async with self._write() as db:
            await db.execute("UPDATE push_requests SET lost = 1 WHERE id = ?", (request_id,))

    async def pending_requests(self, connection: str) -> list[PendingRequest]:
        """Requests of `connection` whose answer was never recorded, oldest first."""
        rows = await self._fetch(
            "SELECT id, idempotency_key, variables, pushes, sent_at, lost FROM push_requests "
            "WHERE connection = ? ORDER BY id",
            (connection,),
        )
        return [
            PendingRequest(
                id=request_id,
                request=PushRequest(
                    key=key,
                    variables=json.loads(variables),
                    pushes=tuple(PlannedPush(*p) for p in json.loads(pushes)),
                ),
                sent_at=_from_iso(sent_at),
                lost=bool(lost),
            )
            for request_id, key, variables, pushes, sent_at, lost in rows
        ]

    async def release_orphans(self, connection: str, verify_after: datetime) -> int:
        """Levels in flight under no recorded request (a state from before requests were
        recorded): released, and read back at `verify_after`. Returns how many."""
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE snapshot SET in_flight = 0, request_id = NULL, verify_after = ? "
                "WHERE connection = ? AND in_flight = 1 AND (request_id IS NULL OR request_id "
                "NOT IN (SELECT id FROM push_requests))",
                (_iso(verify_after), connection),
            )
            count = cursor.rowcount
            await cursor.close()
        return count

    async def due_verifications(self, connection: str, now: datetime) -> list[LevelKey]:
        """Settled levels whose lost request can no longer land: to be read back from Shopify."""
        rows = await self._fetch(
            "SELECT inventory_item_id, location_id FROM snapshot WHERE connection = ? "
            "AND in_flight = 0 AND verify_after IS NOT NULL AND verify_after <= ?",
            (connection, _iso(now)),
        )
        return [(str(item), str(location)) for item, location in rows]

    async def record_verified(self, connection: str, actual: Mapping[LevelKey, int | None]) -> None:
        """What Shopify shows now at levels read back (None: no longer stocked there)."""
        now = _iso(self._clock())
        async with self._write() as db:
            await db.executemany(
                "UPDATE snapshot SET quantity = COALESCE(?, quantity), verify_after = NULL, "
                "updated_at = ? WHERE connection = ? AND inventory_item_id = ? "
                "AND location_id = ? AND in_flight = 0",
                [(q, now, connection, item, loc) for (item, loc), q in actual.items()],
            )

    # -- levels Shopify rejected ---------------------------------------------------------------

    async def park(
        self, connection: str, rejected: Iterable[PlannedPush], backoff: Callable[[int], float]
    ) -> None:
        """Park rejected levels until `backoff(attempts)` seconds from now (attempts from 1)."""
        now = self._clock()
        pushes = {p.key: p for p in rejected}
        if not pushes:
            return
        async with self._write() as db:
            attempts: dict[LevelKey, int] = {}
            for item, location, count in await db.execute_fetchall(
                "SELECT inventory_item_id, location_id, attempts FROM parked WHERE connection = ?",
                (connection,),
            ):
                attempts[(item, location)] = count
            rows = []
            for key, push in pushes.items():
                tries = attempts.get(key, 0) + 1
                retry_at = now + timedelta(seconds=backoff(tries))
                rows.append(
                    (connection, *key, push.katana_variant_id, push.quantity, tries, _iso(retry_at))
                )
            await db.executemany(
                "INSERT INTO parked (connection, inventory_item_id, location_id, "
                "katana_variant_id, quantity, attempts, retry_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (connection, inventory_item_id, location_id) DO UPDATE SET "
                "katana_variant_id = excluded.katana_variant_id, quantity = excluded.quantity, "
                "attempts = excluded.attempts, retry_at = excluded.retry_at",
                rows,
            )

    async def parked(self, connection: str) -> dict[LevelKey, Parked]:
        """The parked levels of `connection`."""
        rows = await self._fetch(
            "SELECT inventory_item_id, location_id, katana_variant_id, quantity, attempts, "
            "retry_at FROM parked WHERE connection = ?",
            (connection,),
        )
        return {
            (item, location): Parked(variant, quantity, attempts, _from_iso(retry_at))
            for item, location, variant, quantity, attempts, retry_at in rows
        }

    async def unpark(self, connection: str, keys: Iterable[LevelKey]) -> None:
        """Forget parked levels (Katana moved on, or they are no longer mapped)."""
        rows = [(connection, item, location) for item, location in keys]
        if rows:
            async with self._write() as db:
                await db.executemany(_UNPARK, rows)

    async def retry_parked_now(self, connection: str | None = None) -> None:
        """Make every parked level (of `connection`, or all) due at once: a reload, a fresh
        Shopify catalogue, may have fixed what Shopify rejected."""
        now = _iso(self._clock())
        async with self._write() as db:
            if connection is None:
                await db.execute("UPDATE parked SET retry_at = ?", (now,))
            else:
                await db.execute(
                    "UPDATE parked SET retry_at = ? WHERE connection = ?", (now, connection)
                )

    async def history(
        self,
        sku: str,
        limit: int = 100,
        *,
        connection: str | None = None,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        """The latest pushes of `sku`, newest first: of one connection, at or after `since`."""
        where, params = ["sku = ?"], [sku]
        if connection is not None:
            where.append("connection = ?")
            params.append(connection)
        if since is not None:
            where.append("at >= ?")
            params.append(_iso(since))
        rows = await self._fetch(
            "SELECT at, run_id, connection, sku, katana_variant_id, inventory_item_id, "
            "location_id, from_quantity, to_quantity, outcome FROM audit "
            f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [_audit_entry(row) for row in rows]
