"""The settings and API clients in force, shared by every part of a sync.

One object holds them: a reload prepares a validated, frozen Settings and its clients, and
`apply` swaps both in one call. No part keeps a copy of its own, so nothing can act on an old
configuration after a reload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from daemon.config import ConnectionSettings, Settings
from daemon.katana.client import KatanaClient
from daemon.metrics import Metrics
from daemon.shopify.client import ShopifyClient
from daemon.store import StateStore


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clients:
    """The API clients for one configuration: Katana, and one Shopify client per connection."""

    katana: KatanaClient
    shopify: Mapping[str, ShopifyClient]


class SyncContext:
    """What a sync reads from its surroundings; `settings` and `clients` change only together."""

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        store: StateStore,
        metrics: Metrics,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self.store = store
        self.metrics = metrics
        self.now = now

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def katana(self) -> KatanaClient:
        return self._clients.katana

    @property
    def shopify(self) -> Mapping[str, ShopifyClient]:
        return self._clients.shopify

    def apply(self, settings: Settings, clients: Clients) -> Settings:
        """Swap in a validated configuration and its clients; returns the one it replaced."""
        previous = self._settings
        self._settings, self._clients = settings, clients
        return previous

    def enabled(self) -> list[ConnectionSettings]:
        """Connections whose sync_inventory is on."""
        return [c for c in self._settings.connections if c.sync_inventory]
