"""`stocksync demo`: the real daemon against the built-in simulated Katana and Shopify.

Starts both simulators on loopback with a seeded catalogue, writes a config into a temporary
folder, runs `stocksync run` on it as a child process (exactly as systemd would), feeds a live
stream of business events, and prints a summary line every few seconds: how many Shopify levels
match Katana's formula, events applied, quantities pushed and the mean sync lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.scenario import EventStream, Scenario, build_catalogue
from daemon.sim.shopify import ShopifySim

# The demo polls every 5 s; Katana's real budget (60/min) would stretch that to ~11 s, so the
# simulated account (and the config) allow 150 requests/min. Everything else is as in production.
DEMO_REQUESTS_PER_MINUTE = 150


@dataclass(frozen=True)
class DemoOptions:
    """What `stocksync demo` was asked for."""

    variants: int = 200
    events_per_second: float = 1.0
    poll_interval: float = 5.0
    port: int = 0  # 0 = a free port
    duration: float | None = None  # None = until Ctrl-C
    summary_every: float = 5.0


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


async def run_demo(options: DemoOptions) -> int:
    """Run the demo until Ctrl-C (or `duration`); 0 when every level was in sync at some point."""
    katana = KatanaSim(requests_per_minute=DEMO_REQUESTS_PER_MINUTE)
    shop = ShopifySim()
    print(f"building a simulated catalogue of {options.variants} Katana variants...", flush=True)
    scenario = build_catalogue(katana, shop, variants=options.variants, seed=7)
    port = options.port or _free_port()
    folder = Path(tempfile.mkdtemp(prefix="stocksync-demo-"))
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
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            "-c",
            str(config),
            env={**os.environ, **scenario.secrets_env()},
            # Its own process group: Ctrl-C reaches the demo, which then stops the daemon.
            start_new_session=True,
        )
        print(
            "\n".join(
                [
                    "",
                    f"  simulated Katana:   {urls.katana}",
                    f"  simulated Shopify:  {urls.shopify[0]}/admin/api/2026-10/graphql.json",
                    f"  daemon config:      {config}",
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
            return await _report_until_done(scenario, stream, daemon, port, options)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
            await _stop(daemon)


async def _report_until_done(
    scenario: Scenario,
    stream: EventStream,
    daemon: asyncio.subprocess.Process,
    port: int,
    options: DemoOptions,
) -> int:
    started = time.monotonic()
    reached_sync: float | None = None
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await asyncio.wait_for(daemon.wait(), timeout=options.summary_every)
            except TimeoutError:
                pass
            else:
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
