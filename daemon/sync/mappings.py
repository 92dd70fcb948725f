"""Per-connection mapping state: which Katana variant feeds which Shopify items, where.

Built from the Katana catalogue (cached in the store, refreshed incrementally), the connection's
Shopify catalogue (read at start-up, on SIGHUP and by the full reconciliation) and its config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daemon.config import ConnectionSettings
from daemon.domain.mapping import MappingTable, build_mapping, resolve_locations
from daemon.domain.models import KatanaVariant, ShopifyVariant
from daemon.katana.models import KatanaLocation


@dataclass(frozen=True)
class ConnectionMapping:
    """Everything the planner needs to know about one connection's catalogue."""

    settings: ConnectionSettings
    table: MappingTable
    # Katana location id -> the Shopify location gids it feeds.
    locations: Mapping[int, tuple[str, ...]]

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def mapped_levels(self) -> int:
        """How many (inventory item, Shopify location) pairs this connection keeps in step."""
        shopify_locations = sum(len(v) for v in self.locations.values())
        return sum(len(t) for t in self.table.targets.values()) * shopify_locations

    def changed_variants(self, previous: ConnectionMapping | None) -> set[int]:
        """Katana variants whose targets or locations differ from `previous` (they need a push)."""
        if previous is None:
            return set(self.table.targets)
        if dict(previous.locations) != dict(self.locations):
            return set(self.table.targets)
        old, new = previous.table.targets, self.table.targets
        return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k in new}


def build_connection_mapping(
    settings: ConnectionSettings,
    katana_variants: Iterable[KatanaVariant],
    shopify_variants: Iterable[ShopifyVariant],
    katana_locations: Iterable[KatanaLocation],
) -> ConnectionMapping:
    """Apply the mapping rules and resolve the location references of one connection."""
    locations = connection_locations(settings, katana_locations)
    table = build_mapping(katana_variants, shopify_variants, settings.variant_map)
    return ConnectionMapping(settings=settings, table=table, locations=locations)


def connection_locations(
    settings: ConnectionSettings, katana_locations: Iterable[KatanaLocation]
) -> dict[int, tuple[str, ...]]:
    """Katana location id -> Shopify location gids for one connection; LocationError when a
    configured Katana location is unknown or deleted."""
    live_locations = {loc.id: loc.name for loc in katana_locations if not loc.deleted}
    return resolve_locations([(m.katana, m.shopify) for m in settings.locations], live_locations)
