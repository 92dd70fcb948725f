"""The real daemon keeps the simulated Shopify equal to Katana's formula, through faults.

Every convergence check compares Shopify's live levels with `Scenario.expected_levels()`, an
oracle written from PRODUCT.md §1 that shares no code with the daemon.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import World, wait_until

pytestmark = pytest.mark.e2e


async def test_daemon_converges_shopify_to_the_seed_formula(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)

    world.apply_events(15)
    assert world.differences(), "the events should have changed some desired levels"
    await world.apply_events_over(15, seconds=1.5)  # while cycles run

    await world.converged(daemon)


async def test_unchanged_catalogue_costs_no_shopify_writes(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)
    await daemon.wait_ready()
    # The cycle after the full sync confirms, once, the variants whose Katana changes it read
    # while the full sync ran (the whole catalogue here, built just before the start).
    settled = await daemon.metric("stocksync_poll_cycles_total", result="success")
    await daemon.wait_metric(
        "stocksync_poll_cycles_total",
        lambda done: done >= settled + 1,
        what="the cycle after the full sync",
        result="success",
    )
    cycles = await daemon.metric("stocksync_poll_cycles_total", result="success")
    writes = world.set_calls()

    await daemon.wait_metric(
        "stocksync_poll_cycles_total",
        lambda done: done >= cycles + 3,
        what="3 more successful cycles",
        result="success",
    )

    assert world.set_calls() == writes
    assert not world.differences()


async def test_readyz_turns_503_during_a_katana_outage_and_daemon_catches_up(
    world: World,
) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)
    await daemon.wait_ready()

    world.katana.faults.outage = True
    world.apply_events(10)

    async def unready() -> bool:
        return await daemon.status("/readyz") == 503

    # Unready once the last success is older than 3 poll intervals (1 s each).
    await wait_until(unready, within=10, what="/readyz 503 during the outage", daemon=daemon)
    assert await daemon.status("/healthz") == 200  # alive, only not ready
    world.apply_events(10)
    world.katana.faults.outage = False

    await world.converged(daemon)
    await daemon.wait_ready()
    assert await daemon.metric("stocksync_api_requests_total", api="katana", status="503") > 0


async def test_failed_cycle_is_counted_and_the_next_one_catches_up(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)
    errors = await daemon.metric("stocksync_poll_cycles_total", result="error")

    # A refused key is not retried within the cycle (unlike 5xx): the cycle fails at once.
    world.katana.faults.fail_next(3, status=401)
    world.apply_events(10)

    await daemon.wait_metric(
        "stocksync_poll_cycles_total",
        lambda n: n > errors,
        what="a failed cycle to be counted",
        result="error",
    )
    await world.converged(daemon)


async def test_shopify_throttled_storm_loses_no_update(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)

    world.shop.faults.throttle_next(40)
    await world.apply_events_over(20, seconds=1.0)

    await world.converged(daemon, within=40)
    assert world.shop.throttled_total >= 40
    assert await daemon.metric("stocksync_api_throttled_total", api="shopify") > 0
