"""POST /webhooks/katana: signed events wake the poll loop; anything else is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from daemon.http import Health, build_app
from daemon.metrics import Metrics
from daemon.secrets import Secret
from daemon.webhooks import RETRY_HEADER, SIGNATURE_HEADER, Hint, katana_webhook, signature

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


async def _client(
    polls: list[int], hints: list[Hint | None] | None = None
) -> TestClient[object, object]:
    def on_event(hint: Hint | None) -> None:
        polls.append(1)
        if hints is not None:
            hints.append(hint)

    handler = katana_webhook(TOKEN, on_event)
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


async def test_dedup_by_delivery_a_retry_of_an_accepted_delivery_counts_once() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event()
    headers = {SIGNATURE_HEADER: signature(TOKEN, body)}
    assert (await client.post("/webhooks/katana", data=body, headers=headers)).status == 200
    for retry in ("1", "2", "3"):
        response = await client.post(
            "/webhooks/katana", data=body, headers={**headers, RETRY_HEADER: retry}
        )
        assert response.status == 200
        assert await response.text() == "duplicate"
    assert polls == [1]
    await client.close()


async def test_dedup_by_delivery_two_identical_first_deliveries_are_two_changes() -> None:
    # Two current_inventory events for one product within minutes: identical bodies, two changes.
    polls: list[int] = []
    hints: list[Hint | None] = []
    client = await _client(polls, hints)
    body = _event(action="current_inventory.product_updated", object_id="7")
    headers = {SIGNATURE_HEADER: signature(TOKEN, body)}
    for _ in range(2):
        assert (await client.post("/webhooks/katana", data=body, headers=headers)).status == 200
    assert polls == [1, 1]
    assert hints == [Hint("sales_order", "current_inventory.product_updated", "7")] * 2
    await client.close()


async def test_dedup_by_delivery_a_retry_of_a_lost_delivery_is_accepted() -> None:
    # The first attempt never reached stocksync: its retry is the first it hears of the change.
    polls: list[int] = []
    client = await _client(polls)
    body = _event(object_id="555")
    headers = {SIGNATURE_HEADER: signature(TOKEN, body), RETRY_HEADER: "2"}
    response = await client.post("/webhooks/katana", data=body, headers=headers)
    assert (response.status, await response.text()) == (200, "ok")
    assert polls == [1]
    await client.close()


async def test_delivery_hint_names_the_resource_and_object() -> None:
    polls: list[int] = []
    hints: list[Hint | None] = []
    client = await _client(polls, hints)
    for body in (_event(object_id="123"), b'{"something": "else"}'):
        response = await client.post(
            "/webhooks/katana", data=body, headers={SIGNATURE_HEADER: signature(TOKEN, body)}
        )
        assert response.status == 200
    # A signed payload of an unknown shape still wakes the loop, with no hint: a delta cycle.
    assert hints == [Hint("sales_order", "sales_order.delivered", "123"), None]
    assert hints[0] is not None
    assert hints[0].resource == "sales_order"
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


async def _send_pieces(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: str, pieces: list[bytes]
) -> bytes:
    writer.write(head.encode() + b"\r\n" + pieces[0])
    await writer.drain()
    for piece in pieces[1:]:
        # Long enough for the handler to start reading with only the first piece buffered.
        await asyncio.sleep(0.2)
        writer.write(piece)
        await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_signed_body_arriving_in_two_tcp_writes_is_accepted_whole() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event()
    pieces = [body[:20], body[20:]]
    head_signature = signature(TOKEN, body)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        "POST /webhooks/katana HTTP/1.1\r\n"
        f"Host: {client.host}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{SIGNATURE_HEADER}: {head_signature}\r\n"
        "Connection: close\r\n"
    )
    answer = await _send_pieces(reader, writer, head, pieces)
    await client.close()

    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    assert polls == [1]


async def test_signed_chunked_body_sent_slowly_is_accepted_whole() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event()

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16):
            yield body[start : start + 16]
            await asyncio.sleep(0.02)

    response = await client.post(
        "/webhooks/katana", data=slowly(), headers={SIGNATURE_HEADER: signature(TOKEN, body)}
    )
    await client.close()

    assert response.status == 200
    assert polls == [1]


async def test_signed_deeply_nested_json_is_a_bad_request_not_a_crash() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = b"[" * 200_000 + b"]" * 200_000
    response = await client.post(
        "/webhooks/katana", data=body, headers={SIGNATURE_HEADER: signature(TOKEN, body)}
    )
    await client.close()

    assert response.status == 400
    assert polls == []


async def test_body_that_never_completes_is_answered_408_after_the_body_timeout() -> None:
    polls: list[int] = []
    handler = katana_webhook(TOKEN, lambda: polls.append(1), body_timeout=0.3)
    app = build_app(Metrics(process=False), Health(poll_interval=30), webhook=handler)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    body = _event()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        "POST /webhooks/katana HTTP/1.1\r\n"
        f"Host: {client.host}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{SIGNATURE_HEADER}: {signature(TOKEN, body)}\r\n"
    )
    writer.write(head.encode() + b"\r\n" + body[:10])
    await writer.drain()
    # The rest never comes: the server must answer (and give the connection up) by itself.
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout=20)
    writer.close()
    await client.close()

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert polls == []


# Katana's own names (live-gateway.yaml CreateWebhookDto.subscribed_events) for changes that can
# move in stock, committed or potential: each wakes the poll loop.
STOCK_EVENTS = [
    "variant.updated",
    "variant.deleted",
    "product.updated",
    "product.deleted",
    "material.updated",
    "material.deleted",
    "product_recipe_row.deleted",
    "sales_order.updated",
    "purchase_order_row.received",
    "purchase_order_row.deleted",
    "manufacturing_order_recipe_row.updated",
    "manufacturing_order_recipe_row.deleted",
    "outsourced_purchase_order.received",
    "outsourced_purchase_order_row.updated",
    "outsourced_purchase_order_recipe_row.deleted",
]


@pytest.mark.parametrize("action", STOCK_EVENTS)
async def test_every_katana_event_that_can_move_stock_triggers_a_poll(action: str) -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event(action=action)
    response = await client.post(
        "/webhooks/katana", data=body, headers={SIGNATURE_HEADER: signature(TOKEN, body)}
    )
    await client.close()

    assert response.status == 200
    assert polls == [1]


async def test_manufacturing_operation_events_move_no_stock_and_poll_nothing() -> None:
    polls: list[int] = []
    client = await _client(polls)
    body = _event(action="manufacturing_order_operation_row.completed")
    response = await client.post(
        "/webhooks/katana", data=body, headers={SIGNATURE_HEADER: signature(TOKEN, body)}
    )
    await client.close()

    assert response.status == 200
    assert polls == []
