"""The mapping table (which Katana variant feeds which Shopify variants) and location resolution."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from daemon.domain.models import KatanaVariant, Problem, ShopifyVariant


@dataclass(frozen=True, slots=True)
class MappingTable:
    """One connection's mapping of Katana variants to the Shopify variants they feed."""

    targets: Mapping[
        int, tuple[ShopifyVariant, ...]
    ]  # katana variant id -> tracked Shopify variants
    shadowed: Mapping[int, int]  # katana variant id -> the katana variant that wins its SKU
    unmapped_katana: frozenset[int]  # live katana variants with no (tracked) Shopify target
    untracked: tuple[ShopifyVariant, ...]  # matched but tracked = false (skipped)
    duplicate_skus_katana: frozenset[str]
    duplicate_skus_shopify: frozenset[str]
    unknown_map_entries: tuple[tuple[int, str], ...]  # variant map rows naming a missing variant
    # katana variant id -> why the connection's sync filter leaves it out, and the Shopify
    # variants it would feed (left as last pushed); see daemon/domain/controls.py
    filtered: Mapping[int, str] = field(default_factory=dict)
    filtered_targets: Mapping[int, tuple[ShopifyVariant, ...]] = field(default_factory=dict)

    def problems(self) -> list[Problem]:
        """One Problem per shadowed variant, untracked Shopify variant and unknown map entry."""
        out = [
            Problem(
                kind="shadowed_sku",
                subject=f"katana_variant:{loser}",
                detail=(
                    f"Katana variant {loser} does not sync: Katana variant {winner}, created "
                    "more recently, has the same SKU (or the same variant map target) and "
                    "takes precedence."
                ),
            )
            for loser, winner in sorted(self.shadowed.items())
        ]
        out.extend(
            Problem(
                kind="untracked",
                subject=variant.id,
                detail=(
                    f"Shopify variant {variant.id} (SKU {variant.sku!r}) is mapped to Katana "
                    "but Shopify does not track its inventory, so it is skipped."
                ),
            )
            for variant in self.untracked
        )
        live = self.targets.keys() | self.shadowed.keys() | self.unmapped_katana
        out.extend(
            Problem(
                kind="unknown_map_entry",
                subject=f"katana_variant:{katana_id}",
                detail=(
                    f"Variant map entry {katana_id} -> {shopify_id} is ignored: "
                    + (
                        f"Shopify variant {shopify_id} is not in the shop."
                        if katana_id in live
                        else f"Katana variant {katana_id} does not exist."
                    )
                ),
            )
            for katana_id, shopify_id in self.unknown_map_entries
        )
        return out


def normalize_sku(sku: str | None) -> str | None:
    """The SKU as matched: surrounding whitespace ignored, blank = no SKU."""
    if sku is None:
        return None
    stripped = sku.strip()
    return stripped or None


def _newest(variant: KatanaVariant) -> tuple[datetime, int]:
    # Most recently created wins; a tie on created_at goes to the higher id (created later).
    return (variant.created_at, variant.id)


class _ShopifyBySku:
    """Shopify variants by normalised SKU, without a list for every SKU.

    A shop of 100,000 variants has almost as many SKUs, nearly all held by one variant: the
    first variant of a SKU is kept as itself, and a list exists only for a shared SKU. (A
    list per SKU made the mapping rebuild the peak of a large daemon's memory.)
    """

    def __init__(self) -> None:
        self.first: dict[str, ShopifyVariant] = {}
        self.shared: dict[str, list[ShopifyVariant]] = {}  # SKUs held by more than one variant

    def add(self, sku: str, variant: ShopifyVariant) -> None:
        first = self.first.setdefault(sku, variant)
        if first is not variant:
            self.shared.setdefault(sku, [first]).append(variant)

    def get(self, sku: str) -> Sequence[ShopifyVariant]:
        shared = self.shared.get(sku)
        if shared is not None:
            return shared
        first = self.first.get(sku)
        return () if first is None else (first,)


def _sku_of(variant: KatanaVariant) -> str:
    return normalize_sku(variant.sku) or ""


def _grouped_by_sku(variants: Iterable[KatanaVariant]) -> Iterator[tuple[str, list[KatanaVariant]]]:
    """Variants that have a SKU, grouped by it, in SKU order.

    Sorting holds two lists of references, a fraction of what an index of 100,000 SKUs takes.
    """
    with_sku = sorted((v for v in variants if _sku_of(v)), key=_sku_of)
    for sku, group in groupby(with_sku, key=_sku_of):
        yield sku, list(group)


