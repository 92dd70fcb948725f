"""The schema the simulated Shopify serves: ``shopify_schema.graphql`` wired to its resolvers.

`_SCHEMA` is built once at import: the SDL (a subset of Shopify's 2026-04 Admin schema, checked
against the real one by tests/reference/) with every field the sim answers given a resolver,
the connection types' edges/nodes/pageInfo, the Node interface's type resolution and the
UnsignedInt64 scalar as digit strings. The resolvers themselves are methods of the simulator
(`resolvers`, `mutations`, `bulk`); the table below says which answers which field. Also here:
the document helpers cost, bulk and execution share (`_collect`, `_fragments`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    SelectionSetNode,
    build_schema,
)

from daemon.sim.shopify.model import (
    _AdjustmentGroup,
    _BulkOperation,
    _gid,
    _Item,
    _LevelRef,
    _Location,
    _Product,
    _Variant,
)
from daemon.sim.shopify.pagination import (
    _connection_edges,
    _connection_nodes,
    _connection_page_info,
)
from daemon.sim.shopify.request import _bulk_read, _request, _top_level

if TYPE_CHECKING:
    from daemon.sim.shopify.request import _Info
    from daemon.sim.shopify.server import ShopifySim


SCHEMA_FILE: Final = Path(__file__).with_name("shopify_schema.graphql")


# --------------------------------------------------------------------------------------------
# Resolvers (graphql-core calls them with the parent object, info and the field's arguments)


def _sim(info: _Info) -> ShopifySim:
    return _request(info).sim


def _resolve_node_type(value: Any, _info: _Info, _abstract: Any) -> str | None:
    return _NODE_TYPES.get(type(value))


_NODE_TYPES: Final[dict[type, str]] = {
    _BulkOperation: "BulkOperation",
    _Item: "InventoryItem",
    _LevelRef: "InventoryLevel",
    _Location: "Location",
    _Product: "Product",
    _Variant: "ProductVariant",
}


def _resolvers() -> dict[str, dict[str, Callable[..., Any]]]:
    return {
        "QueryRoot": {
            "inventoryItem": lambda _r, info, id: _sim(info)._items.get(id),
            "bulkOperation": lambda _r, info, id: _sim(info)._bulk_operation(id),
            "currentBulkOperation": lambda _r, info, **a: _sim(info)._current_bulk_operation(
                a["type"]
            ),
            "inventoryItems": lambda _r, info, **a: _top_level(
                info, _sim(info)._item_connection(a, _bulk_read(info, top_level=True))
            ),
            "location": lambda _r, info, id=None: _sim(info)._location_or_primary(id),
            "locations": lambda _r, info, **a: _top_level(
                info, _sim(info)._location_connection(a, _bulk_read(info, top_level=True))
            ),
            "node": lambda _r, info, id: _sim(info)._node(id),
            "nodes": lambda _r, info, ids: [_sim(info)._node(i) for i in ids],
            "productVariant": lambda _r, info, id: _sim(info)._variants.get(id),
            "productVariants": lambda _r, info, **a: _top_level(
                info, _sim(info)._variant_connection(a, _bulk_read(info, top_level=True))
            ),
            "productVariantsCount": lambda _r, info, **a: _sim(info)._variants_count(a),
        },
        "Location": {
            "fulfillsOnlineOrders": lambda loc, _i: loc.fulfills_online_orders,
            "inventoryLevel": lambda loc, info, inventoryItemId: _sim(info)._level(
                inventoryItemId, loc.id
            ),
            "inventoryLevels": lambda loc, info, **a: _sim(info)._location_levels(
                loc, a, _bulk_read(info)
            ),
            "isActive": lambda loc, _i: loc.is_active,
        },
        "ProductVariant": {
            "displayName": lambda v, _i: f"{v.product.title} - {v.title}",
            "inventoryItem": lambda v, _i: v.item,
        },
        "InventoryItem": {
            "inventoryLevel": lambda item, info, locationId: _sim(info)._level(item.id, locationId),
            "inventoryLevels": lambda item, info, **a: _sim(info)._item_levels(
                item, a, _bulk_read(info)
            ),
        },
        "InventoryLevel": {
            "id": lambda level, _i: (
                f"{_gid('InventoryLevel', level.location.num)}?inventory_item_id={level.item.num}"
            ),
            "quantities": lambda level, info, names: _sim(info)._quantities(level, names),
        },
        "BulkOperation": {
            "completedAt": lambda op, _i: op.completed_at,
            "createdAt": lambda op, _i: op.created_at,
            "errorCode": lambda op, _i: op.error_code,
            "fileSize": lambda op, _i: len(op.jsonl) if op.jsonl else None,
            "objectCount": lambda op, _i: op.object_count,
            "partialDataUrl": lambda _op, _i: None,
            "rootObjectCount": lambda op, _i: op.root_object_count,
            "type": lambda _op, _i: "QUERY",
            "url": lambda op, info: _sim(info)._bulk_url(op, _request(info).origin),
        },
        "InventoryAdjustmentGroup": {
            "changes": _group_changes,
            "createdAt": lambda group, _i: group.created_at,
            "referenceDocumentUri": lambda group, _i: group.reference_document_uri,
        },
        "Mutation": {
            "bulkOperationRunQuery": lambda _r, info, query, groupObjects: _sim(
                info
            )._run_bulk_query(info, query, groupObjects),
            "inventoryActivate": lambda _r, info, **a: _sim(info)._activate(info, a),
            "inventorySetQuantities": lambda _r, info, input: _sim(info)._set_quantities(
                info, input
            ),
        },
    }


def _group_changes(group: _AdjustmentGroup, _info: _Info, **args: Any) -> list[Any]:
    filters = (
        ("name", args.get("quantityNames")),
        ("item_id", args.get("inventoryItemIds")),
        ("location_id", args.get("locationIds")),
    )
    return [
        change
        for change in group.changes
        if all(wanted is None or change[key] in wanted for key, wanted in filters)
    ]


def _digits(value: Any) -> str:
    return str(int(value))


def _build_schema() -> GraphQLSchema:
    schema = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    for type_name, fields in _resolvers().items():
        object_type = schema.get_type(type_name)
        assert isinstance(object_type, GraphQLObjectType), type_name
        for field_name, resolve in fields.items():
            object_type.fields[field_name].resolve = resolve
    for name, named_type in schema.type_map.items():
        if name.endswith("Connection") and isinstance(named_type, GraphQLObjectType):
            named_type.fields["edges"].resolve = _connection_edges
            named_type.fields["nodes"].resolve = _connection_nodes
            named_type.fields["pageInfo"].resolve = _connection_page_info
    node = schema.get_type("Node")
    assert isinstance(node, GraphQLInterfaceType)
    node.resolve_type = _resolve_node_type
    unsigned = schema.get_type("UnsignedInt64")
    assert isinstance(unsigned, GraphQLScalarType)
    # Shopify sends UnsignedInt64 values as strings of digits. graphql-core 3.3 coerces output
    # through `coerce_output_value`, 3.2 through `serialize`.
    unsigned.serialize = _digits  # type: ignore[method-assign]
    if hasattr(unsigned, "coerce_output_value"):
        unsigned.coerce_output_value = _digits
    return schema


_SCHEMA: Final = _build_schema()


# --------------------------------------------------------------------------------------------
# Reading a document against the schema


def _applies(condition: str | None, runtime: GraphQLObjectType) -> bool:
    if condition is None or condition == runtime.name:
        return True
    abstract = _SCHEMA.get_type(condition)
    return isinstance(abstract, GraphQLInterfaceType | GraphQLUnionType) and _SCHEMA.is_sub_type(
        abstract, runtime
    )


def _collect(
    selection_set: SelectionSetNode,
    runtime: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> list[FieldNode]:
    """The field selections that apply to an object of type `runtime`, fragments flattened."""
    fields: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else None
            if _applies(condition, runtime):
                fields.extend(_collect(selection.selection_set, runtime, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and _applies(fragment.type_condition.name.value, runtime):
                fields.extend(_collect(fragment.selection_set, runtime, fragments))
    return fields


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
