"""Configuration: one TOML file plus secrets from the environment or files -> immutable Settings.

Every problem in a file is collected and reported at once (`ConfigError.errors`), each naming the
file, the key path and the offending value, so an operator fixes a config in one pass. Secret
values never appear in a message or a repr.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from daemon.domain.controls import NO_FILTER, SyncFilter, TargetRule
from daemon.domain.quantity import QuantityPolicy
from daemon.secrets import Secret

__all__ = [
    "ConfigError",
    "ConnectionSettings",
    "DaemonSettings",
    "KatanaSettings",
    "LocationMapping",
    "ReconciliationSettings",
    "Secret",
    "Settings",
    "WebhookSettings",
    "load_settings",
    "load_variant_map",
]

DEFAULT_STATE_PATH = "/var/lib/stocksync/state.db"
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 9464
DEFAULT_HTTP_LISTEN = f"{DEFAULT_HTTP_HOST}:{DEFAULT_HTTP_PORT}"
DEFAULT_KATANA_URL = "https://api.katanamrp.com/v1"
DEFAULT_KATANA_KEY_ENV = "KATANA_API_KEY"
DEFAULT_API_VERSION = "2026-10"
# inventorySetQuantities gained changeFromQuantity and @idempotent in 2026-01.
OLDEST_API_VERSION = "2026-01"
VARIANT_MAP_HEADER = ("katana_variant_id", "shopify_variant_id")
# Optional variant map columns, after the two above in any order (issue 18).
VARIANT_MAP_OPTIONAL = ("units_per_pack", "buffer")
# The largest pack size and per-variant buffer accepted (Shopify's own quantity limit).
MAX_PACK_OR_BUFFER = 1_000_000_000
FILTER_KEYS = ("include_skus", "exclude_skus", "include_categories", "exclude_categories")

_CONNECTION_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SHOP_DOMAIN = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\Z")
_API_VERSION = re.compile(r"(\d{4})-(\d{2})\Z")
_LOCATION_GID = re.compile(r"gid://shopify/Location/[1-9][0-9]*\Z")
_VARIANT_GID = re.compile(r"gid://shopify/ProductVariant/([0-9]+)\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Shopify token prefixes: a value like this in a *_env key is the token itself, not a name.
_SHOPIFY_SECRET_PREFIXES = ("shpat_", "shpca_", "shppa_", "shpss_")
# A day-of-week field that uses numbers (not only names): APScheduler 3 counts them from
# Monday = 0 where cron counts from Sunday = 0, so "0 3 * * 0" would silently run on Mondays.
_NUMERIC_WEEKDAY = re.compile(r"(?:^|[,-])[0-9]")


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


# --------------------------------------------------------------------------- entry points


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file and its secrets; raise ConfigError with every problem."""
    environ: Mapping[str, str] = os.environ if env is None else env
    problems = _Problems(str(path))
    root = _Table(_read_toml(path), "", problems)
    base = path.absolute().parent

    daemon_table = root.table("daemon")
    katana_table = root.table("katana")
    reconciliation_table = root.table("reconciliation")
    webhooks_table = root.table("webhooks")
    daemon = _daemon_settings(daemon_table, base, environ)
    katana = _katana_settings(katana_table, base, environ)
    reconciliation = _reconciliation_settings(reconciliation_table)
    webhooks = _webhook_settings(webhooks_table, base, environ)
    connections = _connections(root, base, environ)
    sections = {
        "[daemon]": daemon_table,
        "[katana]": katana_table,
        "[reconciliation]": reconciliation_table,
        "[webhooks]": webhooks_table,
    }
    root.reject_unknown(
        {key: section for section, table in sections.items() for key in table.known}
    )
    if problems.errors:
        raise ConfigError(problems.errors)
    return Settings(
        source=path.absolute(),
        daemon=daemon,
        katana=katana,
        reconciliation=reconciliation,
        webhooks=webhooks,
        connections=connections,
    )


def load_variant_map(path: Path) -> dict[int, str | tuple[str, ...]]:
    """Read a variant map CSV (Katana variant id -> Shopify variant gid, or a tuple of them when
    it has several rows); ConfigError per line."""
    return read_variant_map(path).entries


@dataclass(frozen=True)
class VariantMapFile:
    """A variant map as read: its entries and the rows' own pack sizes and buffers."""

    entries: dict[int, str | tuple[str, ...]]
    rules: dict[str, TargetRule]


