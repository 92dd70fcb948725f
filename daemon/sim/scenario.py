"""A seeded, realistic Katana + Shopify catalogue, its expected end state, and live business.

`build_catalogue` fills a KatanaSim and one or more ShopifySims with every case the sync rules
care about; `Scenario.expected_levels` is an oracle written straight from PRODUCT.md §1 over the
simulators' state (it shares no code with `daemon.domain`, so it can catch the daemon out);
`EventStream` applies a realistic mix of business events and records when each happened so
benchmarks can measure lag; `Scenario.write_config` writes a real stocksync configuration.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from daemon.domain.models import LevelKey, ShopifyVariant
from daemon.sim.katana import KatanaSim, ProductSpec, SimVariant, gc_paused
from daemon.sim.shopify import ShopifySim

API_VERSION = "2026-10"
MAIN_WAREHOUSE = "Main warehouse"
# Stock here belongs to another sales channel: never mapped, never reaches Shopify (the seed's
# workaround for separate-channel orders).
WHOLESALE_DEPOT = "Wholesale depot"
MIN_VARIANTS = 20


@dataclass(frozen=True)
class ShopConnection:
    """One Shopify shop as a stocksync connection sees it."""

    name: str
    shop: str
    sim: ShopifySim
    token: str
    # Katana location name -> the Shopify location gids it feeds.
    locations: Mapping[str, tuple[str, ...]]
    # Katana variant id -> Shopify variant gid (the variant map file).
    variant_map: Mapping[int, str]
    # Every Shopify variant the scenario created in this shop.
    variants: tuple[ShopifyVariant, ...]

    @property
    def token_env(self) -> str:
        """The environment variable the config names for this shop's token."""
        return "SHOPIFY_TOKEN_" + self.name.upper().replace("-", "_").replace(".", "_")


