"""`stocksync demo`: the real daemon against the built-in simulated Katana and Shopify.

Starts both simulators on loopback with a seeded catalogue, writes a config into a temporary
folder, runs `stocksync run` on it as a child process (exactly as systemd would), feeds a live
stream of business events, and prints a summary line every few seconds: how many Shopify levels
match Katana's formula, events applied, quantities pushed and the mean sync lag. The daemon's own
log goes to daemon.log in that folder (and to the terminal with --verbose); Ctrl-C or SIGTERM stops
the daemon first, and the folder is removed at the end unless --keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from daemon.katana.models import DELTA_SOURCES
from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.scenario import EventStream, Scenario, build_catalogue
from daemon.sim.shopify import ShopifySim

# The demo polls every 5 s by default; Katana's real budget (60/min) would stretch that to ~14 s,
# so the simulated account (and the config) allow more: twice what idle cycles cost, leaving as
# much again for the stock reads of what changed. Everything else is as in production.
MIN_DEMO_REQUESTS_PER_MINUTE = 150
# Katana requests of an idle cycle: a page per delta source, and variants, products, materials
# and BOM rows for the catalogue.
IDLE_CYCLE_REQUESTS = len(DELTA_SOURCES) + 4


def katana_budget(poll_interval: float) -> int:
    """Requests a minute the demo's simulated Katana allows for `poll_interval`."""
    needed = 2 * IDLE_CYCLE_REQUESTS * 60 / poll_interval
    return max(MIN_DEMO_REQUESTS_PER_MINUTE, math.ceil(needed))


@dataclass(frozen=True)
class DemoOptions:
    """What `stocksync demo` was asked for."""

    variants: int = 200
    events_per_second: float = 1.0
    poll_interval: float = 5.0
    port: int = 0  # 0 = a free port
    duration: float | None = None  # None = until Ctrl-C
    summary_every: float = 5.0
    verbose: bool = False  # also show the daemon's log lines (always in daemon.log)
    keep: bool = False  # keep the demo folder (config, state, daemon.log) at the end


def in_sync(scenario: Scenario) -> tuple[int, int]:
    """(levels equal to Katana's formula, levels expected) over every connection."""
    matching = expected_total = 0
    for shop in scenario.connections:
        expected = scenario.expected_levels(shop.name)
        expected_total += len(expected)
        matching += sum(1 for key, qty in expected.items() if shop.sim.levels.get(key) == qty)
    return matching, expected_total


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """A few totals from the daemon's /metrics (empty while it is not up yet)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (
                "stocksync_quantities_pushed_total",
                "stocksync_sync_lag_seconds_sum",
                "stocksync_sync_lag_seconds_count",
                "stocksync_poll_cycles_total",
            ):
                key = sample.name + (
                    f"_{sample.labels['result']}" if "result" in sample.labels else ""
                )
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Signals that end the demo: each stops the daemon child first (it runs in a session of its
# own, so a terminal's Ctrl-C or a `kill` of the demo never reaches it directly).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOG_FILE = "daemon.log"


async def run_demo(options: DemoOptions) -> int:
    """Run the demo until Ctrl-C, SIGTERM (or `duration`); 0 when stopped, or with a duration
    when every level was in sync at some point. The demo folder is removed unless `keep`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    folder = Path(tempfile.mkdtemp(prefix="stocksync-demo-"))
    try:
        return await _run(options, folder, stop)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if options.keep:
            print(f"demo folder kept: {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print("demo folder removed (--keep keeps it)", flush=True)


async def _run(options: DemoOptions, folder: Path, stop: asyncio.Event) -> int:
    katana = KatanaSim(requests_per_minute=katana_budget(options.poll_interval))
    shop = ShopifySim()
    print(f"building a simulated catalogue of {options.variants} Katana variants...", flush=True)
    scenario = build_catalogue(katana, shop, variants=options.variants, seed=7)
    port = options.port or _free_port()
    async with run_simulators(katana, [c.sim for c in scenario.connections]) as urls:
        config = scenario.write_config(
            folder,
            katana_url=urls.katana,
            shopify_urls=list(urls.shopify),
            state_path=folder / "state.db",
            http_port=port,
            poll_interval_seconds=options.poll_interval,
            log_format="console",
        )
        log_path = folder / LOG_FILE
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            "-c",
            str(config),
            env={**os.environ, **scenario.secrets_env()},
            stdin=asyncio.subprocess.DEVNULL,
            # Its log goes to a file (and to the terminal with --verbose): four to six lines a
            # cycle would bury the status lines.
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: Ctrl-C reaches the demo, which then stops the daemon.
            start_new_session=True,
        )
        assert daemon.stdout is not None
        logging = asyncio.create_task(_keep_log(daemon.stdout, log_path, options.verbose))
        print(
            "\n".join(
                [
                    "",
                    f"  simulated Katana:   {urls.katana}",
                    f"  simulated Shopify:  {urls.shopify[0]}/admin/api/2026-10/graphql.json",
                    f"  demo folder:        {folder}",
                    f"  daemon config:      {config}",
                    f"  daemon log:         {log_path}"
                    + ("" if options.verbose else "  (--verbose shows it here)"),
                    f"  daemon pid:         {daemon.pid}",
                    f"  status page:        http://127.0.0.1:{port}/",
                    f"  metrics:            http://127.0.0.1:{port}/metrics",
                    f"  readiness:          http://127.0.0.1:{port}/readyz",
                    "  Ctrl-C stops everything.",
                    "",
                ]
            ),
            flush=True,
        )
        stream = EventStream(scenario, seed=11)
        events = asyncio.create_task(stream.run(options.events_per_second, options.duration))
        try:
            return await _report_until_done(scenario, stream, daemon, port, options, stop)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
            await _stop(daemon)
            # The daemon closed its output: the copy ends with its last line.
            await logging


