"""`stocksync push SKU [--connection NAME]`: recompute and push one SKU's levels now.

It writes the state (the push is recorded before it is sent, as in a cycle), so it takes the
state file's writer lock (daemon/statelock.py) for its run. Beside a running daemon it is
refused with a message naming the holder: one process writes a state file, and the daemon
pushes a SKU's changes on its own at its next poll. Exit codes as the other commands: 0 every
level was set (levels Shopify rejected are reported on stderr), 1 it could not complete (an API
unreachable, the lock held, a level whose outcome is unknown, nothing pushable), 2 usage (an
unknown SKU or connection, a configuration error).
"""

from __future__ import annotations

import argparse
import asyncio
import traceback

from daemon.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    LocationNames,
    _error,
    _location_names,
    _place,
    _settings,
)
from daemon.config import Settings, UnknownConnection
from daemon.katana.client import KatanaError
from daemon.runtime import open_runtime
from daemon.shopify.client import ShopifyError
from daemon.statelock import StateLock, StateLocked
from daemon.store import StateError
from daemon.sync.push_sku import SkuPushReport, UnknownSku, push_sku
from daemon.tables import render_table

ARROW = "\N{RIGHTWARDS ARROW}"


def cmd_push(args: argparse.Namespace) -> int:
    """`stocksync push SKU`: push one SKU's levels now, printing before -> after."""
    settings = _settings(args)
    if settings is None:
        return EXIT_USAGE
    try:
        lock = StateLock.acquire(settings.daemon.state_path)
    except StateLocked as exc:
        _error(f"stocksync: {exc}")
        _error(
            "stocksync: push writes the state file, so it does not run beside the daemon; the "
            "daemon pushes a SKU's Katana changes itself at its next poll (see `stocksync "
            "plan`), or stop it and push again"
        )
        return EXIT_FAILED
    except StateError as exc:
        _error(f"stocksync: {exc}")
        return EXIT_FAILED
    with lock:
        try:
            report, names = asyncio.run(_work(settings, args.sku, args.connection))
        except (UnknownConnection, UnknownSku) as exc:
            _error(f"stocksync: {exc.args[0]}")
            return EXIT_USAGE
        except (KatanaError, ShopifyError, StateError, OSError, TimeoutError) as exc:
            _error(f"stocksync: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
        except Exception:
            _error(f"stocksync: unexpected error\n{traceback.format_exc()}")
            return EXIT_FAILED
    _print(report, names)
    return EXIT_OK if report.complete else EXIT_FAILED


async def _work(
    settings: Settings, sku: str, connection: str | None
) -> tuple[SkuPushReport, LocationNames]:
    async with open_runtime(settings) as runtime:
        engine = runtime.engine
        report = await push_sku(engine, sku, connection)
        names = await _location_names(engine, sorted({c.connection for c in report.changes}))
    return report, names


def _print(report: SkuPushReport, names: LocationNames) -> None:
    rows = [
        [
            c.connection,
            c.sku,
            _variant(c.shopify_sku, c.shopify_variant_id),
            _place(names, c.connection, c.location_id),
            f"{_shown(c.before)} {ARROW} {_shown(c.after)}",
            c.result,
            c.rule,
        ]
        for c in report.changes
    ]
    if rows:
        headers = ["connection", "sku", "shopify_variant", "location", "before → after"]
        print(render_table([*headers, "result", "rule"], rows))
    for note in report.notes:
        print(note)
    for change in report.changes:
        if change.result.startswith("rejected"):
            where = f"{change.connection}: {change.sku} at {change.location_id}"
            _error(f"{where}: Shopify {change.result}")
    for error in report.errors:
        _error(error)
    if not report.changes:
        _error("stocksync: nothing was pushed")


def _variant(sku: str | None, gid: str) -> str:
    """A Shopify variant as people tell them apart: its SKU (a single, a pack), and its id."""
    number = gid.rsplit("/", 1)[-1]
    return f"{sku} ({number})" if sku else number


def _shown(quantity: int | None) -> str:
    return "-" if quantity is None else str(quantity)
