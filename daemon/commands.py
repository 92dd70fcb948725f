"""The `stocksync` subcommands other than check-config (wired into `daemon.cli`).

Exit codes (PRODUCT.md §5): 0 the work completed (some items may have been rejected: they are
reported on stderr); 1 it could not complete (an API unreachable, auth failure, unusable state);
2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from daemon.config import ConfigError, Settings, UnknownConnection, load_settings
from daemon.domain.mapping import LocationError, resolve_locations
from daemon.katana.client import KatanaClient, KatanaError
from daemon.katana.ratelimit import RateLimiter
from daemon.logs import configure_logging, redact
from daemon.metrics import Metrics
from daemon.runtime import build_shopify_clients, open_runtime
from daemon.service import Daemon, settings_secrets
from daemon.shopify.client import ShopifyError
from daemon.statelock import StateLock
from daemon.store import StateError, StateStore
from daemon.sync.engine import Engine
from daemon.sync.reconcile import Reconciler, ReconciliationReport
from daemon.tables import render_csv, render_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = structlog.get_logger(__name__)


def _settings(args: argparse.Namespace) -> Settings | None:
    try:
        settings = load_settings(Path(args.config))
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    configure_logging(
        getattr(args, "log_format", None) or settings.daemon.log_format,
        level=getattr(args, "log_level", None) or settings.daemon.log_level,
        stream=sys.stderr,
        secrets=settings_secrets(settings),
    )
    return settings


def _error(text: str) -> None:
    """Print a line to stderr with every secret masked.

    Error text comes from servers (a proxy may echo the request's credentials back), so it is
    redacted exactly as the daemon's log lines are.
    """
    print(redact(text), file=sys.stderr)


def _guard(
    work: Callable[[Settings], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    *,
    writes: bool = False,
) -> int:
    """Load settings, run `work`, map failures to exit codes with a one-line reason.

    `writes`: `work` writes the state, so it runs only while holding the state file's writer
    lock (daemon/statelock.py); beside a running daemon it is refused.
    """
    settings = _settings(args)
    if settings is None:
        return EXIT_USAGE
    try:
        path = settings.daemon.state_path
        with StateLock.acquire(path) if writes else contextlib.nullcontext():
            return asyncio.run(work(settings))
    except UnknownConnection as exc:
        _error(f"stocksync: {exc.args[0]}")
        return EXIT_USAGE
    except (KatanaError, ShopifyError, StateError, LocationError, OSError, TimeoutError) as exc:
        _error(f"stocksync: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except Exception:
        # A bug: the traceback helps, but Python would print it unredacted.
        _error(f"stocksync: unexpected error\n{traceback.format_exc()}")
        return EXIT_FAILED


def check_online(settings: Settings) -> int:
    """`check-config --online`: credentials work and every configured location exists."""

    # The clients' log lines and the problems below may carry server text: redact both.
    configure_logging(
        settings.daemon.log_format,
        level=settings.daemon.log_level,
        stream=sys.stderr,
        secrets=settings_secrets(settings),
    )

    async def work() -> list[str]:
        # No state database is opened: checking a config must not create or touch it.
        problems: list[str] = []
        metrics = Metrics(process=False)
        async with aiohttp.ClientSession() as session:
            katana = KatanaClient(
                session,
                settings.katana.base_url,
                settings.katana.api_key,
                RateLimiter(settings.katana.requests_per_minute),
                metrics=metrics,
            )
            shopify = build_shopify_clients(session, settings.connections, metrics)
            try:
                katana_locations = await katana.locations()
            except KatanaError as exc:
                return [f"katana: {exc}"]
            print(f"katana: OK ({len(katana_locations)} locations)")
            names = {loc.id: loc.name for loc in katana_locations if not loc.deleted}
            for conn in settings.connections:
                try:
                    resolve_locations([(m.katana, m.shopify) for m in conn.locations], names)
                except LocationError as exc:
                    problems.append(f"connections.{conn.name}.locations: {exc}")
                try:
                    shopify_locations = await shopify[conn.name].locations()
                except ShopifyError as exc:
                    problems.append(f"connections.{conn.name}: Shopify: {exc}")
                    continue
                known = {loc.id: loc for loc in shopify_locations}
                for mapping in conn.locations:
                    for gid in mapping.shopify:
                        if gid not in known:
                            problems.append(
                                f"connections.{conn.name}.locations: Shopify location {gid} "
                                f"does not exist in {conn.shop}"
                            )
                        elif not known[gid].is_active:
                            # Listed only because the read asks for inactive locations too.
                            problems.append(
                                f"connections.{conn.name}.locations: Shopify location {gid} "
                                f"({known[gid].name}) is deactivated in {conn.shop}"
                            )
                print(f"{conn.name}: Shopify OK ({len(shopify_locations)} locations)")
        return problems

    try:
        problems = asyncio.run(work())
    except (StateError, OSError, TimeoutError) as exc:
        problems = [f"{type(exc).__name__}: {exc}"]
    for problem in problems:
        _error(problem)
    return EXIT_FAILED if problems else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`stocksync run`: the daemon in the foreground."""
    settings = _settings(args)
    if settings is None:
        return EXIT_USAGE
    try:
        lock = StateLock.acquire(settings.daemon.state_path)
    except StateError as exc:
        log.error("state_unusable", error=str(exc))
        return EXIT_FAILED
    with lock:  # for the daemon's whole life: one process writes a state file
        return asyncio.run(Daemon(Path(args.config), settings).run())


def cmd_sync_once(args: argparse.Namespace) -> int:
    """`stocksync sync-once`: one poll-and-push cycle."""

    async def work(settings: Settings) -> int:
        if not any(c.sync_inventory for c in settings.connections):
            print("every connection has sync_inventory = false: nothing to sync")
            return EXIT_OK
        async with open_runtime(settings) as runtime:
            report = await runtime.engine.cycle()
        rows = [
            [
                c.name,
                "full" if c.full_sync else "delta",
                c.planned,
                c.applied,
                c.rejected,
                "held" if c.held else ("error" if c.errors else "ok"),
            ]
            for c in report.connections
        ]
        print(render_table(["connection", "kind", "planned", "applied", "rejected", "state"], rows))
        for c in report.connections:
            for error in c.errors:
                _error(f"{c.name}: {error}")
        return EXIT_OK if report.ok else EXIT_FAILED

    return _guard(work, args, writes=True)


def _progress() -> Callable[[str], None] | None:
    """Phase lines on stderr for a person at a terminal; nothing when output is piped."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def show(phase: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {phase}...", file=sys.stderr, flush=True)

    return show


# Shopify location gid -> its name, per connection.
LocationNames = dict[str, dict[str, str]]


async def _location_names(engine: Engine, connections: Iterable[str]) -> LocationNames:
    """Each connection's Shopify location names (people know "Main", not a gid); a shop whose
    locations cannot be read keeps its gids."""

    async def one(name: str) -> tuple[str, dict[str, str]]:
        try:
            locations = await engine.shopify[name].locations()
        except ShopifyError:
            return name, {}
        taken = Counter(loc.name for loc in locations)
        # Two locations of one shop may share a name: the gid's number tells them apart.
        return name, {
            loc.id: loc.name if taken[loc.name] == 1 else f"{loc.name} ({loc.id.rsplit('/')[-1]})"
            for loc in locations
        }

    return dict(await asyncio.gather(*(one(name) for name in dict.fromkeys(connections))))


def _named(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The connections a command is about: --connection, or every one."""
    if args.connection:
        return [settings.connection(args.connection).name]
    return [c.name for c in settings.connections]


def _place(names: LocationNames, connection: str, location_id: str) -> str:
    return names.get(connection, {}).get(location_id, location_id)


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


def _goes_to_0(desired: int, shopify_now: int | None) -> bool:
    """A level Shopify shows above or below 0 that Katana wants at 0."""
    return desired == 0 and shopify_now is not None and shopify_now != 0


def _print_differences(report: ReconciliationReport, names: LocationNames) -> None:
    rows = [
        [
            c.name,
            d.sku,
            _place(names, c.name, d.location_id),
            d.shopify_now,
            d.desired,
            "yes" if d.drift else "",
            d.rule,
        ]
        for c in report.connections
        for d in c.differences
    ]
    # rule: what applies beyond the seed formula (a pool, a pack size, a buffer of its own).
    headers = ["connection", "sku", "location", "shopify_now", "katana_desired", "drift", "rule"]
    print(render_table(headers, rows) if rows else "no differences: Shopify is in step")


def _print_plan_summary(report: ReconciliationReport, names: LocationNames) -> None:
    """Per location: levels compared, changes, changes to 0; a warning where every level of a
    location would be 0 (usually a wrong location mapping); then the totals."""
    rows: list[list[object]] = []
    warnings: list[str] = []
    for c in report.connections:
        changes = Counter(d.location_id for d in c.differences)
        to_zero = Counter(
            d.location_id for d in c.differences if _goes_to_0(d.desired, d.shopify_now)
        )
        for location, levels in sorted(
            c.levels_by_location.items(), key=lambda item: _place(names, c.name, item[0])
        ):
            place = _place(names, c.name, location)
            rows.append([c.name, place, levels, changes[location], to_zero[location]])
            if to_zero[location] and c.zero_by_location[location] == levels:
                warnings.append(
                    f"{c.name}: every level at {place} would go to 0: check the connection's "
                    "location mapping and Katana's stock there before pushing"
                )
    if rows:
        print()
        print(render_table(["connection", "location", "levels", "changes", "to_0"], rows))
    print()
    for warning in warnings:
        print(f"warning: {warning}")
    changed = sum(len(c.differences) for c in report.connections)
    zeroed = sum(
        _goes_to_0(d.desired, d.shopify_now) for c in report.connections for d in c.differences
    )
    print(f"{_count(changed, 'level')} would change, {zeroed} of them to 0")


def cmd_reconcile(args: argparse.Namespace) -> int:
    """`stocksync reconcile`: one reconciliation now (optionally a dry run)."""

    async def work(settings: Settings) -> int:
        # A dry run writes nothing (a private copy of the state), so it needs no writer lock.
        async with open_runtime(settings, read_only=args.dry_run) as runtime:
            reading = asyncio.create_task(
                _location_names(runtime.engine, _named(settings, args) if args.dry_run else ())
            )
            try:
                report = await Reconciler.of(runtime.engine, _progress()).run(
                    connection=args.connection, dry_run=args.dry_run
                )
            except BaseException:
                reading.cancel()  # the names are not needed: the error is reported instead
                raise
            names = await reading
        if args.dry_run:
            _print_differences(report, names)
            for c in report.connections:
                for error in c.outcome.errors if c.outcome is not None else ():
                    _error(f"{c.name}: {error}")
            differences = [d for c in report.connections for d in c.differences]
            print(
                f"dry run: {_count(sum(c.considered for c in report.connections), 'level')} "
                f"checked, {len(differences)} would change "
                f"({sum(d.drift for d in differences)} drifted), "
                f"{sum(_goes_to_0(d.desired, d.shopify_now) for d in differences)} to 0; "
                "nothing was written"
            )
            return EXIT_OK if report.ok else EXIT_FAILED
        for c in report.connections:
            if c.skipped:
                print(f"{c.name}: skipped ({c.skipped})")
            elif c.outcome is not None:
                print(
                    f"{c.name}: {c.considered} levels checked, {c.drift} drifted, "
                    f"{c.outcome.applied} pushed, {c.outcome.rejected} rejected"
                    + (" (held by the safety valve)" if c.outcome.held else "")
                )
                for error in c.outcome.errors:
                    _error(f"{c.name}: {error}")
        return EXIT_OK if report.ok else EXIT_FAILED

    return _guard(work, args, writes=not args.dry_run)


def cmd_plan(args: argparse.Namespace) -> int:
    """`stocksync plan`: what a push would change, without writing anything."""

    async def work(settings: Settings) -> int:
        # On a copy of the state: a plan changes nothing, not even the state file.
        async with open_runtime(settings, read_only=True) as runtime:
            # Read first, while the shop's query budget is full (it is cheap then, and the level
            # reads after it would leave it waiting for the budget to refill).
            reading = asyncio.create_task(_location_names(runtime.engine, _named(settings, args)))
            try:
                report = await Reconciler.of(runtime.engine, _progress()).run(
                    connection=args.connection, dry_run=True, full=True
                )
            except BaseException:
                reading.cancel()  # the names are not needed: the error is reported instead
                raise
            names = await reading
        _print_differences(report, names)
        _print_plan_summary(report, names)
        for c in report.connections:
            if c.filtered:
                print(
                    f"{c.name}: {_count(c.filtered, 'Katana variant')} left out by the sync "
                    "filters, their Shopify levels left as they are (`stocksync mappings` lists "
                    "them)"
                )
        # A connection that could not be planned (its Katana locations do not resolve).
        for c in report.connections:
            for error in c.outcome.errors if c.outcome is not None else ():
                _error(f"{c.name}: {error}")
        return EXIT_OK if report.ok else EXIT_FAILED

    return _guard(work, args)


def cmd_mappings(args: argparse.Namespace) -> int:
    """`stocksync mappings`: mapped / unmapped / duplicate-SKU / untracked report."""

    async def work(settings: Settings) -> int:
        rows: list[list[object]] = []
        totals: list[str] = []
        # UnknownConnection (exit 2) before anything is read, as plan and reconcile do.
        connections = (
            [settings.connection(args.connection)] if args.connection else settings.connections
        )
        # On a copy of the state: a report changes nothing, not even the state file.
        async with open_runtime(settings, read_only=True) as runtime:
            engine = runtime.engine
            await engine.keeper.prepare([c.name for c in connections])
            variants = engine.katana_variants()
            for conn in connections:
                table = (await engine.mapping_for(conn)).table
                rules = conn.target_rules
                for vid, targets in sorted(table.targets.items()):
                    for t in targets:
                        rule = rules.get(t.id)
                        note = "" if rule is None else rule.describe()
                        rows.append([conn.name, "mapped", variants[vid].sku, vid, t.id, note])
                # Left out by [connections.filters]: their Shopify levels stay as last pushed.
                for vid, reason in sorted(table.filtered.items()):
                    for t in table.filtered_targets.get(vid, ()):
                        rows.append([conn.name, "filtered", variants[vid].sku, vid, t.id, reason])
                # A shadowed variant has no target either: it is listed once, as shadowed.
                unmapped = sorted(table.unmapped_katana - table.shadowed.keys())
                for vid in unmapped:
                    rows.append([conn.name, "unmapped", variants[vid].sku, vid, None, ""])
                for vid, winner in sorted(table.shadowed.items()):
                    rows.append(
                        [
                            conn.name,
                            "shadowed",
                            variants[vid].sku,
                            vid,
                            None,
                            f"katana variant {winner} wins this SKU",
                        ]
                    )
                for sv in table.untracked:
                    rows.append(
                        [
                            conn.name,
                            "untracked",
                            sv.sku,
                            None,
                            sv.id,
                            "Shopify does not track this item's inventory",
                        ]
                    )
                for kid, gid in table.unknown_map_entries:
                    rows.append(
                        [
                            conn.name,
                            "bad_map_entry",
                            None,
                            kid,
                            gid,
                            "variant map names a variant that does not exist",
                        ]
                    )
                fed = {t.id for targets in table.targets.values() for t in targets}
                # A Shopify variant nothing feeds: its SKU matches no live Katana variant, or the
                # one it matches is mapped to another Shopify variant by the variant map.
                katana_skus = {v.sku.strip() for v in variants.values() if v.sku and not v.retired}
                # A filtered variant's Shopify variants are not "Shopify-only": it is theirs.
                fed |= {t.id for targets in table.filtered_targets.values() for t in targets}
                untracked = {sv.id for sv in table.untracked}
                shopify_only = [
                    sv
                    for sv in engine.keeper.shopify_variants.get(conn.name, ())
                    if sv.id not in fed and sv.id not in untracked
                ]
                for sv in sorted(shopify_only, key=lambda sv: (sv.sku or "", sv.id)):
                    why = (
                        "the Katana variant with this SKU is mapped elsewhere by the variant map"
                        if sv.sku and sv.sku.strip() in katana_skus
                        else "no Katana variant has this SKU, and no variant map entry names it"
                    )
                    rows.append([conn.name, "shopify_only", sv.sku, None, sv.id, why])
                bad = _count(
                    len(table.unknown_map_entries),
                    "bad variant map entry",
                    "bad variant map entries",
                )
                totals.append(
                    f"{conn.name}: {len(table.targets)} mapped, {len(unmapped)} unmapped, "
                    f"{len(table.shadowed)} shadowed, {len(table.untracked)} untracked, "
                    f"{len(shopify_only)} Shopify-only, {bad}"
                    # Only where a connection has sync filters that leave variants out.
                    + (f", {len(table.filtered)} filtered" if table.filtered else "")
                )
        headers = ["connection", "status", "sku", "katana_variant", "shopify_variant", "note"]
        if args.format == "csv":
            print(render_csv(headers, rows), end="")
            # Totals would break the CSV: they go to stderr, for a person watching.
            for line in totals:
                print(line, file=sys.stderr)
        else:
            print(render_table(headers, rows))
            for line in totals:
                print(line)
        return EXIT_OK

    return _guard(work, args)


def cmd_release_hold(args: argparse.Namespace) -> int:
    """`stocksync release-hold CONNECTION`: let a held connection push again."""

    async def work(settings: Settings) -> int:
        store = await StateStore.open(settings.daemon.state_path)
        try:
            released = await store.release_hold(args.connection)
        finally:
            await store.close()
        if released:
            print(f"{args.connection}: hold released; the running daemon pushes on its next cycle")
            return EXIT_OK
        # A connection no longer in the config may still be held: release works on either.
        settings.connection(args.connection)
        print(f"{args.connection}: was not held")
        return EXIT_OK

    return _guard(work, args)


def cmd_history(args: argparse.Namespace) -> int:
    """`stocksync history SKU`: the audit log of pushes for one SKU."""

    async def work(settings: Settings) -> int:
        # Read-only: the audit log as it is; a missing state file is reported, not created.
        store = await StateStore.open_read_only(settings.daemon.state_path)
        try:
            entries = await store.history(
                args.sku, limit=args.limit, connection=args.connection, since=args.since
            )
        finally:
            await store.close()
        rows = [
            [
                # Local time, with its UTC offset: the operator's clock, never ambiguous.
                e.at.astimezone().isoformat(sep=" ", timespec="seconds"),
                e.connection,
                e.location_id,
                e.from_quantity,
                e.to_quantity,
                e.outcome,
                e.run_id,
            ]
            for e in entries
        ]
        headers = ["when", "connection", "location", "from", "to", "outcome", "run"]
        print(render_table(headers, rows) if rows else f"no pushes recorded for SKU {args.sku!r}")
        return EXIT_OK

    return _guard(work, args)


def cmd_demo(args: argparse.Namespace) -> int:
    """`stocksync demo`: the daemon against the built-in simulators (no accounts needed)."""
    from daemon.demo import DemoOptions, run_demo

    options = DemoOptions(
        variants=args.variants,
        events_per_second=args.events_per_second,
        poll_interval=args.poll_interval,
        port=args.port,
        duration=args.duration,
        verbose=args.verbose,
        keep=args.keep,
    )
    try:
        return asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        print("demo stopped")
        return EXIT_OK
