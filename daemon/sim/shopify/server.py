"""`ShopifySim`: the simulated shop served over HTTP, and one request's run through it.

The aiohttp app answers ``POST /admin/api/{version}/graphql.json`` (header
``X-Shopify-Access-Token``; faults first: outage, injected failures, HTTP 429), ``POST
/admin/oauth/access_token`` (client credentials, 24 h tokens) and ``GET /bulk/<n>.jsonl`` (the
storage host behind bulk result URLs: signed, no token needed). `execute` runs one
authenticated request as Shopify would: parse and validate, variables, input size, requested
cost against the bucket, execution against the schema, refund to the actual cost. Requests
held by ``faults.hold_next_set`` are applied later whether or not their sender still waits.
"""

from __future__ import annotations

import asyncio
import http
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from graphql import OperationType, execute_sync, get_operation_ast

from daemon.sim.shopify.cost import MAX_QUERY_COST, _Bucket, _cost_middleware, _requested_cost
from daemon.sim.shopify.model import BulkDownload, _gid
from daemon.sim.shopify.mutations import _Mutations
from daemon.sim.shopify.request import DEFAULT_ORIGIN, _Request, _variables_with_defaults
from daemon.sim.shopify.resolvers import _Reads
from daemon.sim.shopify.schema import _SCHEMA, _fragments
from daemon.sim.shopify.validation import _input_size_error, _prepare, _variable_errors

TOKEN_LIFETIME_SECONDS: Final = 86399
TOKEN_SCOPE: Final = "write_inventory,read_products,read_locations"
INVALID_TOKEN_BODY: Final = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
_VERSION_RE: Final = re.compile(r"\d{4}-\d{2}|unstable")


# --------------------------------------------------------------------------------------------
# The simulator


