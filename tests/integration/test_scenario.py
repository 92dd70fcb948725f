"""The seeded scenario: its special cases, its oracle, its config, its event stream, its harness."""

from __future__ import annotations

import math
import stat
from collections import Counter
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import aiohttp
import pytest

from daemon.config import load_settings
from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.scenario import (
    DEFAULT_MIX,
    MAIN_WAREHOUSE,
    WHOLESALE_DEPOT,
    EventStream,
    Scenario,
    build_catalogue,
)
from daemon.sim.shopify import ShopifySim


@pytest.fixture
def scenario() -> Scenario:
    return build_catalogue(
        KatanaSim(), ShopifySim(), variants=60, katana_locations=3, shopify_locations=3, seed=7
    )


def item_of(scenario: Scenario, sku: str) -> str:
    """The inventory item of the only Shopify variant with this SKU."""
    (variant,) = [v for v in scenario.connection().variants if v.sku == sku]
    return variant.inventory_item_id


def main_location(scenario: Scenario) -> int:
    return scenario.katana.location_id(MAIN_WAREHOUSE)


def shop_locations(scenario: Scenario, katana_name: str = MAIN_WAREHOUSE) -> tuple[str, ...]:
    return scenario.location_mapping[katana_name]


def test_the_same_seed_builds_the_same_scenario() -> None:
    first = build_catalogue(KatanaSim(), ShopifySim(), variants=40, seed=3)
    second = build_catalogue(KatanaSim(), ShopifySim(), variants=40, seed=3)
    other = build_catalogue(KatanaSim(), ShopifySim(), variants=40, seed=4)

    assert first.expected_levels() == second.expected_levels()
    assert first.variant_map == second.variant_map
    assert first.expected_levels() != other.expected_levels()


def test_the_newest_of_duplicate_katana_skus_feeds_shopify(scenario: Scenario) -> None:
    katana, main = scenario.katana, main_location(scenario)
    for sku, (older, newer) in scenario.duplicate_skus_katana.items():
        assert katana.variant(older).created_at <= katana.variant(newer).created_at
        katana.set_stock_levels([(older, main, 100), (newer, main, 3)])

        expected = scenario.expected_levels()

        for location in shop_locations(scenario):
            assert expected[(item_of(scenario, sku), location)] == scenario.desired_quantity(
                newer, main
            )
        assert scenario.desired_quantity(newer, main) <= 3


def test_a_created_at_tie_goes_to_the_higher_id(scenario: Scenario) -> None:
    sku, (older, newer) = next(iter(scenario.duplicate_skus_katana.items()))
    katana = scenario.katana

    assert katana.variant(older).created_at == katana.variant(newer).created_at
    assert newer > older
    katana.set_stock_levels([(older, main_location(scenario), 50)])
    katana.set_stock_levels([(newer, main_location(scenario), 1)])
    level = scenario.expected_levels()[(item_of(scenario, sku), shop_locations(scenario)[0])]
    assert level == scenario.desired_quantity(newer, main_location(scenario))


def test_stock_at_the_unmapped_location_never_reaches_shopify(scenario: Scenario) -> None:
    assert scenario.unmapped_location == WHOLESALE_DEPOT
    assert WHOLESALE_DEPOT not in scenario.location_mapping
    before = scenario.expected_levels()
    depot = scenario.katana.location_id(WHOLESALE_DEPOT)

    scenario.katana.adjust_stock(scenario.standard[5], depot, 1000)
    scenario.katana.create_sales_order([(scenario.standard[6], 500)], depot)

    assert scenario.expected_levels() == before


def test_one_katana_location_fans_out_to_two_shopify_locations(scenario: Scenario) -> None:
    first, second = shop_locations(scenario)
    expected = scenario.expected_levels()
    item = item_of(scenario, scenario.katana.variant(scenario.standard[8]).sku or "")

    assert scenario.fanned_out_location == MAIN_WAREHOUSE
    assert expected[(item, first)] == expected[(item, second)]


def test_each_mapped_location_feeds_its_own_shopify_location(scenario: Scenario) -> None:
    katana, variant = scenario.katana, scenario.standard[8]
    store = katana.location_id("Store 1")
    (shop_store,) = shop_locations(scenario, "Store 1")
    katana.set_stock(variant, store, 17)
    item = item_of(scenario, katana.variant(variant).sku or "")

    assert scenario.expected_levels()[(item, shop_store)] == 17 - katana.committed(variant, store)


