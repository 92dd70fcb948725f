"""How often the daemon can poll within Katana's request budget."""

from __future__ import annotations

from daemon.sync.sources import IDLE_CYCLE_REQUESTS, sustainable_poll_interval


def test_sustainable_poll_interval_fits_idle_cycles_in_katanas_budget() -> None:
    # 10 delta sources (3 row lists among them) + variants, products, materials, BOM rows.
    assert IDLE_CYCLE_REQUESTS == 14
    assert sustainable_poll_interval(60) == 14.0
    assert sustainable_poll_interval(600) == 1.4
