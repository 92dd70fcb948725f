"""The benchmark's arithmetic (floors, lag attribution) and a smoke run of `python -m bench`.

Timings are never asserted here: the smoke run only proves the bench runs end to end against
the real daemon and prints every figure of the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.floors import (
    KatanaJob,
    ShopifyJob,
    best_quantities_per_call,
    katana_floor_seconds,
    shopify_floor_seconds,
    sync_floor,
)
from bench.lag import LagTracker, percentile
from bench.report import FIGURE_LABELS

ROOT = Path(__file__).resolve().parents[2]
A = ("gid://shopify/InventoryItem/1", "gid://shopify/Location/1")
B = ("gid://shopify/InventoryItem/1", "gid://shopify/Location/2")


@dataclass(frozen=True)
class Change:
    """A level change as Shopify's simulator records it."""

    at: float
    item: str
    location: str
    after: int


def applied(at: float, key: tuple[str, str], after: int) -> Change:
    return Change(at, key[0], key[1], after)


# ---- floors ------------------------------------------------------------------------------


def test_katana_floor_is_zero_while_the_burst_covers_every_request() -> None:
    assert katana_floor_seconds(60, 60) == 0.0
    assert katana_floor_seconds(0, 60) == 0.0


def test_katana_floor_counts_one_window_per_budget_beyond_the_burst() -> None:
    assert katana_floor_seconds(61, 60) == 60.0
    assert katana_floor_seconds(197, 60) == 180.0
    assert katana_floor_seconds(197, 180) == 60.0


def test_shopify_floor_spends_the_full_bucket_before_waiting_on_the_restore_rate() -> None:
    assert shopify_floor_seconds(900, 1000, 100) == 0.0
    assert shopify_floor_seconds(20_106, 1000, 100) == pytest.approx(191.06)


def test_a_cold_sync_pages_every_list_and_polls_every_source_once() -> None:
    job = KatanaJob(
        variants=10_001,
        products=4_000,
        materials=500,
        bom_rows=0,
        locations=3,
        inventory_rows=30_000,
        delta_sources=11,
    )
    # 41 + 16 + 2 + 1 (an empty list still costs a request) + 1 + 120 + 11
    assert job.requests == 192


def test_shopify_points_are_the_catalogue_plus_ten_per_full_batch() -> None:
    assert ShopifyJob(catalogue_points=1000, pairs=501).points == 1030


def test_the_full_sync_floor_is_the_slower_api_with_both_budgets_spent_at_once() -> None:
    floor = sync_floor(
        KatanaJob(1, 1, 1, 1, 1, 1, 11),  # 17 requests: inside a 60-request burst
        ShopifyJob(catalogue_points=2_000, pairs=250),
        katana_requests_per_minute=10,
        shopify_bucket_size=1000,
        shopify_restore_rate=100,
    )
    assert floor.katana_seconds == 60.0
    assert floor.shopify_seconds == pytest.approx(10.1)
    assert floor.seconds == 60.0
    assert floor.bound_by == "Katana rate"
    assert floor.serial_seconds == pytest.approx(70.1)


def test_the_best_batch_mean_spreads_pairs_over_the_fewest_calls() -> None:
    assert best_quantities_per_call(500) == 250
    assert best_quantities_per_call(501) == pytest.approx(167.0)
    assert best_quantities_per_call(0) == 0


# ---- lag attribution ---------------------------------------------------------------------


def test_an_event_that_changes_no_level_is_diff_suppressed_and_not_measured() -> None:
    tracker = LagTracker.starting_from({A: 5})
    assert tracker.record(10.0, {A: 5}) is False
    report = tracker.report([applied(11.0, A, 5)])
    assert (report.lags, report.suppressed, report.unsynced) == ((), 1, 0)


def test_an_events_lag_is_that_of_its_slowest_level() -> None:
    tracker = LagTracker.starting_from({A: 5, B: 5})
    tracker.record(10.0, {A: 4, B: 4})
    report = tracker.report([applied(12.0, A, 4), applied(13.5, B, 4)])
    assert report.lags == (3.5,)


def test_a_later_events_value_catches_up_an_earlier_event_too() -> None:
    tracker = LagTracker.starting_from({A: 5})
    tracker.record(10.0, {A: 4})
    tracker.record(11.0, {A: 3})
    report = tracker.report([applied(14.0, A, 3)])
    assert report.lags == (4.0, 3.0)


def test_a_push_of_a_value_from_before_the_event_does_not_catch_it_up() -> None:
    tracker = LagTracker.starting_from({A: 5})
    tracker.record(10.0, {A: 4})
    report = tracker.report([applied(9.0, A, 4), applied(12.0, A, 5)])
    assert (report.lags, report.unsynced) == ((), 1)


def test_a_level_shopify_already_shows_is_not_waited_for() -> None:
    # A storefront order lowers Shopify at once; Katana's formula then agrees without a push.
    tracker = LagTracker.starting_from({A: 5, B: 5})
    tracker.record(10.0, {A: 4}, shown={A: 4})
    tracker.record(20.0, {A: 3, B: 3}, shown={A: 3, B: 5})
    report = tracker.report([applied(22.0, B, 3)])
    assert (report.lags, report.shown, report.unsynced) == ((2.0,), 1, 0)


def test_a_change_undone_before_any_push_is_caught_up_by_what_shopify_shows() -> None:
    tracker = LagTracker.starting_from({A: 5})
    tracker.record(10.0, {A: 4}, shown={A: 5})
    tracker.record(11.0, {A: 5}, shown={A: 5})
    report = tracker.report([])
    assert (report.lags, report.unsynced) == ((1.0,), 0)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) is None


# ---- the real thing, tiny ----------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_the_bench_runs_the_real_daemon_and_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    for label in FIGURE_LABELS.values():
        matching = [row for row in rows if row.startswith(f"| {label} |")]
        assert len(matching) == 1, f"no row for {label!r} in:\n{result.stdout}"
        measured = matching[0].split(" | ")[1]
        assert measured != "—", f"{label!r} was not measured:\n{result.stdout}"
