"""Katana REST client: the only code that speaks HTTP to Katana.

Every request waits on the process-wide `RateLimiter`, carries an explicit timeout, and is
retried only where retrying can help: 429 after the server's hint, 5xx / connection errors /
timeouts with bounded exponential backoff. Lists are read page by page (250 rows) and every row
is parsed into a typed model; a malformed row is reported and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import structlog

from daemon import __version__
from daemon.domain.stock import StockTable
from daemon.katana.models import (
    DELTA_SOURCES,
    BomRow,
    Change,
    KatanaItem,
    KatanaLocation,
    KatanaVariantRow,
    Read,
)
from daemon.katana.parse import (
    MalformedRow,
    format_timestamp,
    parse_bom_row,
    parse_changes,
    parse_item,
    parse_location,
    parse_stock_row,
    parse_variant,
    stock_row_variant,
)
from daemon.katana.ratelimit import MAX_PAUSE_SECONDS, RateLimiter, Sleep
from daemon.metrics import Metrics
from daemon.secrets import Secret

log = structlog.get_logger(__name__)

T = TypeVar("T")
Params = list[tuple[str, str]]

API = "katana"
PAGE_LIMIT = 250  # Katana's maximum; larger values are silently cut to it
# Every list read is bounded, so a server that never says "last page" (fresh rows on every
# page) costs a failed cycle, not memory without end. Without a page count announced, at most
# 2 million rows: several times the largest read stocksync is sized for (the stock of 100,000
# variants at 3 locations is 300,000 rows).
MAX_PAGES = 8_000
# Rows added while a list is read push later rows onto new pages, so a read may run past the
# page count its first page announced, by this many pages or a tenth, whichever is more.
PAGE_MARGIN = 10
# Variant ids per /inventory request: keeps URLs short (~1 kB) whatever the id width.
INVENTORY_BATCH_SIZE = 100
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
# A 429 without Retry-After or a reset header: one full Katana window.
DEFAULT_THROTTLE_SECONDS = 60.0
# Distinct malformed rows remembered so each is logged once; cleared when full.
_REPORTED_LIMIT = 10_000


class KatanaError(Exception):
    """Katana answered with an error (or something unusable)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        name: str | None = None,
        code: str | None = None,
        details: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.code = code
        self.details = details


class KatanaAuthError(KatanaError):
    """Katana rejected the API key (401/403). Never retried: only the operator can fix it."""


class KatanaUnavailable(KatanaError):
    """Katana could not be reached or kept failing after bounded retries."""


class _RetryableResponse(Exception):
    """A 2xx whose body could not be read (proxy page, truncated body): worth a retry."""


