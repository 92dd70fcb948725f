"""The simulated Katana delivers real webhooks (issue 17): Katana's payload, signed with the
subscription's token, retried with X-Katana-Retry-Num, and dropped or duplicated on demand."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.secrets import Secret
from daemon.sim.katana import KatanaSim
from daemon.webhooks import RETRY_HEADER, SIGNATURE_HEADER, signature


@dataclass
class Receiver:
    """A webhook endpoint that records what it receives and answers `statuses` in turn."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, object], dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((json.loads(body), dict(request.headers), body))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    server = TestServer(app)
    await server.start_server()
    yield found, str(server.make_url("/hook"))
    await server.close()


def katana() -> tuple[KatanaSim, int, int]:
    sim = KatanaSim()
    sim.webhooks.retry_delays = (0.0, 0.0, 0.0)
    warehouse = sim.add_location("Warehouse")
    [variant] = sim.add_product("Chair", ["CHAIR"])
    return sim, warehouse, variant


async def test_sim_deliveries_are_signed_katana_payloads(
    receiver: tuple[Receiver, str],
) -> None:
    found, url = receiver
    sim, warehouse, chair = katana()
    token = sim.webhooks.register(url, ["sales_order.created", "sales_order.delivered"])
    order = sim.create_sales_order([(chair, 1)], warehouse)
    await sim.webhooks.drain()
    sim.deliver_sales_order(order)
    await sim.webhooks.drain()
    await sim.webhooks.close()

    assert [p["action"] for p, _, _ in found.received] == [
        "sales_order.created",
        "sales_order.delivered",
    ]
    payload, headers, body = found.received[0]
    assert payload["resource_type"] == "sales_order"
    assert payload["object"] == {
        "id": str(order),
        "status": "NOT_SHIPPED",
        "href": f"https://api.katanamrp.com/v1/sales_orders/{order}",
    }
    assert len(token) == 16
    assert headers[SIGNATURE_HEADER] == signature(Secret(token), body)
    assert RETRY_HEADER not in headers


async def test_sim_adjustments_fire_current_inventory_for_their_variant(
    receiver: tuple[Receiver, str],
) -> None:
    found, url = receiver
    sim, warehouse, chair = katana()
    sim.webhooks.register(url)
    sim.adjust_stock(chair, warehouse, 3)
    await sim.webhooks.drain()
    await sim.webhooks.close()
    assert [(p["action"], p["object"]["id"]) for p, _, _ in found.received] == [  # type: ignore[index]
        ("current_inventory.product_updated", str(chair))
    ]


async def test_sim_deliveries_are_retried_until_answered(
    receiver: tuple[Receiver, str],
) -> None:
    found, url = receiver
    found.statuses = [500, 503]
    sim, warehouse, chair = katana()
    sim.webhooks.register(url, ["sales_order.created"])
    sim.create_sales_order([(chair, 1)], warehouse)
    await sim.webhooks.drain()
    await sim.webhooks.close()
    assert [h.get(RETRY_HEADER) for _, h, _ in found.received] == [None, "1", "2"]
    assert len({body for _, _, body in found.received}) == 1


async def test_sim_deliveries_dropped_and_duplicated_on_demand(
    receiver: tuple[Receiver, str],
) -> None:
    found, url = receiver
    sim, warehouse, chair = katana()
    sim.webhooks.register(url, ["sales_order.created"])
    sim.webhooks.faults.drop = 1.0
    sim.create_sales_order([(chair, 1)], warehouse)
    await sim.webhooks.drain()
    assert found.received == []
    assert [a.dropped for a in sim.webhooks.attempts] == [True]

    sim.webhooks.faults.drop, sim.webhooks.faults.duplicate = 0.0, 1.0
    sim.create_sales_order([(chair, 1)], warehouse)
    await sim.webhooks.drain()
    await sim.webhooks.close()
    # The copy is sent as a retry, as Katana's own duplicates are.
    assert sorted(h.get(RETRY_HEADER) or "0" for _, h, _ in found.received) == ["0", "1"]
