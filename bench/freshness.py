"""Figures 2 and 3: lag under a steady stream of business events, then the cost of idling."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.daemon_process import BenchError, DaemonProcess
from bench.lag import LagReport, LagTracker
from bench.world import World
from daemon.domain.models import LevelKey
from daemon.sim.scenario import EventStream

DRAIN_CHECK_EVERY = 0.25


@dataclass(frozen=True)
class FreshnessResult:
    """Lags of a steady event stream, and how the stream was sized."""

    events: int
    seconds: float
    events_per_second: float
    poll_interval: float
    lags: LagReport
    drained: bool  # Shopify matched Katana's formula for every touched level in the end


@dataclass(frozen=True)
class IdleResult:
    """What whole daemon cycles cost while nothing changed."""

    cycles: int
    katana_requests: int
    shopify_requests: int
    katana_by_path: Mapping[str, int]
    daemon_cpu_seconds: float

    @property
    def katana_per_cycle(self) -> float:
        """Katana requests per idle cycle."""
        return self.katana_requests / self.cycles

    @property
    def cpu_per_cycle(self) -> float:
        """Daemon CPU seconds per idle cycle."""
        return self.daemon_cpu_seconds / self.cycles


class LevelIndex:
    """Which Shopify levels each Katana variant feeds, and Katana's formula for them now."""

    def __init__(self, world: World) -> None:
        self._world = world
        scenario = world.scenario
        shop = scenario.connection()
        katana_ids = {name: scenario.katana.location_id(name) for name in shop.locations}
        self._levels: dict[int, list[tuple[LevelKey, int]]] = {}
        for katana_id, target in scenario.feeds(shop.name):
            if not target.tracked:
                continue
            for name, shopify_locations in shop.locations.items():
                for location in shopify_locations:
                    if shop.sim.available(target.inventory_item_id, location) is not None:
                        key = (target.inventory_item_id, location)
                        self._levels.setdefault(katana_id, []).append((key, katana_ids[name]))

    def formula(self, katana_ids: Iterable[int]) -> dict[LevelKey, int]:
        """Katana's formula now for every level these variants feed."""
        desired = self._world.scenario.desired_quantity
        return {
            key: desired(katana_id, location)
            for katana_id in katana_ids
            for key, location in self._levels.get(katana_id, ())
        }


async def measure_freshness(
    world: World,
    *,
    events_per_second: float,
    seconds: float,
    poll_interval: float,
    drain_timeout: float,
    seed: int,
) -> FreshnessResult:
    """Apply a steady event stream, wait for Shopify to catch up, and work out each lag."""
    index = LevelIndex(world)
    tracker = LagTracker.starting_from(world.expected_levels())
    stream = EventStream(world.scenario, seed=seed)
    count = max(1, round(seconds * events_per_second))
    started = time.monotonic()
    for n in range(count):
        delay = started + n / events_per_second - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # No await between the event and the formula: the daemon cannot read in between.
        event = stream.step()
        levels = index.formula(event.affected_variant_ids)
        tracker.record(event.at, levels, {key: world.shop.available(*key) for key in levels})
    drained = await _drain(world, tracker, drain_timeout)
    return FreshnessResult(
        events=count,
        seconds=seconds,
        events_per_second=events_per_second,
        poll_interval=poll_interval,
        lags=tracker.report(world.shop.changes),
        drained=drained,
    )


async def _drain(world: World, tracker: LagTracker, within: float) -> bool:
    """Wait until Shopify shows Katana's formula for every level an event changed."""
    deadline = time.monotonic() + within
    touched = list(tracker.history)
    shop = world.shop
    while True:
        if all(shop.available(*key) == tracker.current[key] for key in touched):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(DRAIN_CHECK_EVERY)


async def measure_idle(
    world: World, daemon: DaemonProcess, *, cycles: int, within: float
) -> IdleResult:
    """Count requests and CPU over `cycles` whole cycles in which nothing changed."""
    if cycles < 1:
        raise ValueError("cycles must be at least 1")
    # Start on a cycle boundary so that exactly `cycles` cycles fall inside the window.
    first = await daemon.total_cycles() + 1
    await daemon.wait_cycles(first, within)
    katana_before, shop_before = world.katana.requests_total, world.shop.requests_total
    paths_before = Counter(world.katana.requests_by_path)
    cpu_before = process_cpu_seconds(daemon.pid)
    await daemon.wait_cycles(first + cycles, within)
    paths = Counter(world.katana.requests_by_path)
    paths.subtract(paths_before)
    return IdleResult(
        cycles=cycles,
        katana_requests=world.katana.requests_total - katana_before,
        shopify_requests=world.shop.requests_total - shop_before,
        katana_by_path={p: n for p, n in sorted(paths.items()) if n},
        daemon_cpu_seconds=process_cpu_seconds(daemon.pid) - cpu_before,
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/stat: {exc}") from exc
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    # plain: utime and stime are the 12th and 13th of them.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
