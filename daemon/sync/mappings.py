"""Per-connection mapping state: which Katana variant feeds which Shopify items, where.

Built from the Katana catalogue (cached in the store, refreshed incrementally), the connection's
Shopify catalogue (read at start-up, on SIGHUP and by the full reconciliation) and its config.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from daemon.config import ConnectionSettings
from daemon.domain.controls import apply_filter, describe_policy, rule_policies
from daemon.domain.mapping import MappingTable, build_mapping, resolve_locations
from daemon.domain.models import KatanaVariant, ShopifyVariant
from daemon.domain.quantity import QuantityPolicy
from daemon.katana.models import KatanaLocation


@dataclass(frozen=True)
class ConnectionMapping:
    """Everything the planner needs to know about one connection's catalogue."""

    settings: ConnectionSettings
    table: MappingTable
    # Katana location id -> the Shopify location gids it feeds (a Shopify location listed
    # under several Katana locations is a pool: fed their sum).
    locations: Mapping[int, tuple[str, ...]]
    # Inventory item gid -> its own policy (a variant map row's pack size or buffer).
    policies: Mapping[str, QuantityPolicy] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def mapped_levels(self) -> int:
        """How many (inventory item, Shopify location) pairs this connection keeps in step."""
        shopify_locations = len({gid for gids in self.locations.values() for gid in gids})
        return sum(len(t) for t in self.table.targets.values()) * shopify_locations

    def policy_of(self, inventory_item_id: str) -> QuantityPolicy:
        """The quantity rules of one inventory item: its own, else the connection's."""
        return self.policies.get(inventory_item_id, self.settings.policy)

    def rule_of(
        self, inventory_item_id: str, location_id: str, names: Mapping[int, str] | None = None
    ) -> str:
        """A level's rules beyond the seed formula in words (pool, pack size, buffer), for
        `plan` and `push`; empty when none applies. `names`: Katana location names by id."""
        parts = []
        pooled = sorted(k for k, gids in self.locations.items() if location_id in gids)
        if len(pooled) > 1:
            named = names or {}
            parts.append(
                "pool of " + " + ".join(named.get(k, f"Katana location {k}") for k in pooled)
            )
        described = describe_policy(self.policy_of(inventory_item_id))
        if described:
            parts.append(described)
        return "; ".join(parts)

    def changed_variants(self, previous: ConnectionMapping | None) -> set[int]:
        """Katana variants whose targets, locations or quantity rules differ from `previous`
        (they need a push: a changed rule is pushed at once, not at the next Katana change)."""
        if previous is None:
            return set(self.table.targets)
        if dict(previous.locations) != dict(self.locations):
            return set(self.table.targets)
        if previous.settings.policy != self.settings.policy:
            return set(self.table.targets)
        old, new = previous.table.targets, self.table.targets
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k in new}
        if previous.policies != self.policies:
            moved = {
                item
                for item in previous.policies.keys() | self.policies.keys()
                if previous.policies.get(item) != self.policies.get(item)
            }
            changed.update(
                k
                for k, targets in new.items()
                if any(t.inventory_item_id in moved for t in targets)
            )
        return changed


def build_connection_mapping(
    settings: ConnectionSettings,
    katana_variants: Iterable[KatanaVariant],
    shopify_variants: Iterable[ShopifyVariant],
    katana_locations: Iterable[KatanaLocation],
) -> ConnectionMapping:
    """Apply the mapping rules, the sync filter and the variant map's own rules, and resolve
    the location references of one connection."""
    locations = connection_locations(settings, katana_locations)
    variants = katana_variants if isinstance(katana_variants, Collection) else list(katana_variants)
    table = build_mapping(variants, shopify_variants, settings.variant_map)
    table = apply_filter(table, variants, settings.filters)
    policies = rule_policies(table.targets.values(), settings.target_rules, settings.policy)
    return ConnectionMapping(settings=settings, table=table, locations=locations, policies=policies)


def connection_locations(
    settings: ConnectionSettings, katana_locations: Iterable[KatanaLocation]
) -> dict[int, tuple[str, ...]]:
    """Katana location id -> Shopify location gids for one connection; LocationError when a
    configured Katana location is unknown or deleted."""
    live_locations = {loc.id: loc.name for loc in katana_locations if not loc.deleted}
    return resolve_locations([(m.katana, m.shopify) for m in settings.locations], live_locations)
