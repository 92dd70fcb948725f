"""`StateStore`: the store's parts put together on one connection, and the ways to open it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import aiosqlite

from daemon.store.base import _utc_now
from daemon.store.catalogue import CatalogueStore
from daemon.store.outbox import OutboxStore
from daemon.store.records import RecordsStore
from daemon.store.schema import (
    _BUSY_TIMEOUT_SECONDS,
    StateError,
    _check_intact,
    _check_ours,
    _configure,
    _connect_read_only,
    _copy_into,
    _migrate,
    _prepare_path,
)
from daemon.store.snapshot import SnapshotStore


class StateStore(OutboxStore, SnapshotStore, RecordsStore, CatalogueStore):
    """stocksync's state on one aiosqlite connection; safe to call from several tasks."""

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> StateStore:
        """Open (creating or upgrading) the state database at `path`; StateError if unusable."""
        await asyncio.to_thread(_prepare_path, path)
        try:
            db = await aiosqlite.connect(path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state database {path}: {exc}") from exc
        try:
            await _check_ours(db, path)
            await _configure(db, path)
            await _migrate(db, path)
            await _check_intact(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, clock)

    @classmethod
    async def open_read_only(
        cls, path: Path, *, clock: Callable[[], datetime] = _utc_now
    ) -> StateStore:
        """The state database at `path` as it is, for reading only (`history`): never created,
        upgraded or written, and no file appears beside it. StateError if missing or unusable.
        """
        db = await _connect_read_only(path)
        try:
            await _check_ours(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, clock)

    @classmethod
    async def open_copy(cls, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> StateStore:
        """A private in-memory copy of the state at `path`, for commands that must change
        nothing (`plan`, `mappings`, a dry run) yet run the daemon's own code, which records as it
        goes (catalogue cache, problems): that goes to the copy and is gone when it closes.

        The file is read, never created, upgraded or written (an older schema is upgraded in the
        copy). A missing file gives an empty state. The audit log is not copied: it is
        append-only (millions of rows after a year) and only `history` reads it.
        """
        label = Path(f"{path} (in-memory copy)")
        source = None
        if await asyncio.to_thread(path.exists):
            source = await _connect_read_only(path)
            try:
                await _check_ours(source, path)
            finally:
                await source.close()
        # URI filenames on, for the read-only ATTACH below; ":memory:" stays a memory database.
        db = await aiosqlite.connect(":memory:", uri=True, isolation_level=None)
        try:
            if source is not None:
                await _copy_into(db, path)
            await _migrate(db, label)
            await _check_intact(db, label)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, clock)
