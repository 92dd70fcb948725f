"""The state file itself: creating it private, refusing what is not ours, upgrading, copying.

A file that is not SQLite, corrupt, another application's, newer than this stocksync, or damaged
for stocksync (a table dropped, a time edited by hand) is refused with a clear message and left
untouched. Also the transaction every write runs in, and the opening of a read-only view or an
in-memory copy.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import aiosqlite
import structlog

from daemon.store.migrations import MIGRATIONS, SCHEMA_VERSION

log = structlog.get_logger(__name__)

# PRAGMA application_id marks the file as stocksync's ("STKS"), so a foreign database is refused.
APPLICATION_ID: Final = 0x53544B53
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_BUSY_TIMEOUT_SECONDS: Final = 10.0


class StateError(Exception):
    """The state database cannot be used as is (not ours, corrupt, newer); the file is untouched."""


def _advice(path: Path) -> str:
    return (
        f"restore {path} from a backup, or point daemon.state_path at a new file "
        "(stocksync then starts with a full sync)"
    )


def _prepare_path(path: Path) -> None:
    """Create the parent folder (0700) and refuse an existing file that is not SQLite."""
    parent = path.parent
    try:
        parent.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateError(f"cannot create the state folder {parent}: {exc.strerror}") from exc
    else:
        parent.chmod(0o700)  # mkdir's mode is filtered by the umask
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        _create_private(path)
        return
    except OSError as exc:
        raise StateError(f"cannot read the state database {path}: {exc.strerror}") from exc
    # An empty file is what `touch` leaves: SQLite treats it as a new database.
    if header and header != _SQLITE_MAGIC:
        raise StateError(f"{path} is not an SQLite database; {_advice(path)}")


def _create_private(path: Path) -> None:
    """Create the database file empty, mode 0600, whatever the umask.

    SQLite would create it 0644 under the usual umask, readable by every local user when the
    folder already existed; its -wal and -shm files take the database file's mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # created meanwhile by another process: SQLite opens it as it is
    except OSError as exc:
        raise StateError(f"cannot create the state database {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # os.open's mode is filtered by the umask too
    finally:
        os.close(fd)


async def _scalar(db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> Any:
    """The first column of the first row `sql` returns."""
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0][0]


async def _pragma_int(db: aiosqlite.Connection, name: str) -> int:
    return int(await _scalar(db, f"PRAGMA {name}"))


async def _check_ours(db: aiosqlite.Connection, path: Path) -> None:
    """Refuse a corrupt file, another application's database, or a newer schema."""
    try:
        problems = [str(row[0]) for row in await db.execute_fetchall("PRAGMA quick_check")]
        application_id = await _pragma_int(db, "application_id")
        version = await _pragma_int(db, "user_version")
        tables = int(await _scalar(db, "SELECT count(*) FROM sqlite_master"))
    except sqlite3.OperationalError as exc:
        # Locked, unreadable, out of memory...: the file may be fine, so no advice to replace it.
        raise StateError(f"cannot read the state database {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        raise StateError(f"{path} is corrupt ({exc}); {_advice(path)}") from exc
    if problems != ["ok"]:
        found = "; ".join(problems[:3])
        raise StateError(f"{path} is corrupt (integrity check: {found}); {_advice(path)}")
    if application_id == 0 and (tables or version):
        raise StateError(
            f"{path} is an SQLite database that stocksync did not create (no stocksync "
            f"application id); {_advice(path)}"
        )
    if application_id not in (0, APPLICATION_ID):
        raise StateError(
            f"{path} belongs to another application (SQLite application_id "
            f"{application_id:#x}); {_advice(path)}"
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path} was written by a newer stocksync (schema version {version}; this version "
            f"knows up to {SCHEMA_VERSION}); upgrade stocksync, or {_advice(path)}"
        )


# Left out of a copy (StateStore.open_copy): the append-only audit log.
_NOT_COPIED: Final = frozenset({"audit"})


def _read_only_uri(path: Path) -> str:
    """An SQLite URI that reads `path` without creating or changing any file.

    With a -wal beside it a daemon has it open (or died with commits there): read through the
    daemon's -wal and -shm, `mode=ro`. Without one the file is complete, and `immutable=1` reads
    it without locking: `mode=ro` would leave a -wal and -shm owned by whoever ran the command
    (root), which the daemon's unprivileged user could then not open.
    """
    wal = path.with_name(path.name + "-wal")
    return path.absolute().as_uri() + ("?mode=ro" if wal.exists() else "?immutable=1")


async def _connect_read_only(path: Path) -> aiosqlite.Connection:
    if not await asyncio.to_thread(path.exists):
        raise StateError(f"no state database at {path}: the daemon has not run with this config")
    try:
        return await aiosqlite.connect(
            _read_only_uri(path), uri=True, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StateError(f"cannot open the state database {path}: {exc}") from exc


async def _copy_into(db: aiosqlite.Connection, path: Path) -> None:
    """Copy the database at `path` (read-only) into `db`, tables and indexes, in one read."""
    await db.execute("ATTACH DATABASE ? AS source", (_read_only_uri(path),))
    try:
        # One transaction: every table as of the same moment, even while the daemon writes.
        async with _transaction(db):
            version = int(await _scalar(db, "PRAGMA source.user_version"))
            rows = await db.execute_fetchall(
                "SELECT type, name, sql FROM source.sqlite_master "
                "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "ORDER BY type = 'index', rowid"
            )
            for kind, name, sql in rows:
                await db.execute(str(sql))
                if kind == "table" and name not in _NOT_COPIED:
                    await db.execute(
                        f"INSERT INTO main.{_quote(name)} SELECT * FROM source.{_quote(name)}"
                    )
            await db.execute(f"PRAGMA main.user_version = {version}")
            await db.execute(f"PRAGMA main.application_id = {APPLICATION_ID}")
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot read the state database {path}: {exc}") from exc
    finally:
        await db.execute("DETACH DATABASE source")


async def _configure(db: aiosqlite.Connection, path: Path) -> None:
    mode = str(await _scalar(db, "PRAGMA journal_mode = WAL"))
    if mode.lower() != "wal":
        raise StateError(
            f"{path}: SQLite cannot use write-ahead logging there (journal mode {mode}); "
            "put daemon.state_path on a local filesystem"
        )
    # FULL, not NORMAL: with WAL, NORMAL survives a process crash but a power loss can drop the
    # last commits. An in-flight mark or a cursor+dirty commit that vanished after the HTTP send
    # would let the daemon trust a stale snapshot or skip changes, so every commit is synced.
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA foreign_keys = ON")


async def _rollback(db: aiosqlite.Connection) -> None:
    # After a failed BEGIN, or a COMMIT that ran although its awaiter was cancelled, there is no
    # transaction left to roll back.
    with suppress(sqlite3.OperationalError):
        await db.execute("ROLLBACK")


@asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; rolled back on any error or cancellation."""
    # aiosqlite runs statements in order on one thread, so a ROLLBACK queued after a cancelled
    # statement still runs before anything the next transaction queues.
    try:
        await db.execute("BEGIN IMMEDIATE")
        yield db
        await db.execute("COMMIT")
    except BaseException:
        await _rollback(db)
        raise


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    version = await _pragma_int(db, "user_version")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        try:
            async with _transaction(db):
                for statement in MIGRATIONS[target - 1]:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")
                await db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot upgrade {path} to schema version {target} ({exc}); {_advice(path)}"
            ) from exc
        log.info("state_schema_migrated", path=str(path), schema_version=target)


# Columns holding times, by name: each must parse, or every cycle reading it would fail.
_TIME_COLUMN = re.compile(r"^(at|since|first_seen|last_seen|.+_at|.+_after)$")
# The audit log is append-only and never pruned (millions of rows after a year) and only
# `stocksync history` reads its times: scanning it would slow every start-up for no cycle's sake.
_UNSCANNED_TABLES: Final = frozenset({"audit"})


@cache
def _expected_schema() -> dict[str, tuple[tuple[str, str], ...]]:
    """Table -> its (column, declared type) pairs, as the migrations create them."""
    db = sqlite3.connect(":memory:")
    try:
        for migration in MIGRATIONS:
            for statement in migration:
                db.execute(statement)
        return _schema_of(db)
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> dict[str, tuple[tuple[str, str], ...]]:
    tables = [
        str(name)
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        table: tuple(
            (str(row[1]), str(row[2]).upper())
            for row in db.execute(f"PRAGMA table_info({_quote(table)})")
        )
        for table in tables
    }


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _not_a_time(value: object) -> int:
    """1 if a stored time cannot be read back (SQL function; NULL is fine)."""
    if value is None:
        return 0
    if not isinstance(value, str):
        return 1
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return 1
    return 0


async def _check_intact(db: aiosqlite.Connection, path: Path) -> None:
    """Refuse a database whose tables, columns or stored times are not what stocksync wrote.

    A sound SQLite file can still be damaged for stocksync (a table dropped, a time edited by
    hand): opened anyway, every cycle would fail with the same traceback, forever.
    """
    expected = _expected_schema()
    try:
        found = {
            table: tuple(
                (str(row[1]), str(row[2]).upper())
                for row in await db.execute_fetchall(f"PRAGMA table_info({_quote(table)})")
            )
            for table in expected
        }
        problems = []
        for table, columns in expected.items():
            have = dict(found[table])
            if not have:
                problems.append(f"table {table} is missing")
                continue
            for column, kind in columns:
                if column not in have:
                    problems.append(f"column {table}.{column} is missing")
                elif have[column] != kind:
                    problems.append(f"column {table}.{column} is {have[column]}, not {kind}")
        if not problems:
            # The outbox's sequence counter is one row the first migration inserts.
            if int(await _scalar(db, "SELECT count(*) FROM dirty_sequence WHERE id = 1")) != 1:
                problems.append("the dirty_sequence row is missing")
            await db.create_function("stocksync_not_a_time", 1, _not_a_time, deterministic=True)
            for table, columns in expected.items():
                if table in _UNSCANNED_TABLES:
                    continue
                for column, kind in columns:
                    if kind != "TEXT" or not _TIME_COLUMN.match(column):
                        continue
                    rows = await db.execute_fetchall(
                        f"SELECT {_quote(column)} FROM {_quote(table)} "
                        f"WHERE stocksync_not_a_time({_quote(column)}) LIMIT 1"
                    )
                    for (value,) in rows:
                        problems.append(f"{table}.{column} holds {value!r:.60}, not a time")
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path} is corrupt ({exc}); {_advice(path)}") from exc
    if problems:
        found_text = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise StateError(f"{path} is damaged ({found_text}); {_advice(path)}")
