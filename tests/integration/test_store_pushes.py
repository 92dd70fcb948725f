"""The store's record of push requests and parked levels (PRODUCT.md §3), on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.domain.models import PlannedPush, PushRequest, PushResult
from daemon.store import StateStore

T0 = datetime(2026, 12, 1, tzinfo=UTC)
ITEM, OTHER, LOC = "gid://shopify/InventoryItem/1", "gid://shopify/InventoryItem/2", "L1"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[StateStore]:
    opened = await StateStore.open(tmp_path / "state.db", clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


def push(item: str, quantity: int, change_from: int | None = None) -> PlannedPush:
    return PlannedPush(7, "SKU", item, LOC, quantity, change_from)


def request(key: str, *pushes: PlannedPush) -> PushRequest:
    variables = {
        "input": {"quantities": [{"inventoryItemId": p.inventory_item_id} for p in pushes]},
        "key": key,
    }
    return PushRequest(key, variables, pushes)


def applied(p: PlannedPush) -> PushResult:
    return PushResult(push=p, status="applied")


async def test_a_request_is_recorded_with_its_key_and_exact_variables_before_it_is_sent(
    store: StateStore,
) -> None:
    sent = request("key-1", push(ITEM, 5), push(OTHER, 6, change_from=2))

    request_id = await store.begin_request("shop", sent)

    [pending] = await store.pending_requests("shop")
    assert pending.id == request_id
    assert pending.request == sent
    assert not pending.lost
    snapshot = await store.snapshot("shop")
    assert snapshot[(ITEM, LOC)].in_flight
    assert snapshot[(OTHER, LOC)].in_flight


async def test_in_flight_mark_is_cleared_only_by_the_request_that_set_it(
    store: StateStore,
) -> None:
    older = await store.begin_request("shop", request("old", push(ITEM, 5)))
    newer = await store.begin_request("shop", request("new", push(ITEM, 6)))

    await store.record_pushed("shop", "run", [applied(push(ITEM, 5))], request_id=older)

    entry = (await store.snapshot("shop"))[(ITEM, LOC)]
    assert entry.in_flight  # still waiting for the newer request's answer
    await store.record_pushed("shop", "run", [applied(push(ITEM, 6))], request_id=newer)
    entry = (await store.snapshot("shop"))[(ITEM, LOC)]
    assert (entry.quantity, entry.in_flight) == (6, False)
    assert await store.pending_requests("shop") == []


async def test_next_attempt_replaces_what_is_resent_and_levels_without_answer_are_released(
    store: StateStore,
) -> None:
    request_id = await store.begin_request("shop", request("k1", push(ITEM, 5), push(OTHER, 6)))
    await store.next_attempt(request_id, request("k2", push(OTHER, 6)))
    [pending] = await store.pending_requests("shop")
    assert pending.request.key == "k2"
    assert pending.request.pushes == (push(OTHER, 6),)

    await store.record_pushed("shop", "run", [applied(push(OTHER, 6))], request_id=request_id)

    snapshot = await store.snapshot("shop")
    assert (snapshot[(OTHER, LOC)].quantity, snapshot[(OTHER, LOC)].in_flight) == (6, False)
    assert (snapshot[(ITEM, LOC)].quantity, snapshot[(ITEM, LOC)].in_flight) == (None, False)


async def test_levels_of_a_lost_request_are_read_back_once_it_can_no_longer_land(
    store: StateStore, clock: Clock
) -> None:
    request_id = await store.begin_request("shop", request("k", push(ITEM, 5)))
    await store.request_lost(request_id)
    assert (await store.pending_requests("shop"))[0].lost
    await store.record_pushed(
        "shop",
        "run",
        [applied(push(ITEM, 5))],
        request_id=request_id,
        verify_after=T0 + timedelta(seconds=300),
    )

    assert await store.due_verifications("shop", T0 + timedelta(seconds=299)) == []
    assert await store.due_verifications("shop", T0 + timedelta(seconds=300)) == [(ITEM, LOC)]
    await store.record_verified("shop", {(ITEM, LOC): 9})

    assert (await store.snapshot("shop"))[(ITEM, LOC)].quantity == 9
    assert await store.due_verifications("shop", T0 + timedelta(days=1)) == []


async def test_in_flight_marks_of_no_recorded_request_are_released_for_read_back(
    store: StateStore,
) -> None:
    await store.mark_in_flight("shop", [(ITEM, LOC)])  # as a stocksync before requests did

    released = await store.release_orphans("shop", T0 + timedelta(seconds=5))

    assert released == 1
    assert not (await store.snapshot("shop"))[(ITEM, LOC)].in_flight
    assert await store.due_verifications("shop", T0 + timedelta(seconds=5)) == [(ITEM, LOC)]


async def test_parked_level_counts_its_attempts_and_is_forgotten_once_applied(
    store: StateStore,
) -> None:
    rejected = push(ITEM, 5)

    await store.park("shop", [rejected], lambda attempts: 60.0 * attempts)
    await store.park("shop", [rejected], lambda attempts: 60.0 * attempts)

    parked = (await store.parked("shop"))[(ITEM, LOC)]
    assert (parked.attempts, parked.quantity, parked.katana_variant_id) == (2, 5, 7)
    assert parked.retry_at == T0 + timedelta(seconds=120)
    await store.retry_parked_now("shop")
    assert (await store.parked("shop"))[(ITEM, LOC)].retry_at == T0
    await store.record_pushed("shop", "run", [applied(rejected)])
    assert await store.parked("shop") == {}
