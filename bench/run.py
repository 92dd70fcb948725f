"""One benchmark run: every phase in order, turned into the figures of the table."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.daemon_process import DaemonProcess, free_port
from bench.figures import (
    Efficiency,
    efficiency_figures,
    footprint_figures,
    freshness_figures,
    full_sync_figures,
)
from bench.footprint import FootprintResult, measure_footprint, measure_footprint_of
from bench.freshness import measure_freshness, measure_idle
from bench.fullsync import measure_full_sync
from bench.planner import measure_planner_isolated
from bench.profiles import Profile
from bench.report import BenchReport, Machine, echo
from bench.world import World
from daemon.sim.harness import run_simulators


@dataclass(frozen=True)
class Options:
    """How to run, beyond the profile's sizes."""

    seed: int = 7
    profile_dir: Path | None = None  # run each daemon under cProfile, writing its .prof here
    keep_dir: Path | None = None  # keep configs, state and daemon logs here


async def run_bench(profile: Profile, options: Options, argv: list[str]) -> BenchReport:
    """Run every phase of `profile` and return the report."""
    began = time.monotonic()
    report = BenchReport(profile=profile.name, machine=Machine.here(argv))
    with tempfile.TemporaryDirectory(prefix="stocksync-bench-") as tmp:
        folder = options.keep_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        echo(f"[bench] {profile.variants:,} variants x {profile.katana_locations} locations")
        world = World.build(
            variants=profile.variants,
            katana_locations=profile.katana_locations,
            shopify_locations=profile.shopify_locations,
            limits=profile.limits,
            seed=options.seed,
        )
        port = free_port()
        async with run_simulators(world.katana, [world.shop]) as urls:
            config = world.write_config(
                folder / "sync",
                katana_url=urls.katana,
                shopify_url=urls.shopify[0],
                http_port=port,
                poll=profile.poll_interval,
            )
            daemon = DaemonProcess(
                config,
                world.scenario.secrets_env(),
                port,
                folder / "sync" / "daemon.log",
                profile_path=_profile_path(options, "sync"),
            )
            try:
                echo(f"[bench] full sync at {profile.limits.describe()}")
                full = await measure_full_sync(world, daemon, profile.phase_timeout)
                echo(f"[bench] full sync took {full.wall_seconds:.1f} s")
                settled = time.monotonic() + profile.settle_seconds
                footprint = None
                if not profile.reuses_daemon_for_footprint:
                    # While the first daemon settles (it only idles), a second one measures the
                    # footprint: only its memory counts, not its speed.
                    footprint = await _footprint_phase(profile, options, folder)
                await asyncio.sleep(max(0.0, settled - time.monotonic()))
                echo(
                    f"[bench] events for {profile.freshness_seconds:g} s at "
                    f"{profile.events_per_second:g}/s"
                )
                fresh = await measure_freshness(
                    world,
                    events_per_second=profile.events_per_second,
                    seconds=profile.freshness_seconds,
                    poll_interval=profile.poll_interval,
                    drain_timeout=profile.drain_timeout,
                    seed=options.seed,
                )
                echo(f"[bench] idle for {profile.idle_cycles} cycles")
                idle = await measure_idle(
                    world, daemon, cycles=profile.idle_cycles, within=profile.phase_timeout
                )
                efficiency = Efficiency(
                    shopify_requests=world.shop.requests_total,
                    shopify_throttled=world.shop.throttled_total,
                    katana_requests=world.katana.requests_total,
                    katana_throttled=world.katana.throttled_total,
                )
                if footprint is None:
                    footprint = await measure_footprint_of(world, daemon, None)
            finally:
                await daemon.stop()
    echo(f"[bench] planner over {profile.planner_pairs:,} pairs")
    planner, planner_runs = await measure_planner_isolated(profile.planner_pairs, seed=options.seed)
    full_sync_figures(report, profile, full)
    freshness_figures(report, fresh)
    efficiency_figures(report, full, idle, efficiency)
    footprint_figures(report, footprint, planner, planner_runs)
    report.elapsed_seconds = time.monotonic() - began
    return report


async def _footprint_phase(profile: Profile, options: Options, folder: Path) -> FootprintResult:
    echo(
        f"[bench] footprint: {profile.footprint_variants:,} variants x "
        f"{profile.katana_locations} locations at {profile.footprint_limits.describe()}"
    )
    world = World.build(
        variants=profile.footprint_variants,
        katana_locations=profile.katana_locations,
        shopify_locations=profile.shopify_locations,
        limits=profile.footprint_limits,
        seed=options.seed,
    )
    return await measure_footprint(
        world,
        folder / "footprint",
        poll_interval=profile.footprint_poll_interval,
        within=profile.phase_timeout,
        profile_path=_profile_path(options, "footprint"),
    )


def _profile_path(options: Options, name: str) -> Path | None:
    if options.profile_dir is None:
        return None
    options.profile_dir.mkdir(parents=True, exist_ok=True)
    return options.profile_dir / f"daemon-{name}.prof"
