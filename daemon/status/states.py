"""A connection's state on the status page: the most pressing situation wins, said in one
sentence, with since when and the error behind it.
"""

from __future__ import annotations

from datetime import datetime

from daemon.config import ConnectionSettings
from daemon.status.data import HeldInfo, KatanaState
from daemon.sync.mappings import ConnectionMapping


def _state(
    conn: ConnectionSettings,
    *,
    mapping: ConnectionMapping | None,
    held: HeldInfo | None,
    katana: KatanaState,
    cycle_error: str | None,
    cycle_since: datetime | None,
    push_error: str | None,
    push_since: datetime | None,
    synced: bool,
    waiting: int,
) -> tuple[str, str, datetime | None, str | None]:
    """(state, one-sentence summary, since when, error) — the most pressing situation wins."""
    if not conn.sync_inventory:
        return "off", "Sync is off (sync_inventory = false): Shopify is not updated.", None, None
    if held is not None:
        return (
            "held",
            "Held by the safety valve: nothing is pushed until an operator releases it.",
            held.since,
            held.reason,
        )
    if not katana.reachable:
        return (
            "katana_unreachable",
            "Katana unreachable: Shopify keeps the last quantities until it answers again.",
            katana.unreachable_since,
            katana.error,
        )
    if cycle_error is not None:
        return (
            "failing",
            "Sync cycles are failing: Shopify keeps the last quantities.",
            cycle_since,
            cycle_error,
        )
    if push_error is not None:
        return (
            "shopify_errors",
            "Shopify did not take the last push; it is retried every cycle.",
            push_since,
            push_error,
        )
    if mapping is None:
        return "starting", "Starting: reading the Katana and Shopify catalogues.", None, None
    if not synced:
        return (
            "full_sync_pending",
            "First full sync in progress: every mapped variant is being pushed.",
            None,
            None,
        )
    if waiting:
        plural = "variant" if waiting == 1 else "variants"
        return "catching_up", f"Catching up: {waiting} {plural} waiting to be pushed.", None, None
    return "in_sync", "In sync: every change Katana reported has reached Shopify.", None, None
