"""The real daemon with webhooks on reacts to the simulated Katana's deliveries (issue 17).

The safety-net delta poll is an hour apart here: after start-up, only a delivery can bring a
change to Shopify, and the daemon reads only what it names (a targeted cycle).
"""

from __future__ import annotations

import pytest

from daemon.katana.models import DELTA_SOURCES
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e

TOKEN = "00112233aabbccdd"


def enable_webhooks(world: World) -> None:
    path = world.write_config()
    text = path.read_text(encoding="utf-8")
    webhooks = (
        '[webhooks]\nenabled = true\ntoken_env = "KATANA_WEBHOOK_TOKEN"\n'
        "safety_poll_seconds = 3600\n\n"
    )
    path.write_text(text.replace("[[connections]]", webhooks + "[[connections]]", 1))


async def test_the_daemon_reacts_to_a_simulated_delivery_with_a_targeted_read(
    world: World,
) -> None:
    enable_webhooks(world)
    daemon = await world.start_daemon({"KATANA_WEBHOOK_TOKEN": TOKEN})
    await world.converged(daemon)
    await daemon.wait_ready()
    katana = world.scenario.katana
    katana.webhooks.register(f"{daemon.base_url}/webhooks/katana", token=TOKEN)
    before = dict(katana.requests_by_path)

    world.events.step("sales_order_created")
    world.events.step("stock_adjusted")
    assert world.differences(), "the events should have changed some desired levels"
    await world.converged(daemon)

    assert await daemon.metric("stocksync_webhook_deliveries_total", result="accepted") >= 2
    assert await daemon.metric("stocksync_webhook_healthy") == 1
    read = {p: n - before.get(p, 0) for p, n in katana.requests_by_path.items()}
    assert read.get("/sales_order_rows", 0) >= 1
    # No delta poll ran: the lists only a delta poll reads were not read again.
    untouched = {f"/{s}" for s in DELTA_SOURCES} - {
        "/sales_order_rows",
        "/inventory_movements",
        "/stock_adjustments",
        "/stock_transfers",
    }
    assert {p for p in untouched if read.get(p, 0)} == set()
    assert not read.get("/variants", 0)
