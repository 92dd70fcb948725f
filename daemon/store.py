"""The daemon's durable state, in one SQLite file.

Cursors and the dirty set form an outbox (a cursor advances only in the transaction that records
the variants it made dirty); the snapshot says what Shopify was last told; the audit log, problems,
holds, runs and the Katana catalogue cache complete it. A crash or `kill -9` at any point loses
nothing: every method that writes commits one transaction before it returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final

import aiosqlite
import structlog

from daemon.domain.models import (
    LevelKey,
    PlannedPush,
    Problem,
    PushRequest,
    PushResult,
    SnapshotEntry,
)
from daemon.katana.models import BomRow, Catalogue, ItemKind, KatanaItem, KatanaVariantRow

log = structlog.get_logger(__name__)

# Inventory items per keyed snapshot query (well under SQLite's variable limit).
SNAPSHOT_CHUNK = 500
# Document rows per remembered-variant lookup (two variables each).
ROW_CHUNK = 400
# PRAGMA application_id marks the file as stocksync's ("STKS"), so a foreign database is refused.
APPLICATION_ID: Final = 0x53544B53
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_BUSY_TIMEOUT_SECONDS: Final = 10.0
_ITEM_KINDS: Final[dict[str, ItemKind]] = {"product": "product", "material": "material"}

# Each migration is applied in one transaction that also sets `PRAGMA user_version` to its
# position (1-based). Append new migrations; never edit a released one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE cursors (
            source TEXT PRIMARY KEY CHECK (source <> ''),
            at TEXT NOT NULL
        ) WITHOUT ROWID""",
        # A persistent counter rather than MAX(dirty.seq): once the dirty set empties, MAX would
        # restart and a late clear_dirty holding an old seq could delete a newer mark.
        """CREATE TABLE dirty_sequence (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_seq INTEGER NOT NULL
        )""",
        "INSERT INTO dirty_sequence (id, last_seq) VALUES (1, 0)",
        """CREATE TABLE dirty (
            connection TEXT NOT NULL,
            variant_id INTEGER NOT NULL,
            changed_at TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (connection, variant_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE connections (
            name TEXT PRIMARY KEY,
            synced_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE snapshot (
            connection TEXT NOT NULL,
            inventory_item_id TEXT NOT NULL,
            location_id TEXT NOT NULL,
            quantity INTEGER,
            in_flight INTEGER NOT NULL CHECK (in_flight IN (0, 1)),
            updated_at TEXT NOT NULL,
            PRIMARY KEY (connection, inventory_item_id, location_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            run_id TEXT NOT NULL,
            connection TEXT NOT NULL,
            sku TEXT,
            katana_variant_id INTEGER NOT NULL,
            inventory_item_id TEXT NOT NULL,
            location_id TEXT NOT NULL,
            from_quantity INTEGER,
            to_quantity INTEGER NOT NULL,
            outcome TEXT NOT NULL
        )""",
        "CREATE INDEX audit_by_sku ON audit (sku, id)",
        """CREATE TABLE problems (
            connection TEXT NOT NULL,
            subject TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (connection, subject)
        ) WITHOUT ROWID""",
        """CREATE TABLE holds (
            connection TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            since TEXT NOT NULL
        ) WITHOUT ROWID""",
        # AUTOINCREMENT: run ids appear in logs and audit rows, so they are never reused.
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            connection TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            ok INTEGER CHECK (ok IN (0, 1)),
            drift INTEGER,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE catalogue_variants (
            id INTEGER PRIMARY KEY,
            sku TEXT,
            product_id INTEGER,
            material_id INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        )""",
        """CREATE TABLE catalogue_items (
            kind TEXT NOT NULL CHECK (kind IN ('product', 'material')),
            id INTEGER NOT NULL,
            is_auto_assembly INTEGER NOT NULL CHECK (is_auto_assembly IN (0, 1)),
            archived INTEGER NOT NULL CHECK (archived IN (0, 1)),
            updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, id)
        ) WITHOUT ROWID""",
        # Quantities as decimal text: exact, never a float.
        """CREATE TABLE catalogue_bom (
            id TEXT PRIMARY KEY,
            product_variant_id INTEGER NOT NULL,
            ingredient_variant_id INTEGER NOT NULL,
            quantity TEXT NOT NULL,
            updated_at TEXT
        ) WITHOUT ROWID""",
    ),
    (
        # A push request whose answer is not recorded yet, exactly as last sent (PRODUCT.md §3):
        # after a crash or a lost answer it is re-sent unchanged under its key. `lost` says an
        # attempt's answer never arrived, so Shopify may still apply it later.
        """CREATE TABLE push_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connection TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            variables TEXT NOT NULL,
            pushes TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            lost INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1))
        )""",
        # The request whose answer settles an in-flight level (never a newer one's answer), and
        # when a level whose request was lost is read back from Shopify.
        "ALTER TABLE snapshot ADD COLUMN request_id INTEGER",
        "ALTER TABLE snapshot ADD COLUMN verify_after TEXT",
        # Levels Shopify rejected, tried again after a growing pause or when Katana's value moves.
        """CREATE TABLE parked (
            connection TEXT NOT NULL,
            inventory_item_id TEXT NOT NULL,
            location_id TEXT NOT NULL,
            katana_variant_id INTEGER NOT NULL,
            quantity INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            retry_at TEXT NOT NULL,
            PRIMARY KEY (connection, inventory_item_id, location_id)
        ) WITHOUT ROWID""",
    ),
    (
        # The last-known variant of each document row seen through a row source: Katana lets a
        # row be re-pointed to another variant, and the old one must be re-read too.
        """CREATE TABLE row_variants (
            source TEXT NOT NULL,
            row_id TEXT NOT NULL,
            variant_id INTEGER NOT NULL,
            PRIMARY KEY (source, row_id)
        ) WITHOUT ROWID""",
        # Katana allows a BOM row without a quantity: the column becomes nullable (SQLite
        # changes a constraint only by rebuilding the table).
        """CREATE TABLE catalogue_bom_nullable (
            id TEXT PRIMARY KEY,
            product_variant_id INTEGER NOT NULL,
            ingredient_variant_id INTEGER NOT NULL,
            quantity TEXT,
            updated_at TEXT
        ) WITHOUT ROWID""",
        """INSERT INTO catalogue_bom_nullable
            SELECT id, product_variant_id, ingredient_variant_id, quantity, updated_at
            FROM catalogue_bom""",
        "DROP TABLE catalogue_bom",
        "ALTER TABLE catalogue_bom_nullable RENAME TO catalogue_bom",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_UPSERT_DIRTY: Final = """
    INSERT INTO dirty (connection, variant_id, changed_at, seq) VALUES (?, ?, ?, ?)
    ON CONFLICT (connection, variant_id) DO UPDATE SET
        changed_at = MIN(dirty.changed_at, excluded.changed_at),
        seq = excluded.seq"""
_SET_CURSOR: Final = """
    INSERT INTO cursors (source, at) VALUES (?, ?)
    ON CONFLICT (source) DO UPDATE SET at = excluded.at"""
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


class StateError(Exception):
    """The state database cannot be used as is (not ours, corrupt, newer); the file is untouched."""


@dataclass(frozen=True, slots=True)
class DirtyMark:
    """Why and since when a variant waits in the outbox; `seq` orders re-marks."""

    changed_at: datetime
    seq: int


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


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A finished run (a reconciliation) as recorded; `connection` None = every connection."""

    kind: str
    connection: str | None
    started_at: datetime
    finished_at: datetime
    ok: bool
    drift: int
    detail: str


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