async def _keep_log(output: asyncio.StreamReader, path: Path, echo: bool) -> None:
    """Copy the daemon's output into `path` line by line, and to stdout when `echo`."""
    with path.open("wb") as log:
        while line := await output.readline():
            log.write(line)
            log.flush()
            if echo:
                sys.stdout.write(line.decode(errors="replace"))
                sys.stdout.flush()


async def _report_until_done(
    scenario: Scenario,
    stream: EventStream,
    daemon: asyncio.subprocess.Process,
    port: int,
    options: DemoOptions,
    stop: asyncio.Event,
) -> int:
    started = time.monotonic()
    reached_sync: float | None = None
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session:
        while True:
            exited = asyncio.ensure_future(daemon.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    [exited, stopped],
                    timeout=options.summary_every,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                exited.cancel()
                stopped.cancel()
            if stop.is_set():
                print("stopping the daemon...", flush=True)
                return 0
            if daemon.returncode is not None:
                print(f"the daemon exited with code {daemon.returncode}", flush=True)
                return 1
            elapsed = time.monotonic() - started
            matching, expected = in_sync(scenario)
            if matching == expected and expected and reached_sync is None:
                reached_sync = elapsed
            totals = await scrape(session, metrics_url)
            lag_count = totals.get("stocksync_sync_lag_seconds_count", 0.0)
            lag = (
                f"{totals['stocksync_sync_lag_seconds_sum'] / lag_count:.1f} s"
                if lag_count
                else "-"
            )
            print(
                f"[{elapsed:5.0f} s] in sync: {matching}/{expected}  "
                f"events: {len(stream.applied)}  "
                f"quantities pushed: {totals.get('stocksync_quantities_pushed_total', 0):.0f}  "
                f"cycles: {totals.get('stocksync_poll_cycles_total_success', 0):.0f} ok"
                f"/{totals.get('stocksync_poll_cycles_total_error', 0):.0f} failed  "
                f"mean lag: {lag}",
                flush=True,
            )
            if options.duration is not None and elapsed >= options.duration:
                if reached_sync is None:
                    print("never fully in sync during the demo", flush=True)
                    return 1
                print(f"first fully in sync after {reached_sync:.0f} s", flush=True)
                return 0


async def _stop(daemon: asyncio.subprocess.Process) -> None:
    if daemon.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        daemon.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(daemon.wait(), timeout=15)
    except TimeoutError:
        daemon.kill()
        await daemon.wait()
