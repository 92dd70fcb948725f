"""Parsers of Shopify's response nodes: locations, variants, levels, userErrors, connections.

Each takes what the GraphQL answer holds as plain JSON and returns a typed value, or None (or a
ShopifyError) where the answer is malformed; none of them speaks HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.domain.models import ShopifyVariant
from daemon.shopify.errors import ShopifyError


@dataclass(frozen=True, slots=True)
class ShopifyLocation:
    """A Shopify location."""

    id: str
    name: str
    is_active: bool


@dataclass(frozen=True, slots=True)
class _UserError:
    code: str | None
    field: tuple[str, ...]
    message: str

    def describe(self) -> str:
        return f"{self.code or 'USER_ERROR'}: {self.message}"


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShopifyError(f"malformed Shopify response: {what} is not an object")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise ShopifyError(f"malformed Shopify response: {what} is not a list")
    return value


def _next_cursor(connection: Mapping[str, Any], after: str | None, what: str) -> str | None:
    """The cursor of the next page, or None on the last page."""
    page = _object(connection.get("pageInfo"), f"{what}.pageInfo")
    if page.get("hasNextPage") is not True:
        return None
    cursor = page.get("endCursor")
    # Without a new cursor the next request would fetch this page again, forever.
    if not isinstance(cursor, str) or not cursor or cursor == after:
        raise ShopifyError(f"malformed Shopify response: {what} has a next page but no new cursor")
    return cursor


def _location(node: object) -> ShopifyLocation | None:
    if not isinstance(node, dict):
        return None
    location_id, name, active = node.get("id"), node.get("name"), node.get("isActive")
    if (
        not isinstance(location_id, str)
        or not isinstance(name, str)
        or not isinstance(active, bool)
    ):
        return None
    return ShopifyLocation(id=location_id, name=name, is_active=active)


def _variant(node: object) -> ShopifyVariant | None:
    if not isinstance(node, dict):
        return None
    variant_id, sku, item = node.get("id"), node.get("sku"), node.get("inventoryItem")
    if not isinstance(variant_id, str) or not (sku is None or isinstance(sku, str)):
        return None
    if not isinstance(item, dict):
        return None
    item_id, tracked = item.get("id"), item.get("tracked")
    if not isinstance(item_id, str) or not isinstance(tracked, bool):
        return None
    # Shopify reports a variant without a SKU as "" or null; both mean "no SKU".
    return ShopifyVariant(
        id=variant_id, sku=sku or None, inventory_item_id=item_id, tracked=tracked
    )


def _available(quantities: object) -> tuple[bool, int | None]:
    """(readable, the "available" quantity) of an InventoryLevel's `quantities`; the quantity
    is None where the level has no "available" one."""
    if not isinstance(quantities, list):
        return False, None
    for quantity in quantities:
        if isinstance(quantity, dict) and quantity.get("name") == "available":
            value = quantity.get("quantity")
            if isinstance(value, bool) or not isinstance(value, int):
                return False, None
            return True, value
    return True, None


def _level(node: object) -> tuple[str, int | None] | None:
    """(location id, available) from an InventoryLevel node; None when malformed."""
    if not isinstance(node, dict):
        return None
    location = node.get("location")
    location_id = location.get("id") if isinstance(location, dict) else None
    readable, available = _available(node.get("quantities"))
    if not isinstance(location_id, str) or not readable:
        return None
    return location_id, available


def _user_errors(data: Mapping[str, Any], mutation: str) -> list[_UserError]:
    payload = _object(data.get(mutation), mutation)
    errors: list[_UserError] = []
    for raw in _list(payload.get("userErrors"), f"{mutation}.userErrors"):
        if not isinstance(raw, dict):
            raise ShopifyError(f"malformed Shopify response: {mutation}.userErrors entry")
        code, field, message = raw.get("code"), raw.get("field"), raw.get("message")
        errors.append(
            _UserError(
                code=code if isinstance(code, str) else None,
                field=tuple(str(part) for part in field) if isinstance(field, list) else (),
                message=message if isinstance(message, str) else "",
            )
        )
    return errors


def _element_index(field: Sequence[str], size: int) -> int | None:
    """The batch position a userError's field points at (["input","quantities","3",...] → 3)."""
    for position, part in enumerate(field[:-1]):
        if part == "quantities":
            index = field[position + 1]
            if index.isdigit() and int(index) < size:
                return int(index)
            return None
    return None


def _by_element(errors: Iterable[_UserError], size: int) -> dict[int, _UserError]:
    """userErrors by element position; an error naming no element fails the whole call."""
    by_element: dict[int, _UserError] = {}
    whole_call: list[_UserError] = []
    for error in errors:
        index = _element_index(error.field, size)
        if index is None:
            whole_call.append(error)
        else:
            by_element.setdefault(index, error)
    if whole_call:
        messages = "; ".join(error.describe() for error in whole_call)
        raise ShopifyError(f"inventorySetQuantities failed: {messages}")
    return by_element