def read_variant_map(path: Path) -> VariantMapFile:
    """Read a variant map CSV with its optional columns; ConfigError listing every bad line."""
    try:
        entries, rules, errors = _parse_variant_map(path)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the variant map: {_reason(exc)}"]) from None
    if errors:
        raise ConfigError(errors)
    return VariantMapFile(entries, rules)


# --------------------------------------------------------------------------- reading TOML


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {_reason(exc)}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text (TOML files are UTF-8)"]) from None
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)".
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


class _Problems:
    """Every problem found in one config file, each prefixed with the file and key path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.errors.append(f"{self.file}: {key}: {message}")


class _Table:
    """One TOML table being read: typed getters that record problems instead of raising.

    A getter that finds a bad value records the problem and returns the default, so reading goes
    on and every problem is found; `load_settings` raises before any such value escapes.
    """

    def __init__(self, data: Mapping[str, object], path: str, problems: _Problems) -> None:
        self._data = data
        self.path = path
        self._problems = problems
        self._known: set[str] = set()

    @property
    def known(self) -> frozenset[str]:
        """The keys this table's reader asked for: the keys it understands."""
        return frozenset(self._known)

    def key(self, name: str) -> str:
        """The full key path of `name` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str, message: str) -> None:
        """Record a problem with the key `name` of this table."""
        self._problems.add(self.key(name), message)

    def problem_here(self, message: str) -> None:
        """Record a problem with this table as a whole."""
        self._problems.add(self.path, message)

    def raw(self, name: str) -> object | None:
        """The value of `name` as TOML gave it (None when absent; TOML has no null)."""
        self._known.add(name)
        return self._data.get(name)

    def present(self, name: str) -> bool:
        """Whether `name` is set in this table."""
        self._known.add(name)
        return name in self._data

    def wrong_type(self, name: str, expected: str, value: object) -> None:
        """Record that `name` holds a value of the wrong TOML type."""
        self.problem(name, f"must be {expected}, got {_show(value)} ({_kind(value)})")

    def optional_string(self, name: str) -> str | None:
        """A non-empty string, or None when absent (or bad)."""
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.wrong_type(name, "a string", value)
            return None
        if not value.strip():
            self.problem(name, f"must not be empty, got {_show(value)}")
            return None
        return value

    def string(self, name: str, default: str) -> str:
        """A non-empty string, or the default."""
        value = self.optional_string(name)
        return default if value is None else value

    def required_string(self, name: str) -> str:
        """A non-empty string that must be present."""
        if not self.present(name):
            self.problem(name, "is required")
            return ""
        return self.string(name, "")

    def choice(self, name: str, default: str, options: Sequence[str]) -> str:
        """One of a fixed set of strings."""
        value = self.string(name, default)
        if value not in options:
            self.problem(name, f"must be one of {', '.join(options)}, got {_show(value)}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """true or false."""
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.wrong_type(name, "true or false", value)
            return default
        return value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """A TOML integer (never a boolean or a float) within the given bounds."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong_type(name, "an integer", value)
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(name, f"must be {_bounds(minimum, maximum)}, got {value}")
            return default
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float:
        """A finite TOML integer or float within the given bounds (`above` is exclusive)."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.wrong_type(name, "a number", value)
            return default
        if not math.isfinite(value):
            self.problem(name, f"must be a finite number, got {_show(value)}")
            return default
        if above is not None and value <= above:
            self.problem(name, f"must be greater than {_plain(above)}, got {_show(value)}")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(name, f"must be {_bounds(minimum, maximum)}, got {_show(value)}")
            return default
        return float(value)

    def table(self, name: str) -> _Table:
        """A sub-table; an empty one when absent (or bad)."""
        value = self.raw(name)
        if value is None:
            value = {}
        elif not isinstance(value, dict):
            self.wrong_type(name, f"a table ([{self.key(name)}])", value)
            value = {}
        return _Table(value, self.key(name), self._problems)

    def tables(self, name: str, *, required: bool) -> list[_Table]:
        """An array of tables ([[name]]); `required` means at least one."""
        value = self.raw(name)
        header = f"[[{_plain_path(self, name)}]]"
        if value is None or value == []:
            if required:
                self.problem(name, f"at least one {header} table is required")
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.wrong_type(name, f"an array of tables ({header})", value)
            return []
        return [
            _Table(item, f"{self.key(name)}[{index}]", self._problems)
            for index, item in enumerate(value)
        ]

    def report_lines(self, lines: Sequence[str]) -> None:
        """Record problems already phrased in full (e.g. from a variant map, with line numbers)."""
        self._problems.errors.extend(lines)

    def reject_unknown(self, elsewhere: Mapping[str, str] | None = None) -> None:
        """Report every key nobody asked for, suggesting the closest known one."""
        known = sorted(self._known)
        for name in self._data:
            if name in self._known:
                continue
            # The value is never shown: an unknown key may well hold a misspelt secret.
            close = difflib.get_close_matches(name, known, n=1)
            if elsewhere and name in elsewhere:
                self.problem(name, f"unknown key here (it belongs in {elsewhere[name]})")
            elif close:
                self.problem(name, f'unknown key (did you mean "{close[0]}"?)')
            else:
                self.problem(name, "unknown key")


def _plain_path(table: _Table, name: str) -> str:
    """The TOML header spelling of a key path: `connections.locations`, without indices."""
    return re.sub(r"\[[0-9]+\]", "", table.key(name))


# --------------------------------------------------------------------------- sections


def _daemon_settings(t: _Table, base: Path, env: Mapping[str, str]) -> DaemonSettings:
    state_path = _path(t, "state_path", base) or Path(DEFAULT_STATE_PATH)
    try:
        is_folder = state_path.is_dir()
    except OSError as exc:
        # is_dir() raises, rather than answering False, when a folder on the way cannot be
        # entered: a traceback would hide which key and which folder are at fault.
        t.problem("state_path", _unreachable(state_path, exc))
    else:
        if is_folder:
            t.problem(
                "state_path",
                f"{_show(str(state_path))} is a folder; name the database file, e.g. state.db",
            )
    poll_interval = t.number("poll_interval_seconds", 30.0, minimum=1)
    host, port = _listen_address(t, "http_listen")
    log_format = t.choice("log_format", "auto", ("auto", "json", "console"))
    log_level = t.choice("log_level", "info", ("debug", "info", "warning", "error"))
    shutdown_timeout = t.number("shutdown_timeout_seconds", 10.0, above=0)
    # Optional: without it the status page is open to whoever reaches the listener (loopback
    # by default).
    status_token = _secret(t, "status_token", base, env, required=False)
    t.reject_unknown()
    return DaemonSettings(
        state_path=state_path,
        poll_interval_seconds=poll_interval,
        http_host=host,
        http_port=port,
        log_format=log_format,
        shutdown_timeout_seconds=shutdown_timeout,
        status_token=status_token,
        log_level=log_level,
    )


def _unreachable(path: Path, exc: OSError) -> str:
    """Why `path` cannot be looked at, for a problem line (the path in full: the folder at
    fault is somewhere along it)."""
    shown = json.dumps(str(path), ensure_ascii=False)
    reason = (exc.strerror or type(exc).__name__).lower()
    if isinstance(exc, PermissionError):
        return (
            f"{shown} cannot be reached: {reason} (user id {os.getuid()} may not enter one of "
            "its folders); run as the daemon's user, or fix the folder's permissions"
        )
    return f"{shown} cannot be reached: {reason}"


def _listen_address(t: _Table, name: str) -> tuple[str, int]:
    text = t.string(name, DEFAULT_HTTP_LISTEN)
    parsed = _parse_listen(text)
    if parsed is None:
        t.problem(
            name,
            'must be "host:port" with a port 1-65535 '
            f'(e.g. "127.0.0.1:9464" or "[::1]:9464"), got {_show(text)}',
        )
        return DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT
    return parsed


def _parse_listen(text: str) -> tuple[str, int] | None:
    if text.startswith("["):  # [IPv6]:port
        host, separator, port = text[1:].partition("]:")
    else:
        host, separator, port = text.rpartition(":")
        if ":" in host:  # a bare IPv6 address is ambiguous without brackets
            return None
    if not separator or not host or any(c.isspace() for c in host):
        return None
    if not _DIGITS.match(port) or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def _katana_settings(t: _Table, base: Path, env: Mapping[str, str]) -> KatanaSettings:
    base_url = _url(t, "base_url", DEFAULT_KATANA_URL)
    api_key = _secret(t, "api_key", base, env, required=True, default_env=DEFAULT_KATANA_KEY_ENV)
    requests_per_minute = t.integer("requests_per_minute", 60, minimum=1, maximum=10_000)
    t.reject_unknown()
    return KatanaSettings(
        base_url=base_url,
        # Secret("") stands in only when a problem was recorded: load_settings raises then.
        api_key=api_key or Secret(""),
        requests_per_minute=requests_per_minute,
    )


def _reconciliation_settings(t: _Table) -> ReconciliationSettings:
    enabled = t.boolean("enabled", True)
    timezone = t.string("timezone", "UTC")
    zone = _zone(t, "timezone", timezone)
    cron = t.string("cron", "0 3 * * *")
    _check_cron(t, "cron", cron, zone)
    lookback_hours = t.integer("lookback_hours", 48, minimum=1)
    full = t.boolean("full", True)
    t.reject_unknown()
    return ReconciliationSettings(
        cron=cron, timezone=timezone, lookback_hours=lookback_hours, full=full, enabled=enabled
    )


def _zone(t: _Table, name: str, key: str) -> tzinfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        t.problem(
            name, f'unknown time zone {_show(key)} (use an IANA name such as "Europe/Berlin")'
        )
        return UTC


def _check_cron(t: _Table, name: str, expression: str, zone: tzinfo) -> None:
    try:
        CronTrigger.from_crontab(expression, timezone=zone)
    except (ValueError, TypeError) as exc:
        t.problem(name, f"invalid cron expression {_show(expression)}: {exc}")
        return
    fields = expression.split()
    if _NUMERIC_WEEKDAY.search(fields[4]):
        t.problem(
            name,
            f"write the day of week by name (mon-sun) in {_show(expression)}: "
            "the scheduler numbers days from Monday = 0, unlike cron",
        )


def _webhook_settings(t: _Table, base: Path, env: Mapping[str, str]) -> WebhookSettings:
    enabled = t.boolean("enabled", False)
    # The token is read only when webhooks are on: a disabled feature must not need a secret.
    token = _secret(t, "token", base, env, required=enabled, resolve=enabled)
    safety_poll = t.number("safety_poll_seconds", 300.0, minimum=1)
    t.reject_unknown()
    return WebhookSettings(enabled=enabled, token=token, safety_poll_seconds=safety_poll)


def _connections(
    root: _Table, base: Path, env: Mapping[str, str]
) -> tuple[ConnectionSettings, ...]:
    result: list[ConnectionSettings] = []
    first_use: dict[str, str] = {}
    for t in root.tables("connections", required=True):
        conn = _connection(t, base, env)
        if conn.name in first_use:
            t.problem("name", f"{_show(conn.name)} is already used by {first_use[conn.name]}")
        elif conn.name:
            first_use[conn.name] = t.path
        result.append(conn)
    return tuple(result)


def _connection(t: _Table, base: Path, env: Mapping[str, str]) -> ConnectionSettings:
    name = t.required_string("name")
    if name and not _CONNECTION_NAME.match(name):
        t.problem("name", f"may contain only letters, digits, '_', '.' and '-', got {_show(name)}")
    shop = t.required_string("shop")
    if shop and not _SHOP_DOMAIN.match(shop):
        t.problem(
            "shop", f'must be the shop\'s domain (e.g. "my-store.myshopify.com"), got {_show(shop)}'
        )
    admin_url = _url(t, "admin_url", f"https://{shop}")
    api_version = _api_version(t, "api_version")
    access_token, client_id, client_secret = _shopify_credentials(t, base, env)
    sync_inventory = t.boolean("sync_inventory", False)
    variant_map_file = _path(t, "variant_map_file", base)
    variant_map, target_rules = _connection_variant_map(t, "variant_map_file", variant_map_file)
    allow_negative = t.boolean("allow_negative", False)
    buffer = t.integer("buffer", 0, minimum=0)
    activate_missing = t.boolean("activate_missing", False)
    max_drop_fraction = t.number("max_drop_fraction", 0.5, minimum=0, maximum=1)
    min_drop_count = t.integer("min_drop_count", 20, minimum=1)
    bulk_read_threshold = t.integer("bulk_read_threshold", 20_000, minimum=0)
    late_push_seconds = t.number("late_push_seconds", 300.0, above=0)
    locations = _locations(t)
    filters = _filters(t.table("filters"))
    t.reject_unknown()
    return ConnectionSettings(
        name=name,
        shop=shop,
        admin_url=admin_url,
        api_version=api_version,
        access_token=access_token,
        client_id=client_id,
        client_secret=client_secret,
        sync_inventory=sync_inventory,
        variant_map_file=variant_map_file,
        variant_map=MappingProxyType(variant_map),
        allow_negative=allow_negative,
        buffer=buffer,
        activate_missing=activate_missing,
        max_drop_fraction=max_drop_fraction,
        min_drop_count=min_drop_count,
        bulk_read_threshold=bulk_read_threshold,
        locations=locations,
        late_push_seconds=late_push_seconds,
        target_rules=MappingProxyType(target_rules),
        filters=filters,
    )


def _api_version(t: _Table, name: str) -> str:
    version = t.string(name, DEFAULT_API_VERSION)
    match = _API_VERSION.match(version)
    if match is None:
        t.problem(
            name, f'must be a Shopify API version "YYYY-MM" (e.g. "2026-10"), got {_show(version)}'
        )
    elif match.group(2) not in ("01", "04", "07", "10"):
        t.problem(
            name,
            "Shopify releases API versions quarterly (YYYY-01, -04, -07 or -10), "
            f"got {_show(version)}",
        )
    elif version < OLDEST_API_VERSION:
        t.problem(
            name,
            f'must be "{OLDEST_API_VERSION}" or newer: older versions lack changeFromQuantity and '
            f"@idempotent on inventorySetQuantities, got {_show(version)}",
        )
    else:
        return version
    return DEFAULT_API_VERSION


def _shopify_credentials(
    t: _Table, base: Path, env: Mapping[str, str]
) -> tuple[Secret | None, str | None, Secret | None]:
    """Exactly one of: a static access token, or client credentials (client_id + secret)."""
    access_token = _secret(t, "access_token", base, env, required=False)
    client_id = t.optional_string("client_id")
    client_secret = _secret(t, "client_secret", base, env, required=False)
    has_token = t.present("access_token_env") or t.present("access_token_file")
    has_id = t.present("client_id")
    has_secret = t.present("client_secret_env") or t.present("client_secret_file")
    inline = t.present("access_token") or t.present("client_secret")
    if has_token and (has_id or has_secret):
        t.problem_here(
            "set either access_token_env/access_token_file or client_id with "
            "client_secret_env/client_secret_file, not both"
        )
    elif has_id and not has_secret:
        t.problem("client_id", "needs client_secret_env or client_secret_file beside it")
    elif has_secret and not has_id:
        t.problem("client_secret_env", "needs client_id beside it (the app's client id)")
    elif not (has_token or has_id or inline):
        t.problem_here(
            "no Shopify credentials: set access_token_env or access_token_file, "
            "or client_id with client_secret_env or client_secret_file"
        )
    return access_token, client_id, client_secret


def _connection_variant_map(
    t: _Table, name: str, path: Path | None
) -> tuple[dict[int, str | tuple[str, ...]], dict[str, TargetRule]]:
    if path is None:
        return {}, {}
    try:
        entries, rules, errors = _parse_variant_map(path)
    except OSError as exc:
        t.problem(name, f"cannot read {_show(str(path))}: {_reason(exc)}")
        return {}, {}
    t.report_lines(errors)
    return entries, rules


def _filters(t: _Table) -> SyncFilter:
    """[connections.filters]: glob patterns on Katana SKUs and product/material categories."""
    lists = {key: _patterns(t, key) for key in FILTER_KEYS}
    for kind in ("skus", "categories"):
        include, exclude = lists[f"include_{kind}"], lists[f"exclude_{kind}"]
        for pattern in exclude:
            if pattern in include:
                t.problem(
                    f"exclude_{kind}",
                    f"{_show(pattern)} is also in include_{kind}: a variant it matches would be "
                    "both kept and left out",
                )
    t.reject_unknown()
    return SyncFilter(**lists)


def _patterns(t: _Table, name: str) -> tuple[str, ...]:
    """A glob pattern or a non-empty list of them (fnmatch: *, ?, [seq], [!seq])."""
    value = t.raw(name)
    expected = 'a glob pattern or a list of them (e.g. ["ACME-*", "KIT-??"])'
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[tuple[str, object]] = [(name, value)]
    elif isinstance(value, list):
        if not value:
            t.problem(name, f"must not be an empty list: leave {name} out to apply no such rule")
            return ()
        items = [(f"{name}[{index}]", item) for index, item in enumerate(value)]
    else:
        t.wrong_type(name, expected, value)
        return ()
    patterns: list[str] = []
    for key, item in items:
        if not isinstance(item, str):
            t.problem(key, f"must be a glob pattern (a string), got {_show(item)} ({_kind(item)})")
        elif not item.strip():
            t.problem(key, f"must not be empty, got {_show(item)}")
        elif item != item.strip():
            t.problem(
                key,
                f"must not start or end with spaces (SKUs and categories are matched without "
                f"them), got {_show(item)}",
            )
        elif item in patterns:
            t.problem(key, f"{_show(item)} is listed twice")
        else:
            patterns.append(item)
    return tuple(patterns)


def _locations(conn: _Table) -> tuple[LocationMapping, ...]:
    result: list[LocationMapping] = []
    # A Katana location (or a pool's set of them) -> the entry that maps it.
    katana_entries: dict[int | str | frozenset[int | str], str] = {}
    # Shopify location gid -> (the Katana location or pool feeding it, the entry that says so)
    feeders: dict[str, tuple[int | str | tuple[int | str, ...], str]] = {}
    for entry in conn.tables("locations", required=True):
        katana = _katana_locations(entry, "katana")
        shopify = _shopify_locations(entry, "shopify")
        entry.reject_unknown()
        if katana is None or shopify is None:
            continue
        key: int | str | frozenset[int | str] = (
            frozenset(katana) if isinstance(katana, tuple) else katana
        )
        if key in katana_entries:
            what = "pool" if isinstance(katana, tuple) else "Katana location"
            entry.problem(
                "katana",
                f"{what} {_show_ref(katana)} is already mapped by {katana_entries[key]}; "
                "list all its Shopify locations in that entry",
            )
            continue
        katana_entries[key] = entry.path
        for gid in shopify:
            if gid not in feeders:
                feeders[gid] = (katana, entry.path)
                continue
            other_katana, other_entry = feeders[gid]
            if other_entry == entry.path:
                entry.problem("shopify", f"{_show(gid)} is listed twice")
            else:
                entry.problem(
                    "shopify",
                    f"{_show(gid)} is already fed by Katana location {_show_ref(other_katana)} "
                    f"({other_entry}); a Shopify location is fed by one entry per connection: "
                    "to feed it the sum of several Katana locations, list them in one entry "
                    '(katana = ["Warehouse", "Overflow"])',
                )
        result.append(LocationMapping(katana=katana, shopify=shopify))
    return tuple(result)


def _show_ref(ref: int | str | tuple[int | str, ...]) -> str:
    if isinstance(ref, tuple):
        return "[" + ", ".join(_show(r) for r in ref) + "]"
    return _show(ref)


def _katana_locations(t: _Table, name: str) -> int | str | tuple[int | str, ...] | None:
    """One Katana location, or a list of them: a pool feeding its Shopify locations their sum."""
    value = t.raw(name)
    if not isinstance(value, list):
        return _katana_location(t, name, value)
    if len(value) < 2:
        t.problem(
            name,
            "a pool lists at least two Katana locations (ids or names); for one, write it "
            f"without brackets, got {_show(value)}",
        )
        return None
    members: list[int | str] = []
    bad = False
    for index, item in enumerate(value):
        ref = _katana_location(t, f"{name}[{index}]", item)
        if ref is None:
            bad = True
        elif ref in members:
            t.problem(f"{name}[{index}]", f"{_show(ref)} is listed twice in the pool")
            bad = True
        else:
            members.append(ref)
    return None if bad else tuple(members)


def _katana_location(t: _Table, name: str, value: object) -> int | str | None:
    if value is None:
        t.problem(
            name,
            "is required: a Katana location id (integer) or name (string), or a list of them "
            "(a pool)",
        )
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        t.wrong_type(
            name, "a Katana location id (integer) or name (string), or a list of them", value
        )
        return None
    if isinstance(value, int) and value < 1:
        t.problem(name, f"a Katana location id must be at least 1, got {value}")
        return None
    if isinstance(value, str) and not value.strip():
        t.problem(name, f"a Katana location name must not be empty, got {_show(value)}")
        return None
    return value


def _shopify_locations(t: _Table, name: str) -> tuple[str, ...] | None:
    value = t.raw(name)
    expected = 'a Shopify location gid ("gid://shopify/Location/N") or a list of them'
    if value is None:
        t.problem(name, f"is required: {expected}")
        return None
    if isinstance(value, str):
        items: list[tuple[str, object]] = [(name, value)]
    elif isinstance(value, list):
        if not value:
            t.problem(name, f"must not be an empty list: {expected}")
            return None
        items = [(f"{name}[{index}]", item) for index, item in enumerate(value)]
    else:
        t.wrong_type(name, expected, value)
        return None
    gids: list[str] = []
    for key, item in items:
        if isinstance(item, str) and _LOCATION_GID.match(item):
            gids.append(item)
        else:
            t.problem(key, f'must look like "gid://shopify/Location/N", got {_show(item)}')
    return tuple(gids) if len(gids) == len(items) else None


# --------------------------------------------------------------------------- values


def _path(t: _Table, name: str, base: Path) -> Path | None:
    """A path; relative ones resolve against the config file's folder."""
    text = t.optional_string(name)
    if text is None:
        return None
    if "\0" in text:
        t.problem(name, f"is not a valid path, got {_show(text)}")
        return None
    return base / Path(text).expanduser()


