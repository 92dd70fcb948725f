"""The status page's sections as HTML: the overview, the connection cards, the problem groups and
one SKU's view.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from daemon.status.chart import chart
from daemon.status.data import (
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
from daemon.status.markup import ago, clock, duration, esc, short_gid, sku_link


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
