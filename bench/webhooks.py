"""Issue 17: freshness with webhooks at Katana's real limit (60 requests/min, Shopify 100 pts/s).

`python -m bench.webhooks [--variants N] [--seconds S]`: one world, the real daemon with webhooks
on (deliveries from the simulated Katana), and these phases in turn:

- idle: Katana requests per minute while nothing happens;
- steady streams at 0.2 and 1 event/s (sales orders, adjustments, transfers, MO completions):
  each event's lag (Katana change → Shopify shows every level it moved), p50/p99;
- a burst of 50 events in 1 s: time until every level is applied;
- 20 % of deliveries dropped: the lag of every change, the lost ones found by the safety net.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bench.daemon_process import DaemonProcess, free_port
from bench.freshness import LevelIndex, _drain
from bench.lag import LagReport, LagTracker
from bench.profiles import Limits
from bench.world import World
from daemon.sim.harness import run_simulators
from daemon.sim.scenario import EventStream

TOKEN = "00112233aabbccdd"
MIX: Mapping[str, float] = {
    "sales_order_created": 30,
    "sales_order_delivered": 10,
    "stock_adjusted": 25,
    "stock_transferred": 15,
    "manufacturing_order_created": 5,
    "manufacturing_order_completed": 15,
}


def echo(text: str) -> None:
    print(text, flush=True)


async def stream(
    world: World, rate: float, count: int, seed: int, drain_timeout: float
) -> tuple[LagReport, bool]:
    """`count` events at `rate` per second; their lags once Shopify caught up."""
    index = LevelIndex(world)
    tracker = LagTracker.starting_from(world.expected_levels())
    events = EventStream(world.scenario, seed=seed, mix=MIX)
    started = time.monotonic()
    for n in range(count):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        event = events.step()
        levels = index.formula(event.affected_variant_ids)
        tracker.record(event.at, levels, {key: world.shop.available(*key) for key in levels})
    drained = await _drain(world, tracker, drain_timeout)
    return tracker.report(world.shop.changes), drained


def lags(name: str, report: LagReport, drained: bool) -> str:
    p50, p99 = report.percentile(50), report.percentile(99)
    worst = max(report.lags) if report.lags else None
    return (
        f"{name}: {len(report.lags)} events timed, p50 {_s(p50)}, p99 {_s(p99)}, max {_s(worst)}"
        f"{'' if drained else ', NOT drained'} (unsynced {report.unsynced})"
    )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


async def main(variants: int, seconds: float, safety_poll: float, seed: int) -> None:
    limits = Limits(scale=1)
    world = World.build(
        variants=variants, katana_locations=2, shopify_locations=2, limits=limits, seed=seed
    )
    world.katana.webhooks.retry_delays = (30.0, 120.0, 900.0)
    with tempfile.TemporaryDirectory(prefix="stocksync-bench-hooks-") as tmp:
        folder = Path(tmp)
        port = free_port()
        async with run_simulators(world.katana, [world.shop]) as urls:
            config = world.write_config(
                folder, katana_url=urls.katana, shopify_url=urls.shopify[0], http_port=port, poll=30
            )
            text = config.read_text(encoding="utf-8")
            hooks = (
                '[webhooks]\nenabled = true\ntoken_env = "KATANA_WEBHOOK_TOKEN"\n'
                f"safety_poll_seconds = {safety_poll:g}\n\n"
            )
            config.write_text(text.replace("[[connections]]", hooks + "[[connections]]", 1))
            env = {**world.scenario.secrets_env(), "KATANA_WEBHOOK_TOKEN": TOKEN}
            daemon = DaemonProcess(config, env, port, folder / "daemon.log")
            try:
                echo(f"[hooks] {variants:,} variants; {limits.describe()}; full sync")
                await daemon.start()
                await daemon.wait_cycles(2, within=3600)
                world.katana.webhooks.register(
                    f"http://127.0.0.1:{port}/webhooks/katana", token=TOKEN
                )
                await asyncio.sleep(5)
                before = world.katana.requests_total
                await asyncio.sleep(seconds)
                idle = (world.katana.requests_total - before) * 60 / seconds
                echo(f"idle with webhooks on: {idle:.1f} Katana requests/min over {seconds:g} s")
                for rate in (0.2, 1.0):
                    report, drained = await stream(
                        world, rate, max(10, round(seconds * rate)), seed, 120
                    )
                    echo(lags(f"{rate:g} events/s", report, drained))
                began = time.monotonic()
                report, drained = await stream(world, 50.0, 50, seed + 1, 120)
                echo(
                    lags("burst 50 in 1 s", report, drained)
                    + f"; all applied {time.monotonic() - began:.1f} s after the first"
                )
                world.katana.webhooks.faults.drop = 0.2
                report, drained = await stream(
                    world, 0.2, max(10, round(seconds * 0.2)), seed + 2, safety_poll + 120
                )
                echo(lags("0.2 events/s, 20 % of deliveries dropped", report, drained))
                dropped = sum(1 for a in world.katana.webhooks.attempts if a.dropped)
                echo(f"deliveries dropped: {dropped}")
            finally:
                await daemon.stop()


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--variants", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--safety-poll", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.variants, args.seconds, args.safety_poll, args.seed))


if __name__ == "__main__":
    run()
