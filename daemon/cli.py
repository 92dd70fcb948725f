"""The `stocksync` command line (also `python -m daemon`): argparse and dispatch."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


EXIT_STATUS_COMMON = (
    ("0", "the work completed (items Shopify rejected are listed on stderr)"),
    ("1", "it could not complete: an API unreachable, a credential refused, the state database "
     "unusable"),
    ("2", "a usage or configuration error (the message names the file, key and value)"),
)  # fmt: skip
# "90m", "2h", "3d", "1w": a time that long ago.
_AGO = re.compile(r"(\d+)\s*([mhdw])")
_AGO_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MIN_DEMO_VARIANTS = 20


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand; callers may add options before parsing."""
    parser = argparse.ArgumentParser(
        prog="stocksync",
        description="One-way Katana MRP -> Shopify inventory sync.",
        epilog="`stocksync COMMAND --help` describes each command, with examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _with_config(
        _command(
            commands,
            "run",
            "run the daemon in the foreground",
            "Poll Katana, push what changed to Shopify, reconcile nightly, serve /metrics, "
            "/healthz and /readyz; under systemd (Type=notify) it reports readiness. SIGHUP "
            "reloads the configuration, SIGTERM or SIGINT stops it after in-flight pushes.",
            ["stocksync run -c /etc/stocksync/stocksync.toml"],
            [
                ("0", "stopped by SIGTERM or SIGINT"),
                ("1", "could not run: the state database unusable, the HTTP port taken"),
                EXIT_STATUS_COMMON[2],
            ],
        )
    )
    _with_config(
        _command(
            commands,
            "sync-once",
            "one poll-and-push cycle, then exit",
            "One cycle as the daemon runs it: read what changed in Katana and push it to every "
            "connection whose sync is on; a connection's first cycle is a full sync. Prints a "
            "line per connection. Refused while the daemon runs on the same state file.",
            ["stocksync sync-once -c stocksync.toml"],
            [
                ("0", "the cycle completed, or every connection's sync is off"),
                *EXIT_STATUS_COMMON[1:],
            ],
        )
    )
    reconcile = _with_config(
        _command(
            commands,
            "reconcile",
            "one reconciliation now",
            "Compare every mapped level with what Shopify shows and overwrite what differs "
            "(drift), as the nightly run does. Pushes only to connections whose sync is on; "
            "--dry-run lists the differences and writes nothing, on any connection.",
            [
                "stocksync reconcile -c stocksync.toml --dry-run",
                "stocksync reconcile -c stocksync.toml --connection eu-store",
            ],
            list(EXIT_STATUS_COMMON),
        )
    )
    reconcile.add_argument("--connection", metavar="NAME", help="only this connection")
    reconcile.add_argument(
        "--dry-run", action="store_true", help="report what would change, write nothing"
    )
    plan = _with_config(
        _command(
            commands,
            "plan",
            "what a push would change, without writing",
            "Every level Katana wants different from what Shopify shows now: SKU, location, "
            "Shopify now, Katana-desired, then a summary per location with how many go to 0 "
            "(a whole location going to 0 usually means a wrong location mapping). Works for "
            "connections whose sync is off; changes nothing, not even the state file.",
            [
                "stocksync plan -c stocksync.toml",
                "stocksync plan -c stocksync.toml --connection eu-store",
            ],
            [("0", "the plan was printed"), *EXIT_STATUS_COMMON[1:]],
        )
    )
    plan.add_argument("--connection", metavar="NAME", help="only this connection")
    check = _with_config(
        _command(
            commands,
            "check-config",
            "validate the config and variant map files",
            "Read the configuration exactly as the daemon does and list every problem, each "
            "with its file, key and value. Offline unless --online.",
            [
                "stocksync check-config -c /etc/stocksync/stocksync.toml",
                "stocksync check-config -c stocksync.toml --online",
            ],
            [
                ("0", "valid (with --online: both credentials work, every location exists)"),
                ("1", "problems found: every one is printed"),
            ],
        )
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also check both credentials and resolve Katana and Shopify locations",
    )
    mappings = _with_config(
        _command(
            commands,
            "mappings",
            "mapped / unmapped / duplicate-SKU / untracked report",
            "Which Katana variants feed which Shopify variants, and which do not sync: unmapped "
            "(no Shopify variant with the SKU), shadowed (another Katana variant wins the SKU), "
            "untracked (Shopify does not track the item), Shopify-only (no Katana variant "
            "feeds it) and variant map rows naming a missing variant; then a totals line. "
            "Changes nothing.",
            [
                "stocksync mappings -c stocksync.toml --connection eu-store",
                "stocksync mappings -c stocksync.toml --format csv > mappings.csv",
            ],
            [("0", "the report was printed"), *EXIT_STATUS_COMMON[1:]],
        )
    )
    mappings.add_argument("--connection", metavar="NAME", help="only this connection")
    mappings.add_argument("--format", choices=("table", "csv"), default="table")
    release = _with_config(
        _command(
            commands,
            "release-hold",
            "release a connection held by the safety valve",
            "Let a connection the safety valve holds push again: the running daemon pushes on "
            "its next cycle, and that one cycle is not judged by the valve. Check `plan` first.",
            ["stocksync release-hold -c stocksync.toml eu-store"],
            [
                ("0", "released, or it was not held"),
                ("1", "the state database is unusable"),
                EXIT_STATUS_COMMON[2],
            ],
        )
    )
    release.add_argument("connection", metavar="CONNECTION")
    push = _with_config(
        _command(
            commands,
            "push",
            "push one SKU's levels now, printing before -> after",
            "Recompute the levels of the Katana variants with this SKU (pools, pack sizes and "
            "buffers included) and push them at once to every connection whose sync is on (or "
            "--connection), through the daemon's own push path: each request is recorded "
            "before it is sent. Prints, per Shopify variant and location, Shopify's value read "
            "first and what it was set to. Writes the state file, so it is refused while the "
            "daemon runs on it (the daemon pushes Katana changes itself at its next poll).",
            [
                "stocksync push -c stocksync.toml SKU-1042",
                "stocksync push -c stocksync.toml SKU-1042 --connection eu-store",
            ],
            [
                ("0", "every level was set (levels Shopify rejected are listed on stderr)"),
                (
                    "1",
                    "it could not complete: an API unreachable, the daemon holds the state "
                    "file, a level's outcome unknown, nothing to push (filtered, unmapped, sync "
                    "off)",
                ),
                (
                    "2",
                    "a usage or configuration error: no Katana variant has the SKU, an "
                    "unknown connection",
                ),
            ],
        )
    )
    push.add_argument("sku", metavar="SKU")
    push.add_argument("--connection", metavar="NAME", help="only this connection")
    history = _with_config(
        _command(
            commands,
            "history",
            "the push history of one SKU",
            "The audit log of what stocksync pushed for a SKU, newest first: when (local time, "
            "with its UTC offset), connection, location, from, to, outcome (applied, stale, or "
            "Shopify's error code) and run. Reads the state file, changes nothing.",
            [
                "stocksync history -c stocksync.toml SKU-1042",
                "stocksync history -c stocksync.toml SKU-1042 --connection eu-store --since 2d",
                "stocksync history -c stocksync.toml SKU-1042 --since 2026-05-01",
            ],
            [
                ("0", "the history was printed (or none is recorded)"),
                ("1", "the state database is missing or unusable"),
                EXIT_STATUS_COMMON[2],
            ],
        )
    )
    history.add_argument("sku", metavar="SKU")
    history.add_argument("--connection", metavar="NAME", help="only this connection's pushes")
    history.add_argument(
        "--since",
        type=since_time,
        metavar="WHEN",
        help="only pushes from then on: 90m, 12h, 2d or 1w ago, or a local date or time "
        "(2026-05-01, 2026-05-01T14:30)",
    )
    history.add_argument("--limit", type=_positive, default=100, help="most recent N pushes")
    demo = _command(
        commands,
        "demo",
        "run the daemon against built-in simulated Katana and Shopify",
        "Start simulated Katana and Shopify on loopback with a seeded catalogue, run the real "
        "daemon against them with a live stream of business events, and print a status line "
        "every 5 s. The daemon's log goes to daemon.log in the demo folder (--verbose shows it "
        "too); the folder is removed at the end unless --keep. Needs no accounts.",
        ["stocksync demo", "stocksync demo --variants 1000 --duration 60 --keep"],
        [
            ("0", "stopped (Ctrl-C, SIGTERM), or with --duration: every level was in sync"),
            ("1", "never fully in sync within --duration, or the daemon exited"),
            ("2", "a usage error"),
        ],
    )
    demo.add_argument(
        "--variants",
        type=_at_least(MIN_DEMO_VARIANTS),
        default=200,
        help=f"catalogue size (at least {MIN_DEMO_VARIANTS})",
    )
    demo.add_argument(
        "--events-per-second", type=_at_least(0.0), default=1.0, help="live event rate"
    )
    demo.add_argument(
        "--poll-interval", type=_at_least(1.0), default=5.0, help="the daemon's poll (s, >= 1)"
    )
    demo.add_argument("--port", type=_port, default=0, help="the daemon's HTTP port (0 = free)")
    demo.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    demo.add_argument("--verbose", action="store_true", help="show the daemon's log lines too")
    demo.add_argument("--keep", action="store_true", help="keep the demo folder at the end")
    init = _command(
        commands,
        "init",
        "write the example config, units, dashboard and alerts into a folder",
        "Write the files an installation needs, as a source checkout has them: "
        "config/stocksync.example.toml, config/variant-map.example.csv, deploy/systemd/*, "
        "deploy/prometheus/*, deploy/grafana/stocksync-dashboard.json, docs/operations.md and "
        "LICENSE. The operations guide's /path/to/stocksync is then this folder.",
        ["stocksync init /root/stocksync-files"],
        [
            ("0", "written"),
            ("1", "a file is there already (nothing written; --force replaces), or no write"),
            ("2", "a usage error"),
        ],
    )
    init.add_argument("folder", type=Path, metavar="DIR")
    init.add_argument("--force", action="store_true", help="replace files that exist")
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: list[str],
    exits: list[tuple[str, str]],
) -> argparse.ArgumentParser:
    """A subcommand whose --help has a description, examples and its exit statuses."""
    epilog = "\n".join(
        [
            "examples:",
            *(f"  {example}" for example in examples),
            "",
            "exit status:",
            *(f"  {code}  {meaning}" for code, meaning in exits),
        ]
    )
    return commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=90),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _at_least(minimum: float) -> Callable[[str], Any]:
    """An argparse type: a number not below `minimum` (an int when `minimum` is one)."""
    kind: type[int] | type[float] = int if isinstance(minimum, int) else float

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def _positive(text: str) -> int:
    value: int = _at_least(1)(text)
    return value


