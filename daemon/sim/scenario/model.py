"""`Scenario`: what was built (the Katana simulator, each shop as a connection sees it), the
oracle `Scenario.expected_levels` written straight from PRODUCT.md §1 over the simulators' state
(it shares no code with `daemon.domain`, so it can catch the daemon out), and
`Scenario.write_config`, which writes a real stocksync configuration and variant maps."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from daemon.domain.models import LevelKey, ShopifyVariant
from daemon.sim.katana import KatanaSim, SimVariant, gc_paused
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
