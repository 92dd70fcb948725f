"""The simulated Katana's webhooks: business events POSTed as Katana delivers them.

A subscription (`register`) names a URL and the events wanted; Katana answers it with a token of
16 hex characters that signs every delivery: `x-sha2-signature` is the hex HMAC-SHA256 of the
raw body keyed with it. The payload is Katana's (katana-api.md, katana-openapi.yaml
WebhookEventPayload): `{"resource_type", "action", "webhook_id", "object": {"id", "status",
"href"}}`. A delivery not answered 2xx is retried 3 times (`X-Katana-Retry-Num` 1..3; Katana
waits ≈30 s, 2 min, 15 min, which tests and benchmarks shorten).

What fires what. Every change to a record the account keeps is seen where its table is touched
(`_Table.observer`), gathered until the business call returns (one event per record and call,
as Katana fires one per save), and the action is read from the record then: a sales order's
`created`, `updated`, `packed`, `delivered` or `deleted`; a row edited on its own fires its
order's `sales_order.updated` (Katana has no sales-order-row events). Stock adjustments and
transfers fire `current_inventory.product_updated` (or `material_updated`) for each variant of
their rows, with the variant's id as `object.id`: Katana has no events of their own and does not
document that id, so the daemon does not rely on it. The catalogue fires `variant.*`,
`product.*`, `material.*` and `product_recipe_row.*`.

Faults (`WebhookFaults`): a share of deliveries dropped (never sent, never retried), a share
sent twice (the copy as a retry, as Katana does when an answer was slow), a fixed delay and a
random jitter that reorders them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

SIGNATURE_HEADER = "x-sha2-signature"
RETRY_HEADER = "X-Katana-Retry-Num"
# Katana's retry schedule after a failed delivery (seconds before retries 1, 2 and 3).
KATANA_RETRY_DELAYS = (30.0, 120.0, 900.0)
HREF_BASE = "https://api.katanamrp.com/v1"


@dataclass
class WebhookFaults:
    """Delivery faults (the business state is unaffected)."""

    drop: float = 0.0  # share of deliveries lost for good
    duplicate: float = 0.0  # share of deliveries sent a second time, as a retry
    delay: float = 0.0  # seconds before every delivery
    jitter: float = 0.0  # up to this many more seconds, at random: deliveries reorder

    def clear(self) -> None:
        self.drop = self.duplicate = self.delay = self.jitter = 0.0


@dataclass(frozen=True)
class Subscription:
    id: int
    url: str
    token: str
    events: frozenset[str] | None  # None: every event


@dataclass(frozen=True)
class Attempt:
    """One POST made (or a delivery dropped, `status` None and `dropped`)."""

    action: str
    object_id: str
    retry: int
    status: int | None
    dropped: bool = False


@dataclass
class KatanaWebhooks:
    """Subscriptions and the deliveries made to them."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    seed: int = 0
    retry_delays: Sequence[float] = KATANA_RETRY_DELAYS
    faults: WebhookFaults = field(default_factory=WebhookFaults)
    attempts: list[Attempt] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _pending: dict[
        tuple[str, str], tuple[Callable[[], tuple[str, str, str | None] | None], bool]
    ] = field(default_factory=dict, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def register(
        self, url: str, events: Iterable[str] | None = None, *, token: str | None = None
    ) -> str:
        """Subscribe `url` to `events` (all when None); the token that signs its deliveries."""
        token = token or secrets.token_hex(8)
        wanted = None if events is None else frozenset(events)
        self.subscriptions.append(Subscription(len(self.subscriptions) + 1, url, token, wanted))
        return token

    @property
    def active(self) -> bool:
        return bool(self.subscriptions)

    def changed(
        self,
        key: tuple[str, str],
        event: Callable[[], tuple[str, str, str | None] | None],
        created: bool = False,
    ) -> None:
        """A record changed: `event()`, read once the business call returns, gives (resource
        type, action, status) or None. Changes of one record in one call make one event (its
        creation, when it was created in the call)."""
        if not self.subscriptions:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a synchronous setup): nobody is listening anyway
        if not self._pending:
            loop.call_soon(self._flush)
        if key in self._pending and self._pending[key][1]:
            return
        self._pending[key] = (event, created)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (_, object_id), (event, _) in pending.items():
            described = event()
            if described is None:
                continue
            resource_type, action, status = described
            for subscription in self.subscriptions:
                if subscription.events is None or action in subscription.events:
                    self._spawn(
                        self._deliver(subscription, resource_type, action, object_id, status)
                    )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        subscription: Subscription,
        resource_type: str,
        action: str,
        object_id: str,
        status: str | None,
    ) -> None:
        obj: dict[str, str] = {"id": object_id, "status": status or ""}
        if not action.endswith(".deleted"):
            obj["href"] = f"{HREF_BASE}/{resource_type}s/{object_id}"
        body = json.dumps(
            {
                "resource_type": resource_type,
                "action": action,
                "webhook_id": subscription.id,
                "object": obj,
            }
        ).encode()
        faults = self.faults
        if self._rng.random() < faults.drop:
            self.attempts.append(Attempt(action, object_id, 0, None, dropped=True))
            return
        wait = faults.delay + (self._rng.random() * faults.jitter if faults.jitter else 0.0)
        if wait > 0:
            await self.sleep(wait)
        if self._rng.random() < faults.duplicate:
            self._spawn(self._post(subscription, body, action, object_id, 1))
        await self._attempts(subscription, body, action, object_id)

    async def _attempts(
        self, subscription: Subscription, body: bytes, action: str, object_id: str
    ) -> None:
        for retry in range(len(self.retry_delays) + 1):
            if retry:
                await self.sleep(self.retry_delays[retry - 1])
            if await self._post(subscription, body, action, object_id, retry):
                return

    async def _post(
        self, subscription: Subscription, body: bytes, action: str, object_id: str, retry: int
    ) -> bool:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(subscription.token, body),
        }
        if retry:
            headers[RETRY_HEADER] = str(retry)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        status: int | None = None
        try:
            async with self._session.post(subscription.url, data=body, headers=headers) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = None
        self.attempts.append(Attempt(action, object_id, retry, status))
        return status is not None and 200 <= status < 300

    async def drain(self) -> None:
        """Wait for every delivery under way (retries included)."""
        self._flush()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel deliveries under way and close the HTTP session."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def sign(token: str, body: bytes) -> str:
    """Katana's signature: hex HMAC-SHA256 of the raw body keyed with the webhook token."""
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