def test_committed_stock_is_subtracted(scenario: Scenario) -> None:
    katana, main, variant = scenario.katana, main_location(scenario), scenario.standard[9]
    katana.set_stock(variant, main, 30)
    key = (item_of(scenario, katana.variant(variant).sku or ""), shop_locations(scenario)[0])
    before = scenario.expected_levels()[key]

    katana.create_sales_order([(variant, 4)], main)

    assert scenario.expected_levels()[key] == before - 4


def test_oversold_stock_reads_as_zero(scenario: Scenario) -> None:
    katana, main, oversold = scenario.katana, main_location(scenario), scenario.standard[0]
    key = (item_of(scenario, katana.variant(oversold).sku or ""), shop_locations(scenario)[0])

    assert katana.in_stock(oversold, main) < katana.committed(oversold, main)
    assert scenario.expected_levels()[key] == 0


def test_fractional_stock_is_floored(scenario: Scenario) -> None:
    katana, main, variant = scenario.katana, main_location(scenario), scenario.standard[10]
    katana.set_stock(variant, main, Decimal("7.9") + katana.committed(variant, main))
    key = (item_of(scenario, katana.variant(variant).sku or ""), shop_locations(scenario)[0])

    assert scenario.expected_levels()[key] == 7


def test_a_kit_level_adds_its_potential(scenario: Scenario) -> None:
    katana, main, kit = scenario.katana, main_location(scenario), scenario.kits[1]
    katana.set_stock_levels([(ingredient, main, 60) for ingredient in katana.recipe(kit)])
    row = katana.stock_row(kit, main)
    from_row = (
        Decimal(row["quantity_in_stock"])
        + Decimal(row["quantity_potential"])
        - Decimal(row["quantity_committed"])
    )

    level = scenario.expected_levels()[
        (item_of(scenario, f"KIT-{1:05d}"), shop_locations(scenario)[0])
    ]

    assert Decimal(row["quantity_potential"]) > 0
    assert level == max(0, math.floor(from_row))


def test_untracked_shopify_items_get_no_level(scenario: Scenario) -> None:
    expected = scenario.expected_levels()

    for sku in scenario.untracked_skus:
        assert not any(key[0] == item_of(scenario, sku) for key in expected)


def test_an_item_gets_levels_only_where_it_is_stocked(scenario: Scenario) -> None:
    item = item_of(scenario, scenario.not_stocked_sku)
    first, second = shop_locations(scenario)

    expected = scenario.expected_levels()

    assert (item, first) in expected
    assert (item, second) not in expected


def test_duplicate_shopify_skus_all_get_the_same_level(scenario: Scenario) -> None:
    expected = scenario.expected_levels()
    location = shop_locations(scenario)[0]
    for sku in scenario.duplicate_skus_shopify:
        twins = [v for v in scenario.connection().variants if v.sku == sku]

        assert len(twins) == 2
        assert len({expected[(v.inventory_item_id, location)] for v in twins}) == 1


def test_variants_without_a_sku_sync_through_the_variant_map(scenario: Scenario) -> None:
    by_gid = {v.id: v for v in scenario.connection().variants}
    expected = scenario.expected_levels()
    main, location = main_location(scenario), shop_locations(scenario)[0]

    for katana_id in scenario.no_sku:
        target = by_gid[scenario.variant_map[katana_id]]
        assert scenario.katana.variant(katana_id).sku is None
        assert expected[(target.inventory_item_id, location)] == scenario.desired_quantity(
            katana_id, main
        )


def test_an_explicit_map_entry_wins_over_the_sku_match(scenario: Scenario) -> None:
    katana_id = scenario.explicit_over_sku
    sku = scenario.katana.variant(katana_id).sku or ""
    by_gid = {v.id: v for v in scenario.connection().variants}
    target = by_gid[scenario.variant_map[katana_id]]
    location = shop_locations(scenario)[0]

    expected = scenario.expected_levels()

    assert (target.inventory_item_id, location) in expected
    assert (item_of(scenario, sku), location) not in expected


def test_a_variant_map_target_is_fed_by_its_entry_alone(scenario: Scenario) -> None:
    katana, main = scenario.katana, main_location(scenario)
    claimer, claimed = scenario.no_sku[0], scenario.claimed_by_map
    katana.set_stock_levels([(claimer, main, 4), (claimed, main, 40)])
    by_gid = {v.id: v for v in scenario.connection().variants}
    target = by_gid[scenario.variant_map[claimer]]

    level = scenario.expected_levels()[(target.inventory_item_id, shop_locations(scenario)[0])]

    assert target.sku == katana.variant(claimed).sku
    assert level == scenario.desired_quantity(claimer, main)
    assert level <= 4


