"""Logging pipeline: format choice, one pipeline for stdlib loggers, redaction, HealthLog."""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import secrets
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import pytest
import structlog
from structlog.testing import capture_logs

import daemon
from daemon.logs import (
    REDACTED,
    HealthLog,
    add_secrets,
    configure_logging,
    describe_error,
)
from daemon.secrets import Secret


class TtyStream(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    apscheduler = logging.getLogger("apscheduler")
    apscheduler_level = apscheduler.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    apscheduler.setLevel(apscheduler_level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def fresh_secret() -> str:
    """A unique credential-like value, so tests do not depend on each other's registrations."""
    return "sk_" + secrets.token_hex(12)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_auto_format_is_json_when_the_stream_is_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("auto", stream=out)

    structlog.get_logger("daemon.engine").info("cycle_finished", pushed=3)

    [line] = json_lines(out)
    assert line["event"] == "cycle_finished"
    assert line["pushed"] == 3
    assert line["level"] == "info"
    assert line["logger"] == "daemon.engine"
    assert line["timestamp"].endswith("Z")


def test_auto_format_is_console_when_the_stream_is_a_tty() -> None:
    out = TtyStream()
    configure_logging("auto", stream=out)

    structlog.get_logger("daemon.engine").info("cycle_finished", pushed=3)

    text = out.getvalue()
    assert "cycle_finished" in text
    assert "pushed" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_explicit_json_format_wins_over_a_tty() -> None:
    out = TtyStream()
    configure_logging("json", stream=out)

    structlog.get_logger().warning("held")

    assert json_lines(out)[0]["level"] == "warning"


def test_unknown_log_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        configure_logging("xml", stream=io.StringIO())


def test_context_variables_are_merged_into_every_line() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    structlog.contextvars.bind_contextvars(run_id="r-42")

    structlog.get_logger().info("cycle_started")
    logging.getLogger("aiohttp.server").warning("stdlib line")

    assert [line["run_id"] for line in json_lines(out)] == ["r-42", "r-42"]


def test_lines_below_the_configured_level_are_dropped() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out, level=logging.INFO)

    structlog.get_logger().debug("noise")
    logging.getLogger("aiohttp.server").debug("stdlib noise")
    structlog.get_logger().info("signal")

    assert [line["event"] for line in json_lines(out)] == ["signal"]


def test_configuring_twice_does_not_duplicate_lines() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    configure_logging("json", stream=out)

    structlog.get_logger().info("once")
    logging.getLogger("asyncio").warning("once too")

    assert [line["event"] for line in json_lines(out)] == ["once", "once too"]


def test_reconfiguring_moves_output_to_the_new_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", stream=first)
    configure_logging("json", stream=second, level=logging.DEBUG)

    structlog.get_logger().debug("after")

    assert first.getvalue() == ""
    assert json_lines(second)[0]["event"] == "after"


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "client_secret",
        "password",
        "API_KEY",
        "Authorization",
        "webhook_token",
    ],
)
def test_values_of_sensitive_keys_are_redacted(key: str) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)

    structlog.get_logger().info("request", **{key: "plain-value-xyz"})

    [line] = json_lines(out)
    assert line[key] == REDACTED
    assert "plain-value-xyz" not in out.getvalue()


def test_sensitive_keys_are_redacted_inside_nested_dicts_and_lists() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)

    structlog.get_logger().info(
        "request",
        headers={"Authorization": "Bearer abc", "Accept": "application/json"},
        connections=[{"name": "eu", "credentials": {"client_secret": "cs-123"}}],
    )

    [line] = json_lines(out)
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["connections"] == [{"name": "eu", "credentials": {"client_secret": REDACTED}}]


def test_registered_secret_values_are_redacted_inside_any_string() -> None:
    secret = fresh_secret()
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=[secret])

    structlog.get_logger().info(
        f"event mentions {secret}",
        url=f"https://shop.example/graphql?x={secret}",
        body=[{"echo": f"prefix{secret}suffix"}],
        reason=ValueError(f"rejected {secret}"),
    )

    assert secret not in out.getvalue()
    [line] = json_lines(out)
    assert line["event"] == f"event mentions {REDACTED}"
    assert line["url"] == f"https://shop.example/graphql?x={REDACTED}"
    assert line["body"] == [{"echo": f"prefix{REDACTED}suffix"}]
    assert line["reason"] == f"rejected {REDACTED}"


def test_secrets_added_after_configuration_are_redacted() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    secret = fresh_secret()

    add_secrets([Secret(secret)])
    structlog.get_logger().info("loaded", detail=f"key={secret}")

    assert json_lines(out)[0]["detail"] == f"key={REDACTED}"


