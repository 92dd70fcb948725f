"""The inventory mutations: inventorySetQuantities, inventoryActivate, and idempotency keys.

- From API version 2026-04, both need ``@idempotent(key:)`` (``BAD_REQUEST`` at run time
  without), and a quantity that omits ``changeFromQuantity`` fails the call with a top-level
  ``INVALID_FIELD_ARGUMENTS`` error; explicit null is fine. Before 2026-04 an omitted
  ``changeFromQuantity`` skips the compare.
- Any userError fails the whole ``inventorySetQuantities`` call: nothing in it is applied.
  ``CHANGE_FROM_QUANTITY_STALE`` carries the element's field path (``faults.stale_without_field``
  answers ``field: null``, as some live stores reportedly do).
- Repeating a key with the same arguments within 24 h replays the first answer, userErrors
  included; other arguments under the same key are refused
  (``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``). ``faults.reexecute_idempotent_retries`` re-executes
  instead, as live stores have been seen to.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from graphql import GraphQLError

from daemon.domain.models import LevelKey
from daemon.sim.shopify.model import (
    AppliedChange,
    _AdjustmentGroup,
    _gid,
    _IdempotencyRecord,
    _now_iso,
    _Shop,
)
from daemon.sim.shopify.request import _idempotency_key, _raw_arguments, _Request, _request

if TYPE_CHECKING:
    from daemon.sim.shopify.request import _Info


MAX_QUANTITY: Final = 1_000_000_000
IDEMPOTENCY_WINDOW_SECONDS: Final = 24 * 3600.0
SET_QUANTITY_NAMES: Final = ("available", "on_hand")
VALID_REASONS: Final = (
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_canceled",
    "movement_created",
    "movement_received",
    "movement_updated",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
)
_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


# --------------------------------------------------------------------------------------------
# The mutations


class _Mutations(_Shop):
    """inventorySetQuantities and inventoryActivate, each run at most once per idempotency key."""

    def _set_quantities(self, info: _Info, input_: Mapping[str, Any]) -> dict[str, Any]:
        request = _request(info)
        field_node = info.field_nodes[0]
        raw_input = _raw_arguments(field_node.arguments or (), request.raw_variables).get("input")
        raw_quantities = _as_list(
            raw_input.get("quantities") if isinstance(raw_input, dict) else []
        )
        key = _idempotency_key(field_node, request.raw_variables)
        self.mutation_calls["inventorySetQuantities"] += 1
        self.set_quantities_sizes.append(len(input_["quantities"]))
        self.set_quantities_keys.append(key)
        if request.strict_inventory_rules:
            if key is None:
                raise _idempotency_required()
            if any(
                not isinstance(q, dict) or "changeFromQuantity" not in q for q in raw_quantities
            ):
                raise GraphQLError(
                    "InventoryQuantityInput must include the following argument: "
                    "changeFromQuantity.",
                    extensions={"code": "INVALID_FIELD_ARGUMENTS"},
                )
        return self._idempotent(
            key,
            _fingerprint("inventorySetQuantities", raw_input),
            "inventoryAdjustmentGroup",
            lambda: self._apply_set_quantities(input_, raw_quantities, request),
        )

    def _apply_set_quantities(
        self, input_: Mapping[str, Any], raw_quantities: Sequence[Any], request: _Request
    ) -> dict[str, Any]:
        name, reason = input_["name"], input_["reason"]
        reference = input_.get("referenceDocumentUri")
        if name not in SET_QUANTITY_NAMES:
            return _set_failure(
                [
                    _user_error(
                        "INVALID_NAME",
                        ["input", "name"],
                        "The quantity name must be either 'available' or 'on_hand'.",
                    )
                ]
            )
        if reason not in VALID_REASONS:
            return _set_failure(
                [
                    _user_error(
                        "INVALID_REASON",
                        ["input", "reason"],
                        f"The specified reason is invalid. Valid values are: "
                        f"{', '.join(VALID_REASONS)}.",
                    )
                ]
            )
        if reference is not None and not _URI_RE.fullmatch(reference):
            return _set_failure(
                [
                    _user_error(
                        "INVALID_REFERENCE_DOCUMENT",
                        ["input", "referenceDocumentUri"],
                        "The specified reference document is invalid.",
                    )
                ]
            )
        quantities: Sequence[Mapping[str, Any]] = input_["quantities"]
        errors, planned = self._check_quantities(quantities, raw_quantities, name)
        if errors:
            return _set_failure(errors)
        return {
            "inventoryAdjustmentGroup": self._apply(planned, name, reason, reference),
            "userErrors": [],
        }

    def _check_quantities(
        self,
        quantities: Sequence[Mapping[str, Any]],
        raw_quantities: Sequence[Any],
        name: str,
    ) -> tuple[list[dict[str, Any]], list[tuple[LevelKey, int]]]:
        """Every element's userErrors, or (when there are none) the (pair, quantity) plan."""
        indexes: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for index, element in enumerate(quantities):
            indexes[(element["inventoryItemId"], element["locationId"])].append(index)
        duplicates = {i for found in indexes.values() if len(found) > 1 for i in found}
        errors: list[dict[str, Any]] = []
        planned: list[tuple[LevelKey, int]] = []
        for index, element in enumerate(quantities):
            raw = raw_quantities[index] if index < len(raw_quantities) else {}
            error = self._check_quantity(index, element, raw, name, index in duplicates)
            if error is not None:
                errors.append(error)
            else:
                planned.append(
                    ((element["inventoryItemId"], element["locationId"]), element["quantity"])
                )
        return errors, planned

    def _check_quantity(
        self,
        index: int,
        element: Mapping[str, Any],
        raw: Any,
        name: str,
        duplicate: bool,
    ) -> dict[str, Any] | None:
        def at(field_name: str) -> list[str]:
            return ["input", "quantities", str(index), field_name]

        item = self._items.get(element["inventoryItemId"])
        location = self._locations.get(element["locationId"])
        quantity: int = element["quantity"]
        if duplicate:
            return _user_error(
                "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                at("locationId"),
                "The combination of inventoryItemId and locationId must be unique.",
            )
        if item is None:
            return _user_error(
                "INVALID_INVENTORY_ITEM",
                at("inventoryItemId"),
                "The specified inventory item could not be found.",
            )
        if not item.tracked:
            # Undocumented on shopify.dev: the simulator refuses untracked items outright.
            return _user_error(
                "INVALID_INVENTORY_ITEM",
                at("inventoryItemId"),
                "The specified inventory item does not track inventory.",
            )
        if location is None:
            return _user_error(
                "INVALID_LOCATION", at("locationId"), "The specified location could not be found."
            )
        key = (item.id, location.id)
        if key not in self._available:
            return _user_error(
                "ITEM_NOT_STOCKED_AT_LOCATION",
                at("locationId"),
                "The specified inventory item is not stocked at the location.",
            )
        if quantity > MAX_QUANTITY:
            return _user_error(
                "INVALID_QUANTITY_TOO_HIGH",
                at("quantity"),
                "The quantity can't be higher than 1,000,000,000.",
            )
        if quantity < -MAX_QUANTITY:
            return _user_error(
                "INVALID_QUANTITY_TOO_LOW",
                at("quantity"),
                "The quantity can't be lower than -1,000,000,000.",
            )
        if name == "on_hand" and quantity < 0:
            return _user_error(
                "INVALID_QUANTITY_NEGATIVE", at("quantity"), "The quantity can't be negative."
            )
        return self._check_compare(index, element, raw, name, key)

    def _check_compare(
        self, index: int, element: Mapping[str, Any], raw: Any, name: str, key: LevelKey
    ) -> dict[str, Any] | None:
        """Compare-and-swap on changeFromQuantity: null (or, before 2026-04, absent) skips it."""
        # From 2026-04 an absent changeFromQuantity never gets here (INVALID_FIELD_ARGUMENTS).
        if not (isinstance(raw, dict) and "changeFromQuantity" in raw):
            return None
        expected = element.get("changeFromQuantity")
        if expected is None or expected == self._quantity(key, name):
            return None
        return _user_error(
            "CHANGE_FROM_QUANTITY_STALE",
            None
            if self.faults.stale_without_field
            else ["input", "quantities", str(index), "changeFromQuantity"],
            "The changeFromQuantity argument no longer matches the persisted quantity.",
        )

    def _apply(
        self,
        planned: Sequence[tuple[LevelKey, int]],
        name: str,
        reason: str,
        reference: str | None,
    ) -> _AdjustmentGroup:
        """Apply every planned element (the checks passed for all of them) and log each one."""
        now = self._clock()
        other = "on_hand" if name == "available" else "available"
        changes: list[dict[str, Any]] = []
        for key, quantity in planned:
            before = self._available[key]
            delta = quantity - self._quantity(key, name)
            # Setting either name moves available and on_hand by the same delta.
            self._available[key] = before + delta
            self.changes.append(AppliedChange(now, key[0], key[1], before, before + delta))
            if delta:
                item, location = self._items[key[0]], self._locations[key[1]]
                for change_name in (name, other):
                    changes.append(
                        {
                            "name": change_name,
                            "delta": delta,
                            "quantityAfterChange": None,
                            "ledgerDocumentUri": None,
                            "item": item,
                            "location": location,
                            "item_id": item.id,
                            "location_id": location.id,
                        }
                    )
        return _AdjustmentGroup(
            id=_gid("InventoryAdjustmentGroup", next(self._ids)),
            created_at=_now_iso(),
            reason=reason,
            reference_document_uri=reference,
            changes=tuple(changes),
        )

    def _activate(self, info: _Info, args: Mapping[str, Any]) -> dict[str, Any]:
        request = _request(info)
        field_node = info.field_nodes[0]
        key = _idempotency_key(field_node, request.raw_variables)
        self.mutation_calls["inventoryActivate"] += 1
        if request.strict_inventory_rules and key is None:
            raise _idempotency_required()
        raw_args = _raw_arguments(field_node.arguments or (), request.raw_variables)
        return self._idempotent(
            key,
            _fingerprint("inventoryActivate", raw_args),
            "inventoryLevel",
            lambda: self._apply_activate(args),
        )

    def _apply_activate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        item = self._items.get(args["inventoryItemId"])
        location = self._locations.get(args["locationId"])
        available, on_hand = args.get("available"), args.get("onHand")
        error: dict[str, Any] | None = None
        if item is None:
            error = _user_error(None, ["inventoryItemId"], "Inventory item does not exist")
        elif location is None:
            error = _user_error(None, ["locationId"], "Location does not exist")
        elif (item.id, location.id) in self._available and (
            available is not None or on_hand is not None
        ):
            error = _user_error(
                None,
                ["available"],
                "Not allowed to set available quantity when the item is already active at "
                "the location.",
            )
        else:
            for field_name, value in (("available", available), ("onHand", on_hand)):
                if value is not None and not -MAX_QUANTITY <= value <= MAX_QUANTITY:
                    error = _user_error(
                        None, [field_name], "The quantity can't be higher than 1,000,000,000."
                    )
        if error is not None or item is None or location is None:
            return {"inventoryLevel": None, "userErrors": [error]}
        self._stock(item, location, available if available is not None else on_hand or 0)
        return {"inventoryLevel": self._level(item.id, location.id), "userErrors": []}

    def _idempotent(
        self,
        key: str | None,
        fingerprint: str,
        result_field: str,
        run: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run a keyed mutation once: a retry within 24 h replays, other arguments are refused."""
        if key is None or self._bypass_idempotency:
            return run()
        now = self._clock()
        record = self._idempotency.get(key)
        if record is not None and now - record.at > IDEMPOTENCY_WINDOW_SECONDS:
            del self._idempotency[key]
            record = None
        if record is not None:
            if record.fingerprint != fingerprint:
                return _keyed_failure(
                    result_field,
                    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                    "The request with this idempotency key has different parameters than the "
                    "original request.",
                )
            if not self.faults.reexecute_idempotent_retries:
                # A replay, userErrors included: 2026-04 has no IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED.
                return record.payload
        payload = run()
        if record is None:
            self._idempotency[key] = _IdempotencyRecord(fingerprint, now, payload)
        return payload


# --------------------------------------------------------------------------------------------
# Small helpers


def _user_error(code: str | None, field_path: list[str] | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field_path, "message": message}


def _as_list(value: Any) -> list[Any]:
    # GraphQL input coercion turns a single value sent for a list into a one-element list.
    return value if isinstance(value, list) else [value]


def _fingerprint(mutation: str, arguments: Any) -> str:
    return json.dumps([mutation, arguments], sort_keys=True, separators=(",", ":"), default=str)


def _set_failure(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inventoryAdjustmentGroup": None, "userErrors": errors}


def _keyed_failure(result_field: str, code: str, message: str) -> dict[str, Any]:
    return {result_field: None, "userErrors": [_user_error(code, None, message)]}


def _idempotency_required() -> GraphQLError:
    return GraphQLError(
        "The @idempotent directive is required for this mutation but was not provided.",
        extensions={"code": "BAD_REQUEST"},
    )
