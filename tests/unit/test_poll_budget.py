"""How often the daemon can poll within Katana's request budget."""

from __future__ import annotations

from daemon.engine import IDLE_CYCLE_REQUESTS, sustainable_poll_interval


def test_sustainable_poll_interval_fits_idle_cycles_in_katanas_budget() -> None:
    assert IDLE_CYCLE_REQUESTS == 11
    assert sustainable_poll_interval(60) == 11.0
    assert sustainable_poll_interval(600) == 1.1
