"""The [[connections]] tables: each Shopify shop's name, domain, API version, credentials,
variant map file, quantity and safety-valve settings, [[connections.locations]] (a Katana
location or a pool feeding Shopify locations) and [connections.filters] (sync filters)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from daemon.config.secret_sources import _secret
from daemon.config.settings import ConnectionSettings, LocationMapping
from daemon.config.table import _kind, _path, _reason, _show, _Table, _url
from daemon.config.variant_map import _parse_variant_map
from daemon.domain.controls import SyncFilter, TargetRule
from daemon.secrets import Secret

DEFAULT_API_VERSION = "2026-10"
# inventorySetQuantities gained changeFromQuantity and @idempotent in 2026-01.
OLDEST_API_VERSION = "2026-01"


FILTER_KEYS = ("include_skus", "exclude_skus", "include_categories", "exclude_categories")

_CONNECTION_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SHOP_DOMAIN = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\Z")
_API_VERSION = re.compile(r"(\d{4})-(\d{2})\Z")
_LOCATION_GID = re.compile(r"gid://shopify/Location/[1-9][0-9]*\Z")


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
