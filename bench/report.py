"""The table: each figure, its floor, the ratio, the target, and what bounds it."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Every row the benchmark prints, in order (the smoke test checks each one appears).
FIGURE_LABELS: dict[str, str] = {
    "full_sync": "1 full initial sync (cold state), wall time",
    "katana_requests_sync": "1a Katana requests in the full sync",
    "shopify_points_sync": "1b Shopify cost points in the full sync",
    "lag_p50": "2 freshness lag p50",
    "lag_p99": "2 freshness lag p99",
    "lag_max": "2 freshness lag max",
    "quantities_per_call": "3 quantities per inventorySetQuantities (bulk)",
    "shopify_calls_idle": "3 Shopify calls when nothing changed",
    "katana_requests_idle": "3 Katana requests per idle cycle",
    "throttled_share": "3 THROTTLED share of Shopify calls",
    "katana_429": "3 Katana 429 responses",
    "peak_rss": "4 daemon peak RSS, steady state",
    "planner_cpu": "4 pure planner CPU time",
}


@dataclass(frozen=True)
class Figure:
    """One measured figure against its floor (or best possible value) and its target."""

    key: str
    value: float | None  # None when it could not be measured (the reason is in `bound`)
    unit: str  # "s", "ms", "MB", "%", "count"
    floor: float | None  # the limit-set floor (lowest possible), or for "per call" the best
    target: str
    met: bool | None
    bound: str  # what bounds the figure: which limit, or which part of our code

    @property
    def label(self) -> str:
        """The row's name in the table."""
        return FIGURE_LABELS[self.key]

    @property
    def ratio(self) -> float | None:
        """measured / floor, when both are known and the floor is not zero."""
        if self.value is None or self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor


@dataclass(frozen=True)
class Machine:
    """Where and when the benchmark ran."""

    cpus: int
    cpu_model: str
    python: str
    date: str
    command: str
    load_average: tuple[float, float, float]

    @classmethod
    def here(cls, argv: Sequence[str]) -> Machine:
        """This machine, now."""
        return cls(
            cpus=os.cpu_count() or 0,
            cpu_model=_cpu_model(),
            python=platform.python_version(),
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            command=shlex.join(argv),
            load_average=os.getloadavg(),
        )


@dataclass
class BenchReport:
    """Everything one run produced: the figures and the evidence behind them."""

    profile: str
    machine: Machine
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def add(self, figure: Figure) -> None:
        """Append a figure (its key must be one of FIGURE_LABELS)."""
        if figure.key not in FIGURE_LABELS:
            raise KeyError(f"unknown figure {figure.key!r}")
        self.figures.append(figure)

    def save(self, path: Path) -> None:
        """Write the run as JSON (a later run can show it as its "before" column)."""
        payload = {
            "profile": self.profile,
            "machine": asdict(self.machine),
            "figures": [asdict(f) for f in self.figures],
            "notes": self.notes,
            "elapsed_seconds": self.elapsed_seconds,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def load_baseline(path: Path) -> dict[str, float | None]:
    """The figures of a run saved with --save, by key."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    return {f["key"]: f["value"] for f in payload["figures"]}


def render(report: BenchReport, baseline: Mapping[str, float | None] | None = None) -> str:
    """The report as Markdown: a header, the table, then the notes."""
    m = report.machine
    lines = [
        f"stocksync benchmark ({report.profile}) — {m.date}",
        f"machine: {m.cpus} CPUs, {m.cpu_model}, Python {m.python}, "
        f"load average at start {m.load_average[0]:.2f}",
        f"command: {m.command}",
        "",
    ]
    header = ["figure", "measured", "floor", "ratio", "target", "met", "bounded by"]
    if baseline is not None:
        header.insert(1, "before")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for f in report.figures:
        cells = [
            f.label,
            fmt(f.value, f.unit),
            fmt(f.floor, f.unit),
            "—" if f.ratio is None else f"{f.ratio:.2f}",
            f.target,
            {True: "yes", False: "**NO**", None: "—"}[f.met],
            f.bound,
        ]
        if baseline is not None:
            cells.insert(1, fmt(baseline.get(f.key), f.unit))
        lines.append("| " + " | ".join(cells) + " |")
    if report.notes:
        lines += ["", *report.notes]
    lines += ["", f"benchmark wall time: {report.elapsed_seconds:.0f} s"]
    return "\n".join(lines)


def fmt(value: float | None, unit: str) -> str:
    """A figure's value with its unit, to a sensible precision."""
    if value is None:
        return "—"
    if unit == "count":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "s":
        return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "points":
        return f"{value:,.0f} pts"
    return f"{value:g} {unit}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def echo(text: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(text, file=sys.stderr, flush=True)
