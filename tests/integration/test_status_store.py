"""The store's read-only queries behind the status page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from daemon.store import StateStore
from daemon.sync.reconcile import NIGHTLY

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def test_dirty_count_of_one_connection_counts_only_its_outbox(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path / "state.db")
    try:
        await store.record_changes({1: AT, 2: AT}, {}, ["eu", "us"])
        await store.record_changes({3: AT}, {}, ["us"])
        assert await store.dirty_count("eu") == 2
        assert await store.dirty_count("us") == 3
        assert await store.dirty_count() == 3
    finally:
        await store.close()


async def test_hold_times_keep_when_a_connection_was_first_held(tmp_path: Path) -> None:
    clock = iter([AT, AT.replace(hour=13)])
    store = await StateStore.open(tmp_path / "state.db", clock=lambda: next(clock))
    try:
        await store.hold("eu", "60 of 100 levels would drop to 0")
        await store.hold("eu", "70 of 100 levels would drop to 0")
        assert await store.hold_times() == {"eu": AT}
        await store.release_hold("eu")
        assert await store.hold_times() == {}
    finally:
        await store.close()


async def test_last_run_is_the_latest_finished_run_covering_the_connection(
    tmp_path: Path,
) -> None:
    store = await StateStore.open(tmp_path / "state.db")
    try:
        assert await store.last_run(NIGHTLY, "eu") is None
        everyone = await store.start_run(NIGHTLY, None)
        await store.finish_run(everyone, ok=True, drift=3)
        only_us = await store.start_run(NIGHTLY, "us")
        await store.finish_run(only_us, ok=False, drift=1, detail="Shopify unreachable")
        await store.start_run(NIGHTLY, "eu")  # still running: not finished

        eu = await store.last_run(NIGHTLY, "eu")
        us = await store.last_run(NIGHTLY, "us")
    finally:
        await store.close()

    assert eu is not None
    assert (eu.connection, eu.ok, eu.drift) == (None, True, 3)
    assert us is not None
    assert (us.connection, us.ok, us.drift, us.detail) == ("us", False, 1, "Shopify unreachable")
    assert us.finished_at >= us.started_at