def test_a_sku_with_surrounding_spaces_still_matches(scenario: Scenario) -> None:
    raw = scenario.katana.variant(scenario.whitespace_sku).sku or ""

    assert raw != raw.strip()
    assert (item_of(scenario, raw.strip()), shop_locations(scenario)[0]) in (
        scenario.expected_levels()
    )


def test_materials_and_katana_only_skus_get_no_level(scenario: Scenario) -> None:
    shop_skus = set(scenario.shopify_skus())

    for variant in (*scenario.materials, *scenario.katana_only):
        assert (scenario.katana.variant(variant).sku or "") not in shop_skus


def test_several_shops_get_a_connection_each() -> None:
    shops = [ShopifySim(), ShopifySim()]
    scenario = build_catalogue(KatanaSim(), shops, variants=40, seed=1)

    assert [c.name for c in scenario.connections] == ["store-1", "store-2"]
    assert scenario.expected_levels("store-1").keys() == scenario.expected_levels("store-2").keys()
    with pytest.raises(ValueError, match="several connections"):
        scenario.expected_levels()


def test_too_small_a_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        build_catalogue(KatanaSim(), ShopifySim(), variants=5)


# ---- configuration ---------------------------------------------------------------------------


def test_the_written_config_loads_with_the_daemons_loader(
    scenario: Scenario, tmp_path: Path
) -> None:
    path = scenario.write_config(
        tmp_path,
        katana_url="http://127.0.0.1:1234/v1",
        shopify_urls=["http://127.0.0.1:5678"],
        state_path=tmp_path / "state.db",
        http_port=19464,
        poll_interval_seconds=1.5,
    )

    settings = load_settings(path, env=scenario.secrets_env())

    (connection,) = settings.connections
    assert settings.katana.base_url == "http://127.0.0.1:1234/v1"
    assert settings.katana.api_key.reveal() == scenario.katana.api_key
    assert settings.daemon.poll_interval_seconds == 1.5
    assert connection.admin_url == "http://127.0.0.1:5678"
    assert connection.sync_inventory is True
    assert dict(connection.variant_map) == dict(scenario.variant_map)
    assert {m.katana: m.shopify for m in connection.locations} == dict(scenario.location_mapping)
    env_file = tmp_path / "stocksync.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "KATANA_API_KEY=" in env_file.read_text()


