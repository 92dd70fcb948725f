"""`kill -9` at any point loses nothing (PRODUCT.md §3): after a restart Shopify converges.

The oracle is recomputed from the simulators' live state, so "converges" means every update
made before, between and after the kills reached Shopify.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from daemon.domain.models import LevelKey, ShopifyVariant
from daemon.sim.scenario import MAIN_WAREHOUSE
from tests.e2e.conftest import World, wait_until

pytestmark = pytest.mark.e2e

EVENTS_PER_ROUND = 4
# From "still importing Python" to "mid-cycle, several cycles in".
KILL_AFTER_SECONDS = (0.05, 1.5)


async def kill_at_random_points(world: World, rounds: int, seed: int) -> None:
    """Each round: some business, start the daemon, SIGKILL it after a random delay."""
    rng = random.Random(seed)
    for _ in range(rounds):
        world.apply_events(EVENTS_PER_ROUND)
        daemon = await world.start_daemon()
        await asyncio.sleep(rng.uniform(*KILL_AFTER_SECONDS))
        assert daemon.returncode is None, f"the daemon exited early:\n{daemon.log_tail()}"
        await daemon.kill()


async def test_sigkill_at_random_points_loses_nothing(world: World, rng_seed: int) -> None:
    await kill_at_random_points(world, rounds=5, seed=rng_seed)
    world.apply_events(EVENTS_PER_ROUND)

    daemon = await world.start_daemon()

    await world.converged(daemon)


@pytest.mark.long
async def test_sigkill_at_random_points_loses_nothing_over_many_rounds(
    world: World, rng_seed: int
) -> None:
    await kill_at_random_points(world, rounds=25, seed=rng_seed)
    world.apply_events(EVENTS_PER_ROUND)

    daemon = await world.start_daemon()

    await world.converged(daemon)


def fanned_out_variant(world: World) -> tuple[int, ShopifyVariant, list[LevelKey]]:
    """A plain synced variant with stock to spare at the warehouse that feeds two locations."""
    scenario, katana = world.scenario, world.katana
    main = katana.location_id(MAIN_WAREHOUSE)
    shopify_locations = scenario.location_mapping[MAIN_WAREHOUSE]
    for katana_id, target in scenario.feeds():
        keys = [(target.inventory_item_id, location) for location in shopify_locations]
        if (
            katana_id in scenario.standard
            and katana_id not in scenario.components  # no kit moves with it
            and target.tracked
            and all(world.shop.available(*key) is not None for key in keys)
            and scenario.desired_quantity(katana_id, main) > 0
        ):
            return katana_id, target, keys
    raise AssertionError("the scenario has no plain variant fanned out to two locations")


async def test_kill_between_push_and_commit_converges(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)
    variant, _, keys = fanned_out_variant(world)
    main = world.katana.location_id(MAIN_WAREHOUSE)
    before = {key: world.level(key) for key in keys}

    # Shopify applies the push, but its answer never reaches the daemon, which then dies: the
    # pairs are marked in flight and the snapshot still holds the old quantity.
    world.shop.hold_set_answers = True
    world.katana.adjust_stock(variant, main, 5)
    await wait_until(
        world.shop.answer_held.is_set, within=10, what="the push to be applied", daemon=daemon
    )
    assert {key: world.level(key) for key in keys} == {key: before[key] + 5 for key in keys}
    await daemon.kill()
    world.shop.release()
    # Katana returns to the quantity the snapshot remembers: only the in-flight mark tells the
    # daemon that Shopify may show something else.
    world.katana.adjust_stock(variant, main, -5)
    assert {key for key, _, _ in world.differences()} == set(keys)

    restarted = await world.start_daemon()

    await world.converged(restarted)
    assert {key: world.level(key) for key in keys} == before
