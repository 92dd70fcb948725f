"""Query cost and the leaky bucket, as shopify.dev describes them.

The requested cost is computed from the document before it runs (scalar 0, object 1,
connection 2 + first x node, mutation 10); the actual cost is counted while it runs (a
middleware adds what each resolved field cost by the same rules). `_Bucket` charges the
requested cost up front and refunds down to the actual cost; an empty bucket answers
``THROTTLED`` at HTTP 200, a query above 1000 points ``MAX_COST_EXCEEDED``. Every executed
answer carries ``extensions.cost``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from graphql import (
    FragmentDefinitionNode,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_list_type,
)

from daemon.sim.shopify.model import _Shop
from daemon.sim.shopify.request import _raw_arguments, _request
from daemon.sim.shopify.schema import _SCHEMA, _collect

if TYPE_CHECKING:
    from daemon.sim.shopify.request import _Info


MAX_QUERY_COST: Final = 1000
MUTATION_COST: Final = 10
RATE_LIMIT_DOCS: Final = "https://shopify.dev/api/usage/rate-limits"


# --------------------------------------------------------------------------------------------
# Query cost (shopify.dev: scalar 0, object 1, connection 2 + first x node, mutation 10)


def _selection_cost(
    selection_set: SelectionSetNode,
    type_: GraphQLNamedType,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    if isinstance(type_, GraphQLInterfaceType | GraphQLUnionType):
        runtimes = _SCHEMA.get_possible_types(type_)
        costs = (_fields_cost(selection_set, t, fragments, variables) for t in runtimes)
        return max(costs, default=0)
    if isinstance(type_, GraphQLObjectType):
        return _fields_cost(selection_set, type_, fragments, variables)
    return 0


def _fields_cost(
    selection_set: SelectionSetNode,
    parent: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    total = 0
    for node in _collect(selection_set, parent, fragments):
        definition = parent.fields.get(node.name.value)
        if definition is None or node.selection_set is None:
            continue  # scalars, enums and __typename are free
        named = get_named_type(definition.type)
        arguments = _raw_arguments(node.arguments or (), variables)
        if named.name.endswith("Connection"):
            size = next((v for v in (arguments.get("first"), arguments.get("last")) if v), 0)
            size = size if isinstance(size, int) else 0
            node_cost = _connection_node_cost(node.selection_set, named, fragments, variables)
            total += 2 + size * node_cost
            continue
        inner = 1 + _selection_cost(node.selection_set, named, fragments, variables)
        if is_list_type(get_nullable_type(definition.type)):
            # A list sized by its argument (nodes(ids:), quantities(names:)) costs per element.
            sizes = [len(v) for v in arguments.values() if isinstance(v, list)]
            inner *= sizes[0] if sizes else 1
        total += inner
    return total


def _connection_node_cost(
    selection_set: SelectionSetNode,
    connection: GraphQLNamedType,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    """What one element of a connection costs: its `nodes` and `edges { node }` selections."""
    assert isinstance(connection, GraphQLObjectType)
    cost = 0
    for node in _collect(selection_set, connection, fragments):
        definition = connection.fields.get(node.name.value)
        if definition is None or node.selection_set is None:
            continue
        named = get_named_type(definition.type)
        if node.name.value == "nodes":
            cost += 1 + _selection_cost(node.selection_set, named, fragments, variables)
        elif node.name.value == "edges":
            assert isinstance(named, GraphQLObjectType)
            for edge_field in _collect(node.selection_set, named, fragments):
                if edge_field.name.value == "node" and edge_field.selection_set is not None:
                    node_type = get_named_type(named.fields["node"].type)
                    cost += 1 + _selection_cost(
                        edge_field.selection_set, node_type, fragments, variables
                    )
    return cost


def _requested_cost(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    if operation.operation is OperationType.MUTATION:
        mutation = _SCHEMA.mutation_type
        assert mutation is not None
        return MUTATION_COST * len(_collect(operation.selection_set, mutation, fragments))
    query = _SCHEMA.query_type
    assert query is not None
    return _fields_cost(operation.selection_set, query, fragments, variables)


# How a resolved field adds to the actual cost, per (parent type, field): an object 1, a
# connection 2, a list of objects 1 per element; anything else (scalars, edges, pageInfo) 0.
_OBJECT, _CONNECTION, _ELEMENTS = 1, 2, 3


def _cost_kinds(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    kinds: dict[tuple[str, str], int] = {}
    for type_name, named_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(named_type, GraphQLObjectType):
            continue
        for field_name, definition in named_type.fields.items():
            returned = get_named_type(definition.type)
            if not is_composite_type(returned):
                continue
            if returned.name.endswith("Connection"):
                kinds[type_name, field_name] = _CONNECTION
            elif type_name.endswith("Connection"):
                if field_name == "nodes":
                    kinds[type_name, field_name] = _ELEMENTS
            elif is_list_type(get_nullable_type(definition.type)):
                kinds[type_name, field_name] = _ELEMENTS
            else:
                kinds[type_name, field_name] = _OBJECT
    return kinds


_COST_KINDS: Final = _cost_kinds(_SCHEMA)


def _cost_middleware(next_: Callable[..., Any], root: Any, info: _Info, **args: Any) -> Any:
    """Adds what each resolved field actually cost, by the same rules as the requested cost."""
    result = next_(root, info, **args)
    if result is not None:
        kind = _COST_KINDS.get((info.parent_type.name, info.field_name))
        if kind is not None:
            request = _request(info)
            if kind == _OBJECT:
                request.actual_cost += 1
            elif kind == _CONNECTION:
                request.actual_cost += 2
            else:
                request.actual_cost += sum(1 for element in result if element is not None)
    return result


# --------------------------------------------------------------------------------------------
# The bucket


class _Bucket(_Shop):
    """The leaky bucket: restored over the sim's clock, and the answers that report it."""

    def _restore_bucket(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._bucket_at)
        self._bucket = min(self.bucket_size, self._bucket + elapsed * self.restore_rate)
        self._bucket_at = now

    def _cost(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.bucket_size,
                "currentlyAvailable": int(self._bucket),
                "restoreRate": self.restore_rate,
            },
        }

    def _throttled(self, requested: int) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {"code": "THROTTLED", "documentation": RATE_LIMIT_DOCS},
                }
            ],
            "extensions": {"cost": self._cost(requested, None)},
        }

    def _max_cost_exceeded(self, requested: int) -> dict[str, Any]:
        self._restore_bucket()
        return {
            "errors": [
                {
                    "message": f"Query cost is {requested}, which exceeds the single query max "
                    f"cost limit ({MAX_QUERY_COST}).",
                    "extensions": {
                        "code": "MAX_COST_EXCEEDED",
                        "cost": requested,
                        "maxCost": MAX_QUERY_COST,
                        "documentation": RATE_LIMIT_DOCS,
                    },
                }
            ],
            "extensions": {"cost": self._cost(requested, None)},
        }
