"""Command line: `python -m bench [--quick | --smoke] [--save F] [--baseline F] ...`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from bench.daemon_process import BenchError
from bench.profiles import FULL, MAX_CONFIG_REQUESTS_PER_MINUTE, QUICK, SMOKE, Limits
from bench.report import load_baseline, render
from bench.run import Options, run_bench


def build_parser() -> argparse.ArgumentParser:
    """The bench's options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure stocksync against the floor the APIs' rate limits set.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="CI-sized run: 10,000 variants, under 5 minutes"
    )
    size.add_argument(
        "--smoke", action="store_true", help="tiny run for the test suite (figures meaningless)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        metavar="X",
        help="rate limits of figures 1-3 as a multiple of the real ones (1 = Katana 60/min, "
        "Shopify 100 points/s); default: the profile's",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        metavar="S",
        help="the daemon's poll interval for figures 1-3; default: the profile's (at --scale 1 "
        "Katana's 60 requests/min sustain about one 11-request cycle per 11 s)",
    )
    parser.add_argument("--seed", type=int, default=7, help="catalogue and event seed")
    parser.add_argument("--save", type=Path, metavar="FILE", help="also write the run as JSON")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="a run saved with --save: shown as a 'before' column",
    )
    parser.add_argument(
        "--profile-daemon",
        type=Path,
        metavar="DIR",
        help="run each daemon under cProfile, writing DIR/daemon-<phase>.prof",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep configs, state and daemon logs in DIR"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table; 0 when it ran (missed targets are in the table)."""
    args = build_parser().parse_args(argv)
    profile = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.scale is not None:
        limits = Limits(scale=args.scale)
        if not 0 < limits.katana_requests_per_minute <= MAX_CONFIG_REQUESTS_PER_MINUTE:
            print(f"--scale {args.scale:g}: Katana's budget is out of range", file=sys.stderr)
            return 2
        # Slower limits stretch every rate-bound phase in proportion.
        stretch = max(1.0, profile.limits.scale / args.scale)
        profile = replace(
            profile,
            limits=limits,
            phase_timeout=profile.phase_timeout * stretch,
            drain_timeout=profile.drain_timeout * stretch,
        )
    if args.poll_interval is not None:
        if args.poll_interval <= 0:
            print("--poll-interval must be above 0", file=sys.stderr)
            return 2
        profile = replace(profile, poll_interval=args.poll_interval)
    baseline = load_baseline(args.baseline) if args.baseline else None
    options = Options(seed=args.seed, profile_dir=args.profile_daemon, keep_dir=args.keep)
    command = ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]
    try:
        report = asyncio.run(run_bench(profile, options, command))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render(report, baseline), flush=True)
    if args.save:
        report.save(args.save)
    return 0