def test_config_needs_one_url_per_shop(scenario: Scenario, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need 1 Shopify URLs"):
        scenario.write_config(
            tmp_path,
            katana_url="http://127.0.0.1:1/v1",
            shopify_urls=["http://127.0.0.1:2", "http://127.0.0.1:3"],
            state_path=tmp_path / "s.db",
            http_port=1,
        )


# ---- the event stream ------------------------------------------------------------------------


class FakeTime:
    """A monotonic clock that only moves when the stream sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_events_are_applied_at_the_requested_rate(scenario: Scenario) -> None:
    fake = FakeTime()
    stream = EventStream(scenario, seed=1, clock=fake.clock, sleep=fake.sleep)

    events = await stream.run(10, duration=2.0)

    assert len(events) == 20
    assert [round(e.at - 100.0, 6) for e in events[:3]] == [0.0, 0.1, 0.2]
    assert stream.applied == events
    stamps = [e.katana_at for e in events]
    assert all(a is not None and b is not None and a < b for a, b in pairwise(stamps))
    assert all(e.variant_ids and e.variant_ids <= e.affected_variant_ids for e in events)


async def test_max_events_stops_the_stream(scenario: Scenario) -> None:
    fake = FakeTime()
    stream = EventStream(scenario, clock=fake.clock, sleep=fake.sleep)

    assert len(await stream.run(1000, duration=None, max_events=7)) == 7


def test_the_event_stream_is_reproducible_from_its_seed() -> None:
    def kinds(seed: int) -> list[str]:
        scenario = build_catalogue(KatanaSim(), ShopifySim(), variants=40, seed=0)
        stream = EventStream(scenario, seed=seed)
        return [stream.step().detail for _ in range(50)]

    assert kinds(5) == kinds(5)
    assert kinds(5) != kinds(6)


@pytest.mark.parametrize("kind", sorted(DEFAULT_MIX))
def test_every_event_kind_applies(scenario: Scenario, kind: str) -> None:
    stream = EventStream(scenario, seed=2)
    # Fill the pipeline first so that packing, deleting and completing have something to act on.
    for _ in range(30):
        stream.step()

    event = stream.step(kind)

    assert event.kind == kind
    assert event.variant_ids


def test_a_storefront_order_lowers_shopify_and_reaches_katana(scenario: Scenario) -> None:
    shop = scenario.connection()
    stream = EventStream(scenario, seed=4, mix={"shopify_order": 1})
    shopify_before = sum(shop.sim.levels.values())
    katana = scenario.katana
    open_before = len(katana.sales_order_ids({"NOT_SHIPPED"}))

    events = [stream.step() for _ in range(5)]

    placed = [e for e in events if e.kind == "shopify_order"]
    assert placed
    assert sum(shop.sim.levels.values()) < shopify_before
    assert len(katana.sales_order_ids({"NOT_SHIPPED"})) == open_before + len(events)


def test_storefront_orders_never_oversell(scenario: Scenario) -> None:
    shop = scenario.connection()
    for key in list(shop.sim.levels):
        shop.sim.set_available_manually(*key, 1)
    stream = EventStream(scenario, seed=5, mix={"shopify_order": 1})

    for _ in range(60):
        stream.step()

    assert min(shop.sim.levels.values()) == 0


def test_events_touch_kits_through_their_ingredients(scenario: Scenario) -> None:
    stream = EventStream(scenario, seed=9)
    kit = scenario.kits[0]
    ingredients = set(scenario.katana.recipe(kit))

    events = [stream.step("purchase_order_received") for _ in range(40)]

    touching = [e for e in events if e.variant_ids & ingredients]
    assert touching
    assert all(kit in e.affected_variant_ids for e in touching)


def test_committed_and_expected_never_go_negative_under_a_long_event_stream(
    scenario: Scenario,
) -> None:
    stream = EventStream(scenario, seed=13)
    katana = scenario.katana

    for _ in range(600):
        stream.step()

    assert {e.kind for e in stream.applied} == set(DEFAULT_MIX)
    for variant in katana.inventory_variant_ids(include_archived=True):
        for location in katana.location_names():
            assert katana.committed(variant, location) >= 0
            assert katana.expected(variant, location) >= 0


def test_row_events_change_rows_without_touching_their_documents(scenario: Scenario) -> None:
    # Katana edits and deletes document rows on their own (issue 12): the stream does too.
    stream = EventStream(scenario, seed=3)
    for _ in range(30):
        stream.step()
    katana = scenario.katana
    orders_before = {o: katana.sales_order_rows(o) for o in katana.sales_order_ids({"NOT_SHIPPED"})}

    deleted = stream.step("sales_order_row_deleted")
    repointed = stream.step("sales_order_row_repointed")
    ingredient = stream.step("recipe_row_repointed")

    assert len(deleted.variant_ids) == 1
    assert len(repointed.variant_ids) == 2  # the old variant and the new one
    assert len(ingredient.variant_ids) == 2
    orders_after = {o: katana.sales_order_rows(o) for o in orders_before}
    assert orders_after != orders_before


def test_an_unknown_event_kind_is_refused(scenario: Scenario) -> None:
    with pytest.raises(ValueError, match="unknown event kinds"):
        EventStream(scenario, mix={"earthquake": 1})
    with pytest.raises(ValueError, match="unknown event kind"):
        EventStream(scenario).step("earthquake")


def test_the_default_mix_is_mostly_order_flow(scenario: Scenario) -> None:
    stream = EventStream(scenario, seed=11)

    kinds = Counter(stream.step().kind for _ in range(300))

    assert sum(n for k, n in kinds.items() if k.startswith("sales_order")) > 150


# ---- the harness -----------------------------------------------------------------------------


async def test_the_harness_serves_both_simulators_on_free_ports(scenario: Scenario) -> None:
    shop = scenario.connection()
    async with (
        run_simulators(scenario.katana, [shop.sim]) as urls,
        aiohttp.ClientSession() as session,
    ):
        katana = await session.get(
            f"{urls.katana}/locations",
            headers={"Authorization": f"Bearer {scenario.katana.api_key}"},
        )
        shopify = await session.post(
            f"{urls.shopify[0]}/admin/api/2026-10/graphql.json",
            json={"query": "{ locations(first: 5) { nodes { id } } }"},
            headers={"X-Shopify-Access-Token": shop.token},
        )
        names = {loc["name"] for loc in (await katana.json())["data"]}
        nodes = (await shopify.json())["data"]["locations"]["nodes"]

    assert urls.katana.startswith("http://127.0.0.1:")
    assert urls.katana.endswith("/v1")
    assert names == {MAIN_WAREHOUSE, "Store 1", WHOLESALE_DEPOT}
    assert len(nodes) == 3
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{urls.katana}/locations")
