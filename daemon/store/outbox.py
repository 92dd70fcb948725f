"""The outbox: delta cursors, dirty marks, remembered row variants, full-sync markers.

A cursor advances only in the transaction that records the variants it made dirty, so a crash
can never skip a change; a mark cleared as of its seq never removes a newer re-mark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from daemon.store.base import StoreBase, _from_iso, _iso, _maybe_iso
from daemon.store.schema import _scalar

# Document rows per remembered-variant lookup (two variables each).
ROW_CHUNK = 400

_UPSERT_DIRTY: Final = """
    INSERT INTO dirty (connection, variant_id, changed_at, seq) VALUES (?, ?, ?, ?)
    ON CONFLICT (connection, variant_id) DO UPDATE SET
        changed_at = MIN(dirty.changed_at, excluded.changed_at),
        seq = excluded.seq"""
_SET_CURSOR: Final = """
    INSERT INTO cursors (source, at) VALUES (?, ?)
    ON CONFLICT (source) DO UPDATE SET at = excluded.at"""


@dataclass(frozen=True, slots=True)
class DirtyMark:
    """Why and since when a variant waits in the outbox; `seq` orders re-marks."""

    changed_at: datetime
    seq: int


class OutboxStore(StoreBase):
    """Cursors and the dirty set (the outbox), row variants, and when each connection synced."""

    # -- delta cursors and the outbox --------------------------------------------------------

    async def cursors(self) -> dict[str, datetime]:
        """The delta cursor of every Katana source polled so far."""
        rows = await self._fetch("SELECT source, at FROM cursors")
        return {str(source): _from_iso(at) for source, at in rows}

    async def record_changes(
        self,
        dirty: Mapping[int, datetime],
        cursors: Mapping[str, datetime],
        connections: Sequence[str],
        *,
        rows: Mapping[tuple[str, str], int | None] | None = None,
    ) -> None:
        """Mark variants dirty for every connection and advance cursors, in one transaction.

        `rows` updates the remembered variant of document rows ((source, row id) -> variant id;
        None forgets a deleted row) in the same transaction, so a crash can never leave a row
        remembered at a variant whose mark was lost.
        """
        if isinstance(connections, str):
            raise TypeError("connections must be a sequence of names, not one string")
        changed = [(int(variant), _iso(at)) for variant, at in dirty.items()]
        marks = [(name, variant, at) for name in connections for variant, at in changed]
        cursor_rows = [(source, _iso(at)) for source, at in cursors.items()]
        rows = rows or {}
        kept = [(src, rid, int(v)) for (src, rid), v in rows.items() if v is not None]
        forgotten = [(src, rid) for (src, rid), v in rows.items() if v is None]
        if not marks and not cursor_rows and not rows:
            return
        async with self._write() as db:
            if marks:
                last = int(await _scalar(db, "SELECT last_seq FROM dirty_sequence WHERE id = 1"))
                await db.executemany(
                    _UPSERT_DIRTY,
                    [(name, v, at, last + n) for n, (name, v, at) in enumerate(marks, start=1)],
                )
                await db.execute(
                    "UPDATE dirty_sequence SET last_seq = ? WHERE id = 1", (last + len(marks),)
                )
            await db.executemany(
                "INSERT OR REPLACE INTO row_variants (source, row_id, variant_id) VALUES (?, ?, ?)",
                kept,
            )
            await db.executemany(
                "DELETE FROM row_variants WHERE source = ? AND row_id = ?", forgotten
            )
            await db.executemany(_SET_CURSOR, cursor_rows)

    async def row_variants(self, rows: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The remembered variant of each of these (source, row id); unknown rows are absent."""
        wanted = list(dict.fromkeys(rows))
        found: dict[tuple[str, str], int] = {}
        async with self._lock:
            for start in range(0, len(wanted), ROW_CHUNK):
                chunk = wanted[start : start + ROW_CHUNK]
                # Row values, not a join on a temp table: a cycle asks about a handful of rows.
                where = " OR ".join(["(source = ? AND row_id = ?)"] * len(chunk))
                params = [part for key in chunk for part in key]
                for source, row_id, variant_id in await self._db.execute_fetchall(
                    f"SELECT source, row_id, variant_id FROM row_variants WHERE {where}", params
                ):
                    found[(str(source), str(row_id))] = int(variant_id)
        return found

    async def dirty(self, connection: str) -> dict[int, DirtyMark]:
        """Variants waiting to be pushed to `connection`."""
        rows = await self._fetch(
            "SELECT variant_id, changed_at, seq FROM dirty WHERE connection = ?", (connection,)
        )
        return {int(v): DirtyMark(_from_iso(at), int(seq)) for v, at, seq in rows}

    async def clear_dirty(self, connection: str, marks: Mapping[int, int]) -> None:
        """Remove variants pushed as of `marks` ({variant: seq}); later re-marks stay dirty."""
        if not marks:
            return
        async with self._write() as db:
            await db.executemany(
                "DELETE FROM dirty WHERE connection = ? AND variant_id = ? AND seq <= ?",
                [(connection, variant, seq) for variant, seq in marks.items()],
            )

    async def dirty_count(self, connection: str | None = None) -> int:
        """Distinct variants dirty in any connection, or in `connection`."""
        if connection is None:
            rows = await self._fetch("SELECT count(DISTINCT variant_id) FROM dirty")
        else:
            rows = await self._fetch(
                "SELECT count(*) FROM dirty WHERE connection = ?", (connection,)
            )
        return int(rows[0][0])

    async def connection_synced(self, connection: str) -> datetime | None:
        """When `connection` last completed a full sync; None = it needs one."""
        rows = await self._fetch("SELECT synced_at FROM connections WHERE name = ?", (connection,))
        return _from_iso(rows[0][0]) if rows else None

    async def set_connection_synced(self, connection: str, at: datetime | None) -> None:
        """Record a full sync of `connection` at `at`, or None to require a new one."""
        synced_at = _maybe_iso(at)
        async with self._write() as db:
            if synced_at is None:
                await db.execute("DELETE FROM connections WHERE name = ?", (connection,))
            else:
                await db.execute(
                    "INSERT INTO connections (name, synced_at) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET synced_at = excluded.synced_at",
                    (connection, synced_at),
                )
