"""Shopify's inventory writes: setting "available" (inventorySetQuantities) and activation.

One request per distinct batch under its own idempotency key, recorded in the caller's journal
before it is sent (PRODUCT.md §3); elements Shopify refuses are set aside and the rest sent again
under a new key; a stale compare is re-read for the caller to overwrite. Requests go through the
client's transport; levels are re-read through the client's reads.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import structlog

from daemon.domain.models import LevelKey, PlannedPush, PushRequest, PushResult
from daemon.shopify import queries
from daemon.shopify.errors import ShopifyError, ShopifyUnavailable
from daemon.shopify.nodes import _by_element, _element_index, _user_errors, _UserError
from daemon.shopify.transport import Transport

log = structlog.get_logger(__name__)

# inventorySetQuantities accepts at most this many quantities per call.
MAX_PUSHES_PER_CALL = 250
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
# The key was used for other variables: only a fresh key can go through. (2026-04 has no
# IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED: a retry after a failed attempt gets its userErrors again.)
NEW_KEY_CODES = frozenset({"IDEMPOTENCY_KEY_PARAMETER_MISMATCH"})
# From 2026-10 Shopify answers a key whose earlier attempt failed with this code instead, and
# only a fresh key gets past it too. Acted on only by clients of that version or later.
NEW_KEY_FROM_2026_10 = "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"
_API_VERSION = re.compile(r"/admin/api/(\d{4}-\d{2})/")
# The first request with this key is still running: ask again shortly with the same key.
CONCURRENT_REQUEST_CODE = "IDEMPOTENCY_CONCURRENT_REQUEST"
CONCURRENT_REQUEST_WAIT = 1.0


class PushJournal(Protocol):
    """Where each inventorySetQuantities request is recorded before it is sent (PRODUCT.md §3)."""

    async def sending(self, request: PushRequest) -> None:
        """`request` is about to be sent: record it, and its levels as in flight under it."""

    async def lost(self) -> None:
        """An attempt may have reached Shopify but its answer was lost."""


async def _record(
    journal: PushJournal | None, variables: Mapping[str, Any], batch: Sequence[PlannedPush]
) -> None:
    if journal is not None:
        await journal.sending(PushRequest(str(variables["key"]), variables, tuple(batch)))


def _set_input(batch: Sequence[PlannedPush], reference: str) -> dict[str, object]:
    """The `input` of an inventorySetQuantities call setting "available" for `batch`."""
    return {
        "name": "available",
        "reason": "correction",
        "referenceDocumentUri": reference,
        "quantities": [
            {
                "inventoryItemId": push.inventory_item_id,
                "locationId": push.location_id,
                "quantity": push.quantity,
                # Required since 2026-04, even when there is nothing to compare: null says so.
                "changeFromQuantity": push.change_from,
            }
            for push in batch
        ],
    }


class LevelReader(Protocol):
    """Where a stale answer's levels are re-read: the client's own reads."""

    async def available_levels(
        self, item_ids: Collection[str], location_ids: Collection[str]
    ) -> dict[LevelKey, int | None]:
        """Shopify's "available" per (item, location) asked for; absent key = not stocked there."""


