"""Connections: opaque base64 cursors over ascending numeric ids, like Shopify's.

`_paginate` cuts one page out of a sorted id list under first/after/last/before/reverse (and,
in a bulk operation, reads whole or one window of positions at a time); the connection types'
`edges`, `nodes` and `pageInfo` resolve from the `_Connection` it returns.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from graphql import GraphQLError

if TYPE_CHECKING:
    from daemon.sim.shopify.request import _Info


MAX_PAGE_SIZE: Final = 250


@dataclass(frozen=True, slots=True)
class _BulkRead:
    """How a bulk operation reads a connection: whole, or (its top level) one window of it."""

    window: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class _Connection:
    nums: list[int]
    fetch: Callable[[int], Any]
    has_next_page: bool
    has_previous_page: bool


def _encode_cursor(num: int) -> str:
    raw = json.dumps({"last_id": num, "last_value": num}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def _decode_cursor(cursor: Any) -> int:
    try:
        decoded = json.loads(base64.b64decode(str(cursor), validate=True))
        num = decoded["last_id"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise GraphQLError("Invalid cursor for current pagination sort.") from exc
    if not isinstance(num, int):
        raise GraphQLError("Invalid cursor for current pagination sort.")
    return num


def _paginate(
    ids: Sequence[int],
    args: Mapping[str, Any],
    fetch: Callable[[int], Any],
    bulk: _BulkRead | None = None,
) -> _Connection:
    """One page of `ids` (ascending) under first/after/last/before/reverse.

    In a bulk operation (`bulk`) first/last are optional (without them: everything) and not
    capped; a `bulk.window` keeps only those positions, has_next_page then saying whether
    positions remain after the window.
    """
    first, last = args.get("first"), args.get("last")
    if first is None and last is None and bulk is None:
        raise GraphQLError("you must provide one of first or last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value > MAX_PAGE_SIZE and bulk is None:
            raise GraphQLError(f"{name} cannot exceed {MAX_PAGE_SIZE}")
        if value is not None and value < 0:
            raise GraphQLError(f"{name} cannot be negative")
    reverse = bool(args.get("reverse"))
    count = len(ids)
    lo, hi = 0, count
    if args.get("after") is not None:
        after = _decode_cursor(args["after"])
        if reverse:
            hi = min(hi, bisect_left(ids, after))
        else:
            lo = max(lo, bisect_right(ids, after))
    if args.get("before") is not None:
        before = _decode_cursor(args["before"])
        if reverse:
            lo = max(lo, bisect_right(ids, before))
        else:
            hi = min(hi, bisect_left(ids, before))
    # Positions in traversal order: ascending ids, or descending when reversed.
    window_start = count - hi if reverse else lo
    window_size = max(0, hi - lo)
    start, stop = 0, window_size
    if first is not None:
        stop = min(stop, first)
    if last is not None:
        start = max(start, stop - last)
    positions = range(window_start + start, window_start + stop)
    has_next_page = window_start + stop < count
    if bulk is not None and bulk.window is not None:
        low, high = bulk.window
        has_next_page = high < len(positions)
        positions = positions[low:high]
    nums = [ids[count - 1 - p] if reverse else ids[p] for p in positions]
    return _Connection(
        nums=nums,
        fetch=fetch,
        has_next_page=has_next_page,
        has_previous_page=window_start + start > 0,
    )


def _connection_edges(connection: _Connection, _info: _Info) -> list[dict[str, Any]]:
    return [{"cursor": _encode_cursor(n), "node": connection.fetch(n)} for n in connection.nums]


def _connection_nodes(connection: _Connection, _info: _Info) -> list[Any]:
    return [connection.fetch(n) for n in connection.nums]


def _connection_page_info(connection: _Connection, _info: _Info) -> dict[str, Any]:
    nums = connection.nums
    return {
        "hasNextPage": connection.has_next_page,
        "hasPreviousPage": connection.has_previous_page,
        "startCursor": _encode_cursor(nums[0]) if nums else None,
        "endCursor": _encode_cursor(nums[-1]) if nums else None,
    }
