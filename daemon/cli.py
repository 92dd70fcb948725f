"""The `stocksync` command line (also `python -m daemon`): argparse and dispatch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from daemon import __version__
from daemon.config import (
    ConfigError,
    ConnectionSettings,
    ReconciliationSettings,
    Settings,
    load_settings,
)
from daemon.logs import LEVELS
from daemon.memory import tune_allocator, tune_garbage_collector

# Subcommand name -> the function that runs it and returns the exit code. A subcommand the
# parser knows but this table lacks is reported as not available in this build.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand; callers may add options before parsing."""
    parser = argparse.ArgumentParser(
        prog="stocksync", description="One-way Katana MRP -> Shopify inventory sync."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _with_config(commands.add_parser("run", help="run the daemon in the foreground"))
    _with_config(commands.add_parser("sync-once", help="one poll-and-push cycle, then exit"))
    reconcile = _with_config(commands.add_parser("reconcile", help="one reconciliation now"))
    reconcile.add_argument("--connection", metavar="NAME", help="only this connection")
    reconcile.add_argument(
        "--dry-run", action="store_true", help="report what would change, write nothing"
    )
    plan = _with_config(
        commands.add_parser("plan", help="what a push would change, without writing")
    )
    plan.add_argument("--connection", metavar="NAME", help="only this connection")
    check = _with_config(
        commands.add_parser("check-config", help="validate the config and variant map files")
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also check both credentials and resolve Katana and Shopify locations",
    )
    mappings = _with_config(
        commands.add_parser("mappings", help="mapped / unmapped / duplicate-SKU / untracked report")
    )
    mappings.add_argument("--connection", metavar="NAME", help="only this connection")
    mappings.add_argument("--format", choices=("table", "csv"), default="table")
    release = _with_config(
        commands.add_parser("release-hold", help="release a connection held by the safety valve")
    )
    release.add_argument("connection", metavar="CONNECTION")
    history = _with_config(commands.add_parser("history", help="the push history of one SKU"))
    history.add_argument("sku", metavar="SKU")
    history.add_argument("--limit", type=int, default=100, help="most recent N pushes")
    demo = commands.add_parser(
        "demo", help="run the daemon against built-in simulated Katana and Shopify"
    )
    demo.add_argument("--variants", type=int, default=200, help="catalogue size (>= 20)")
    demo.add_argument("--events-per-second", type=float, default=1.0, help="live event rate")
    demo.add_argument("--poll-interval", type=float, default=5.0, help="the daemon's poll (s)")
    demo.add_argument("--port", type=int, default=0, help="the daemon's HTTP port (0 = free)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    return parser


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "-c", "--config", type=Path, required=True, metavar="FILE", help="the TOML config file"
    )
    parser.add_argument(
        "--log-level",
        choices=tuple(LEVELS),
        help="the least severe log level written (default: [daemon] log_level, else info)",
    )
    return parser


def check_config(args: argparse.Namespace) -> int:
    """Validate the config file offline: 0 and a summary when valid, 1 and every problem if not."""
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        count = len(exc.errors)
        print(f"stocksync: {count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    print(_summary(settings))
    if getattr(args, "online", False):
        from daemon.commands import check_online

        return check_online(settings)
    return 0


def _summary(settings: Settings) -> str:
    lines = [
        f"{settings.source}: OK",
        f"state: {settings.daemon.state_path}",
        f"katana: {settings.katana.base_url} ({settings.katana.requests_per_minute} requests/min)",
        f"reconciliation: {_reconciliation_summary(settings.reconciliation)}",
        f"webhooks: {'on' if settings.webhooks.enabled else 'off'}",
        f"connections: {len(settings.connections)}",
    ]
    lines.extend(f"  {_connection_summary(conn)}" for conn in settings.connections)
    return "\n".join(lines)


def _reconciliation_summary(reconciliation: ReconciliationSettings) -> str:
    if not reconciliation.enabled:
        return "off"
    scope = "full" if reconciliation.full else "recent sales orders only"
    return (
        f'"{reconciliation.cron}" {reconciliation.timezone}, '
        f"lookback {reconciliation.lookback_hours} h, {scope}"
    )


def _connection_summary(conn: ConnectionSettings) -> str:
    shopify_locations = sum(len(m.shopify) for m in conn.locations)
    entries = len(conn.variant_map)
    return (
        f"{conn.name} ({conn.shop}): sync {'on' if conn.sync_inventory else 'off'}, "
        f"{_count(len(conn.locations), 'Katana location')} -> "
        f"{_count(shopify_locations, 'Shopify location')}, "
        f"variant map {_count(entries, 'entry', 'entries')}"
    )


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


def _deferred(name: str) -> Callable[[argparse.Namespace], int]:
    """A command whose module (and its network stack) is imported only when it runs."""

    def run(args: argparse.Namespace) -> int:
        from daemon import commands

        command: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return command(args)

    return run


COMMANDS["check-config"] = check_config
for _name, _function in {
    "run": "cmd_run",
    "sync-once": "cmd_sync_once",
    "reconcile": "cmd_reconcile",
    "plan": "cmd_plan",
    "mappings": "cmd_mappings",
    "release-hold": "cmd_release_hold",
    "history": "cmd_history",
    "demo": "cmd_demo",
}.items():
    COMMANDS[_name] = _deferred(_function)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the subcommand; returns the process exit code."""
    args = build_parser().parse_args(argv)
    tune_garbage_collector()
    tune_allocator()
    command = COMMANDS.get(args.command)
    if command is None:
        print(f"stocksync: {args.command} is not available in this build", file=sys.stderr)
        return 2
    return command(args)