def test_percent_encoded_secret_is_redacted() -> None:
    secret = fresh_secret() + "/+="
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=[secret])

    structlog.get_logger().info("get", url=f"https://x.example/?k={quote(secret, safe='')}")

    assert json_lines(out)[0]["url"] == f"https://x.example/?k={REDACTED}"


def test_secret_values_shorter_than_six_characters_are_ignored() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=["abcde"])

    structlog.get_logger().info("word", detail="abcde fghij")

    assert json_lines(out)[0]["detail"] == "abcde fghij"


def test_secret_in_exception_message_is_redacted_in_json_tracebacks() -> None:
    secret = fresh_secret()
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=[secret])

    try:
        try:
            raise KeyError(f"cause {secret}")
        except KeyError as cause:
            error = RuntimeError(f"request with {secret} failed")
            error.add_note(f"note {secret}")
            raise error from cause
    except RuntimeError:
        structlog.get_logger().exception("push_failed")

    assert secret not in out.getvalue()
    [line] = json_lines(out)
    messages = [frame["exc_value"] for frame in line["exception"]]
    assert f"request with {REDACTED} failed" in messages
    assert f"'cause {REDACTED}'" in messages
    assert line["exception"][0]["exc_notes"] == [f"note {REDACTED}"]


def test_secret_in_console_traceback_text_is_redacted() -> None:
    secret = fresh_secret()
    out = io.StringIO()
    configure_logging("console", stream=out, secrets=[secret])

    try:
        raise RuntimeError(f"request with {secret} failed")
    except RuntimeError:
        structlog.get_logger().exception("push_failed")

    text = out.getvalue()
    assert "Traceback (most recent call last)" in text
    assert f"RuntimeError: request with {REDACTED} failed" in text
    assert secret not in text


def test_traceback_never_shows_local_variables() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)

    def fail() -> None:
        local_credential = "unregistered-local-value"
        raise ValueError(len(local_credential))

    try:
        fail()
    except ValueError:
        structlog.get_logger().exception("failed")

    assert "unregistered-local-value" not in out.getvalue()
    frames = json_lines(out)[0]["exception"][0]["frames"]
    assert frames
    assert all("locals" not in frame for frame in frames)


@pytest.mark.parametrize("name", ["aiohttp.access", "aiohttp.server", "apscheduler", "asyncio"])
def test_stdlib_loggers_go_through_the_same_pipeline(name: str) -> None:
    secret = fresh_secret()
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=[secret])

    logging.getLogger(name).error("lost connection using %s", secret)

    [line] = json_lines(out)
    assert line["event"] == f"lost connection using {REDACTED}"
    assert line["level"] == "error"
    assert line["logger"] == name
    assert line["timestamp"].endswith("Z")


def test_stdlib_exception_is_formatted_and_redacted() -> None:
    secret = fresh_secret()
    out = io.StringIO()
    configure_logging("json", stream=out, secrets=[secret])

    try:
        raise ConnectionError(f"refused for {secret}")
    except ConnectionError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    [line] = json_lines(out)
    assert line["exception"][0]["exc_type"] == "ConnectionError"
    assert line["exception"][0]["exc_value"] == f"refused for {REDACTED}"


def test_apscheduler_is_quiet_below_warning_by_default() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)

    logging.getLogger("apscheduler.scheduler").info("Added job")
    logging.getLogger("apscheduler.executors.default").warning("Run time was missed")

    assert [line["event"] for line in json_lines(out)] == ["Run time was missed"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(logs: list[MutableMapping[str, Any]], level: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == level]


def test_health_log_logs_one_error_for_consecutive_failures_and_one_info_on_recovery() -> None:
    clock = FakeClock()
    health = HealthLog(clock=clock)

    with capture_logs() as logs:
        for _ in range(5):
            health.failed("katana", ConnectionError("Katana unreachable"))
            clock.now += 30
        health.succeeded("katana")
        health.succeeded("katana")

    [error] = events(logs, "error")
    assert error["event"] == "source_failed"
    assert error["source"] == "katana"
    assert error["error"] == "ConnectionError: Katana unreachable"
    assert len(events(logs, "debug")) == 4
    [info] = events(logs, "info")
    assert info["event"] == "source_recovered"
    assert info["failures"] == 5
    assert info["failed_for_seconds"] == 150.0


def test_health_log_logs_error_again_when_the_error_changes() -> None:
    health = HealthLog(clock=FakeClock())

    with capture_logs() as logs:
        health.failed("shopify:eu", "HTTP 503")
        health.failed("shopify:eu", "HTTP 503")
        health.failed("shopify:eu", "HTTP 401")

    assert [e["error"] for e in events(logs, "error")] == ["HTTP 503", "HTTP 401"]
    assert events(logs, "error")[1]["failures"] == 3


def test_health_log_success_without_failure_logs_nothing() -> None:
    health = HealthLog(clock=FakeClock())

    with capture_logs() as logs:
        health.succeeded("katana")

    assert logs == []
    assert not health.failing("katana")


def test_health_log_tracks_sources_independently() -> None:
    health = HealthLog(clock=FakeClock())

    with capture_logs() as logs:
        health.failed("katana", "down")
        health.failed("shopify:eu", "down")
        health.succeeded("katana")

    assert [(e["event"], e["source"]) for e in logs] == [
        ("source_failed", "katana"),
        ("source_failed", "shopify:eu"),
        ("source_recovered", "katana"),
    ]
    assert health.failing("shopify:eu")


def test_health_log_failure_after_recovery_is_a_new_error() -> None:
    health = HealthLog(clock=FakeClock())

    with capture_logs() as logs:
        health.failed("katana", "down")
        health.succeeded("katana")
        health.failed("katana", "down")

    assert [e["event"] for e in logs] == ["source_failed", "source_recovered", "source_failed"]


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (TimeoutError(), "TimeoutError"),
        (ValueError("bad quantity"), "ValueError: bad quantity"),
        ("already text", "already text"),
    ],
)
def test_describe_error_names_the_type_and_message(error: BaseException | str, text: str) -> None:
    assert describe_error(error) == text


