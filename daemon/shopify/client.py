"""Shopify Admin GraphQL client: the only code in stocksync that speaks HTTP to Shopify.

One client serves one connection (shop) and may be shared by several tasks: they share its token
provider and its cost bucket. Every wait honours Shopify's hint, every retry is bounded, every
request has an explicit timeout.

Large shops: above `bulk_threshold` variants the catalogue, and above `bulk_threshold` items a
level read, come from one bulk operation instead of pages. Paging 100,000 variants' levels costs
millions of points (hours at a Standard plan's 100 points/s); a bulk query costs one mutation.

The client keeps the reads; it owns a `Transport` (transport.py: the GraphQL requests, retries
and pacing) and hands its writes to `InventoryWrites` (inventory.py); the response nodes are
parsed in nodes.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from daemon.domain.models import LevelKey, PlannedPush, PushRequest, PushResult, ShopifyVariant
from daemon.shopify import bulk, queries
from daemon.shopify.errors import ShopifyAuthError, ShopifyError, ShopifyUnavailable
from daemon.shopify.inventory import InventoryWrites, PushJournal
from daemon.shopify.nodes import (
    ShopifyLocation,
    _available,
    _level,
    _list,
    _location,
    _next_cursor,
    _object,
    _user_errors,
    _variant,
)
from daemon.shopify.transport import API, Transport

if TYPE_CHECKING:
    from daemon.metrics import Metrics
    from daemon.shopify.auth import TokenProvider

__all__ = [
    "PushJournal",
    "ShopifyAuthError",
    "ShopifyClient",
    "ShopifyError",
    "ShopifyLocation",
    "ShopifyUnavailable",
]

log = structlog.get_logger(__name__)

# Default for ConnectionSettings.bulk_read_threshold (PRODUCT.md): above this many variants
# (or items asked for), reads go through a bulk operation.
DEFAULT_BULK_THRESHOLD = 20_000
# Bulk result files are read in chunks of this many bytes and split into lines as they arrive.
DOWNLOAD_CHUNK_BYTES = 64 * 1024


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
        self._metrics = metrics
        self._request_timeout = timeout
        self._bulk_threshold = bulk_threshold
        self._bulk_timeout = bulk_timeout
        self._sleep = sleep
        self._clock = clock
        self._transport = Transport(
            session,
            graphql_url,
            tokens,
            metrics=metrics,
            timeout=timeout,
            max_attempts=max_attempts,
            sleep=sleep,
            clock=clock,
        )
        self._writes = InventoryWrites(
            self._transport, self, graphql_url, max_attempts=max_attempts, sleep=sleep
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
                await self._transport.back_off(
                    failures, f"bulk result download: {type(exc).__name__}"
                )
                continue
            if status == 200:
                return
            if status >= 500 or status == 429:
                failures += 1
                await self._transport.back_off(failures, f"bulk result download: HTTP {status}")
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
            self._transport.observe_request(status, started)

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
        """Set "available" for ≤ 250 distinct pairs (see `InventoryWrites.set_available`)."""
        return await self._writes.set_available(
            pushes, reference=reference, journal=journal, resend=resend
        )

    async def activate(self, inventory_item_id: str, location_id: str, available: int) -> bool:
        """Stock an item at a location with an initial available quantity; False if refused."""
        return await self._writes.activate(inventory_item_id, location_id, available)

    # -- pages and requests ---------------------------------------------------------------------

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
        self, document: str, variables: Mapping[str, object], *, cost: float
    ) -> dict[str, Any]:
        """Send one read through the transport and return its `data`."""
        return await self._transport.execute(document, variables, cost=cost)

    def _malformed(self, resource: str, node: object) -> None:
        node_id = node.get("id") if isinstance(node, dict) else None
        log.warning("shopify_malformed_row", resource=resource, id=node_id)
        if self._metrics is not None:
            self._metrics.malformed_rows.labels(api=API, resource=resource).inc()