def _url(t: _Table, name: str, default: str) -> str:
    text = t.string(name, default)
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in text)
    ):
        t.problem(name, f'must be an http(s) URL such as "{default}", got {_show(text)}')
    # Paths are appended to it, so one spelling: no trailing slash.
    return text.rstrip("/")


# --------------------------------------------------------------------------- secrets


def _secret(
    t: _Table,
    name: str,
    base: Path,
    env: Mapping[str, str],
    *,
    required: bool,
    default_env: str | None = None,
    resolve: bool = True,
) -> Secret | None:
    """The secret `name`, from `{name}_env` (a variable name) or `{name}_file` (a path)."""
    env_key, file_key = f"{name}_env", f"{name}_file"
    inline = t.present(name)
    if inline:
        # The value itself is never echoed.
        t.problem(
            name,
            f"secrets must not be written in the config file; set {env_key} (an environment "
            f"variable name) or {file_key} (a file, e.g. from systemd LoadCredential=) instead",
        )
    has_env, has_file = t.present(env_key), t.present(file_key)
    variable = t.optional_string(env_key)
    path = _path(t, file_key, base)
    if has_env and has_file:
        t.problem(env_key, f"set {env_key} or {file_key}, not both")
        return None
    if not has_env and not has_file:
        if default_env is None or inline:
            if required and not inline:
                t.problem(env_key, f"is required: set {env_key} or {file_key}")
            return None
        variable = default_env
    if not resolve:
        return None
    if variable is not None:
        return _secret_from_env(t, env_key, variable, env, defaulted=not has_env)
    if path is not None:
        return _secret_from_file(t, file_key, path)
    return None  # a bad value, already reported