def test_health_log_outage_says_since_when_on_the_wall_clock_and_the_latest_error() -> None:
    clock, wall = FakeClock(), FakeClock()
    wall.now = 1_700_000_000.0
    health = HealthLog(clock=clock, wall_clock=wall)

    with capture_logs():
        assert health.outage("poll") is None
        health.failed("poll", ConnectionError("refused"))
        wall.now += 90
        health.failed("poll", TimeoutError())
        outage = health.outage("poll")
        health.succeeded("poll")

    assert outage is not None
    assert outage.started_at == 1_700_000_000.0  # the first failure, not the latest
    assert outage.failures == 2
    assert outage.message == "TimeoutError"
    assert outage.error_type is TimeoutError
    assert health.outage("poll") is None


# -- journald -------------------------------------------------------------------------------------


def _journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, ours: bool = True) -> TextIO:
    """A file standing in for the journal's stream, and JOURNAL_STREAM as systemd sets it (naming
    that file, or with `ours=False` another one: output redirected away from the journal)."""
    stream = (tmp_path / "journal").open("w+", encoding="utf-8")
    named = stream if ours else (tmp_path / "elsewhere").open("w", encoding="utf-8")
    status = os.fstat(named.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
    return stream


def _written(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_under_journald_every_line_starts_with_its_syslog_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _journal_file(tmp_path, monkeypatch)
    configure_logging("json", stream=stream, level=logging.DEBUG)
    log = structlog.get_logger("test")

    log.debug("a_debug")
    log.info("an_info")
    log.warning("a_warning")
    log.error("an_error")
    log.critical("a_critical")
    logging.getLogger("aiohttp.client").error("from the stdlib")

    lines = _written(stream)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>", "<3>"]
    # journald strips the prefix: what `journalctl -o cat` shows is the JSON line.
    assert json.loads(lines[3][3:])["event"] == "an_error"


def test_without_journald_lines_carry_no_priority_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    configure_logging("json", stream=out)

    structlog.get_logger("test").error("an_error")

    assert json_lines(out)[0]["event"] == "an_error"


def test_output_redirected_away_from_the_journal_carries_no_priority_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JOURNAL_STREAM is inherited by children and survives `2> file`: only the stream it names
    # is the journal.
    stream = _journal_file(tmp_path, monkeypatch, ours=False)
    configure_logging("json", stream=stream)

    structlog.get_logger("test").error("an_error")

    assert json.loads(_written(stream)[0])["event"] == "an_error"


def test_under_journald_every_line_of_a_console_traceback_carries_the_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # journald makes each line an entry of its own: a traceback line without the prefix would
    # be filed at priority info, away from its error.
    stream = _journal_file(tmp_path, monkeypatch)
    configure_logging("console", stream=stream)

    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("test").exception("it_failed")

    lines = _written(stream)
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)


@pytest.mark.parametrize(
    ("name", "level"),
    [("debug", logging.DEBUG), ("info", logging.INFO), ("WARNING", logging.WARNING)],
)
def test_a_log_level_may_be_given_by_name(name: str, level: int) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out, level=name)

    assert logging.getLogger().level == level


def test_daemon_started_names_the_version_and_python() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)

    structlog.get_logger("daemon.service").info("daemon_started", config="x.toml")

    [line] = json_lines(out)
    assert line["version"] == daemon.__version__
    assert line["python"] == platform.python_version()
