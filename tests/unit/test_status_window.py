"""The status page's recent-activity window: bounded buckets, lag percentiles, chart series."""

from __future__ import annotations

import math
import random

from daemon.status.window import (
    BUCKET_SECONDS,
    KEEP_SECONDS,
    ActivityWindow,
    bin_value,
    lag_bin,
)

NOW = 1_800_000_000.0  # a whole hour, so bucket and step boundaries are easy to reason about


def exact_quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_lag_percentiles_over_the_last_hour_are_within_five_percent_of_the_samples() -> None:
    rng = random.Random(4)
    window = ActivityWindow()
    samples = [rng.lognormvariate(1.5, 1.0) for _ in range(5000)]
    for n, lag in enumerate(samples):
        window.lag("eu", NOW - 3500 + n * 0.5, lag)

    summary = window.lag_summary("eu", NOW)

    assert summary.samples == 5000
    assert summary.p50_seconds is not None
    assert summary.p99_seconds is not None
    assert math.isclose(summary.p50_seconds, exact_quantile(samples, 0.5), rel_tol=0.05)
    assert math.isclose(summary.p99_seconds, exact_quantile(samples, 0.99), rel_tol=0.05)


def test_lag_samples_older_than_the_hour_leave_the_percentiles() -> None:
    window = ActivityWindow()
    window.lag("eu", NOW - 2 * 3600, 900.0)
    window.lag("eu", NOW - 60, 2.0)

    summary = window.lag_summary("eu", NOW)

    assert summary.samples == 1
    assert summary.p99_seconds is not None
    assert math.isclose(summary.p99_seconds, 2.0, rel_tol=0.05)


def test_a_connection_without_lag_samples_has_no_percentiles() -> None:
    summary = ActivityWindow().lag_summary("eu", NOW)

    assert (summary.p50_seconds, summary.p99_seconds, summary.samples) == (None, None, 0)


def test_connections_keep_their_own_activity() -> None:
    window = ActivityWindow()
    window.lag("eu", NOW, 1.0)
    window.pushed("us", NOW, 7)

    assert window.lag_summary("us", NOW).samples == 0
    assert sum(p.pushes for p in window.series("eu", NOW)) == 0
    assert sum(p.pushes for p in window.series("us", NOW)) == 7


def test_memory_is_bounded_by_buckets_and_bins_however_many_samples_arrive() -> None:
    rng = random.Random(9)
    window = ActivityWindow()
    # Seven hours of a busy shop: 10 samples a second.
    start = NOW - 7 * 3600
    for n in range(7 * 3600 * 10):
        at = start + n / 10
        window.lag("eu", at, rng.expovariate(0.1) * 100)
        window.pushed("eu", at, 3)

    buckets = window._connections["eu"]
    assert len(buckets) <= KEEP_SECONDS // BUCKET_SECONDS + 1
    assert max(len(b.lags) for b in buckets) <= lag_bin(math.inf) + 1
    assert buckets[0].start > NOW - KEEP_SECONDS - BUCKET_SECONDS


def test_a_sample_stamped_before_the_newest_bucket_counts_in_the_newest_bucket() -> None:
    window = ActivityWindow()
    window.pushed("eu", NOW, 1)
    window.pushed("eu", NOW - 120, 2)  # a clock read before the previous sample's

    assert len(window._connections["eu"]) == 1
    assert window._connections["eu"][0].pushes == 3


def test_series_counts_pushes_per_step_and_keeps_empty_steps() -> None:
    window = ActivityWindow()
    window.pushed("eu", NOW - 3 * 600 + 5, 4)
    window.pushed("eu", NOW - 3 * 600 + 300, 6)
    window.lag("eu", NOW - 3 * 600 + 300, 12.0)
    window.pushed("eu", NOW + 10, 1)

    points = window.series("eu", NOW + 10, span=3600, step=600)

    assert len(points) == 6
    assert [p.start for p in points] == [NOW - 5 * 600 + n * 600 for n in range(6)]
    assert [p.pushes for p in points] == [0, 0, 10, 0, 0, 1]
    assert points[2].lag_p50_seconds is not None
    assert math.isclose(points[2].lag_p50_seconds, 12.0, rel_tol=0.05)
    assert points[0].lag_p50_seconds is None
    assert points[0].lag_max_seconds is None


def test_lag_bins_cover_zero_nan_and_huge_lags() -> None:
    assert lag_bin(0.0) == 0
    assert lag_bin(math.nan) == 0
    assert lag_bin(10**9) == lag_bin(math.inf)
    for lag in (0.1, 0.37, 1.0, 42.0, 3600.0):
        assert math.isclose(bin_value(lag_bin(lag)), lag, rel_tol=0.05)
