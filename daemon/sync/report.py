"""What a cycle did, per connection: the engine's answer to the daemon and the commands."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass
class ConnectionOutcome:
    """One connection's share of a cycle (or of a reconciliation's push)."""

    name: str
    full_sync: bool = False
    considered: int = 0
    planned: int = 0
    applied: int = 0
    rejected: int = 0
    stale_overwrites: int = 0
    held: bool = False
    errors: list[str] = field(default_factory=list)

    def log_pushed(self, unresolved: int) -> None:
        """One line per connection and push: totals, `unresolved` pairs of unknown outcome."""
        if self.planned:
            log.info(
                "pushed",
                planned=self.planned,
                applied=self.applied,
                rejected=self.rejected,
                stale_overwrites=self.stale_overwrites,
                unresolved=unresolved,
            )


@dataclass
class CycleReport:
    """What one cycle did."""

    run_id: str
    changed_variants: int = 0
    # A targeted cycle (webhook hints) read only what they named, no delta source.
    targeted: bool = False
    # Variants a safety-net delta poll found changed that no webhook delivery announced.
    unannounced: int = 0
    connections: list[ConnectionOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.errors for c in self.connections)

    @property
    def pushed(self) -> int:
        return sum(c.applied for c in self.connections)
