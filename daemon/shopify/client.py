"""Shopify Admin GraphQL client: the only code in stocksync that speaks HTTP to Shopify.

One client serves one connection (shop) and may be shared by several tasks: they share its token
provider and its cost bucket. Every wait honours Shopify's hint, every retry is bounded, every
request has an explicit timeout.

Large shops: above `bulk_threshold` variants the catalogue, and above `bulk_threshold` items a
level read, come from one bulk operation instead of pages. Paging 100,000 variants' levels costs
millions of points (hours at a Standard plan's 100 points/s); a bulk query costs one mutation.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import structlog

from daemon.domain.models import (
    LevelKey,
    PlannedPush,
    PushRequest,
    PushResult,
    ShopifyVariant,
)
from daemon.shopify import bulk, queries
from daemon.shopify.errors import ShopifyAuthError, ShopifyError, ShopifyUnavailable
from daemon.shopify.pacing import CostBucket, QueryCost, parse_cost, throttle_wait

if TYPE_CHECKING:
    from daemon.metrics import Metrics
    from daemon.secrets import Secret
    from daemon.shopify.auth import TokenProvider

__all__ = ["ShopifyAuthError", "ShopifyClient", "ShopifyError", "ShopifyUnavailable"]

log = structlog.get_logger(__name__)

API = "shopify"
# inventorySetQuantities accepts at most this many quantities per call.
MAX_PUSHES_PER_CALL = 250
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
# The key was used for other variables: only a fresh key can go through. (2026-04 has no
# IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: a retry after a failed attempt gets its userErrors again.)
NEW_KEY_CODES = frozenset({"IDEMPOTENCY_KEY_PARAMETER_MISMATCH"})
# From 2026-10 Shopify answers a key whose earlier attempt failed with this code instead, and
# only a fresh key gets past it too. Acted on only by clients of that version or later.
NEW_KEY_FROM_2026_10 = "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"
_API_VERSION = re.compile(r"/admin/api/(\d{4}-\d{2})/")
# The first request with this key is still running: ask again shortly with the same key.
CONCURRENT_REQUEST_CODE = "IDEMPOTENCY_CONCURRENT_REQUEST"
CONCURRENT_REQUEST_WAIT = 1.0
# Transport failures and 5xx: exponential backoff from BASE, capped, with jitter.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
# A 429 with neither Retry-After nor a throttle status in its body.
DEFAULT_THROTTLE_WAIT = 1.0
# Default for ConnectionSettings.bulk_read_threshold (PRODUCT.md): above this many variants
# (or items asked for), reads go through a bulk operation.
DEFAULT_BULK_THRESHOLD = 20_000
# Bulk result files are read in chunks of this many bytes and split into lines as they arrive.
DOWNLOAD_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ShopifyLocation:
    """A Shopify location."""

    id: str
    name: str
    is_active: bool


class PushJournal(Protocol):
    """Where each inventorySetQuantities request is recorded before it is sent (PRODUCT.md §3)."""

    async def sending(self, request: PushRequest) -> None:
        """`request` is about to be sent: record it, and its levels as in flight under it."""

    async def lost(self) -> None:
        """An attempt may have reached Shopify but its answer was lost."""


async def _record(
    journal: PushJournal | None, variables: Mapping[str, Any], batch: Sequence[PlannedPush]
) -> None:
    if journal is not None:
        await journal.sending(PushRequest(str(variables["key"]), variables, tuple(batch)))


def _set_input(batch: Sequence[PlannedPush], reference: str) -> dict[str, object]:
    """The `input` of an inventorySetQuantities call setting "available" for `batch`."""
    return {
        "name": "available",
        "reason": "correction",
        "referenceDocumentUri": reference,
        "quantities": [
            {
                "inventoryItemId": push.inventory_item_id,
                "locationId": push.location_id,
                "quantity": push.quantity,
                # Required since 2026-04, even when there is nothing to compare: null says so.
                "changeFromQuantity": push.change_from,
            }
            for push in batch
        ],
    }


@dataclass(frozen=True, slots=True)
class _UserError:
    code: str | None
    field: tuple[str, ...]
    message: str

    def describe(self) -> str:
        return f"{self.code or 'USER_ERROR'}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    retry_after: str | None
    body: dict[str, Any] | None


class ShopifyClient:
    """Reads catalogue, locations and levels from one shop, and sets its available quantities."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        graphql_url: str,
        tokens: TokenProvider,
        *,
        metrics: Metrics | None = None,
        timeout: float = 30.0,
        max_attempts: int = 6,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
        bulk_timeout: float = bulk.DEFAULT_TIMEOUT,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if bulk_threshold < 0:
            raise ValueError(f"bulk_threshold must not be negative, not {bulk_threshold}")
        self._session = session
        self._url = graphql_url
        self._tokens = tokens
        self._metrics = metrics
        self._request_timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._bulk_threshold = bulk_threshold
        self._bulk_timeout = bulk_timeout
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._bucket = CostBucket(clock=clock, sleep=sleep)
        self._jitter = random.Random()
        version = _API_VERSION.search(graphql_url)
        self._new_key_codes = NEW_KEY_CODES | (
            {NEW_KEY_FROM_2026_10} if version is not None and version[1] >= "2026-10" else set()
        )

    def __repr__(self) -> str:
        return f"ShopifyClient({self._url!r})"

    # -- reads ----------------------------------------------------------------------------------

    async def locations(self) -> list[ShopifyLocation]:
        """Every location of the shop, 250 a page."""
        found: list[ShopifyLocation] = []
        for node in await self._all_pages(queries.LOCATIONS, "locations", queries.LOCATIONS_COST):
            location = _location(node)
            if location is None:
                self._malformed("locations", node)
            else:
                found.append(location)
        return found

    async def variants(self) -> list[ShopifyVariant]:
        """The whole catalogue of product variants with their inventory items, 250 a page.

        A catalogue above the bulk threshold is read by one bulk operation instead: when the
        first page is full and more follow, one cheap count says which way to go.
        """
        found: list[ShopifyVariant] = []
        nodes, after = await self._page(
            queries.VARIANTS, "productVariants", queries.VARIANTS_COST, None
        )
        # A catalogue that fits one page is read already: only a full first page with more
        # behind it can be a large one, so smaller shops never pay for the count.
        if (
            after is not None
            and len(nodes) >= queries.PAGE_SIZE
            and await self._catalogue_above_threshold()
        ):
            return await self._bulk_variants()
        while True:
            for node in nodes:
                variant = _variant(node)
                if variant is None:
                    self._malformed("product_variants", node)
                else:
                    found.append(variant)
            if after is None:
                return found
            nodes, after = await self._page(
                queries.VARIANTS, "productVariants", queries.VARIANTS_COST, after
            )

    async def available_levels(
        self,
        item_ids: Collection[str],
        location_ids: Collection[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[LevelKey, int | None]:
        """Shopify's "available" per (item, location) asked for; absent key = not stocked there.

        `progress(done, total)` is told after each query how many of the items were read at
        every location (a bulk read reports once, at its end).
        """
        wanted = sorted(set(location_ids))
        items = list(dict.fromkeys(item_ids))
        levels: dict[LevelKey, int | None] = {}
        if not items or not wanted:
            return levels
        if len(items) > self._bulk_threshold:
            levels = await self._bulk_levels(frozenset(items), frozenset(wanted))
            if progress is not None:
                progress(len(items), len(items))
            return levels
        per_query = queries.LEVELS_COST_BUDGET // queries.available_levels_cost(1)
        chunk = max(1, min(queries.PAGE_SIZE, per_query))
        for start in range(0, len(items), chunk):
            ids = items[start : start + chunk]
            for location in wanted:
                await self._read_levels(ids, location, levels)
            if progress is not None:
                progress(start + len(ids), len(items))
        return levels

    async def _read_levels(
        self, ids: list[str], location: str, levels: dict[LevelKey, int | None]
    ) -> None:
        """One AVAILABLE_LEVELS query: the level of each of `ids` at `location`, where stocked."""
        data = await self._execute(
            queries.AVAILABLE_LEVELS,
            {"ids": ids, "location": location},
            cost=queries.available_levels_cost(len(ids)),
        )
        for node in _list(data.get("nodes"), "nodes"):
            # Unknown ids come back as null, other node types as {}: neither is stocked anywhere.
            if not isinstance(node, dict) or not isinstance(node.get("id"), str):
                continue
            level = node.get("inventoryLevel")
            if level is None:
                continue  # not stocked (or inactive) at this location
            quantities = level.get("quantities") if isinstance(level, dict) else None
            readable, available = _available(quantities)
            if readable:
                levels[(node["id"], location)] = available
            else:
                self._malformed("inventory_levels", node)

    # -- bulk reads -----------------------------------------------------------------------------

    async def _catalogue_above_threshold(self) -> bool:
        """Whether the shop has more variants than the bulk threshold (one cheap count)."""
        # Shopify caps the count at `limit` (10,000 unless told otherwise) and then says
        # AT_LEAST: asking up to one more than the threshold answers exactly what is needed.
        data = await self._execute(
            queries.VARIANTS_COUNT,
            {"limit": self._bulk_threshold + 1},
            cost=queries.VARIANTS_COUNT_COST,
        )
        counted = data.get("productVariantsCount")
        count = counted.get("count") if isinstance(counted, dict) else None
        if isinstance(count, bool) or not isinstance(count, int):
            # Paging is always right, only slower: better than failing the whole read.
            self._malformed("product_variants_count", counted)
            return False
        return count > self._bulk_threshold

    async def _bulk_variants(self) -> list[ShopifyVariant]:
        """The whole catalogue through one bulk operation."""
        found: dict[str, ShopifyVariant] = {}

        def take(line: dict[str, Any]) -> None:
            variant = _variant(line)
            if variant is None:
                self._malformed("product_variants", line)
            else:
                found[variant.id] = variant

        await self._bulk_read(queries.BULK_VARIANTS, "product_variants", take)
        return list(found.values())

    async def _bulk_levels(
        self, items: frozenset[str], wanted: frozenset[str]
    ) -> dict[LevelKey, int | None]:
        """Every level of the shop through one bulk operation, kept for the pairs asked for."""
        levels: dict[LevelKey, int | None] = {}

        def take(line: dict[str, Any]) -> None:
            parent = line.get(bulk.PARENT_KEY)
            if parent is None:
                return  # an inventory item's own line: its levels are lines of their own
            if not isinstance(parent, str):
                self._malformed("inventory_levels", line)
                return
            if parent not in items:
                return
            parsed = _level(line)
            if parsed is None:
                self._malformed("inventory_levels", line)
            elif parsed[0] in wanted:
                levels[(parent, parsed[0])] = parsed[1]

        await self._bulk_read(queries.BULK_AVAILABLE_LEVELS, "inventory_levels", take)
        return levels

    async def _bulk_read(
        self, query: str, resource: str, take: Callable[[dict[str, Any]], None]
    ) -> None:
        """Run one bulk query and hand every line of its result to `take`, in file order.

        A download cut short starts over, so `take` may see a line twice and must be
        idempotent. Waiting for a slot, running and downloading share one bulk timeout.
        """
        started = self._clock()
        deadline = started + self._bulk_timeout
        operation_id = await self._start_bulk(query, deadline)
        operation = await self._finished_bulk(operation_id, deadline)
        log.info(
            "shopify_bulk_completed",
            resource=resource,
            operation_id=operation.id,
            objects=operation.object_count,
            seconds=round(self._clock() - started, 3),
        )
        if operation.url is None:
            return  # Shopify writes no file when the query found nothing
        await self._download_jsonl(operation.url, resource, take, deadline)

    async def _start_bulk(self, query: str, deadline: float) -> str:
        """Submit a bulk query, waiting while the app's bulk slots are taken; returns its id."""
        wait: float | None = None
        while True:
            data = await self._execute(
                queries.BULK_RUN, {"query": query}, cost=queries.BULK_RUN_COST
            )
            errors = _user_errors(data, "bulkOperationRunQuery")
            if errors and all(error.code in bulk.BUSY_CODES for error in errors):
                # Another bulk query of this app (an earlier run, another process) holds the
                # slot; it ends on its own, so wait for it rather than fail the read.
                wait = bulk.next_poll_wait(wait)
                log.info(
                    "shopify_bulk_busy",
                    codes=sorted({error.code for error in errors if error.code}),
                    wait_seconds=wait,
                )
                await self._wait_for_bulk(wait, deadline, "a free bulk operation slot")
                continue
            if errors:
                messages = "; ".join(error.describe() for error in errors)
                raise ShopifyError(f"bulkOperationRunQuery refused the query: {messages}")
            payload = _object(data.get("bulkOperationRunQuery"), "bulkOperationRunQuery")
            operation = bulk.parse_operation(payload.get("bulkOperation"))
            if operation is None:
                raise ShopifyError(
                    "malformed Shopify response: bulkOperationRunQuery.bulkOperation"
                )
            log.info("shopify_bulk_started", operation_id=operation.id)
            return operation.id

    async def _finished_bulk(self, operation_id: str, deadline: float) -> bulk.BulkOperation:
        """Poll an operation until it completes, 0.5 s then up to 5 s apart; raise if it fails."""
        wait: float | None = None
        while True:
            data = await self._execute(
                queries.BULK_OPERATION,
                {"id": operation_id},
                cost=queries.BULK_OPERATION_COST,
            )
            operation = bulk.parse_operation(data.get("bulkOperation"))
            if operation is None:
                raise ShopifyUnavailable(f"Shopify does not know bulk operation {operation_id}")
            if operation.status == bulk.COMPLETED:
                return operation
            if operation.failed:
                raise ShopifyUnavailable(
                    f"Shopify bulk operation {operation.id} ended {operation.status} "
                    f"(errorCode {operation.error_code or 'none'})"
                )
            wait = bulk.next_poll_wait(wait)
            await self._wait_for_bulk(wait, deadline, f"bulk operation {operation_id}")

    async def _wait_for_bulk(self, wait: float, deadline: float, what: str) -> None:
        """Sleep before the next bulk poll, or give up once the bulk timeout is spent."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ShopifyUnavailable(f"gave up waiting for {what} after {self._bulk_timeout:g} s")
        await self._sleep(min(wait, remaining))

    async def _download_jsonl(
        self, url: str, resource: str, take: Callable[[dict[str, Any]], None], deadline: float
    ) -> None:
        """Stream the result file line by line, starting over when a transfer breaks (bounded)."""
        failures = 0
        while True:
            try:
                status = await self._stream_jsonl(url, resource, take, deadline)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                await self._back_off(failures, f"bulk result download: {type(exc).__name__}")
                continue
            if status == 200:
                return
            if status >= 500 or status == 429:
                failures += 1
                await self._back_off(failures, f"bulk result download: HTTP {status}")
                continue
            raise ShopifyError(f"the bulk result download answered HTTP {status}")

    async def _stream_jsonl(
        self, url: str, resource: str, take: Callable[[dict[str, Any]], None], deadline: float
    ) -> int:
        """One download of a result file; returns its HTTP status (lines are taken on 200)."""
        # The whole transfer may use what is left of the bulk timeout, but a stalled connection
        # still fails after the usual request timeout.
        timeout = aiohttp.ClientTimeout(
            total=max(self._request_timeout, deadline - self._clock()),
            sock_connect=self._request_timeout,
            sock_read=self._request_timeout,
        )
        started = self._clock()
        status = "error"
        try:
            # A signed storage URL, not the Admin API: it needs no token, so none is sent.
            async with self._session.get(url, timeout=timeout) as response:
                status = str(response.status)
                if response.status != 200:
                    return response.status
                lines = bulk.JsonlLines()
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                    for line in lines.feed(chunk):
                        self._take_line(line, lines.count, resource, take)
                for line in lines.finish():
                    self._take_line(line, lines.count, resource, take)
                return 200
        finally:
            self._observe_request(status, started)

    def _take_line(
        self, line: bytes, number: int, resource: str, take: Callable[[dict[str, Any]], None]
    ) -> None:
        """Decode one JSONL line and hand it over; a line that is not a JSON object is skipped."""
        if not line.strip():
            return
        decoded = bulk.decode_line(line)
        if decoded is None:
            log.warning(
                "shopify_bulk_line_malformed", resource=resource, line=number, length=len(line)
            )
            if self._metrics is not None:
                self._metrics.malformed_rows.labels(api=API, resource=resource).inc()
            return
        take(decoded)

    # -- writes ---------------------------------------------------------------------------------

    async def set_available(
        self,
        pushes: Sequence[PlannedPush],
        *,
        reference: str,
        journal: PushJournal | None = None,
        resend: PushRequest | None = None,
    ) -> list[PushResult]:
        """Set "available" for ≤ 250 distinct pairs; one PushResult per push, in the same order.

        `journal` is told every request before it is sent, and every attempt whose answer was
        lost. `resend` is a request recorded earlier whose answer never arrived: its first
        attempt goes out unchanged, under the same key (`pushes` must be its pushes).
        """
        _check_batch(pushes)
        if resend is not None and tuple(pushes) != resend.pushes:
            raise ValueError("a re-sent request must be sent with its own pushes")
        results: dict[int, PushResult] = {}
        stale: list[tuple[int, str]] = []
        remaining = list(range(len(pushes)))
        while remaining:
            failed = await self._set_quantities(
                [pushes[i] for i in remaining], reference, journal, resend
            )
            resend = None
            if not failed:
                for index in remaining:
                    results[index] = PushResult(push=pushes[index], status="applied")
                break
            # One bad element can fail the whole call, so nothing in it is taken as applied:
            # the failing elements are set aside and the rest go again as a new batch (new key).
            for position, error in failed.items():
                index = remaining[position]
                push = pushes[index]
                if error.code in STALE_CODES:
                    stale.append((index, error.code))
                else:
                    results[index] = PushResult(
                        push=push,
                        status="rejected",
                        code=error.code or "USER_ERROR",
                        message=error.message,
                    )
                    log.info(
                        "shopify_push_rejected",
                        sku=push.sku,
                        inventory_item_id=push.inventory_item_id,
                        location_id=push.location_id,
                        code=error.code,
                        message=error.message,
                    )
            remaining = [
                index for position, index in enumerate(remaining) if position not in failed
            ]
        if stale:
            results.update(await self._resolve_stale(pushes, stale))
        return [results[index] for index in range(len(pushes))]

    async def _set_quantities(
        self,
        batch: Sequence[PlannedPush],
        reference: str,
        journal: PushJournal | None,
        resend: PushRequest | None,
    ) -> dict[int, _UserError]:
        """One batch through inventorySetQuantities; returns the userErrors by element position."""
        if resend is not None:
            variables: dict[str, object] = dict(resend.variables)
        else:
            variables = {"input": _set_input(batch, reference), "key": _new_key()}
            await _record(journal, variables, batch)
        # One key per distinct batch. `_execute` retries transport failures, 5xx and throttling
        # with these very variables, hence the same key; Shopify's dedup is not relied upon.
        on_lost = None if journal is None else journal.lost
        for _ in range(self._max_attempts):
            data = await self._execute(
                queries.SET_QUANTITIES,
                variables,
                cost=queries.SET_QUANTITIES_COST,
                on_lost=on_lost,
            )
            errors = _user_errors(data, "inventorySetQuantities")
            codes = {error.code for error in errors}
            if codes & self._new_key_codes:
                log.info("shopify_idempotency_new_key", codes=sorted(c for c in codes if c))
                variables = {**variables, "key": _new_key()}
                await _record(journal, variables, batch)
                continue
            if CONCURRENT_REQUEST_CODE in codes:
                await self._sleep(CONCURRENT_REQUEST_WAIT)
                continue
            unplaced_stale = [
                e
                for e in errors
                if e.code in STALE_CODES and _element_index(e.field, len(batch)) is None
            ]
            if unplaced_stale:
                errors = [e for e in errors if e not in unplaced_stale]
                errors += await self._locate_stale(batch, unplaced_stale[0])
            return _by_element(errors, len(batch))
        raise ShopifyUnavailable(
            f"inventorySetQuantities kept failing on its idempotency key "
            f"after {self._max_attempts} attempts"
        )

    async def _locate_stale(
        self, batch: Sequence[PlannedPush], error: _UserError
    ) -> list[_UserError]:
        """Pin a stale answer that names no element (`field: null`) on the elements it concerns.

        Shopify's docs say `field` points at the failing element, but some stores answer a stale
        compare with `field: null`. The call failed as a whole, so re-read every compared pair:
        those whose level is not the expected one are the stale ones. If none differs any more
        (it changed back meanwhile), every compared element is treated as stale and re-read
        again by the caller, which never mistakes it for applied.
        """
        compared = [(i, p) for i, p in enumerate(batch) if p.change_from is not None]
        if not compared:
            raise ShopifyError(f"inventorySetQuantities failed: {error.describe()}")
        current = await self.available_levels(
            {p.inventory_item_id for _, p in compared}, {p.location_id for _, p in compared}
        )
        differing = [(i, p) for i, p in compared if current.get(p.key) != p.change_from]
        return [
            _UserError(
                code=error.code, field=("input", "quantities", str(i)), message=error.message
            )
            for i, _ in (differing or compared)
        ]

    async def _resolve_stale(
        self, pushes: Sequence[PlannedPush], stale: Sequence[tuple[int, str]]
    ) -> dict[int, PushResult]:
        """Re-read the levels Shopify changed since our last push, for the caller to overwrite."""
        # Policy on stale: Katana is the source of truth, so the caller overwrites the level with
        # Katana's value, sending changeFromQuantity = the value re-read here. Why compare at
        # all, then? Shopify lowers "available" the moment an order is placed, before Katana
        # knows of the order; a blind set would clobber that decrement without a trace. The
        # compare turns the race into a stale answer: re-read, overwritten and counted
        # (stale_overwrites_total), so it is visible instead of silent.
        stale_pushes = [pushes[index] for index, _ in stale]
        current = await self.available_levels(
            {push.inventory_item_id for push in stale_pushes},
            {push.location_id for push in stale_pushes},
        )
        resolved: dict[int, PushResult] = {}
        for index, code in stale:
            push = pushes[index]
            now = current.get(push.key)
            if now == push.quantity:
                # Shopify already holds the wanted value (often our own earlier attempt whose
                # answer was lost): nothing is left to overwrite.
                resolved[index] = PushResult(push=push, status="applied")
                continue
            log.info(
                "shopify_level_stale",
                sku=push.sku,
                inventory_item_id=push.inventory_item_id,
                location_id=push.location_id,
                expected=push.change_from,
                current=now,
            )
            resolved[index] = PushResult(push=push, status="stale", current=now, code=code)
        return resolved

    async def activate(self, inventory_item_id: str, location_id: str, available: int) -> bool:
        """Stock an item at a location with an initial available quantity; False if refused."""
        variables = {
            "inventoryItemId": inventory_item_id,
            "locationId": location_id,
            "available": available,
            "key": _new_key(),
        }
        data = await self._execute(queries.ACTIVATE, variables, cost=queries.ACTIVATE_COST)
        errors = _user_errors(data, "inventoryActivate")
        if errors:
            log.warning(
                "shopify_activate_rejected",
                inventory_item_id=inventory_item_id,
                location_id=location_id,
                errors=[error.describe() for error in errors],
            )
            return False
        return True

    # -- transport ------------------------------------------------------------------------------

    async def _all_pages(self, document: str, field: str, cost: int) -> list[object]:
        """Every node of a top-level connection, following endCursor."""
        nodes, after = await self._page(document, field, cost, None)
        while after is not None:
            more, after = await self._page(document, field, cost, after)
            nodes.extend(more)
        return nodes

    async def _page(
        self, document: str, field: str, cost: int, after: str | None
    ) -> tuple[list[object], str | None]:
        """One page of a top-level connection: its nodes, and the cursor of the next page."""
        data = await self._execute(document, {"after": after}, cost=cost)
        connection = _object(data.get(field), field)
        nodes = _list(connection.get("nodes"), f"{field}.nodes")
        return nodes, _next_cursor(connection, after, field)

    async def _execute(
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
                await self._back_off(failures, str(exc))
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                if on_lost is not None:
                    await on_lost()
                failures += 1
                await self._back_off(failures, type(exc).__name__)
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
                await self._back_off(failures, f"HTTP {reply.status}")
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
                await self._back_off(failures, "response was not a JSON object")
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
            self._observe_request(status, started)

    def _observe_request(self, status: str, started: float) -> None:
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

    async def _back_off(self, failures: int, reason: str) -> None:
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

    def _malformed(self, resource: str, node: object) -> None:
        node_id = node.get("id") if isinstance(node, dict) else None
        log.warning("shopify_malformed_row", resource=resource, id=node_id)
        if self._metrics is not None:
            self._metrics.malformed_rows.labels(api=API, resource=resource).inc()


# -- payload parsing ----------------------------------------------------------------------------


def _new_key() -> str:
    return str(uuid.uuid4())


def _check_batch(pushes: Sequence[PlannedPush]) -> None:
    if len(pushes) > MAX_PUSHES_PER_CALL:
        raise ValueError(
            f"inventorySetQuantities takes at most {MAX_PUSHES_PER_CALL} quantities, "
            f"got {len(pushes)}"
        )
    seen: set[LevelKey] = set()
    for push in pushes:
        if push.key in seen:
            raise ValueError(
                f"inventory item {push.inventory_item_id} at location {push.location_id} "
                "appears twice in one batch"
            )
        seen.add(push.key)


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


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShopifyError(f"malformed Shopify response: {what} is not an object")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise ShopifyError(f"malformed Shopify response: {what} is not a list")
    return value


def _next_cursor(connection: Mapping[str, Any], after: str | None, what: str) -> str | None:
    """The cursor of the next page, or None on the last page."""
    page = _object(connection.get("pageInfo"), f"{what}.pageInfo")
    if page.get("hasNextPage") is not True:
        return None
    cursor = page.get("endCursor")
    # Without a new cursor the next request would fetch this page again, forever.
    if not isinstance(cursor, str) or not cursor or cursor == after:
        raise ShopifyError(f"malformed Shopify response: {what} has a next page but no new cursor")
    return cursor


def _location(node: object) -> ShopifyLocation | None:
    if not isinstance(node, dict):
        return None
    location_id, name, active = node.get("id"), node.get("name"), node.get("isActive")
    if (
        not isinstance(location_id, str)
        or not isinstance(name, str)
        or not isinstance(active, bool)
    ):
        return None
    return ShopifyLocation(id=location_id, name=name, is_active=active)


def _variant(node: object) -> ShopifyVariant | None:
    if not isinstance(node, dict):
        return None
    variant_id, sku, item = node.get("id"), node.get("sku"), node.get("inventoryItem")
    if not isinstance(variant_id, str) or not (sku is None or isinstance(sku, str)):
        return None
    if not isinstance(item, dict):
        return None
    item_id, tracked = item.get("id"), item.get("tracked")
    if not isinstance(item_id, str) or not isinstance(tracked, bool):
        return None
    # Shopify reports a variant without a SKU as "" or null; both mean "no SKU".
    return ShopifyVariant(
        id=variant_id, sku=sku or None, inventory_item_id=item_id, tracked=tracked
    )


def _available(quantities: object) -> tuple[bool, int | None]:
    """(readable, the "available" quantity) of an InventoryLevel's `quantities`; the quantity
    is None where the level has no "available" one."""
    if not isinstance(quantities, list):
        return False, None
    for quantity in quantities:
        if isinstance(quantity, dict) and quantity.get("name") == "available":
            value = quantity.get("quantity")
            if isinstance(value, bool) or not isinstance(value, int):
                return False, None
            return True, value
    return True, None


def _level(node: object) -> tuple[str, int | None] | None:
    """(location id, available) from an InventoryLevel node; None when malformed."""
    if not isinstance(node, dict):
        return None
    location = node.get("location")
    location_id = location.get("id") if isinstance(location, dict) else None
    readable, available = _available(node.get("quantities"))
    if not isinstance(location_id, str) or not readable:
        return None
    return location_id, available


def _user_errors(data: Mapping[str, Any], mutation: str) -> list[_UserError]:
    payload = _object(data.get(mutation), mutation)
    errors: list[_UserError] = []
    for raw in _list(payload.get("userErrors"), f"{mutation}.userErrors"):
        if not isinstance(raw, dict):
            raise ShopifyError(f"malformed Shopify response: {mutation}.userErrors entry")
        code, field, message = raw.get("code"), raw.get("field"), raw.get("message")
        errors.append(
            _UserError(
                code=code if isinstance(code, str) else None,
                field=tuple(str(part) for part in field) if isinstance(field, list) else (),
                message=message if isinstance(message, str) else "",
            )
        )
    return errors


def _element_index(field: Sequence[str], size: int) -> int | None:
    """The batch position a userError's field points at (["input","quantities","3",...] → 3)."""
    for position, part in enumerate(field[:-1]):
        if part == "quantities":
            index = field[position + 1]
            if index.isdigit() and int(index) < size:
                return int(index)
            return None
    return None


def _by_element(errors: Iterable[_UserError], size: int) -> dict[int, _UserError]:
    """userErrors by element position; an error naming no element fails the whole call."""
    by_element: dict[int, _UserError] = {}
    whole_call: list[_UserError] = []
    for error in errors:
        index = _element_index(error.field, size)
        if index is None:
            whole_call.append(error)
        else:
            by_element.setdefault(index, error)
    if whole_call:
        messages = "; ".join(error.describe() for error in whole_call)
        raise ShopifyError(f"inventorySetQuantities failed: {messages}")
    return by_element