def _variant_row(row: Sequence[Any]) -> KatanaVariantRow:
    vid, sku, product_id, material_id, created_at, updated_at, deleted_at = row
    return KatanaVariantRow(
        id=vid,
        sku=sku,
        product_id=product_id,
        material_id=material_id,
        created_at=_from_iso(created_at),
        updated_at=_from_iso(updated_at),
        deleted_at=_maybe_from_iso(deleted_at),
    )


def _item(row: Sequence[Any]) -> KatanaItem:
    kind, iid, is_auto_assembly, archived, updated_at = row
    return KatanaItem(
        id=iid,
        kind=_ITEM_KINDS[kind],
        is_auto_assembly=bool(is_auto_assembly),
        archived=bool(archived),
        updated_at=_from_iso(updated_at),
    )


def _bom_row(row: Sequence[Any]) -> BomRow:
    bid, product_variant_id, ingredient_variant_id, quantity, updated_at = row
    return BomRow(
        id=bid,
        product_variant_id=product_variant_id,
        ingredient_variant_id=ingredient_variant_id,
        quantity=None if quantity is None else Decimal(quantity),
        updated_at=_maybe_from_iso(updated_at),
    )


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


class StateStore:
    """stocksync's state on one aiosqlite connection; safe to call from several tasks."""

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

    # -- per-item problems, reported once ----------------------------------------------------

    async def note_problems(self, connection: str, problems: Iterable[Problem]) -> list[Problem]:
        """Record many problems in one transaction; return those new or changed (to log)."""
        latest = {p.subject: p for p in problems}  # one situation per subject: the last wins
        if not latest:
            return []
        now = _iso(self._clock())
        async with self._write() as db:
            known = {
                subject: (kind, detail)
                for subject, kind, detail in await db.execute_fetchall(
                    "SELECT subject, kind, detail FROM problems WHERE connection = ?",
                    (connection,),
                )
            }
            fresh = [p for p in latest.values() if known.get(p.subject) != (p.kind, p.detail)]
            fresh_subjects = {p.subject for p in fresh}
            seen = [(now, connection, s) for s in latest if s not in fresh_subjects]
            await db.executemany(
                "INSERT INTO problems (connection, subject, kind, detail, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connection, subject) DO UPDATE SET "
                "kind = excluded.kind, detail = excluded.detail, "
                "first_seen = excluded.first_seen, last_seen = excluded.last_seen",
                [(connection, p.subject, p.kind, p.detail, now, now) for p in fresh],
            )
            await db.executemany(
                "UPDATE problems SET last_seen = ? WHERE connection = ? AND subject = ?", seen
            )
        return fresh

    async def problems(self, connection: str) -> dict[str, Problem]:
        """The problems currently recorded for `connection`, by subject."""
        rows = await self._fetch(
            "SELECT subject, kind, detail FROM problems WHERE connection = ?", (connection,)
        )
        return {subject: Problem(kind, subject, detail) for subject, kind, detail in rows}

    async def count_problems(self, connection: str, kind: str) -> int:
        """How many problems of `kind` are recorded for `connection`."""
        rows = await self._fetch(
            "SELECT COUNT(*) FROM problems WHERE connection = ? AND kind = ?", (connection, kind)
        )
        return int(rows[0][0])

    async def clear_problems(self, connection: str, subjects: Iterable[str]) -> None:
        """Forget resolved problems, so that a recurrence is reported again."""
        rows = [(connection, subject) for subject in subjects]
        if rows:
            async with self._write() as db:
                await db.executemany(
                    "DELETE FROM problems WHERE connection = ? AND subject = ?", rows
                )

    # -- safety-valve holds ------------------------------------------------------------------

    async def hold(self, connection: str, reason: str) -> None:
        """Hold pushes to `connection` until released (keeps the first hold's time)."""
        async with self._write() as db:
            await db.execute(
                "INSERT INTO holds (connection, reason, since) VALUES (?, ?, ?) "
                "ON CONFLICT (connection) DO UPDATE SET reason = excluded.reason",
                (connection, reason, _iso(self._clock())),
            )

    async def release_hold(self, connection: str) -> bool:
        """Release the hold on `connection`; False if it was not held."""
        async with self._write() as db:
            cursor = await db.execute("DELETE FROM holds WHERE connection = ?", (connection,))
            released = cursor.rowcount > 0
            await cursor.close()
        return released

    async def holds(self) -> dict[str, str]:
        """Held connections and why."""
        rows = await self._fetch("SELECT connection, reason FROM holds")
        return {str(connection): str(reason) for connection, reason in rows}

    async def hold_times(self) -> dict[str, datetime]:
        """When each held connection was first held."""
        rows = await self._fetch("SELECT connection, since FROM holds")
        return {str(connection): _from_iso(since) for connection, since in rows}

    # -- reconciliation runs -----------------------------------------------------------------

    async def start_run(self, kind: str, connection: str | None) -> int:
        """Record the start of a run; returns its id."""
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO runs (kind, connection, started_at) VALUES (?, ?, ?)",
                (kind, connection, _iso(self._clock())),
            )
            run_id = cursor.lastrowid
            await cursor.close()
        if run_id is None:  # pragma: no cover - SQLite always reports the inserted rowid
            raise RuntimeError("SQLite did not report the new run id")
        return run_id

    async def finish_run(self, run_id: int, *, ok: bool, drift: int, detail: str = "") -> None:
        """Record how run `run_id` ended."""
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE runs SET finished_at = ?, ok = ?, drift = ?, detail = ? WHERE id = ?",
                (_iso(self._clock()), int(ok), drift, detail, run_id),
            )
            found = cursor.rowcount > 0
            await cursor.close()
        if not found:
            raise ValueError(f"no run {run_id} in {self._path}")

    async def last_run(self, kind: str, connection: str) -> RunRecord | None:
        """The latest finished run of `kind` that covered `connection` (alone or with all)."""
        rows = await self._fetch(
            "SELECT kind, connection, started_at, finished_at, ok, drift, detail FROM runs "
            "WHERE kind = ? AND finished_at IS NOT NULL AND (connection = ? OR connection IS NULL) "
            "ORDER BY id DESC LIMIT 1",
            (kind, connection),
        )
        if not rows:
            return None
        kind_, conn, started, finished, ok, drift, detail = rows[0]
        return RunRecord(
            kind=str(kind_),
            connection=None if conn is None else str(conn),
            started_at=_from_iso(started),
            finished_at=_from_iso(finished),
            ok=bool(ok),
            drift=int(drift or 0),
            detail=str(detail),
        )

    async def last_successful_run(self, kind: str) -> datetime | None:
        """When the latest successful run of `kind` finished; None if there was none."""
        rows = await self._fetch(
            "SELECT max(finished_at) FROM runs WHERE kind = ? AND ok = 1", (kind,)
        )
        return _maybe_from_iso(rows[0][0])

    # -- Katana catalogue cache --------------------------------------------------------------

    async def save_catalogue(
        self,
        variants: Iterable[KatanaVariantRow],
        items: Iterable[KatanaItem],
        bom: Iterable[BomRow],
    ) -> None:
        """Upsert catalogue rows read from Katana; deleted BOM rows are removed."""
        variants, items = list(variants), list(items)
        # The parameters are generated as SQLite takes them: a cold start writes 100,000s of
        # rows, and their ISO strings, built all at once, would add tens of MiB to the peak.
        variant_rows = (
            (
                v.id,
                v.sku,
                v.product_id,
                v.material_id,
                _iso(v.created_at),
                _iso(v.updated_at),
                _maybe_iso(v.deleted_at),
            )
            for v in variants
        )
        item_rows = (
            (i.kind, i.id, int(i.is_auto_assembly), int(i.archived), _iso(i.updated_at))
            for i in items
        )
        final_bom = {b.id: b for b in bom}  # rows arrive in order: the last one for an id wins
        bom_rows = [
            (
                b.id,
                b.product_variant_id,
                b.ingredient_variant_id,
                None if b.quantity is None else str(b.quantity),
                _maybe_iso(b.updated_at),
            )
            for b in final_bom.values()
            if not b.deleted
        ]
        bom_deleted = [(b.id,) for b in final_bom.values() if b.deleted]
        if not (variants or items or final_bom):
            return
        async with self._write() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO catalogue_variants (id, sku, product_id, material_id, "
                "created_at, updated_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                variant_rows,
            )
            await db.executemany(
                "INSERT OR REPLACE INTO catalogue_items (kind, id, is_auto_assembly, archived, "
                "updated_at) VALUES (?, ?, ?, ?, ?)",
                item_rows,
            )
            await db.executemany(
                "INSERT OR REPLACE INTO catalogue_bom (id, product_variant_id, "
                "ingredient_variant_id, quantity, updated_at) VALUES (?, ?, ?, ?, ?)",
                bom_rows,
            )
            await db.executemany("DELETE FROM catalogue_bom WHERE id = ?", bom_deleted)

    async def catalogue(self) -> Catalogue:
        """The cached Katana catalogue."""
        async with self._lock:
            variant_rows = await self._db.execute_fetchall(
                "SELECT id, sku, product_id, material_id, created_at, updated_at, deleted_at "
                "FROM catalogue_variants"
            )
            item_rows = await self._db.execute_fetchall(
                "SELECT kind, id, is_auto_assembly, archived, updated_at FROM catalogue_items"
            )
            bom_rows = await self._db.execute_fetchall(
                "SELECT id, product_variant_id, ingredient_variant_id, quantity, updated_at "
                "FROM catalogue_bom"
            )
        catalogue = Catalogue()
        catalogue.merge(
            (_variant_row(row) for row in variant_rows),
            (_item(row) for row in item_rows),
            (_bom_row(row) for row in bom_rows),
        )
        return catalogue
