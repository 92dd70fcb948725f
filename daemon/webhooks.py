"""`POST /webhooks/katana`: a signed Katana event triggers an immediate poll.

Webhooks only make the daemon faster; polling stays the safety net, so a lost, late or duplicate
webhook costs nothing but a poll. The payload is not trusted for data: the poll reads Katana.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from daemon.secrets import Secret

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "x-sha2-signature"
MAX_BODY_BYTES = 1 << 20
# A delivery is a few hundred bytes: a body still incomplete after this long is a stalled or
# hostile client, and waiting on it would hold a connection (and a file descriptor) forever.
BODY_TIMEOUT_SECONDS = 10.0
# Katana retries a delivery up to 3 times over ~15 minutes: remember deliveries that long.
DEDUP_SECONDS = 20 * 60
DEDUP_MAX = 10_000
# Katana's event resources (live-gateway.yaml CreateWebhookDto.subscribed_events) whose changes
# can move in stock, committed or potential: rows are edited on their own, and a variant, product
# or material edit changes the mapping or what counts as a kit. Operation rows move no stock.
STOCK_EVENT_RESOURCES = frozenset(
    {
        "current_inventory",
        "sales_order",
        "manufacturing_order",
        "manufacturing_order_recipe_row",
        "purchase_order",
        "purchase_order_row",
        "outsourced_purchase_order",
        "outsourced_purchase_order_row",
        "outsourced_purchase_order_recipe_row",
        "product_recipe_row",
        "product",
        "material",
        "variant",
    }
)


def signature(token: Secret, body: bytes) -> str:
    """Katana's signature: hex HMAC-SHA256 of the raw body keyed with the webhook token."""
    return hmac.new(token.reveal().encode(), body, hashlib.sha256).hexdigest()


def katana_webhook(
    token: Secret,
    poll_now: Callable[[], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler: verify the signature, drop duplicates, wake the poll loop."""
    seen: OrderedDict[str, float] = OrderedDict()

    def duplicate(body: bytes) -> bool:
        now = clock()
        while seen and next(iter(seen.values())) < now - DEDUP_SECONDS:
            seen.popitem(last=False)
        digest = hashlib.sha256(body).hexdigest()
        if digest in seen:
            return True
        seen[digest] = now
        if len(seen) > DEDUP_MAX:
            seen.popitem(last=False)
        return False

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.Response(status=413, text="payload too large")
        try:
            async with asyncio.timeout(body_timeout):
                body = await _read_body(request)
        except TimeoutError:
            log.warning("webhook_rejected", reason="body incomplete", remote=request.remote)
            return web.Response(status=408, text="request body incomplete")
        if body is None:
            return web.Response(status=413, text="payload too large")
        given = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
        if not hmac.compare_digest(given.encode(), signature(token, body).encode()):
            log.warning("webhook_rejected", reason="bad signature", remote=request.remote)
            return web.Response(status=401, text="invalid signature")
        try:
            action = str(json.loads(body).get("action", ""))
        except (ValueError, AttributeError, RecursionError):
            # RecursionError: a signed but absurdly nested body is still a bad request.
            return web.Response(status=400, text="body is not a JSON object")
        if duplicate(body):
            return web.Response(status=200, text="duplicate")
        if action.partition(".")[0] in STOCK_EVENT_RESOURCES:
            log.info("webhook_poll_now", action=action)
            poll_now()
        return web.Response(status=200, text="ok")

    return handle


async def _read_body(request: web.Request) -> bytes | None:
    """The whole body, however it arrives (pieces, chunks); None if over MAX_BODY_BYTES.

    One `read(n)` returns only what is buffered so far: a body sent in two TCP writes would be
    cut short and fail its signature check.
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
    return b"".join(chunks)
