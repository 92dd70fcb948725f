"""The Shopify cost bucket model: learned from responses, waits before sending, never assumes."""

from __future__ import annotations

import asyncio

import pytest

from daemon.shopify.pacing import CostBucket, ThrottleStatus, parse_cost, throttle_wait
from tests.helpers import FakeTime


def bucket(time: FakeTime) -> CostBucket:
    return CostBucket(clock=time.clock, sleep=time.sleep)


async def test_an_unobserved_bucket_lets_the_first_query_through_without_waiting() -> None:
    time = FakeTime()
    pacer = bucket(time)

    assert await pacer.reserve(999) == 0.0
    assert time.sleeps == []
    assert pacer.available() is None


async def test_a_low_bucket_waits_until_restored_to_the_query_cost() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=100, restore_rate=50))

    waited = await pacer.reserve(300)

    assert waited == pytest.approx(4.0)
    assert time.sleeps == [pytest.approx(4.0)]


async def test_a_bucket_holding_the_cost_sends_at_once() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=300, restore_rate=50))

    assert await pacer.reserve(300) == 0.0
    assert time.sleeps == []


def test_the_bucket_refills_at_restore_rate_since_the_last_observation_up_to_its_size() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=2000, currently_available=100, restore_rate=50))

    time.now += 2
    assert pacer.available() == pytest.approx(200)
    time.now += 1000
    assert pacer.available() == pytest.approx(2000)


def test_a_new_observation_replaces_the_modelled_level() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=900, restore_rate=100))
    time.now += 1
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=50, restore_rate=100))

    assert pacer.available() == pytest.approx(50)
    assert pacer.status == ThrottleStatus(1000, 50, 100)


async def test_each_reservation_is_debited_so_concurrent_queries_wait_for_the_refill() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(
        ThrottleStatus(maximum_available=1000, currently_available=1000, restore_rate=100)
    )

    waits = await asyncio.gather(pacer.reserve(400), pacer.reserve(400), pacer.reserve(400))

    # 1000 covers two; the third needs 400 with 200 left: 2 s at 100 points/s.
    assert list(waits) == [0.0, 0.0, pytest.approx(2.0)]
    assert time.sleeps == [pytest.approx(2.0)]


async def test_an_answer_does_not_forget_the_queries_still_in_flight() -> None:
    # Four pushes of 10 points reserved at once; the first answer reports the bucket as Shopify
    # saw it when only that push was charged (30 left). The other three are charged on arrival,
    # so the model must not believe 30 points are free.
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=40, restore_rate=100))
    await asyncio.gather(*(pacer.reserve(10) for _ in range(4)))

    pacer.settle(10)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=30, restore_rate=100))

    assert pacer.available() == pytest.approx(0.0)
    assert await pacer.reserve(10) == pytest.approx(0.1)


async def test_a_settled_query_no_longer_holds_back_the_bucket() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=50, restore_rate=100))
    await pacer.reserve(10)
    pacer.settle(10)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=40, restore_rate=100))
    assert pacer.available() == pytest.approx(40.0)


async def test_a_query_that_fails_still_stops_holding_back_the_bucket() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=50, restore_rate=100))
    with pytest.raises(TimeoutError):
        async with pacer.spend(10):
            raise TimeoutError
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=40, restore_rate=100))
    assert pacer.available() == pytest.approx(40.0)


async def test_waiting_reservations_are_served_in_arrival_order() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=1000, currently_available=0, restore_rate=100))
    served: list[str] = []

    async def send(name: str, cost: float) -> None:
        await pacer.reserve(cost)
        served.append(name)

    await asyncio.gather(send("expensive", 800), send("cheap", 10))

    assert served == ["expensive", "cheap"]


async def test_a_query_larger_than_the_bucket_waits_only_for_a_full_bucket() -> None:
    time = FakeTime()
    pacer = bucket(time)
    pacer.observe(ThrottleStatus(maximum_available=500, currently_available=0, restore_rate=100))

    waited = await pacer.reserve(800)

    assert waited == pytest.approx(5.0)


def test_throttle_wait_is_requested_minus_available_over_restore_rate() -> None:
    status = ThrottleStatus(maximum_available=1000, currently_available=102, restore_rate=100)

    assert throttle_wait(502, status) == pytest.approx(4.0)
    assert throttle_wait(50, status) == 0.0


def test_parse_cost_reads_the_throttle_status_of_a_response() -> None:
    extensions = {
        "cost": {
            "requestedQueryCost": 502,
            "actualQueryCost": 41,
            "throttleStatus": {
                "maximumAvailable": 2000.0,
                "currentlyAvailable": 1959,
                "restoreRate": 100.0,
            },
        }
    }

    cost = parse_cost(extensions)

    assert cost is not None
    assert cost.requested == 502
    assert cost.actual == 41
    assert cost.throttle_status == ThrottleStatus(2000.0, 1959.0, 100.0)


@pytest.mark.parametrize(
    "throttle",
    [
        {"maximumAvailable": 1000, "currentlyAvailable": 10, "restoreRate": 0},
        {"maximumAvailable": 0, "currentlyAvailable": 0, "restoreRate": 50},
        {"maximumAvailable": 1000, "currentlyAvailable": "10", "restoreRate": 50},
        {"maximumAvailable": 1000, "restoreRate": 50},
        {"maximumAvailable": True, "currentlyAvailable": 10, "restoreRate": 50},
    ],
)
def test_an_unusable_throttle_status_is_not_modelled(throttle: dict[str, object]) -> None:
    cost = parse_cost({"cost": {"requestedQueryCost": 10, "throttleStatus": throttle}})

    assert cost is not None
    assert cost.throttle_status is None


@pytest.mark.parametrize("extensions", [None, {}, {"cost": None}, "cost"])
def test_a_response_without_cost_extensions_has_no_cost(extensions: object) -> None:
    assert parse_cost(extensions) is None
