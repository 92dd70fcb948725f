"""POST /webhooks/katana: signed events wake the poll loop; anything else is refused."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer

from daemon.http import Health, build_app
from daemon.metrics import Metrics
from daemon.secrets import Secret
from daemon.webhooks import SIGNATURE_HEADER, katana_webhook, signature

TOKEN = Secret("0123456789abcdef")


def _event(action: str = "sales_order.delivered", object_id: str = "123") -> bytes:
    return json.dumps(
        {
            "resource_type": "sales_order",
            "action": action,
            "webhook_id": 1,
            "object": {"id": object_id, "status": "DELIVERED"},
        }
    ).encode()


async def _client(polls: list[int]) -> TestClient[object, object]:
    handler = katana_webhook(TOKEN, lambda: polls.append(1))
    app = build_app(Metrics(process=False), Health(poll_interval=30), webhook=handler)
    client: TestClient[object, object] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_signed_stock_event_triggers_an_immediate_poll() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event()
    response = await client.post(
        "/webhooks/katana", data=body, headers={SIGNATURE_HEADER: signature(TOKEN, body)}
    )
    assert response.status == 200
    assert polls == [1]
    await client.close()


async def test_bad_or_missing_signature_is_401_and_polls_nothing() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event()
    forged = signature(Secret("another-token-xx"), body)
    for headers in ({SIGNATURE_HEADER: forged}, {}):
        response = await client.post("/webhooks/katana", data=body, headers=headers)
        assert response.status == 401
    assert polls == []
    await client.close()


async def test_duplicate_delivery_polls_once() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event()
    headers = {SIGNATURE_HEADER: signature(TOKEN, body)}
    for _ in range(3):
        assert (await client.post("/webhooks/katana", data=body, headers=headers)).status == 200
    assert polls == [1]
    await client.close()


async def test_event_unrelated_to_stock_is_acknowledged_without_a_poll() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event(action="customer.created")
    response = await client.post(
        "/webhooks/katana", data=body, headers={SIGNATURE_HEADER: signature(TOKEN, body)}
    )
    assert response.status == 200
    assert polls == []
    await client.close()
