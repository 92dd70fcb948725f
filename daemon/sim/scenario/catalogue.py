"""Building the catalogue: `build_catalogue` fills a KatanaSim and one or more ShopifySims,
seeded, with every case the sync rules care about, and returns the `Scenario`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from daemon.domain.models import ShopifyVariant
from daemon.sim.katana import KatanaSim, ProductSpec, gc_paused
from daemon.sim.scenario.model import (
    MAIN_WAREHOUSE,
    MIN_VARIANTS,
    WHOLESALE_DEPOT,
    Scenario,
    ShopConnection,
    _clean_sku,
)
from daemon.sim.shopify import ShopifySim


@dataclass
class _Plan:
    """How many variants of each kind a catalogue of `total` variants gets."""

    total: int
    materials: int = 0
    kits: int = 0
    katana_only: int = 0
    no_sku: int = 0
    duplicate_pairs: int = 0
    standard: int = 0
    components: int = 0
    shopify_duplicates: int = 0
    untracked: int = 0
    shopify_only: int = 0

    def __post_init__(self) -> None:
        n = self.total
        self.materials = max(1, n // 20)
        self.kits = max(1, n // 20)
        self.katana_only = max(1, n // 100)
        self.no_sku = max(1, n // 500)
        self.duplicate_pairs = max(2, n // 500)
        # The rest are plain products (one of them mapped explicitly despite its SKU), less the
        # variant whose Shopify twin a variant map entry claims.
        self.standard = (
            n - self.materials - self.kits - self.katana_only - self.no_sku - 1
        ) - 2 * self.duplicate_pairs
        self.components = max(2, n // 20)
        self.shopify_duplicates = max(1, n // 500)
        self.untracked = max(1, n // 1000)
        self.shopify_only = max(1, n // 200)


def build_catalogue(
    katana: KatanaSim,
    shopify: ShopifySim | Sequence[ShopifySim],
    *,
    variants: int,
    katana_locations: int = 2,
    shopify_locations: int = 2,
    seed: int = 0,
    shopify_tokens: Sequence[str] | None = None,
) -> Scenario:
    """Fill the simulators with a seeded catalogue of about `variants` Katana variants.

    Shops get one connection each ("store-1", ...). `shopify_tokens` are the shops' admin
    tokens (default: ShopifySim's default token) for `Scenario.secrets_env`.
    """
    shops = [shopify] if isinstance(shopify, ShopifySim) else list(shopify)
    if variants < MIN_VARIANTS:
        raise ValueError(f"a scenario needs at least {MIN_VARIANTS} variants, got {variants}")
    if katana_locations < 1 or shopify_locations < 1 or not shops:
        raise ValueError("a scenario needs at least one Katana location, shop and shop location")
    tokens = list(shopify_tokens) if shopify_tokens is not None else ["shpat_sim"] * len(shops)
    if len(tokens) != len(shops):
        raise ValueError(f"need {len(shops)} Shopify tokens, got {len(tokens)}")
    rng = random.Random(seed)
    plan = _Plan(variants)
    with gc_paused():
        builder = _KatanaBuilder(katana, rng, plan)
        names = builder.locations(katana_locations)
        built = builder.catalogue()
        builder.stock_and_orders(names)
        connections = tuple(
            _build_shop(
                f"store-{n}",
                sim,
                token,
                built,
                names,
                shopify_locations,
                plan,
                random.Random(rng.getrandbits(64)),
            )
            for n, (sim, token) in enumerate(zip(shops, tokens, strict=True), start=1)
        )
    return Scenario(
        katana=katana,
        connections=connections,
        seed=seed,
        unmapped_location=WHOLESALE_DEPOT if katana_locations >= 2 else None,
        fanned_out_location=MAIN_WAREHOUSE,
        standard=tuple(built.standard),
        components=tuple(built.components),
        kits=tuple(built.kits),
        materials=tuple(built.materials),
        katana_only=tuple(built.katana_only),
        no_sku=tuple(built.no_sku),
        duplicate_skus_katana=dict(built.duplicates),
        duplicate_skus_shopify=tuple(built.shopify_duplicate_skus),
        untracked_skus=tuple(built.untracked_skus),
        explicit_over_sku=built.explicit_over_sku,
        claimed_by_map=built.claimed_by_map,
        whitespace_sku=built.whitespace_sku,
        not_stocked_sku=built.not_stocked_sku,
    )


@dataclass
class _Built:
    """Katana ids by role, as the shops and the scenario need them."""

    standard: list[int] = field(default_factory=list)
    components: list[int] = field(default_factory=list)
    kits: list[int] = field(default_factory=list)
    materials: list[int] = field(default_factory=list)
    katana_only: list[int] = field(default_factory=list)
    no_sku: list[int] = field(default_factory=list)
    duplicates: dict[str, tuple[int, int]] = field(default_factory=dict)
    skus: dict[int, str] = field(default_factory=dict)  # clean SKU of each Katana variant
    shopify_duplicate_skus: list[str] = field(default_factory=list)
    untracked_skus: list[str] = field(default_factory=list)
    explicit_over_sku: int = 0
    claimed_by_map: int = 0
    whitespace_sku: int = 0
    not_stocked_sku: str = ""


class _KatanaBuilder:
    """Creates the Katana side in a handful of bulk events (an import, then a stock count)."""

    def __init__(self, katana: KatanaSim, rng: random.Random, plan: _Plan) -> None:
        self.katana, self.rng, self.plan = katana, rng, plan
        self.built = _Built()

    def locations(self, count: int) -> list[str]:
        names = [MAIN_WAREHOUSE] + [f"Store {i}" for i in range(1, count - 1)]
        if count >= 2:
            names.append(WHOLESALE_DEPOT)
        for name in names:
            self.katana.add_location(name)
        return names

    def catalogue(self) -> _Built:
        plan, built, katana = self.plan, self.built, self.katana
        built.materials = _flatten(
            katana.add_materials(
                [ProductSpec(f"Material {i}", [f"MAT-{i:05d}"]) for i in range(plan.materials)]
            )
        )
        specs = self._grouped("Product", [f"SKU-{i:06d}" for i in range(plan.standard)])
        kit_specs = [
            ProductSpec(f"Kit {i}", [f"KIT-{i:05d}"], is_auto_assembly=True)
            for i in range(plan.kits)
        ]
        other = [
            ProductSpec(f"Katana only {i}", [f"KAT-ONLY-{i}"]) for i in range(plan.katana_only)
        ]
        other += [ProductSpec(f"Unlabelled {i}", [None]) for i in range(plan.no_sku)]
        other.append(ProductSpec("Claimed", ["CLAIMED-0"]))
        # Duplicate SKUs: pair 0 is imported twice in the same event (a created_at tie, won by
        # the higher id); every other pair's winner is created in a later event.
        dup_skus = [f"DUP-{i:04d}" for i in range(plan.duplicate_pairs)]
        other += [ProductSpec(f"Old {sku}", [sku]) for sku in dup_skus]
        other.append(ProductSpec(f"Twin {dup_skus[0]}", [dup_skus[0]]))
        made = katana.add_products([*specs, *kit_specs, *other])
        built.standard = _flatten(made[: len(specs)])
        built.kits = _flatten(made[len(specs) : len(specs) + len(kit_specs)])
        rest = _flatten(made[len(specs) + len(kit_specs) :])
        built.katana_only, rest = rest[: plan.katana_only], rest[plan.katana_only :]
        built.no_sku, rest = rest[: plan.no_sku], rest[plan.no_sku :]
        built.claimed_by_map, rest = rest[0], rest[1:]
        older, twin = rest[: len(dup_skus)], rest[-1]
        newer = _flatten(
            katana.add_products([ProductSpec(f"New {sku}", [sku]) for sku in dup_skus[1:]])
        )
        built.duplicates = {dup_skus[0]: (older[0], twin)}
        built.duplicates.update(zip(dup_skus[1:], zip(older[1:], newer, strict=True), strict=True))
        # A Katana SKU typed with surrounding spaces still matches its Shopify twin.
        built.whitespace_sku = built.standard[-1]
        clean = katana.variant(built.whitespace_sku).sku or ""
        katana.set_sku(built.whitespace_sku, f"  {clean} ")
        for variant in katana.variants():
            sku = _clean_sku(variant.sku)
            if sku is not None:
                built.skus[variant.id] = sku
        # Roles among the plain products; the slices never overlap (see _Plan).
        c, u, d = plan.components, plan.untracked, plan.shopify_duplicates
        standard_skus = [built.skus[v] for v in built.standard]
        built.components = built.standard[:c]
        built.untracked_skus = standard_skus[c : c + u]
        built.not_stocked_sku = standard_skus[c + u]
        built.shopify_duplicate_skus = standard_skus[-2 - d : -2]
        built.explicit_over_sku = built.standard[-2]
        self._recipes()
        return built

    def _grouped(self, prefix: str, skus: list[str]) -> list[ProductSpec]:
        """Products with 1-4 variants each, like sizes or colours."""
        specs: list[ProductSpec] = []
        start = 0
        while start < len(skus):
            size = self.rng.randint(1, 4)
            specs.append(ProductSpec(f"{prefix} {len(specs)}", skus[start : start + size]))
            start += size
        return specs

    def _recipes(self) -> None:
        """Each kit is built from 2-3 components or materials (some fractional)."""
        built, rng = self.built, self.rng
        pool = built.components + built.materials
        rows: list[tuple[int, int, Decimal]] = []
        for kit in built.kits:
            for ingredient in rng.sample(pool, k=min(len(pool), rng.randint(2, 3))):
                per_kit = rng.choice(
                    [Decimal(1), Decimal(1), Decimal(2), Decimal(3), Decimal("0.5")]
                )
                rows.append((kit, ingredient, per_kit))
        self.katana.add_bom_rows(rows)

    def stock_and_orders(self, names: list[str]) -> None:
        """An opening stock count, then a few open orders (some at the unmapped depot)."""
        katana, built, rng = self.katana, self.built, self.rng
        location_ids = [katana.location_id(name) for name in names]
        live = katana.inventory_variant_ids()
        kits = set(built.kits)
        katana.set_stock_levels(
            (variant, location, rng.choice((0, 1, 2)) if variant in kits else rng.randint(0, 40))
            for variant in live
            for location in location_ids
        )
        sellable = built.standard + built.kits + built.no_sku
        main = location_ids[0]
        for _ in range(max(3, self.plan.total // 20)):
            rows = [(v, rng.randint(1, 5)) for v in rng.sample(sellable, k=rng.randint(1, 3))]
            katana.create_sales_order(_merge(rows), rng.choice(location_ids))
        # Oversold: committed beyond in-stock reads as 0 in Shopify, never negative.
        oversold = built.standard[0]
        katana.set_stock(oversold, main, 2)
        katana.create_sales_order([(oversold, 5)], main)
        katana.create_sales_order([(built.standard[1], 3)], main, status="PENDING")
        katana.create_manufacturing_order(built.kits[0], main, 2)
        if len(location_ids) >= 2:
            katana.create_sales_order([(built.standard[2], 4)], location_ids[-1])
            katana.create_stock_transfer([(built.standard[3], 2)], main, location_ids[-1])


def _build_shop(
    name: str,
    sim: ShopifySim,
    token: str,
    built: _Built,
    katana_names: list[str],
    location_count: int,
    plan: _Plan,
    rng: random.Random,
) -> ShopConnection:
    """One shop: its locations, its copy of the catalogue, and its special cases."""
    shop_locations = [sim.add_location(f"{name} location {i + 1}") for i in range(location_count)]
    mapping: dict[str, tuple[str, ...]] = {MAIN_WAREHOUSE: tuple(shop_locations[:2])}
    mapped = [n for n in katana_names if n not in (MAIN_WAREHOUSE, WHOLESALE_DEPOT)]
    for katana_name, shopify_location in zip(mapped, shop_locations[2:], strict=False):
        mapping[katana_name] = (shopify_location,)

    variants: list[ShopifyVariant] = []
    standard_skus = [built.skus[v] for v in built.standard]
    untracked = set(built.untracked_skus)

    def add(
        sku: str | None, *, tracked: bool = True, stocked_at: list[str] | None = None
    ) -> ShopifyVariant:
        available = rng.randint(0, 30)
        variant = sim.add_variant(sku, tracked=tracked, stocked_at=stocked_at, available=available)
        variants.append(variant)
        return variant

    for sku in standard_skus:
        if sku in untracked:
            add(sku, tracked=False)
        elif sku == built.not_stocked_sku:
            add(sku, stocked_at=[shop_locations[0]])
        else:
            add(sku)
    for sku in built.shopify_duplicate_skus:
        add(sku)
    for kit in built.kits:
        add(built.skus[kit])
    for sku in built.duplicates:
        add(sku)
    for i in range(plan.shopify_only):
        add(f"SHOP-ONLY-{i}")
    claimed_sku = built.skus[built.claimed_by_map]
    variant_map = {
        katana_id: add(claimed_sku if n == 0 else None).id
        for n, katana_id in enumerate(built.no_sku)
    }
    # An explicit entry wins over the SKU match: this Katana variant feeds only its map target.
    variant_map[built.explicit_over_sku] = add(f"ALT-{built.skus[built.explicit_over_sku]}").id
    return ShopConnection(
        name=name,
        shop=sim.shop,
        sim=sim,
        token=token,
        locations=mapping,
        variant_map=variant_map,
        variants=tuple(variants),
    )


def _flatten(groups: Sequence[Sequence[int]]) -> list[int]:
    return [v for group in groups for v in group]


def _merge(rows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return sorted(dict(rows).items())
