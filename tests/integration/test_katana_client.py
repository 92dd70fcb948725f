"""The Katana REST client against aioresponses: auth, pagination, limits, retries, typed rows."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from multidict import MultiDict
from structlog.testing import capture_logs
from yarl import URL

from daemon.domain.models import StockRow
from daemon.katana import client as katana_client
from daemon.katana.client import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    INVENTORY_BATCH_SIZE,
    KatanaAuthError,
    KatanaClient,
    KatanaError,
    KatanaUnavailable,
)
from daemon.katana.models import (
    DELTA_SOURCES,
    BomRow,
    Change,
    KatanaItem,
    KatanaLocation,
    KatanaVariantRow,
)
from daemon.katana.ratelimit import RateLimiter
from daemon.metrics import Metrics
from daemon.secrets import Secret
from tests.aioresponses_compat import CompatResponse
from tests.helpers import FakeTime

BASE = "https://katana.test/v1"
KEY = "kat-live-7f3a9c0e55d14b2a"
EPOCH = 1_700_000_000.0
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
T0_TEXT = "2024-05-01T10:00:00.000Z"


# --- fakes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as Katana received it."""

    path: str
    query: MultiDict[str]
    headers: dict[str, str]
    timeout: object
    at: float


def reply(
    status: int = 200,
    *,
    payload: object = None,
    body: str = "",
    headers: dict[str, str] | None = None,
) -> CallbackResult:
    return CallbackResult(
        status=status,
        body=body if payload is None else json.dumps(payload),
        headers=headers or {},
        response_class=CompatResponse,
    )


Reply = CallbackResult | BaseException
Handler = Callable[[URL], Reply]


class FakeKatana:
    """Routes GETs under BASE to per-path handlers and records every request."""

    def __init__(self, mock: aioresponses, time: FakeTime) -> None:
        self.seen: list[Seen] = []
        self._mock = mock
        self._time = time

    def serve(self, path: str, handler: Handler) -> None:
        def callback(url: URL, **kwargs: Any) -> CallbackResult:
            self.seen.append(
                Seen(
                    path=url.path.removeprefix("/v1"),
                    query=MultiDict(url.query),
                    headers=dict(kwargs.get("headers") or {}),
                    timeout=kwargs.get("timeout"),
                    at=self._time.now,
                )
            )
            reply = handler(url)
            if isinstance(reply, BaseException):
                raise reply
            return reply

        pattern = re.compile(rf"^{re.escape(BASE + path)}(\?.*)?$")
        self._mock.get(pattern, callback=callback, repeat=True)

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def page(
    rows: list[Any],
    pagination: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> CallbackResult:
    all_headers = dict(headers or {})
    if pagination is not None:
        all_headers["X-Pagination"] = json.dumps(pagination)
    return reply(payload={"data": rows}, headers=all_headers)


def status(code: int, body: object = None, headers: dict[str, str] | None = None) -> CallbackResult:
    text = body if isinstance(body, str) else json.dumps(body or {})
    return reply(code, body=text, headers=headers)


def in_turn(*replies: Reply) -> Handler:
    """Answer with each reply in turn, then keep repeating the last one."""
    queue: Iterator[Reply] = iter(replies)
    last: list[Reply] = []

    def handler(_: URL) -> Reply:
        last[:] = [next(queue, last[0] if last else replies[-1])]
        return last[0]

    return handler


def by_page(*pages: CallbackResult) -> Handler:
    def handler(url: URL) -> Reply:
        return pages[int(url.query["page"]) - 1]

    return handler


def variant(vid: int, **over: Any) -> dict[str, Any]:
    row = {
        "id": vid,
        "sku": f"SKU-{vid}",
        "product_id": 10,
        "material_id": None,
        "type": "product",
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": "2024-04-01T00:00:00.000Z",
        "deleted_at": None,
    }
    row.update(over)
    return row


def stock(vid: int, location: int = 1, **over: Any) -> dict[str, Any]:
    row = {
        "variant_id": vid,
        "location_id": location,
        "safety_stock_level": "0.00000",
        "quantity_in_stock": "7.00000",
        "quantity_committed": "2.50000",
        "quantity_expected": "0.00000",
        "quantity_potential": None,
    }
    row.update(over)
    return row


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def time() -> FakeTime:
    return FakeTime(EPOCH)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process=False)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def katana(time: FakeTime) -> Iterator[FakeKatana]:
    with aioresponses() as mock:
        yield FakeKatana(mock, time)


def make_client(
    session: aiohttp.ClientSession,
    time: FakeTime,
    metrics: Metrics | None = None,
    *,
    max_attempts: int = 4,
    budget: int = 10_000,
) -> KatanaClient:
    limiter = RateLimiter(budget, clock=time.clock, wall=time.clock, sleep=time.sleep)
    return KatanaClient(
        session,
        BASE + "/",
        Secret(KEY),
        limiter,
        metrics=metrics,
        timeout=5.0,
        max_attempts=max_attempts,
        sleep=time.sleep,
    )