# A variant map: Katana variant id -> the Shopify variant gid it feeds, or several (a single and
# its packs, say). A Katana variant's rows are its only mapping: its SKU matches nothing.
VariantMap = Mapping[int, str | tuple[str, ...]]


def map_targets(entry: str | tuple[str, ...]) -> tuple[str, ...]:
    """The Shopify variant gids of one variant map entry."""
    return (entry,) if isinstance(entry, str) else entry


def build_mapping(
    katana: Iterable[KatanaVariant],
    shopify: Iterable[ShopifyVariant],
    variant_map: VariantMap,
) -> MappingTable:
    """Build the mapping table from both catalogues and the explicit variant map."""
    named_katana: dict[int, KatanaVariant] = {}  # variants the map names
    live: list[KatanaVariant] = []
    for k_variant in katana:
        if k_variant.id in variant_map:
            named_katana[k_variant.id] = k_variant
        if not k_variant.retired:
            live.append(k_variant)

    shopify_ids_named = {gid for entry in variant_map.values() for gid in map_targets(entry)}
    named_shopify: dict[str, ShopifyVariant] = {}
    shopify_by_sku = _ShopifyBySku()
    for s_variant in shopify:
        # `id` rebuilds the gid string: only worth it when the map names Shopify variants.
        if shopify_ids_named and s_variant.id in shopify_ids_named:
            named_shopify[s_variant.id] = s_variant
        sku = normalize_sku(s_variant.sku)
        if sku is not None:
            shopify_by_sku.add(sku, s_variant)

    feeders: dict[str, list[KatanaVariant]] = {}  # Shopify variant id -> explicit Katana feeders
    explicit: set[int] = set()  # live Katana variants whose map entry is their only mapping
    unknown: list[tuple[int, str]] = []
    for katana_id, entry in variant_map.items():
        entry_variant = named_katana.get(katana_id)
        if entry_variant is None:
            unknown.extend((katana_id, shopify_id) for shopify_id in map_targets(entry))
            continue
        if entry_variant.retired:
            # A retired variant never syncs, so its entry neither feeds nor claims anything.
            continue
        explicit.add(katana_id)
        for shopify_id in map_targets(entry):
            if shopify_id not in named_shopify:
                # The entry still replaces the SKU match: guessing another target could
                # overwrite a Shopify variant the merchant deliberately pointed elsewhere.
                unknown.append((katana_id, shopify_id))
                continue
            feeders.setdefault(shopify_id, []).append(entry_variant)

    targets: dict[int, tuple[ShopifyVariant, ...]] = {}
    untracked: list[ShopifyVariant] = []

    def settle(katana_id: int, matched: Sequence[ShopifyVariant]) -> None:
        tracked = tuple(s for s in matched if s.tracked)
        untracked.extend(s for s in matched if not s.tracked)
        if tracked:
            targets[katana_id] = tracked

    candidates: dict[int, list[ShopifyVariant]] = {}
    shadowed: dict[int, int] = {}
    for shopify_id, group in feeders.items():
        # One Shopify variant fed by several map entries: same rule as a shared SKU.
        winner = max(group, key=_newest)
        candidates.setdefault(winner.id, []).append(named_shopify[shopify_id])
        shadowed.update((k.id, winner.id) for k in group if k is not winner)
    for katana_id, matched in candidates.items():
        settle(katana_id, matched)

    duplicate_skus_katana: list[str] = []
    for sku, holders in _grouped_by_sku(live):
        if len(holders) > 1:
            duplicate_skus_katana.append(sku)
        # Explicitly mapped variants take no part in SKU matching, so they shadow no one; and
        # a SKU's winner is never explicitly mapped, so it has no targets from the map above.
        contenders = [k for k in holders if k.id not in explicit]
        if not contenders:
            continue
        winner = max(contenders, key=_newest)
        shadowed.update((k.id, winner.id) for k in contenders if k is not winner)
        # A Shopify variant named in the map is fed only by its explicit entry.
        holders_in_shop = shopify_by_sku.get(sku)
        matches = (
            [s for s in holders_in_shop if s.id not in feeders] if feeders else holders_in_shop
        )
        if matches:
            settle(winner.id, matches)

    return MappingTable(
        targets=targets,
        shadowed=shadowed,
        unmapped_katana=frozenset(k.id for k in live if k.id not in targets),
        untracked=tuple(sorted(untracked, key=lambda s: s.id)),
        duplicate_skus_katana=frozenset(duplicate_skus_katana),
        duplicate_skus_shopify=frozenset(shopify_by_sku.shared),
        unknown_map_entries=tuple(sorted(unknown)),
    )


