"""Figure 4a: the daemon's peak RSS with a large catalogue in state, at steady state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.daemon_process import DaemonProcess, free_port
from bench.world import World
from daemon.sim.harness import run_simulators

# Cycles after the full sync before the peak is read: the steady state includes idle cycles.
STEADY_CYCLES = 2


@dataclass(frozen=True)
class FootprintResult:
    """Peak and current RSS of a daemon holding `variants` x `locations` in state."""

    variants: int
    locations: int
    levels: int  # Shopify levels in sync
    peak_rss_bytes: int
    rss_bytes: int
    full_sync_seconds: float | None  # None when measured on the figure-1 daemon


async def measure_footprint_of(
    world: World, daemon: DaemonProcess, full_sync_seconds: float | None
) -> FootprintResult:
    """Read the peak RSS of a daemon already at steady state on `world`."""
    return FootprintResult(
        variants=len(world.katana.inventory_variant_ids()),
        locations=world.katana_locations,
        levels=len(world.expected_levels()),
        peak_rss_bytes=daemon.peak_rss_bytes(),
        rss_bytes=daemon.rss_bytes(),
        full_sync_seconds=full_sync_seconds,
    )


async def measure_footprint(
    world: World,
    folder: Path,
    *,
    poll_interval: float,
    within: float,
    profile_path: Path | None = None,
) -> FootprintResult:
    """Run a daemon of its own on `world` to steady state and read its peak RSS."""
    port = free_port()
    async with run_simulators(world.katana, [world.shop]) as urls:
        config = world.write_config(
            folder,
            katana_url=urls.katana,
            shopify_url=urls.shopify[0],
            http_port=port,
            poll=poll_interval,
        )
        daemon = DaemonProcess(
            config,
            world.scenario.secrets_env(),
            port,
            folder / "daemon.log",
            profile_path=profile_path,
        )
        async with daemon:
            started = daemon.started_at
            synced = await daemon.wait_cycles(1, within)
            await daemon.wait_cycles(1 + STEADY_CYCLES, within)
            return await measure_footprint_of(world, daemon, synced - started)