class InventoryWrites:
    """Sets available quantities and activates items at locations, for one shop."""

    def __init__(
        self,
        transport: Transport,
        reads: LevelReader,
        graphql_url: str,
        *,
        max_attempts: int,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._transport = transport
        self._reads = reads
        self._max_attempts = max_attempts
        self._sleep = sleep
        version = _API_VERSION.search(graphql_url)
        self._new_key_codes = NEW_KEY_CODES | (
            {NEW_KEY_FROM_2026_10} if version is not None and version[1] >= "2026-10" else set()
        )

    async def set_available(
        self,
        pushes: Sequence[PlannedPush],
        *,
        reference: str,
        journal: PushJournal | None = None,
        resend: PushRequest | None = None,
    ) -> list[PushResult]:
        """Set "available" for ≤ 250 distinct pairs; one PushResult per push, in the same order.

        `journal` is told every request before it is sent, and every attempt whose answer was
        lost. `resend` is a request recorded earlier whose answer never arrived: its first
        attempt goes out unchanged, under the same key (`pushes` must be its pushes).
        """
        _check_batch(pushes)
        if resend is not None and tuple(pushes) != resend.pushes:
            raise ValueError("a re-sent request must be sent with its own pushes")
        results: dict[int, PushResult] = {}
        stale: list[tuple[int, str]] = []
        remaining = list(range(len(pushes)))
        while remaining:
            failed = await self._set_quantities(
                [pushes[i] for i in remaining], reference, journal, resend
            )
            resend = None
            if not failed:
                for index in remaining:
                    results[index] = PushResult(push=pushes[index], status="applied")
                break
            # One bad element can fail the whole call, so nothing in it is taken as applied:
            # the failing elements are set aside and the rest go again as a new batch (new key).
            for position, error in failed.items():
                index = remaining[position]
                push = pushes[index]
                if error.code in STALE_CODES:
                    stale.append((index, error.code))
                else:
                    results[index] = PushResult(
                        push=push,
                        status="rejected",
                        code=error.code or "USER_ERROR",
                        message=error.message,
                    )
                    log.info(
                        "shopify_push_rejected",
                        sku=push.sku,
                        inventory_item_id=push.inventory_item_id,
                        location_id=push.location_id,
                        code=error.code,
                        message=error.message,
                    )
            remaining = [
                index for position, index in enumerate(remaining) if position not in failed
            ]
        if stale:
            results.update(await self._resolve_stale(pushes, stale))
        return [results[index] for index in range(len(pushes))]

    async def _set_quantities(
        self,
        batch: Sequence[PlannedPush],
        reference: str,
        journal: PushJournal | None,
        resend: PushRequest | None,
    ) -> dict[int, _UserError]:
        """One batch through inventorySetQuantities; returns the userErrors by element position."""
        if resend is not None:
            variables: dict[str, object] = dict(resend.variables)
        else:
            variables = {"input": _set_input(batch, reference), "key": _new_key()}
            await _record(journal, variables, batch)
        # One key per distinct batch. `Transport.execute` retries transport failures, 5xx and
        # throttling with these very variables, hence the same key; Shopify's dedup is not
        # relied upon.
        on_lost = None if journal is None else journal.lost
        for _ in range(self._max_attempts):
            data = await self._transport.execute(
                queries.SET_QUANTITIES,
                variables,
                cost=queries.SET_QUANTITIES_COST,
                on_lost=on_lost,
            )
            errors = _user_errors(data, "inventorySetQuantities")
            codes = {error.code for error in errors}
            if codes & self._new_key_codes:
                log.info("shopify_idempotency_new_key", codes=sorted(c for c in codes if c))
                variables = {**variables, "key": _new_key()}
                await _record(journal, variables, batch)
                continue
            if CONCURRENT_REQUEST_CODE in codes:
                await self._sleep(CONCURRENT_REQUEST_WAIT)
                continue
            unplaced_stale = [
                e
                for e in errors
                if e.code in STALE_CODES and _element_index(e.field, len(batch)) is None
            ]
            if unplaced_stale:
                errors = [e for e in errors if e not in unplaced_stale]
                errors += await self._locate_stale(batch, unplaced_stale[0])
            return _by_element(errors, len(batch))
        raise ShopifyUnavailable(
            f"inventorySetQuantities kept failing on its idempotency key "
            f"after {self._max_attempts} attempts"
        )

    async def _locate_stale(
        self, batch: Sequence[PlannedPush], error: _UserError
    ) -> list[_UserError]:
        """Pin a stale answer that names no element (`field: null`) on the elements it concerns.

        Shopify's docs say `field` points at the failing element, but some stores answer a stale
        compare with `field: null`. The call failed as a whole, so re-read every compared pair:
        those whose level is not the expected one are the stale ones. If none differs any more
        (it changed back meanwhile), every compared element is treated as stale and re-read
        again by the caller, which never mistakes it for applied.
        """
        compared = [(i, p) for i, p in enumerate(batch) if p.change_from is not None]
        if not compared:
            raise ShopifyError(f"inventorySetQuantities failed: {error.describe()}")
        current = await self._reads.available_levels(
            {p.inventory_item_id for _, p in compared}, {p.location_id for _, p in compared}
        )
        differing = [(i, p) for i, p in compared if current.get(p.key) != p.change_from]
        return [
            _UserError(
                code=error.code, field=("input", "quantities", str(i)), message=error.message
            )
            for i, _ in (differing or compared)
        ]

    async def _resolve_stale(
        self, pushes: Sequence[PlannedPush], stale: Sequence[tuple[int, str]]
    ) -> dict[int, PushResult]:
        """Re-read the levels Shopify changed since our last push, for the caller to overwrite."""
        # Policy on stale: Katana is the source of truth, so the caller overwrites the level with
        # Katana's value, sending changeFromQuantity = the value re-read here. Why compare at
        # all, then? Shopify lowers "available" the moment an order is placed, before Katana
        # knows of the order; a blind set would clobber that decrement without a trace. The
        # compare turns the race into a stale answer: re-read, overwritten and counted
        # (stale_overwrites_total), so it is visible instead of silent.
        stale_pushes = [pushes[index] for index, _ in stale]
        current = await self._reads.available_levels(
            {push.inventory_item_id for push in stale_pushes},
            {push.location_id for push in stale_pushes},
        )
        resolved: dict[int, PushResult] = {}
        for index, code in stale:
            push = pushes[index]
            now = current.get(push.key)
            if now == push.quantity:
                # Shopify already holds the wanted value (often our own earlier attempt whose
                # answer was lost): nothing is left to overwrite.
                resolved[index] = PushResult(push=push, status="applied")
                continue
            log.info(
                "shopify_level_stale",
                sku=push.sku,
                inventory_item_id=push.inventory_item_id,
                location_id=push.location_id,
                expected=push.change_from,
                current=now,
            )
            resolved[index] = PushResult(push=push, status="stale", current=now, code=code)
        return resolved

    async def activate(self, inventory_item_id: str, location_id: str, available: int) -> bool:
        """Stock an item at a location with an initial available quantity; False if refused."""
        variables = {
            "inventoryItemId": inventory_item_id,
            "locationId": location_id,
            "available": available,
            "key": _new_key(),
        }
        data = await self._transport.execute(
            queries.ACTIVATE, variables, cost=queries.ACTIVATE_COST
        )
        errors = _user_errors(data, "inventoryActivate")
        if errors:
            log.warning(
                "shopify_activate_rejected",
                inventory_item_id=inventory_item_id,
                location_id=location_id,
                errors=[error.describe() for error in errors],
            )
            return False
        return True


def _new_key() -> str:
    return str(uuid.uuid4())


def _check_batch(pushes: Sequence[PlannedPush]) -> None:
    if len(pushes) > MAX_PUSHES_PER_CALL:
        raise ValueError(
            f"inventorySetQuantities takes at most {MAX_PUSHES_PER_CALL} quantities, "
            f"got {len(pushes)}"
        )
    seen: set[LevelKey] = set()
    for push in pushes:
        if push.key in seen:
            raise ValueError(
                f"inventory item {push.inventory_item_id} at location {push.location_id} "
                "appears twice in one batch"
            )
        seen.add(push.key)
