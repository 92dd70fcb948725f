"""Recent activity per connection (pushes and sync lag), in bounded per-minute buckets.

Prometheus keeps the long history; the status page needs "the last hour" and "the last hours"
without a Prometheus server. A lag sample costs O(1): it lands in a logarithmic bin of the
current minute's bucket, so memory is bounded by buckets x bins, however busy the shop is.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

BUCKET_SECONDS = 60
# The chart spans six hours; the percentiles the last hour.
KEEP_SECONDS = 6 * 3600
# Lag bins grow by 2^(1/8) (~9 %): a percentile read from a bin's geometric middle is within
# ~4.5 % of the true sample. Bin 0 holds everything under MIN_LAG_SECONDS.
MIN_LAG_SECONDS = 0.1
_BIN_RATIO = 2 ** (1 / 8)
_LOG_RATIO = math.log(_BIN_RATIO)
# Beyond ~2 days every lag shares the last bin (a lag that long is an outage, not a figure).
_MAX_LAG_SECONDS = 2 * 86400.0
_MAX_BIN = 1 + int(math.log(_MAX_LAG_SECONDS / MIN_LAG_SECONDS) / _LOG_RATIO)


def lag_bin(seconds: float) -> int:
    """The bin a lag sample falls into."""
    if not seconds >= MIN_LAG_SECONDS:  # also NaN
        return 0
    if seconds >= _MAX_LAG_SECONDS:  # also infinity, whose log int() cannot take
        return _MAX_BIN
    return 1 + int(math.log(seconds / MIN_LAG_SECONDS) / _LOG_RATIO)


def bin_value(index: int) -> float:
    """The lag a bin stands for: the geometric middle of its range (half the first's)."""
    if index <= 0:
        return MIN_LAG_SECONDS / 2
    low = MIN_LAG_SECONDS * _BIN_RATIO ** (index - 1)
    return low * math.sqrt(_BIN_RATIO)


class _Bucket:
    __slots__ = ("lags", "pushes", "start")

    def __init__(self, start: int) -> None:
        self.start = start  # bucket start, whole seconds since the epoch
        self.pushes = 0
        self.lags: dict[int, int] = {}  # lag bin -> samples


@dataclass(frozen=True, slots=True)
class LagSummary:
    """Lag percentiles over a window; None where the window holds no sample."""

    p50_seconds: float | None
    p99_seconds: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class ActivityPoint:
    """One span of the chart: pushes acknowledged, and the lag of the changes pushed."""

    start: float  # seconds since the epoch
    seconds: float
    pushes: int
    lag_p50_seconds: float | None
    lag_max_seconds: float | None


def _quantile(bins: dict[int, int], total: int, q: float) -> float | None:
    """The q-quantile of binned samples (the bin holding the ceil(q * total)-th sample)."""
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(bins))  # pragma: no cover - rank <= total always lands above


def _merge(buckets: Iterable[_Bucket]) -> tuple[dict[int, int], int, int]:
    bins: dict[int, int] = {}
    pushes = 0
    for bucket in buckets:
        pushes += bucket.pushes
        for index, count in bucket.lags.items():
            bins[index] = bins.get(index, 0) + count
    return bins, sum(bins.values()), pushes


class ActivityWindow:
    """Per-connection pushes and lag samples of the last KEEP_SECONDS, a bucket a minute."""

    def __init__(
        self, *, bucket_seconds: int = BUCKET_SECONDS, keep_seconds: int = KEEP_SECONDS
    ) -> None:
        self.bucket_seconds = bucket_seconds
        self.keep_seconds = keep_seconds
        self._connections: dict[str, deque[_Bucket]] = {}

    def _bucket(self, connection: str, at: float) -> _Bucket:
        buckets = self._connections.setdefault(connection, deque())
        start = int(at // self.bucket_seconds) * self.bucket_seconds
        if buckets and buckets[-1].start >= start:
            # The current bucket, or a sample stamped a little in the past (the engine's clock
            # is read before a push is acknowledged): it counts where the window is now.
            return buckets[-1]
        bucket = _Bucket(start)
        buckets.append(bucket)
        horizon = start - self.keep_seconds
        while buckets[0].start <= horizon:
            buckets.popleft()
        return bucket

    def pushed(self, connection: str, at: float, count: int) -> None:
        """`count` levels of `connection` acknowledged by Shopify at `at` (epoch seconds)."""
        if count:
            self._bucket(connection, at).pushes += count

    def lag(self, connection: str, at: float, seconds: float) -> None:
        """One Katana change of `connection` reached Shopify `seconds` after it happened."""
        lags = self._bucket(connection, at).lags
        index = lag_bin(seconds)
        lags[index] = lags.get(index, 0) + 1

    def _since(self, connection: str, start: float) -> list[_Bucket]:
        return [b for b in self._connections.get(connection, ()) if b.start >= start]

    def lag_summary(self, connection: str, now: float, window: float = 3600.0) -> LagSummary:
        """p50 and p99 of the lag samples of the last `window` seconds."""
        # Whole buckets: the oldest one counted is the one that starts within the window.
        bins, total, _ = _merge(self._since(connection, now - window))
        return LagSummary(_quantile(bins, total, 0.5), _quantile(bins, total, 0.99), total)

    def series(
        self, connection: str, now: float, *, span: float = KEEP_SECONDS, step: float = 600.0
    ) -> list[ActivityPoint]:
        """The last `span` seconds in `step`-long points, oldest first (empty ones included)."""
        step = max(step, self.bucket_seconds)
        count = max(1, math.ceil(span / step))
        end = (now // step + 1) * step  # the current step is the last point
        first = end - count * step
        groups: list[list[_Bucket]] = [[] for _ in range(count)]
        for bucket in self._since(connection, first):
            slot = int((bucket.start - first) // step)
            if 0 <= slot < count:
                groups[slot].append(bucket)
        points = []
        for slot, group in enumerate(groups):
            bins, total, pushes = _merge(group)
            points.append(
                ActivityPoint(
                    start=first + slot * step,
                    seconds=step,
                    pushes=pushes,
                    lag_p50_seconds=_quantile(bins, total, 0.5),
                    lag_max_seconds=bin_value(max(bins)) if bins else None,
                )
            )
        return points
