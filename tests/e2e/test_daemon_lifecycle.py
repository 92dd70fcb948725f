"""The daemon's process contract (PRODUCT.md §4): signals, sd_notify, HTTP, metrics."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.store import StateStore
from daemon.sync.reconcile import NIGHTLY
from tests.e2e.conftest import NotifyListener, World, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
# Interpreter teardown, closing the store and the sessions: beyond the drain budget itself.
EXIT_SLACK = 3.0

# PRODUCT.md §4 "Metrics" (plus the stale-overwrite counter of §5), with their types.
CONTRACT_FAMILIES = {
    "stocksync_poll_cycles_total": "counter",
    "stocksync_last_successful_poll_timestamp_seconds": "gauge",
    "stocksync_quantities_pushed_total": "counter",
    "stocksync_push_errors_total": "counter",
    "stocksync_sync_lag_seconds": "histogram",
    "stocksync_api_requests_total": "counter",
    "stocksync_api_request_duration_seconds": "histogram",
    "stocksync_api_throttled_total": "counter",
    "stocksync_dirty_variants": "gauge",
    "stocksync_mapped_variants": "gauge",
    "stocksync_unmapped_variants": "gauge",
    "stocksync_duplicate_skus": "gauge",
    "stocksync_sync_enabled": "gauge",
    "stocksync_reconciliation_last_success_timestamp_seconds": "gauge",
    "stocksync_reconciliation_drift_total": "counter",
    "stocksync_config_reloads_total": "counter",
    "stocksync_held_connections": "gauge",
    "stocksync_stale_overwrites_total": "counter",
}
DEPLOY_FILES = (
    REPO / "deploy" / "grafana" / "stocksync-dashboard.json",
    REPO / "deploy" / "prometheus" / "stocksync-alerts.yml",
)
METRIC_NAME = re.compile(r"\bstocksync_[a-z][a-z0-9_]*")
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")


def family_name(name: str, kind: str) -> str:
    """The family a parsed exposition reports for a metric name (counters drop `_total`)."""
    return name.removesuffix("_total") if kind == "counter" else name


def exported_names(families: Mapping[str, str]) -> set[str]:
    """The names a PromQL query can use for these families (counters carry `_total`)."""
    return {f"{name}_total" if kind == "counter" else name for name, kind in families.items()}


async def test_sighup_reload_toggles_sync_without_restart(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)
    started_at = await daemon.metric("process_start_time_seconds")

    world.write_config(sync_inventory=False)
    daemon.send_signal(signal.SIGHUP)
    await daemon.wait_metric(
        "stocksync_config_reloads_total", lambda n: n == 1, what="one reload", result="success"
    )
    await daemon.wait_metric(
        "stocksync_sync_enabled",
        lambda on: on == 0,
        what="sync switched off",
        connection=world.connection,
    )
    writes = world.set_calls()
    world.apply_events(15)
    assert world.differences(), "the events should have changed some desired levels"
    cycles = await daemon.metric("stocksync_poll_cycles_total", result="success")
    await daemon.wait_metric(
        "stocksync_poll_cycles_total",
        lambda n: n >= cycles + 2,
        what="2 more cycles",
        result="success",
    )
    assert world.set_calls() == writes, "a connection with sync off must not be written to"
    assert world.differences()

    world.write_config(sync_inventory=True)
    daemon.send_signal(signal.SIGHUP)
    await daemon.wait_metric(
        "stocksync_config_reloads_total", lambda n: n == 2, what="a second reload", result="success"
    )
    await world.converged(daemon)

    assert await daemon.metric("stocksync_sync_enabled", connection=world.connection) == 1
    assert daemon.returncode is None
    assert await daemon.metric("process_start_time_seconds") == started_at


async def test_sighup_with_broken_config_keeps_the_running_one(world: World) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)

    world.config_path.write_text('[daemon\npoll_interval_seconds = "soon"\n', encoding="utf-8")
    daemon.send_signal(signal.SIGHUP)
    await daemon.wait_metric(
        "stocksync_config_reloads_total", lambda n: n == 1, what="a rejected reload", result="error"
    )
    world.apply_events(15)
    assert world.differences()

    await world.converged(daemon)
    assert await daemon.metric("stocksync_config_reloads_total", result="success") == 0
    assert await daemon.metric("stocksync_sync_enabled", connection=world.connection) == 1
    assert "config_reload_rejected" in daemon.log_events()


async def test_sighup_naming_an_unknown_katana_location_keeps_the_running_config(
    world: World,
) -> None:
    daemon = await world.start_daemon()
    await world.converged(daemon)
    text = world.config_path.read_text(encoding="utf-8")
    assert text.count('katana = "') >= 1
    # Valid TOML, every key right: only Katana can tell that this location does not exist.
    world.config_path.write_text(
        re.sub(r'katana = "[^"]*"', 'katana = "No such warehouse"', text, count=1),
        encoding="utf-8",
    )

    daemon.send_signal(signal.SIGHUP)
    await daemon.wait_metric(
        "stocksync_config_reloads_total", lambda n: n == 1, what="a rejected reload", result="error"
    )
    world.apply_events(15)
    assert world.differences()

    await world.converged(daemon)
    assert daemon.returncode is None
    assert await daemon.metric("stocksync_config_reloads_total", result="success") == 0
    assert "config_reload_rejected" in daemon.log_events()
    assert "No such warehouse" in daemon.log_tail(200)


async def test_sigterm_drains_and_exits_zero_within_budget(world: World) -> None:
    daemon = await world.start_daemon()
    await daemon.wait_ready()
    world.apply_events(10)

    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    code = await daemon.wait_exit(within=DEFAULT_SHUTDOWN_TIMEOUT + EXIT_SLACK)

    assert code == 0
    assert time.monotonic() - signalled <= DEFAULT_SHUTDOWN_TIMEOUT + EXIT_SLACK
    assert daemon.log_events()[-1] == "daemon_stopped"


async def test_sigterm_with_a_push_in_flight_exits_zero_within_budget_and_loses_nothing(
    world: World,
) -> None:
    budget = 2.0
    world.write_config(shutdown_timeout_seconds=budget)
    daemon = await world.start_daemon()
    await world.converged(daemon)

    # Shopify down: the next push backs off and retries (0.5 s, 1 s, 2 s, ...) mid-cycle.
    world.shop.faults.outage = True
    seen = world.shop.requests_total
    world.apply_events(15)
    await wait_until(
        lambda: world.shop.requests_total >= seen + 2,
        within=10,
        what="a push to be retried against the outage",
        daemon=daemon,
    )
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    code = await daemon.wait_exit(within=budget + EXIT_SLACK)

    assert code == 0
    assert time.monotonic() - signalled <= budget + EXIT_SLACK
    assert "draining" in daemon.log_events(), "SIGTERM should have found a cycle in flight"
    assert world.differences(), "nothing could reach Shopify during the outage"

    world.shop.faults.outage = False
    restarted = await world.start_daemon()
    await world.converged(restarted)


async def test_second_stop_signal_exits_at_once(world: World) -> None:
    world.write_config(shutdown_timeout_seconds=30)
    daemon = await world.start_daemon()
    await world.converged(daemon)
    world.shop.faults.outage = True
    seen = world.shop.requests_total
    world.apply_events(10)
    await wait_until(
        lambda: world.shop.requests_total >= seen + 2,
        within=10,
        what="a push to be retried against the outage",
        daemon=daemon,
    )

    daemon.send_signal(signal.SIGTERM)
    await wait_until(
        lambda: "draining" in daemon.log_events(), within=5, what="draining", daemon=daemon
    )
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    code = await daemon.wait_exit(within=EXIT_SLACK)

    assert code == 1
    assert time.monotonic() - signalled < EXIT_SLACK
    assert "forced_exit" in daemon.log_events()
    world.shop.faults.outage = False
    restarted = await world.start_daemon()
    await world.converged(restarted)


async def test_nightly_reconciliation_missed_while_down_runs_at_start_up(world: World) -> None:
    # The last nightly run finished two days ago: today's 03:00 UTC run was missed.
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    store = await StateStore.open(world.state_path, clock=lambda: two_days_ago)
    run = await store.start_run(NIGHTLY, None)
    await store.finish_run(run, ok=True, drift=0)
    await store.close()

    daemon = await world.start_daemon()

    await daemon.wait_metric(
        "stocksync_reconciliation_runs_total",
        lambda v: v >= 1,
        what="the catch-up reconciliation",
        result="success",
    )
    assert "reconciliation_catch_up" in daemon.log_events()
    await world.converged(daemon)


async def test_sd_notify_ready_reload_stopping_and_watchdog(
    world: World, notify_listener: NotifyListener
) -> None:
    daemon = await world.start_daemon(
        {"NOTIFY_SOCKET": str(notify_listener.path), "WATCHDOG_USEC": "2000000"}
    )

    await wait_until(
        lambda: notify_listener.index_of("READY=1") is not None,
        within=20,
        what="READY=1",
        explain=lambda: f"received {notify_listener.assignments()}",
        daemon=daemon,
    )
    # WATCHDOG_USEC = 2 s: a ping every second while the loop makes progress.
    await wait_until(
        lambda: notify_listener.index_of("WATCHDOG=1") is not None,
        within=5,
        what="WATCHDOG=1",
        daemon=daemon,
    )

    before_reload = len(notify_listener.messages)
    daemon.send_signal(signal.SIGHUP)
    await wait_until(
        lambda: notify_listener.index_of("READY=1", after=before_reload) is not None,
        within=10,
        what="READY=1 after the reload",
        explain=lambda: f"received {notify_listener.assignments()[before_reload:]}",
        daemon=daemon,
    )
    reloading = notify_listener.index_of("RELOADING=1", after=before_reload)
    ready = notify_listener.index_of("READY=1", after=before_reload)
    assert reloading is not None
    assert ready is not None
    assert reloading < ready
    received_at, _ = notify_listener.messages[reloading]
    [stamp] = [
        line.removeprefix("MONOTONIC_USEC=")
        for line in notify_listener.assignments()[reloading]
        if line.startswith("MONOTONIC_USEC=")
    ]
    # CLOCK_MONOTONIC is system-wide: the daemon's stamp precedes our receipt, by little.
    assert 0 <= received_at - int(stamp) / 1_000_000 < 5

    before_stop = len(notify_listener.messages)
    daemon.send_signal(signal.SIGTERM)
    assert await daemon.wait_exit(within=DEFAULT_SHUTDOWN_TIMEOUT + EXIT_SLACK) == 0
    await wait_until(
        lambda: notify_listener.index_of("STOPPING=1", after=before_stop) is not None,
        within=2,
        what="STOPPING=1",
    )


async def test_metrics_endpoint_exports_every_contract_family(world: World) -> None:
    # Katana down at start-up: the HTTP face is up, no cycle has succeeded yet.
    world.katana.faults.outage = True
    daemon = await world.start_daemon()

    async def alive() -> bool:
        return await daemon.status("/healthz") == 200

    await wait_until(alive, within=20, what="/healthz 200", daemon=daemon)
    assert await daemon.status("/readyz") == 503
    early = await daemon.scrape()
    # Every family is exported from start-up, before it has samples (PRODUCT.md §5).
    wrong = {
        name: early.families.get(family_name(name, kind))
        for name, kind in CONTRACT_FAMILIES.items()
        if early.families.get(family_name(name, kind)) != kind
    }
    assert not wrong, f"contract families missing or of another type (found): {wrong}"

    world.katana.faults.outage = False
    await daemon.wait_ready()
    assert await daemon.status("/healthz") == 200
    exported = exported_names((await daemon.scrape()).families)
    for path in DEPLOY_FILES:
        referenced = {
            HISTOGRAM_SERIES.sub("", name)
            for name in METRIC_NAME.findall(path.read_text(encoding="utf-8"))
        }
        assert referenced, f"{path.name} references no stocksync metric"
        assert referenced <= exported, f"{path.name} uses unexported {referenced - exported}"


def statuses(listener: NotifyListener) -> list[str]:
    """Every STATUS= text received so far, in order."""
    return [
        line.removeprefix("STATUS=")
        for datagram in listener.assignments()
        for line in datagram
        if line.startswith("STATUS=")
    ]


async def test_ready_means_started_and_serving_even_when_katana_refuses_the_key(
    world: World, notify_listener: NotifyListener
) -> None:
    daemon = await world.start_daemon(
        {"NOTIFY_SOCKET": str(notify_listener.path), "KATANA_API_KEY": "not-the-key"}
    )

    # Started and serving: the unit leaves "activating" (and Restart= applies from here on).
    await wait_until(
        lambda: notify_listener.index_of("READY=1") is not None,
        within=20,
        what="READY=1",
        explain=lambda: f"received {notify_listener.assignments()}",
        daemon=daemon,
    )
    # What systemctl status shows says why nothing syncs.
    await wait_until(
        lambda: any(s.startswith("Katana unreachable") for s in statuses(notify_listener)),
        within=20,
        what="STATUS= saying Katana is unreachable",
        explain=lambda: f"statuses {statuses(notify_listener)}",
        daemon=daemon,
    )
    assert (await daemon.get("/readyz") or (0, ""))[0] == 503


async def test_status_follows_a_katana_outage_and_its_end(
    world: World, notify_listener: NotifyListener
) -> None:
    daemon = await world.start_daemon({"NOTIFY_SOCKET": str(notify_listener.path)})
    await world.converged(daemon)
    await wait_until(
        lambda: "in sync" in statuses(notify_listener),
        within=20,
        what="STATUS=in sync",
        explain=lambda: f"statuses {statuses(notify_listener)}",
        daemon=daemon,
    )

    world.katana.faults.outage = True
    await wait_until(
        lambda: any(s.startswith("Katana unreachable") for s in statuses(notify_listener)),
        within=30,
        what="STATUS= saying Katana is unreachable",
        explain=lambda: f"statuses {statuses(notify_listener)}",
        daemon=daemon,
    )
    outage_at = len(statuses(notify_listener))
    world.katana.faults.outage = False

    await wait_until(
        lambda: "in sync" in statuses(notify_listener)[outage_at:],
        within=60,
        what="STATUS=in sync again",
        explain=lambda: f"statuses {statuses(notify_listener)}",
        daemon=daemon,
    )
    assert "source_recovered" in daemon.log_events()
