"""The state store on a real SQLite file: durability, outbox, snapshot, refusal of foreign files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.domain.models import (
    KatanaVariant,
    PlannedPush,
    Problem,
    PushResult,
    SnapshotEntry,
)
from daemon.katana.models import BomRow, KatanaItem, KatanaVariantRow
from daemon.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, StateError, StateStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ITEM = "gid://shopify/InventoryItem/1"
ITEM2 = "gid://shopify/InventoryItem/2"
LOC = "gid://shopify/Location/10"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[StateStore]:
    s = await StateStore.open(db_path, clock=clock)
    yield s
    await s.close()


def push(
    item: str = ITEM,
    quantity: int = 5,
    change_from: int | None = 3,
    sku: str | None = "SKU-1",
    variant: int = 101,
    location: str = LOC,
) -> PlannedPush:
    return PlannedPush(variant, sku, item, location, quantity, change_from)


# -- opening ------------------------------------------------------------------------------------


async def test_open_creates_the_parent_folder_with_mode_0700(db_path: Path) -> None:
    s = await StateStore.open(db_path)
    await s.close()
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


async def test_open_leaves_an_existing_parent_folder_mode_alone(tmp_path: Path) -> None:
    await asyncio.to_thread(tmp_path.chmod, 0o755)
    s = await StateStore.open(tmp_path / "state.db")
    await s.close()
    assert stat.S_IMODE((await asyncio.to_thread(tmp_path.stat)).st_mode) == 0o755


async def test_new_database_is_stamped_ours_at_the_latest_schema_in_wal_mode(
    db_path: Path,
) -> None:
    s = await StateStore.open(db_path)
    await s.close()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


async def test_an_empty_file_is_initialised_as_a_new_database(db_path: Path) -> None:
    await asyncio.to_thread(db_path.parent.mkdir, mode=0o700)
    await asyncio.to_thread(db_path.touch)
    s = await StateStore.open(db_path)
    await s.set_connection_synced("shop", T0)
    await s.close()
    assert (await asyncio.to_thread(db_path.stat)).st_size > 0


async def test_everything_survives_close_and_reopen(db_path: Path, clock: FakeClock) -> None:
    s = await StateStore.open(db_path, clock=clock)
    await s.record_changes({101: T0}, {"sales_orders": T0}, ["shop"])
    await s.set_connection_synced("shop", T0)
    await s.mark_in_flight("shop", [(ITEM, LOC)])
    await s.record_pushed("shop", "run-1", [PushResult(push(), "applied")])
    bool(await s.note_problems("shop", [Problem("untracked", "SKU-9", "not tracked")]))
    await s.hold("shop", "too many drops")
    run = await s.start_run("reconcile", "shop")
    await s.finish_run(run, ok=True, drift=2)
    await s.save_catalogue([variant_row(1)], [], [])
    await s.close()

    s = await StateStore.open(db_path, clock=clock)
    try:
        assert await s.cursors() == {"sales_orders": T0}
        assert set(await s.dirty("shop")) == {101}
        assert await s.connection_synced("shop") == T0
        assert await s.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(5, False)}
        assert [e.outcome for e in await s.history("SKU-1")] == ["applied"]
        assert (
            bool(await s.note_problems("shop", [Problem("untracked", "SKU-9", "not tracked")]))
            is False
        )
        assert await s.holds() == {"shop": "too many drops"}
        assert await s.last_successful_run("reconcile") == T0
        assert set((await s.catalogue()).variants) == {1}
    finally:
        await s.close()


async def test_close_is_idempotent(store: StateStore) -> None:
    await store.close()
    await store.close()


# -- refusing files that are not ours -----------------------------------------------------------


async def assert_refused_untouched(path: Path, *words: str) -> None:
    before = await asyncio.to_thread(path.read_bytes)
    with pytest.raises(StateError) as caught:
        await StateStore.open(path)
    message = str(caught.value)
    assert str(path) in message
    assert "state_path" in message
    for word in words:
        assert word in message
    assert await asyncio.to_thread(path.read_bytes) == before


async def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"these are not the bytes you are looking for\n" * 200)
    await assert_refused_untouched(path, "not an SQLite database")


async def test_a_state_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot read the state database"):
        await StateStore.open(tmp_path)


async def test_a_corrupt_database_is_refused_and_left_untouched(
    db_path: Path, clock: FakeClock
) -> None:
    s = await StateStore.open(db_path, clock=clock)
    await s.mark_in_flight("shop", [(f"gid://shopify/InventoryItem/{n}", LOC) for n in range(3000)])
    await s.close()
    page_size = 4096
    with db_path.open("r+b") as f:
        f.seek(page_size * 4)
        f.write(b"\xff" * 512)
    await assert_refused_untouched(db_path, "corrupt")


async def test_a_database_of_another_application_is_refused_and_left_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA application_id = 1234")
    raw.execute("CREATE TABLE cursors (source TEXT, at TEXT)")
    raw.commit()
    raw.close()
    await assert_refused_untouched(path, "another application", "0x4d2")


async def test_a_database_with_tables_but_no_application_id_is_refused_and_left_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total TEXT)")
    raw.execute("INSERT INTO orders (total) VALUES ('9.99')")
    raw.commit()
    raw.close()
    await assert_refused_untouched(path, "did not create")


async def test_a_database_from_a_newer_stocksync_is_refused_and_left_untouched(
    db_path: Path,
) -> None:
    s = await StateStore.open(db_path)
    await s.close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    await assert_refused_untouched(db_path, "newer stocksync", f"{SCHEMA_VERSION + 1}")


async def _damage(path: Path, *statements: str) -> None:
    """Open and close a fresh store at `path`, then run `statements` on the raw file."""
    s = await StateStore.open(path)
    await s.record_changes({7: T0}, {"sales_orders": T0}, ["shop"])
    await s.close()
    raw = sqlite3.connect(path)
    for statement in statements:
        raw.execute(statement)
    raw.commit()
    raw.close()


async def test_a_database_missing_a_table_is_refused_at_open_and_left_untouched(
    db_path: Path,
) -> None:
    await _damage(db_path, "DROP TABLE holds")
    await assert_refused_untouched(db_path, "damaged", "table holds is missing")


async def test_a_database_missing_a_column_is_refused_at_open_and_left_untouched(
    db_path: Path,
) -> None:
    await _damage(db_path, "ALTER TABLE runs DROP COLUMN detail")
    await assert_refused_untouched(db_path, "damaged", "runs.detail is missing")


async def test_a_database_without_its_dirty_sequence_row_is_refused_at_open(
    db_path: Path,
) -> None:
    await _damage(db_path, "DELETE FROM dirty_sequence")
    await assert_refused_untouched(db_path, "damaged", "dirty_sequence")


@pytest.mark.parametrize("bad", ["yesterday", "", "2026-13-01T00:00:00+00:00", "17"])
async def test_a_stored_time_that_does_not_parse_is_refused_at_open_not_every_cycle(
    db_path: Path, bad: str
) -> None:
    await _damage(db_path, f"UPDATE cursors SET at = '{bad}'")
    await assert_refused_untouched(db_path, "damaged", "cursors.at", "not a time")


async def test_a_database_as_stocksync_left_it_passes_the_intact_check(db_path: Path) -> None:
    await _damage(db_path)
    s = await StateStore.open(db_path)
    assert set(await s.dirty("shop")) == {7}
    await s.close()


async def test_the_database_and_its_wal_files_are_created_0600_in_an_existing_folder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    previous = os.umask(0o022)
    try:
        s = await StateStore.open(path)
        await s.set_connection_synced("shop", T0)
        modes = {
            name: stat.S_IMODE((await asyncio.to_thread(os.stat, tmp_path / name)).st_mode)
            for name in ("state.db", "state.db-wal", "state.db-shm")
        }
        await s.close()
    finally:
        os.umask(previous)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


# -- the outbox ---------------------------------------------------------------------------------


async def test_record_changes_marks_each_variant_dirty_for_every_connection(
    store: StateStore,
) -> None:
    await store.record_changes({1: T0, 2: T0}, {"sales_orders": T0}, ["a", "b"])
    for connection in ("a", "b"):
        assert set(await store.dirty(connection)) == {1, 2}
    assert await store.cursors() == {"sales_orders": T0}
    assert await store.dirty_count() == 2


async def test_a_re_marked_variant_keeps_its_earliest_change_and_takes_a_fresh_seq(
    store: StateStore,
) -> None:
    await store.record_changes({1: T0}, {}, ["shop"])
    first = (await store.dirty("shop"))[1]
    await store.record_changes({1: T0 + timedelta(minutes=5)}, {}, ["shop"])
    later = (await store.dirty("shop"))[1]
    assert later.changed_at == T0
    assert later.seq > first.seq
    await store.record_changes({1: T0 - timedelta(minutes=5)}, {}, ["shop"])
    assert (await store.dirty("shop"))[1].changed_at == T0 - timedelta(minutes=5)


async def test_record_changes_is_one_transaction_a_failing_cursor_write_leaves_no_dirty_mark(
    store: StateStore,
) -> None:
    await store.record_changes({1: T0}, {"sales_orders": T0}, ["shop"])
    before = (await store.dirty("shop"), await store.cursors())
    later = T0 + timedelta(hours=1)
    # The schema refuses an empty source name: the cursor write, after the dirty marks in the
    # same transaction, fails.
    with pytest.raises(sqlite3.IntegrityError):
        await store.record_changes(
            {1: later, 2: later}, {"sales_orders": later, "": later}, ["shop"]
        )
    assert (await store.dirty("shop"), await store.cursors()) == before
    # The store is still usable: the failed transaction was rolled back and the lock released.
    await store.record_changes({3: later}, {}, ["shop"])
    assert set(await store.dirty("shop")) == {1, 3}


async def test_clear_dirty_keeps_a_variant_re_marked_during_the_push(store: StateStore) -> None:
    await store.record_changes({1: T0, 2: T0}, {}, ["shop"])
    being_pushed = {v: mark.seq for v, mark in (await store.dirty("shop")).items()}
    await store.record_changes({2: T0 + timedelta(seconds=1)}, {}, ["shop"])  # a new change
    await store.clear_dirty("shop", being_pushed)
    assert set(await store.dirty("shop")) == {2}


async def test_clear_dirty_touches_only_its_connection(store: StateStore) -> None:
    await store.record_changes({1: T0}, {}, ["a", "b"])
    await store.clear_dirty("a", {1: (await store.dirty("a"))[1].seq})
    assert await store.dirty("a") == {}
    assert set(await store.dirty("b")) == {1}
    assert await store.dirty_count() == 1


async def test_dirty_seq_never_restarts_even_after_the_dirty_set_empties_and_reopens(
    db_path: Path,
) -> None:
    s = await StateStore.open(db_path)
    await s.record_changes({1: T0}, {}, ["shop"])
    old = (await s.dirty("shop"))[1].seq
    await s.clear_dirty("shop", {1: old})
    await s.close()
    s = await StateStore.open(db_path)
    try:
        await s.record_changes({1: T0}, {}, ["shop"])
        # A late clear holding the old seq must not remove the new mark.
        await s.clear_dirty("shop", {1: old})
        assert (await s.dirty("shop"))[1].seq > old
    finally:
        await s.close()


async def test_a_rows_last_known_variant_is_kept_with_the_marks_and_forgotten_when_deleted(
    store: StateStore,
) -> None:
    row, other = ("sales_order_rows", "2501"), ("manufacturing_order_recipe_rows", "2501")
    await store.record_changes({5: T0}, {"sales_order_rows": T0}, ["shop"], rows={row: 5})
    assert await store.row_variants([row, other]) == {row: 5}

    await store.record_changes({5: T0, 6: T0}, {}, ["shop"], rows={row: 6, other: 7})
    assert await store.row_variants([row, other]) == {row: 6, other: 7}

    # A deleted row cannot be re-pointed any more: nothing left to remember.
    await store.record_changes({6: T0}, {}, ["shop"], rows={row: None})
    assert await store.row_variants([row, other]) == {other: 7}


async def test_row_variants_are_written_in_the_marks_transaction_or_not_at_all(
    store: StateStore,
) -> None:
    row = ("sales_order_rows", "1")
    await store.record_changes({5: T0}, {"sales_order_rows": T0}, ["shop"], rows={row: 5})
    later = T0 + timedelta(hours=1)
    # The empty source name is refused by the schema: the cursor write fails after the rows.
    with pytest.raises(sqlite3.IntegrityError):
        await store.record_changes({6: later}, {"": later}, ["shop"], rows={row: 6})
    assert await store.row_variants([row]) == {row: 5}
    assert set(await store.dirty("shop")) == {5}


async def test_row_variants_of_many_rows_are_looked_up_in_chunks(store: StateStore) -> None:
    rows = {("sales_order_rows", str(n)): n for n in range(2_500)}
    await store.record_changes({}, {}, [], rows=rows)
    assert await store.row_variants(rows) == rows


async def test_cursor_advances_replace_earlier_values(store: StateStore) -> None:
    await store.record_changes({}, {"sales_orders": T0, "stock_transfers": T0}, [])
    await store.record_changes({}, {"sales_orders": T0 + timedelta(hours=1)}, [])
    assert await store.cursors() == {
        "sales_orders": T0 + timedelta(hours=1),
        "stock_transfers": T0,
    }


async def test_datetimes_come_back_as_aware_utc(store: StateStore) -> None:
    paris = datetime(2025, 3, 1, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    await store.record_changes({1: paris}, {"sales_orders": paris}, ["shop"])
    at = (await store.cursors())["sales_orders"]
    assert at == paris
    assert at.tzinfo is UTC
    assert (await store.dirty("shop"))[1].changed_at.tzinfo is UTC


async def test_a_naive_datetime_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.record_changes({1: datetime(2025, 3, 1)}, {}, ["shop"])
    assert await store.dirty("shop") == {}


async def test_connection_synced_is_recorded_and_can_be_reset(store: StateStore) -> None:
    assert await store.connection_synced("shop") is None
    await store.set_connection_synced("shop", T0)
    assert await store.connection_synced("shop") == T0
    await store.set_connection_synced("shop", None)
    assert await store.connection_synced("shop") is None


# -- the snapshot -------------------------------------------------------------------------------


async def test_an_in_flight_mark_is_committed_before_return_and_survives_reopen(
    db_path: Path,
) -> None:
    s = await StateStore.open(db_path)
    await s.mark_in_flight("shop", [(ITEM, LOC)])
    # Another connection sees it while the store is still open: it is committed, not pending.
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT quantity, in_flight FROM snapshot").fetchall() == [(None, 1)]
    finally:
        raw.close()
    await s.close()
    s = await StateStore.open(db_path)
    try:
        assert await s.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(None, True)}
    finally:
        await s.close()


async def test_in_flight_keeps_the_last_known_quantity(store: StateStore) -> None:
    await store.record_pushed("shop", "r1", [PushResult(push(quantity=7), "applied")])
    await store.mark_in_flight("shop", [(ITEM, LOC)])
    assert await store.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(7, True)}


async def test_an_applied_push_sets_the_quantity_clears_in_flight_and_is_audited(
    store: StateStore, clock: FakeClock
) -> None:
    await store.mark_in_flight("shop", [(ITEM, LOC)])
    await store.record_pushed(
        "shop", "run-1", [PushResult(push(quantity=5, change_from=3), "applied")]
    )
    assert await store.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(5, False)}
    [entry] = await store.history("SKU-1")
    assert entry.at == clock.now
    assert (entry.run_id, entry.connection, entry.katana_variant_id) == ("run-1", "shop", 101)
    assert (entry.inventory_item_id, entry.location_id) == (ITEM, LOC)
    assert (entry.from_quantity, entry.to_quantity, entry.outcome) == (3, 5, "applied")


async def test_a_stale_push_takes_shopify_current_value_and_is_audited_stale(
    store: StateStore,
) -> None:
    await store.mark_in_flight("shop", [(ITEM, LOC)])
    stale = PushResult(push(quantity=5, change_from=3), "stale", current=9)
    await store.record_pushed("shop", "run-1", [stale])
    assert await store.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(9, False)}
    [entry] = await store.history("SKU-1")
    assert (entry.from_quantity, entry.to_quantity, entry.outcome) == (3, 5, "stale")


async def test_a_rejected_push_keeps_the_old_quantity_and_is_audited_with_its_code(
    store: StateStore,
) -> None:
    await store.record_pushed("shop", "run-1", [PushResult(push(quantity=4), "applied")])
    await store.mark_in_flight("shop", [(ITEM, LOC)])
    rejected = PushResult(
        push(quantity=8, change_from=4), "rejected", code="ITEM_NOT_STOCKED_AT_LOCATION"
    )
    await store.record_pushed("shop", "run-2", [rejected])
    assert await store.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(4, False)}
    latest = (await store.history("SKU-1"))[0]
    assert (latest.run_id, latest.to_quantity, latest.outcome) == (
        "run-2",
        8,
        "ITEM_NOT_STOCKED_AT_LOCATION",
    )


async def test_a_rejected_push_never_pushed_before_leaves_no_known_quantity(
    store: StateStore,
) -> None:
    await store.mark_in_flight("shop", [(ITEM, LOC)])
    await store.record_pushed("shop", "r", [PushResult(push(), "rejected", code="X")])
    assert await store.snapshot("shop") == {(ITEM, LOC): SnapshotEntry(None, False)}


async def test_record_pushed_settles_a_mixed_batch_and_refuses_an_unknown_status(
    store: StateStore,
) -> None:
    results = [
        PushResult(push(item=ITEM, quantity=1), "applied"),
        PushResult(push(item=ITEM2, quantity=2), "stale", current=6),
    ]
    await store.record_pushed("shop", "r", results)
    assert await store.snapshot("shop") == {
        (ITEM, LOC): SnapshotEntry(1, False),
        (ITEM2, LOC): SnapshotEntry(6, False),
    }
    with pytest.raises(ValueError, match="unknown push status"):
        await store.record_pushed("shop", "r", [PushResult(push(item=ITEM), "maybe")])
    assert await store.snapshot("shop") == {
        (ITEM, LOC): SnapshotEntry(1, False),
        (ITEM2, LOC): SnapshotEntry(6, False),
    }


async def test_snapshots_are_per_connection(store: StateStore) -> None:
    await store.record_pushed("a", "r", [PushResult(push(quantity=1), "applied")])
    await store.record_pushed("b", "r", [PushResult(push(quantity=2), "applied")])
    assert await store.snapshot("a") == {(ITEM, LOC): SnapshotEntry(1, False)}
    assert await store.snapshot("b") == {(ITEM, LOC): SnapshotEntry(2, False)}


async def test_history_is_newest_first_and_limited(store: StateStore, clock: FakeClock) -> None:
    for quantity in range(5):
        clock.advance(1)
        await store.record_pushed("shop", "r", [PushResult(push(quantity=quantity), "applied")])
    await store.record_pushed("shop", "r", [PushResult(push(sku="OTHER"), "applied")])
    entries = await store.history("SKU-1", limit=3)
    assert [e.to_quantity for e in entries] == [4, 3, 2]


async def test_a_snapshot_of_300k_levels_round_trips(db_path: Path) -> None:
    s = await StateStore.open(db_path)
    keys = [
        (f"gid://shopify/InventoryItem/{n}", f"gid://shopify/Location/{loc}")
        for n in range(100_000)
        for loc in (1, 2, 3)
    ]
    await s.mark_in_flight("shop", keys)
    settled = keys[::300]
    results = [
        PushResult(PlannedPush(n, None, item, location, n, None), "applied")
        for n, (item, location) in enumerate(settled)
    ]
    await s.record_pushed("shop", "bulk", results)
    await s.close()
    s = await StateStore.open(db_path)
    try:
        snap = await s.snapshot("shop")
    finally:
        await s.close()
    assert len(snap) == 300_000
    assert snap[keys[1]] == SnapshotEntry(None, True)
    assert snap[keys[-1]] == SnapshotEntry(None, True)
    assert [snap[key] for key in settled] == [SnapshotEntry(n, False) for n in range(len(settled))]


# -- problems, holds, runs ----------------------------------------------------------------------


async def test_a_problem_is_reported_once_until_its_situation_changes(store: StateStore) -> None:
    assert (
        bool(await store.note_problems("shop", [Problem("untracked", "SKU-1", "tracked = false")]))
        is True
    )
    assert (
        bool(await store.note_problems("shop", [Problem("untracked", "SKU-1", "tracked = false")]))
        is False
    )
    assert (
        bool(await store.note_problems("shop", [Problem("untracked", "SKU-1", "other detail")]))
        is True
    )
    assert (
        bool(await store.note_problems("shop", [Problem("rejected", "SKU-1", "other detail")]))
        is True
    )
    assert (
        bool(await store.note_problems("other", [Problem("rejected", "SKU-1", "other detail")]))
        is True
    )
    await store.clear_problems("shop", ["SKU-1"])
    assert (
        bool(await store.note_problems("shop", [Problem("rejected", "SKU-1", "other detail")]))
        is True
    )


async def test_note_problems_returns_only_new_or_changed_ones(store: StateStore) -> None:
    old = Problem("untracked", "SKU-1", "tracked = false")
    await store.note_problems("shop", [old])
    changed = Problem("untracked", "SKU-2", "x")
    bool(await store.note_problems("shop", [Problem("untracked", "SKU-2", "y")]))
    new = Problem("duplicate_sku", "SKU-3", "two variants")
    assert await store.note_problems("shop", [old, changed, new]) == [changed, new]
    assert await store.problems("shop") == {"SKU-1": old, "SKU-2": changed, "SKU-3": new}


async def test_a_hold_lasts_until_released(store: StateStore) -> None:
    assert await store.holds() == {}
    await store.hold("shop", "60 of 100 levels would drop to 0")
    await store.hold("shop", "70 of 100 levels would drop to 0")
    assert await store.holds() == {"shop": "70 of 100 levels would drop to 0"}
    assert await store.release_hold("shop") is True
    assert await store.release_hold("shop") is False
    assert await store.holds() == {}


async def test_last_successful_run_ignores_failed_unfinished_and_other_kinds(
    store: StateStore, clock: FakeClock
) -> None:
    assert await store.last_successful_run("reconcile") is None
    first = await store.start_run("reconcile", None)
    clock.advance(60)
    await store.finish_run(first, ok=True, drift=0)
    ok_at = clock.now
    clock.advance(60)
    failed = await store.start_run("reconcile", "shop")
    clock.advance(60)
    await store.finish_run(failed, ok=False, drift=0, detail="Shopify unreachable")
    await store.start_run("reconcile", "shop")  # never finishes (the process died)
    other = await store.start_run("full_sync", "shop")
    clock.advance(60)
    await store.finish_run(other, ok=True, drift=3)
    assert failed > first
    assert await store.last_successful_run("reconcile") == ok_at
    assert await store.last_successful_run("full_sync") == clock.now


async def test_finishing_an_unknown_run_is_an_error(store: StateStore) -> None:
    with pytest.raises(ValueError, match="no run 42"):
        await store.finish_run(42, ok=True, drift=0)


# -- the catalogue cache ------------------------------------------------------------------------


def variant_row(vid: int, **changes: object) -> KatanaVariantRow:
    fields: dict[str, object] = {
        "id": vid,
        "sku": f"SKU-{vid}",
        "product_id": 7,
        "material_id": None,
        "created_at": T0,
        "updated_at": T0 + timedelta(days=1),
        "deleted_at": None,
    }
    fields.update(changes)
    return KatanaVariantRow(**fields)  # type: ignore[arg-type]


async def test_the_catalogue_round_trips_and_deleted_bom_rows_are_removed(
    store: StateStore,
) -> None:
    variants = [
        variant_row(1),
        variant_row(2, sku=None, product_id=None, material_id=9, deleted_at=T0),
    ]
    items = [
        KatanaItem(7, "product", is_auto_assembly=True, archived=False, updated_at=T0),
        KatanaItem(7, "material", is_auto_assembly=False, archived=True, updated_at=T0),
    ]
    bom = [
        BomRow("b1", 1, 2, Decimal("0.125"), updated_at=T0),
        BomRow("b2", 1, 3, Decimal("2")),
    ]
    await store.save_catalogue(variants, items, bom)
    catalogue = await store.catalogue()
    assert catalogue.variants == {
        1: KatanaVariant(1, "SKU-1", variants[0].created_at, product_id=7, is_kit=True),
        2: KatanaVariant(
            2, None, variants[1].created_at, material_id=9, retired=True, deleted=True
        ),
    }
    assert all(catalogue.holds_item(item) for item in items)
    assert catalogue.bom == {"b1": bom[0], "b2": bom[1]}
    assert catalogue.bom["b1"].quantity == Decimal("0.125")

    renamed = variant_row(1, sku="SKU-1-NEW")
    await store.save_catalogue(
        [renamed],
        [],
        [BomRow("b2", 1, 3, Decimal("2"), deleted=True), BomRow("b3", 4, 1, Decimal(1))],
    )
    catalogue = await store.catalogue()
    assert catalogue.variants[1].sku == "SKU-1-NEW"
    assert set(catalogue.bom) == {"b1", "b3"}
    assert catalogue.kits_using([1]) == {4}


async def test_a_bom_row_without_a_quantity_round_trips(store: StateStore) -> None:
    row = BomRow("b1", 1, 2, None, updated_at=T0)
    await store.save_catalogue([], [], [row])
    assert (await store.catalogue()).bom == {"b1": row}


async def test_an_older_database_is_upgraded_keeping_its_bom_rows(db_path: Path) -> None:
    # The database as the release before the row-variant migration left it.
    mine = next(i for i, m in enumerate(MIGRATIONS) if any("row_variants" in s for s in m))
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path)
    for statement in (s for migration in MIGRATIONS[:mine] for s in migration):
        raw.execute(statement)
    raw.execute(
        "INSERT INTO catalogue_bom VALUES ('b1', 1, 2, '0.5', '2025-03-01T12:00:00.000000+00:00')"
    )
    raw.execute(f"PRAGMA user_version = {mine}")
    raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    raw.commit()
    raw.close()

    store = await StateStore.open(db_path)
    try:
        assert (await store.catalogue()).bom == {
            "b1": BomRow("b1", 1, 2, Decimal("0.5"), updated_at=T0)
        }
        await store.save_catalogue([], [], [BomRow("b2", 1, 3, None)])
        assert set((await store.catalogue()).bom) == {"b1", "b2"}
    finally:
        await store.close()


# -- concurrency --------------------------------------------------------------------------------


async def test_concurrent_tasks_never_interleave_transactions(store: StateStore) -> None:
    async def changes(n: int) -> None:
        await store.record_changes({n: T0}, {f"source-{n}": T0}, ["shop"])

    async def pushes(n: int) -> None:
        item = f"gid://shopify/InventoryItem/{n}"
        await store.mark_in_flight("shop", [(item, LOC)])
        await store.record_pushed("shop", "r", [PushResult(push(item=item, quantity=n), "applied")])

    await asyncio.gather(*(f(n) for n in range(40) for f in (changes, pushes)))
    assert set(await store.dirty("shop")) == set(range(40))
    assert len(await store.cursors()) == 40
    snap = await store.snapshot("shop")
    assert all(
        snap[(f"gid://shopify/InventoryItem/{n}", LOC)] == SnapshotEntry(n, False)
        for n in range(40)
    )


async def test_snapshot_for_some_items_returns_only_their_levels_at_every_location(
    tmp_path: Path,
) -> None:
    store = await StateStore.open(tmp_path / "state.db")
    try:
        keys = [
            (f"gid://shopify/InventoryItem/{i}", f"gid://shopify/Location/{j}")
            for i in range(1200)
            for j in (1, 2)
        ]
        await store.mark_in_flight("eu", keys)
        wanted = {f"gid://shopify/InventoryItem/{i}" for i in range(0, 1200, 2)}

        found = await store.snapshot("eu", wanted)

        assert set(found) == {k for k in keys if k[0] in wanted}
        assert await store.snapshot("eu", []) == {}
    finally:
        await store.close()
