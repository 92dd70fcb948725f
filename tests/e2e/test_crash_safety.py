"""`kill -9` at any point loses nothing (PRODUCT.md §3): after a restart Shopify converges.

The oracle is recomputed from the simulators' live state, so "converges" means every update
made before, between and after the kills reached Shopify.
"""

from __future__ import annotations

import asyncio
import collections
import random

import pytest

from daemon.domain.models import LevelKey, ShopifyVariant
from daemon.sim.scenario import MAIN_WAREHOUSE
from tests.e2e.conftest import World, wait_until

pytestmark = pytest.mark.e2e

EVENTS_PER_ROUND = 4
# From "still importing Python" to "mid-cycle, several cycles in".
KILL_AFTER_SECONDS = (0.05, 1.5)
# Shopify applies a held request at most this long after it arrived (the faults below hold
# for less), so the daemon reads such levels back this long after a lost answer.
LATE_PUSH_SECONDS = 2.0
HOLD_SECONDS = (0.2, 1.5)
LONG_KILLS = 200


def inject_faults(world: World, rng: random.Random) -> None:
    """Some of: Katana errors and unreadable stock rows; Shopify errors; a push that Shopify
    holds and applies after its sender may have died, past its idempotency key or not."""
    katana, shop = world.katana.faults, world.shop.faults
    if rng.random() < 0.3:
        katana.malformed_next(rng.randint(1, 3), kind=rng.choice(["quantity", "missing_id"]))
    if rng.random() < 0.2:
        katana.fail_next(rng.randint(1, 2))
    if rng.random() < 0.2:
        shop.fail_next(1, status=503)
    if rng.random() < 0.4:
        shop.hold_next_set(1, rng.uniform(*HOLD_SECONDS), dedup=rng.random() < 0.5)


async def kill_at_random_points(
    world: World, rounds: int, seed: int, kill_after: tuple[float, float] = KILL_AFTER_SECONDS
) -> None:
    """Each round: some business and faults, start the daemon, SIGKILL it after a random delay."""
    rng = random.Random(seed)
    world.write_config(late_push_seconds=LATE_PUSH_SECONDS)
    for _ in range(rounds):
        world.apply_events(EVENTS_PER_ROUND)
        inject_faults(world, rng)
        daemon = await world.start_daemon()
        await asyncio.sleep(rng.uniform(*kill_after))
        assert daemon.returncode is None, f"the daemon exited early:\n{daemon.log_tail()}"
        await daemon.kill()


async def ends_right(world: World, kills: int) -> None:
    """A last daemon, no more faults: every level ends equal to Katana's formula, and stays so
    once every held request has landed and been read back."""
    world.katana.faults.clear()
    world.apply_events(EVENTS_PER_ROUND)
    daemon = await world.start_daemon()
    await world.shop.held_applied()
    await world.converged(daemon)
    await asyncio.sleep(LATE_PUSH_SECONDS + 1)  # past any read-back a late request called for
    await world.converged(daemon)
    levels = len(world.scenario.expected_levels())
    wrong = len(world.differences())
    seen = collections.Counter(e for d in world.daemons for e in d.log_events())
    print(
        f"kill loop: {kills} kills, {levels} levels, {wrong} wrong; "
        f"{len(world.shop.set_quantities_keys)} pushes, "
        f"{seen['push_request_resent']} requests re-sent, "
        f"{seen['late_push_corrected']} late-push corrections, "
        f"{seen['katana_row_malformed']} unreadable Katana rows"
    )
    assert wrong == 0


async def test_sigkill_at_random_points_under_faults_loses_nothing(
    world: World, rng_seed: int
) -> None:
    await kill_at_random_points(world, rounds=5, seed=rng_seed)

    await ends_right(world, kills=5)


@pytest.mark.long
@pytest.mark.timeout(1800)
async def test_sigkill_at_random_points_under_faults_loses_nothing_over_many_rounds(
    world: World, rng_seed: int
) -> None:
    # Later kills too: most of these daemons get past start-up and die mid-push.
    await kill_at_random_points(world, rounds=LONG_KILLS, seed=rng_seed, kill_after=(0.3, 3.0))

    await ends_right(world, kills=LONG_KILLS)


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