@dataclass(frozen=True)
class Scenario:
    """What was built, what a config needs, and what Shopify should end up showing."""

    katana: KatanaSim
    connections: tuple[ShopConnection, ...]
    seed: int
    unmapped_location: str | None
    fanned_out_location: str
    standard: tuple[int, ...]  # plain product variants with a SKU in every shop
    components: tuple[int, ...]  # standard variants also used as kit ingredients
    kits: tuple[int, ...]
    materials: tuple[int, ...]
    katana_only: tuple[int, ...]  # SKUs no shop sells
    no_sku: tuple[int, ...]  # mapped through the variant map only
    # SKU -> (shadowed, winning) Katana variant ids; the first pair ties on created_at.
    duplicate_skus_katana: Mapping[str, tuple[int, int]]
    duplicate_skus_shopify: tuple[str, ...]
    untracked_skus: tuple[str, ...]
    # A Katana variant with a SKU whose explicit map entry wins over its SKU match.
    explicit_over_sku: int
    # A Katana variant whose only SKU twin in Shopify is a variant-map target: a mapped Shopify
    # variant is fed by its map entry alone, so this one syncs nowhere.
    claimed_by_map: int
    whitespace_sku: int  # a Katana SKU with surrounding spaces that still matches
    not_stocked_sku: str  # stocked only at the first Shopify location of each shop

    @property
    def location_mapping(self) -> Mapping[str, tuple[str, ...]]:
        """The first connection's Katana location name -> Shopify location gids."""
        return self.connections[0].locations

    @property
    def variant_map(self) -> Mapping[int, str]:
        """The first connection's variant map: Katana variant id -> Shopify variant gid."""
        return self.connections[0].variant_map

    @property
    def katana_skus(self) -> list[str]:
        """Every live Katana SKU, as entered (duplicates once)."""
        live = (v for v in self.katana.variants() if not v.deleted and v.sku is not None)
        return sorted({v.sku for v in live if v.sku is not None})

    def shopify_skus(self, connection: str | None = None) -> list[str]:
        """Every SKU in a shop (duplicates once)."""
        variants = self.connection(connection).variants
        return sorted({v.sku for v in variants if v.sku is not None})

    def connection(self, name: str | None = None) -> ShopConnection:
        """A connection by name; None means the only one (an error when there are several)."""
        if name is None:
            if len(self.connections) != 1:
                raise ValueError("several connections: name the one you mean")
            return self.connections[0]
        for connection in self.connections:
            if connection.name == name:
                return connection
        raise ValueError(f"no connection named {name!r}")

    # ---- the oracle ------------------------------------------------------------------------

    def feeds(self, connection: str | None = None) -> list[tuple[int, ShopifyVariant]]:
        """(Katana variant id, Shopify variant) pairs that sync, tracked or not (PRODUCT.md §1)."""
        with gc_paused():
            return self._feeds(self.connection(connection))

    def _feeds(self, shop: ShopConnection) -> list[tuple[int, ShopifyVariant]]:
        live = {v.id: v for v in self.katana.variants() if not (v.deleted or v.archived)}
        by_gid = {v.id: v for v in shop.variants}
        explicit = {k: g for k, g in shop.variant_map.items() if k in live and g in by_gid}
        claimed = set(explicit.values())
        shop_by_sku: dict[str, list[ShopifyVariant]] = {}
        for target in shop.variants:
            sku = _clean_sku(target.sku)
            if sku is not None and target.id not in claimed:
                shop_by_sku.setdefault(sku, []).append(target)
        winners: dict[str, SimVariant] = {}
        for source in live.values():
            sku = _clean_sku(source.sku)
            if sku is None or source.id in explicit:
                continue
            # The most recently created wins; a created_at tie goes to the higher id.
            best = winners.get(sku)
            if best is None or (source.created_at, source.id) > (best.created_at, best.id):
                winners[sku] = source
        pairs = [(k, by_gid[g]) for k, g in explicit.items()]
        for sku, winner in winners.items():
            pairs.extend((winner.id, target) for target in shop_by_sku.get(sku, []))
        return pairs

    def expected_levels(self, connection: str | None = None) -> dict[LevelKey, int]:
        """What Shopify's available should be for every synced (item, location) of a shop.

        Untracked items, unmapped Katana locations and locations where an item is not stocked
        are absent (stocksync does not activate items by default).
        """
        shop = self.connection(connection)
        location_ids = {name: self.katana.location_id(name) for name in shop.locations}
        levels: dict[LevelKey, int] = {}
        with gc_paused():  # at 100k variants the cyclic GC would triple the time
            for katana_id, target in self._feeds(shop):
                if not target.tracked:
                    continue
                for name, shopify_locations in shop.locations.items():
                    quantity = self.desired_quantity(katana_id, location_ids[name])
                    for location in shopify_locations:
                        if shop.sim.available(target.inventory_item_id, location) is not None:
                            levels[(target.inventory_item_id, location)] = quantity
        return levels

    def desired_quantity(self, variant_id: int, location_id: int) -> int:
        """in_stock − committed (+ potential for kits), floored, never below 0."""
        katana = self.katana
        total = katana.in_stock(variant_id, location_id) - katana.committed(variant_id, location_id)
        if katana.is_kit(variant_id):
            total += katana.potential(variant_id, location_id) or Decimal(0)
        return max(0, math.floor(total))

    # ---- configuration -------------------------------------------------------------------

    def secrets_env(self) -> dict[str, str]:
        """The environment the daemon needs for this scenario's secrets."""
        env = {"KATANA_API_KEY": self.katana.api_key}
        env.update({shop.token_env: shop.token for shop in self.connections})
        return env

    def write_config(
        self,
        folder: Path,
        *,
        katana_url: str,
        shopify_urls: str | Sequence[str],
        state_path: Path,
        http_port: int,
        poll_interval_seconds: float = 2.0,
        sync_inventory: bool = True,
        requests_per_minute: int | None = None,
        log_format: str = "json",
        reconciliation_cron: str = "0 3 * * *",
        reconciliation_enabled: bool = True,
        min_drop_count: int = 20,
        max_drop_fraction: float = 0.5,
        late_push_seconds: float | None = None,
    ) -> Path:
        """Write stocksync.toml, one variant map per shop and stocksync.env; the TOML's path.

        stocksync.env (mode 0600) holds `secrets_env()` as KEY=value lines.
        """
        urls = [shopify_urls] if isinstance(shopify_urls, str) else list(shopify_urls)
        if len(urls) != len(self.connections):
            raise ValueError(f"need {len(self.connections)} Shopify URLs, got {len(urls)}")
        folder.mkdir(parents=True, exist_ok=True)
        rpm = (
            self.katana.requests_per_minute if requests_per_minute is None else requests_per_minute
        )
        lines = [
            "# Written by daemon.sim.scenario for the simulated Katana and Shopify.",
            "[daemon]",
            f"state_path = {_toml(str(state_path))}",
            f"poll_interval_seconds = {poll_interval_seconds!r}",
            f"http_listen = {_toml(f'127.0.0.1:{http_port}')}",
            f"log_format = {_toml(log_format)}",
            "",
            "[katana]",
            f"base_url = {_toml(katana_url)}",
            'api_key_env = "KATANA_API_KEY"',
            f"requests_per_minute = {rpm}",
            "",
            "[reconciliation]",
            f"enabled = {_toml(reconciliation_enabled)}",
            f"cron = {_toml(reconciliation_cron)}",
            'timezone = "UTC"',
        ]
        for shop, url in zip(self.connections, urls, strict=True):
            map_file = folder / f"variant-map-{shop.name}.csv"
            _write_variant_map(map_file, shop.variant_map)
            lines += [
                "",
                "[[connections]]",
                f"name = {_toml(shop.name)}",
                f"shop = {_toml(shop.shop)}",
                f"admin_url = {_toml(url)}",
                f"api_version = {_toml(API_VERSION)}",
                f"access_token_env = {_toml(shop.token_env)}",
                f"sync_inventory = {_toml(sync_inventory)}",
                f"variant_map_file = {_toml(map_file.name)}",
                f"max_drop_fraction = {max_drop_fraction!r}",
                f"min_drop_count = {min_drop_count}",
            ]
            if late_push_seconds is not None:
                lines.append(f"late_push_seconds = {late_push_seconds!r}")
            for katana_name, shopify_ids in shop.locations.items():
                lines += [
                    "",
                    "  [[connections.locations]]",
                    f"  katana = {_toml(katana_name)}",
                    f"  shopify = [{', '.join(_toml(g) for g in shopify_ids)}]",
                ]
        path = folder / "stocksync.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env_file = folder / "stocksync.env"
        env_file.touch(mode=0o600)
        os.chmod(env_file, 0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.secrets_env().items()))
        return path


