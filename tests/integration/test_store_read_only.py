"""The state store for commands that must change nothing (`plan`, `mappings`, `history`,
`reconcile --dry-run`): the file is never created, migrated or written, and no file appears
beside it (a root-owned -wal or -shm would lock the daemon's unprivileged user out)."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.domain.models import PlannedPush, Problem, PushResult
from daemon.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, StateError, StateStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LOC = "gid://shopify/Location/10"


def push(quantity: int, sku: str = "SKU-1", item: int = 1) -> PlannedPush:
    return PlannedPush(100 + item, sku, f"gid://shopify/InventoryItem/{item}", LOC, quantity, 0)


def folder_state(folder: Path) -> dict[str, str]:
    """Every file in the folder and a digest of its content."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
async def written(tmp_path: Path) -> Path:
    """A state file the daemon wrote and closed: a snapshot, a problem, three pushes."""
    path = tmp_path / "state" / "state.db"
    store = await StateStore.open(path)
    await store.record_pushed("eu", "r1", [PushResult(push(5), "applied")])
    await store.record_pushed("us", "r2", [PushResult(push(7), "applied")])
    await store.record_pushed("eu", "r3", [PushResult(push(6, sku="SKU-2", item=2), "applied")])
    await store.note_problems("eu", [Problem("untracked", "gid://x", "not tracked")])
    await store.close()
    return path


async def test_a_copy_of_a_missing_state_file_is_empty_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "state.db"

    store = await StateStore.open_copy(path)
    try:
        await store.set_connection_synced("eu", T0)  # the engine may write: to the copy
        assert await store.cursors() == {}
    finally:
        await store.close()

    assert not path.parent.exists()


async def test_a_copy_holds_the_state_and_what_is_written_to_it_never_reaches_the_file(
    written: Path,
) -> None:
    before = folder_state(written.parent)

    store = await StateStore.open_copy(written)
    try:
        snapshot = await store.snapshot("eu")
        await store.note_problems("eu", [Problem("untracked", "gid://y", "also not tracked")])
        await store.set_connection_synced("eu", T0)
    finally:
        await store.close()

    assert [entry.quantity for entry in snapshot.values()] == [5, 6]
    assert folder_state(written.parent) == before


async def test_a_copy_leaves_the_audit_log_out(written: Path) -> None:
    store = await StateStore.open_copy(written)
    try:
        assert await store.history("SKU-1") == []
    finally:
        await store.close()


async def test_a_copy_of_an_older_schema_is_upgraded_in_memory_only(tmp_path: Path) -> None:
    # A state file as the previous stocksync left it: every migration but the last.
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for migration in MIGRATIONS[:-1]:
        for statement in migration:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.commit()
    db.close()
    before = folder_state(tmp_path)

    store = await StateStore.open_copy(path)
    try:
        assert await store.cursors() == {}  # the copy has the current schema and works
    finally:
        await store.close()

    assert folder_state(tmp_path) == before


async def test_a_copy_of_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()

    with pytest.raises(StateError, match="did not create"):
        await StateStore.open_copy(path)


async def test_a_copy_sees_what_a_running_daemon_committed_and_leaves_its_files_alone(
    written: Path,
) -> None:
    daemon = await StateStore.open(written)
    try:
        await daemon.record_pushed("eu", "r4", [PushResult(push(9), "applied")])
        wal = written.with_name(written.name + "-wal")
        assert wal.exists()

        store = await StateStore.open_copy(written)
        try:
            snapshot = await store.snapshot("eu")
        finally:
            await store.close()

        assert 9 in [entry.quantity for entry in snapshot.values()]
        await daemon.record_pushed("eu", "r5", [PushResult(push(8), "applied")])
    finally:
        await daemon.close()


async def test_read_only_history_filters_by_connection_and_time(written: Path) -> None:
    store = await StateStore.open_read_only(written)
    try:
        everything = await store.history("SKU-1")
        eu = await store.history("SKU-1", connection="eu")
        later = await store.history("SKU-1", since=datetime.now(UTC) + timedelta(hours=1))
    finally:
        await store.close()

    assert [e.connection for e in everything] == ["us", "eu"]
    assert [e.to_quantity for e in eu] == [5]
    assert later == []


async def test_read_only_open_changes_nothing_in_the_folder(written: Path) -> None:
    before = folder_state(written.parent)

    store = await StateStore.open_read_only(written)
    try:
        await store.history("SKU-1")
        with pytest.raises(sqlite3.OperationalError):
            await store.set_connection_synced("eu", T0)
    finally:
        await store.close()

    assert folder_state(written.parent) == before


async def test_read_only_open_of_a_missing_file_says_so_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "state.db"

    with pytest.raises(StateError, match="no state database"):
        await StateStore.open_read_only(path)

    assert not path.parent.exists()