def _secret_from_env(
    t: _Table, key: str, variable: str, env: Mapping[str, str], *, defaulted: bool
) -> Secret | None:
    # Neither message shows the value: it may be the secret itself, pasted in the wrong place.
    if variable.startswith(_SHOPIFY_SECRET_PREFIXES):
        t.problem(
            key,
            "looks like a Shopify access token, not an environment variable name: put the "
            "token in the environment and name the variable here (value not shown)",
        )
        return None
    if not _ENV_NAME.match(variable):
        t.problem(
            key,
            "is not a valid environment variable name (letters, digits and '_', not starting "
            "with a digit); value not shown in case it is the secret itself",
        )
        return None
    value = env.get(variable)
    default_note = f" (the default for {t.key(key)})" if defaulted else ""
    if value is None:
        t.problem(key, f"environment variable {variable} is not set{default_note}")
        return None
    if not value.strip():
        t.problem(key, f"environment variable {variable} is empty{default_note}")
        return None
    return Secret(value)


def _secret_from_file(t: _Table, key: str, path: Path) -> Secret | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        t.problem(key, f"cannot read {_show(str(path))}: {_reason(exc)}")
        return None
    except UnicodeDecodeError:
        t.problem(key, f"{_show(str(path))} is not UTF-8 text")
        return None
    # `echo token > file` and LoadCredential= files end with a newline that is not the secret.
    value = text.rstrip("\r\n")
    if not value.strip():
        t.problem(key, f"{_show(str(path))} is empty")
        return None
    return Secret(value)


