"""The process-wide Katana request limiter, on a fake clock (no real sleeping)."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from daemon.katana.ratelimit import RateLimiter

EPOCH = 1_700_000_000.0  # a plausible "now" in epoch seconds
T = TypeVar("T")


class FakeTime:
    """Virtual time: one clock serving as both the monotonic and the wall clock.

    `sleep` parks the caller until `run` advances the clock to its deadline; `run` moves time
    only when every task is parked, so concurrent sleepers wake in deadline order at the time
    they asked for, as on a real event loop.
    """

    def __init__(self, start: float = EPOCH) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._parked: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._parked, (self.now + max(seconds, 0.0), next(self._seq), wake))
        await wake

    async def run(self, work: Awaitable[T], progress: Callable[[], object] = lambda: None) -> T:
        """Run `work` to completion, advancing virtual time whenever everything is parked.

        "Everything is parked" = 20 event-loop turns in a row without a new sleep or a change
        in `progress` (the caller's own record of work done, e.g. the number of starts).
        """
        task = asyncio.ensure_future(work)
        idle_turns, seen = 0, None
        for _ in range(1_000_000):
            await asyncio.sleep(0)
            if task.done():
                return task.result()
            now_seen = (len(self.sleeps), progress())
            idle_turns = idle_turns + 1 if now_seen == seen else 0
            seen = now_seen
            if idle_turns < 20:
                continue
            while self._parked and self._parked[0][2].done():  # cancelled sleepers
                heapq.heappop(self._parked)
            assert self._parked, "work is blocked on something other than the fake clock"
            deadline, _, wake = heapq.heappop(self._parked)
            self.now = max(self.now, deadline)
            wake.set_result(None)
            idle_turns = 0
        raise AssertionError("virtual time did not converge")


def limiter(
    time: FakeTime, budget: int = 60, *, slack: float = 1.0, window: float = 60.0
) -> RateLimiter:
    return RateLimiter(
        budget, window=window, slack=slack, clock=time.clock, wall=time.clock, sleep=time.sleep
    )


async def start(limit: RateLimiter) -> None:
    """One request, answered the moment it is sent."""
    async with limit.request():
        pass


def most_in_any_window(starts: list[float], window: float) -> int:
    ordered = sorted(starts)
    return max(
        bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)
    )  # starts in [t, t + window)


async def test_concurrent_callers_never_start_more_than_the_budget_in_any_60_second_window() -> (
    None
):
    time = FakeTime()
    limit = limiter(time, budget=60)
    starts: list[float] = []

    async def caller() -> None:
        for _ in range(9):
            await start(limit)
            starts.append(time.now)

    await time.run(asyncio.gather(*(caller() for _ in range(20))), progress=starts.__len__)

    assert len(starts) == 180
    assert most_in_any_window(starts, 60.0) <= 60
    # ...and it does not starve either: three full budgets need just two window waits.
    assert max(starts) - EPOCH <= 2 * 61.0 + 1e-6


async def test_a_full_budget_starts_at_once_without_waiting() -> None:
    time = FakeTime()
    limit = limiter(time, budget=5)
    for _ in range(5):
        await start(limit)
    assert time.sleeps == []
    assert time.now == EPOCH


async def test_the_request_after_the_budget_waits_until_the_oldest_start_leaves_the_window() -> (
    None
):
    time = FakeTime()
    limit = limiter(time, budget=3, slack=1.0)
    for _ in range(3):
        await start(limit)
        time.now += 10.0  # starts at +0, +10, +20
    await time.run(start(limit))  # now +30: the +0 start leaves the 61 s window at +61
    assert time.now - EPOCH == pytest.approx(61.0)


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateLimiter(0)


@pytest.mark.parametrize(
    ("reset", "expected_wait"),
    [
        pytest.param(str(int((EPOCH + 30) * 1000)), 30.0, id="epoch-milliseconds"),
        pytest.param(str(int(EPOCH + 30)), 30.0, id="epoch-seconds"),
        pytest.param("12", 12.0, id="seconds-until-reset"),
        pytest.param(str(EPOCH + 42.5), 42.5, id="fractional-epoch-seconds"),
    ],
)
async def test_remaining_zero_blocks_every_caller_until_the_reset(
    reset: str, expected_wait: float
) -> None:
    time = FakeTime()
    limit = limiter(time, budget=60)
    limit.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": reset})

    await time.run(asyncio.gather(start(limit), start(limit)))

    assert time.now - EPOCH == pytest.approx(expected_wait)


async def test_remaining_above_zero_does_not_block() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.observe({"X-Ratelimit-Remaining": "3", "X-Ratelimit-Reset": str(int(EPOCH + 30))})
    await time.run(start(limit))
    assert time.sleeps == []


async def test_ratelimit_headers_are_read_case_insensitively() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "5"})
    await time.run(start(limit))
    assert time.now - EPOCH == pytest.approx(5)


async def test_a_reset_in_the_past_does_not_block() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(EPOCH - 10))})
    await time.run(start(limit))
    assert time.sleeps == []


async def test_a_reset_far_ahead_is_capped_at_one_window_against_clock_skew() -> None:
    time = FakeTime()
    limit = limiter(time, slack=1.0)
    limit.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(EPOCH + 3600))})
    await time.run(start(limit))
    assert time.now - EPOCH == pytest.approx(61.0)


async def test_remaining_zero_without_a_reset_waits_one_window() -> None:
    time = FakeTime()
    limit = limiter(time, slack=1.0)
    limit.observe({"X-Ratelimit-Remaining": "0"})
    await time.run(start(limit))
    assert time.now - EPOCH == pytest.approx(61.0)


async def test_unreadable_ratelimit_headers_are_ignored() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.observe({"X-Ratelimit-Remaining": "soon", "X-Ratelimit-Reset": "later"})
    await time.run(start(limit))
    assert time.sleeps == []


async def test_pause_holds_every_caller_for_the_given_seconds() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.pause(7.0)
    await time.run(asyncio.gather(start(limit), start(limit), start(limit)))
    assert time.now - EPOCH == pytest.approx(7.0)


async def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.pause(20.0)
    limit.pause(5.0)
    await time.run(start(limit))
    assert time.now - EPOCH == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Ratelimit-Reset": str(int((EPOCH + 9) * 1000))}, 9.0),
        ({"X-Ratelimit-Reset": str(int(EPOCH + 9))}, 9.0),
        ({"X-Ratelimit-Reset": "9"}, 9.0),
        ({"X-Ratelimit-Reset": "nonsense"}, None),
        ({}, None),
    ],
)
def test_seconds_until_reset_detects_milliseconds_seconds_and_relative_values(
    headers: dict[str, str], expected: float | None
) -> None:
    time = FakeTime()
    assert limiter(time).seconds_until_reset(headers) == (
        None if expected is None else pytest.approx(expected)
    )


async def test_a_cancelled_waiter_does_not_block_the_others() -> None:
    time = FakeTime()
    limit = limiter(time)
    limit.pause(10.0)
    blocked = asyncio.ensure_future(start(limit))
    for _ in range(5):
        await asyncio.sleep(0)
    assert time.sleeps == [pytest.approx(10.0)]  # parked inside the limiter, holding its lock
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await time.run(start(limit))
    assert time.now - EPOCH == pytest.approx(10.0)


async def test_a_request_counts_in_the_window_from_when_its_answer_arrived() -> None:
    # Katana counts a request when it arrives, which can be as late as its answer: a slow
    # request's place frees one window after the answer, not after the start.
    time = FakeTime()
    limit = limiter(time, budget=2, slack=1.0)

    async def slow() -> None:
        async with limit.request():
            await time.sleep(30.0)  # sent at +0, answered at +30

    await time.run(asyncio.gather(slow(), start(limit)))  # the second is answered at +0
    await time.run(start(limit))  # waits for the +0 answer to leave: +61
    assert time.now - EPOCH == pytest.approx(61.0)
    await time.run(start(limit))  # waits for the +30 answer to leave: +91
    assert time.now - EPOCH == pytest.approx(91.0)


async def test_requests_in_flight_hold_their_places_until_answered() -> None:
    time = FakeTime()
    limit = limiter(time, budget=2, slack=1.0)
    starts: list[float] = []

    async def request(seconds: float) -> None:
        async with limit.request():
            starts.append(time.now)
            await time.sleep(seconds)

    # Two requests take the whole budget for 10 s and 20 s; the third may start only when the
    # first answer (+10) has left the window: +71.
    await time.run(
        asyncio.gather(request(10.0), request(20.0), request(0.0)), progress=starts.__len__
    )
    assert [at - EPOCH for at in starts] == [0.0, 0.0, pytest.approx(71.0)]


async def test_queued_arrivals_never_exceed_the_budget_in_any_window() -> None:
    # 20 callers, each request delayed by a varying "connection queue" before it arrives and
    # answered right after: arrivals, not starts, must respect the budget.
    time = FakeTime()
    limit = limiter(time, budget=30)
    arrivals: list[float] = []

    async def caller(n: int) -> None:
        for i in range(6):
            async with limit.request():
                await time.sleep((n * 7 + i * 3) % 11 * 0.5)  # queued 0-5 s
                arrivals.append(time.now)

    await time.run(asyncio.gather(*(caller(n) for n in range(20))), progress=arrivals.__len__)

    assert len(arrivals) == 120
    assert most_in_any_window(arrivals, 60.0) <= 30
