"""A reload cannot change what the running process set up once: those keys need a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.config import load_settings
from daemon.service import _restart_only_changes

REPO = Path(__file__).resolve().parents[2]


def test_a_reload_changing_the_log_level_or_format_or_listener_says_a_restart_is_needed() -> None:
    env = {
        "KATANA_API_KEY": "k",
        "SHOPIFY_TOKEN_EU_STORE": "shpat_x",
        "SHOPIFY_TOKEN_US": "shpat_y",
    }
    old = load_settings(REPO / "config" / "stocksync.example.toml", env)
    new = replace(
        old,
        daemon=replace(old.daemon, log_level="debug", log_format="console", http_port=9999),
    )

    assert _restart_only_changes(old, new) == [
        "daemon.http_listen",
        "daemon.log_format",
        "daemon.log_level",
    ]
    assert _restart_only_changes(old, old) == []
