"""Per-item problems: recorded in the store, logged only when new or changed (reported once)."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from daemon.domain.models import Problem
from daemon.store import StateStore

log = structlog.get_logger(__name__)


async def note_problems(store: StateStore, connection: str, problems: Iterable[Problem]) -> None:
    """Record per-item problems; log only the new or changed ones."""
    problems = list(problems)
    if not problems:
        return
    for p in await store.note_problems(connection, problems):
        log.warning(
            "item_problem", connection=connection, kind=p.kind, subject=p.subject, detail=p.detail
        )
