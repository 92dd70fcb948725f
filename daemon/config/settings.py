"""The validated configuration: the frozen settings dataclasses (`Settings` and its parts, one
per section and connection) and the errors `ConfigError` and `UnknownConnection`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon.domain.controls import NO_FILTER, SyncFilter, TargetRule
from daemon.domain.quantity import QuantityPolicy
from daemon.secrets import Secret


class UnknownConnection(LookupError):
    """A command named a connection the configuration does not have (a usage error)."""


class ConfigError(Exception):
    """The configuration or a variant map is invalid; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class LocationMapping:
    """One Katana location (int = id, str = name), or a pool of them (a tuple: the Shopify
    locations are fed by their sum), and the Shopify locations it feeds."""

    katana: int | str | tuple[int | str, ...]
    shopify: tuple[str, ...]

    @property
    def members(self) -> tuple[int | str, ...]:
        """The Katana location references: one, or a pool's."""
        return self.katana if isinstance(self.katana, tuple) else (self.katana,)


@dataclass(frozen=True)
class ConnectionSettings:
    """One Shopify shop that stocksync pushes to."""

    name: str
    shop: str
    admin_url: str
    api_version: str
    access_token: Secret | None
    client_id: str | None
    client_secret: Secret | None
    sync_inventory: bool
    variant_map_file: Path | None
    # Katana variant id -> 'gid://shopify/ProductVariant/N' (a tuple of them when the variant
    # has several rows: a single and its packs); can be 100k rows, so not in repr.
    variant_map: Mapping[int, str | tuple[str, ...]] = field(repr=False)
    allow_negative: bool
    buffer: int
    activate_missing: bool
    max_drop_fraction: float
    min_drop_count: int
    bulk_read_threshold: int
    locations: tuple[LocationMapping, ...]
    # How long Shopify may still apply a push whose answer was lost (PRODUCT.md §3): after it,
    # the levels of that push are read back and corrected.
    late_push_seconds: float = 300.0
    # Variant map rows' own pack size and buffer: Shopify variant gid -> its rule (issue 18).
    target_rules: Mapping[str, TargetRule] = field(default_factory=dict, repr=False)
    # Which Katana variants sync at all ([connections.filters]).
    filters: SyncFilter = NO_FILTER

    @property
    def graphql_url(self) -> str:
        """The Admin GraphQL endpoint of this shop at the configured API version."""
        return f"{self.admin_url}/admin/api/{self.api_version}/graphql.json"

    @property
    def policy(self) -> QuantityPolicy:
        """This connection's adjustments to the quantity formula."""
        return QuantityPolicy(buffer=self.buffer, allow_negative=self.allow_negative)


@dataclass(frozen=True)
class KatanaSettings:
    """How to reach Katana and how fast."""

    base_url: str
    api_key: Secret
    requests_per_minute: int


@dataclass(frozen=True)
class ReconciliationSettings:
    """The nightly reconciliation schedule and scope."""

    cron: str
    timezone: str
    lookback_hours: int
    full: bool
    enabled: bool


@dataclass(frozen=True)
class WebhookSettings:
    """Katana webhooks: off unless enabled; the token signs the payloads."""

    enabled: bool
    token: Secret | None
    # While deliveries are healthy, the safety-net delta poll runs this often instead of
    # daemon.poll_interval_seconds (never more often than that).
    safety_poll_seconds: float = 300.0


@dataclass(frozen=True)
class DaemonSettings:
    """Process-wide settings: state, polling, the HTTP listener, logging, shutdown."""

    state_path: Path
    poll_interval_seconds: float
    http_host: str
    http_port: int
    log_format: str
    shutdown_timeout_seconds: float
    # When set, `/`, `/status` and `/status.json` need it (Bearer, or Basic with it as password).
    status_token: Secret | None = None
    # The least severe level logged (debug | info | warning | error); `--log-level` wins.
    log_level: str = "info"


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration; replaced as one object on reload."""

    source: Path
    daemon: DaemonSettings
    katana: KatanaSettings
    reconciliation: ReconciliationSettings
    webhooks: WebhookSettings
    connections: tuple[ConnectionSettings, ...]

    def connection(self, name: str) -> ConnectionSettings:
        """The connection with this name; UnknownConnection listing the known names otherwise."""
        for conn in self.connections:
            if conn.name == name:
                return conn
        known = ", ".join(c.name for c in self.connections) or "none"
        raise UnknownConnection(f"no connection named {name!r} (known: {known})")
