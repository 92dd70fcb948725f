"""The resources one stocksync process works with, opened and closed in one place.

Used by the daemon (`stocksync run`) and by every one-shot command (`sync-once`, `reconcile`,
`plan`, `mappings`), so they all run the very same machinery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp

from daemon import __version__
from daemon.config import ConnectionSettings, Settings
from daemon.katana.client import KatanaClient
from daemon.katana.ratelimit import RateLimiter
from daemon.metrics import Metrics
from daemon.shopify.auth import ClientCredentialsToken, StaticToken, TokenProvider
from daemon.shopify.client import ShopifyClient
from daemon.store import StateStore
from daemon.sync.context import Clients
from daemon.sync.engine import DEFAULT_TUNING, Engine, Tuning

USER_AGENT = f"stocksync/{__version__}"


@dataclass
class Runtime:
    """Open resources: state, HTTP sessions, API clients, the engine (it holds the settings)."""

    store: StateStore
    metrics: Metrics
    katana_session: aiohttp.ClientSession
    shopify_session: aiohttp.ClientSession
    limiter: RateLimiter
    engine: Engine
    # Told of every failed Katana attempt (the daemon's outage report).
    on_katana_trouble: Callable[[str], None] | None = None

    def clients(self, settings: Settings) -> Clients:
        """Fresh API clients for `settings` on the runtime's sessions (for a reload)."""
        # Katana's budget is per account: keep the limiter's window across reloads unless the
        # budget itself changed.
        if settings.katana.requests_per_minute != self.limiter.requests_per_minute:
            self.limiter = RateLimiter(settings.katana.requests_per_minute)
        return build_clients(
            settings,
            self.katana_session,
            self.shopify_session,
            self.limiter,
            self.metrics,
            self.on_katana_trouble,
        )


def build_clients(
    settings: Settings,
    katana_session: aiohttp.ClientSession,
    shopify_session: aiohttp.ClientSession,
    limiter: RateLimiter,
    metrics: Metrics,
    on_katana_trouble: Callable[[str], None] | None = None,
) -> Clients:
    """The Katana client and one Shopify client per connection for `settings`."""
    katana = KatanaClient(
        katana_session,
        settings.katana.base_url,
        settings.katana.api_key,
        limiter,
        metrics=metrics,
        on_trouble=on_katana_trouble,
    )
    return Clients(katana, build_shopify_clients(shopify_session, settings.connections, metrics))


def build_shopify_clients(
    session: aiohttp.ClientSession,
    connections: tuple[ConnectionSettings, ...],
    metrics: Metrics,
) -> dict[str, ShopifyClient]:
    """One Shopify client per connection, with its own token provider and cost bucket."""
    clients: dict[str, ShopifyClient] = {}
    for conn in connections:
        tokens: TokenProvider
        if conn.access_token is not None:
            tokens = StaticToken(conn.access_token)
        else:
            assert conn.client_id is not None
            assert conn.client_secret is not None
            tokens = ClientCredentialsToken(
                session, conn.admin_url, conn.client_id, conn.client_secret
            )
        clients[conn.name] = ShopifyClient(
            session,
            conn.graphql_url,
            tokens,
            metrics=metrics,
            bulk_threshold=conn.bulk_read_threshold,
        )
    return clients


def _session() -> aiohttp.ClientSession:
    # Each API gets its own session and connection pool; per-request timeouts are set by the
    # clients, and the session-wide default (300 s) is replaced with an explicit bound.
    return aiohttp.ClientSession(
        headers={"User-Agent": USER_AGENT},
        timeout=aiohttp.ClientTimeout(total=120, connect=15),
        connector=aiohttp.TCPConnector(limit=16),
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    read_only: bool = False,
    on_katana_trouble: Callable[[str], None] | None = None,
) -> AsyncIterator[Runtime]:
    """Open the store and the API sessions; close them in reverse order, once.

    `read_only` (plan, mappings, dry runs): the engine works on a private copy of the state,
    so the state file is never created or changed (StateStore.open_copy).
    """
    metrics = metrics if metrics is not None else Metrics(process=False)
    async with AsyncExitStack() as stack:
        path = settings.daemon.state_path
        store = await (StateStore.open_copy(path) if read_only else StateStore.open(path))
        stack.push_async_callback(store.close)
        katana_session = await stack.enter_async_context(_session())
        shopify_session = await stack.enter_async_context(_session())
        limiter = RateLimiter(settings.katana.requests_per_minute)
        clients = build_clients(
            settings, katana_session, shopify_session, limiter, metrics, on_katana_trouble
        )
        engine = Engine(settings, store, clients, metrics, tuning=tuning)
        # From here the engine's context is the only holder of the settings: this frame, alive
        # as long as the runtime, must not keep them past a reload.
        del settings
        await engine.start()
        yield Runtime(
            store, metrics, katana_session, shopify_session, limiter, engine, on_katana_trouble
        )
