"""The simulated world one benchmark daemon runs against: Katana, one shop, a scenario, limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.floors import KatanaJob
from bench.meters import MeteredKatana, MeteredShopify
from bench.profiles import Limits
from daemon.domain.models import LevelKey
from daemon.katana.models import DELTA_SOURCES
from daemon.sim.katana import gc_paused
from daemon.sim.scenario import Scenario, build_catalogue

# The catalogue lists the engine re-polls every cycle besides the seven delta sources.
CATALOGUE_DELTA_LISTS = ("variants", "products", "materials", "bom_rows")
# Catalogue history is stamped this far apart: more than the daemon's cursor overlap (2 min), so
# a cold daemon's first delta poll re-reads only the last catalogue event, as it would for a
# merchant whose catalogue was built over months rather than in the second before the run.
HISTORY_STEP = timedelta(minutes=5)
HISTORY_SPAN = timedelta(days=730)


class BusinessClock:
    """Katana's business clock: the catalogue's history in the past, live events now."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now_at_start = now or datetime.now(UTC)
        self._history: datetime | None = self._now_at_start - HISTORY_SPAN

    def __call__(self) -> datetime:
        """The next timestamp: one history step later while building, the wall clock after."""
        if self._history is None:
            return datetime.now(UTC)
        self._history += HISTORY_STEP
        return self._history

    def go_live(self) -> None:
        """From now on, business happens at wall-clock time."""
        if self._history is not None and self._history >= self._now_at_start - timedelta(hours=1):
            raise RuntimeError("the catalogue's history ran into the present: raise HISTORY_SPAN")
        self._history = None


@dataclass
class World:
    """A seeded Katana account and one shop, with the limits the daemon's config must match."""

    katana: MeteredKatana
    shop: MeteredShopify
    scenario: Scenario
    limits: Limits
    katana_locations: int

    @classmethod
    def build(
        cls,
        *,
        variants: int,
        katana_locations: int,
        shopify_locations: int,
        limits: Limits,
        seed: int,
    ) -> World:
        """Fill the simulators with a catalogue whose history is in the past, then go live."""
        clock = BusinessClock()
        katana = MeteredKatana(requests_per_minute=limits.katana_requests_per_minute, clock=clock)
        shop = MeteredShopify(
            bucket_size=limits.shopify_bucket_size, restore_rate=limits.shopify_restore_rate
        )
        scenario = build_catalogue(
            katana,
            shop,
            variants=variants,
            katana_locations=katana_locations,
            shopify_locations=shopify_locations,
            seed=seed,
        )
        clock.go_live()
        return cls(katana, shop, scenario, limits, katana_locations)

    def katana_job(self) -> KatanaJob:
        """What a cold full sync must list from this Katana account."""
        with gc_paused():
            variants = self.katana.variants()
            live_kits = [v.id for v in variants if v.is_kit and not v.deleted]
            return KatanaJob(
                variants=len(variants),
                products=len({v.product_id for v in variants if v.product_id is not None}),
                materials=len({v.material_id for v in variants if v.material_id is not None}),
                bom_rows=sum(len(self.katana.recipe(k)) for k in live_kits),
                locations=len(self.katana.location_names()),
                inventory_rows=len(self.katana.inventory_variant_ids())
                * len(self.katana.location_names()),
                delta_sources=len(DELTA_SOURCES) + len(CATALOGUE_DELTA_LISTS),
            )

    def expected_levels(self) -> dict[LevelKey, int]:
        """Shopify's levels by Katana's formula (the scenario's oracle)."""
        return self.scenario.expected_levels()

    def in_sync(self) -> tuple[int, int]:
        """(levels equal to Katana's formula, levels expected)."""
        expected = self.expected_levels()
        matching = sum(1 for key, qty in expected.items() if self.shop.levels.get(key) == qty)
        return matching, len(expected)

    def shop_variant_count(self) -> int:
        """Every product variant in the shop (the catalogue the daemon must read)."""
        return len(self.scenario.connection().variants)

    def write_config(
        self, folder: Path, *, katana_url: str, shopify_url: str, http_port: int, poll: float
    ) -> Path:
        """A real stocksync config for this world; the limits match the simulators'."""
        return self.scenario.write_config(
            folder,
            katana_url=katana_url,
            shopify_urls=[shopify_url],
            state_path=folder / "state.db",
            http_port=http_port,
            poll_interval_seconds=poll,
            requests_per_minute=self.limits.katana_requests_per_minute,
            log_format="json",
            # A nightly run landing mid-benchmark would distort every figure.
            reconciliation_enabled=False,
        )
