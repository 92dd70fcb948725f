"""The Shopify Admin GraphQL transport: one operation in, its `data` out.

It owns what every request shares: the token (renewed once when refused), the cost bucket
(pacing before a request, Shopify's throttle status observed after it), bounded retries with
backoff and jitter for transport failures and 5xx, waits on throttling as long as Shopify says,
an explicit timeout on every request, and the request metrics. The reads and writes above it
never see HTTP.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from daemon.shopify.errors import ShopifyAuthError, ShopifyError, ShopifyUnavailable
from daemon.shopify.nodes import _object
from daemon.shopify.pacing import CostBucket, QueryCost, parse_cost, throttle_wait

if TYPE_CHECKING:
    from daemon.metrics import Metrics
    from daemon.secrets import Secret
    from daemon.shopify.auth import TokenProvider

log = structlog.get_logger(__name__)

API = "shopify"
# Transport failures and 5xx: exponential backoff from BASE, capped, with jitter.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
# A 429 with neither Retry-After nor a throttle status in its body.
DEFAULT_THROTTLE_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    retry_after: str | None
    body: dict[str, Any] | None


class Transport:
    """Sends GraphQL operations to one shop: paced, timed, retried within bounds."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        graphql_url: str,
        tokens: TokenProvider,
        *,
        metrics: Metrics | None,
        timeout: float,
        max_attempts: int,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float],
    ) -> None:
        self._session = session
        self._url = graphql_url
        self._tokens = tokens
        self._metrics = metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._bucket = CostBucket(clock=clock, sleep=sleep)
        self._jitter = random.Random()

    def __repr__(self) -> str:
        return f"Transport({self._url!r})"

    async def execute(
        self,
        document: str,
        variables: Mapping[str, object],
        *,
        cost: float,
        on_lost: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Send one operation and return its `data`, retrying throttling and transient failures.

        `on_lost` is awaited whenever an attempt may have reached Shopify but its answer did
        not come back (a write may then still be applied, later).
        """
        failures = 0
        throttles = 0
        renewed = False
        while True:
            try:
                async with self._bucket.spend(cost):
                    token = await self._tokens.token()
                    reply = await self._post(token, document, variables)
            except ShopifyUnavailable as exc:
                failures += 1
                await self.back_off(failures, str(exc))
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                if on_lost is not None:
                    await on_lost()
                failures += 1
                await self.back_off(failures, type(exc).__name__)
                continue
            if reply.status in (401, 403):
                # One renewal per operation: a token revoked or expired early is replaced once.
                if not renewed and await self._renewed(token):
                    renewed = True
                    continue
                raise ShopifyAuthError(f"Shopify refused the access token (HTTP {reply.status})")
            if reply.status >= 500:
                if on_lost is not None:
                    await on_lost()
                failures += 1
                await self.back_off(failures, f"HTTP {reply.status}")
                continue
            cost_info = parse_cost(reply.body.get("extensions")) if reply.body else None
            if cost_info is not None and cost_info.throttle_status is not None:
                self._bucket.observe(cost_info.throttle_status)
            if reply.status == 429 or (reply.status == 200 and _throttled(reply.body)):
                throttles += 1
                if throttles >= self._max_attempts:
                    raise ShopifyUnavailable(
                        f"Shopify still throttled after {self._max_attempts} attempts"
                    )
                await self._wait_throttled(reply, cost_info, cost)
                continue
            if reply.status != 200:
                raise ShopifyError(
                    f"Shopify answered HTTP {reply.status}{_error_detail(reply.body)}"
                )
            if reply.body is None:
                if on_lost is not None:
                    await on_lost()
                failures += 1
                await self.back_off(failures, "response was not a JSON object")
                continue
            return _data(reply.body)

    async def _post(self, token: Secret, document: str, variables: Mapping[str, object]) -> _Reply:
        """One HTTP request, counted and timed."""
        started = self._clock()
        status = "error"
        try:
            async with self._session.post(
                self._url,
                json={"query": document, "variables": dict(variables)},
                headers={"X-Shopify-Access-Token": token.reveal(), "Accept": "application/json"},
                timeout=self._timeout,
            ) as response:
                body = await response.read()
                status = str(response.status)
                return _Reply(response.status, response.headers.get("Retry-After"), _decode(body))
        finally:
            self.observe_request(status, started)

    def observe_request(self, status: str, started: float) -> None:
        """Count one HTTP request by status and time it."""
        if self._metrics is not None:
            self._metrics.api_requests.labels(api=API, status=status).inc()
            self._metrics.api_request_duration.labels(api=API).observe(
                max(0.0, self._clock() - started)
            )

    async def _renewed(self, refused: Secret) -> bool:
        """Get a token other than the refused one; False when there is none to get."""
        current = await self._tokens.token()
        if current != refused:
            return True  # another task already renewed it
        self._tokens.invalidate()
        return await self._tokens.token() != refused

    async def _wait_throttled(
        self, reply: _Reply, cost_info: QueryCost | None, estimate: float
    ) -> None:
        """Wait as long as Shopify says it takes to refill the bucket for this query."""
        wait = _retry_after(reply.retry_after) if reply.status == 429 else None
        if wait is None and cost_info is not None and cost_info.throttle_status is not None:
            requested = cost_info.requested if cost_info.requested is not None else estimate
            wait = throttle_wait(requested, cost_info.throttle_status)
        if wait is None:
            wait = DEFAULT_THROTTLE_WAIT
        if self._metrics is not None:
            self._metrics.api_throttled.labels(api=API).inc()
        log.info("shopify_throttled", http_status=reply.status, wait_seconds=round(wait, 3))
        await self._sleep(wait)

    async def back_off(self, failures: int, reason: str) -> None:
        """Sleep before the next attempt, or give up once the attempts are spent."""
        if failures >= self._max_attempts:
            raise ShopifyUnavailable(
                f"Shopify unavailable after {failures} attempts (last: {reason})"
            )
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1))
        # Jitter keeps several clients (and connections) from retrying in lockstep.
        delay = ceiling * self._jitter.uniform(0.5, 1.0)
        log.info("shopify_retry", reason=reason, attempt=failures, wait_seconds=round(delay, 3))
        await self._sleep(delay)


def _decode(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _throttled(body: Mapping[str, Any] | None) -> bool:
    if body is None:
        return False
    return any(_error_code(error) == "THROTTLED" for error in _errors(body))


def _errors(body: Mapping[str, Any]) -> list[object]:
    errors = body.get("errors")
    if errors is None:
        return []
    # Shopify sends a list of error objects, but some failures carry a bare string.
    return list(errors) if isinstance(errors, list) else [errors]


def _error_code(error: object) -> object:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return extensions.get("code") if isinstance(extensions, dict) else None


def _error_message(error: object) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        return message if isinstance(message, str) else json.dumps(error)[:200]
    return str(error)[:200]


def _error_detail(body: Mapping[str, Any] | None) -> str:
    messages = "; ".join(_error_message(error) for error in _errors(body)) if body else ""
    return f": {messages[:300]}" if messages else ""


def _data(body: Mapping[str, Any]) -> dict[str, Any]:
    errors = _errors(body)
    if errors:
        messages = "; ".join(_error_message(error) for error in errors)
        raise ShopifyError(f"Shopify GraphQL errors: {messages}")
    return _object(body.get("data"), "data")


def _retry_after(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None  # an HTTP date: fall back to the bucket arithmetic
    return seconds if seconds >= 0 else None
