"""Live business: `EventStream` applies a realistic mix of business events (`DEFAULT_MIX`) to the
simulators and records when each happened (`AppliedEvent`) so benchmarks can measure lag."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from daemon.sim.scenario.catalogue import _merge
from daemon.sim.scenario.model import Scenario


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
