"""`load_settings`: a config file read into `Settings`, and its sections other than the
connections: [daemon] (state file, polling, HTTP listener, logging, status token), [katana],
[reconciliation] (schedule, time zone) and [webhooks]."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from daemon.config.connections import _connections
from daemon.config.secret_sources import _secret
from daemon.config.settings import (
    ConfigError,
    DaemonSettings,
    KatanaSettings,
    ReconciliationSettings,
    Settings,
    WebhookSettings,
)
from daemon.config.table import _DIGITS, _path, _Problems, _read_toml, _show, _Table, _url
from daemon.secrets import Secret

DEFAULT_STATE_PATH = "/var/lib/stocksync/state.db"
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 9464
DEFAULT_HTTP_LISTEN = f"{DEFAULT_HTTP_HOST}:{DEFAULT_HTTP_PORT}"
DEFAULT_KATANA_URL = "https://api.katanamrp.com/v1"
DEFAULT_KATANA_KEY_ENV = "KATANA_API_KEY"


# A day-of-week field that uses numbers (not only names): APScheduler 3 counts them from
# Monday = 0 where cron counts from Sunday = 0, so "0 3 * * 0" would silently run on Mondays.
_NUMERIC_WEEKDAY = re.compile(r"(?:^|[,-])[0-9]")


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
