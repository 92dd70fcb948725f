"""Merchant controls beyond the seed rules: pooled locations, pack sizes, per-variant buffers and
sync filters. Pure: `desired_levels` and the mapping apply them, config validates them.

Pooled locations. A Shopify location may be fed by several Katana locations of one connection
when one `[[connections.locations]]` entry lists them (`katana = ["Warehouse", "Overflow"]`).
The formula is applied ONCE, to the summed quantities: in stock, committed and (for a kit)
potential are each added exactly over the pool's locations (a location without a row adds 0),
then buffer, floor, pack size, range check and clamp follow as for one location. So 0.5 + 0.5
units are 1 unit; a location whose commitments exceed its stock lowers the pool (its shortfall
is served from the others, never clamped away); the buffer is held back once per Shopify
location, not once per Katana location. A pool member whose stock cannot be read makes the
pooled level unreadable: never a partial sum.

Pack sizes and buffers. A variant map row may give the Shopify variant it names its own
`units_per_pack` (its level is floor(available units / N)) and `buffer` (Katana units held back
instead of the connection's buffer, before the pack division).

Sync filters. Per connection, Katana variants are kept or left out by SKU and by their product's
or material's category (`category_name`), with fnmatch-style globs (`*`, `?`, `[seq]`, `[!seq]`,
case-sensitive). A variant left out is reported as filtered and its Shopify levels are left as
last pushed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from daemon.domain.mapping import MappingTable, normalize_sku
from daemon.domain.models import KatanaVariant, Quantity, ShopifyVariant
from daemon.domain.quantity import QuantityPolicy, kit_potential, sum_quantities

# (in stock, committed, potential) of one variant at one Katana location, as StockTable gives it.
Quantities = tuple[Quantity, Quantity, Quantity | None]
# (in stock, committed, potential) where Katana lists no row.
_NO_STOCK: Quantities = (0, 0, None)


# --------------------------------------------------------------------------- pooled locations


def location_groups(
    locations: Mapping[int, Sequence[str]],
) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
    """Shopify locations grouped by the Katana locations that feed them, in a stable order.

    `locations` is Katana location id -> the Shopify locations it feeds. A Shopify location
    listed under several Katana locations is a pool fed by their sum. Without pools each group
    is one Katana location with the Shopify locations it feeds, in the order given.
    """
    feeders: dict[str, list[int]] = {}
    for katana_id in sorted(locations):
        for gid in locations[katana_id]:
            members = feeders.setdefault(gid, [])
            if katana_id not in members:
                members.append(katana_id)
    groups: dict[tuple[int, ...], list[str]] = {}
    for gid, members in feeders.items():
        groups.setdefault(tuple(members), []).append(gid)
    return sorted((members, tuple(gids)) for members, gids in groups.items())


def pooled_quantities(
    at: Mapping[int, Quantities], members: Sequence[int], *, is_kit: bool
) -> tuple[Quantity, Quantity, Quantity]:
    """(in stock, committed, potential) summed exactly over a pool's Katana locations.

    Potential counts only for a kit (`kit_potential`); a location without a row adds nothing.
    Raises ValueError when a quantity is not a number or the sum cannot be held exactly.
    """
    if len(members) == 1:
        in_stock, committed, potential = at.get(members[0], _NO_STOCK)
        return in_stock, committed, kit_potential(potential, is_kit=is_kit)
    rows = [at.get(member, _NO_STOCK) for member in members]
    return (
        sum_quantities((r[0] for r in rows), field="in_stock"),
        sum_quantities((r[1] for r in rows), field="committed"),
        sum_quantities((kit_potential(r[2], is_kit=is_kit) for r in rows), field="potential"),
    )


def describe_group(members: Sequence[int]) -> str:
    """How a problem names the Katana side of a level: one location, or a pool."""
    if len(members) == 1:
        return f"Katana location {members[0]}"
    return "Katana locations " + " + ".join(str(m) for m in members) + " (pooled)"


# --------------------------------------------------------------------------- pack sizes, buffers


@dataclass(frozen=True, slots=True)
class TargetRule:
    """A variant map row's own rules for the Shopify variant it names."""

    units_per_pack: int = 1
    buffer: int | None = None  # Katana units; None = the connection's buffer

    def __post_init__(self) -> None:
        if self.units_per_pack < 1:
            raise ValueError(f"units_per_pack must be >= 1, got {self.units_per_pack!r}")
        if self.buffer is not None and self.buffer < 0:
            raise ValueError(f"buffer must be >= 0, got {self.buffer!r}")

    def policy(self, connection: QuantityPolicy) -> QuantityPolicy:
        """The connection's policy with this row's pack size and, if it has one, buffer."""
        return replace(
            connection,
            units_per_pack=self.units_per_pack,
            buffer=connection.buffer if self.buffer is None else self.buffer,
        )

    def describe(self) -> str:
        """The row's rules in words (empty for a row without any)."""
        parts = []
        if self.units_per_pack != 1:
            parts.append(f"pack of {self.units_per_pack}")
        if self.buffer is not None:
            parts.append(f"buffer {self.buffer}")
        return ", ".join(parts)


