"""The status page as HTML: one self-contained document (inline CSS, JS and SVG, no assets).

The page works without JavaScript (plain links and a GET search form). With it, the page
refreshes itself every few seconds by fetching its own main part (`?fragment=main`) and
replacing only the sections that changed, so nothing flickers and the search box keeps its
focus; typing in the search box hides non-matching rows at once, then asks the server (which
also finds rows beyond the per-group cap).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from daemon.status.model import (
    ActivityStep,
    ConnectionStatus,
    HistoryRow,
    KatanaStock,
    ProblemGroup,
    ProblemRow,
    Problems,
    ShopifyLevel,
    SkuVariant,
    SkuView,
    Status,
)

# An open page refreshes once per poll interval (new data cannot come faster), within these
# bounds: not busier than every 2 s, and never so slow that a merchant wonders if it is stuck.
REFRESH_MIN_SECONDS = 2.0
REFRESH_MAX_SECONDS = 10.0


def refresh_seconds(poll_interval: float) -> float:
    """Seconds between an open page's refreshes."""
    return min(REFRESH_MAX_SECONDS, max(REFRESH_MIN_SECONDS, poll_interval))


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


# --------------------------------------------------------------------------- sections


def _overview(status: Status) -> str:
    now = status.generated_at
    banners = []
    if not status.katana.reachable:
        banners.append(
            '<p class="banner bad" id="katana-down">Katana unreachable since '
            f"{ago(status.katana.unreachable_since, now)}: {esc(status.katana.error or '')}. "
            "Shopify keeps the last quantities; stocksync catches up when Katana answers.</p>"
        )
    if status.cycle_error is not None:
        banners.append(
            '<p class="banner bad">Sync cycles failing since '
            f"{ago(status.cycle_failing_since, now)}: {esc(status.cycle_error)}</p>"
        )
    return (
        f'<section data-part="overview" id="overview">{"".join(banners)}'
        '<dl class="facts">'
        f"<div><dt>Last successful poll</dt><dd>{ago(status.last_successful_poll, now)}</dd></div>"
        f"<div><dt>Poll interval</dt><dd>{duration(status.poll_interval_seconds)}</dd></div>"
        f"<div><dt>Running since</dt><dd>{ago(status.started_at, now)}</dd></div>"
        f"<div><dt>Version</dt><dd>stocksync {esc(status.version)}</dd></div>"
        "</dl></section>"
    )


def _connection(conn: ConnectionStatus, now: datetime) -> str:
    since = f' <span class="since">Since {ago(conn.since, now)}.</span>' if conn.since else ""
    parts = [
        f'<article class="card state-{esc(conn.state)}" data-connection="{esc(conn.name)}" '
        f'data-state="{esc(conn.state)}">',
        f"<h3>{esc(conn.name)} <small>{esc(conn.shop)}</small></h3>",
        f'<p class="state"><span class="badge">{esc(conn.state.replace("_", " "))}</span> '
        f'<span class="summary">{esc(conn.summary)}</span>{since}</p>',
    ]
    if conn.error and conn.held is None:
        parts.append(f'<p class="error">{esc(conn.error)}</p>')
    if conn.held is not None:
        parts.append(
            f'<p class="error">{esc(conn.held.reason)}</p>'
            "<p>If the drop is real, release the hold on the server:</p>"
            f'<pre class="command"><code class="release">{esc(conn.held.release_command)}'
            "</code></pre>"
        )
    lag = conn.lag_last_hour
    lag_text = (
        f"p50 {duration(lag.p50_seconds)} · p99 {duration(lag.p99_seconds)} "
        f'<span class="ago">({lag.samples} changes)</span>'
        if lag.samples
        else '<span class="none">no changes pushed in the last hour</span>'
    )
    rec = conn.last_reconciliation
    rec_text = (
        clock(None)
        if rec is None
        else f"{ago(rec.finished_at, now)}, {'ok' if rec.ok else 'failed'}, "
        f"{rec.drift} level{'s' if rec.drift != 1 else ''} corrected "
        f'<span class="ago">({esc(rec.scope)})</span>'
    )
    problems = sum(conn.problem_counts.values())
    mapped = "—" if conn.mapped_variants is None else f"{conn.mapped_variants:,}"
    levels = "" if conn.mapped_levels is None else f" ({conn.mapped_levels:,} Shopify levels)"
    parts.append(
        '<dl class="facts">'
        f"<div><dt>Sync</dt><dd>{'on' if conn.sync_enabled else 'off'}</dd></div>"
        f"<div><dt>Last successful poll</dt><dd>{ago(conn.last_successful_poll, now)}</dd></div>"
        f"<div><dt>Freshness, last hour</dt><dd>{lag_text}</dd></div>"
        f"<div><dt>Waiting to be pushed</dt><dd>{conn.waiting_variants:,} variants</dd></div>"
        f"<div><dt>Last full sync</dt><dd>{ago(conn.last_full_sync, now)}</dd></div>"
        f"<div><dt>Last reconciliation</dt><dd>{rec_text}</dd></div>"
        f"<div><dt>Mapped variants</dt><dd>{mapped}{levels}</dd></div>"
        f'<div><dt>Problems</dt><dd><a href="#problems">{problems:,}</a></dd></div>'
        "</dl>"
    )
    parts.append(chart(conn.name, conn.activity))
    parts.append("</article>")
    return "".join(parts)


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


