"""Freshness: how long after a Katana change Shopify's simulator accepted the new level.

The tracker is fed, right after each business event, Katana's formula for every Shopify level the
event could move (the oracle, computed from the simulator's state). Later it is given every level
change Shopify's simulator applied, and works out each event's lag:

- an event none of whose levels changed value is diff-suppressed: no push is due, no lag;
- a level is caught up by the first change applied after the event that sets it to the value
  the event produced, or to a value a later event produced before that change (the daemon may
  fold several events into one push);
- a level Shopify already shows right after the event (a storefront order lowers Shopify first)
  needs no push and is not waited for; an event with only such levels is not measured either;
- the event's lag is that of its slowest level; an event with a level never caught up is unsynced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from daemon.domain.models import LevelKey


class LevelChange(Protocol):
    """What the tracker reads of a change Shopify applied (daemon.sim.shopify.AppliedChange)."""

    @property
    def at(self) -> float: ...
    @property
    def item(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def after(self) -> int: ...


@dataclass(frozen=True)
class LagReport:
    """Lags of the events that changed at least one level, and how many did not count."""

    lags: tuple[float, ...]  # seconds, one per event that changed a level and was caught up
    suppressed: int  # events that changed no level's value
    shown: int  # events whose new levels Shopify already showed (a storefront order's own)
    unsynced: int  # events with a level Shopify never caught up with

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of the lags (None without lags)."""
        return percentile(self.lags, p)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    if not values:
        return None
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass
class _Event:
    at: float
    keys: tuple[LevelKey, ...]  # levels whose value the event changed


@dataclass
class LagTracker:
    """Katana's formula over time for the levels the events touched."""

    current: dict[LevelKey, int]  # the formula's value now, per level
    # Per level: (time, value) each time an event changed it, in time order.
    history: dict[LevelKey, list[tuple[float, int]]] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)
    suppressed: int = 0
    shown: int = 0  # events whose changed levels Shopify showed at once (storefront orders)
    # Per level: what Shopify showed right after each event that touched it.
    observed: dict[LevelKey, list[tuple[float, int]]] = field(default_factory=dict)

    @classmethod
    def starting_from(cls, levels: Mapping[LevelKey, int]) -> LagTracker:
        """Track from these values (the formula's, when Shopify is in sync)."""
        return cls(current=dict(levels))

    def record(
        self,
        at: float,
        levels: Mapping[LevelKey, int],
        shown: Mapping[LevelKey, int | None] | None = None,
    ) -> bool:
        """One event at `at` left these levels at these values; False if none changed.

        `shown` is what Shopify displayed right after the event: a storefront order lowers
        Shopify's level at once, and a level Shopify already shows needs no push, so it is not
        waited for. An event whose every changed level was already shown counts as `shown`.
        """
        changed = tuple(k for k, v in levels.items() if self.current.get(k) != v)
        for key, value in (shown or {}).items():
            if value is not None:
                self.observed.setdefault(key, []).append((at, value))
        for key in changed:
            self.current[key] = levels[key]
            self.history.setdefault(key, []).append((at, levels[key]))
        if not changed:
            self.suppressed += 1
            return False
        pending = tuple(k for k in changed if shown is None or shown.get(k) != levels[k])
        if pending:
            self.events.append(_Event(at, pending))
        else:
            self.shown += 1
        return True

    def report(self, changes: Iterable[LevelChange]) -> LagReport:
        """Each event's lag, given every level change Shopify applied (in any order)."""
        by_key: dict[LevelKey, list[tuple[float, int]]] = {}
        for change in changes:
            key = (change.item, change.location)
            if key in self.history:
                by_key.setdefault(key, []).append((change.at, change.after))
        for key, seen in self.observed.items():
            if key in self.history:
                # Shopify showing the right value counts however it got there.
                by_key.setdefault(key, []).extend(seen)
        for applied in by_key.values():
            applied.sort()
        lags: list[float] = []
        unsynced = 0
        for event in self.events:
            caught = [self._caught_up(key, event.at, by_key.get(key, [])) for key in event.keys]
            if any(t is None for t in caught):
                unsynced += 1
            else:
                lags.append(max(t for t in caught if t is not None) - event.at)
        return LagReport(tuple(lags), self.suppressed, self.shown, unsynced)

    def _caught_up(
        self, key: LevelKey, since: float, applied: Sequence[tuple[float, int]]
    ) -> float | None:
        """When Shopify first held a value the formula had at or after `since` for this level."""
        history = self.history[key]
        for at, value in applied:
            if at < since:
                continue
            if any(since <= t <= at and v == value for t, v in history):
                return at
        return None
