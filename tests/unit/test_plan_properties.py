"""Properties of the quantity formula, the planner and batching, over generated inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from daemon.domain.mapping import build_mapping
from daemon.domain.models import (
    DesiredLevel,
    KatanaVariant,
    LevelKey,
    PlannedPush,
    ShopifyVariant,
    SnapshotEntry,
    StockRow,
)
from daemon.domain.plan import (
    MAX_BATCH_SIZE,
    batches,
    desired_levels,
    plan_pushes,
)
from daemon.domain.quantity import QuantityPolicy, available_quantity
from daemon.domain.stock import StockTable

ITEMS = [f"gid://shopify/InventoryItem/{n}" for n in range(40)]
LOCATIONS = [f"gid://shopify/Location/{n}" for n in range(5)]

keys = st.tuples(st.sampled_from(ITEMS), st.sampled_from(LOCATIONS))
quantities = st.integers(min_value=-50, max_value=50)
snapshot_entries = st.builds(
    SnapshotEntry, quantity=st.none() | quantities, in_flight=st.booleans()
)
desired_maps = st.dictionaries(keys, quantities, max_size=120)
snapshots = st.dictionaries(keys, snapshot_entries, max_size=120)
decimals = st.decimals(
    min_value=-1_000_000, max_value=1_000_000, places=5, allow_nan=False, allow_infinity=False
)


def as_levels(desired: dict[LevelKey, int]) -> list[DesiredLevel]:
    return [
        DesiredLevel(1, "SKU", item_id, location_id, quantity)
        for (item_id, location_id), quantity in desired.items()
    ]


def applied(
    snapshot: dict[LevelKey, SnapshotEntry], plan: list[PlannedPush]
) -> dict[LevelKey, SnapshotEntry]:
    """The snapshot after Shopify acknowledged every push of the plan."""
    after = dict(snapshot)
    after.update({push.key: SnapshotEntry(push.quantity) for push in plan})
    return after


@given(desired_maps, snapshots)
def test_replanning_after_pushing_the_plan_yields_an_empty_plan(
    desired: dict[LevelKey, int], snapshot: dict[LevelKey, SnapshotEntry]
) -> None:
    levels = as_levels(desired)
    plan = plan_pushes(levels, snapshot)
    assert plan_pushes(levels, applied(snapshot, plan)) == []


@given(desired_maps)
def test_unchanged_inputs_plan_nothing(desired: dict[LevelKey, int]) -> None:
    snapshot = {key: SnapshotEntry(quantity) for key, quantity in desired.items()}
    assert plan_pushes(as_levels(desired), snapshot) == []


@given(desired_maps, snapshots)
def test_planned_quantity_always_equals_the_desired_one(
    desired: dict[LevelKey, int], snapshot: dict[LevelKey, SnapshotEntry]
) -> None:
    for push in plan_pushes(as_levels(desired), snapshot):
        assert push.quantity == desired[push.key]


@given(desired_maps, snapshots)
def test_every_untrusted_or_different_pair_is_planned_and_nothing_else(
    desired: dict[LevelKey, int], snapshot: dict[LevelKey, SnapshotEntry]
) -> None:
    planned = {push.key: push for push in plan_pushes(as_levels(desired), snapshot)}
    for key, quantity in desired.items():
        entry = snapshot.get(key)
        trusted = entry is not None and not entry.in_flight and entry.quantity is not None
        if trusted and entry is not None and entry.quantity == quantity:
            assert key not in planned
        else:
            assert key in planned
            # Compared against the last acknowledged value, in flight or not (PRODUCT.md §3).
            assert planned[key].change_from == (entry.quantity if entry else None)


@given(st.sets(keys, max_size=200), st.integers(min_value=1, max_value=MAX_BATCH_SIZE))
def test_batches_respect_size_have_no_duplicate_pair_and_keep_order(
    pairs: set[LevelKey], size: int
) -> None:
    pushes = [PlannedPush(1, None, item_id, loc, 1, None) for item_id, loc in sorted(pairs)]
    split = batches(pushes, size=size)
    assert all(0 < len(batch) <= size for batch in split)
    for batch in split:
        assert len({push.key for push in batch}) == len(batch)
    assert [push for batch in split for push in batch] == pushes


@given(st.integers(min_value=0, max_value=1_200))
def test_no_batch_exceeds_250(count: int) -> None:
    pushes = [PlannedPush(1, None, f"item/{n}", "loc", 0, None) for n in range(count)]
    assert all(len(batch) <= MAX_BATCH_SIZE for batch in batches(pushes))


@given(
    in_stock=decimals,
    committed=decimals,
    potential=st.none() | decimals,
    is_kit=st.booleans(),
    buffer=st.integers(min_value=0, max_value=100),
    allow_negative=st.booleans(),
)
def test_floor_never_exceeds_the_exact_value(
    in_stock: Decimal,
    committed: Decimal,
    potential: Decimal | None,
    is_kit: bool,
    buffer: int,
    allow_negative: bool,
) -> None:
    row = StockRow(1, 1, in_stock, committed, potential)
    policy = QuantityPolicy(buffer=buffer, allow_negative=allow_negative)
    kit_extra = (potential or Decimal(0)) if is_kit else Decimal(0)
    exact = in_stock + kit_extra - committed - buffer
    quantity = available_quantity(row, is_kit=is_kit, policy=policy)
    if allow_negative or exact >= 0:
        # The largest whole number not above the exact value.
        assert quantity <= exact < quantity + 1
    else:
        assert quantity == 0


T0 = datetime(2025, 1, 1, tzinfo=UTC)


@given(
    st.dictionaries(
        st.tuples(st.integers(1, 6), st.integers(100, 103)),
        st.tuples(decimals, decimals),
        max_size=24,
    ),
    st.dictionaries(keys, snapshot_entries, max_size=40),
)
def test_planning_from_katana_stock_converges_after_one_push(
    stock: dict[tuple[int, int], tuple[Decimal, Decimal]],
    snapshot: dict[LevelKey, SnapshotEntry],
) -> None:
    katana = [KatanaVariant(id=n, sku=f"S{n}", created_at=T0) for n in range(1, 7)]
    shopify = [
        ShopifyVariant(
            id=f"gid://shopify/ProductVariant/{n}",
            sku=f"S{n % 7}",
            inventory_item_id=ITEMS[n],
            tracked=True,
        )
        for n in range(1, 13)
    ]
    table = build_mapping(katana, shopify, {})
    locations = {100: (LOCATIONS[0], LOCATIONS[1]), 101: (LOCATIONS[2],), 102: (LOCATIONS[3],)}
    rows = [StockRow(v, loc, a, b) for (v, loc), (a, b) in stock.items()]
    levels, problems = desired_levels(
        StockTable(rows), {k.id: k for k in katana}, table, locations, QuantityPolicy()
    )
    assert problems == []
    assert len({level.key for level in levels}) == len(levels)
    plan = plan_pushes(levels, snapshot)
    assert len({push.key for push in plan}) == len(plan)  # no duplicate pair anywhere
    assert plan_pushes(levels, applied(snapshot, plan)) == []