def _connections(status: Status) -> str:
    cards = "".join(_connection(c, status.generated_at) for c in status.connections)
    return (
        '<section data-part="connections" id="connections"><h2>Connections</h2>'
        f'<div class="cards">{cards}</div></section>'
    )


def _problem_row(row: ProblemRow) -> str:
    where = f"<div>Shopify location: {short_gid(row.where)}</div>" if row.where else ""
    return (
        f'<tr data-sku="{esc((row.sku or "").casefold())}" data-kind="{esc(row.kind)}">'
        f'<td data-label="SKU">{sku_link(row.sku)}</td>'
        f'<td data-label="Connection">{esc(row.connection)}</td>'
        f'<td data-label="Why">{esc(row.reason)}{where}'
        f'<div class="detail">{esc(row.detail)}</div></td></tr>'
    )


def _group(group: ProblemGroup) -> str:
    shown = len(group.rows)
    more = ""
    if group.matching > shown:
        more = (
            f'<p class="more">{shown:,} of {group.matching:,} shown; '
            "search by SKU to find the others.</p>"
        )
    counted = f"{group.total:,}"
    if group.matching != group.total:
        counted = f"{group.matching:,} of {counted}"
    rows = "".join(_problem_row(r) for r in group.rows)
    body = (
        '<div class="scroll"><table class="rows"><thead><tr><th>SKU</th><th>Connection</th>'
        f"<th>Why</th></tr></thead><tbody>{rows}</tbody></table></div>{more}"
        if rows
        else '<p class="none">None match.</p>'
    )
    return (
        f'<details id="group-{esc(group.key)}" data-group="{esc(group.key)}"'
        f"{' open' if group.matching and group.key in ('rejected', 'not_pushed') else ''}>"
        f'<summary>{esc(group.title)} <span class="count">{counted}</span></summary>'
        f"{body}</details>"
    )


def _problems(problems: Problems) -> str:
    groups = [g for g in problems.groups if g.total]
    heading = f" matching “{esc(problems.query)}”" if problems.query else ""
    body = (
        "".join(_group(g) for g in groups)
        if groups
        else '<p class="ok">No problems: every mapped variant can be pushed.</p>'
    )
    return f'<section data-part="problems" id="problems"><h2>Problems{heading}</h2>{body}</section>'


