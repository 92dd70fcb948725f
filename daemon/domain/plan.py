"""Desired levels, the push planner, batching and the safety valve."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from daemon.domain.controls import describe_group, location_groups, pooled_quantities
from daemon.domain.mapping import MappingTable, normalize_sku
from daemon.domain.models import (
    DesiredLevel,
    KatanaVariant,
    LevelKey,
    PlannedPush,
    Problem,
    Quantity,
    SnapshotEntry,
)
from daemon.domain.quantity import (
    QuantityPolicy,
    QuantityTooHigh,
    QuantityTooLow,
    available,
)
from daemon.domain.stock import StockTable

# Shopify accepts at most 250 quantities per inventorySetQuantities call.
MAX_BATCH_SIZE = 250


def desired_levels(
    stock: StockTable,
    variants: Mapping[int, KatanaVariant],
    mapping: MappingTable,
    locations: Mapping[int, tuple[str, ...]],
    policy: QuantityPolicy,
    only: Collection[int] | None = None,
    *,
    policies: Mapping[str, QuantityPolicy] | None = None,
) -> tuple[list[DesiredLevel], list[Problem]]:
    """What Shopify should hold for each mapped variant, location and target, plus problems.

    `stock` is Katana's stock rows by variant, as the Katana client reads them. A variant whose
    stock could not be read, or whose quantity cannot be pushed, yields a Problem naming it
    (`katana_variant_id`): it is never taken as zero stock, and it stays dirty.

    A Shopify location listed under several Katana locations is a pool: the formula is applied
    once to their summed quantities (daemon/domain/controls.py). `policies` gives an inventory
    item its own policy (a pack size, a buffer of its own) instead of `policy`.
    """
    wanted = set(mapping.targets) if only is None else set(only) & mapping.targets.keys()
    # Katana locations (one, or a pool) in a stable order, each with the Shopify locations it
    # feeds.
    # (the Katana location when it is one, else None; the pool's; its Shopify locations; how a
    # problem names it)
    groups = [
        (members[0] if len(members) == 1 else None, members, shopify, describe_group(members))
        for members, shopify in location_groups(locations)
    ]
    own = policies or {}
    levels: list[DesiredLevel] = []
    problems: list[Problem] = []
    # The loop below runs once per (item, location) of a full sync: it builds each level
    # positionally and once, without intermediate objects.
    for variant_id in sorted(wanted):
        variant = variants.get(variant_id)
        if variant is None or variant.retired:
            # Retired (or, defensively, uncatalogued) variants never sync: Shopify keeps the
            # level last pushed.
            continue
        sku = normalize_sku(variant.sku)
        if not stock.readable(variant_id, locations):
            problems.append(
                Problem(
                    kind="stock_unreadable",
                    subject=f"katana_variant:{variant_id}",
                    detail=f"Katana variant {variant_id} (SKU {sku!r}) is not pushed: Katana "
                    "sent stock rows for it that cannot be read; it is read again next cycle",
                    katana_variant_id=variant_id,
                )
            )
            continue
        items = [target.inventory_item_id for target in mapping.targets[variant_id]]
        item_policies = [own.get(item, policy) for item in items] if own else None
        failures: list[tuple[str, str]] = []
        at = stock.quantities_at(variant_id)
        is_kit = variant.is_kit
        for single, members, shopify_locations, where in groups:
            # Katana lists no row where a variant never had stock: that is zero stock.
            in_stock: Quantity
            committed: Quantity
            potential: Quantity
            if single is not None:
                # One Katana location (nearly always): the full sync's hot path, inlined.
                row = at.get(single)
                if row is None:
                    in_stock, committed, potential = 0, 0, 0
                else:
                    in_stock, committed, kit = row
                    potential = kit if is_kit and kit is not None else 0
            else:
                try:
                    in_stock, committed, potential = pooled_quantities(at, members, is_kit=is_kit)
                except ValueError as exc:
                    failures.append(("quantity_invalid", f"{where}: {exc}"))
                    continue
            if item_policies is None:
                try:
                    quantity = available(in_stock, committed, potential, policy)
                except ValueError:
                    # Rare: the same call again, noting why (too high, too low, invalid).
                    _quantity(in_stock, committed, potential, policy, where, failures)
                    continue
                for shopify_location in shopify_locations:
                    for item in items:
                        levels.append(
                            DesiredLevel(variant_id, sku, item, shopify_location, quantity)
                        )
                continue
            # One quantity per distinct policy (a single and its packs share the units).
            quantities: dict[QuantityPolicy, int | None] = {}
            for item_policy in item_policies:
                if item_policy not in quantities:
                    quantities[item_policy] = _quantity(
                        in_stock, committed, potential, item_policy, where, failures
                    )
            for shopify_location in shopify_locations:
                for item, item_policy in zip(items, item_policies, strict=True):
                    own_quantity = quantities[item_policy]
                    if own_quantity is not None:
                        levels.append(
                            DesiredLevel(variant_id, sku, item, shopify_location, own_quantity)
                        )
        if failures:
            problems.append(_quantity_problem(variant_id, sku, failures))
    return levels, problems


def _quantity(
    in_stock: Quantity,
    committed: Quantity,
    potential: Quantity,
    policy: QuantityPolicy,
    where: str,
    failures: list[tuple[str, str]],
) -> int | None:
    """The formula at one location (or pool); None, with the failure noted, when it fails."""
    try:
        return available(in_stock, committed, potential, policy)
    except QuantityTooHigh as exc:
        failures.append(("quantity_too_high", f"{where}: {exc}"))
    except QuantityTooLow as exc:
        failures.append(("quantity_too_low", f"{where}: {exc}"))
    except ValueError as exc:
        failures.append(("quantity_invalid", f"{where}: {exc}"))
    return None


def _quantity_problem(variant_id: int, sku: str | None, failures: list[tuple[str, str]]) -> Problem:
    # One problem per variant (the store keys problems by subject); an unreadable number is
    # the more fundamental fault, so it names the kind when locations fail differently.
    kinds = {kind for kind, _ in failures}
    kind = next(
        k for k in ("quantity_invalid", "quantity_too_high", "quantity_too_low") if k in kinds
    )
    reasons = "; ".join(reason for _, reason in failures)
    return Problem(
        kind=kind,
        subject=f"katana_variant:{variant_id}",
        detail=f"Katana variant {variant_id} (SKU {sku!r}) is not pushed: {reasons}",
        katana_variant_id=variant_id,
    )


def plan_pushes(
    desired: Iterable[DesiredLevel],
    snapshot: Mapping[LevelKey, SnapshotEntry],
    *,
    force: bool = False,
    confirm: Collection[int] = (),
) -> list[PlannedPush]:
    """The pushes that make Shopify match `desired`, given what it was last told.

    A level equal to the snapshot is pushed anyway when its variant is in `confirm` (it changed
    in Katana and may have changed back): compared against the snapshot value, the push is a
    no-op where Shopify still shows it and a stale answer, overwritten, where Shopify drifted.
    """
    pushes: list[PlannedPush] = []
    for variant_id, sku, item, location, quantity in desired:
        entry = snapshot.get((item, location))
        # The last acknowledged value is the compare value, in flight or not: a request that
        # may still land must never meet an unconditional set (PRODUCT.md §3). Null only where
        # nothing was ever acknowledged.
        known = None if entry is None else entry.quantity
        unsure = entry is not None and entry.in_flight
        if known != quantity or unsure or force or variant_id in confirm:
            pushes.append(PlannedPush(variant_id, sku, item, location, quantity, known))
    return pushes


def batches(pushes: Sequence[PlannedPush], size: int = MAX_BATCH_SIZE) -> list[list[PlannedPush]]:
    """Split pushes, in order, into Shopify calls of at most `size` quantities each."""
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch size must be between 1 and {MAX_BATCH_SIZE}, got {size}")
    calls = [list(pushes[start : start + size]) for start in range(0, len(pushes), size)]
    # Shopify rejects a pair twice in one call. A plan never holds a pair twice (desired_levels
    # yields one level per pair: an item has one Katana variant, a Shopify location one Katana
    # location or one pool of them), so this is a bug guard, checked per call: small sets are
    # several times faster than one set of a full sync's 300,000 pairs.
    for call in calls:
        if len({(push.inventory_item_id, push.location_id) for push in call}) != len(call):
            seen: set[LevelKey] = set()
            for push in call:
                if push.key in seen:
                    raise ValueError(
                        f"duplicate push for inventory item {push.inventory_item_id} "
                        f"at location {push.location_id}"
                    )
                seen.add(push.key)
    return calls


@dataclass(frozen=True, slots=True)
class Hold:
    """The safety valve tripped: this many mapped levels would drop to 0 at once."""

    drops: int
    mapped: int
    fraction: float


def drops_to_zero(plan: Iterable[PlannedPush], snapshot: Mapping[LevelKey, SnapshotEntry]) -> int:
    """How many planned pushes set a level stocksync last left above 0 to 0."""
    drops = 0
    for push in plan:
        if push.quantity != 0:
            continue
        entry = snapshot.get(push.key)
        # In-flight pairs count too: the last value we sent may well be what Shopify shows.
        if entry is not None and entry.quantity is not None and entry.quantity > 0:
            drops += 1
    return drops


def safety_valve(
    drops: int, mapped_levels: int, max_drop_fraction: float, min_drop_count: int
) -> Hold | None:
    """Hold the push when too many mapped levels (`drops_to_zero`) would drop to 0 at once."""
    if mapped_levels <= 0:
        return None
    # Compare exactly against the decimal the operator wrote: 0.57 × 100 is 56.999… in floats.
    limit = Fraction(repr(max_drop_fraction)) * mapped_levels
    if drops > limit and drops >= min_drop_count:
        return Hold(drops=drops, mapped=mapped_levels, fraction=drops / mapped_levels)
    return None
