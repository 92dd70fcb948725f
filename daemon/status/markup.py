"""HTML building blocks shared by the status page's parts: escaping, times, durations, SKU links
and Shopify ids.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import urlencode


def esc(value: object) -> str:
    """Text or an attribute value, escaped."""
    return html.escape(str(value), quote=True)


def iso(at: datetime) -> str:
    """An ISO 8601 UTC timestamp (the `datetime` attribute of <time>)."""
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def clock(at: datetime | None) -> str:
    """A <time> element reading "2026-11-27 12:03:04 UTC" (or a dash)."""
    if at is None:
        return '<span class="none">—</span>'
    text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{iso(at)}">{text}</time>'


def duration(seconds: float | None) -> str:
    """A short human duration: 0.4 s, 12 s, 4 min 3 s, 2 h 5 min, 3 d 4 h."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def ago(at: datetime | None, now: datetime) -> str:
    """`at` and how long before `now` it was."""
    if at is None:
        return clock(None)
    # A read finished a moment after the page's clock was taken is "0 s", not "-0.0 s".
    seconds = max(0.0, (now - at).total_seconds())
    return f'{clock(at)} <span class="ago">({duration(seconds)} ago)</span>'


def sku_link(sku: str | None) -> str:
    """The SKU as a link to its own view."""
    if not sku:
        return '<span class="none">(no SKU)</span>'
    return f'<a class="sku" href="/status?{esc(urlencode({"sku": sku}))}">{esc(sku)}</a>'


def short_gid(gid: str) -> str:
    """gid://shopify/Location/123 -> Location 123 (the full gid stays in a tooltip)."""
    if gid.startswith("gid://shopify/"):
        kind, _, number = gid.removeprefix("gid://shopify/").partition("/")
        return f'<span title="{esc(gid)}">{esc(kind)} {esc(number)}</span>'
    return esc(gid)
