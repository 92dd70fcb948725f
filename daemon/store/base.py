"""What every part of the state store shares: the connection, its lock, the clock, time text.

`StoreBase` holds them; each table group's part (outbox, snapshot, records, catalogue) extends it
and `StateStore` puts the parts together.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from daemon.store.schema import _transaction


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    # Fixed-width UTC text: exact to the microsecond, and text order is time order (MIN works).
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} given to the state store; use UTC")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _maybe_iso(at: datetime | None) -> str | None:
    return None if at is None else _iso(at)


def _maybe_from_iso(text: str | None) -> datetime | None:
    return None if text is None else _from_iso(text)


class StoreBase:
    """One aiosqlite connection shared by every part of the store, and the lock that guards it."""

    def __init__(self, db: aiosqlite.Connection, path: Path, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._path = path
        self._clock = clock
        # One connection is shared by every task: the lock keeps one task's BEGIN ... COMMIT from
        # interleaving with another's statements, and readers from seeing half a transaction.
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"StateStore({str(self._path)!r})"

    async def close(self) -> None:
        """Close the database after any running transaction; idempotent."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with suppress(sqlite3.Error):
                await self._db.execute("PRAGMA optimize")
            await self._db.close()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock, _transaction(self._db) as db:
            yield db

    async def _fetch(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))