def _katana_row(row: KatanaStock) -> str:
    result = "—" if row.result is None else str(row.result)
    mapped = "" if row.mapped else ' <span class="ago">(not mapped to Shopify)</span>'
    return (
        f'<tr data-katana-location="{row.location_id}">'
        f'<td data-label="Katana location">{esc(row.location)}{mapped}</td>'
        f'<td data-label="In stock" class="in-stock">{esc(row.in_stock)}</td>'
        f'<td data-label="Committed" class="committed">{esc(row.committed)}</td>'
        f'<td data-label="Potential" class="potential">{esc(row.potential or "")}</td>'
        f'<td data-label="Formula">{esc(row.formula)} = <b class="result">{esc(result)}</b></td>'
        "</tr>"
    )


def _level_row(level: ShopifyLevel) -> str:
    desired = "—" if level.desired is None else str(level.desired)
    told = "never" if level.last_told is None else str(level.last_told)
    notes = []
    if level.in_flight:
        notes.append("a push is awaiting Shopify's answer")
    if level.parked_until is not None:
        notes.append(f"rejected at this value; retried at {clock(level.parked_until)}")
    if level.desired is not None and level.desired == level.last_told and not level.in_flight:
        notes.append("in step")
    return (
        f'<tr data-level="{esc(level.inventory_item_id)}@{esc(level.location_id)}" '
        f'data-katana-location="{level.katana_location_id}">'
        f'<td data-label="Connection">{esc(level.connection)}</td>'
        f'<td data-label="Shopify location">{short_gid(level.location_id)}</td>'
        f'<td data-label="Fed by">{esc(level.katana_location)}</td>'
        f'<td data-label="Desired" class="desired">{esc(desired)}</td>'
        f'<td data-label="Shopify was last told" class="last-told">{esc(told)}</td>'
        f'<td data-label="Note">{"; ".join(notes)}</td></tr>'
    )


def _history_row(row: HistoryRow) -> str:
    before = "—" if row.from_quantity is None else str(row.from_quantity)
    return (
        f'<tr><td data-label="When">{clock(row.at)}</td>'
        f'<td data-label="Connection">{esc(row.connection)}</td>'
        f'<td data-label="Shopify location">{short_gid(row.location_id)}</td>'
        f'<td data-label="Change">{esc(before)} → {row.to_quantity}</td>'
        f'<td data-label="Outcome">{esc(row.outcome)}</td></tr>'
    )