class LocationError(ValueError):
    """A location mapping that cannot be applied (unknown Katana location, shared Shopify one)."""


# A location mapping's Katana side: an id (int), a name (str), or a pool of them (a tuple).
LocationRef = int | str | tuple[int | str, ...]


def resolve_locations(
    mappings: Sequence[tuple[LocationRef, Sequence[str]]],
    katana_locations: Mapping[int, str],
) -> dict[int, tuple[str, ...]]:
    """Resolve configured location pairs to {Katana location id: Shopify location gids}.

    A pool (a tuple of references) lists its Shopify locations under each of its Katana
    locations: a Shopify location listed under several is fed by their sum. A Shopify location
    may be fed by one entry only (one Katana location, or one pool).
    """
    ids_by_name: dict[str, list[int]] = {}
    for location_id, name in katana_locations.items():
        ids_by_name.setdefault(name, []).append(location_id)
    known = (
        ", ".join(
            f"{name!r} (id {location_id})" for location_id, name in sorted(katana_locations.items())
        )
        or "(none)"
    )

    errors: list[str] = []
    resolved: dict[int, list[str]] = {}
    # Shopify location gid -> the Katana location ids feeding it (one, or a pool's).
    fed_by: dict[str, tuple[int, ...]] = {}
    for ref, shopify_ids in mappings:
        refs = ref if isinstance(ref, tuple) else (ref,)
        members: list[int] = []
        for one in refs:
            katana_id = _resolve_ref(one, katana_locations, ids_by_name, known, errors)
            if katana_id is None:
                members = []
                break
            if katana_id in members:
                errors.append(
                    f"Katana location {_describe(katana_id, katana_locations)} is listed twice "
                    "in one pool"
                )
                members = []
                break
            members.append(katana_id)
        if not members:
            continue
        feeders = tuple(sorted(members))
        for katana_id in members:
            # The same Katana location listed twice (by name and by id, say) is one mapping.
            gids = resolved.setdefault(katana_id, [])
            gids.extend(gid for gid in shopify_ids if gid not in gids)
        for gid in shopify_ids:
            other = fed_by.setdefault(gid, feeders)
            if other != feeders:
                errors.append(
                    f"Shopify location {gid} is fed by two Katana locations, "
                    f"{_describe_all(other, katana_locations)} and "
                    f"{_describe_all(feeders, katana_locations)}; map it to one only (or list "
                    "them in one entry to pool them)"
                )
    if errors:
        raise LocationError("; ".join(errors))
    return {katana_id: tuple(gids) for katana_id, gids in resolved.items()}


def _resolve_ref(
    ref: int | str,
    katana_locations: Mapping[int, str],
    ids_by_name: Mapping[str, list[int]],
    known: str,
    errors: list[str],
) -> int | None:
    # bool is an int subclass; `katana = true` in TOML is a mistake, not location 1.
    if isinstance(ref, int) and not isinstance(ref, bool):
        if ref in katana_locations:
            return ref
        errors.append(f"Katana location id {ref} does not exist; known locations: {known}")
        return None
    if isinstance(ref, str):
        ids = ids_by_name.get(ref, [])
        if len(ids) == 1:
            return ids[0]
        if ids:
            listed = ", ".join(str(location_id) for location_id in sorted(ids))
            errors.append(f"Katana location name {ref!r} is ambiguous (ids {listed}); use the id")
        else:
            errors.append(f"Katana location {ref!r} does not exist; known locations: {known}")
        return None
    errors.append(f"Katana location reference {ref!r} must be an id (integer) or a name (string)")
    return None


def _describe(location_id: int, katana_locations: Mapping[int, str]) -> str:
    return f"{katana_locations[location_id]!r} (id {location_id})"


def _describe_all(location_ids: Sequence[int], katana_locations: Mapping[int, str]) -> str:
    described = [_describe(location_id, katana_locations) for location_id in location_ids]
    return described[0] if len(described) == 1 else "the pool of " + " + ".join(described)
