"""`POST /webhooks/katana`: a signed Katana event hints what changed and wakes the poll loop.

Webhooks only make the daemon faster; polling stays the safety net, so a lost, late or duplicate
webhook costs nothing but a poll. The payload is not trusted for data: it names a resource
(`resource_type`, `action`, `object.id`), which the daemon reads from Katana's API (a targeted
cycle, daemon/sync/targeted.py); quantities always come from Katana.

Deliveries, not bodies, are de-duplicated: two identical events (say two
`current_inventory.product_updated` for one product) are two changes. Only a retry (Katana marks
them with `X-Katana-Retry-Num`, 1..3) of a body already accepted is a duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from aiohttp import web

from daemon.secrets import Secret

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "x-sha2-signature"
RETRY_HEADER = "X-Katana-Retry-Num"
MAX_BODY_BYTES = 1 << 20
# A delivery is a few hundred bytes: a body still incomplete after this long is a stalled or
# hostile client, and waiting on it would hold a connection (and a file descriptor) forever.
BODY_TIMEOUT_SECONDS = 10.0
# Katana retries a delivery up to 3 times over ~15 minutes: remember accepted bodies that long.
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


DeliveryResult = Literal["accepted", "duplicate", "ignored", "rejected"]


@dataclass(frozen=True, slots=True)
class Hint:
    """What one delivery names; `object_id` is None when the payload does not say.

    Only a hint: the targeted cycle reads the resource from Katana's API.
    """

    resource_type: str
    action: str
    object_id: str | None

    @property
    def resource(self) -> str:
        """The resource of the action (`sales_order` of `sales_order.delivered`)."""
        return self.action.partition(".")[0] or self.resource_type


def parse_hint(payload: object) -> Hint | None:
    """The hint of a Katana payload; None when it is not Katana's shape."""
    if not isinstance(payload, dict):
        return None
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        return None
    resource_type = payload.get("resource_type")
    obj = payload.get("object")
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    object_id = str(raw_id).strip() if isinstance(raw_id, str | int) else None
    return Hint(
        resource_type=resource_type if isinstance(resource_type, str) else "",
        action=action,
        object_id=object_id or None,
    )


class DeliveryLog:
    """Accepted delivery bodies, so a retry of one is recognised (first deliveries never are)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accepted: OrderedDict[str, float] = OrderedDict()

    def duplicate(self, body: bytes, retry: int) -> bool:
        """Whether this delivery repeats one already accepted; remember it when it does not."""
        now = self._clock()
        seen = self._accepted
        while seen and next(iter(seen.values())) < now - DEDUP_SECONDS:
            seen.popitem(last=False)
        digest = hashlib.sha256(body).hexdigest()
        if retry > 0 and digest in seen:
            return True
        seen[digest] = now
        seen.move_to_end(digest)
        if len(seen) > DEDUP_MAX:
            seen.popitem(last=False)
        return False


def katana_webhook(
    token: Secret,
    on_event: Callable[[Hint | None], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    on_result: Callable[[DeliveryResult], None] | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler: verify the signature, drop retries already accepted, hand the
    delivery's hint to `on_event` (None: a stock event whose payload names nothing usable)."""
    deliveries = DeliveryLog(clock)

    def result(outcome: DeliveryResult) -> None:
        if on_result is not None:
            on_result(outcome)

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            result("rejected")
            return web.Response(status=413, text="payload too large")
        try:
            async with asyncio.timeout(body_timeout):
                body = await _read_body(request)
        except TimeoutError:
            log.warning("webhook_rejected", reason="body incomplete", remote=request.remote)
            result("rejected")
            return web.Response(status=408, text="request body incomplete")
        if body is None:
            result("rejected")
            return web.Response(status=413, text="payload too large")
        given = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
        if not hmac.compare_digest(given.encode(), signature(token, body).encode()):
            log.warning("webhook_rejected", reason="bad signature", remote=request.remote)
            result("rejected")
            return web.Response(status=401, text="invalid signature")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            # RecursionError: a signed but absurdly nested body is still a bad request.
            result("rejected")
            return web.Response(status=400, text="body is not a JSON object")
        if not isinstance(payload, dict):
            result("rejected")
            return web.Response(status=400, text="body is not a JSON object")
        if deliveries.duplicate(body, _retry_number(request.headers.get(RETRY_HEADER))):
            result("duplicate")
            return web.Response(status=200, text="duplicate")
        hint = parse_hint(payload)
        action = hint.action if hint is not None else ""
        if hint is not None and hint.resource not in STOCK_EVENT_RESOURCES:
            result("ignored")
            return web.Response(status=200, text="ok")
        log.info("webhook_poll_now", action=action, object_id=hint and hint.object_id)
        result("accepted")
        on_event(hint)
        return web.Response(status=200, text="ok")

    return handle


def _retry_number(header: str | None) -> int:
    """Katana's retry number (0 for a first delivery; anything unreadable counts as a retry)."""
    if header is None or not header.strip():
        return 0
    try:
        return max(0, int(header.strip()))
    except ValueError:
        return 1


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