def _table(headings: Iterable[str], rows: str, cls: str) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headings)
    return (
        f'<div class="scroll"><table class="rows {cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _sku_variant(variant: SkuVariant, now: datetime) -> str:
    flags = [variant.kind]
    if variant.retired:
        flags.append("deleted or archived: no longer synced")
    parts = [
        f'<article class="variant" data-variant="{variant.katana_variant_id}" '
        f'data-kind="{esc(variant.kind)}">',
        f"<h3>Katana variant {variant.katana_variant_id} <small>{esc(', '.join(flags))}</small>"
        "</h3>",
    ]
    if variant.stock_error:
        parts.append(f'<p class="error">{esc(variant.stock_error)}</p>')
    formula = (
        "in stock + potential − committed (a kit)"
        if variant.kind == "kit"
        else "in stock − committed"
    )
    parts.append(
        f"<p>Katana's stock, read {ago(variant.stock_read_at, now)}. Shopify's available = "
        f"{esc(formula)}, rounded down, never below 0 (less the connection's buffer).</p>"
    )
    if variant.katana:
        parts.append(
            _table(
                ["Katana location", "In stock", "Committed", "Potential", "Formula"],
                "".join(_katana_row(r) for r in variant.katana),
                "katana",
            )
        )
    elif variant.stock_read_at is not None:
        parts.append('<p class="none">Katana has no stock rows for it (zero everywhere).</p>')
    if variant.levels:
        parts.append(
            _table(
                [
                    "Connection",
                    "Shopify location",
                    "Fed by",
                    "Desired",
                    "Shopify was last told",
                    "Note",
                ],
                "".join(_level_row(level) for level in variant.levels),
                "levels",
            )
        )
    else:
        parts.append('<p class="none">It feeds no Shopify variant.</p>')
    if variant.problems:
        rows = "".join(_problem_row(p) for p in variant.problems)
        parts.append(_table(["SKU", "Connection", "Why"], rows, "variant-problems"))
    parts.append("</article>")
    return "".join(parts)


def _sku(view: SkuView, now: datetime) -> str:
    if view.variants:
        body = "".join(_sku_variant(v, now) for v in view.variants)
    else:
        body = f'<p class="none">No Katana variant has the SKU “{esc(view.sku)}”.</p>'
    history = (
        _table(
            ["When", "Connection", "Shopify location", "Change", "Outcome"],
            "".join(_history_row(r) for r in view.history),
            "history",
        )
        if view.history
        else '<p class="none">Nothing pushed for this SKU yet.</p>'
    )
    return (
        f'<section data-part="sku" id="sku" data-sku="{esc(view.sku)}">'
        f'<p><a href="/status">← All connections</a></p><h2>SKU {esc(view.sku)}</h2>{body}'
        f"<h3>Recent pushes</h3>{history}</section>"
    )


def render_main(status: Status) -> str:
    """The refreshable part of the page: <main> with one section per part."""
    sections = [_overview(status)]
    if status.sku is not None:
        sections.append(_sku(status.sku, status.generated_at))
    sections.append(_connections(status))
    sections.append(_problems(status.problems))
    return (
        f'<main id="status" data-generated="{iso(status.generated_at)}" '
        f'data-refresh="{refresh_seconds(status.poll_interval_seconds):g}">'
        f"{''.join(sections)}</main>"
    )


def render_page(status: Status, *, nonce: str) -> str:
    """The whole document; `nonce` authorises its one <style> and one <script> (CSP)."""
    query = status.problems.query
    title = f"SKU {status.sku.sku} · stocksync" if status.sku is not None else "stocksync status"
    sku_field = (
        f'<input type="hidden" name="sku" value="{esc(status.sku.sku)}">'
        if status.sku is not None
        else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        # An empty icon: otherwise every browser asks for /favicon.ico (a 404 in the console).
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title>"
        f'<style nonce="{esc(nonce)}">{STYLE}</style></head><body>'
        '<header><h1><a href="/status">stocksync</a> <small>Katana → Shopify stock</small></h1>'
        f'<p id="as-of-line">Data as of {clock(status.generated_at)} '
        '<span id="age" class="ago"></span> <span id="refresh-note"></span></p>'
        '<form id="search" method="get" action="/status" role="search">'
        '<label for="q">Filter problems by SKU</label>'
        f'<input id="q" name="q" type="search" value="{esc(query)}" placeholder="SKU" '
        'autocomplete="off" spellcheck="false">'
        f'{sku_field}<button type="submit">Filter</button></form></header>'
        f"{render_main(status)}"
        '<footer><p>Read-only. <a href="/status.json">This page as JSON</a> · '
        '<a href="/metrics">Prometheus metrics</a></p></footer>'
        f'<script nonce="{esc(nonce)}">{SCRIPT}</script></body></html>'
    )


STYLE = """
:root{--bg:#fff;--fg:#1b1f24;--mute:#5b6570;--line:#d6dbe1;--card:#f6f8fa;--ok:#1a7f37;
--warn:#9a6700;--bad:#cf222e;--info:#0969da;--bar:#8fb8f0;--lag:#d9480f}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mute:#9da7b3;
--line:#30363d;--card:#161b22;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--info:#58a6ff;
--bar:#1f4f8f;--lag:#ff8b4d}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
header,main,footer{max-width:72rem;margin:0 auto;padding:0 1rem}
header{padding-top:.75rem}
h1{font-size:1.4rem;margin:.2rem 0}h1 a{color:inherit;text-decoration:none}
h2{font-size:1.2rem;margin:1.4rem 0 .6rem}h3{font-size:1.05rem;margin:.2rem 0 .5rem}
small,.ago,.none,.detail{color:var(--mute);font-weight:normal}
.detail{font-size:.85rem;overflow-wrap:anywhere}
a{color:var(--info)}
#as-of-line{margin:.2rem 0 .6rem;color:var(--mute)}
#refresh-note.stale{color:var(--bad);font-weight:600}
form{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin-bottom:.5rem}
form label{flex-basis:100%;font-size:.9rem;color:var(--mute)}
input[type=search]{flex:1 1 12rem;font:inherit;padding:.45rem .6rem;border:1px solid var(--line);
border-radius:.4rem;background:var(--bg);color:var(--fg)}
button{font:inherit;padding:.45rem .9rem;border-radius:.4rem;border:1px solid var(--line);
background:var(--card);color:var(--fg)}
.banner{padding:.6rem .8rem;border-radius:.4rem;border:1px solid var(--bad);font-weight:600}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.3rem 1rem;
margin:.4rem 0}
.facts div{min-width:0}.facts dt{font-size:.8rem;color:var(--mute)}.facts dd{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1rem}
.card,.variant{background:var(--card);border:1px solid var(--line);border-left:.35rem solid
var(--mute);border-radius:.5rem;padding:.8rem 1rem;min-width:0}
.state-in_sync{border-left-color:var(--ok)}
.state-catching_up,.state-full_sync_pending,.state-starting{border-left-color:var(--info)}
.state-held,.state-katana_unreachable,.state-failing{border-left-color:var(--bad)}
.state-shopify_errors{border-left-color:var(--warn)}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;
font-weight:600;background:var(--mute);color:var(--bg)}
.state-in_sync .badge{background:var(--ok)}
.state-catching_up .badge,.state-full_sync_pending .badge{background:var(--info)}
.state-held .badge,.state-katana_unreachable .badge,.state-failing .badge{background:var(--bad)}
.state-shopify_errors .badge{background:var(--warn)}
.error{color:var(--bad);overflow-wrap:anywhere}
.command{background:var(--bg);border:1px solid var(--line);border-radius:.4rem;padding:.5rem;
white-space:pre-wrap;overflow-wrap:anywhere;user-select:all}
.chart{margin:.6rem 0 0}.chart svg{width:100%;height:6rem;display:block}
.chart figcaption,.chart .ticks{display:flex;justify-content:space-between;gap:.5rem;
font-size:.8rem;color:var(--mute)}
.chart .axis{stroke:var(--line);vector-effect:non-scaling-stroke}
.chart .bar{fill:var(--bar)}.chart .hit{fill:transparent}.chart g:hover .hit{fill:var(--line)}
.chart .lag{fill:none;stroke:var(--lag);stroke-width:2;vector-effect:non-scaling-stroke}
.chart .t-lag{color:var(--lag)}
details{border:1px solid var(--line);border-radius:.5rem;margin:.5rem 0;padding:.3rem .8rem}
summary{cursor:pointer;font-weight:600;padding:.3rem 0}
.count{display:inline-block;margin-left:.4rem;padding:0 .5rem;border-radius:1rem;
background:var(--card);border:1px solid var(--line);font-size:.85rem}
.scroll{overflow-x:auto}
table.rows{border-collapse:collapse;width:100%;margin:.3rem 0}
.rows th,.rows td{text-align:left;vertical-align:top;padding:.35rem .5rem;
border-bottom:1px solid var(--line)}
.rows th{font-size:.8rem;color:var(--mute);font-weight:600}
.rows tr[hidden]{display:none}
.more{color:var(--mute);font-size:.9rem}
.ok{color:var(--ok)}
footer{margin:2rem auto 1rem;color:var(--mute);font-size:.9rem}
@media (max-width:40rem){.rows thead{display:none}.rows tr{display:block;
border-bottom:1px solid var(--line);padding:.3rem 0}.rows td{display:block;border:0;
padding:.1rem 0}.rows td::before{content:attr(data-label) ": ";color:var(--mute);
font-size:.8rem}.cards{grid-template-columns:1fr}}
"""

SCRIPT = """
(function () {
  "use strict";
  var main = document.getElementById("status");
  var input = document.getElementById("q");
  var form = document.getElementById("search");
  var age = document.getElementById("age");
  var note = document.getElementById("refresh-note");
  var stamp = document.querySelector("#as-of-line time");
  var every = Number(main.getAttribute("data-refresh")) * 1000 || 5000;
  var timer = null, wait = null, asked = 0, shown = 0;

  function generated() { return Date.parse(main.getAttribute("data-generated")); }

  function showAge() {
    var at = generated();
    if (isNaN(at)) { return; }
    var seconds = Math.max(0, Math.round((Date.now() - at) / 1000));
    stamp.setAttribute("datetime", main.getAttribute("data-generated"));
    stamp.textContent = new Date(at).toLocaleString();
    age.textContent = "(" + seconds + " s ago)";
  }

  function filterRows() {
    var needle = input.value.trim().toLowerCase();
    var rows = document.querySelectorAll("#problems tr[data-sku]");
    for (var i = 0; i < rows.length; i++) {
      var sku = rows[i].getAttribute("data-sku");
      rows[i].hidden = needle !== "" && sku.indexOf(needle) < 0;
    }
  }

  function query() {
    var params = new URLSearchParams(window.location.search);
    var q = input.value.trim();
    if (q) { params.set("q", q); } else { params.delete("q"); }
    return params;
  }

  function patch(text) {
    var template = document.createElement("template");
    template.innerHTML = text.trim();
    var next = template.content.firstElementChild;
    if (!next || next.id !== "status") { throw new Error("unexpected answer"); }
    var open = {};
    var details = main.querySelectorAll("details[id]");
    for (var i = 0; i < details.length; i++) { open[details[i].id] = details[i].open; }
    var old = {};
    for (var j = 0; j < main.children.length; j++) {
      old[main.children[j].getAttribute("data-part")] = main.children[j];
    }
    var previous = null;
    var fresh = Array.prototype.slice.call(next.children);
    fresh.forEach(function (part) {
      var key = part.getAttribute("data-part");
      var current = old[key];
      delete old[key];
      if (current && current.isEqualNode(part)) { previous = current; return; }
      if (current) { main.replaceChild(part, current); }
      else { main.insertBefore(part, previous ? previous.nextSibling : main.firstChild); }
      previous = part;
    });
    Object.keys(old).forEach(function (key) { main.removeChild(old[key]); });
    var reopened = main.querySelectorAll("details[id]");
    for (var k = 0; k < reopened.length; k++) {
      if (reopened[k].id in open) { reopened[k].open = open[reopened[k].id]; }
    }
    main.setAttribute("data-generated", next.getAttribute("data-generated"));
    filterRows();
    showAge();
  }

  function schedule(delay) {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, delay);
  }

  function refresh() {
    var params = query();
    params.set("fragment", "main");
    var mine = ++asked;
    fetch("/status?" + params.toString(), {
      credentials: "same-origin", cache: "no-store", headers: {"Accept": "text/html"}
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (text) {
      if (mine < shown) { return; }
      shown = mine;
      patch(text);
      note.textContent = "";
      note.className = "";
    }).catch(function (error) {
      note.textContent = "Could not refresh (" + error.message + ") at " +
        new Date().toLocaleTimeString() + ": the data shown is older.";
      note.className = "stale";
    }).then(function () {
      if (mine === asked) { schedule(every); }
    });
  }

  input.addEventListener("input", function () {
    filterRows();
    window.clearTimeout(wait);
    wait = window.setTimeout(function () {
      var params = query();
      var search = params.toString();
      window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
      refresh();
    }, 300);
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    window.clearTimeout(wait);
    var search = query().toString();
    window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
    refresh();
  });
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { window.clearTimeout(timer); } else { refresh(); }
  });
  window.setInterval(showAge, 1000);
  showAge();
  filterRows();
  schedule(every);
})();
"""