class ShopifySim(_Mutations, _Reads, _Bucket):
    """An in-process Shopify store: Python methods drive it, `app()` serves its Admin API.

    What tests and benchmarks read back:
    - `levels`: (item gid, location gid) -> available, for stocked pairs;
    - `mutation_calls`: executed mutation fields by name (rejected calls included);
    - `set_quantities_sizes`: the number of quantities in each executed inventorySetQuantities;
    - `changes`: every element inventorySetQuantities applied, timestamped on `clock`;
    - `throttled_total`: requests answered THROTTLED; `requests_total`: GraphQL POSTs received;
    - `bulk_downloads`: every GET of a bulk operation's result file.

    `bulk_delay` (seconds of `clock`) is how long a bulk operation runs; `bulk_query_limit`
    overrides how many bulk queries may run at once (None: what the request's API version allows).
    """

    def app(self) -> web.Application:
        """The aiohttp application serving the Admin GraphQL API and the OAuth token endpoint."""
        application = web.Application()
        application.router.add_post("/admin/api/{version}/graphql.json", self._handle_graphql)
        application.router.add_post("/admin/oauth/access_token", self._handle_access_token)
        application.router.add_get("/bulk/{name}", self._handle_bulk_result)
        application.on_cleanup.append(self._stop_bulk_writers)
        return application

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle_graphql(self, request: web.Request) -> web.StreamResponse:
        self.requests_total += 1
        version = request.match_info["version"]
        if not _VERSION_RE.fullmatch(version):
            return web.json_response({"errors": "Not Found"}, status=404)
        if self.faults.outage:
            return _outage_response()
        failure = self.faults._take_failure()
        if failure is not None:
            return web.json_response({"errors": http.HTTPStatus(failure).phrase}, status=failure)
        if self.faults._take_http429():
            return web.json_response(
                {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]},
                status=429,
                headers={"Retry-After": "2.0"},
            )
        if not self._token_valid(request.headers.get("X-Shopify-Access-Token")):
            return web.json_response(INVALID_TOKEN_BODY, status=401)
        query, variables, operation_name = await _read_graphql_body(request)
        if query is None:
            return web.json_response(
                {"errors": {"query": "Required parameter missing or invalid"}}, status=400
            )
        await self._settle_bulk()
        origin = str(request.url.origin())
        hold = self.faults._take_hold() if "inventorySetQuantities" in query else None
        if hold is not None:
            task = asyncio.ensure_future(
                self._apply_later(*hold, query, variables, operation_name, version, origin)
            )
            self._held.add(task)
            task.add_done_callback(self._held.discard)
            # Shielded: the request is applied even when its sender hangs up or dies.
            body = await asyncio.shield(task)
        else:
            body = self.execute(query, variables, operation_name, version=version, origin=origin)
        return web.json_response(body, headers={"X-Shopify-API-Version": version})

    async def _apply_later(
        self,
        seconds: float | None,
        dedup: bool,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        version: str,
        origin: str,
    ) -> dict[str, Any]:
        if seconds is None:
            await self._held_release.wait()
        else:
            await asyncio.sleep(seconds)
        self._bypass_idempotency = not dedup
        try:
            return self.execute(query, variables, operation_name, version=version, origin=origin)
        finally:
            self._bypass_idempotency = False

    def release_held(self) -> None:
        """Let every request held until released be applied now."""
        self._held_release.set()

    @property
    def held_requests(self) -> int:
        """Requests held by `faults.hold_next_set` and not applied yet."""
        return len(self._held)

    async def held_applied(self) -> None:
        """Wait until every held request has been applied."""
        while self._held:
            await asyncio.wait(set(self._held))

    async def _handle_bulk_result(self, request: web.Request) -> web.StreamResponse:
        """A bulk result file, as Shopify's signed storage URL serves it (no token needed)."""
        name = re.fullmatch(r"(\d+)\.jsonl", request.match_info["name"])
        operation = (
            self._bulk_operations.get(_gid("BulkOperation", int(name.group(1)))) if name else None
        )
        signature = request.query.get("signature", "")
        if operation is None or not _same_secret(signature, operation.signature):
            return _storage_error(403, "SignatureDoesNotMatch", "Access denied.")
        self._advance_bulk(operation)
        with_token = "X-Shopify-Access-Token" in request.headers
        status = self.faults._take_download_failure()
        if status is None and (operation.status != "COMPLETED" or operation.jsonl is None):
            status = 400
        self.bulk_downloads.append(BulkDownload(operation.id, status or 200, with_token))
        if status == 400:
            return _storage_error(400, "ExpiredToken", "The provided token has expired.")
        if status is not None:
            return _storage_error(status, "InternalError", http.HTTPStatus(status).phrase)
        assert operation.jsonl is not None
        return web.Response(body=operation.jsonl, content_type="application/jsonl")

    async def _handle_access_token(self, request: web.Request) -> web.StreamResponse:
        if self.faults.outage:
            return _outage_response()
        if request.content_type == "application/json":
            try:
                form: Mapping[str, Any] = await request.json()
            except ValueError:
                form = {}
        else:
            form = await request.post()
        if not isinstance(form, Mapping) or form.get("grant_type") != "client_credentials":
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The grant type is not supported.",
                },
                status=400,
            )
        client_id, client_secret = (
            str(form.get("client_id", "")),
            str(form.get("client_secret", "")),
        )
        if not (
            _same_secret(client_id, self._client_id)
            and _same_secret(client_secret, self._client_secret)
        ):
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed: unknown client or "
                    "wrong client secret.",
                },
                status=400,
            )
        token = f"shpat_{secrets.token_hex(16)}"
        self._issued_tokens[token] = self._clock() + TOKEN_LIFETIME_SECONDS
        return web.json_response(
            {"access_token": token, "scope": TOKEN_SCOPE, "expires_in": TOKEN_LIFETIME_SECONDS}
        )

    def _token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        if _same_secret(token, self._access_token):
            return True
        expires_at = self._issued_tokens.get(token)
        return expires_at is not None and self._clock() < expires_at

    # -- GraphQL execution ---------------------------------------------------------------------

    def execute(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        version: str = "2026-10",
        origin: str = DEFAULT_ORIGIN,
    ) -> dict[str, Any]:
        """Run one authenticated GraphQL request as Shopify would; returns the JSON body.

        `origin` is where the request came in: bulk result URLs point there.
        """
        provided = dict(variables or {})
        document, errors = _prepare(query)
        if document is None:
            return {"errors": list(errors)}
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f'No operation named "{operation_name}"'
                if operation_name
                else "An operation name is required"
            )
            return {"errors": [{"message": message}]}
        variable_errors = _variable_errors(operation, provided)
        if variable_errors:
            return {"errors": variable_errors}
        fragments = _fragments(document)
        raw_variables = _variables_with_defaults(operation, provided)
        size_error = _input_size_error(operation, fragments, raw_variables)
        if size_error is not None:
            return {"errors": [size_error]}
        requested = _requested_cost(operation, fragments, raw_variables)
        if requested > MAX_QUERY_COST:
            return self._max_cost_exceeded(requested)
        self._restore_bucket()
        if self.faults._take_throttle() or self._bucket < requested:
            self.throttled_total += 1
            return self._throttled(requested)
        self._bucket -= requested
        is_mutation = operation.operation is OperationType.MUTATION
        if not is_mutation:
            self.query_calls[operation.name.value if operation.name else ""] += 1
        context = _Request(self, version, raw_variables, origin=origin)
        result = execute_sync(
            _SCHEMA,
            document,
            context_value=context,
            variable_values=provided,
            operation_name=operation_name,
            # Mutations cost a flat 10, so only queries need their fields counted.
            middleware=None if is_mutation else [_cost_middleware],
        )
        actual = requested if is_mutation else min(context.actual_cost, requested)
        self._bucket = min(self.bucket_size, self._bucket + requested - actual)
        self.points_spent += actual
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        body["data"] = result.data
        body["extensions"] = {"cost": self._cost(requested, actual)}
        return body


# --------------------------------------------------------------------------------------------
# Small helpers used by the simulator


def _storage_error(status: int, code: str, message: str) -> web.Response:
    """An error as the storage host behind result URLs words it (XML, like Google Cloud)."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


def _same_secret(given: str, expected: str) -> bool:
    # Constant-time, and on bytes: compare_digest refuses non-ASCII str.
    return secrets.compare_digest(given.encode(), expected.encode())


def _outage_response() -> web.Response:
    return web.Response(
        status=503, text="<html><body>Service Unavailable</body></html>", content_type="text/html"
    )


async def _read_graphql_body(
    request: web.Request,
) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """The query, variables and operation name of a GraphQL POST (JSON or application/graphql)."""
    if request.content_type == "application/graphql":
        return await request.text(), None, None
    try:
        body = await request.json()
    except ValueError:
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or (variables is not None and not isinstance(variables, dict)):
        return None, None, None
    return query, variables, name if isinstance(name, str) else None
