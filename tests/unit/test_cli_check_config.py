"""`stocksync check-config` (PRODUCT.md §4, §5): offline validation, exit 0 / 1 / 2."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from daemon.cli import COMMANDS, build_parser, main

GOOD = """
[daemon]
state_path = "state/stocksync.db"

[katana]
api_key_env = "CLI_TEST_KATANA_KEY"

[[connections]]
name = "eu"
shop = "eu.myshopify.com"
access_token_env = "CLI_TEST_EU_TOKEN"
sync_inventory = true
variant_map_file = "map.csv"

  [[connections.locations]]
  katana = "Main"
  shopify = ["gid://shopify/Location/1", "gid://shopify/Location/2"]

  [[connections.locations]]
  katana = 4
  shopify = "gid://shopify/Location/3"

[[connections]]
name = "us"
shop = "us.myshopify.com"
access_token_env = "CLI_TEST_EU_TOKEN"

  [[connections.locations]]
  katana = "Main"
  shopify = "gid://shopify/Location/9"
"""


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLI_TEST_KATANA_KEY", "cli-katana-secret")
    monkeypatch.setenv("CLI_TEST_EU_TOKEN", "cli-shopify-secret")


def write_config(tmp_path: Path, text: str = GOOD) -> Path:
    (tmp_path / "map.csv").write_text(
        "katana_variant_id,shopify_variant_id\n1,10\n2,gid://shopify/ProductVariant/20\n3,30\n"
    )
    path = tmp_path / "stocksync.toml"
    path.write_text(text)
    return path


@pytest.mark.usefixtures("secrets")
def test_valid_config_exits_0_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    assert main(["check-config", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"{path}: OK" in out
    assert f"state: {tmp_path / 'state' / 'stocksync.db'}" in out
    assert "connections: 2" in out
    assert (
        "eu (eu.myshopify.com): sync on, 2 Katana locations -> 3 Shopify locations, "
        "variant map 3 entries"
    ) in out
    assert (
        "us (us.myshopify.com): sync off, 1 Katana location -> 1 Shopify location, "
        "variant map 0 entries"
    ) in out


@pytest.mark.usefixtures("secrets")
def test_summary_never_shows_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(write_config(tmp_path))]) == 0
    out, err = capsys.readouterr()
    assert "cli-katana-secret" not in out + err
    assert "cli-shopify-secret" not in out + err


@pytest.mark.usefixtures("secrets")
def test_broken_config_exits_1_with_every_error_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace('state_path = "state/stocksync.db"', "poll_interval_seconds = 0")
    text = text.replace('name = "us"', 'name = "eu"')
    path = write_config(tmp_path, text)
    assert main(["check-config", "-c", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: daemon.poll_interval_seconds: must be at least 1, got 0",
        f'{path}: connections[1].name: "eu" is already used by connections[0]',
        "stocksync: 2 problems found",
    ]


def test_missing_secret_is_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLI_TEST_KATANA_KEY", raising=False)
    monkeypatch.setenv("CLI_TEST_EU_TOKEN", "t")
    path = write_config(tmp_path)
    assert main(["check-config", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "katana.api_key_env: environment variable CLI_TEST_KATANA_KEY is not set" in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("secrets")
def test_a_state_folder_that_cannot_be_entered_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    locked = tmp_path / "state"
    real_stat = Path.stat

    # The tests run as root, whom permissions never stop: the folder refuses here instead.
    def stat(self: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        if self.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "stat", stat)
    assert main(["check-config", "-c", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "daemon.state_path" in err
    assert str(locked / "stocksync.db") in err
    assert "permission denied" in err


def test_missing_config_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(tmp_path / "absent.toml")]) == 1
    assert "absent.toml: cannot read the config file" in capsys.readouterr().err


def test_check_config_without_a_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check-config"])
    assert caught.value.code == 2
    assert "-c/--config" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2


def test_every_documented_command_is_parsed() -> None:
    parser = build_parser()
    args = parser.parse_args(["reconcile", "-c", "x.toml", "--connection", "eu", "--dry-run"])
    assert (args.command, args.config, args.connection, args.dry_run) == (
        "reconcile",
        Path("x.toml"),
        "eu",
        True,
    )
    assert parser.parse_args(["plan", "-c", "x.toml", "--connection", "eu"]).connection == "eu"
    assert parser.parse_args(["release-hold", "-c", "x.toml", "eu"]).connection == "eu"
    assert parser.parse_args(["history", "-c", "x.toml", "SKU-1"]).sku == "SKU-1"
    for command in ("run", "sync-once", "mappings"):
        assert parser.parse_args([command, "-c", "x.toml"]).command == command
    assert parser.parse_args(["demo"]).command == "demo"


def test_every_subcommand_the_parser_accepts_has_a_command_to_run() -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subparsers.choices) == set(COMMANDS)
