"""Turning the phases' results into the table's figures and notes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.floors import best_quantities_per_call
from bench.footprint import STEADY_CYCLES, FootprintResult
from bench.freshness import FreshnessResult, IdleResult
from bench.fullsync import FullSyncResult
from bench.planner import PlannerResult
from bench.profiles import Profile
from bench.report import BenchReport, Figure
from bench.world import CATALOGUE_DELTA_LISTS
from daemon.katana.models import DELTA_SOURCES

MIB = 1024 * 1024
MB = 1000 * 1000


@dataclass(frozen=True)
class Efficiency:
    """Throttling seen over the whole life of the figure-1 daemon."""

    shopify_requests: int
    shopify_throttled: int
    katana_requests: int
    katana_throttled: int


def full_sync_figures(report: BenchReport, profile: Profile, full: FullSyncResult) -> None:
    """Figure 1 and its request/point counts, with the evidence as notes."""
    floor = full.floor
    matching, expected = full.in_sync
    ratio = full.wall_seconds / floor.seconds if floor.seconds else None
    report.add(
        Figure(
            key="full_sync",
            value=full.wall_seconds,
            unit="s",
            floor=floor.seconds,
            target="≤ 1.2 × floor",
            met=None if ratio is None else ratio <= 1.2 and matching == expected,
            bound=f"{floor.bound_by} floor (Katana {floor.katana_seconds:.0f} s, Shopify "
            f"{floor.shopify_seconds:.0f} s); {full.katana_during_shopify_catalogue} Katana "
            "requests overlapped the Shopify catalogue read",
        )
    )
    report.add(
        Figure(
            key="katana_requests_sync",
            value=full.katana_requests,
            unit="count",
            floor=full.katana_requests_min,
            target="—",
            met=None,
            bound="pages of 250 rows + one page per polled list",
        )
    )
    report.add(
        Figure(
            key="shopify_points_sync",
            value=full.shopify_points,
            unit="points",
            floor=full.shopify_points_min,
            target="—",
            met=None,
            bound="catalogue read + ⌈pairs/250⌉ × 10",
        )
    )
    report.notes += [
        f"- Sizes: {profile.variants:,} Katana variants × {profile.katana_locations} Katana "
        f"locations (one unmapped) → {profile.shopify_locations} Shopify locations; "
        f"{full.pairs:,} Shopify levels in sync after the full sync: {matching:,}/{expected:,}.",
        f"- Limits (figures 1–3): {profile.limits.describe()}; the daemon's "
        f"requests_per_minute = {profile.limits.katana_requests_per_minute}.",
        f"- Full-sync pushes: {len(full.set_quantities_sizes)} inventorySetQuantities calls "
        f"carried {sum(full.set_quantities_sizes):,} quantities, {full.applied_levels:,} applied "
        "(a call with one failing element applies none and is re-sent without it).",
        f"- Full-sync floor: Katana {full.katana_requests_min} requests → "
        f"{floor.katana_seconds:.0f} s; Shopify {full.shopify_points_min:,.0f} points → "
        f"{floor.shopify_seconds:.1f} s; floor = max (the two budgets overlap perfectly); "
        f"serial sum {floor.serial_seconds:.1f} s.",
        "- Full-sync timeline (seconds after the daemon was spawned):",
        *(
            f"  - {p.name}: {p.requests} requests, {p.first:.1f}–{p.last:.1f} s"
            for p in full.phases
        ),
    ]


def freshness_figures(report: BenchReport, fresh: FreshnessResult) -> None:
    """Figure 2: lag percentiles against the polling floor."""
    lags, poll = fresh.lags, fresh.poll_interval
    bound = f"poll interval {poll:g} s + cycle time"
    p99 = lags.percentile(99)
    for key, value, floor in (
        ("lag_p50", lags.percentile(50), poll / 2),
        ("lag_p99", p99, 0.99 * poll),
        ("lag_max", max(lags.lags) if lags.lags else None, poll),
    ):
        is_p99 = key == "lag_p99"
        report.add(
            Figure(
                key=key,
                value=value,
                unit="s",
                floor=floor,
                target=f"≤ {poll + 2:g} s" if is_p99 else "—",
                met=(value is not None and value <= poll + 2 and lags.unsynced == 0)
                if is_p99
                else None,
                bound=bound,
            )
        )
    report.notes.append(
        f"- Freshness: {fresh.events} events at {fresh.events_per_second:g}/s for "
        f"{fresh.seconds:g} s; {len(lags.lags)} changed a Shopify level and were measured, "
        f"{lags.suppressed} changed none (diff-suppressed, excluded), {lags.shown} changed only "
        f"levels Shopify already showed (storefront orders, excluded), {lags.unsynced} never "
        f"caught up; Shopify {'matched' if fresh.drained else 'did NOT match'} Katana's formula "
        "on every touched level at the end. Lag floor = the polling floor (an event waits on "
        "average half a poll interval)."
    )


def efficiency_figures(
    report: BenchReport, full: FullSyncResult, idle: IdleResult, eff: Efficiency
) -> None:
    """Figure 3: batch sizes, idle cost and throttling."""
    mean = full.mean_quantities_per_call
    report.add(
        Figure(
            key="quantities_per_call",
            value=mean,
            unit="count",
            floor=best_quantities_per_call(full.pairs),
            target="mean ≥ 240",
            met=mean >= 240,
            bound="250 per call (Shopify's maximum) and batch tails per location",
        )
    )
    report.add(
        Figure(
            key="shopify_calls_idle",
            value=idle.shopify_requests,
            unit="count",
            floor=0,
            target="0",
            met=idle.shopify_requests == 0,
            bound=f"over {idle.cycles} idle cycles",
        )
    )
    lists = len(DELTA_SOURCES) + len(CATALOGUE_DELTA_LISTS)
    report.add(
        Figure(
            key="katana_requests_idle",
            value=idle.katana_per_cycle,
            unit="count",
            floor=lists,
            target="—",
            met=None,
            bound=f"one page per polled list ({lists}); daemon CPU "
            f"{idle.cpu_per_cycle:.2f} s per idle cycle",
        )
    )
    share = 100 * eff.shopify_throttled / eff.shopify_requests if eff.shopify_requests else 0.0
    report.add(
        Figure(
            key="throttled_share",
            value=share,
            unit="%",
            floor=0,
            target="< 1 %",
            met=share < 1,
            bound=f"{eff.shopify_throttled} of {eff.shopify_requests} calls (daemon lifetime)",
        )
    )
    report.add(
        Figure(
            key="katana_429",
            value=eff.katana_throttled,
            unit="count",
            floor=0,
            target="0",
            met=eff.katana_throttled == 0,
            bound=f"of {eff.katana_requests} requests (daemon lifetime)",
        )
    )
    paths = ", ".join(f"{p} {n}" for p, n in idle.katana_by_path.items())
    report.notes.append(
        f"- Idle: {idle.cycles} cycles, Katana requests {idle.katana_requests} ({paths}); "
        f"Shopify calls {idle.shopify_requests}; daemon CPU {idle.daemon_cpu_seconds:.2f} s."
    )


def footprint_figures(
    report: BenchReport,
    footprint: FootprintResult,
    planner: PlannerResult,
    planner_runs: Sequence[float],
) -> None:
    """Figure 4: peak RSS and planner CPU."""
    peak = footprint.peak_rss_bytes / MIB
    # The target is in MB (10^6 bytes): 150 MB is 143.05 MiB.
    peak_mb = footprint.peak_rss_bytes / MB
    report.add(
        Figure(
            key="peak_rss",
            value=peak_mb,
            unit="MB",
            floor=None,
            target="≤ 150 MB",
            met=peak_mb <= 150 if footprint.variants >= 100_000 else None,
            bound=f"{footprint.variants:,} variants × {footprint.locations} locations, "
            f"{footprint.levels:,} levels ({peak:.1f} MiB)",
        )
    )
    report.add(
        Figure(
            key="planner_cpu",
            value=planner.total_seconds,
            unit="s",
            floor=None,
            target="≤ 1 s",
            met=planner.total_seconds <= 1 if planner.pairs >= 300_000 else None,
            bound=f"desired_levels {planner.desired_seconds:.2f} s, plan_pushes "
            f"{planner.plan_seconds:.2f} s, batches {planner.batch_seconds:.2f} s "
            f"(fastest of {len(planner_runs)} runs)",
        )
    )
    where = (
        "the figure-1 daemon after its freshness and idle phases"
        if footprint.full_sync_seconds is None
        else f"a daemon of its own (full sync {footprint.full_sync_seconds:.1f} s, CPU-bound) "
        f"after {STEADY_CYCLES} more cycles"
    )
    report.notes += [
        f"- Footprint: measured on {where}; RSS then {footprint.rss_bytes / MIB:.1f} MiB, peak "
        f"{peak:.1f} MiB (VmHWM).",
        f"- Planner: {planner.pairs:,} pairs from cold state → {planner.pushes:,} pushes in "
        f"{planner.batches} batches; CPU time by time.process_time() in a fresh interpreter, "
        f"fastest of {len(planner_runs)} ("
        + ", ".join(f"{seconds:.2f} s" for seconds in planner_runs)
        + ").",
    ]
