"""The systemd watchdog is fed by progress, not merely by a live event loop."""

from __future__ import annotations

import pytest

from daemon.watchdog import Watchdog
from tests.helpers import FakeTime


class Requests:
    """How many API requests have completed (what the daemon reads from its metrics)."""

    def __init__(self) -> None:
        self.done = 0.0

    def __call__(self) -> float:
        return self.done


def test_the_watchdog_stops_being_fed_when_a_cycle_hangs() -> None:
    time, requests = FakeTime(), Requests()
    dog = Watchdog(lambda: None, 60.0, requests, clock=time.clock)
    dog.idle(False)  # a cycle starts, then hangs: no request completes, the loop never turns

    time.now += 119
    assert dog.healthy()
    time.now += 2
    assert not dog.healthy()  # past WatchdogSec (twice the ping interval) without progress


def test_a_long_cycle_that_keeps_completing_requests_keeps_the_watchdog_fed() -> None:
    time, requests = FakeTime(), Requests()
    dog = Watchdog(lambda: None, 60.0, requests, clock=time.clock)
    dog.idle(False)
    for _ in range(100):  # 100 minutes of a full sync, a request a minute
        time.now += 60
        requests.done += 1
        assert dog.healthy()


def test_a_daemon_waiting_for_its_next_poll_is_healthy_however_long_the_interval() -> None:
    time, requests = FakeTime(), Requests()
    dog = Watchdog(lambda: None, 60.0, requests, clock=time.clock)
    dog.idle(True)
    time.now += 3600
    assert dog.healthy()
    dog.idle(False)  # a cycle starts
    time.now += 121
    assert not dog.healthy()


async def test_pings_stop_while_starved() -> None:
    time, requests, pings = FakeTime(), Requests(), []
    sleeps = 0

    async def six_intervals(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps > 6:
            raise TimeoutError  # end the test's run
        await time.sleep(seconds)

    dog = Watchdog(
        lambda: pings.append(time.now), 30.0, requests, clock=time.clock, sleep=six_intervals
    )
    dog.idle(False)

    with pytest.raises(TimeoutError):
        await dog.run()

    assert pings == [30.0]  # fed 30 s into the hung cycle; from 60 s (the timeout) no more