@pytest.fixture
def client(session: aiohttp.ClientSession, time: FakeTime, metrics: Metrics) -> KatanaClient:
    return make_client(session, time, metrics)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- transport ---------------------------------------------------------------------------------


async def test_requests_carry_the_bearer_key_and_an_explicit_timeout(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/locations", lambda _: page([{"id": 1, "name": "Main"}]))

    await client.locations()

    [seen] = katana.seen
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert isinstance(seen.timeout, aiohttp.ClientTimeout)
    assert seen.timeout.total == 5.0


async def test_lists_ask_for_250_rows_a_page_starting_at_page_1(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/locations", lambda _: page([]))
    await client.locations()
    [seen] = katana.seen
    assert (seen.query["limit"], seen.query["page"]) == ("250", "1")


async def test_pages_are_followed_until_total_pages(
    client: KatanaClient, katana: FakeKatana
) -> None:
    info = {"total_records": 7, "total_pages": 3, "first_page": True, "last_page": False}
    katana.serve(
        "/variants",
        by_page(
            page([variant(1), variant(2), variant(3)], {**info, "page": 1}),
            page([variant(4), variant(5), variant(6)], {**info, "page": 2}),
            page([variant(7)], {**info, "page": 3, "last_page": True}),
        ),
    )

    rows = await client.variants()

    assert [r.id for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [s.query["page"] for s in katana.seen] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("pagination", "expected_requests"),
    [
        pytest.param(
            lambda n: {"total_pages": "3", "page": str(n), "last_page": "false"}, 3, id="total-str"
        ),
        pytest.param(
            lambda n: {"page": str(n), "last_page": "true" if n == 2 else "false"},
            2,
            id="last-bool",
        ),
        pytest.param(lambda n: {"page": str(n), "last_page": "2"}, 2, id="last-page-number"),
        pytest.param(lambda n: {"total_records": "x"}, 3, id="nothing-usable"),
    ],
)
async def test_string_pagination_values_are_understood(
    client: KatanaClient,
    katana: FakeKatana,
    pagination: Callable[[int], dict[str, str]],
    expected_requests: int,
) -> None:
    def variants(url: URL) -> Reply:
        # Pages 1 and 2 are full; page 3 is short (what the header-less fallback stops on).
        n = int(url.query["page"])
        if n > 3:
            return page([])
        size = 250 if n < 3 else 1
        return page([variant(n * 1000 + i) for i in range(size)], pagination(n))

    katana.serve("/variants", variants)

    await client.variants()

    assert len(katana.seen) == expected_requests


async def test_without_x_pagination_a_short_page_is_the_last(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve(
        "/variants",
        by_page(page([variant(i) for i in range(250)]), page([variant(1000), variant(1001)])),
    )

    rows = await client.variants()

    assert len(rows) == 252
    assert len(katana.seen) == 2


async def test_without_x_pagination_an_empty_page_ends_the_listing(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/variants", by_page(page([variant(i) for i in range(250)]), page([])))
    rows = await client.variants()
    assert len(rows) == 250
    assert len(katana.seen) == 2


async def test_a_page_repeating_the_previous_one_ends_the_listing(
    client: KatanaClient, katana: FakeKatana
) -> None:
    # A server that ignores `page` would otherwise be read forever.
    same = [variant(i) for i in range(250)]
    katana.serve("/variants", lambda _: page(same))

    rows = await client.variants()

    assert len(rows) == 250
    assert len(katana.seen) == 2


async def test_a_list_growing_on_every_page_fails_the_read_soon_after_the_announced_pages(
    client: KatanaClient, katana: FakeKatana
) -> None:
    # Fresh rows on every page and a page count that always says "one more": memory would grow
    # without end. (The server gives up at page 400, so a client without the bound ends too.)
    def endless(url: URL) -> Reply:
        n = int(url.query["page"])
        if n > 400:
            return page([])
        info = {"total_pages": str(n + 1), "page": str(n), "last_page": "false"}
        return page([variant(n * 1000 + i) for i in range(250)], info)

    katana.serve("/variants", endless)

    with pytest.raises(KatanaError, match=r"did not end after 12 pages .*announced 2"):
        await client.variants()
    assert len(katana.seen) == 12


async def test_a_list_that_grows_a_little_while_it_is_read_is_read_whole(
    client: KatanaClient, katana: FakeKatana
) -> None:
    # Rows created during the read push the last ones onto pages the first page did not count.
    def growing(url: URL) -> Reply:
        n = int(url.query["page"])
        info = {"total_pages": str(min(n + 2, 6)), "page": str(n), "last_page": str(n == 6)}
        return page([variant(n * 1000 + i) for i in range(250 if n < 6 else 3)], info)

    katana.serve("/variants", growing)

    rows = await client.variants()

    assert len(rows) == 5 * 250 + 3


async def test_a_read_holds_at_most_two_million_rows_whatever_the_server_announces(
    client: KatanaClient, katana: FakeKatana, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert katana_client.MAX_PAGES * katana_client.PAGE_LIMIT <= 2_000_000
    # The same bound, made small enough to reach: a server announcing a million pages.
    monkeypatch.setattr(katana_client, "MAX_PAGES", 30)

    def huge(url: URL) -> Reply:
        n = int(url.query["page"])
        info = {"total_pages": "1000000", "page": str(n), "last_page": "false"}
        return page([variant(n)], info)

    katana.serve("/variants", huge)

    with pytest.raises(KatanaError, match="did not end after 30 pages"):
        await client.variants()
    assert len(katana.seen) == 30


async def test_a_bare_json_list_is_accepted_as_a_page(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/locations", lambda _: reply(payload=[{"id": 3, "name": "Shop"}]))
    assert await client.locations() == [KatanaLocation(id=3, name="Shop", deleted=False)]


async def test_an_unexpected_body_shape_is_an_error(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/locations", lambda _: reply(payload={"rows": []}))
    with pytest.raises(KatanaError, match="data"):
        await client.locations()


# --- rate limits and retries -------------------------------------------------------------------


async def test_429_waits_retry_after_seconds_then_retries(
    client: KatanaClient, katana: FakeKatana, time: FakeTime, metrics: Metrics
) -> None:
    katana.serve(
        "/locations",
        in_turn(status(429, {"statusCode": 429}, {"Retry-After": "7"}), page([])),
    )

    await client.locations()

    first, retry = katana.seen
    assert 7.0 in time.sleeps
    assert retry.at - first.at >= 7.0
    assert sample(metrics, "stocksync_api_throttled_total", api="katana") == 1
    assert sample(metrics, "stocksync_api_requests_total", api="katana", status="429") == 1
    assert sample(metrics, "stocksync_api_requests_total", api="katana", status="200") == 1


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        pytest.param({"X-Ratelimit-Reset": "12"}, 12.0, id="reset-header"),
        pytest.param({"X-Ratelimit-Reset": str(int((EPOCH + 20) * 1000))}, 20.0, id="reset-ms"),
        pytest.param({}, 60.0, id="no-hint"),
        pytest.param({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 60.0, id="http-date"),
    ],
)
async def test_429_without_numeric_retry_after_falls_back_to_reset_then_60_seconds(
    client: KatanaClient,
    katana: FakeKatana,
    headers: dict[str, str],
    expected_wait: float,
) -> None:
    katana.serve("/locations", in_turn(status(429, headers=headers), page([])))

    await client.locations()

    first, retry = katana.seen
    assert retry.at - first.at == pytest.approx(expected_wait)


async def test_endless_429_gives_up_after_max_attempts(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/locations", lambda _: status(429, headers={"Retry-After": "1"}))
    with pytest.raises(KatanaUnavailable, match="429"):
        await client.locations()
    assert len(katana.seen) == 4


async def test_ratelimit_remaining_zero_holds_the_next_request_until_reset(
    client: KatanaClient, katana: FakeKatana
) -> None:
    spent = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(EPOCH + 30))}
    katana.serve("/locations", lambda _: page([], headers=spent))
    katana.serve("/variants", lambda _: page([]))

    await client.locations()
    await client.variants()

    assert katana.requests("/variants")[0].at - EPOCH == pytest.approx(30)


async def test_5xx_is_retried_with_bounded_full_jitter_backoff_then_raises_unavailable(
    client: KatanaClient, katana: FakeKatana, time: FakeTime, metrics: Metrics
) -> None:
    katana.serve("/locations", lambda _: status(503, "<html>maintenance</html>"))

    with pytest.raises(KatanaUnavailable, match="503"):
        await client.locations()

    assert len(katana.seen) == 4  # max_attempts
    assert len(time.sleeps) == 3
    for attempt, wait in enumerate(time.sleeps):
        assert 0.0 <= wait <= min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
    assert sample(metrics, "stocksync_api_requests_total", api="katana", status="503") == 4
    assert sample(metrics, "stocksync_api_request_duration_seconds_count", api="katana") == 4


async def test_5xx_then_success_returns_the_rows(client: KatanaClient, katana: FakeKatana) -> None:
    katana.serve("/locations", in_turn(status(502), status(500), page([{"id": 1, "name": "Main"}])))
    assert await client.locations() == [KatanaLocation(1, "Main", False)]
    assert len(katana.seen) == 3


async def test_5xx_retry_after_is_honoured(
    client: KatanaClient, katana: FakeKatana, time: FakeTime
) -> None:
    katana.serve("/locations", in_turn(status(503, headers={"Retry-After": "4"}), page([])))
    await client.locations()
    assert time.sleeps == [4.0]


async def test_timeouts_are_retried_then_raise_unavailable(
    client: KatanaClient, katana: FakeKatana, metrics: Metrics
) -> None:
    katana.serve("/locations", lambda _: TimeoutError())

    with pytest.raises(KatanaUnavailable, match="timed out"):
        await client.locations()

    assert len(katana.seen) == 4
    assert sample(metrics, "stocksync_api_requests_total", api="katana", status="error") == 4


async def test_connection_errors_are_retried(client: KatanaClient, katana: FakeKatana) -> None:
    katana.serve(
        "/locations",
        in_turn(aiohttp.ClientConnectionError("connection reset"), page([{"id": 2, "name": "B"}])),
    )
    assert [loc.id for loc in await client.locations()] == [2]


async def test_an_unreadable_success_body_is_retried_then_raises_unavailable(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/locations", lambda _: reply(body="<html>proxy</html>"))
    with pytest.raises(KatanaUnavailable, match="JSON"):
        await client.locations()
    assert len(katana.seen) == 4


@pytest.mark.parametrize("code", [401, 403])
async def test_auth_failures_raise_katana_auth_error_without_the_key_and_are_not_retried(
    client: KatanaClient, katana: FakeKatana, code: int
) -> None:
    katana.serve(
        "/locations",
        lambda _: status(
            code, {"statusCode": code, "name": "UnauthorizedError", "message": "Nope"}
        ),
    )

    with pytest.raises(KatanaAuthError) as caught:
        await client.locations()

    assert len(katana.seen) == 1
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert str(code) in str(caught.value)
    assert "API key" in str(caught.value)
    assert caught.value.status == code


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {
                "statusCode": 422,
                "name": "UnprocessableEntityError",
                "message": "Invalid filter",
                "code": "VALIDATION_FAILED",
                "details": [{"path": ".updated_at_min", "message": "must be a date"}],
            },
            id="flat",
        ),
        pytest.param(
            {
                "error": {
                    "statusCode": 422,
                    "name": "UnprocessableEntityError",
                    "message": "Invalid filter",
                    "code": "VALIDATION_FAILED",
                    "details": [{"path": ".updated_at_min", "message": "must be a date"}],
                }
            },
            id="wrapped",
        ),
    ],
)
async def test_error_bodies_are_parsed_in_both_shapes(
    client: KatanaClient, katana: FakeKatana, body: dict[str, Any]
) -> None:
    katana.serve("/variants", lambda _: status(422, body))

    with pytest.raises(KatanaError) as caught:
        await client.variants()

    error = caught.value
    assert type(error) is KatanaError
    assert error.status == 422
    assert error.code == "VALIDATION_FAILED"
    assert error.details == [{"path": ".updated_at_min", "message": "must be a date"}]
    assert "422" in str(error)
    assert "Invalid filter" in str(error)
    assert len(katana.seen) == 1


async def test_an_error_without_a_json_body_still_names_the_status(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/variants", lambda _: status(404, "<h1>Not Found</h1>"))
    with pytest.raises(KatanaError, match="404"):
        await client.variants()


async def test_redirects_are_not_followed(client: KatanaClient, katana: FakeKatana) -> None:
    # Following one could hand the bearer key to another host.
    katana.serve("/locations", lambda _: status(302, headers={"Location": "https://evil.test/"}))
    with pytest.raises(KatanaError, match="302"):
        await client.locations()
    assert len(katana.seen) == 1


# --- typed reads -------------------------------------------------------------------------------


async def test_locations_are_typed_and_deleted_ones_flagged(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve(
        "/locations",
        lambda _: page(
            [
                {"id": 1, "name": "Main warehouse", "is_primary": True, "deleted_at": None},
                {"id": 2, "name": "Old shop", "deleted_at": "2023-01-01T00:00:00Z"},
            ]
        ),
    )
    assert await client.locations() == [
        KatanaLocation(1, "Main warehouse", False),
        KatanaLocation(2, "Old shop", True),
    ]


async def test_variants_include_deleted_and_archived_and_filter_by_updated_at_min(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve(
        "/variants",
        lambda _: page(
            [
                variant(
                    5,
                    sku=None,
                    product_id=None,
                    material_id=77,
                    created_at="2024-03-01T12:00:00+02:00",
                    deleted_at="2024-04-02T00:00:00.5Z",
                )
            ]
        ),
    )

    [row] = await client.variants(updated_since=T0)

    [seen] = katana.seen
    assert seen.query["include_deleted"] == "true"
    assert seen.query["include_archived"] == "true"
    assert seen.query["updated_at_min"] == T0_TEXT
    assert row == KatanaVariantRow(
        id=5,
        sku=None,
        product_id=None,
        material_id=77,
        created_at=datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        updated_at=datetime(2024, 4, 1, tzinfo=UTC),
        deleted_at=datetime(2024, 4, 2, 0, 0, 0, 500_000, tzinfo=UTC),
    )
    assert row.created_at.utcoffset() is not None


async def test_variants_without_since_send_no_time_filter(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/variants", lambda _: page([]))
    await client.variants()
    assert "updated_at_min" not in katana.seen[0].query


async def test_items_read_products_and_materials(client: KatanaClient, katana: FakeKatana) -> None:
    katana.serve(
        "/products",
        lambda _: page(
            [
                {
                    "id": 10,
                    "name": "Gift box",
                    "is_auto_assembly": True,
                    "archived_at": None,
                    "updated_at": "2024-04-01T00:00:00Z",
                    "variants": [{"id": 1}],
                },
                {
                    "id": 11,
                    "name": "Old mug",
                    "is_auto_assembly": "false",
                    "archived_at": "2024-02-01T00:00:00Z",
                    "updated_at": "2024-04-01T00:00:00Z",
                },
            ]
        ),
    )
    katana.serve(
        "/materials",
        lambda _: page(
            [
                {
                    "id": 10,
                    "name": "Cardboard",
                    "is_auto_assembly": True,  # nonsense for a material: ignored
                    "archived_at": None,
                    "updated_at": "2024-04-01T00:00:00Z",
                }
            ]
        ),
    )

    items = await client.items(updated_since=T0)

    at = datetime(2024, 4, 1, tzinfo=UTC)
    assert sorted(items, key=lambda i: (i.kind, i.id)) == [
        KatanaItem(10, "material", is_auto_assembly=False, archived=False, updated_at=at),
        KatanaItem(10, "product", is_auto_assembly=True, archived=False, updated_at=at),
        KatanaItem(11, "product", is_auto_assembly=False, archived=True, updated_at=at),
    ]
    for path in ("/products", "/materials"):
        [seen] = katana.requests(path)
        assert seen.query["updated_at_min"] == T0_TEXT
        assert seen.query["include_archived"] == "true"


async def test_bom_rows_keep_decimal_quantities(client: KatanaClient, katana: FakeKatana) -> None:
    katana.serve(
        "/bom_rows",
        lambda _: page(
            [
                {
                    "id": "0b6f7a4e-8f1c-4c3e-9d7a-2f5b1e9c4a11",
                    "product_variant_id": 1,
                    "product_item_id": 10,
                    "ingredient_variant_id": 2,
                    "quantity": "0.33333",
                    "created_at": "2024-01-01T00:00:00Z",
                    "updated_at": "2024-01-01T00:00:00Z",
                }
            ]
        ),
    )

    rows = await client.bom_rows(updated_since=T0)

    assert rows == [
        BomRow(
            "0b6f7a4e-8f1c-4c3e-9d7a-2f5b1e9c4a11",
            1,
            2,
            Decimal("0.33333"),
            updated_at=datetime(2024, 1, 1, tzinfo=UTC),
        )
    ]
    assert katana.seen[0].query["updated_at_min"] == T0_TEXT


def bom_row(row_id: str, **over: Any) -> dict[str, Any]:
    """A /bom_rows row shaped like katana-openapi.yaml's example (quantity is a number)."""
    row = {
        "id": row_id,
        "product_item_id": 1,
        "product_variant_id": 1,
        "ingredient_variant_id": 2,
        "quantity": 2,
        "notes": "some notes",
        "rank": 10000,
        "created_at": "2024-04-05T12:00:00.000Z",
        "updated_at": "2024-04-05T12:00:00.000Z",
    }
    row.update(over)
    return row


async def test_bom_row_keeps_its_updated_at_so_the_bom_cursor_can_advance(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/bom_rows", lambda _: page([bom_row("a", updated_at="2024-04-06T08:30:00Z")]))

    [row] = await client.bom_rows(updated_since=T0)

    assert row.updated_at == datetime(2024, 4, 6, 8, 30, tzinfo=UTC)
    assert row.quantity == 2


async def test_bom_row_with_a_null_quantity_is_read_not_rejected(
    client: KatanaClient, katana: FakeKatana, metrics: Metrics
) -> None:
    # katana-openapi.yaml: BomRow.quantity is ["number", "null"].
    katana.serve("/bom_rows", lambda _: page([bom_row("a", quantity=None), bom_row("b")]))

    rows = await client.bom_rows()

    assert [(r.id, r.quantity) for r in rows] == [("a", None), ("b", 2)]
    assert not sample(metrics, "stocksync_malformed_rows_total", api="katana", resource="bom_rows")


# --- Katana's clock ----------------------------------------------------------------------------


def dated(rows: list[Any], date: str, pagination: dict[str, Any] | None = None) -> CallbackResult:
    return page(rows, pagination, headers={"Date": date})


async def test_a_delta_read_reports_katanas_clock_when_it_began_from_the_date_header(
    client: KatanaClient, katana: FakeKatana
) -> None:
    row = DELTA_TABLE["sales_order_rows"][0]
    katana.serve(
        "/sales_order_rows",
        by_page(
            dated([row] * 250, "Wed, 01 May 2024 10:07:00 GMT", {"total_pages": "2"}),
            dated([row], "Wed, 01 May 2024 10:07:09 GMT", {"total_pages": "2"}),
        ),
    )

    read = await client.read_changes("sales_order_rows", T0)

    assert read.as_of == datetime(2024, 5, 1, 10, 7, tzinfo=UTC)
    assert len(read.rows) == 251


async def test_a_read_without_a_date_header_reports_no_katana_clock(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/sales_orders", lambda _: page([]))
    katana.serve("/bom_rows", lambda _: page([], headers={"Date": "not a date"}))

    assert (await client.read_changes("sales_orders", T0)).as_of is None
    assert (await client.read_bom_rows(T0)).as_of is None


async def test_catalogue_reads_report_katanas_clock_the_earliest_page_first(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve("/variants", lambda _: dated([variant(1)], "Wed, 01 May 2024 10:07:00 GMT"))
    katana.serve("/products", lambda _: dated([], "Wed, 01 May 2024 10:07:03 GMT"))
    katana.serve("/materials", lambda _: dated([], "Wed, 01 May 2024 10:07:01 GMT"))
    katana.serve("/bom_rows", lambda _: dated([bom_row("a")], "Wed, 01 May 2024 10:07:02 GMT"))

    variants = await client.read_variants(T0)
    items = await client.read_items(T0)
    bom = await client.read_bom_rows(T0)

    assert [v.id for v in variants.rows] == [1]
    assert variants.as_of == datetime(2024, 5, 1, 10, 7, tzinfo=UTC)
    # Products and materials share one cursor: the earlier of the two reads bounds it.
    assert items.as_of == datetime(2024, 5, 1, 10, 7, 1, tzinfo=UTC)
    assert bom.as_of == datetime(2024, 5, 1, 10, 7, 2, tzinfo=UTC)


async def test_inventory_rows_keep_decimal_quantities_and_null_potential(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve(
        "/inventory",
        lambda _: page([stock(1), stock(2, location=3, quantity_potential="200.00000")]),
    )

    rows = list((await client.inventory()).rows())

    assert rows == [
        StockRow(1, 1, Decimal("7.00000"), Decimal("2.50000"), None),
        StockRow(2, 3, Decimal("7.00000"), Decimal("2.50000"), Decimal("200.00000")),
    ]
    assert "variant_id" not in katana.seen[0].query


async def test_inventory_of_450_variants_is_read_in_5_batches_of_at_most_100(
    client: KatanaClient, katana: FakeKatana
) -> None:
    def inventory(url: URL) -> Reply:
        return page([stock(int(v)) for v in url.query.getall("variant_id")])

    katana.serve("/inventory", inventory)
    wanted = list(range(1000, 1450))

    rows = list((await client.inventory(wanted)).rows())

    assert INVENTORY_BATCH_SIZE == 100
    assert len(katana.seen) == 5
    asked = [[int(v) for v in s.query.getall("variant_id")] for s in katana.seen]
    assert all(len(batch) <= 100 for batch in asked)
    assert sorted(v for batch in asked for v in batch) == wanted
    assert sorted(r.variant_id for r in rows) == wanted


async def test_an_inventory_batch_follows_pagination(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve(
        "/inventory",
        by_page(
            page([stock(1, loc) for loc in range(250)], {"total_pages": "2"}),
            page([stock(1, 999)], {"total_pages": "2"}),
        ),
    )

    rows = list((await client.inventory([1])).rows())

    assert len(rows) == 251
    assert [s.query["page"] for s in katana.seen] == ["1", "2"]


async def test_inventory_of_no_variants_asks_nothing(
    client: KatanaClient, katana: FakeKatana
) -> None:
    assert not await client.inventory([])
    assert katana.seen == []


async def test_inventory_drops_rows_for_variants_not_asked_for(
    client: KatanaClient, katana: FakeKatana
) -> None:
    # A misspelt filter makes Katana return everything; only the asked-for variants count.
    katana.serve("/inventory", lambda _: page([stock(1), stock(2), stock(3)]))
    rows = await client.inventory([2])
    assert [r.variant_id for r in rows.rows()] == [2]


# --- malformed rows ----------------------------------------------------------------------------


async def test_malformed_rows_are_skipped_reported_and_counted_while_good_rows_return(
    client: KatanaClient, katana: FakeKatana, metrics: Metrics
) -> None:
    katana.serve(
        "/variants",
        lambda _: page(
            [
                variant(1),
                {k: v for k, v in variant(2).items() if k != "id"},
                variant(3, updated_at="yesterday"),
                "not an object",
                variant(4),
            ]
        ),
    )
    katana.serve(
        "/inventory", lambda _: page([stock(1, quantity_in_stock="seven"), stock(4, location=2)])
    )

    with capture_logs() as logs:
        variants = await client.variants()
        levels = list((await client.inventory()).rows())

    assert [v.id for v in variants] == [1, 4]
    assert [(r.variant_id, r.location_id) for r in levels] == [(4, 2)]
    bad = [e for e in logs if e["event"] == "katana_row_malformed"]
    assert [(e["resource"], e["row_id"]) for e in bad] == [
        ("variants", None),
        ("variants", 3),
        ("variants", None),
        ("inventory", "1@1"),
    ]
    assert "id" in bad[0]["reason"]
    assert "updated_at" in bad[1]["reason"]
    assert "quantity_in_stock" in bad[3]["reason"]
    assert sample(metrics, "stocksync_malformed_rows_total", api="katana", resource="variants") == 3
    assert (
        sample(metrics, "stocksync_malformed_rows_total", api="katana", resource="inventory") == 1
    )


async def test_a_malformed_row_is_logged_once_but_counted_every_time(
    client: KatanaClient, katana: FakeKatana, metrics: Metrics
) -> None:
    katana.serve("/variants", lambda _: page([variant(3, created_at=None), variant(4)]))

    with capture_logs() as logs:
        await client.variants()
        await client.variants()

    assert len([e for e in logs if e["event"] == "katana_row_malformed"]) == 1
    assert sample(metrics, "stocksync_malformed_rows_total", api="katana", resource="variants") == 2


# --- delta sources -----------------------------------------------------------------------------

UPDATED = "2024-05-01T10:05:00Z"
AT = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
CREATED = "2024-05-01T10:04:00+00:00"
CREATED_AT = datetime(2024, 5, 1, 10, 4, tzinfo=UTC)

DELTA_TABLE: dict[str, tuple[dict[str, Any], str, bool, list[tuple[int, datetime]]]] = {
    # source: (row, time filter, include_deleted sent, [(variant_id, at)])
    "inventory_movements": (
        {
            "id": 501,
            "variant_id": 1,
            "location_id": 1,
            "resource_type": "SalesOrderRow",
            "resource_id": 9,
            "quantity_change": "-1.00000",
            "balance_after": "6.00000",
            "created_at": CREATED,
            "updated_at": UPDATED,
        },
        "created_at_min",
        False,
        [(1, CREATED_AT)],
    ),
    "sales_orders": (
        {
            "id": 601,
            "order_no": "SO-1",
            "status": "NOT_SHIPPED",
            "location_id": 1,
            "created_at": CREATED,
            "updated_at": UPDATED,
            "deleted_at": None,
            "sales_order_rows": [
                {"id": 1, "variant_id": 2, "quantity": "1"},
                {"id": 2, "variant_id": 3, "quantity": "2", "location_id": 1},
                {"id": 3, "variant_id": 2, "quantity": "1"},
            ],
        },
        "updated_at_min",
        True,
        [(2, AT), (3, AT)],
    ),
    "manufacturing_orders": (
        {
            "id": 701,
            "status": "NOT_STARTED",
            "variant_id": 4,
            "location_id": 1,
            "planned_quantity": "5",
            "updated_at": UPDATED,
            "deleted_at": "2024-05-01T10:05:00Z",
        },
        "updated_at_min",
        True,
        [(4, AT)],
    ),
    "manufacturing_order_recipe_rows": (
        {
            "id": 801,
            "manufacturing_order_id": 701,
            "variant_id": 5,
            "planned_quantity_per_unit": "2",
            "total_actual_quantity": "0",
            "updated_at": UPDATED,
        },
        "updated_at_min",
        True,
        [(5, AT)],
    ),
    "stock_transfers": (
        {
            "id": 901,
            "source_location_id": 1,
            "target_location_id": 2,
            "status": "inTransit",
            "updated_at": UPDATED,
            "stock_transfer_rows": [{"id": 1, "variant_id": 6, "quantity": 3}],
        },
        "updated_at_min",
        True,
        [(6, AT)],
    ),
    "stock_adjustments": (
        {
            "id": 1001,
            "location_id": 1,
            "updated_at": UPDATED,
            "stock_adjustment_rows": [
                {"id": 1, "variant_id": 7, "quantity": "-1"},
                {"id": 2, "variant_id": 8, "quantity": "4"},
            ],
        },
        "updated_at_min",
        True,
        [(7, AT), (8, AT)],
    ),
    "purchase_orders": (
        {
            "id": 1101,
            "status": "RECEIVED",
            "location_id": 1,
            "updated_at": UPDATED,
            "purchase_order_rows": [
                {"id": 1, "variant_id": 9, "quantity": "10", "received_date": UPDATED}
            ],
        },
        "updated_at_min",
        True,
        [(9, AT)],
    ),
    # Row endpoints: a row deleted from an open document, or re-pointed to another variant,
    # changes neither the document nor any movement (katana-openapi.yaml examples).
    "sales_order_rows": (
        {
            "id": 2501,
            "sales_order_id": 601,
            "quantity": 2,
            "variant_id": 2101,
            "location_id": 1,
            "created_at": CREATED,
            "updated_at": UPDATED,
            "deleted_at": None,
        },
        "updated_at_min",
        True,
        [(2101, AT)],
    ),
    "purchase_order_rows": (
        {
            "id": 501,
            "purchase_order_id": 156,
            "quantity": 250,
            "variant_id": 501,
            "received_date": None,
            "created_at": CREATED,
            "updated_at": UPDATED,
            "deleted_at": None,
        },
        "updated_at_min",
        True,
        [(501, AT)],
    ),
    "outsourced_purchase_order_recipe_rows": (
        {
            "id": 3001,
            "purchase_order_id": 156,
            "purchase_order_row_id": 501,
            "ingredient_variant_id": 3201,
            "planned_quantity_per_unit": 2.5,
            "created_at": CREATED,
            "updated_at": UPDATED,
            "deleted_at": None,
        },
        "updated_at_min",
        True,
        [(3201, AT)],
    ),
}


def test_the_delta_table_covers_every_delta_source() -> None:
    assert set(DELTA_TABLE) == set(DELTA_SOURCES)


@pytest.mark.parametrize("source", DELTA_SOURCES)
async def test_every_delta_source_becomes_one_change_per_affected_variant(
    client: KatanaClient, katana: FakeKatana, source: str
) -> None:
    row, time_filter, include_deleted, expected = DELTA_TABLE[source]
    katana.serve(f"/{source}", lambda _: page([row]))

    changes = await client.changes(source, T0)

    assert changes == [Change(source, row["id"], vid, at) for vid, at in expected]
    [seen] = katana.seen
    assert seen.query[time_filter] == T0_TEXT
    other = "updated_at_min" if time_filter == "created_at_min" else "created_at_min"
    assert other not in seen.query
    assert (seen.query.get("include_deleted") == "true") is include_deleted


async def test_a_bad_line_row_drops_only_that_line(
    client: KatanaClient, katana: FakeKatana, metrics: Metrics
) -> None:
    order = {
        "id": 601,
        "updated_at": UPDATED,
        "sales_order_rows": [{"id": 1, "variant_id": "abc"}, {"id": 2, "variant_id": 3}],
    }
    katana.serve("/sales_orders", lambda _: page([order]))

    with capture_logs() as logs:
        changes = await client.changes("sales_orders", T0)

    assert changes == [Change("sales_orders", 601, 3, AT)]
    [bad] = [e for e in logs if e["event"] == "katana_row_malformed"]
    assert (bad["resource"], bad["row_id"]) == ("sales_orders", "601/1")
    assert sample(metrics, "stocksync_malformed_rows_total", api="katana", resource="sales_orders")


async def test_a_deleted_row_is_a_change_of_its_variant_flagged_deleted(
    client: KatanaClient, katana: FakeKatana
) -> None:
    row = {**DELTA_TABLE["sales_order_rows"][0], "deleted_at": UPDATED}
    katana.serve("/sales_order_rows", lambda _: page([row]))

    changes = await client.changes("sales_order_rows", T0)

    assert changes == [Change("sales_order_rows", 2501, 2101, AT, deleted=True)]


async def test_an_outsourced_recipe_row_names_its_ingredient_variant(
    client: KatanaClient, katana: FakeKatana
) -> None:
    row = DELTA_TABLE["outsourced_purchase_order_recipe_rows"][0]
    katana.serve("/outsourced_purchase_order_recipe_rows", lambda _: page([row]))

    [change] = await client.changes("outsourced_purchase_order_recipe_rows", T0)

    assert change.variant_id == row["ingredient_variant_id"]


async def test_an_order_without_its_line_list_is_malformed(
    client: KatanaClient, katana: FakeKatana
) -> None:
    katana.serve(
        "/purchase_orders",
        lambda _: page([{"id": 1, "updated_at": UPDATED}, DELTA_TABLE["purchase_orders"][0]]),
    )
    with capture_logs() as logs:
        changes = await client.changes("purchase_orders", T0)
    assert [c.variant_id for c in changes] == [9]
    assert [e["row_id"] for e in logs if e["event"] == "katana_row_malformed"] == [1]


async def test_unknown_delta_source_is_rejected(client: KatanaClient) -> None:
    with pytest.raises(ValueError, match="unknown"):
        await client.changes("webhooks", T0)


async def test_a_naive_since_is_rejected(client: KatanaClient) -> None:
    with pytest.raises(ValueError, match="naive"):
        await client.changes("sales_orders", datetime(2024, 5, 1, 10, 0))


async def test_since_is_sent_in_utc_with_z(client: KatanaClient, katana: FakeKatana) -> None:
    from datetime import timedelta, timezone

    katana.serve("/sales_orders", lambda _: page([]))
    local = datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=2)))
    await client.changes("sales_orders", local)
    assert katana.seen[0].query["updated_at_min"] == "2024-05-01T10:00:00.123Z"
