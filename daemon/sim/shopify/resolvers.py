"""The reads: how the simulated Shopify answers its query fields.

`node`/`nodes` by gid, `location` (or the primary one), `locations` (deactivated ones only with
``includeInactive: true``), `productVariants` and `inventoryItems` (with the search subset:
``sku:ABC OR sku:"D E"``, ``id:123``, prefix ``sku:AB*``, free text; SKUs match
case-insensitively), `productVariantsCount`, a location's or an item's inventory levels, and
a level's quantities by name. Which field calls which method is in `schema`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final

from graphql import GraphQLError

from daemon.sim.shopify.bulk import _Bulk
from daemon.sim.shopify.model import _gid, _Item, _LevelRef, _Location
from daemon.sim.shopify.pagination import _BulkRead, _Connection, _paginate

QUANTITY_NAMES: Final = (
    "available",
    "committed",
    "damaged",
    "incoming",
    "on_hand",
    "quality_control",
    "reserved",
    "safety_stock",
)
_GID_RE: Final = re.compile(r"gid://shopify/(\w+)/(\d+)(?:\?inventory_item_id=(\d+))?")


# --------------------------------------------------------------------------------------------
# The reads


class _Reads(_Bulk):
    """Query fields: nodes, locations, variants, items, levels and quantities."""

    def _node(self, gid: Any) -> Any:
        if not isinstance(gid, str):
            return None
        match = _GID_RE.fullmatch(gid)
        if match is None:
            return None
        kind, num, item_num = match.group(1), int(match.group(2)), match.group(3)
        if kind == "InventoryLevel":
            # A level's gid is its location's number qualified by the item, as on Shopify.
            if item_num is None:
                return None
            return self._level(_gid("InventoryItem", int(item_num)), _gid("Location", num))
        if kind == "BulkOperation":
            return self._bulk_operation(_gid(kind, num))
        lookup: dict[str, Mapping[str, Any]] = {
            "InventoryItem": self._items,
            "Location": self._locations,
            "Product": self._products,
            "ProductVariant": self._variants,
        }
        table = lookup.get(kind)
        return None if table is None else table.get(_gid(kind, num))

    def _location_or_primary(self, gid: str | None) -> _Location | None:
        if gid is None:
            return next(iter(self._locations.values()), None)
        return self._locations.get(gid)

    def _quantities(self, level: _LevelRef, names: Sequence[str]) -> list[dict[str, Any]]:
        key = (level.item.id, level.location.id)
        unknown = [name for name in names if name not in QUANTITY_NAMES]
        if unknown:
            raise GraphQLError(
                f"The quantity name {unknown[0]!r} is invalid. Valid values are: "
                f"{', '.join(QUANTITY_NAMES)}.",
                extensions={"code": "BAD_REQUEST"},
            )
        return [{"name": name, "quantity": self._quantity(key, name)} for name in names]

    def _location_connection(self, args: Mapping[str, Any], bulk: _BulkRead | None) -> _Connection:
        # Shopify leaves deactivated locations out unless asked for them.
        everything = bool(args.get("includeInactive"))
        nums = sorted(n for n, loc in self._location_nums.items() if everything or loc.is_active)
        return _paginate(nums, args, self._location_nums.__getitem__, bulk)

    def _variant_connection(self, args: Mapping[str, Any], bulk: _BulkRead | None) -> _Connection:
        query = args.get("query")
        nums = self._variant_order if not query else self._search_variants(query)
        return _paginate(nums, args, self._variant_nums.__getitem__, bulk)

    def _variants_count(self, args: Mapping[str, Any]) -> dict[str, Any]:
        # `query` has no supported search fields on Shopify: every variant counts.
        total, limit = len(self._variant_order), args.get("limit")
        if limit is not None and total > limit:
            return {"count": limit, "precision": "AT_LEAST"}
        return {"count": total, "precision": "EXACT"}

    def _item_connection(self, args: Mapping[str, Any], bulk: _BulkRead | None) -> _Connection:
        query = args.get("query")
        if not query:
            return _paginate(self._item_order, args, self._item_nums.__getitem__, bulk)
        item_nums = sorted(
            {self._variant_nums[n].item.num for n in self._search_variants(query, by_item=True)}
        )
        return _paginate(item_nums, args, self._item_nums.__getitem__, bulk)

    def _location_levels(
        self, location: _Location, args: Mapping[str, Any], bulk: _BulkRead | None
    ) -> _Connection:
        def fetch(item_num: int) -> _LevelRef | None:
            return self._level(_gid("InventoryItem", item_num), location.id)

        return _paginate(location.item_nums, args, fetch, bulk)

    def _item_levels(
        self, item: _Item, args: Mapping[str, Any], bulk: _BulkRead | None
    ) -> _Connection:
        def fetch(location_num: int) -> _LevelRef | None:
            return self._level(item.id, _gid("Location", location_num))

        # A shop has a handful of locations: finding the item's ones on demand is cheap.
        stocked = [
            num for num, loc in self._location_nums.items() if (item.id, loc.id) in self._available
        ]
        return _paginate(sorted(stocked), args, fetch, bulk)

    def _search_variants(self, query: str, *, by_item: bool = False) -> list[int]:
        """Numbers of the variants a search query matches, ascending."""
        groups = _search_groups(query)
        if not groups:
            return []
        exact_skus = [
            value
            for group in groups
            for name, value in group
            if name == "sku" and not value.endswith("*")
        ]
        if all(any(n == "sku" and not v.endswith("*") for n, v in g) for g in groups):
            # Fast path: every OR-group names an exact SKU, so the SKU index has every match.
            candidates = {
                v for sku in exact_skus for v in self._variants_by_sku.get(sku.casefold(), ())
            }
        else:
            candidates = set(self._variants.values())
        matches = []
        for variant in candidates:
            num = variant.item.num if by_item else variant.num
            text = f"{variant.sku or ''} {variant.title} {variant.product.title}"
            if any(all(_term_matches(t, variant.sku, num, text) for t in g) for g in groups):
                matches.append(variant.num)
        return sorted(matches)


# --------------------------------------------------------------------------------------------
# Search syntax (a subset): `sku:ABC OR sku:"D E"`, `id:123`, prefix `sku:AB*`, free text


def _search_groups(query: str) -> list[list[tuple[str | None, str]]] | None:
    """OR-groups of AND-ed (field, value) terms; None when the query cannot be tokenised."""
    try:
        tokens = shlex.split(query)
    except ValueError:
        return None
    groups: list[list[tuple[str | None, str]]] = [[]]
    for token in tokens:
        if token == "OR":
            groups.append([])
            continue
        name, sep, value = token.partition(":")
        groups[-1].append((name.lower(), value) if sep else (None, token))
    return [group for group in groups if group]


def _term_matches(term: tuple[str | None, str], sku: str | None, num: int, text: str) -> bool:
    name, value = term
    wanted = value.casefold()
    if name == "sku":
        have = (sku or "").casefold()
        return have.startswith(wanted[:-1]) if wanted.endswith("*") else have == wanted
    if name == "id":
        # Either the bare number or a gid ending in it.
        return value.rpartition("/")[2] == str(num)
    return wanted in text.casefold()