def _positive_float(text: str) -> float:
    value = float(_at_least(0.0)(text))
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _port(text: str) -> int:
    value: int = _at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text}")
    return value


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


def since_time(text: str, *, now: datetime | None = None) -> datetime:
    """--since: "90m", "2h", "3d", "1w" ago, or an ISO date or time (local unless it says)."""
    now = now if now is not None else datetime.now(UTC)
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return now - timedelta(**{_AGO_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (say 90m, 12h, 2d, 1w, 2026-05-01 or 2026-05-01T14:30)"
        ) from None
    # A date or time without an offset is the operator's local time.
    return (parsed if parsed.tzinfo is not None else parsed.astimezone()).astimezone(UTC)


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
    katana_locations = len({ref for m in conn.locations for ref in m.members})
    pools = sum(1 for m in conn.locations if len(m.members) > 1)
    entries = sum(1 if isinstance(v, str) else len(v) for v in conn.variant_map.values())
    rules = conn.target_rules.values()
    packs = sum(1 for r in rules if r.units_per_pack != 1)
    buffers = sum(1 for r in rules if r.buffer is not None)
    controls = [
        *([f"{_count(packs, 'pack size')}"] if packs else []),
        *([f"{_count(buffers, 'buffer')} of their own"] if buffers else []),
    ]
    return (
        f"{conn.name} ({conn.shop}): sync {'on' if conn.sync_inventory else 'off'}, "
        f"{_count(katana_locations, 'Katana location')} -> "
        f"{_count(shopify_locations, 'Shopify location')}"
        + (f" ({_count(pools, 'pool')}: summed)" if pools else "")
        + f", variant map {_count(entries, 'entry', 'entries')}"
        + (f" ({', '.join(controls)})" if controls else "")
        + (f", filters: {conn.filters.describe()}" if conn.filters.active else "")
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


def init(args: argparse.Namespace) -> int:
    """`stocksync init DIR`: write the shipped files out; 1 when one exists (unless --force)."""
    from daemon.share import FilesExist, write_files

    try:
        written = write_files(args.folder, force=args.force)
    except FilesExist as exc:
        for path in exc.paths:
            print(f"stocksync: {path} exists", file=sys.stderr)
        print("stocksync: nothing written; --force replaces them", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"stocksync: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


COMMANDS["check-config"] = check_config
COMMANDS["init"] = init


def _push(args: argparse.Namespace) -> int:
    from daemon.push_command import cmd_push

    return cmd_push(args)


COMMANDS["push"] = _push
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
    # argparse requires a known subcommand: every one has an entry.
    return COMMANDS[args.command](args)
