"""The command line an operator reads: every subcommand's help, and usage errors as exit 2."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from daemon.cli import build_parser, main, since_time


def _subcommands() -> list[str]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_help_has_a_description_examples_and_exit_statuses(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    text = capsys.readouterr().out

    assert exit_info.value.code == 0
    _usage, _, rest = text.partition("\n\n")
    description = rest.split("\n\n", 1)[0]
    assert description.strip().endswith("."), description
    assert len(description.split()) >= 10, description
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert examples
    assert all(line.startswith(f"  stocksync {name}") for line in examples), examples
    statuses = text.split("exit status:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in statuses][:1] == ["0"]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--variants", "5"],
        ["demo", "--variants", "many"],
        ["demo", "--poll-interval", "0.5"],
        ["demo", "--port", "70000"],
        ["demo", "--duration", "0"],
        ["history", "-c", "x.toml", "SKU", "--since", "last tuesday"],
        ["history", "-c", "x.toml", "SKU", "--limit", "0"],
    ],
)
def test_a_bad_option_value_is_a_usage_error_with_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: stocksync" in err
    assert "Traceback" not in err


NOW = datetime(2026, 5, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [("90m", timedelta(minutes=90)), ("12h", timedelta(hours=12)), ("2d", timedelta(days=2))],
)
def test_since_accepts_a_time_ago(text: str, ago: timedelta) -> None:
    assert since_time(text, now=NOW) == NOW - ago


def test_since_reads_a_date_without_an_offset_as_local_time() -> None:
    local_midnight = datetime(2026, 5, 1).astimezone()

    assert since_time("2026-05-01", now=NOW) == local_midnight.astimezone(UTC)


def test_since_keeps_an_explicit_offset() -> None:
    assert since_time("2026-05-01T14:30+02:00", now=NOW) == datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
