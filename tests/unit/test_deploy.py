"""Deployment artefacts: systemd units, Prometheus rules, the Grafana dashboard, the ops guide.

External checkers (systemd-analyze, promtool) are used when installed and skipped otherwise;
everything that needs only Python always runs. promtool comes with Debian's `prometheus` package.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.http import MAX_CONNECTIONS
from daemon.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "deploy" / "systemd"
ALERTS = REPO / "deploy" / "prometheus" / "stocksync-alerts.yml"
PROMETHEUS_EXAMPLE = REPO / "deploy" / "prometheus" / "prometheus.example.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "stocksync-dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"
DAEMON = REPO / "daemon"

INSTALLED_EXECUTABLE = "/opt/stocksync/venv/bin/stocksync"
MAX_EXPOSURE = 2.0
EXPECTED_ALERTS = {
    "StocksyncDown",
    "StocksyncPollingStale",
    "StocksyncPushErrorRate",
    "StocksyncConnectionHeld",
    "StocksyncReconciliationMissed",
    "StocksyncPersistentThrottling",
    "StocksyncDirtyBacklogGrowing",
    "StocksyncConfigReloadFailed",
    "StocksyncStaleOverwritesHigh",
    "StocksyncReconciliationDrift",
}
METRIC_NAME = re.compile(r"\b(?:stocksync|process)_[a-z0-9_]*[a-z0-9]")
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
OPERATOR_LEVELS = {"warning", "error", "exception", "critical"}
EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Every label the alert tests' input series carry, so expected alert labels can be spelled out.
TARGET = {"job": "stocksync", "instance": "host:9464"}
SUBPROCESS_TIMEOUT = 60


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


# --------------------------------------------------------------------------- systemd units


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """The systemd-analyze executable, or skip."""
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    return path


def _installable_copy(unit: str, name: str, folder: Path) -> Path:
    """The unit as `name` in `folder`, its ExecStart pointing at an executable that exists here."""
    text = (UNITS_DIR / unit).read_text(encoding="utf-8")
    # systemd-analyze verify rejects a unit whose executable is missing, and the venv of a real
    # installation is not on a test machine.
    assert f"ExecStart={INSTALLED_EXECUTABLE} " in text, f"{unit}: ExecStart moved"
    path = folder / name
    path.write_text(text.replace(INSTALLED_EXECUTABLE, sys.executable), encoding="utf-8")
    return path


UNITS = pytest.mark.parametrize(
    ("unit", "name"),
    [("stocksync.service", "stocksync.service"), ("stocksync@.service", "stocksync@test.service")],
)


@UNITS
def test_unit_files_pass_systemd_analyze_verify(
    systemd_analyze: str, tmp_path: Path, unit: str, name: str
) -> None:
    path = _installable_copy(unit, name, tmp_path)
    result = _run(systemd_analyze, "verify", path)
    # Unknown or misspelt keys are only warnings (exit 0), so the output must not mention the unit.
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if name in line or str(path) in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints == []


@UNITS
def test_unit_files_are_hardened_to_an_exposure_of_at_most_2(
    systemd_analyze: str, tmp_path: Path, unit: str, name: str
) -> None:
    path = _installable_copy(unit, name, tmp_path)
    result = _run(systemd_analyze, "security", "--offline=true", path)
    if "--offline" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd 250 or newer has)")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found is not None, result.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


@UNITS
def test_unit_files_set_an_open_file_limit_far_above_the_http_connection_cap(
    unit: str, name: str
) -> None:
    text = (UNITS_DIR / unit).read_text(encoding="utf-8")
    limits = re.findall(r"^LimitNOFILE=(\d+)$", text, flags=re.M)
    assert len(limits) == 1, f"{unit}: one numeric LimitNOFILE= line expected"
    assert int(limits[0]) >= 16 * MAX_CONNECTIONS


# --------------------------------------------------------------------------- Prometheus


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool executable, or skip."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt install prometheus)")
    return path


def _alert_blocks() -> dict[str, list[str]]:
    """Alert name -> the text of each rule with that name (two rules may share one name)."""
    blocks: dict[str, list[str]] = {}
    for block in re.split(r"^\s*- alert: ", ALERTS.read_text(encoding="utf-8"), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        blocks.setdefault(name.strip(), []).append(body)
    return blocks


def _indented_blocks(text: str, key: str) -> Iterator[str]:
    """The value of every `key:` in a YAML block document: the rest of its line and the lines
    indented deeper than the key."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped.startswith(f"{key}:"):
            continue
        indent = len(line) - len(stripped)
        value = [stripped[len(key) + 1 :]]
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            value.append(following)
        yield "\n".join(value)


