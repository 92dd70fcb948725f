"""Figure 4b: CPU time of the pure planner (desired levels, diff, batches).

Measured in a child process of its own (`python -m bench.planner PAIRS`): the bench's heap holds
the simulators' millions of objects, and every full garbage collection would walk them too.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from daemon.domain.mapping import build_mapping
from daemon.domain.models import KatanaVariant, ShopifyVariant, SnapshotEntry, StockRow
from daemon.domain.plan import batches, desired_levels, plan_pushes
from daemon.domain.quantity import QuantityPolicy
from daemon.domain.stock import StockTable
from daemon.memory import tune_garbage_collector

# The scenario's shape: "Main warehouse" fans out to two Shopify locations, a store to one, so
# each variant has three (item, location) pairs fed from two Katana locations.
LOCATIONS: dict[int, tuple[str, ...]] = {
    1: ("gid://shopify/Location/1", "gid://shopify/Location/2"),
    2: ("gid://shopify/Location/3",),
}
PAIRS_PER_VARIANT = sum(len(v) for v in LOCATIONS.values())


@dataclass(frozen=True)
class PlannerResult:
    """CPU seconds per step of planning a cold full sync of `pairs` levels."""

    pairs: int
    pushes: int
    batches: int
    desired_seconds: float
    plan_seconds: float
    batch_seconds: float

    @property
    def total_seconds(self) -> float:
        """CPU seconds of the whole pure planner."""
        return self.desired_seconds + self.plan_seconds + self.batch_seconds


def measure_planner(pairs: int, *, seed: int = 0) -> PlannerResult:
    """Plan `pairs` levels from cold state (every one pushed), timed with time.process_time()."""
    rng = random.Random(seed)
    count = max(1, pairs // PAIRS_PER_VARIANT)
    created = datetime(2025, 1, 1, tzinfo=UTC)
    katana = [
        KatanaVariant(id=i, sku=f"SKU-{i:06d}", created_at=created) for i in range(1, count + 1)
    ]
    shopify = [
        ShopifyVariant(
            id=f"gid://shopify/ProductVariant/{i}",
            sku=f"SKU-{i:06d}",
            inventory_item_id=f"gid://shopify/InventoryItem/{i}",
            tracked=True,
        )
        for i in range(1, count + 1)
    ]
    mapping = build_mapping(katana, shopify, {})
    variants = {v.id: v for v in katana}
    # Whole quantities, as the Katana parser returns them ("7.00000" -> 7).
    # Packed as the Katana client packs it while it reads the pages (not planner work).
    stock = StockTable(
        StockRow(v.id, location, rng.randint(0, 40), rng.randint(0, 3))
        for v in katana
        for location in LOCATIONS
    )
    snapshot: dict[tuple[str, str], SnapshotEntry] = {}  # cold: Shopify told nothing yet
    policy = QuantityPolicy()
    # The daemon plans long after its catalogue and stock rows were read, with many collections
    # in between: start from that settled heap, not with the set-up's pending collection.
    gc.collect()

    started = time.process_time()
    desired, _ = desired_levels(stock, variants, mapping, LOCATIONS, policy)
    after_desired = time.process_time()
    plan = plan_pushes(desired, snapshot)
    after_plan = time.process_time()
    calls = batches(plan)
    after_batches = time.process_time()
    return PlannerResult(
        pairs=len(desired),
        pushes=len(plan),
        batches=len(calls),
        desired_seconds=after_desired - started,
        plan_seconds=after_plan - after_desired,
        batch_seconds=after_batches - after_plan,
    )


# Fresh interpreters measured; the fastest counts. On this VM the same run's user time varies
# by up to 2x from one process to the next (identical page faults): the minimum is the code's
# cost, the rest is the host's (as `timeit` advises).
PLANNER_RUNS = 3


async def measure_planner_isolated(
    pairs: int, *, seed: int = 0, runs: int = PLANNER_RUNS
) -> tuple[PlannerResult, list[float]]:
    """The fastest of `runs` fresh-interpreter measurements, and every run's total seconds."""
    results = [await _measure_in_child(pairs, seed) for _ in range(runs)]
    return min(results, key=lambda r: r.total_seconds), [r.total_seconds for r in results]


async def _measure_in_child(pairs: int, seed: int) -> PlannerResult:
    """`measure_planner` in a fresh interpreter, so that no other heap inflates its CPU time."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.planner",
        str(pairs),
        str(seed),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the planner benchmark exited with code {child.returncode}")
    return PlannerResult(**json.loads(out))


def main(argv: list[str]) -> int:
    """Print one measurement as JSON: `python -m bench.planner PAIRS [SEED]`."""
    pairs = int(argv[0])
    seed = int(argv[1]) if len(argv) > 1 else 0
    tune_garbage_collector()  # as every stocksync process does
    print(json.dumps(asdict(measure_planner(pairs, seed=seed))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