def describe_policy(policy: QuantityPolicy) -> str:
    """A level's quantity rules in words, for `plan` and `push`."""
    parts = []
    if policy.units_per_pack != 1:
        parts.append(f"pack of {policy.units_per_pack}")
    if policy.buffer:
        parts.append(f"buffer {policy.buffer}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- sync filters


def _compiled(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _first_match(patterns: Sequence[str], text: str) -> str:
    return next(p for p in patterns if fnmatch.fnmatchcase(text, p))


@dataclass(frozen=True)
class SyncFilter:
    """Which Katana variants a connection syncs, by SKU and by product or material category.

    Each configured list narrows: a variant syncs when its SKU matches an `include_skus`
    pattern (if any are set), its category matches an `include_categories` pattern (if any),
    and neither matches an exclude pattern. A variant without a SKU has the SKU "" and one
    without a category matches no category pattern.
    """

    include_skus: tuple[str, ...] = ()
    exclude_skus: tuple[str, ...] = ()
    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    _regexes: tuple[re.Pattern[str] | None, ...] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_regexes",
            tuple(
                _compiled(p)
                for p in (
                    self.include_skus,
                    self.exclude_skus,
                    self.include_categories,
                    self.exclude_categories,
                )
            ),
        )

    @property
    def active(self) -> bool:
        """Whether any rule is set (without one every variant syncs)."""
        return any(r is not None for r in self._regexes)

    @property
    def uses_categories(self) -> bool:
        """Whether a rule reads categories."""
        return bool(self.include_categories or self.exclude_categories)

    def excludes(self, sku: str | None, category: str | None) -> str | None:
        """Why a variant with this SKU and category is left out; None when it syncs."""
        include_skus, exclude_skus, include_categories, exclude_categories = self._regexes
        text = normalize_sku(sku) or ""
        if exclude_skus is not None and exclude_skus.match(text):
            pattern = _first_match(self.exclude_skus, text)
            return f"SKU {text!r} matches exclude_skus pattern {pattern!r}"
        if (
            exclude_categories is not None
            and category is not None
            and exclude_categories.match(category)
        ):
            pattern = _first_match(self.exclude_categories, category)
            return f"category {category!r} matches exclude_categories pattern {pattern!r}"
        if include_skus is not None and not include_skus.match(text):
            return f"SKU {text!r} matches no include_skus pattern"
        if include_categories is not None:
            if category is None:
                return "no category, and include_categories is set"
            if not include_categories.match(category):
                return f"category {category!r} matches no include_categories pattern"
        return None

    def describe(self) -> str:
        """The rules in words, for reports (empty when none is set)."""
        parts = [
            f"{name} {list(patterns)}"
            for name, patterns in (
                ("include_skus", self.include_skus),
                ("exclude_skus", self.exclude_skus),
                ("include_categories", self.include_categories),
                ("exclude_categories", self.exclude_categories),
            )
            if patterns
        ]
        return "; ".join(parts)


NO_FILTER = SyncFilter()


def apply_filter(
    table: MappingTable, variants: Iterable[KatanaVariant], sync_filter: SyncFilter
) -> MappingTable:
    """The table with the variants `sync_filter` leaves out moved from `targets` to `filtered`.

    Applied after the mapping rules, so a filtered variant keeps its Shopify variants: they are
    left as last pushed, never fed by another Katana variant instead.
    """
    if not sync_filter.active:
        return table
    mapped = table.targets
    filtered: dict[int, str] = {}
    for variant in variants:
        if variant.id in mapped:
            reason = sync_filter.excludes(variant.sku, variant.category)
            if reason is not None:
                filtered[variant.id] = reason
    if not filtered:
        return table
    targets = {k: v for k, v in mapped.items() if k not in filtered}
    left_out = {k: mapped[k] for k in filtered}
    return replace(table, targets=targets, filtered=filtered, filtered_targets=left_out)


def rule_policies(
    targets: Iterable[Sequence[ShopifyVariant]],
    rules: Mapping[str, TargetRule],
    connection: QuantityPolicy,
) -> dict[str, QuantityPolicy]:
    """Inventory item gid -> its own policy, for the Shopify variants a map row gives rules."""
    policies: dict[str, QuantityPolicy] = {}
    if not rules:
        return policies
    for shopify in targets:
        for target in shopify:
            rule = rules.get(target.id)
            if rule is not None:
                policies[target.inventory_item_id] = rule.policy(connection)
    return policies