# --------------------------------------------------------------------------- variant map


def _parse_variant_map(
    path: Path,
) -> tuple[dict[int, str | tuple[str, ...]], dict[str, TargetRule], list[str]]:
    """Entries, the rows' own rules and every problem of a variant map CSV; OSError when it
    cannot be read.

    Columns: katana_variant_id, shopify_variant_id, then optionally units_per_pack and buffer
    (in either order). A Katana variant may have several rows (a single and its packs); a
    Shopify variant only one: it is fed by one Katana variant.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: tolerate a BOM (Excel writes one)
    except UnicodeDecodeError:
        return {}, {}, [f"{path}: not UTF-8 text"]
    targets: dict[int, list[str]] = {}
    rules: dict[str, TargetRule] = {}
    errors: list[str] = []
    # Shopify variant gid -> (the Katana variant feeding it, its line)
    shopify_line: dict[str, tuple[int, int]] = {}
    header: tuple[str, ...] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            cells = [cell.strip() for cell in next(csv.reader([line], strict=True))]
        except csv.Error as exc:
            errors.append(f"{where}: not valid CSV ({exc}): {_show(content)}")
            continue
        if header is None:
            header = _variant_map_header(where, cells, content, errors)
            continue
        if len(cells) != len(header):
            errors.append(
                f"{where}: expected {len(header)} columns ({','.join(header)}), "
                f"got {len(cells)}: {_show(content)}"
            )
            continue
        row = dict(zip(header, cells, strict=True))
        katana = _katana_variant_id(row["katana_variant_id"])
        shopify = _shopify_variant_gid(row["shopify_variant_id"])
        if katana is None:
            errors.append(
                f"{where}: katana_variant_id must be a positive integer, "
                f"got {_show(row['katana_variant_id'])}"
            )
        if shopify is None:
            errors.append(
                f"{where}: shopify_variant_id must be a gid like "
                f"gid://shopify/ProductVariant/123 or the number 123, "
                f"got {_show(row['shopify_variant_id'])}"
            )
        units = _map_number(where, row, "units_per_pack", 1, errors)
        buffer = _map_number(where, row, "buffer", 0, errors)
        if katana is None or shopify is None or units == _BAD or buffer == _BAD:
            continue
        if shopify in shopify_line:
            other, other_line = shopify_line[shopify]
            errors.append(
                f"{where}: Shopify variant {shopify} is already fed by Katana variant {other} "
                f"(line {other_line}); a Shopify variant may be fed by only one Katana variant"
            )
            continue
        shopify_line[shopify] = (katana, number)
        targets.setdefault(katana, []).append(shopify)
        rule = TargetRule(
            units_per_pack=1 if units is None else units,
            buffer=buffer,
        )
        if rule != TargetRule():
            rules[shopify] = rule
    if header is None:
        errors.append(f"{path}: empty; expected the header {','.join(VARIANT_MAP_HEADER)}")
    entries: dict[int, str | tuple[str, ...]] = {
        katana: gids[0] if len(gids) == 1 else tuple(gids) for katana, gids in targets.items()
    }
    return entries, rules, errors


# A bad optional cell (reported); None is an empty one.
_BAD: Final = -1


def _variant_map_header(
    where: str, cells: list[str], content: str, errors: list[str]
) -> tuple[str, ...]:
    """The columns of a variant map (the two required ones when the line is no header)."""
    required = VARIANT_MAP_HEADER
    expected = (
        f"expected {','.join(required)} then optionally {' and '.join(VARIANT_MAP_OPTIONAL)}, "
        f"got {_show(content)}"
    )
    if tuple(cells[: len(required)]) != required:
        errors.append(f"{where}: the first line must be the header: {expected}")
        return required
    extra = cells[len(required) :]
    for column in extra:
        if column not in VARIANT_MAP_OPTIONAL:
            errors.append(f"{where}: unknown column {_show(column)}: {expected}")
            break
        if extra.count(column) > 1:
            errors.append(f"{where}: column {_show(column)} is listed twice: {expected}")
            break
    # The rows are still read with this header, so each bad line is reported too.
    return tuple(cells)


def _map_number(
    where: str, row: Mapping[str, str], column: str, minimum: int, errors: list[str]
) -> int | None:
    """An optional whole-number cell: None when absent or empty, _BAD (reported) when wrong."""
    text = row.get(column, "")
    if not text:
        return None
    if not _DIGITS.match(text) or not minimum <= int(text) <= MAX_PACK_OR_BUFFER:
        what = "Katana units held back" if column == "buffer" else "Katana units in one pack"
        errors.append(
            f"{where}: {column} must be a whole number of {what} between {minimum} and "
            f"{MAX_PACK_OR_BUFFER:,}, or empty, got {_show(text)}"
        )
        return _BAD
    return int(text)


def _katana_variant_id(text: str) -> int | None:
    if not _DIGITS.match(text) or int(text) < 1:
        return None
    return int(text)


def _shopify_variant_gid(text: str) -> str | None:
    match = _VARIANT_GID.match(text)
    number = match.group(1) if match else text
    if not _DIGITS.match(number) or int(number) < 1:
        return None
    return f"gid://shopify/ProductVariant/{int(number)}"


# --------------------------------------------------------------------------- messages


def _show(value: object) -> str:
    """A value as it would be written in TOML, shortened; never call it with a secret."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{...}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(item) for item in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {_plain(minimum)} and {_plain(maximum)}"
    if minimum is not None:
        return f"at least {_plain(minimum)}"
    assert maximum is not None
    return f"at most {_plain(maximum)}"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