def _clean_sku(sku: str | None) -> str | None:
    """SKUs match exactly, ignoring surrounding whitespace; a blank SKU is no SKU."""
    if sku is None:
        return None
    return sku.strip() or None


def _toml(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # A JSON string literal is a valid TOML basic string (same escapes).
    return json.dumps(value, ensure_ascii=False)


def _write_variant_map(path: Path, variant_map: Mapping[int, str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["katana_variant_id", "shopify_variant_id"])
        for katana_id, shopify_gid in sorted(variant_map.items()):
            writer.writerow([katana_id, shopify_gid])


# --------------------------------------------------------------------------------------------
# Building the catalogue
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Live business
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    """One business event the stream applied."""

    kind: str
    at: float  # the stream's clock (time.monotonic by default) when it was applied
    katana_at: datetime | None  # Katana's timestamp of the change (its `updated_at`)
    variant_ids: frozenset[int]  # Katana variants whose in-stock or committed changed
    affected_variant_ids: frozenset[int]  # those plus the kits whose potential uses them
    detail: str


# What an event did: its kind, the Katana variants it touched, a human-readable detail.
_Outcome = tuple[str, set[int], str]

# Relative frequency of each event kind: mostly order flow, some production and receiving.
DEFAULT_MIX: Mapping[str, float] = {
    "sales_order_created": 30,
    "sales_order_updated": 8,
    "sales_order_packed": 14,
    "sales_order_delivered": 8,
    "sales_order_deleted": 4,
    # Rows edited on their own, leaving their order untouched and writing no movement.
    "sales_order_row_deleted": 2,
    "sales_order_row_repointed": 2,
    "manufacturing_order_created": 4,
    "manufacturing_order_completed": 4,
    "recipe_row_repointed": 1,
    "purchase_order_received": 8,
    "stock_adjusted": 8,
    "stock_transferred": 5,
    "shopify_order": 7,
}


class EventStream:
    """Applies a realistic, seeded mix of business events to a scenario's simulators."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 0,
        mix: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.scenario = scenario
        self.applied: list[AppliedEvent] = []
        self._rng = random.Random(seed)
        self._mix = dict(DEFAULT_MIX if mix is None else mix)
        unknown = set(self._mix) - set(DEFAULT_MIX)
        if unknown:
            raise ValueError(f"unknown event kinds: {sorted(unknown)}")
        self._clock, self._sleep = clock, sleep
        self._events: dict[str, Callable[[], _Outcome | None]] = {
            "sales_order_created": self._sales_order_created,
            "sales_order_updated": self._sales_order_updated,
            "sales_order_packed": self._sales_order_packed,
            "sales_order_delivered": self._sales_order_delivered,
            "sales_order_deleted": self._sales_order_deleted,
            "sales_order_row_deleted": self._sales_order_row_deleted,
            "sales_order_row_repointed": self._sales_order_row_repointed,
            "manufacturing_order_created": self._manufacturing_order_created,
            "manufacturing_order_completed": self._manufacturing_order_completed,
            "recipe_row_repointed": self._recipe_row_repointed,
            "purchase_order_received": self._purchase_order_received,
            "stock_adjusted": self._stock_adjusted,
            "stock_transferred": self._stock_transferred,
            "shopify_order": self._shopify_order,
        }
        katana = scenario.katana
        self._locations = sorted(katana.location_names())
        self._sellable = [*scenario.standard, *scenario.kits, *scenario.no_sku]
        self._stocked = [*scenario.standard, *scenario.materials, *scenario.katana_only]
        # Storefront orders pick a synced (Katana variant, Shopify variant) pair of a shop.
        self._storefront = [
            (shop, katana_id, target)
            for shop in scenario.connections
            for katana_id, target in scenario.feeds(shop.name)
            if target.tracked
        ]

    async def run(
        self,
        rate_per_second: float,
        duration: float | None,
        *,
        seed: int | None = None,
        max_events: int | None = None,
    ) -> list[AppliedEvent]:
        """Apply events at a steady rate until `duration` seconds or `max_events` (or cancel)."""
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        if seed is not None:
            self._rng.seed(seed)
        started = self._clock()
        made: list[AppliedEvent] = []
        while max_events is None or len(made) < max_events:
            due = started + len(made) / rate_per_second
            if duration is not None and due - started >= duration:
                break
            wait = due - self._clock()
            if wait > 0:
                await self._sleep(wait)
            made.append(self.step())
        return made

    def step(self, kind: str | None = None) -> AppliedEvent:
        """Apply one event now (of `kind`, or drawn from the mix) and record it."""
        chosen = kind or self._rng.choices(list(self._mix), weights=list(self._mix.values()))[0]
        apply = self._events.get(chosen)
        if apply is None:
            raise ValueError(f"unknown event kind {chosen!r}")
        outcome = apply()
        if outcome is None:  # nothing to act on yet (no open order...): a new order instead
            outcome = self._sales_order_created()
        applied_kind, variants, detail = outcome
        katana = self.scenario.katana
        event = AppliedEvent(
            kind=applied_kind,
            at=self._clock(),
            katana_at=katana.last_event_at,
            variant_ids=frozenset(variants),
            affected_variant_ids=frozenset(variants | katana.kits_using(variants)),
            detail=detail,
        )
        self.applied.append(event)
        return event

    # ---- the events (each returns kind, touched variants, detail; or None if impossible) --

    def _sales_order_created(self) -> _Outcome:
        rng, katana = self._rng, self.scenario.katana
        rows = _merge(
            [(v, rng.randint(1, 3)) for v in rng.sample(self._sellable, k=rng.randint(1, 3))]
        )
        status = "PENDING" if rng.random() < 0.1 else "NOT_SHIPPED"
        order = katana.create_sales_order(rows, rng.choice(self._locations), status=status)
        return "sales_order_created", {v for v, _ in rows}, f"SO-{order} {status}"

    def _sales_order_updated(self) -> _Outcome | None:
        katana, rng = self.scenario.katana, self._rng
        order = self._pick(katana.sales_order_ids({"NOT_SHIPPED", "PENDING"}))
        if order is None:
            return None
        rows = [(v, rng.randint(1, 4)) for v, _ in katana.sales_order_rows(order)]
        katana.update_sales_order(order, rows=rows, status="NOT_SHIPPED")
        return "sales_order_updated", {v for v, _ in rows}, f"SO-{order}"

    def _sales_order_packed(self) -> _Outcome | None:
        return self._fulfil("sales_order_packed", {"NOT_SHIPPED"}, "PACKED")

    def _sales_order_delivered(self) -> _Outcome | None:
        return self._fulfil("sales_order_delivered", {"NOT_SHIPPED", "PACKED"}, "DELIVERED")

    def _fulfil(self, kind: str, source: set[str], target: str) -> _Outcome | None:
        katana = self.scenario.katana
        order = self._pick(katana.sales_order_ids(source))
        if order is None:
            return None
        katana.update_sales_order(order, status=target)
        variants = {v for v, _ in katana.sales_order_rows(order)}
        # Packing a kit may assemble it: its ingredients move too.
        for kit in [v for v in variants if katana.is_kit(v)]:
            variants |= set(katana.recipe(kit))
        return kind, variants, f"SO-{order} {target}"

    def _sales_order_deleted(self) -> _Outcome | None:
        katana = self.scenario.katana
        order = self._pick(katana.sales_order_ids({"NOT_SHIPPED", "PENDING"}))
        if order is None:
            return None
        katana.delete_sales_order(order)
        return "sales_order_deleted", {v for v, _ in katana.sales_order_rows(order)}, f"SO-{order}"

    def _open_order_row(self, min_rows: int = 1) -> tuple[int, int, int] | None:
        """(order, row, variant) of a random row of a random order whose rows may change and
        that has at least `min_rows` rows."""
        katana = self.scenario.katana
        orders = [
            o
            for o in katana.sales_order_ids({"NOT_SHIPPED", "PENDING"})
            if len(katana.sales_order_row_ids(o)) >= min_rows
        ]
        order = self._pick(orders)
        if order is None:
            return None
        rows = list(
            zip(katana.sales_order_row_ids(order), katana.sales_order_rows(order), strict=True)
        )
        row, (variant, _) = self._rng.choice(rows)
        return order, row, variant

    def _sales_order_row_deleted(self) -> _Outcome | None:
        # A row deleted among others: an order is not left empty.
        picked = self._open_order_row(min_rows=2)
        if picked is None:
            return None
        order, row, variant = picked
        self.scenario.katana.delete_sales_order_row(row)
        return "sales_order_row_deleted", {variant}, f"SO-{order} row {row}"

    def _sales_order_row_repointed(self) -> _Outcome | None:
        picked = self._open_order_row()
        if picked is None:
            return None
        order, row, old = picked
        new = self._rng.choice([v for v in self._sellable if v != old])
        self.scenario.katana.update_sales_order_row(row, variant_id=new)
        return "sales_order_row_repointed", {old, new}, f"SO-{order} row {row}"

    def _recipe_row_repointed(self) -> _Outcome | None:
        katana, rng = self.scenario.katana, self._rng
        mo = self._pick(katana.open_manufacturing_order_ids())
        rows = [] if mo is None else katana.recipe_row_ids(mo)
        if mo is None or not rows:
            return None
        row = rng.choice(rows)
        old = katana.recipe_row_variant(row)
        made, _ = katana.manufacturing_order_variant(mo)
        pool = [*self.scenario.components, *self.scenario.materials]
        new = rng.choice([v for v in pool if v not in (old, made)])
        katana.update_recipe_row(row, variant_id=new)
        return "recipe_row_repointed", {old, new}, f"MO-{mo} row {row}"

    def _manufacturing_order_created(self) -> _Outcome | None:
        katana, rng = self.scenario.katana, self._rng
        kit = self._pick(list(self.scenario.kits))
        if kit is None:
            return None
        mo = katana.create_manufacturing_order(kit, rng.choice(self._locations), rng.randint(1, 5))
        return "manufacturing_order_created", {kit, *katana.recipe(kit)}, f"MO-{mo}"

    def _manufacturing_order_completed(self) -> _Outcome | None:
        katana = self.scenario.katana
        mo = self._pick(katana.open_manufacturing_order_ids())
        if mo is None:
            return None
        variant, _ = katana.manufacturing_order_variant(mo)
        katana.complete_manufacturing_order(mo)
        return "manufacturing_order_completed", {variant, *katana.recipe(variant)}, f"MO-{mo}"

    def _purchase_order_received(self) -> _Outcome:
        katana, rng = self.scenario.katana, self._rng
        rows = _merge(
            [(v, rng.randint(5, 30)) for v in rng.sample(self._stocked, k=rng.randint(1, 3))]
        )
        po = katana.receive_purchase_order(rows, rng.choice(self._locations))
        return "purchase_order_received", {v for v, _ in rows}, f"PO-{po}"

    def _stock_adjusted(self) -> _Outcome:
        katana, rng = self.scenario.katana, self._rng
        variant = rng.choice(self._stocked)
        delta = rng.choice([-3, -2, -1, 1, 2, 5])
        adjustment = katana.adjust_stock(variant, rng.choice(self._locations), delta)
        return "stock_adjusted", {variant}, f"SA-{adjustment} {delta:+d}"

    def _stock_transferred(self) -> _Outcome | None:
        katana, rng = self.scenario.katana, self._rng
        if len(self._locations) < 2:
            return None
        source, target = rng.sample(self._locations, k=2)
        variant = rng.choice(self._stocked)
        transfer = katana.transfer_stock(variant, source, target, rng.randint(1, 5))
        return "stock_transferred", {variant}, f"ST-{transfer}"

    def _shopify_order(self) -> _Outcome | None:
        """A storefront order: Shopify lowers available now, and the order reaches Katana.

        None (a new Katana order instead) when the item is sold out or not stocked there.
        """
        if not self._storefront:
            return None
        rng, katana = self._rng, self.scenario.katana
        shop, katana_id, target = rng.choice(self._storefront)
        katana_name, shopify_locations = rng.choice(list(shop.locations.items()))
        location = rng.choice(shopify_locations)
        item = target.inventory_item_id
        available = shop.sim.available(item, location)
        # A store that does not oversell (Shopify's default) takes no order beyond available.
        if available is None or available <= 0:
            return None
        quantity = min(rng.randint(1, 2), available)
        shop.sim.place_order(item, location, quantity)
        order = katana.create_sales_order([(katana_id, quantity)], katana.location_id(katana_name))
        return "shopify_order", {katana_id}, f"SO-{order} from {item} at {location}"

    def _pick(self, ids: Sequence[int]) -> int | None:
        return self._rng.choice(ids) if ids else None
