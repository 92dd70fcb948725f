"""`[daemon] status_token_env` / `status_token_file`: the optional status page token."""

from __future__ import annotations

from pathlib import Path

from daemon.config import Secret
from daemon.service import settings_secrets
from tests.unit.test_config import ENV, errors, load, one_error


def test_the_status_page_needs_no_token_by_default(tmp_path: Path) -> None:
    assert load(tmp_path).daemon.status_token is None


def test_the_status_token_is_read_from_the_named_environment_variable(tmp_path: Path) -> None:
    env = {**ENV, "STATUS_TOKEN": "status-secret-789"}
    settings = load(tmp_path, daemon='status_token_env = "STATUS_TOKEN"', env=env)
    assert settings.daemon.status_token == Secret("status-secret-789")


def test_the_status_token_is_read_from_a_file_without_its_trailing_newline(
    tmp_path: Path,
) -> None:
    (tmp_path / "status").write_text("status-secret-789\n", encoding="utf-8")
    settings = load(tmp_path, daemon='status_token_file = "status"')
    assert settings.daemon.status_token == Secret("status-secret-789")


def test_a_status_token_written_in_the_config_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    message = one_error(tmp_path, daemon='status_token = "status-secret-789"')
    assert "daemon.status_token" in message
    assert "must not be written in the config file" in message
    assert "status-secret-789" not in message


def test_a_status_token_variable_that_is_not_set_is_an_error(tmp_path: Path) -> None:
    message = one_error(tmp_path, daemon='status_token_env = "NOT_SET_ANYWHERE"')
    assert "daemon.status_token_env" in message
    assert "NOT_SET_ANYWHERE is not set" in message


def test_the_status_token_is_redacted_from_logs_like_every_secret(tmp_path: Path) -> None:
    env = {**ENV, "STATUS_TOKEN": "status-secret-789"}
    settings = load(tmp_path, daemon='status_token_env = "STATUS_TOKEN"', env=env)
    assert "status-secret-789" in settings_secrets(settings)
    assert "status-secret-789" not in repr(settings)


def test_status_token_env_and_file_together_are_refused(tmp_path: Path) -> None:
    found = errors(
        tmp_path, daemon='status_token_env = "STATUS_TOKEN"\nstatus_token_file = "status"'
    )
    assert any("set status_token_env or status_token_file, not both" in e for e in found)
