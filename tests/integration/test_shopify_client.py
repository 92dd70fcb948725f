"""The Shopify GraphQL client against aioresponses: reads, pacing, retries, auth, batched sets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from daemon.domain.models import PlannedPush, PushResult, ShopifyVariant
from daemon.metrics import Metrics
from daemon.secrets import Secret
from daemon.shopify import queries
from daemon.shopify.auth import ClientCredentialsToken, StaticToken, TokenProvider
from daemon.shopify.client import (
    ShopifyAuthError,
    ShopifyClient,
    ShopifyError,
    ShopifyLocation,
    ShopifyUnavailable,
)
from daemon.shopify.inventory import CONCURRENT_REQUEST_WAIT
from daemon.shopify.transport import BACKOFF_BASE, BACKOFF_CAP
from tests.aioresponses_compat import CompatResponse
from tests.helpers import FakeTime

ADMIN_URL = "https://eu-store.myshopify.com"
GRAPHQL_URL = f"{ADMIN_URL}/admin/api/2026-10/graphql.json"
TOKEN_URL = f"{ADMIN_URL}/admin/oauth/access_token"
STATIC_TOKEN = "shpat_0123456789abcdef_static"
CLIENT_SECRET = "shpss_fedcba9876543210_secret"
ITEM = "gid://shopify/InventoryItem/{}"
LOCATION = "gid://shopify/Location/{}"


def post(mocked: aioresponses, url: str, **kwargs: Any) -> None:
    """Answer the next POST to `url` (aioresponses keyword arguments)."""
    mocked.post(url, response_class=CompatResponse, **kwargs)


# -- response builders ---------------------------------------------------------------------------


def cost(
    requested: float = 10, available: float = 1990, maximum: float = 2000, rate: float = 100
) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": requested,
            "throttleStatus": {
                "maximumAvailable": maximum,
                "currentlyAvailable": available,
                "restoreRate": rate,
            },
        }
    }


def ok(data: dict[str, Any], **bucket: float) -> dict[str, Any]:
    return {"data": data, "extensions": cost(**bucket)}


def throttled(requested: float, available: float, rate: float = 100) -> dict[str, Any]:
    return {
        "errors": [
            {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
        ],
        "extensions": cost(requested=requested, available=available, rate=rate),
    }


def page(field: str, nodes: list[Any], cursor: str | None = None) -> dict[str, Any]:
    return {
        field: {
            "nodes": nodes,
            "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor},
        }
    }


def variant_node(n: int, sku: str | None, tracked: bool = True) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ProductVariant/{n}",
        "sku": sku,
        "inventoryItem": {"id": ITEM.format(n), "tracked": tracked},
    }


def set_applied() -> dict[str, Any]:
    return ok(
        {
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": {
                    "id": "gid://shopify/InventoryAdjustmentGroup/1",
                    "changes": [],
                },
                "userErrors": [],
            }
        }
    )


def set_refused(*errors: tuple[str | None, list[str] | None, str]) -> dict[str, Any]:
    return ok(
        {
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": None,
                "userErrors": [
                    {"code": code, "field": field, "message": message}
                    for code, field, message in errors
                ],
            }
        }
    )


def push(n: int, quantity: int, change_from: int | None = None, location: int = 1) -> PlannedPush:
    return PlannedPush(
        katana_variant_id=n,
        sku=f"SKU-{n}",
        inventory_item_id=ITEM.format(n),
        location_id=LOCATION.format(location),
        quantity=quantity,
        change_from=change_from,
    )


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process=False)


def make_client(
    session: aiohttp.ClientSession,
    fake_time: FakeTime,
    *,
    tokens: TokenProvider | None = None,
    metrics: Metrics | None = None,
    max_attempts: int = 6,
    url: str = GRAPHQL_URL,
) -> ShopifyClient:
    return ShopifyClient(
        session,
        url,
        tokens if tokens is not None else StaticToken(Secret(STATIC_TOKEN)),
        metrics=metrics,
        max_attempts=max_attempts,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )


def calls(mocked: aioresponses, url: str = GRAPHQL_URL) -> list[Any]:
    return list(mocked.requests.get(("POST", URL(url)), []))


def sent(mocked: aioresponses) -> list[dict[str, Any]]:
    """The GraphQL bodies posted, in order."""
    return [call.kwargs["json"] for call in calls(mocked)]


def sent_variables(mocked: aioresponses) -> list[dict[str, Any]]:
    return [body["variables"] for body in sent(mocked)]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- transport -----------------------------------------------------------------------------------


async def test_requests_post_the_graphql_url_with_the_token_header_and_an_explicit_timeout(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))

    await make_client(session, fake_time).locations()

    (call,) = calls(mocked)
    assert call.kwargs["headers"]["X-Shopify-Access-Token"] == STATIC_TOKEN
    timeout = call.kwargs["timeout"]
    assert isinstance(timeout, aiohttp.ClientTimeout)
    assert timeout.total == 30.0
    assert call.kwargs["json"]["query"] == queries.LOCATIONS


async def test_requests_are_counted_by_status_and_timed(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime, metrics: Metrics
) -> None:
    post(mocked, GRAPHQL_URL, exception=aiohttp.ClientConnectionError("refused"))
    post(mocked, GRAPHQL_URL, status=503, body="upstream")
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))

    await make_client(session, fake_time, metrics=metrics).locations()

    for status in ("error", "503", "200"):
        assert sample(metrics, "stocksync_api_requests_total", api="shopify", status=status) == 1
    assert sample(metrics, "stocksync_api_request_duration_seconds_count", api="shopify") == 3


async def test_graphql_errors_raise_shopify_error_with_their_messages(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload={"errors": [{"message": "Field 'nope' doesn't exist on type 'Location'"}]},
    )

    with pytest.raises(ShopifyError, match="Field 'nope' doesn't exist") as raised:
        await make_client(session, fake_time).locations()

    assert not isinstance(raised.value, ShopifyUnavailable | ShopifyAuthError)
    assert len(calls(mocked)) == 1


# -- reads ---------------------------------------------------------------------------------------


async def test_locations_are_read_page_by_page(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    first = [{"id": LOCATION.format(1), "name": "Main", "isActive": True}]
    second = [{"id": LOCATION.format(2), "name": "Old shop", "isActive": False}]
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", first, cursor="c1")))
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", second)))

    found = await make_client(session, fake_time).locations()

    assert found == [
        ShopifyLocation(id=LOCATION.format(1), name="Main", is_active=True),
        ShopifyLocation(id=LOCATION.format(2), name="Old shop", is_active=False),
    ]
    assert [v["after"] for v in sent_variables(mocked)] == [None, "c1"]
    query = sent(mocked)[0]["query"]
    assert "locations(first: 250, after: $after, includeInactive: true)" in query


async def test_variants_read_the_whole_catalogue_250_a_page(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=ok(page("productVariants", [variant_node(1, "A"), variant_node(2, "B")], "c1")),
    )
    post(
        mocked,
        GRAPHQL_URL,
        payload=ok(page("productVariants", [variant_node(3, "C", tracked=False)], "c2")),
    )
    post(mocked, GRAPHQL_URL, payload=ok(page("productVariants", [variant_node(4, "")])))

    found = await make_client(session, fake_time).variants()

    assert found == [
        ShopifyVariant("gid://shopify/ProductVariant/1", "A", ITEM.format(1), True),
        ShopifyVariant("gid://shopify/ProductVariant/2", "B", ITEM.format(2), True),
        ShopifyVariant("gid://shopify/ProductVariant/3", "C", ITEM.format(3), False),
        # An empty SKU is no SKU.
        ShopifyVariant("gid://shopify/ProductVariant/4", None, ITEM.format(4), True),
    ]
    assert [v["after"] for v in sent_variables(mocked)] == [None, "c1", "c2"]
    query = sent(mocked)[0]["query"]
    assert "productVariants(first: 250, after: $after)" in query
    assert "inventoryItem { id tracked }" in query


async def test_a_malformed_variant_row_is_skipped_and_counted(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime, metrics: Metrics
) -> None:
    broken = {"id": "gid://shopify/ProductVariant/9", "sku": "X", "inventoryItem": None}
    post(mocked, GRAPHQL_URL, payload=ok(page("productVariants", [broken, variant_node(1, "A")])))

    found = await make_client(session, fake_time, metrics=metrics).variants()

    assert [v.sku for v in found] == ["A"]
    assert (
        sample(
            metrics, "stocksync_malformed_rows_total", api="shopify", resource="product_variants"
        )
        == 1
    )


async def test_a_next_page_without_a_new_cursor_is_an_error_not_a_loop(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [], cursor="c1")))
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [], cursor="c1")))

    with pytest.raises(ShopifyError, match="no new cursor"):
        await make_client(session, fake_time).locations()


def level_at(item: int, available: int | None, *, stocked: bool = True) -> dict[str, Any]:
    """An AVAILABLE_LEVELS node: the item and its level at the location asked for."""
    quantities = [] if available is None else [{"name": "available", "quantity": available}]
    return {
        "id": ITEM.format(item),
        "inventoryLevel": {"quantities": quantities} if stocked else None,
    }


async def test_available_levels_are_returned_only_for_requested_locations_where_stocked(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    # Item 1 is stocked at locations 1 and 3, item 2 at 2, item 3 at 1 without an "available"
    # quantity; item 4 is unknown to Shopify.
    stock = {(1, 1): 5, (1, 3): 9, (2, 2): -2, (3, 1): None}

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        variables = kwargs["json"]["variables"]
        location = int(variables["location"].rsplit("/", 1)[1])
        nodes: list[Any] = []
        for item_id in variables["ids"]:
            item = int(item_id.rsplit("/", 1)[1])
            if item == 4:
                nodes.append(None)
            else:
                stocked = (item, location) in stock
                nodes.append(level_at(item, stock.get((item, location)), stocked=stocked))
        return CallbackResult(response_class=CompatResponse, payload=ok({"nodes": nodes}))

    post(mocked, GRAPHQL_URL, callback=answer, repeat=True)
    items = [ITEM.format(n) for n in (1, 2, 3, 4)]

    levels = await make_client(session, fake_time).available_levels(
        items, [LOCATION.format(1), LOCATION.format(2)]
    )

    assert levels == {
        (ITEM.format(1), LOCATION.format(1)): 5,
        (ITEM.format(2), LOCATION.format(2)): -2,
        (ITEM.format(3), LOCATION.format(1)): None,
    }
    bodies = sent(mocked)
    assert sorted(b["variables"]["location"] for b in bodies) == [
        LOCATION.format(1),
        LOCATION.format(2),
    ]
    assert all(b["variables"]["ids"] == items for b in bodies)
    assert "inventoryLevel(locationId: $location)" in bodies[0]["query"]
    assert "nodes(ids: $ids)" in bodies[0]["query"]


async def test_available_levels_read_250_items_a_query_each_costing_under_1000(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        ids = kwargs["json"]["variables"]["ids"]
        nodes = [level_at(int(item_id.rsplit("/", 1)[1]), 1) for item_id in ids]
        return CallbackResult(response_class=CompatResponse, payload=ok({"nodes": nodes}))

    post(mocked, GRAPHQL_URL, callback=answer, repeat=True)
    items = [ITEM.format(n) for n in range(1, 301)]
    progress: list[tuple[int, int]] = []

    levels = await make_client(session, fake_time).available_levels(
        items, [LOCATION.format(1)], progress=lambda done, total: progress.append((done, total))
    )

    assert len(levels) == 300
    chunks = [v["ids"] for v in sent_variables(mocked)]
    assert [len(chunk) for chunk in chunks] == [250, 50]
    assert [item for chunk in chunks for item in chunk] == items
    for chunk in chunks:
        assert queries.available_levels_cost(len(chunk)) < 1000
    assert progress == [(250, 300), (300, 300)]


async def test_a_malformed_level_is_skipped_and_counted(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    broken = {"id": ITEM.format(2), "inventoryLevel": {"quantities": [{"name": "available"}]}}
    post(mocked, GRAPHQL_URL, payload=ok({"nodes": [level_at(1, 4), broken]}))
    metrics = Metrics(process=False)

    levels = await make_client(session, fake_time, metrics=metrics).available_levels(
        [ITEM.format(1), ITEM.format(2)], [LOCATION.format(1)]
    )

    assert levels == {(ITEM.format(1), LOCATION.format(1)): 4}
    counted = metrics.malformed_rows.labels(api="shopify", resource="inventory_levels")
    assert counted._value.get() == 1


async def test_throttled_at_http_200_waits_requested_minus_available_over_restore_rate(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime, metrics: Metrics
) -> None:
    post(mocked, GRAPHQL_URL, payload=throttled(requested=253, available=53, rate=100))
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))

    await make_client(session, fake_time, metrics=metrics).locations()

    assert fake_time.sleeps == [pytest.approx(2.0)]
    assert len(calls(mocked)) == 2
    assert sample(metrics, "stocksync_api_throttled_total", api="shopify") == 1


async def test_throttled_at_http_429_honours_retry_after(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime, metrics: Metrics
) -> None:
    post(mocked, GRAPHQL_URL, status=429, headers={"Retry-After": "3"}, body="")
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))

    await make_client(session, fake_time, metrics=metrics).locations()

    assert fake_time.sleeps == [pytest.approx(3.0)]
    assert sample(metrics, "stocksync_api_throttled_total", api="shopify") == 1
    assert sample(metrics, "stocksync_api_requests_total", api="shopify", status="429") == 1


async def test_throttled_at_http_429_without_retry_after_waits_for_the_bucket(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, status=429, payload=throttled(requested=253, available=3, rate=50))
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))

    await make_client(session, fake_time).locations()

    assert fake_time.sleeps == [pytest.approx(5.0)]


async def test_throttling_that_never_ends_gives_up_as_unavailable(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=throttled(requested=10, available=0), repeat=True)

    with pytest.raises(ShopifyUnavailable, match="throttled"):
        await make_client(session, fake_time, max_attempts=3).locations()

    assert len(calls(mocked)) == 3


async def test_pacing_waits_before_an_expensive_query_when_the_bucket_is_low(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    sent_at: list[float] = []

    def answer(data: dict[str, Any], available: float) -> Any:
        def callback(url: URL, **kwargs: Any) -> CallbackResult:
            sent_at.append(fake_time.now)
            return CallbackResult(
                response_class=CompatResponse,
                payload=ok(data, available=available, maximum=1000, rate=100),
            )

        return callback

    post(mocked, GRAPHQL_URL, callback=answer(page("locations", []), available=50))
    post(mocked, GRAPHQL_URL, callback=answer(page("productVariants", []), available=500))
    client = make_client(session, fake_time)

    await client.locations()
    await client.variants()

    # The bucket held 50 points; the catalogue page costs 503: (503 - 50) / 100 = 4.53 s.
    assert fake_time.sleeps == [pytest.approx(4.53)]
    assert sent_at == [0.0, pytest.approx(4.53)]


# -- transient failures --------------------------------------------------------------------------


async def test_5xx_backs_off_exponentially_with_jitter_then_gives_up_as_unavailable(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, status=503, body="Service Unavailable", repeat=True)

    with pytest.raises(ShopifyUnavailable, match="HTTP 503"):
        await make_client(session, fake_time, max_attempts=10).locations()

    assert len(calls(mocked)) == 10
    assert len(fake_time.sleeps) == 9
    for attempt, slept in enumerate(fake_time.sleeps, start=1):
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        assert ceiling / 2 <= slept <= ceiling
    assert max(fake_time.sleeps) <= BACKOFF_CAP


async def test_connection_errors_and_timeouts_are_retried(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, exception=aiohttp.ClientConnectionError("reset"))
    post(mocked, GRAPHQL_URL, timeout=True)
    post(mocked, GRAPHQL_URL, body="<html>maintenance</html>", content_type="text/html")
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))

    assert await make_client(session, fake_time).locations() == []
    assert len(fake_time.sleeps) == 3


# -- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_static_token_is_an_auth_error_that_never_shows_the_token(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime, status: int
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        status=status,
        payload={"errors": "[API] Invalid API key or access token (unrecognized login)"},
    )

    with pytest.raises(ShopifyAuthError) as raised:
        await make_client(session, fake_time).locations()

    assert f"HTTP {status}" in str(raised.value)
    assert STATIC_TOKEN not in str(raised.value)
    assert STATIC_TOKEN not in repr(raised.value)
    # A static token cannot be renewed: asking again would only be refused again.
    assert len(calls(mocked)) == 1


def token_reply(token: str, expires_in: int = 86399) -> dict[str, Any]:
    return {
        "access_token": token,
        "scope": "write_inventory,read_products",
        "expires_in": expires_in,
    }


def credentials(session: aiohttp.ClientSession, wall_clock: FakeTime) -> ClientCredentialsToken:
    return ClientCredentialsToken(
        session, ADMIN_URL, "client-id-1", Secret(CLIENT_SECRET), clock=wall_clock.clock
    )


async def test_client_credentials_token_is_obtained_once_and_reused(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, TOKEN_URL, payload=token_reply("tok-1"))
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])), repeat=True)
    client = make_client(session, fake_time, tokens=credentials(session, FakeTime()))

    await client.locations()
    await client.locations()

    (grant,) = calls(mocked, TOKEN_URL)
    assert grant.kwargs["data"] == {
        "grant_type": "client_credentials",
        "client_id": "client-id-1",
        "client_secret": CLIENT_SECRET,
    }
    assert [c.kwargs["headers"]["X-Shopify-Access-Token"] for c in calls(mocked)] == [
        "tok-1",
        "tok-1",
    ]


@pytest.mark.parametrize(
    ("expires_in", "renew_at"),
    [
        (86400, 86400 - 3600),  # a 24 h token: renewed an hour before it expires
        (3600, 3600 - 360),  # a short-lived token: renewed with a tenth of its life left
    ],
)
async def test_client_credentials_token_is_renewed_before_it_expires(
    session: aiohttp.ClientSession, mocked: aioresponses, expires_in: int, renew_at: int
) -> None:
    wall_clock = FakeTime()
    post(mocked, TOKEN_URL, payload=token_reply("tok-1", expires_in))
    post(mocked, TOKEN_URL, payload=token_reply("tok-2", expires_in))
    tokens = credentials(session, wall_clock)

    assert (await tokens.token()).reveal() == "tok-1"
    wall_clock.now = renew_at - 1
    assert (await tokens.token()).reveal() == "tok-1"
    wall_clock.now = renew_at + 1
    assert (await tokens.token()).reveal() == "tok-2"
    assert len(calls(mocked, TOKEN_URL)) == 2


async def test_concurrent_callers_share_one_token_request(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    post(mocked, TOKEN_URL, payload=token_reply("tok-1"), repeat=True)
    tokens = credentials(session, FakeTime())

    got = await asyncio.gather(*(tokens.token() for _ in range(5)))

    assert {token.reveal() for token in got} == {"tok-1"}
    assert len(calls(mocked, TOKEN_URL)) == 1


async def test_a_401_renews_the_client_credentials_token_once_and_retries(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, TOKEN_URL, payload=token_reply("tok-1"))
    post(mocked, TOKEN_URL, payload=token_reply("tok-2"))
    post(mocked, GRAPHQL_URL, status=401, payload={"errors": "[API] Invalid access token"})
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))
    client = make_client(session, fake_time, tokens=credentials(session, FakeTime()))

    assert await client.locations() == []

    assert [c.kwargs["headers"]["X-Shopify-Access-Token"] for c in calls(mocked)] == [
        "tok-1",
        "tok-2",
    ]


async def test_a_401_after_renewal_is_an_auth_error(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, TOKEN_URL, payload=token_reply("tok-1"))
    post(mocked, TOKEN_URL, payload=token_reply("tok-2"))
    post(mocked, GRAPHQL_URL, status=401, body="", repeat=True)
    client = make_client(session, fake_time, tokens=credentials(session, FakeTime()))

    with pytest.raises(ShopifyAuthError) as raised:
        await client.locations()

    assert len(calls(mocked)) == 2
    assert len(calls(mocked, TOKEN_URL)) == 2
    assert "tok-" not in str(raised.value)


async def test_an_unreachable_token_endpoint_is_retried_like_shopify_being_down(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, TOKEN_URL, status=503, body="")
    post(mocked, TOKEN_URL, payload=token_reply("tok-1"))
    post(mocked, GRAPHQL_URL, payload=ok(page("locations", [])))
    client = make_client(session, fake_time, tokens=credentials(session, FakeTime()))

    assert await client.locations() == []
    assert len(fake_time.sleeps) == 1
    assert len(calls(mocked, TOKEN_URL)) == 2


async def test_refused_client_credentials_are_an_auth_error_that_never_shows_the_secret(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    post(
        mocked,
        TOKEN_URL,
        status=401,
        payload={"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"},
    )
    tokens = credentials(session, FakeTime())

    with pytest.raises(ShopifyAuthError, match="invalid_client") as raised:
        await tokens.token()

    assert CLIENT_SECRET not in str(raised.value)
    assert CLIENT_SECRET not in repr(tokens)


# -- set_available -------------------------------------------------------------------------------


async def test_set_available_sends_change_from_quantity_on_every_element_null_when_unknown(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=set_applied())
    pushes = [push(1, 5, change_from=None), push(2, 0, change_from=7)]

    results = await make_client(session, fake_time).set_available(
        pushes, reference="gid://stocksync/SyncRun/42"
    )

    assert results == [PushResult(p, "applied") for p in pushes]
    (body,) = sent(mocked)
    assert body["query"] == queries.SET_QUANTITIES
    assert "@idempotent(key: $key)" in body["query"]
    assert body["variables"]["input"] == {
        "name": "available",
        "reason": "correction",
        "referenceDocumentUri": "gid://stocksync/SyncRun/42",
        "quantities": [
            {
                "inventoryItemId": ITEM.format(1),
                "locationId": LOCATION.format(1),
                "quantity": 5,
                "changeFromQuantity": None,
            },
            {
                "inventoryItemId": ITEM.format(2),
                "locationId": LOCATION.format(1),
                "quantity": 0,
                "changeFromQuantity": 7,
            },
        ],
    }
    assert uuid.UUID(body["variables"]["key"]).version == 4


async def test_set_available_reuses_its_key_when_retrying_after_a_5xx(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, status=502, body="Bad Gateway")
    post(mocked, GRAPHQL_URL, payload=set_applied())

    results = await make_client(session, fake_time).set_available([push(1, 5)], reference="r")

    assert [r.status for r in results] == ["applied"]
    first, second = sent_variables(mocked)
    assert first == second


async def test_set_available_uses_a_new_key_for_each_batch(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=set_applied(), repeat=True)
    client = make_client(session, fake_time)

    await client.set_available([push(1, 5)], reference="r")
    await client.set_available([push(1, 5)], reference="r")

    first, second = sent_variables(mocked)
    assert first["input"] == second["input"]
    assert first["key"] != second["key"]


async def test_a_rejected_element_is_isolated_and_the_rest_resent_as_a_new_batch(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(
            (
                "ITEM_NOT_STOCKED_AT_LOCATION",
                ["input", "quantities", "3", "locationId"],
                "The item is not stocked at the location.",
            )
        ),
    )
    post(mocked, GRAPHQL_URL, payload=set_applied())
    pushes = [push(n, n * 10) for n in range(5)]

    results = await make_client(session, fake_time).set_available(pushes, reference="r")

    assert [r.status for r in results] == ["applied", "applied", "applied", "rejected", "applied"]
    assert results[3] == PushResult(
        pushes[3],
        "rejected",
        code="ITEM_NOT_STOCKED_AT_LOCATION",
        message="The item is not stocked at the location.",
    )
    first, second = sent_variables(mocked)
    assert [q["inventoryItemId"] for q in second["input"]["quantities"]] == [
        ITEM.format(n) for n in (0, 1, 2, 4)
    ]
    assert first["key"] != second["key"]


async def test_several_rejected_elements_are_isolated_until_a_call_succeeds(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(
            ("NON_MUTABLE_INVENTORY_ITEM", ["input", "quantities", "0", "inventoryItemId"], "no"),
            ("INVALID_QUANTITY_TOO_HIGH", ["input", "quantities", "2", "quantity"], "too high"),
        ),
    )
    # Shopify reports the next bad element only once the first ones are gone.
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(
            ("INVALID_INVENTORY_ITEM", ["input", "quantities", "1", "inventoryItemId"], "gone")
        ),
    )
    post(mocked, GRAPHQL_URL, payload=set_applied())
    pushes = [push(n, 1) for n in range(5)]

    results = await make_client(session, fake_time).set_available(pushes, reference="r")

    assert [(r.status, r.code) for r in results] == [
        ("rejected", "NON_MUTABLE_INVENTORY_ITEM"),
        ("applied", None),
        ("rejected", "INVALID_QUANTITY_TOO_HIGH"),
        ("rejected", "INVALID_INVENTORY_ITEM"),
        ("applied", None),
    ]
    batches = [
        [q["inventoryItemId"] for q in v["input"]["quantities"]] for v in sent_variables(mocked)
    ]
    assert batches[1:] == [
        [ITEM.format(n) for n in (1, 3, 4)],
        [ITEM.format(n) for n in (1, 4)],
    ]


async def test_a_stale_element_is_reread_and_reported_stale_with_the_current_value(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(
            (
                "CHANGE_FROM_QUANTITY_STALE",
                ["input", "quantities", "1", "changeFromQuantity"],
                "The compare quantity is stale.",
            )
        ),
    )
    post(mocked, GRAPHQL_URL, payload=set_applied())
    # Shopify took one unit for an order Katana has not seen yet.
    post(mocked, GRAPHQL_URL, payload=ok({"nodes": [level_at(2, 9)]}))
    pushes = [push(1, 3, change_from=2), push(2, 10, change_from=10), push(3, 0, change_from=1)]

    results = await make_client(session, fake_time).set_available(pushes, reference="r")

    assert [r.status for r in results] == ["applied", "stale", "applied"]
    assert results[1].current == 9
    assert results[1].code == "CHANGE_FROM_QUANTITY_STALE"
    reread = sent(mocked)[2]
    assert reread["query"] == queries.AVAILABLE_LEVELS
    assert reread["variables"]["ids"] == [ITEM.format(2)]


async def test_a_stale_element_already_at_the_wanted_value_counts_as_applied(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(
            ("COMPARE_QUANTITY_STALE", ["input", "quantities", "0", "compareQuantity"], "stale")
        ),
    )
    post(mocked, GRAPHQL_URL, payload=ok({"nodes": [level_at(1, 4)]}))

    results = await make_client(session, fake_time).set_available(
        [push(1, 4, change_from=6)], reference="r"
    )

    assert [r.status for r in results] == ["applied"]


async def test_idempotency_key_parameter_mismatch_retries_with_a_new_key(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(
            ("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", None, "The key was used with other input.")
        ),
    )
    post(mocked, GRAPHQL_URL, payload=set_applied())

    results = await make_client(session, fake_time).set_available([push(1, 5)], reference="r")

    assert [r.status for r in results] == ["applied"]
    first, second = sent_variables(mocked)
    assert first["input"] == second["input"]
    assert first["key"] != second["key"]


PREVIOUS_ATTEMPT_FAILED = (
    "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
    None,
    "A previous request with this idempotency key failed. Retry with a new idempotency key.",
)


async def test_from_2026_10_a_key_whose_earlier_attempt_failed_is_replaced(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(mocked, GRAPHQL_URL, payload=set_refused(PREVIOUS_ATTEMPT_FAILED))
    post(mocked, GRAPHQL_URL, payload=set_applied())

    results = await make_client(session, fake_time).set_available([push(1, 5)], reference="r")

    assert [r.status for r in results] == ["applied"]
    first, second = sent_variables(mocked)
    assert first["input"] == second["input"]
    assert first["key"] != second["key"]


async def test_before_2026_10_previous_attempt_failed_is_no_code_the_client_acts_on(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    url = GRAPHQL_URL.replace("2026-10", "2026-04")
    post(mocked, url, payload=set_refused(PREVIOUS_ATTEMPT_FAILED))
    client = make_client(session, fake_time, url=url)

    with pytest.raises(ShopifyError, match="IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"):
        await client.set_available([push(1, 5)], reference="r")

    assert len(calls(mocked, url)) == 1


async def test_idempotency_concurrent_request_retries_with_the_same_key_after_a_short_wait(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(("IDEMPOTENCY_CONCURRENT_REQUEST", None, "Still processing.")),
    )
    post(mocked, GRAPHQL_URL, payload=set_applied())

    results = await make_client(session, fake_time).set_available([push(1, 5)], reference="r")

    assert [r.status for r in results] == ["applied"]
    first, second = sent_variables(mocked)
    assert first == second
    assert fake_time.sleeps == [CONCURRENT_REQUEST_WAIT]


async def test_a_user_error_naming_no_element_fails_the_whole_call(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=set_refused(("INVALID_REASON", ["input", "reason"], "The reason is invalid.")),
    )

    with pytest.raises(ShopifyError, match="INVALID_REASON: The reason is invalid"):
        await make_client(session, fake_time).set_available([push(1, 5)], reference="r")

    assert len(calls(mocked)) == 1


async def test_more_than_250_pushes_are_refused_before_sending(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    pushes = [push(n, 1) for n in range(251)]

    with pytest.raises(ValueError, match="at most 250"):
        await make_client(session, fake_time).set_available(pushes, reference="r")

    assert calls(mocked) == []


async def test_a_pair_twice_in_one_batch_is_refused_before_sending(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    pushes = [push(1, 1), push(2, 1), push(1, 3)]

    with pytest.raises(ValueError, match="twice"):
        await make_client(session, fake_time).set_available(pushes, reference="r")

    assert calls(mocked) == []


async def test_an_empty_batch_sends_nothing(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    assert await make_client(session, fake_time).set_available([], reference="r") == []
    assert calls(mocked) == []


# -- activate ------------------------------------------------------------------------------------


async def test_activate_stocks_an_item_at_a_location_with_an_idempotency_key(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=ok(
            {
                "inventoryActivate": {
                    "inventoryLevel": {"id": "gid://shopify/InventoryLevel/1"},
                    "userErrors": [],
                }
            }
        ),
    )

    assert await make_client(session, fake_time).activate(ITEM.format(1), LOCATION.format(2), 7)

    (body,) = sent(mocked)
    assert "inventoryActivate(" in body["query"]
    assert "@idempotent(key: $key)" in body["query"]
    variables = body["variables"]
    assert {k: v for k, v in variables.items() if k != "key"} == {
        "inventoryItemId": ITEM.format(1),
        "locationId": LOCATION.format(2),
        "available": 7,
    }
    assert uuid.UUID(variables["key"]).version == 4


async def test_activate_refused_with_user_errors_returns_false(
    session: aiohttp.ClientSession, mocked: aioresponses, fake_time: FakeTime
) -> None:
    post(
        mocked,
        GRAPHQL_URL,
        payload=ok(
            {
                "inventoryActivate": {
                    "inventoryLevel": None,
                    "userErrors": [{"field": ["locationId"], "message": "Location not found"}],
                }
            }
        ),
    )

    assert not await make_client(session, fake_time).activate(ITEM.format(1), LOCATION.format(9), 0)
