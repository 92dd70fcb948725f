"""`python -m daemon.sim`: serve a seeded simulated Katana and Shopify until Ctrl-C.

With --config-dir it also writes a stocksync config (and the env file with the simulators'
keys) so that `stocksync run -c DIR/stocksync.toml` syncs against them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.scenario import EventStream, build_catalogue
from daemon.sim.shopify import ShopifySim


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of `python -m daemon.sim`."""
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim",
        description="Serve a simulated Katana and Shopify with a seeded catalogue.",
    )
    parser.add_argument("--variants", type=int, default=200, help="Katana variants (>= 20)")
    parser.add_argument("--katana-locations", type=int, default=2)
    parser.add_argument("--shopify-locations", type=int, default=2)
    parser.add_argument("--shops", type=int, default=1, help="Shopify shops (one connection each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--katana-port", type=int, default=0, help="0 = any free port")
    parser.add_argument(
        "--shopify-port", type=int, action="append", help="one per shop; 0 = any free port"
    )
    parser.add_argument("--requests-per-minute", type=int, default=60, help="Katana's budget")
    parser.add_argument(
        "--events-per-second", type=float, default=0.0, help="live business events (0 = none)"
    )
    parser.add_argument(
        "--config-dir", type=Path, help="write stocksync.toml, variant maps and stocksync.env here"
    )
    parser.add_argument("--daemon-port", type=int, default=9464, help="the config's http_listen")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="the config's poll")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Build the scenario, serve it, and wait for SIGINT or SIGTERM."""
    katana = KatanaSim(requests_per_minute=args.requests_per_minute)
    shops = [ShopifySim(shop=f"store-{n}.myshopify.com") for n in range(1, args.shops + 1)]
    scenario = build_catalogue(
        katana,
        shops,
        variants=args.variants,
        katana_locations=args.katana_locations,
        shopify_locations=args.shopify_locations,
        seed=args.seed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with run_simulators(
        katana, shops, host=args.host, katana_port=args.katana_port, shopify_ports=args.shopify_port
    ) as urls:
        print(f"Katana   {urls.katana}")
        for connection, url in zip(scenario.connections, urls.shopify, strict=True):
            print(f"Shopify  {url}  ({connection.name})")
        if args.config_dir is not None:
            config = scenario.write_config(
                args.config_dir,
                katana_url=urls.katana,
                shopify_urls=urls.shopify,
                state_path=args.config_dir / "state.db",
                http_port=args.daemon_port,
                poll_interval_seconds=args.poll_interval,
            )
            env_file = args.config_dir / "stocksync.env"
            print(f"Config   {config}")
            print(f"Secrets  {env_file}  (set -a; . {env_file}; set +a)")
        events = None
        if args.events_per_second > 0:
            stream = EventStream(scenario, seed=args.seed)
            events = asyncio.create_task(stream.run(args.events_per_second, None))
        print("Serving; Ctrl-C stops.", flush=True)
        await stop.wait()
        if events is not None:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 0 after a clean stop, 2 for bad arguments."""
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except ValueError as error:
        print(f"python -m daemon.sim: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
