"""The nightly schedule: which run was due, so a missed one runs at start-up."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.sync.reconcile import previous_fire_time


def test_previous_fire_time_is_the_last_scheduled_run_before_now() -> None:
    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    due = previous_fire_time("0 3 * * *", "UTC", now)
    assert due == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def test_previous_fire_time_follows_the_configured_timezone() -> None:
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 02:00 in Berlin: today's 03:00 not yet
    due = previous_fire_time("0 3 * * *", "Europe/Berlin", now)
    assert due is not None
    assert due.astimezone(UTC) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
