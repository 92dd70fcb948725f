"""One GraphQL request as the resolvers see it, and the raw values its client sent.

`_Request` is graphql-core's context value: the simulator, the API version (and so whether the
2026-04 inventory rules apply), the raw variables, the actual cost counted so far, whether a
bulk operation is reading, and the request's origin. The raw values keep an argument that was
not sent at all (`_ABSENT`) apart from an explicit null, which graphql-core's coercion merges
and Shopify does not (an omitted `changeFromQuantity` fails from 2026-04, a null one does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from graphql import (
    ArgumentNode,
    FieldNode,
    GraphQLResolveInfo,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)

from daemon.sim.shopify.pagination import _BulkRead, _Connection

if TYPE_CHECKING:
    from daemon.sim.shopify.server import ShopifySim


# The version from which the idempotency directive and changeFromQuantity are mandatory.
STRICT_INVENTORY_VERSION: Final = "2026-04"
# In-process executions have no request origin; result URLs then point here.
DEFAULT_ORIGIN: Final = "http://localhost"
_ABSENT: Final = object()  # an input field or variable that was not sent at all (not null)


# --------------------------------------------------------------------------------------------
# The request's context


@dataclass(slots=True)
class _Request:
    """Per-request state the resolvers need (graphql-core's context value)."""

    sim: ShopifySim
    version: str
    raw_variables: dict[str, Any]
    actual_cost: int = 0
    # A bulk operation's run: connections are read whole, nothing is charged; the top-level
    # connection is read one window of positions at a time, and says whether more follow.
    bulk: bool = False
    bulk_window: tuple[int, int] | None = None
    bulk_more: bool = False
    # Where the request came in (scheme://host:port), for the URLs the answer carries.
    origin: str = DEFAULT_ORIGIN

    @property
    def strict_inventory_rules(self) -> bool:
        """Whether the 2026-04 rules (mandatory idempotency key and changeFromQuantity) apply."""
        return self.version == "unstable" or self.version >= STRICT_INVENTORY_VERSION


if TYPE_CHECKING:
    _Info: TypeAlias = GraphQLResolveInfo[_Request]


def _request(info: _Info) -> _Request:
    return info.context


def _bulk_read(info: _Info, *, top_level: bool = False) -> _BulkRead | None:
    """None for an ordinary request; for a bulk operation, how to read this connection."""
    request = _request(info)
    if not request.bulk:
        return None
    return _BulkRead(request.bulk_window if top_level else None)


def _top_level(info: _Info, connection: _Connection) -> _Connection:
    """Note whether a bulk operation's top-level connection goes on after this window."""
    request = _request(info)
    if request.bulk_window is not None:
        request.bulk_more = connection.has_next_page
    return connection


# --------------------------------------------------------------------------------------------
# Raw argument values: what the client actually sent, with "absent" kept apart from null


def _raw_value(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    """The JSON-like value of an AST literal, with variables substituted and absence kept."""
    if isinstance(node, VariableNode):
        return variables.get(node.name.value, _ABSENT)
    if isinstance(node, ObjectValueNode):
        fields = ((f.name.value, _raw_value(f.value, variables)) for f in node.fields)
        return {name: value for name, value in fields if value is not _ABSENT}
    if isinstance(node, ListValueNode):
        values = (_raw_value(v, variables) for v in node.values)
        return [None if value is _ABSENT else value for value in values]
    if isinstance(node, NullValueNode):
        return None
    return value_from_ast_untyped(node)


def _raw_arguments(
    arguments: Sequence[ArgumentNode], variables: Mapping[str, Any]
) -> dict[str, Any]:
    values = ((arg.name.value, _raw_value(arg.value, variables)) for arg in arguments)
    return {name: value for name, value in values if value is not _ABSENT}


def _idempotency_key(field_node: FieldNode, variables: Mapping[str, Any]) -> str | None:
    for directive in field_node.directives or ():
        if directive.name.value == "idempotent":
            key = _raw_arguments(directive.arguments or (), variables).get("key")
            return key if isinstance(key, str) else None
    return None


def _variables_with_defaults(
    operation: OperationDefinitionNode, provided: Mapping[str, Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None:
            values[definition.variable.name.value] = value_from_ast_untyped(
                definition.default_value
            )
    values.update(provided)
    return values
