"""The status page as HTML: one self-contained document (inline CSS, JS and SVG, no assets).

The page works without JavaScript (plain links and a GET search form). With it, the page
refreshes itself every few seconds by fetching its own main part (`?fragment=main`) and
replacing only the sections that changed, so nothing flickers and the search box keeps its
focus; typing in the search box hides non-matching rows at once, then asks the server (which
also finds rows beyond the per-group cap).

This module is the shell (head, header, search form, footer, the inline CSS and JS);
`sections.py` renders the parts of <main>, `chart.py` the SVG chart, `markup.py` the helpers
they share.
"""

from __future__ import annotations

from daemon.status.data import (
    Status,
)
from daemon.status.markup import clock, esc, iso
from daemon.status.sections import _connections, _overview, _problems, _sku

# An open page refreshes once per poll interval (new data cannot come faster), within these
# bounds: not busier than every 2 s, and never so slow that a merchant wonders if it is stuck.
REFRESH_MIN_SECONDS = 2.0
REFRESH_MAX_SECONDS = 10.0


def refresh_seconds(poll_interval: float) -> float:
    """Seconds between an open page's refreshes."""
    return min(REFRESH_MAX_SECONDS, max(REFRESH_MIN_SECONDS, poll_interval))


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
