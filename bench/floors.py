"""The floors the APIs' rate limits put under a sync job (pure arithmetic, no I/O).

Katana: at most R requests start in any sliding 60 s window; a cold client may burst R at once.
The k-th request (0-based) can start no earlier than floor(k / R) windows in, so K requests take
at least floor((K - 1) / R) x 60 s (response times ignored).

Shopify: a leaky bucket of B points restoring r points/s, full at the start. Spending C points
leaves the bucket at B + r*t - C >= 0, so it takes at least max(0, C - B) / r seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KATANA_WINDOW_SECONDS = 60.0
KATANA_PAGE_SIZE = 250
SHOPIFY_BATCH_SIZE = 250
# inventorySetQuantities costs a flat 10 points, whatever its size (the simulator's accounting,
# as Shopify documents mutations).
SET_QUANTITIES_COST = 10


def pages(rows: int, page_size: int = KATANA_PAGE_SIZE) -> int:
    """Requests to list `rows` rows: an empty list still takes one request."""
    return max(1, math.ceil(rows / page_size))


def katana_floor_seconds(requests: int, requests_per_window: int) -> float:
    """Least wall time for `requests` under a sliding-window budget (cold start: full burst)."""
    if requests_per_window < 1:
        raise ValueError("requests_per_window must be at least 1")
    if requests <= 0:
        return 0.0
    return ((requests - 1) // requests_per_window) * KATANA_WINDOW_SECONDS


def shopify_floor_seconds(points: float, bucket_size: float, restore_rate: float) -> float:
    """Least wall time to spend `points` from a full bucket that restores `restore_rate`/s."""
    if restore_rate <= 0:
        raise ValueError("restore_rate must be positive")
    return max(0.0, points - bucket_size) / restore_rate


def set_quantities_calls(pairs: int) -> int:
    """Fewest inventorySetQuantities calls that set `pairs` levels."""
    return math.ceil(pairs / SHOPIFY_BATCH_SIZE)


def best_quantities_per_call(pairs: int) -> float:
    """The highest mean batch size a plan of `pairs` levels can reach."""
    calls = set_quantities_calls(pairs)
    return pairs / calls if calls else 0.0


@dataclass(frozen=True)
class KatanaJob:
    """Rows a cold full sync must list from Katana, and the delta sources one cycle polls."""

    variants: int  # every variant, deleted and archived ones included (the daemon asks for them)
    products: int
    materials: int
    bom_rows: int
    locations: int
    inventory_rows: int  # one per live (variant, location)
    delta_sources: int  # each is polled once per cycle, one page at least

    @property
    def requests(self) -> int:
        """Fewest requests: every list paged at 250, plus one page per delta source."""
        return (
            pages(self.variants)
            + pages(self.products)
            + pages(self.materials)
            + pages(self.bom_rows)
            + pages(self.locations)
            + pages(self.inventory_rows)
            + self.delta_sources
        )


@dataclass(frozen=True)
class ShopifyJob:
    """Points a cold full sync must spend at Shopify."""

    catalogue_points: float  # reading every product variant and location, as the shop charges
    pairs: int  # (inventory item, location) levels to set

    @property
    def points(self) -> float:
        """Catalogue reads plus the fewest full inventorySetQuantities calls."""
        return self.catalogue_points + SET_QUANTITIES_COST * set_quantities_calls(self.pairs)


@dataclass(frozen=True)
class SyncFloor:
    """Both APIs' floors for one job; the job's floor is the larger (they overlap perfectly)."""

    katana_seconds: float
    shopify_seconds: float

    @property
    def seconds(self) -> float:
        """The floor of the job: Katana and Shopify budgets are independent and can be spent at
        the same time, so the slower of the two bounds it."""
        return max(self.katana_seconds, self.shopify_seconds)

    @property
    def serial_seconds(self) -> float:
        """The floor if the two APIs were used one after the other (no overlap at all)."""
        return self.katana_seconds + self.shopify_seconds

    @property
    def bound_by(self) -> str:
        """Which API's limit sets the floor."""
        return "Katana rate" if self.katana_seconds > self.shopify_seconds else "Shopify cost"


def sync_floor(
    katana: KatanaJob,
    shopify: ShopifyJob,
    *,
    katana_requests_per_minute: int,
    shopify_bucket_size: float,
    shopify_restore_rate: float,
) -> SyncFloor:
    """The full sync's floor at the given limits."""
    return SyncFloor(
        katana_seconds=katana_floor_seconds(katana.requests, katana_requests_per_minute),
        shopify_seconds=shopify_floor_seconds(
            shopify.points, shopify_bucket_size, shopify_restore_rate
        ),
    )
