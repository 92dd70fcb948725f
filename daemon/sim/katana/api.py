"""The simulated Katana's REST API (as in shared/spec/katana-api.md), in front of a KatanaSim.

Transport first: request counters, injected faults, Bearer auth, the sliding 60 s rate limit
(``X-Ratelimit-*`` headers, 429 with ``Retry-After``) and a ``Date`` header on the account's
clock. Then the lists: ``{"data": [...]}`` newest first, ``limit``/``page`` with
``X-Pagination``, the common and per-resource filters, a cache of filtered results until one of
their tables changes, ``/{resource}/{id}``, and ``/inventory`` computed by index arithmetic over
the (variant, location) grid. Errors come in Katana's body. Rows are rendered by `payloads`.
"""

from __future__ import annotations

import hmac
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.sim.katana.params import _Invalid, _Params
from daemon.sim.katana.payloads import _Payloads
from daemon.sim.katana.records import Json, _ListQuery, _Table

if TYPE_CHECKING:
    from daemon.sim.katana.account import KatanaSim


WINDOW_SECONDS = 60.0
Predicate = Callable[[Any], bool]
_PAGING = frozenset({"limit", "page"})


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One list endpoint: its table, its own filters, and how a row is rendered."""

    table: _Table[Any]
    render: Callable[[Any], Json]
    filters: Callable[[_Params], list[Predicate]]
    uuid_ids: bool = False  # /bom_rows ids are UUID strings
    # Other tables whose changes can change which rows match (archiving hides variants).
    also: tuple[_Table[Any], ...] = ()

    def revision(self) -> tuple[int, ...]:
        return (self.table.revision, *(t.revision for t in self.also))


def _equals(attr: str, value: object) -> Predicate:
    return lambda row: getattr(row, attr) == value


def _not_before(attr: str, bound: datetime) -> Predicate:
    return lambda row: bool(getattr(row, attr) >= bound)


def _not_after(attr: str, bound: datetime) -> Predicate:
    return lambda row: bool(getattr(row, attr) <= bound)


class _KatanaApi(_Payloads):
    """Routes, auth, rate limit and faults in front of a KatanaSim."""

    def __init__(self, sim: KatanaSim) -> None:
        self.sim = sim
        self._window: list[float] = []  # monotonic times of the requests in the last 60 s
        self._cache: OrderedDict[tuple[Any, ...], tuple[tuple[int, ...], list[Any]]] = OrderedDict()
        self.endpoints: dict[str, _Endpoint] = {
            "locations": _Endpoint(sim._locations, self._location, lambda p: []),
            "products": _Endpoint(sim._products, self._item, self._item_filters),
            "materials": _Endpoint(sim._materials, self._item, self._item_filters),
            "variants": _Endpoint(
                sim._variants,
                self._variant,
                self._variant_filters,
                also=(sim._products, sim._materials),
            ),
            "bom_rows": _Endpoint(sim._bom, self._bom_row, self._bom_filters, uuid_ids=True),
            "inventory_movements": _Endpoint(
                sim._movements, self._movement, self._movement_filters
            ),
            # An order lists its rows, which change on their own: the cache follows them too.
            "sales_orders": _Endpoint(
                sim._sales_orders,
                self._sales_order,
                self._order_filters,
                also=(sim._sales_order_rows,),
            ),
            "sales_order_rows": _Endpoint(
                sim._sales_order_rows, self._sales_order_row, self._sales_row_filters
            ),
            "manufacturing_orders": _Endpoint(
                sim._manufacturing_orders, self._manufacturing_order, self._order_filters
            ),
            "manufacturing_order_recipe_rows": _Endpoint(
                sim._recipe_rows, self._recipe_row, self._recipe_filters
            ),
            "stock_transfers": _Endpoint(sim._transfers, self._transfer, lambda p: []),
            "stock_adjustments": _Endpoint(
                sim._adjustments, self._adjustment, self._location_filter
            ),
            "purchase_orders": _Endpoint(
                sim._purchase_orders,
                self._purchase_order,
                self._order_filters,
                also=(sim._purchase_order_rows,),
            ),
            "purchase_order_rows": _Endpoint(
                sim._purchase_order_rows, self._purchase_order_row, self._purchase_row_filters
            ),
            "outsourced_purchase_order_recipe_rows": _Endpoint(
                sim._outsourced_recipe_rows,
                self._outsourced_recipe_row,
                self._outsourced_recipe_filters,
            ),
        }

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/v1/inventory", self._inventory)
        for name in self.endpoints:
            app.router.add_get(f"/v1/{name}", self._list_handler(name))
            app.router.add_get(f"/v1/{name}/{{id}}", self._one_handler(name))
        return app

    # ---- transport: counters, faults, auth, rate limit ----------------------------------------

    @web.middleware
    async def _gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._serve(request, handler)
        # The account's clock, as Katana's own Date header: a poller may set its cursors by it.
        response.headers["Date"] = formatdate(self.sim._clock().timestamp(), usegmt=True)
        return response

    async def _serve(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        sim, faults = self.sim, self.sim.faults
        sim.requests_total += 1
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        sim.requests_by_path[path.removeprefix("/v1")] += 1
        if faults.latency > 0:
            await sim._sleep(faults.latency)
        if faults.outage:
            return _error(503)
        if not self._authorized(request):
            return _error(401)
        if faults._fail > 0:
            faults._fail -= 1
            return _error(faults._fail_status)
        if faults._throttle > 0:
            faults._throttle -= 1
            sim.throttled_total += 1
            response = _error(429)
            response.headers["Retry-After"] = str(faults._throttle_retry_after)
            return response
        now = sim._monotonic()
        self._window = [t for t in self._window if t > now - WINDOW_SECONDS]
        if len(self._window) >= sim.requests_per_minute:
            sim.throttled_total += 1
            response = _error(429)
            wait = self._window[0] + WINDOW_SECONDS - now
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            self._rate_headers(response, now)
            return response
        self._window.append(now)
        served: web.StreamResponse
        try:
            served = await handler(request)
        except _Invalid as invalid:
            served = _error(422, details=[invalid.detail])
        except web.HTTPNotFound:
            served = _error(404)
        self._rate_headers(served, now)
        return served

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.sim.api_key.encode()
        )

    def _rate_headers(self, response: web.StreamResponse, now: float) -> None:
        limit = self.sim.requests_per_minute
        oldest = self._window[0] if self._window else now
        reset_ms = self.sim._clock().timestamp() * 1000 + (oldest + WINDOW_SECONDS - now) * 1000
        response.headers["X-Ratelimit-Limit"] = str(limit)
        response.headers["X-Ratelimit-Remaining"] = str(max(0, limit - len(self._window)))
        response.headers["X-Ratelimit-Reset"] = str(int(reset_ms))

    # ---- lists --------------------------------------------------------------------------------

    def _list_handler(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        endpoint = self.endpoints[name]

        async def handle(request: web.Request) -> web.StreamResponse:
            params = _Params(request)
            query = params.list_query(with_ids=not endpoint.uuid_ids)
            predicates = self._common_filters(query) + endpoint.filters(params)
            if endpoint.uuid_ids and params.has("ids"):
                wanted = {p for v in params.texts("ids") for p in v.split(",") if p}
                predicates.append(lambda row: row.uuid in wanted)
            key = (name, *sorted(i for i in request.query.items() if i[0] not in _PAGING))
            rows = self._matching(key, endpoint, query, predicates)
            hold_back = self.sim.faults._hold_back
            if hold_back:
                cutoff = self.sim._clock() - hold_back
                rows = [row for row in rows if row.updated_at <= cutoff]
            start = (query.page - 1) * query.limit
            page = [endpoint.render(row) for row in rows[start : start + query.limit]]
            return _page(page, len(rows), query)

        return handle

    def _matching(
        self,
        key: tuple[Any, ...],
        endpoint: _Endpoint,
        query: _ListQuery,
        predicates: list[Predicate],
    ) -> list[Any]:
        """Rows matching a query, newest first; cached per query until its tables change."""
        revision = endpoint.revision()
        cached = self._cache.get(key)
        if cached is not None and cached[0] == revision:
            self._cache.move_to_end(key)
            return cached[1]
        candidates = endpoint.table.candidates(query)
        rows = [row for row in candidates if all(p(row) for p in predicates)]
        rows.sort(key=lambda row: row.seq, reverse=True)
        self._cache[key] = (revision, rows)
        if len(self._cache) > 64:
            self._cache.popitem(last=False)
        return rows

    @staticmethod
    def _common_filters(query: _ListQuery) -> list[Predicate]:
        checks: list[Predicate] = []
        if not query.include_deleted:
            checks.append(lambda row: row.deleted_at is None)
        if query.ids is not None:
            wanted = set(query.ids)
            checks.append(lambda row: row.id in wanted)
        bounds = (
            ("created_at", query.created_min, query.created_max),
            ("updated_at", query.updated_min, query.updated_max),
        )
        for attr, low, high in bounds:
            if low is not None:
                checks.append(_not_before(attr, low))
            if high is not None:
                checks.append(_not_after(attr, high))
        return checks

    def _item_filters(self, params: _Params) -> list[Predicate]:
        if params.boolean("include_archived"):
            return []
        return [lambda item: item.archived_at is None]

    def _variant_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        if not params.boolean("include_archived"):
            checks.append(lambda v: not self.sim._archived(v))
        skus = params.texts("sku")
        if skus:
            wanted = set(skus)
            checks.append(lambda v: v.sku in wanted)
        for attr in ("product_id", "material_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        kind = params.text("type")
        if kind is not None:
            checks.append(lambda v: ("product" if v.product_id else "material") == kind)
        return checks

    def _bom_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        for attr in ("product_variant_id", "ingredient_variant_id", "product_item_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        return checks

    def _movement_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        variant_ids = params.integers("variant_ids")
        if variant_ids is not None:
            wanted = set(variant_ids)
            checks.append(lambda m: m.variant_id in wanted)
        for attr in ("resource_id", "caused_by_resource_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        for attr in ("resource_type", "caused_by_order_no"):
            text = params.text(attr)
            if text is not None:
                checks.append(_equals(attr, text))
        return checks

    def _order_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        status = params.text("status")
        if status is not None:
            checks.append(_equals("status", status))
        return checks

    def _sales_row_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        orders = params.integers("sales_order_ids")
        if orders is not None:
            wanted = set(orders)
            checks.append(lambda line: line.parent_id in wanted)
        variant_id = params.integer("variant_id")
        if variant_id is not None:
            checks.append(_equals("variant_id", variant_id))
        return checks

    def _purchase_row_filters(self, params: _Params) -> list[Predicate]:
        checks = self._location_filter(params)
        order_id = params.integer("purchase_order_id")
        if order_id is not None:
            checks.append(_equals("parent_id", order_id))
        variant_id = params.integer("variant_id")
        if variant_id is not None:
            checks.append(_equals("variant_id", variant_id))
        return checks

    def _outsourced_recipe_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        for attr in ("purchase_order_id", "purchase_order_row_id", "ingredient_variant_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        return checks

    def _recipe_filters(self, params: _Params) -> list[Predicate]:
        checks: list[Predicate] = []
        for attr in ("manufacturing_order_id", "variant_id"):
            value = params.integer(attr)
            if value is not None:
                checks.append(_equals(attr, value))
        return checks

    @staticmethod
    def _location_filter(params: _Params) -> list[Predicate]:
        location_id = params.integer("location_id")
        return [] if location_id is None else [_equals("location_id", location_id)]

    def _one_handler(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        endpoint = self.endpoints[name]

        async def handle(request: web.Request) -> web.StreamResponse:
            raw = request.match_info["id"]
            if endpoint.uuid_ids:
                row = self.sim._bom_by_uuid.get(raw)
            else:
                row = endpoint.table.rows.get(_Params._parse_int("id", raw))
            if row is None:
                raise web.HTTPNotFound()
            return web.json_response(endpoint.render(row))

        return handle

    # ---- /inventory ---------------------------------------------------------------------------

    async def _inventory(self, request: web.Request) -> web.StreamResponse:
        params = _Params(request)
        query = params.list_query(with_ids=False)
        sim = self.sim
        include_archived = params.boolean("include_archived")
        wanted = params.integers("variant_id")
        if wanted is None:
            variant_ids = sim.inventory_variant_ids(include_archived)
        else:
            variant_ids = sorted(v for v in set(wanted) if sim.in_inventory(v, include_archived))
        locations = sorted(sim.location_names())
        location_id = params.integer("location_id")
        if location_id is not None:
            locations = [location_id] if location_id in locations else []
        extend = {p for v in params.texts("extend") for p in v.split(",")}
        # Rows are (variant, location) pairs in a fixed order: index arithmetic, not a scan.
        total = len(variant_ids) * len(locations)
        start = (query.page - 1) * query.limit
        rows: list[Json] = []
        for index in range(start, min(start + query.limit, total)):
            variant_id = variant_ids[index // len(locations)]
            row = sim.stock_row(variant_id, locations[index % len(locations)])
            if "variant" in extend:
                row["variant"] = self._variant(sim._variants.rows[variant_id])
            if "location" in extend:
                row["location"] = self._location(sim._locations.rows[row["location_id"]])
            rows.append(self._maybe_malformed(row))
        return _page(rows, total, query)

    def _maybe_malformed(self, row: Json) -> Json:
        faults = self.sim.faults
        if faults._malformed <= 0:
            return row
        faults._malformed -= 1
        if faults._malformed_kind == "missing_id":
            row.pop("variant_id", None)
        else:
            row["quantity_in_stock"] = "abc"
        return row


def _page(rows: list[Json], total: int, query: _ListQuery) -> web.Response:
    """A list response: `{"data": [...]}` plus X-Pagination with string values, as Katana."""
    pages = math.ceil(total / query.limit)
    pagination = {
        "total_records": str(total),
        "total_pages": str(pages),
        "offset": str((query.page - 1) * query.limit),
        "page": str(query.page),
        "first_page": "true" if query.page == 1 else "false",
        "last_page": "true" if query.page >= pages else "false",
    }
    return web.json_response({"data": rows}, headers={"X-Pagination": json.dumps(pagination)})


_ERROR_NAMES = {
    401: "UnauthorizedError",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    429: "TooManyRequestsError",
}


def _error(status: int, details: list[Json] | None = None) -> web.Response:
    """Katana's error body: statusCode, name, message (+ code and details for 422)."""
    phrase = HTTPStatus(status).phrase
    body: Json = {
        "statusCode": status,
        "name": _ERROR_NAMES.get(status, phrase.replace(" ", "").replace("-", "") + "Error"),
        "message": phrase,
    }
    if details is not None:
        body["message"] = "The request has invalid parameters. See `details` for more info."
        body["code"] = "VALIDATION_FAILED"
        body["details"] = details
    return web.json_response(body, status=status)
