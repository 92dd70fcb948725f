"""The metric families a scrape shows from start-up (PRODUCT.md §5), beyond their mere names."""

from __future__ import annotations

import ast
import platform
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import daemon
from daemon.katana.models import DELTA_SOURCES
from daemon.metrics import PUSH_ERROR_CODES, Metrics, ProcessCollector

DAEMON = Path(daemon.__file__).parent


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return _samples(registry).get((name, frozenset(labels.items())))


def test_the_daemon_exports_its_own_start_time() -> None:
    before = time.time()
    metrics = Metrics(process=False)
    after = time.time()

    started = _value(metrics.registry, "stocksync_start_time_seconds")

    assert started is not None
    assert before <= started <= after


def test_build_info_names_the_version_and_python() -> None:
    metrics = Metrics(process=False)

    info = _value(
        metrics.registry,
        "stocksync_build_info",
        version=daemon.__version__,
        python=platform.python_version(),
        implementation=platform.python_implementation(),
    )

    assert info == 1


def test_throttled_and_request_duration_children_exist_at_0_for_both_apis() -> None:
    metrics = Metrics(process=False)

    for api in ("katana", "shopify"):
        assert _value(metrics.registry, "stocksync_api_throttled_total", api=api) == 0
        assert (
            _value(metrics.registry, "stocksync_api_request_duration_seconds_count", api=api) == 0
        )


def _resources_reported(client: Path, methods: set[str]) -> set[str]:
    """The literal resource names a client passes to its malformed-row reporting methods."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(client.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in methods
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_every_malformed_rows_child_the_clients_can_raise_exists_at_0() -> None:
    # A counter child born on its first increment shows no increase() for it: every resource a
    # client can report is created at start-up, so the first malformed row is visible.
    katana = _resources_reported(
        DAEMON / "katana" / "client.py", {"_malformed", "_read", "_parsed"}
    )
    shopify = _resources_reported(DAEMON / "shopify" / "client.py", {"_malformed"})
    assert {"inventory", "variants", "product_variants"} <= katana | shopify  # the scan worked
    metrics = Metrics(process=False)

    missing = [
        (api, resource)
        for api, resources in (("katana", katana | set(DELTA_SOURCES)), ("shopify", shopify))
        for resource in sorted(resources)
        if _value(metrics.registry, "stocksync_malformed_rows_total", api=api, resource=resource)
        != 0
    ]

    assert missing == []


def test_a_connection_starts_with_its_counters_lag_and_known_push_error_codes_at_0() -> None:
    metrics = Metrics(process=False)

    metrics.connection_started("eu")

    r = metrics.registry
    for name in (
        "stocksync_quantities_pushed_total",
        "stocksync_stale_overwrites_total",
        "stocksync_reconciliation_drift_total",
        "stocksync_late_push_corrections_total",
    ):
        assert _value(r, name, connection="eu") == 0, name
    assert _value(r, "stocksync_sync_lag_seconds_count", connection="eu") == 0
    for code in PUSH_ERROR_CODES:
        assert _value(r, "stocksync_push_errors_total", connection="eu", code=code) == 0, code


def _subset_pid_proc(tmp_path: Path) -> Path:
    """A /proc as systemd's ProcSubset=pid leaves it: this process's folder, no /proc/stat."""
    proc = tmp_path / "proc"
    own = proc / "self"
    (own / "fd").mkdir(parents=True)
    for name in ("stat", "limits"):
        (own / name).write_bytes(Path("/proc/self", name).read_bytes())
    return proc


def test_process_metrics_are_exported_where_proc_stat_is_hidden(tmp_path: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs a Linux /proc to copy this process's stat from")
    proc = _subset_pid_proc(tmp_path)
    assert not (proc / "stat").exists()
    registry = CollectorRegistry()

    ProcessCollector(proc=str(proc), registry=registry)

    names = {name for name, _ in _samples(registry)}
    assert {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    } <= names
    started = _value(registry, "process_start_time_seconds")
    assert started is not None
    assert time.time() - 24 * 3600 * 365 < started <= time.time()


def test_process_start_time_is_the_same_with_or_without_proc_stat(tmp_path: Path) -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("needs a Linux /proc")
    full, hidden = CollectorRegistry(), CollectorRegistry()
    ProcessCollector(registry=full)
    ProcessCollector(proc=str(_subset_pid_proc(tmp_path)), registry=hidden)

    with_stat = _value(full, "process_start_time_seconds")
    without = _value(hidden, "process_start_time_seconds")

    assert with_stat is not None
    assert without is not None
    # Both are boot time + ticks since boot; the boot time is worked out two ways.
    assert abs(with_stat - without) < 2


def test_push_error_codes_outside_shopifys_enum_are_counted_as_other() -> None:
    metrics = Metrics(process=False)
    sent_by_a_server = ["ITEM_NOT_STOCKED_AT_LOCATION", None, "x" * 5000, "<b>", "🙂"]
    sent_by_a_server += [f"CODE_{n}" for n in range(200)]
    for code in sent_by_a_server:
        metrics.push_errors.labels(connection="eu", code=code).inc()
    metrics.push_errors.labels("eu", "ANOTHER_ONE").inc()

    codes = {
        labels["code"]: value
        for (name, labels_set), value in _samples(metrics.registry).items()
        if name == "stocksync_push_errors_total"
        for labels in [dict(labels_set)]
    }
    assert set(codes) <= PUSH_ERROR_CODES
    assert codes["OTHER"] == 205
    assert codes["ITEM_NOT_STOCKED_AT_LOCATION"] == 1
