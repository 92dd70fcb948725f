"""The Shopify client tells its journal every push request before it is sent (PRODUCT.md §3)."""

from __future__ import annotations

import aiohttp
from aioresponses import aioresponses

from daemon.domain.models import PushRequest
from tests.helpers import FakeTime
from tests.integration.test_shopify_client import (
    GRAPHQL_URL,
    make_client,
    post,
    push,
    sent_variables,
    set_applied,
    set_refused,
)


class Journal:
    """Records what the client reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, PushRequest | None]] = []

    async def sending(self, request: PushRequest) -> None:
        self.events.append(("sending", request))

    async def lost(self) -> None:
        self.events.append(("lost", None))


async def test_every_request_is_journaled_with_its_exact_variables_before_it_is_sent(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    refused = ("ITEM_NOT_STOCKED_AT_LOCATION", ["input", "quantities", "1", "locationId"], "no")
    post(mocked, GRAPHQL_URL, payload=set_refused(refused))
    post(mocked, GRAPHQL_URL, payload=set_applied())
    journal = Journal()
    pushes = [push(1, 5, change_from=3), push(2, 6)]

    await make_client(session, fake_time).set_available(pushes, reference="r", journal=journal)

    first, second = sent_variables(mocked)
    assert [(kind, r.key if r else None) for kind, r in journal.events] == [
        ("sending", first["key"]),
        ("sending", second["key"]),  # one element set aside: a new request, journaled anew
    ]
    requests = [r for _, r in journal.events if r is not None]
    assert [dict(r.variables) for r in requests] == [first, second]
    assert [r.pushes for r in requests] == [tuple(pushes), (pushes[0],)]


async def test_an_attempt_whose_answer_is_lost_is_reported_and_retried_under_the_same_key(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    mocked.post(GRAPHQL_URL, exception=TimeoutError())
    post(mocked, GRAPHQL_URL, status=503, body="busy")
    post(mocked, GRAPHQL_URL, payload=set_applied())
    journal = Journal()

    await make_client(session, fake_time).set_available(
        [push(1, 5)], reference="r", journal=journal
    )

    assert [kind for kind, _ in journal.events] == ["sending", "lost", "lost"]
    assert len({v["key"] for v in sent_variables(mocked)}) == 1


async def test_a_recorded_request_is_resent_unchanged_under_its_key(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=set_applied())
    pushes = (push(1, 5, change_from=4),)
    # Variables exactly as an earlier process sent them, even where today's code would differ.
    variables = {
        "input": {
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": "gid://stocksync/SyncRun/earlier",
            "quantities": [
                {
                    "inventoryItemId": pushes[0].inventory_item_id,
                    "locationId": pushes[0].location_id,
                    "quantity": 5,
                    "changeFromQuantity": 4,
                }
            ],
        },
        "key": "0b8f9c1e-recorded-key",
    }
    journal = Journal()

    results = await make_client(session, fake_time).set_available(
        pushes,
        reference="gid://stocksync/SyncRun/now",
        journal=journal,
        resend=PushRequest("0b8f9c1e-recorded-key", variables, pushes),
    )

    assert [r.status for r in results] == ["applied"]
    assert sent_variables(mocked) == [variables]
    assert journal.events == []  # already recorded: nothing new to journal
