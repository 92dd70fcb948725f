"""The status page's chart: pushes and median lag over the last hours, as inline SVG."""

from __future__ import annotations

from datetime import UTC, timedelta

from daemon.status.data import (
    ActivityStep,
)
from daemon.status.markup import duration, esc


def chart(name: str, steps: list[ActivityStep]) -> str:
    """Pushes (bars) and median lag (a step line) over the last hours, as inline SVG.

    The SVG stretches to the card's width at a fixed height (preserveAspectRatio="none"), so
    its text lives outside it, in HTML, where it keeps its size on any screen.
    """
    width, height = 360.0, 100.0
    if not steps:
        return ""
    slot = width / len(steps)
    most = max(s.pushes for s in steps)
    lags = [s.lag_p50_seconds for s in steps if s.lag_p50_seconds is not None]
    worst = max(lags) if lags else None
    shapes: list[str] = []
    run: list[str] = []  # the current unbroken stretch of the lag line
    runs: list[list[str]] = [run]
    for n, step in enumerate(steps):
        x = n * slot
        start = step.start.astimezone(UTC)
        finish = start + timedelta(seconds=step.seconds)
        tip = esc(
            f"{start:%H:%M}–{finish:%H:%M} UTC: {step.pushes} pushes, "
            f"lag p50 {duration(step.lag_p50_seconds)}"
        )
        h = height * step.pushes / most if most else 0.0
        if step.pushes:
            h = max(h, 1.0)
        # A bar per step, its whole height a hover target with the figures.
        shapes.append(
            f'<g><rect class="hit" x="{x:.1f}" y="0" width="{slot:.1f}" height="{height:g}"/>'
            f'<rect class="bar" x="{x + 0.5:.1f}" y="{height - h:.1f}" '
            f'width="{max(0.5, slot - 1):.1f}" height="{h:.1f}"/><title>{tip}</title></g>'
        )
        if step.lag_p50_seconds is None or not worst:
            if run:
                run = []
                runs.append(run)
            continue
        y = height - (height - 2) * step.lag_p50_seconds / worst
        run.extend((f"{x:.1f},{y:.1f}", f"{x + slot:.1f},{y:.1f}"))
    lines = "".join(f'<polyline class="lag" points="{" ".join(r)}"/>' for r in runs if r)
    hours = len(steps) * steps[0].seconds / 3600
    label = (
        f"{name}: {sum(s.pushes for s in steps):,} pushes in the last {hours:g} hours; "
        f"highest median lag {duration(worst)}"
    )
    return (
        f'<figure class="chart"><figcaption><span class="t-push">Pushes per '
        f"{steps[0].seconds / 60:g} min (max {most:,})</span>"
        f'<span class="t-lag">Median lag (max {duration(worst)})</span></figcaption>'
        f'<svg viewBox="0 0 {width:g} {height:g}" preserveAspectRatio="none" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
        f'<line class="axis" x1="0" y1="{height:g}" x2="{width:g}" y2="{height:g}"/>'
        f"{''.join(shapes)}{lines}</svg>"
        f'<div class="ticks"><span>−{hours:g} h</span><span>−{hours / 2:g} h</span>'
        "<span>now</span></div></figure>"
    )
