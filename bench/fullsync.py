"""Figure 1: a cold daemon's full initial sync, against the floor of the pages and points due."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.daemon_process import DaemonProcess
from bench.floors import ShopifyJob, SyncFloor, pages, sync_floor
from bench.meters import KatanaRequest, ShopifyCall
from bench.world import CATALOGUE_DELTA_LISTS, World
from daemon.katana.models import DELTA_SOURCES

# The daemon's GraphQL operations (daemon/shopify/queries.py) that are not catalogue reads; every
# other one (Variants, Locations, VariantsCount, BulkRun, BulkOperation...) reads the catalogue.
SET_OPERATION = "Set"
NOT_CATALOGUE_OPERATIONS = frozenset({SET_OPERATION, "Activate", "AvailableLevels"})


@dataclass(frozen=True)
class Phase:
    """When one kind of request happened during the sync, relative to the daemon's start."""

    name: str
    requests: int
    first: float
    last: float


@dataclass(frozen=True)
class FullSyncResult:
    """What the cold sync took, what it had to take, and how it spent its requests."""

    wall_seconds: float
    floor: SyncFloor
    katana_requests_min: int
    katana_requests: int
    shopify_points_min: float
    shopify_points: float  # actual points charged, throttled calls excluded (they cost nothing)
    pairs: int
    set_quantities_sizes: tuple[int, ...]
    in_sync: tuple[int, int]
    phases: tuple[Phase, ...]
    applied_levels: int  # elements Shopify applied (a call failed by a userError applies none)
    katana_during_shopify_catalogue: int  # Katana requests made while the shop's catalogue was read

    @property
    def mean_quantities_per_call(self) -> float:
        """Mean size of the sync's inventorySetQuantities calls."""
        sizes = self.set_quantities_sizes
        return sum(sizes) / len(sizes) if sizes else 0.0


async def measure_full_sync(world: World, daemon: DaemonProcess, within: float) -> FullSyncResult:
    """Start the daemon on empty state and time its first cycle (the full sync) to the end."""
    katana_job = world.katana_job()
    started = await daemon.start()
    ended = await daemon.wait_cycles(1, within)
    katana_log = [r for r in world.katana.timeline if started <= r.at <= ended]
    shopify_log = [c for c in world.shop.calls if started <= c.at <= ended]
    pairs = len(world.expected_levels())
    shopify_job = ShopifyJob(
        catalogue_points=_catalogue_points(shopify_log, world.shop_variant_count()),
        pairs=pairs,
    )
    limits = world.limits
    floor = sync_floor(
        katana_job,
        shopify_job,
        katana_requests_per_minute=limits.katana_requests_per_minute,
        shopify_bucket_size=limits.shopify_bucket_size,
        shopify_restore_rate=limits.shopify_restore_rate,
    )
    return FullSyncResult(
        wall_seconds=ended - started,
        floor=floor,
        katana_requests_min=katana_job.requests,
        katana_requests=len(katana_log),
        shopify_points_min=shopify_job.points,
        shopify_points=sum(c.actual for c in shopify_log if not c.throttled),
        pairs=pairs,
        set_quantities_sizes=tuple(world.shop.set_quantities_sizes),
        in_sync=world.in_sync(),
        phases=_phases(started, katana_log, shopify_log),
        applied_levels=sum(1 for c in world.shop.changes if started <= c.at <= ended),
        katana_during_shopify_catalogue=_overlap(katana_log, shopify_log),
    )


def _overlap(katana: list[KatanaRequest], shopify: list[ShopifyCall]) -> int:
    """Katana requests that arrived between the first and last Shopify catalogue page."""
    pages_at = [c.at for c in shopify if is_catalogue(c)]
    if not pages_at:
        return 0
    first, last = min(pages_at), max(pages_at)
    return sum(1 for r in katana if first <= r.at <= last)


def is_catalogue(call: ShopifyCall) -> bool:
    """Whether a Shopify operation reads the catalogue (paged or through a bulk operation)."""
    return call.operation not in NOT_CATALOGUE_OPERATIONS


def _catalogue_points(calls: list[ShopifyCall], shop_variants: int) -> float:
    """What one read of the shop's catalogue costs, by the simulator's own accounting.

    Counts the read path the daemon took (pages below its bulk threshold, a bulk operation
    above), at most one pass of pages: a second pass, if the daemon made one, is its own cost
    and must not raise the floor.
    """
    one_pass = {"Variants": pages(shop_variants), "Locations": 1}
    points = 0.0
    for call in calls:
        if call.throttled or not is_catalogue(call):
            continue
        if call.operation in one_pass:
            if one_pass[call.operation] <= 0:
                continue
            one_pass[call.operation] -= 1
        points += call.actual
    return points


def _phases(
    started: float, katana: Iterable[KatanaRequest], shopify: Iterable[ShopifyCall]
) -> tuple[Phase, ...]:
    groups: dict[str, list[float]] = {}
    for request in katana:
        resource = _resource(request)
        # The catalogue lists are read whole once, then polled like the delta sources.
        if resource in DELTA_SOURCES or (resource in CATALOGUE_DELTA_LISTS and request.incremental):
            name = "Katana delta polls"
        elif resource in CATALOGUE_DELTA_LISTS or resource == "locations":
            name = "Katana catalogue"
        else:
            name = f"Katana /{resource}"
        groups.setdefault(name, []).append(request.at - started)
    for call in shopify:
        if is_catalogue(call):
            name = "Shopify catalogue"
        elif call.operation == SET_OPERATION:
            name = "Shopify inventorySetQuantities"
        else:
            name = f"Shopify {call.operation}"
        groups.setdefault(name, []).append(call.at - started)
    return tuple(
        Phase(name, len(times), min(times), max(times))
        for name, times in sorted(groups.items(), key=lambda item: min(item[1]))
    )


def _resource(request: KatanaRequest) -> str:
    return request.path.lstrip("/").split("/")[0]