def _without_annotations(rules: str) -> str:
    """The rules file without its annotation blocks: `promtool test rules` compares annotations
    exactly, and the alert tests are about when alerts fire, not about their wording."""
    kept: list[str] = []
    skip_deeper_than: int | None = None
    for line in rules.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not line.strip() or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if line.strip() == "annotations:":
            skip_deeper_than = indent
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = _run(promtool, "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_example_prometheus_config_passes_promtool_check(promtool: str) -> None:
    # It names stocksync-alerts.yml relative to itself, so this checks the pair together.
    result = _run(promtool, "check", "config", PROMETHEUS_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_alert_has_a_for_duration_a_severity_and_operator_annotations() -> None:
    blocks = _alert_blocks()
    assert set(blocks) == EXPECTED_ALERTS
    for name, bodies in blocks.items():
        for body in bodies:
            assert re.search(r"^\s+for: \d+[smh]$", body, flags=re.M), name
            assert re.search(r"^\s+severity: (critical|warning)$", body, flags=re.M), name
            assert re.search(r"^\s+summary: \S", body, flags=re.M), name
            assert re.search(r"^\s+description: \S", body, flags=re.M), name


def _headings(markdown: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", markdown, flags=re.M)}


def test_alert_descriptions_point_at_sections_of_the_operations_guide() -> None:
    headings = _headings(OPERATIONS.read_text(encoding="utf-8"))
    for name, bodies in _alert_blocks().items():
        for body in bodies:
            cited = [
                " ".join(title.split())
                for title in re.findall(r'docs/operations\.md,\s+"([^"]+)"', body)
            ]
            assert cited, f"{name} does not point at docs/operations.md"
            assert set(cited) <= headings, f"{name} cites a missing section: {cited}"


def _slug(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def test_every_alert_links_its_runbook_section_of_the_operations_guide() -> None:
    anchors = {_slug(h) for h in _headings(OPERATIONS.read_text(encoding="utf-8"))}
    for name, bodies in _alert_blocks().items():
        for body in bodies:
            found = re.search(r'^\s+runbook_url: "([^"]+)"$', body, flags=re.M)
            assert found, f"{name} has no runbook_url"
            page, _, anchor = found.group(1).partition("#")
            assert page == "file:///usr/share/doc/stocksync/operations.md", name
            assert anchor in anchors, f"{name} links a missing section: #{anchor}"


def test_operations_guide_lists_every_alert() -> None:
    guide = OPERATIONS.read_text(encoding="utf-8")
    assert [name for name in sorted(EXPECTED_ALERTS) if name not in guide] == []


def _promtool_alert_test(
    promtool: str,
    tmp_path: Path,
    series: Mapping[str, str],
    checks: list[tuple[str, str, list[dict[str, str]]]],
    *,
    interval: str = "1m",
) -> None:
    """Run `promtool test rules` on the alert rules: `series` maps a series to its values in
    promtool's expanding notation; each check is (eval time, alert name, expected labels of
    every firing alert). time() starts at 0 in promtool, so timestamps are offsets from there."""
    rules = tmp_path / "rules.yml"
    rules.write_text(_without_annotations(ALERTS.read_text(encoding="utf-8")), encoding="utf-8")
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": interval,
        "tests": [
            {
                "interval": interval,
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected],
                    }
                    for at, name, expected in checks
                ],
            }
        ],
    }
    # JSON is YAML, and needs no YAML library here.
    path = tmp_path / "alerts-test.yml"
    path.write_text(json.dumps(test, indent=1), encoding="utf-8")
    result = _run(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def _series(metric: str, **labels: str) -> str:
    body = ", ".join(f'{k}="{v}"' for k, v in {**TARGET, **labels}.items())
    return f"{metric}{{{body}}}"


def _alert(severity: str, **labels: str) -> dict[str, str]:
    return {**TARGET, "severity": severity, **labels}


def test_down_alert_fires_when_the_target_is_not_scraped_for_5_minutes(
    promtool: str, tmp_path: Path
) -> None:
    _promtool_alert_test(
        promtool,
        tmp_path,
        {_series("up"): "1 1 0x10"},
        [("6m", "StocksyncDown", []), ("8m", "StocksyncDown", [_alert("critical")])],
    )


def test_down_alert_fires_when_the_target_is_missing(promtool: str, tmp_path: Path) -> None:
    _promtool_alert_test(
        promtool,
        tmp_path,
        {'up{job="node", instance="host:9100"}': "1x10"},
        [("6m", "StocksyncDown", [{"job": "stocksync", "severity": "critical"}])],
    )


# Under systemd's ProcSubset=pid a daemon may export no process_* series at all: the grace
# after a start must not depend on them. Each such rule is checked with and without them.
PROCESS_SERIES = [
    pytest.param({}, id="without-process-series"),
    pytest.param({_series("process_start_time_seconds"): "0x600"}, id="with-process-series"),
]


@pytest.mark.parametrize("process", PROCESS_SERIES)
def test_polling_stale_fires_when_the_last_successful_poll_is_older_than_5_minutes(
    promtool: str, tmp_path: Path, process: dict[str, str]
) -> None:
    # The last success at t = 60 s; the process started at 0.
    series = {
        _series("stocksync_last_successful_poll_timestamp_seconds"): "60x20",
        _series("stocksync_start_time_seconds"): "0x20",
        **process,
    }
    checks = [
        ("7m", "StocksyncPollingStale", []),
        ("9m", "StocksyncPollingStale", [_alert("critical")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_polling_stale_stays_quiet_while_polls_succeed(promtool: str, tmp_path: Path) -> None:
    series = {
        _series("stocksync_last_successful_poll_timestamp_seconds"): "0+60x30",
        _series("stocksync_start_time_seconds"): "0x30",
    }
    _promtool_alert_test(promtool, tmp_path, series, [("25m", "StocksyncPollingStale", [])])


@pytest.mark.parametrize("process", PROCESS_SERIES)
def test_polling_stale_allows_an_hour_for_the_first_cycle_after_a_start(
    promtool: str, tmp_path: Path, process: dict[str, str]
) -> None:
    # No success yet (the gauge is 0), the process started at 0: a long first full sync.
    series = {
        _series("stocksync_last_successful_poll_timestamp_seconds"): "0x80",
        _series("stocksync_start_time_seconds"): "0x80",
        **process,
    }
    checks = [
        ("50m", "StocksyncPollingStale", []),
        ("65m", "StocksyncPollingStale", [_alert("critical")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


@pytest.mark.parametrize("process", PROCESS_SERIES)
def test_polling_stale_allows_an_hour_after_a_restart(
    promtool: str, tmp_path: Path, process: dict[str, str]
) -> None:
    # Polls succeed for 30 minutes; a restart at 30 m sets the gauge back to 0 and the start time
    # to 1800 s (process_start_time_seconds, where exported, still says 0: it must not count).
    series = {
        _series("stocksync_last_successful_poll_timestamp_seconds"): "0+60x29 0x80",
        _series("stocksync_start_time_seconds"): "0x29 1800x80",
        **process,
    }
    checks = [
        ("40m", "StocksyncPollingStale", []),
        ("85m", "StocksyncPollingStale", []),
        ("95m", "StocksyncPollingStale", [_alert("critical")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_push_error_rate_fires_above_5_percent_of_quantities_for_15_minutes(
    promtool: str, tmp_path: Path
) -> None:
    series = {
        _series("stocksync_quantities_pushed_total", connection="eu"): "0+90x60",
        _series("stocksync_push_errors_total", connection="eu", code="INVALID"): "0+10x60",
    }
    checks = [
        ("10m", "StocksyncPushErrorRate", []),
        ("40m", "StocksyncPushErrorRate", [_alert("warning", connection="eu")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_push_error_rate_stays_quiet_at_2_percent(promtool: str, tmp_path: Path) -> None:
    series = {
        _series("stocksync_quantities_pushed_total", connection="eu"): "0+98x60",
        _series("stocksync_push_errors_total", connection="eu", code="INVALID"): "0+2x60",
    }
    _promtool_alert_test(promtool, tmp_path, series, [("40m", "StocksyncPushErrorRate", [])])


def test_push_error_rate_needs_at_least_5_errors_in_15_minutes(
    promtool: str, tmp_path: Path
) -> None:
    # Every push fails, but only 3 in 15 minutes: one odd item in a quiet shop.
    series = {
        _series("stocksync_quantities_pushed_total", connection="eu"): "0x60",
        _series("stocksync_push_errors_total", connection="eu", code="INVALID"): "0+0.2x60",
    }
    _promtool_alert_test(promtool, tmp_path, series, [("40m", "StocksyncPushErrorRate", [])])


def test_connection_held_fires_while_the_safety_valve_holds_a_connection(
    promtool: str, tmp_path: Path
) -> None:
    series = {_series("stocksync_held_connections"): "0 0 1x10"}
    checks = [
        ("1m", "StocksyncConnectionHeld", []),
        ("5m", "StocksyncConnectionHeld", [_alert("critical")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


@pytest.mark.parametrize("process", PROCESS_SERIES)
def test_reconciliation_missed_fires_26_hours_after_the_last_success(
    promtool: str, tmp_path: Path, process: dict[str, str]
) -> None:
    # The last success at t = 600 s, never again; 5-minute samples over 30 hours.
    series = {
        _series("stocksync_reconciliation_last_success_timestamp_seconds"): "600x360",
        _series("stocksync_start_time_seconds"): "0x360",
        **process,
    }
    checks = [
        ("25h", "StocksyncReconciliationMissed", []),
        ("27h", "StocksyncReconciliationMissed", [_alert("warning")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks, interval="5m")


@pytest.mark.parametrize("process", PROCESS_SERIES)
def test_reconciliation_missed_gives_a_restarted_process_26_hours(
    promtool: str, tmp_path: Path, process: dict[str, str]
) -> None:
    # A run at 600 s; at 10 h the process restarts with no reconciliation on record (the gauge
    # is 0 until its first nightly run) and a start time of 36,000 s. Where process_* series
    # are exported, process_start_time_seconds still says 0: only the daemon's own start counts.
    series = {
        _series("stocksync_reconciliation_last_success_timestamp_seconds"): "600x119 0x400",
        _series("stocksync_start_time_seconds"): "0x119 36000x400",
        **process,
    }
    checks = [
        ("30h", "StocksyncReconciliationMissed", []),
        ("37h", "StocksyncReconciliationMissed", [_alert("warning")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks, interval="5m")


def test_reconciliation_drift_fires_after_a_run_that_found_drift(
    promtool: str, tmp_path: Path
) -> None:
    # 10-minute samples: a run at 3 h finds 4 drifted levels; the next night's run finds none.
    series = {_series("stocksync_reconciliation_drift_total", connection="eu"): "0x17 4x300"}
    checks = [
        ("2h", "StocksyncReconciliationDrift", []),
        ("4h", "StocksyncReconciliationDrift", [_alert("warning", connection="eu")]),
        ("27h", "StocksyncReconciliationDrift", [_alert("warning", connection="eu")]),
        ("30h", "StocksyncReconciliationDrift", []),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks, interval="10m")


def test_reconciliation_drift_stays_quiet_while_runs_find_none(
    promtool: str, tmp_path: Path
) -> None:
    series = {_series("stocksync_reconciliation_drift_total", connection="eu"): "0x300"}
    checks = [("30h", "StocksyncReconciliationDrift", [])]
    _promtool_alert_test(promtool, tmp_path, series, checks, interval="10m")


def test_throttling_fires_when_shopify_throttles_over_5_percent_for_30_minutes(
    promtool: str, tmp_path: Path
) -> None:
    series = {
        _series("stocksync_api_requests_total", api="shopify", status="200"): "0+100x60",
        _series("stocksync_api_throttled_total", api="shopify"): "0+10x60",
        _series("stocksync_api_requests_total", api="katana", status="200"): "0+50x60",
        _series("stocksync_api_throttled_total", api="katana"): "0x60",
    }
    checks = [
        ("20m", "StocksyncPersistentThrottling", []),
        ("45m", "StocksyncPersistentThrottling", [_alert("warning", api="shopify")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_throttling_stays_quiet_at_2_percent_of_shopify_requests(
    promtool: str, tmp_path: Path
) -> None:
    series = {
        _series("stocksync_api_requests_total", api="shopify", status="200"): "0+100x60",
        _series("stocksync_api_throttled_total", api="shopify"): "0+2x60",
    }
    _promtool_alert_test(promtool, tmp_path, series, [("45m", "StocksyncPersistentThrottling", [])])


def test_throttling_fires_when_katana_answers_429_throughout_15_minutes(
    promtool: str, tmp_path: Path
) -> None:
    series = {
        _series("stocksync_api_requests_total", api="katana", status="200"): "0+50x60",
        _series("stocksync_api_throttled_total", api="katana"): "0+1x60",
    }
    checks = [
        ("10m", "StocksyncPersistentThrottling", []),
        ("25m", "StocksyncPersistentThrottling", [_alert("warning", api="katana")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_dirty_backlog_alert_fires_when_over_1000_and_growing_for_30_minutes(
    promtool: str, tmp_path: Path
) -> None:
    series = {_series("stocksync_dirty_variants"): "1000+10x90"}
    checks = [
        ("20m", "StocksyncDirtyBacklogGrowing", []),
        ("45m", "StocksyncDirtyBacklogGrowing", [_alert("warning")]),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


@pytest.mark.parametrize(
    "values",
    [pytest.param("5000x90", id="large-but-flat"), pytest.param("0+10x90", id="growing-but-small")],
)
def test_dirty_backlog_alert_needs_both_size_and_growth(
    promtool: str, tmp_path: Path, values: str
) -> None:
    series = {_series("stocksync_dirty_variants"): values}
    _promtool_alert_test(promtool, tmp_path, series, [("60m", "StocksyncDirtyBacklogGrowing", [])])


def test_config_reload_failed_fires_after_a_rejected_reload(promtool: str, tmp_path: Path) -> None:
    series = {
        _series("stocksync_config_reloads_total", result="error"): "0 0 0 1x30",
        _series("stocksync_config_reloads_total", result="success"): "0x33",
    }
    checks = [
        ("2m", "StocksyncConfigReloadFailed", []),
        ("5m", "StocksyncConfigReloadFailed", [_alert("warning", result="error")]),
        ("25m", "StocksyncConfigReloadFailed", []),
    ]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_stale_overwrites_alert_fires_above_50_an_hour(promtool: str, tmp_path: Path) -> None:
    series = {_series("stocksync_stale_overwrites_total", connection="eu"): "0+2x150"}
    checks = [("120m", "StocksyncStaleOverwritesHigh", [_alert("warning", connection="eu")])]
    _promtool_alert_test(promtool, tmp_path, series, checks)


def test_stale_overwrites_alert_stays_quiet_at_30_an_hour(promtool: str, tmp_path: Path) -> None:
    series = {_series("stocksync_stale_overwrites_total", connection="eu"): "0+0.5x150"}
    _promtool_alert_test(promtool, tmp_path, series, [("120m", "StocksyncStaleOverwritesHigh", [])])


# --------------------------------------------------------------------------- Grafana


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included, rows themselves excluded."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def _variable_query(variable: Mapping[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def _dashboard_exprs(dashboard: Mapping[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p["targets"]]


def test_dashboard_is_importable_with_a_prometheus_datasource_input() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["id"] is None  # an exported id would clash with the importing instance
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    datasource = _variables(dashboard)["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    # The import dialog's choice becomes the variable's default.
    assert datasource["current"]["value"] == "${DS_PROMETHEUS}"


def test_dashboard_queries_go_through_the_datasource_variable() -> None:
    dashboard = _dashboard()
    via_variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in _panels(dashboard):
        assert panel["datasource"] == via_variable, panel["title"]
        assert all(t["datasource"] == via_variable for t in panel["targets"]), panel["title"]
    for variable in _variables(dashboard).values():
        if variable["type"] == "query":
            assert variable["datasource"] == via_variable, variable["name"]


def test_dashboard_offers_a_multi_value_connection_variable_with_all() -> None:
    connection = _variables(_dashboard())["connection"]
    assert connection["type"] == "query"
    assert connection["multi"] is True
    assert connection["includeAll"] is True
    assert re.fullmatch(
        r"label_values\(stocksync_sync_enabled(\{[^}]*\})?, connection\)",
        _variable_query(connection),
    )


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    dashboard = _dashboard()
    ids = [p["id"] for p in dashboard["panels"]] + [
        child["id"] for p in dashboard["panels"] for child in p.get("panels", [])
    ]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]


def test_dashboard_shows_time_since_and_held_and_enabled_as_stats() -> None:
    panels = _panels(_dashboard())
    for panel in panels:
        exprs = " ".join(t["expr"] for t in panel["targets"])
        if "time() -" in exprs or re.search(r"held|sync_enabled|build_info", exprs):
            assert panel["type"] == "stat", panel["title"]
        else:
            assert panel["type"] == "timeseries", panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


def _connection_families() -> set[str]:
    """Metric families whose samples carry a `connection` label, once a connection started."""
    metrics = Metrics(process=False)
    metrics.connection_started("eu")
    text = generate_latest(metrics.registry).decode()
    return {
        f.name
        for f in text_string_to_metric_families(text)
        if any("connection" in s.labels for s in f.samples)
    }


def test_panels_of_metrics_with_a_connection_label_follow_the_connection_picker() -> None:
    samples, _ = _exported()
    by_connection = _connection_families()
    assert {"stocksync_sync_lag_seconds", "stocksync_quantities_pushed"} <= by_connection
    for panel in _panels(_dashboard()):
        for target in panel["targets"]:
            for selector in re.finditer(
                r"\b((?:stocksync|process)_[a-z0-9_]+)(\{[^}]*\})?", target["expr"]
            ):
                family = samples.get(selector.group(1))
                if family in by_connection:
                    assert 'connection=~"$connection"' in (selector.group(2) or ""), (
                        f"{panel['title']}: {selector.group(0)}"
                    )


def test_panels_that_cannot_follow_the_connection_picker_say_so() -> None:
    # A process-wide figure (the backlog, poll cycles) beside per-connection panels would read
    # as the picked connection's unless the panel says otherwise.
    for panel in _panels(_dashboard()):
        exprs = " ".join(t["expr"] for t in panel["targets"])
        if "stocksync_" in exprs and "$connection" not in exprs:
            assert "all connections" in panel["title"] + panel.get("description", ""), panel[
                "title"
            ]


def _stat(title: str) -> dict[str, Any]:
    [panel] = [p for p in _panels(_dashboard()) if p["title"] == title]
    return panel


@pytest.mark.parametrize(
    ("title", "gauge"),
    [
        ("Time since last successful poll", "stocksync_last_successful_poll_timestamp_seconds"),
        (
            "Time since last reconciliation",
            "stocksync_reconciliation_last_success_timestamp_seconds",
        ),
    ],
)
def test_time_since_panels_show_a_daemon_that_never_succeeded_as_red_never(
    title: str, gauge: str
) -> None:
    # The gauge is 0 until the first success: the query must keep that sample (filtering it out
    # shows "No data", which looks like a scrape problem), and the panel calls it "never", red.
    panel = _stat(title)
    [expr] = [t["expr"] for t in panel["targets"]]
    assert re.fullmatch(rf"time\(\) - {gauge}\{{[^}}]*\}}", expr), expr
    ranges = [
        m["options"] for m in panel["fieldConfig"]["defaults"]["mappings"] if m["type"] == "range"
    ]
    never = [r for r in ranges if r["result"].get("text") == "never"]
    assert len(never) == 1
    # time() - 0 is the whole Unix epoch (over 1.7e9 s); a real age is far below 1e9 s.
    assert never[0]["from"] == 1e9
    assert never[0]["to"] is None
    assert never[0]["result"]["color"] == "red"


def test_dashboard_shows_the_version_and_uptime_of_each_instance() -> None:
    version = " ".join(t["expr"] for t in _stat("Version")["targets"])
    uptime = " ".join(t["expr"] for t in _stat("Up for")["targets"])
    assert "stocksync_build_info" in version
    assert "time() - stocksync_start_time_seconds" in uptime


def _exported() -> tuple[dict[str, str], set[str]]:
    """What a scrape of a fresh daemon shows: sample names -> family, and metric family names."""
    text = generate_latest(Metrics().registry).decode()
    parsed = {f.name: f.type for f in text_string_to_metric_families(text)}
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    samples: dict[str, str] = {}
    families: set[str] = set()
    for name, kind in parsed.items():
        # The text format exports a counter's or histogram's _created as a gauge of its own.
        if name.endswith("_created") and parsed.get(name.removesuffix("_created")) in suffixes:
            continue
        families.add(name)
        for suffix in suffixes.get(kind, ("",)):
            samples[name + suffix] = name
    return samples, families


def _alert_exprs() -> list[str]:
    return list(_indented_blocks(ALERTS.read_text(encoding="utf-8"), "expr"))


def _not_exported(names: set[str], allowed: set[str]) -> list[str]:
    # process_* come from the process collector, which exports only where /proc exists.
    if not Path("/proc/self/stat").exists():
        names = {n for n in names if not n.startswith("process_")}
    return sorted(names - allowed)


def test_every_metric_the_dashboard_and_alerts_query_is_exported() -> None:
    samples, _ = _exported()
    dashboard = _dashboard()
    queries = _dashboard_exprs(dashboard) + _alert_exprs()
    queries += [_variable_query(v) for v in _variables(dashboard).values() if v["type"] == "query"]
    used = {m for q in queries for m in METRIC_NAME.findall(q)}
    assert len(used) > 20  # the extraction found the queries at all
    assert _not_exported(used, set(samples)) == []


def test_every_metric_the_texts_mention_is_exported() -> None:
    # Descriptions and the guide may name a family ("stocksync_sync_lag_seconds") or a sample.
    samples, families = _exported()
    texts = [ALERTS.read_text(encoding="utf-8"), OPERATIONS.read_text(encoding="utf-8")]
    texts += [p.get("description", "") for p in _panels(_dashboard())]
    mentioned = {m for text in texts for m in METRIC_NAME.findall(text)}
    assert _not_exported(mentioned, set(samples) | families) == []


def test_dashboard_charts_every_stocksync_metric_family() -> None:
    samples, families = _exported()
    charted = {
        samples[m]
        for expr in _dashboard_exprs(_dashboard())
        for m in METRIC_NAME.findall(expr)
        if m in samples
    }
    assert sorted(f for f in families if f.startswith("stocksync_") and f not in charted) == []


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    # Grafana's variables replaced by values Prometheus accepts, each query as a recording rule.
    substitutions = {"$__rate_interval": "5m", "$job": ".*", "$instance": ".*", "$connection": ".*"}
    rules = []
    for number, expr in enumerate(_dashboard_exprs(_dashboard())):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"stocksync:dashboard_query_{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- operations guide


def _logged_events() -> dict[str, set[str]]:
    """Event name -> the levels the production code logs it at (calls like log.info("name"))."""
    events: dict[str, set[str]] = {}
    for source in DAEMON.rglob("*.py"):
        if "sim" in source.relative_to(DAEMON).parts:
            continue  # the simulators are test and demo machinery, not what operators run
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and EVENT_NAME.fullmatch(node.args[0].value)
            ):
                continue
            receiver = node.func.value
            name = (
                receiver.attr
                if isinstance(receiver, ast.Attribute)
                else getattr(receiver, "id", "")
            )
            if name.endswith("log") or name == "logger":
                events.setdefault(node.args[0].value, set()).add(node.func.attr)
    return events


def _documented_events() -> set[str]:
    """Event names in the first column of the guide's log event table."""
    guide = OPERATIONS.read_text(encoding="utf-8")
    section = guide.split("\n## Logs\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_operations_guide_names_only_log_events_the_code_emits() -> None:
    logged = _logged_events()
    assert len(logged) > 20  # the extraction found the log calls at all
    assert sorted(_documented_events() - set(logged)) == []


def test_every_warning_and_error_log_event_is_in_the_operations_guide() -> None:
    operator_events = {e for e, levels in _logged_events().items() if levels & OPERATOR_LEVELS}
    assert sorted(operator_events - _documented_events()) == []
