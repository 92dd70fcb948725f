"""Long operator commands show their phases at a terminal and stay plain when piped."""

from __future__ import annotations

import io

import pytest

from daemon import commands


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_are_shown_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(commands.sys, "stderr", terminal)

    show = commands._progress()
    assert show is not None
    show("reading Katana stock of every variant")

    assert "reading Katana stock of every variant..." in terminal.getvalue()


def test_no_progress_when_output_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands.sys, "stderr", io.StringIO())

    assert commands._progress() is None