class KatanaClient:
    """Typed reads of the Katana resources stocksync needs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        limiter: RateLimiter,
        *,
        metrics: Metrics | None = None,
        timeout: float = 30.0,
        max_attempts: int = 6,
        sleep: Sleep = asyncio.sleep,
        on_trouble: Callable[[str], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._limiter = limiter
        self._metrics = metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._sleep = sleep
        # Told of every failed attempt as it happens: an outage is reported from its first
        # failure, not once six attempts of 30 s have run out.
        self._on_trouble = on_trouble
        self._reported: set[tuple[str, str, str]] = set()

    # --- typed reads ---------------------------------------------------------------------------

    async def locations(self) -> list[KatanaLocation]:
        """Every Katana location."""
        return await self._read("locations", "/locations", [], parse_location)

    async def variants(self, updated_since: datetime | None = None) -> list[KatanaVariantRow]:
        """Variants updated since (all when None), deleted and archived ones included."""
        return (await self.read_variants(updated_since)).rows

    async def read_variants(self, updated_since: datetime | None = None) -> Read[KatanaVariantRow]:
        """`variants`, with Katana's clock when the read began."""
        clock = _Clock()
        rows = [row async for row in self._each_variant(updated_since, clock)]
        return Read(rows, clock.at)

    def each_variant(
        self, updated_since: datetime | None = None
    ) -> AsyncIterator[KatanaVariantRow]:
        """`variants`, row by row as the pages arrive (a cold start need not hold them all)."""
        return self._each_variant(updated_since, None)

    def _each_variant(
        self, updated_since: datetime | None, clock: _Clock | None
    ) -> AsyncIterator[KatanaVariantRow]:
        # Deleted/archived variants must be seen to stop syncing them.
        params = [("include_deleted", "true"), ("include_archived", "true")]
        params += _since("updated_at_min", updated_since)
        return self._parsed("variants", "/variants", params, parse_variant, clock)

    async def items(self, updated_since: datetime | None = None) -> list[KatanaItem]:
        """Products and materials updated since (all when None), archived ones included."""
        return (await self.read_items(updated_since)).rows

    async def read_items(self, updated_since: datetime | None = None) -> Read[KatanaItem]:
        """`items`, with Katana's clock when the earlier of its two reads began."""
        # Archiving a product retires its variants: the archived ones must be listed.
        params = [("include_deleted", "true"), ("include_archived", "true")]
        params += _since("updated_at_min", updated_since)
        products, materials = _Clock(), _Clock()
        rows = await self._read(
            "products", "/products", params, lambda raw: parse_item(raw, "product"), products
        )
        rows += await self._read(
            "materials", "/materials", params, lambda raw: parse_item(raw, "material"), materials
        )
        # One cursor covers both lists: it may advance only as far as the earlier read began.
        known = [c.at for c in (products, materials) if c.at is not None]
        return Read(rows, min(known) if len(known) == 2 else None)

    async def bom_rows(self, updated_since: datetime | None = None) -> list[BomRow]:
        """Kit ingredient rows updated since (all when None)."""
        return (await self.read_bom_rows(updated_since)).rows

    async def read_bom_rows(self, updated_since: datetime | None = None) -> Read[BomRow]:
        """`bom_rows`, with Katana's clock when the read began.

        Katana's /bom_rows has no `include_deleted` and no `deleted_at`: a removed row is simply
        absent, so only a read of every row (updated_since None) can tell that it went.
        """
        clock = _Clock()
        params = _since("updated_at_min", updated_since)
        rows = await self._read("bom_rows", "/bom_rows", params, parse_bom_row, clock)
        return Read(rows, clock.at)

    async def inventory(self, variant_ids: Collection[int] | None = None) -> StockTable:
        """Current stock rows of these variants at every location (everything when None).

        Rows are packed as they are parsed: a full read never holds them as objects.
        """
        stock = StockTable()
        if variant_ids is None:
            await self._read_stock_into(stock, [], None)
            return stock
        wanted = sorted(set(variant_ids))
        for start in range(0, len(wanted), INVENTORY_BATCH_SIZE):
            batch = wanted[start : start + INVENTORY_BATCH_SIZE]
            # Katana's `variant_id` is an array parameter: one repeated key per id.
            params = [("variant_id", str(v)) for v in batch]
            await self._read_stock_into(stock, params, set(batch))
        return stock

    async def _read_stock_into(
        self, stock: StockTable, params: Params, asked: set[int] | None
    ) -> None:
        """One `/inventory` read into `stock`; an unreadable row makes its variant unreadable."""
        async for raw in self._rows("/inventory", params):
            try:
                row = parse_stock_row(raw)
            except MalformedRow as exc:
                self._malformed("inventory", exc)
                variant_id = stock_row_variant(raw)
                if variant_id is None:
                    stock.mark_unsure(asked)
                elif asked is None or variant_id in asked:
                    stock.mark_unreadable(variant_id)
                continue
            # A filter Katana does not apply returns everything; keep only what was asked.
            if asked is None or row.variant_id in asked:
                stock.add(row)

    async def changes(self, source: str, since: datetime) -> list[Change]:
        """Variants touched by one delta source since `since`: one Change per variant per row."""
        return (await self.read_changes(source, since)).rows

    async def read_changes(self, source: str, since: datetime) -> Read[Change]:
        """`changes`, with Katana's clock when the read began."""
        if source not in DELTA_SOURCES:
            raise ValueError(f"unknown Katana delta source {source!r}")
        if source == "inventory_movements":
            params = _since("created_at_min", since)
        else:
            # Deleting an order, a row, a transfer or an adjustment releases its commitment
            # without any movement: deleted rows must be listed. Every one of these lists takes
            # include_deleted (live-gateway.yaml).
            params = [*_since("updated_at_min", since), ("include_deleted", "true")]
        return await self._changes(source, params)

    async def changes_where(self, source: str, filters: Params) -> list[Change]:
        """The changes of one delta source's rows picked by `filters` (ids, a document's id...),
        deleted rows included: a targeted read (daemon/sync/targeted.py)."""
        if source not in DELTA_SOURCES:
            raise ValueError(f"unknown Katana delta source {source!r}")
        extra = [] if source == "inventory_movements" else [("include_deleted", "true")]
        return (await self._changes(source, [*filters, *extra])).rows

    async def _changes(self, source: str, params: Params) -> Read[Change]:
        clock = _Clock()
        changes: list[Change] = []
        async for raw in self._rows(f"/{source}", params, clock):
            try:
                found, bad_lines = parse_changes(source, raw)
            except MalformedRow as exc:
                self._malformed(source, exc)
                continue
            for bad in bad_lines:
                self._malformed(source, bad)
            changes.extend(found)
        return Read(changes, clock.at)

    # --- pagination and parsing ----------------------------------------------------------------

    async def _read(
        self,
        resource: str,
        path: str,
        params: Params,
        parse: Callable[[object], T],
        clock: _Clock | None = None,
    ) -> list[T]:
        return [row async for row in self._parsed(resource, path, params, parse, clock)]

    async def _parsed(
        self,
        resource: str,
        path: str,
        params: Params,
        parse: Callable[[object], T],
        clock: _Clock | None = None,
    ) -> AsyncIterator[T]:
        """Every well-formed row, parsed; a malformed one is reported and skipped."""
        async for raw in self._rows(path, params, clock):
            try:
                row = parse(raw)
            except MalformedRow as exc:
                self._malformed(resource, exc)
                continue
            yield row

    async def _rows(
        self, path: str, params: Params, clock: _Clock | None = None
    ) -> AsyncIterator[object]:
        previous: list[object] | None = None
        limit, announced = MAX_PAGES, None
        for number in itertools.count(1):
            if number > limit:
                # Never a silent truncation: the read fails, so the cycle does and is retried.
                said = "" if announced is None else f" (its first page announced {announced})"
                raise KatanaError(
                    f"Katana GET {path} did not end after {limit} pages{said}: the list keeps "
                    "growing; the read was abandoned"
                )
            query = [*params, ("limit", str(PAGE_LIMIT)), ("page", str(number))]
            rows, headers = await self._get(path, query)
            if number == 1:
                announced = _announced_pages(headers.get("X-Pagination"))
                if announced is not None:
                    limit = min(MAX_PAGES, announced + max(PAGE_MARGIN, announced // 10))
                if clock is not None:
                    # The first page's answer is the earliest Katana time of the read: whatever
                    # changed after it is left for the next read to find.
                    clock.at = _server_time(headers.get("Date"))
            if rows and rows == previous:
                # The server ignored `page`: reading on would loop forever.
                log.warning("katana_page_repeated", path=path, page=number)
                return
            for row in rows:
                yield row
            if _is_last_page(number, rows, headers.get("X-Pagination")):
                return
            previous = rows

    def _malformed(self, resource: str, exc: MalformedRow) -> None:
        if self._metrics is not None:
            self._metrics.malformed_rows.labels(api=API, resource=resource).inc()
        # Delta polls overlap and re-read the same rows: log each bad row once, count every skip.
        key = (resource, repr(exc.row_id), exc.reason)
        if key in self._reported:
            return
        if len(self._reported) >= _REPORTED_LIMIT:
            self._reported.clear()
        self._reported.add(key)
        log.warning("katana_row_malformed", resource=resource, row_id=exc.row_id, reason=exc.reason)

    # --- one request, with limits and retries --------------------------------------------------

    async def _get(self, path: str, params: Params) -> tuple[list[object], Mapping[str, str]]:
        failures = 0
        throttles = 0
        while True:
            try:
                async with self._limiter.request():
                    status, headers, body = await self._send(path, params)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                reason = "timed out" if isinstance(exc, TimeoutError) else _describe(exc)
                await self._backoff(path, failures, reason, retry_after=None)
                continue
            self._limiter.observe(headers)
            if status == 429:
                throttles += 1
                await self._throttled(path, throttles, headers)
                continue
            if status >= 500:
                failures += 1
                await self._backoff(path, failures, f"HTTP {status}", _retry_after(headers))
                continue
            if status in (401, 403):
                raise _auth_error(path, status, body)
            if not 200 <= status < 300:
                raise _error(path, status, body)
            try:
                return _data(path, status, body), headers
            except _RetryableResponse as exc:
                failures += 1
                await self._backoff(path, failures, str(exc), retry_after=None)

    async def _send(self, path: str, params: Params) -> tuple[int, Mapping[str, str], bytes]:
        headers = {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "Accept": "application/json",
            "User-Agent": f"stocksync/{__version__}",
        }
        started = time.perf_counter()
        try:
            async with self._session.get(
                self._base_url + path,
                params=params,
                headers=headers,
                timeout=self._timeout,
                # A redirect could carry the bearer key to another host.
                allow_redirects=False,
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            self._record("error", started)
            raise
        self._record(str(response.status), started)
        return response.status, response.headers, body

    def _record(self, status: str, started: float) -> None:
        if self._metrics is None:
            return
        self._metrics.api_requests.labels(api=API, status=status).inc()
        self._metrics.api_request_duration.labels(api=API).observe(time.perf_counter() - started)

    async def _throttled(self, path: str, throttles: int, headers: Mapping[str, str]) -> None:
        if self._metrics is not None:
            self._metrics.api_throttled.labels(api=API).inc()
        if throttles >= self._max_attempts:
            raise KatanaUnavailable(
                f"Katana GET {path} still throttled (HTTP 429) after {throttles} attempts",
                status=429,
            )
        wait = _retry_after(headers)
        if wait is None:
            wait = self._limiter.seconds_until_reset(headers)
        if wait is None:
            wait = DEFAULT_THROTTLE_SECONDS
        log.warning("katana_throttled", path=path, wait_seconds=wait, attempt=throttles)
        # The budget is per account: every caller in the process holds, not just this one.
        self._limiter.pause(wait)

    async def _backoff(
        self, path: str, failures: int, reason: str, retry_after: float | None
    ) -> None:
        if failures >= self._max_attempts:
            raise KatanaUnavailable(
                f"Katana GET {path} failed {failures} times; last: {reason}",
            )
        if retry_after is not None:
            delay = min(retry_after, MAX_PAUSE_SECONDS)
        else:
            # Full jitter: concurrent callers recovering from one outage do not retry in step.
            ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
            delay = random.uniform(0.0, ceiling)
        log.warning(
            "katana_request_retry",
            path=path,
            attempt=failures,
            reason=reason,
            delay_seconds=round(delay, 3),
        )
        if self._on_trouble is not None:
            self._on_trouble(f"Katana GET {path}: {reason}")
        await self._sleep(delay)


# --- response reading ---------------------------------------------------------------------------


class _Clock:
    """Katana's clock when a read began (set from its first page; None without a Date)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: datetime | None = None


def _server_time(header: str | None) -> datetime | None:
    """An HTTP `Date` header as aware UTC (to the second, so never later than the server's
    clock at that moment); None when missing or unreadable."""
    if not header:
        return None
    try:
        at = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _since(name: str, at: datetime | None) -> Params:
    return [] if at is None else [(name, format_timestamp(at))]


def _data(path: str, status: int, body: bytes) -> list[object]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise _RetryableResponse(f"HTTP {status} body is not JSON: {_snippet(body)}") from None
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        rows: list[object] = payload["data"]
        return rows
    raise KatanaError(
        f'Katana GET {path} returned HTTP {status} without a "data" list: {_snippet(body)}',
        status=status,
    )


def _is_last_page(number: int, rows: list[object], header: str | None) -> bool:
    if not rows:
        return True
    info = _pagination(header)
    if info is not None:
        last = _last_page(info.get("last_page"))
        if last is True:
            return True
        if isinstance(last, int) and not isinstance(last, bool):
            return number >= last
        total = _whole_number(info.get("total_pages"))
        if total is not None:
            return number >= total
        if last is False:
            return False
    # No usable header: only a short page proves there is nothing after it.
    return len(rows) < PAGE_LIMIT


def _announced_pages(header: str | None) -> int | None:
    """How many pages an X-Pagination header says the list has (total_pages, or a last_page
    given as a page number); None when it does not say."""
    info = _pagination(header)
    if info is None:
        return None
    last = _last_page(info.get("last_page"))
    if isinstance(last, int) and not isinstance(last, bool):
        return last
    return _whole_number(info.get("total_pages"))


def _pagination(header: str | None) -> dict[str, Any] | None:
    if header is None:
        return None
    try:
        info = json.loads(header)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _last_page(value: object) -> bool | int | None:
    """`last_page` is a flag ("true"/"false") in Katana's docs; a page number is accepted too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    number = _whole_number(value)
    return number if number is not None and number >= 1 else None


def _whole_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # Katana sends seconds; an HTTP-date or garbage falls through to the next hint.
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_body(body: bytes) -> dict[str, Any] | None:
    """Katana's error object, flat or wrapped in {"error": {...}}; None if not JSON."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    inner = payload.get("error")
    return inner if isinstance(inner, dict) else payload


def _error(path: str, status: int, body: bytes) -> KatanaError:
    info = _error_body(body)
    if info is None:
        return KatanaError(
            f"Katana GET {path} failed with HTTP {status}: {_snippet(body)}", status=status
        )
    name, message, code = (_text(info.get(k)) for k in ("name", "message", "code"))
    details = info.get("details")
    text = f"Katana GET {path} failed with HTTP {status}"
    if name:
        text += f" {name}"
    if message:
        text += f": {message}"
    if code:
        text += f" [{code}]"
    if details:
        text += f" details={_snippet(json.dumps(details).encode(), 300)}"
    return KatanaError(text, status=status, name=name, code=code, details=details)


def _auth_error(path: str, status: int, body: bytes) -> KatanaAuthError:
    info = _error_body(body) or {}
    said = _text(info.get("message")) or _text(info.get("name"))
    return KatanaAuthError(
        f"Katana rejected the API key (HTTP {status}{': ' + said if said else ''}) on GET {path}; "
        "check [katana] api_key_env / api_key_file",
        status=status,
        name=_text(info.get("name")),
        code=_text(info.get("code")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
