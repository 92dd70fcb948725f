"""Simulators that also keep a timeline of what the daemon asked of them.

The simulators already count requests; the benchmark also needs when each request arrived (to
see which phases of a sync overlap) and what each Shopify query was charged (to compute the
floor from the simulator's own cost accounting rather than from an estimate).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from daemon.sim.katana import KatanaSim
from daemon.sim.shopify import ShopifySim

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_OPERATION = re.compile(r"\b(?:query|mutation)\s+([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class KatanaRequest:
    """One request Katana's simulator answered."""

    at: float  # time.monotonic() on arrival
    path: str  # the route, e.g. "/inventory"
    status: int
    incremental: bool  # asked only for rows changed since a time (a delta poll)


@dataclass(frozen=True, slots=True)
class ShopifyCall:
    """One GraphQL operation Shopify's simulator executed (or throttled)."""

    at: float  # time.monotonic() when executed
    operation: str  # the operation's name, e.g. "Variants", "Set"
    requested: float
    actual: float  # 0 when throttled (nothing is spent)
    throttled: bool


class MeteredKatana(KatanaSim):
    """KatanaSim plus a timeline of every request, rate-limited ones included."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeline: list[KatanaRequest] = []

    def app(self) -> web.Application:
        """The simulator's API, with a recorder in front of every other middleware."""
        application = super().app()
        application.middlewares.insert(0, self._record)
        return application

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived = time.monotonic()
        response = await handler(request)
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        incremental = any(k in request.query for k in ("updated_at_min", "created_at_min"))
        self.timeline.append(
            KatanaRequest(arrived, path.removeprefix("/v1"), response.status, incremental)
        )
        return response


class MeteredShopify(ShopifySim):
    """ShopifySim plus the name and charged cost of every GraphQL operation it executed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[ShopifyCall] = []

    def execute(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Execute as the simulator does (same options), and record the operation's cost."""
        body = super().execute(query, variables, operation_name, **options)
        cost = body.get("extensions", {}).get("cost")
        if isinstance(cost, dict):
            errors = body.get("errors") or []
            throttled = any(
                isinstance(e, dict) and e.get("extensions", {}).get("code") == "THROTTLED"
                for e in errors
            )
            self.calls.append(
                ShopifyCall(
                    at=time.monotonic(),
                    operation=operation_name or _operation_name(query),
                    requested=float(cost.get("requestedQueryCost") or 0),
                    actual=float(cost.get("actualQueryCost") or 0),
                    throttled=throttled,
                )
            )
        return body


def _operation_name(query: str) -> str:
    match = _OPERATION.search(query)
    return match.group(1) if match else "anonymous"
