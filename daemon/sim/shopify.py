"""Simulated Shopify Admin GraphQL API: the subset stocksync uses, failing the way Shopify fails.

The demo, the end-to-end tests and the benchmarks run the real daemon against this server over
loopback. It executes real GraphQL (graphql-core) against ``shopify_schema.graphql`` and mimics
what live stores answer (sources: shopify.dev, ../shared/spec/shopify-api.md, and transcripts of
live 2026-04/2026-07 stores published by other integrators):

- Validation errors come in graphql-ruby's shape (``undefinedField``, ``argumentNotAccepted``,
  ``missingRequiredArguments``...) at HTTP 200, uncharged.
- Every executed request carries ``extensions.cost``. The leaky bucket is charged the requested
  cost up front and refunded down to the actual cost; an empty bucket answers ``THROTTLED`` at
  HTTP 200, and a query above 1000 points ``MAX_COST_EXCEEDED``.
- From API version 2026-04, ``inventorySetQuantities`` and ``inventoryActivate`` without
  ``@idempotent(key:)`` fail at run time with ``BAD_REQUEST``, and a quantity that omits
  ``changeFromQuantity`` fails the call with a top-level ``INVALID_FIELD_ARGUMENTS`` error
  (``data.inventorySetQuantities`` null), which is how live stores answer; explicit null is fine.
- Any userError fails the whole ``inventorySetQuantities`` call: nothing in it is applied.
- ``CHANGE_FROM_QUANTITY_STALE`` carries the element's field path, as Shopify's reference says.
  Some live stores have been reported to answer it with ``field: null`` instead;
  ``faults.stale_without_field`` reproduces that (the client must then re-read to find it).
- ``quantityAfterChange`` is null in mutation responses, as live stores return it.
- Search (``query: "sku:ABC"``) matches SKUs case-insensitively; callers must re-check case.
- Repeating a key with the same arguments within 24 h replays the first answer (or reports
  ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`` when that answer had userErrors). Live stores have been
  seen to re-execute such retries instead; ``faults.reexecute_idempotent_retries`` reproduces that.

Where Shopify's behaviour is undocumented the simulator chooses, and says so: setting a quantity
on an untracked item is rejected with ``INVALID_INVENTORY_ITEM``; ``first``/``last`` above 250 or
both missing fail the connection field at run time.

Ids come from one sequence shared by every resource type, so a variant id never equals an item
id: a client that mixes them up gets "not found" instead of silently touching the wrong object.
"""

from __future__ import annotations

import base64
import binascii
import collections
import functools
import http
import itertools
import json
import re
import secrets
import shlex
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from aiohttp import web
from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DirectiveLocation,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    ListValueNode,
    Node,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    ValidationRule,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    build_schema,
    execute_sync,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_composite_type,
    is_input_object_type,
    is_list_type,
    is_non_null_type,
    is_required_argument,
    parse,
    specified_rules,
    type_from_ast,
    validate,
    value_from_ast_untyped,
)

from daemon.domain.models import LevelKey, ShopifyVariant

__all__ = ["AppliedChange", "ShopifyFaults", "ShopifySim"]

SCHEMA_FILE: Final = Path(__file__).with_name("shopify_schema.graphql")
# The version from which the idempotency directive and changeFromQuantity are mandatory.
STRICT_INVENTORY_VERSION: Final = "2026-04"
MAX_QUERY_COST: Final = 1000
MAX_PAGE_SIZE: Final = 250
MAX_INPUT_SIZE: Final = 250
MUTATION_COST: Final = 10
MAX_QUANTITY: Final = 1_000_000_000
IDEMPOTENCY_WINDOW_SECONDS: Final = 24 * 3600.0
TOKEN_LIFETIME_SECONDS: Final = 86399
TOKEN_SCOPE: Final = "write_inventory,read_products,read_locations"
RATE_LIMIT_DOCS: Final = "https://shopify.dev/api/usage/rate-limits"
INVALID_TOKEN_BODY: Final = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
SET_QUANTITY_NAMES: Final = ("available", "on_hand")
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
_VERSION_RE: Final = re.compile(r"\d{4}-\d{2}|unstable")
_GID_RE: Final = re.compile(r"gid://shopify/(\w+)/(\d+)(?:\?inventory_item_id=(\d+))?")
_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_ABSENT: Final = object()  # an input field or variable that was not sent at all (not null)


# --------------------------------------------------------------------------------------------
# Public records and fault controls


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One element applied by inventorySetQuantities: `available` before and after, sim clock."""

    at: float
    item: str
    location: str
    before: int
    after: int


class ShopifyFaults:
    """Failures injected into the next GraphQL requests (tests, demo, benchmarks)."""

    def __init__(self) -> None:
        # While set, every request (GraphQL and OAuth) answers 503.
        self.outage = False
        # Live stores have been seen to re-execute a retried key instead of replaying it.
        self.reexecute_idempotent_retries = False
        # Answer CHANGE_FROM_QUANTITY_STALE with `field: null`, as some live stores reportedly do.
        self.stale_without_field = False
        self._throttle = 0
        self._http429 = 0
        self._failures: collections.deque[int] = collections.deque()

    def throttle_next(self, n: int) -> None:
        """Answer the next `n` GraphQL requests THROTTLED at HTTP 200, whatever the bucket holds."""
        self._throttle += n

    def http429_next(self, n: int) -> None:
        """Answer the next `n` GraphQL requests with HTTP 429 and a Retry-After header."""
        self._http429 += n

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` GraphQL requests with HTTP `status` (a server error)."""
        self._failures.extend([status] * n)

    def _take_failure(self) -> int | None:
        return self._failures.popleft() if self._failures else None

    def _take_http429(self) -> bool:
        if self._http429 <= 0:
            return False
        self._http429 -= 1
        return True

    def _take_throttle(self) -> bool:
        if self._throttle <= 0:
            return False
        self._throttle -= 1
        return True


# --------------------------------------------------------------------------------------------
# The shop's objects


def _gid(kind: str, num: int) -> str:
    return f"gid://shopify/{kind}/{num}"


@dataclass(slots=True, eq=False)
class _Location:
    num: int
    id: str
    name: str
    # Numbers of the items stocked here, ascending: the location's inventoryLevels order.
    item_nums: list[int] = field(default_factory=list)
    is_active: bool = True
    fulfills_online_orders: bool = True


@dataclass(slots=True, eq=False)
class _Product:
    num: int
    id: str
    title: str


@dataclass(slots=True, eq=False)
class _Item:
    num: int
    id: str
    sku: str | None
    tracked: bool
    variant: _Variant | None = None


@dataclass(slots=True, eq=False)
class _Variant:
    num: int
    id: str
    sku: str | None
    title: str
    product: _Product
    item: _Item


@dataclass(frozen=True, slots=True)
class _LevelRef:
    """An InventoryLevel being rendered: quantities are read from the sim when resolved."""

    item: _Item
    location: _Location


@dataclass(frozen=True, slots=True)
class _AdjustmentGroup:
    id: str
    created_at: str
    reason: str
    reference_document_uri: str | None
    changes: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class _IdempotencyRecord:
    fingerprint: str
    at: float
    payload: dict[str, Any]
    failed: bool


@dataclass(slots=True)
class _Request:
    """Per-request state the resolvers need (graphql-core's context value)."""

    sim: ShopifySim
    version: str
    raw_variables: dict[str, Any]
    actual_cost: int = 0

    @property
    def strict_inventory_rules(self) -> bool:
        """Whether the 2026-04 rules (mandatory idempotency key and changeFromQuantity) apply."""
        return self.version == "unstable" or self.version >= STRICT_INVENTORY_VERSION


if TYPE_CHECKING:
    _Info: TypeAlias = GraphQLResolveInfo[_Request]


def _request(info: _Info) -> _Request:
    return info.context


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


# --------------------------------------------------------------------------------------------
# Validation in graphql-ruby's (and so Shopify's) error shape


def _ast_path(ancestors: Sequence[Any]) -> list[str]:
    """graphql-ruby's error path: the operation ("query Name"), then the enclosing fields."""
    path: list[str] = []
    for node in ancestors:
        if isinstance(node, OperationDefinitionNode):
            kind = node.operation.value
            path.append(f"{kind} {node.name.value}" if node.name else kind)
        elif isinstance(node, FragmentDefinitionNode):
            path.append(f"fragment {node.name.value}")
        elif isinstance(node, FieldNode):
            path.append(node.name.value)
    return path


class _UndefinedFieldRule(ValidationRule):
    """A field the type does not have: ``undefinedField``."""

    def enter_field(self, node: FieldNode, *args: Any) -> None:
        parent = self.context.get_parent_type()
        if parent is None or self.context.get_field_def() is not None:
            return
        name = node.name.value
        self.report_error(
            GraphQLError(
                f"Field '{name}' doesn't exist on type '{parent.name}'",
                node,
                path=[*_ast_path(args[3]), name],
                extensions={"code": "undefinedField", "typeName": parent.name, "fieldName": name},
            )
        )


class _ArgumentNotAcceptedRule(ValidationRule):
    """An argument the field or directive does not take: ``argumentNotAccepted``."""

    def enter_argument(self, node: ArgumentNode, *args: Any) -> None:
        if self.context.get_argument() is not None:
            return
        ancestors: Sequence[Any] = args[3]
        owner = next(
            (a for a in reversed(ancestors) if isinstance(a, FieldNode | DirectiveNode)), None
        )
        if owner is None:
            return
        if isinstance(owner, DirectiveNode):
            if self.context.get_directive() is None:
                return  # an unknown directive is reported on its own
            owner_name, type_name = owner.name.value, "Directive"
        else:
            if self.context.get_field_def() is None:
                return  # an unknown field is reported on its own
            owner_name, type_name = owner.name.value, "Field"
        argument = node.name.value
        self.report_error(
            GraphQLError(
                f"{type_name} '{owner_name}' doesn't accept argument '{argument}'",
                node,
                path=[*_ast_path(ancestors), argument],
                extensions={
                    "code": "argumentNotAccepted",
                    "name": owner_name,
                    "typeName": type_name,
                    "argumentName": argument,
                },
            )
        )


class _MissingRequiredArgumentsRule(ValidationRule):
    """A required argument left out: ``missingRequiredArguments``."""

    def enter_field(self, node: FieldNode, *args: Any) -> None:
        definition = self.context.get_field_def()
        if definition is not None:
            self._check(node, "Field", definition.args, args[3])

    def enter_directive(self, node: DirectiveNode, *args: Any) -> None:
        definition = self.context.get_directive()
        if definition is not None:
            self._check(node, "Directive", definition.args, args[3])

    def _check(
        self,
        node: FieldNode | DirectiveNode,
        kind: str,
        definitions: Mapping[str, Any],
        ancestors: Sequence[Any],
    ) -> None:
        given = {argument.name.value for argument in node.arguments or ()}
        missing = [
            n for n, arg in definitions.items() if is_required_argument(arg) and n not in given
        ]
        if not missing:
            return
        name = node.name.value
        path = (
            _ast_path([*ancestors, node]) if isinstance(node, FieldNode) else _ast_path(ancestors)
        )
        self.report_error(
            GraphQLError(
                f"{kind} '{name}' is missing required arguments: {', '.join(missing)}",
                node,
                path=path,
                extensions={
                    "code": "missingRequiredArguments",
                    "className": kind,
                    "name": name,
                    "arguments": ", ".join(missing),
                },
            )
        )


_DIRECTIVE_TARGETS: Final[dict[type, DirectiveLocation]] = {
    FieldNode: DirectiveLocation.FIELD,
    FragmentSpreadNode: DirectiveLocation.FRAGMENT_SPREAD,
    InlineFragmentNode: DirectiveLocation.INLINE_FRAGMENT,
    FragmentDefinitionNode: DirectiveLocation.FRAGMENT_DEFINITION,
    VariableDefinitionNode: DirectiveLocation.VARIABLE_DEFINITION,
}
_TARGET_WORDS: Final = {
    DirectiveLocation.QUERY: "queries",
    DirectiveLocation.MUTATION: "mutations",
    DirectiveLocation.SUBSCRIPTION: "subscriptions",
    DirectiveLocation.FIELD: "fields",
    DirectiveLocation.FRAGMENT_SPREAD: "fragment spreads",
    DirectiveLocation.INLINE_FRAGMENT: "inline fragments",
    DirectiveLocation.FRAGMENT_DEFINITION: "fragment definitions",
    DirectiveLocation.VARIABLE_DEFINITION: "variable definitions",
}


class _DirectiveRule(ValidationRule):
    """Unknown directives and directives in the wrong place, worded like Shopify."""

    def enter_directive(self, node: DirectiveNode, *args: Any) -> None:
        name = node.name.value
        definition = self.context.schema.get_directive(name)
        if definition is None:
            self.report_error(
                GraphQLError(
                    f"Directive @{name} is not defined",
                    node,
                    extensions={"code": "undefinedDirective", "directiveName": name},
                )
            )
            return
        applied_to = args[3][-1]
        if isinstance(applied_to, OperationDefinitionNode):
            location: DirectiveLocation | None = DirectiveLocation[applied_to.operation.name]
        else:
            location = _DIRECTIVE_TARGETS.get(type(applied_to))
        if location is None or location in definition.locations:
            return
        allowed = ", ".join(
            _TARGET_WORDS.get(loc, loc.value.lower()) for loc in definition.locations
        )
        target = _TARGET_WORDS.get(location, location.value.lower())
        self.report_error(
            GraphQLError(
                f"'@{name}' can't be applied to {target} (allowed: {allowed})",
                node,
                extensions={"code": "directiveCannotBeApplied", "targetName": target, "name": name},
            )
        )


# graphql-core's own rules for everything else, each tagged with graphql-ruby's code.
_RULE_CODES: Final = {
    "ExecutableDefinitionsRule": "definitionNotExecutable",
    "UniqueOperationNamesRule": "uniquelyNamedOperations",
    "LoneAnonymousOperationRule": "anonymousOperationWithOtherOperations",
    "KnownTypeNamesRule": "undefinedType",
    "FragmentsOnCompositeTypesRule": "fragmentOnNonCompositeType",
    "VariablesAreInputTypesRule": "variableRequiresValidType",
    "ScalarLeafsRule": "selectionMismatch",
    "UniqueFragmentNamesRule": "fragmentNamesNotUnique",
    "KnownFragmentNamesRule": "useAndDefineFragment",
    "NoUnusedFragmentsRule": "useAndDefineFragment",
    "PossibleFragmentSpreadsRule": "cannotSpreadFragment",
    "NoFragmentCyclesRule": "infiniteLoop",
    "UniqueVariableNamesRule": "variableNotUnique",
    "NoUndefinedVariablesRule": "variableNotDefined",
    "NoUnusedVariablesRule": "variableNotUsed",
    "UniqueDirectivesPerLocationRule": "directiveNotUniqueForLocation",
    "UniqueArgumentNamesRule": "argumentNotUnique",
    "ValuesOfCorrectTypeRule": "argumentLiteralsIncompatible",
    "VariablesInAllowedPositionRule": "variableMismatch",
    "OverlappingFieldsCanBeMergedRule": "fieldConflict",
    "UniqueInputFieldNamesRule": "inputFieldNotUnique",
}
_REPLACED_RULES: Final = {
    "FieldsOnCorrectTypeRule",
    "KnownArgumentNamesRule",
    "ProvidedRequiredArgumentsRule",
    "KnownDirectivesRule",
}


def _coded_rule(rule: type[ASTValidationRule]) -> type[ASTValidationRule]:
    code = _RULE_CODES.get(rule.__name__, "validationFailed")

    def report_error(self: ASTValidationRule, error: GraphQLError) -> None:
        self.context.report_error(
            GraphQLError(error.message, error.nodes, extensions={"code": code})
        )

    return cast(
        type[ASTValidationRule],
        type(f"Coded{rule.__name__}", (rule,), {"report_error": report_error}),
    )


_VALIDATION_RULES: Final[tuple[type[ASTValidationRule], ...]] = (
    _UndefinedFieldRule,
    _ArgumentNotAcceptedRule,
    _MissingRequiredArgumentsRule,
    _DirectiveRule,
    *(_coded_rule(rule) for rule in specified_rules if rule.__name__ not in _REPLACED_RULES),
)


def _input_problems(value: Any, type_: GraphQLInputType, path: list[str | int]) -> list[Any]:
    """Why a variable value does not fit its type, as graphql-ruby words each problem."""
    if is_non_null_type(type_):
        if value is None or value is _ABSENT:
            return [(path, "Expected value to not be null")]
        return _input_problems(value, cast(Any, type_).of_type, path)
    if value is None or value is _ABSENT:
        return []
    if is_list_type(type_):
        item_type = cast(Any, type_).of_type
        if not isinstance(value, list):
            return _input_problems(value, item_type, path)
        return [p for i, v in enumerate(value) for p in _input_problems(v, item_type, [*path, i])]
    if is_input_object_type(type_):
        if not isinstance(value, dict):
            return [(path, f"Expected value to be an object for {type_.name}")]
        problems: list[Any] = [
            ([*path, name], f"Field is not defined on {type_.name}")
            for name in value
            if name not in type_.fields
        ]
        for name, input_field in type_.fields.items():
            sub_value = value.get(name, _ABSENT)
            if sub_value is _ABSENT and _has_default(input_field):
                continue
            problems.extend(_input_problems(sub_value, input_field.type, [*path, name]))
        return problems
    named = cast(Any, type_)
    try:
        named.parse_value(value)
    except (GraphQLError, TypeError, ValueError):
        return [(path, f"Could not coerce value {json.dumps(value)} to {named.name}")]
    return []


def _has_default(input_field: Any) -> bool:
    # graphql-core 3.3 keeps SDL defaults in `default`; 3.2 in `default_value`.
    return (
        input_field.default_value is not Undefined
        or getattr(input_field, "default", None) is not None
    )


def _variable_errors(
    operation: OperationDefinitionNode, provided: Mapping[str, Any]
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(_SCHEMA, definition.type)
        value = provided.get(name, _ABSENT)
        if type_ is None or (value is _ABSENT and definition.default_value is not None):
            continue
        problems = _input_problems(value, cast(GraphQLInputType, type_), [])
        if not problems:
            continue
        message = f"Variable ${name} of type {type_} was provided invalid value"
        if all(path for path, _ in problems):
            details = ", ".join(f"{'.'.join(map(str, p))} ({why})" for p, why in problems)
            message += f" for {details}"
        errors.append(
            {
                "message": message,
                "locations": _locations(definition),
                "extensions": {
                    "code": "INVALID_VARIABLE",
                    "value": None if value is _ABSENT else value,
                    "problems": [{"path": p, "explanation": why} for p, why in problems],
                },
            }
        )
    return errors


# --------------------------------------------------------------------------------------------
# Query cost (shopify.dev: scalar 0, object 1, connection 2 + first x node, mutation 10)


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


def _field_selections(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    path: list[str],
) -> Iterator[tuple[FieldNode, list[str]]]:
    """Every field selected anywhere in the document, with its path of field names."""
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field_path = [*path, selection.name.value]
            yield selection, field_path
            if selection.selection_set is not None:
                yield from _field_selections(selection.selection_set, fragments, field_path)
        elif isinstance(selection, InlineFragmentNode):
            yield from _field_selections(selection.selection_set, fragments, path)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:  # validation has ruled out cycles
                yield from _field_selections(fragment.selection_set, fragments, path)


def _oversized_list(value: Any, path: list[str]) -> tuple[list[str], int] | None:
    if isinstance(value, list):
        return (path, len(value)) if len(value) > MAX_INPUT_SIZE else None
    if isinstance(value, dict):
        for key, sub_value in value.items():
            found = _oversized_list(sub_value, [*path, key])
            if found is not None:
                return found
    return None


def _input_size_error(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Shopify refuses any input list longer than 250 before running the request."""
    for node, path in _field_selections(operation.selection_set, fragments, []):
        for argument in node.arguments or ():
            value = _raw_value(argument.value, variables)
            found = _oversized_list(value, [*path, argument.name.value])
            if found is not None:
                return {
                    "message": f"The input array size of {found[1]} is greater than the maximum "
                    f"allowed of {MAX_INPUT_SIZE}.",
                    "locations": _locations(node),
                    "path": found[0],
                    "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
                }
    return None


def _locations(node: Node) -> list[dict[str, int]]:
    if node.loc is None:
        return []
    location = node.loc.source.get_location(node.loc.start)
    return [{"line": location.line, "column": location.column}]


# --------------------------------------------------------------------------------------------
# Connections: opaque base64 cursors over ascending numeric ids, like Shopify's


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
    ids: Sequence[int], args: Mapping[str, Any], fetch: Callable[[int], Any]
) -> _Connection:
    """One page of `ids` (ascending) under first/after/last/before/reverse."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value > MAX_PAGE_SIZE:
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
    nums = [ids[count - 1 - p] if reverse else ids[p] for p in positions]
    return _Connection(
        nums=nums,
        fetch=fetch,
        has_next_page=window_start + stop < count,
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


# --------------------------------------------------------------------------------------------
# Resolvers (graphql-core calls them with the parent object, info and the field's arguments)


def _sim(info: _Info) -> ShopifySim:
    return _request(info).sim


def _resolve_node_type(value: Any, _info: _Info, _abstract: Any) -> str | None:
    return _NODE_TYPES.get(type(value))


_NODE_TYPES: Final[dict[type, str]] = {
    _Item: "InventoryItem",
    _LevelRef: "InventoryLevel",
    _Location: "Location",
    _Product: "Product",
    _Variant: "ProductVariant",
}


def _user_error(code: str | None, field_path: list[str] | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field_path, "message": message}


def _resolvers() -> dict[str, dict[str, Callable[..., Any]]]:
    return {
        "QueryRoot": {
            "inventoryItem": lambda _r, info, id: _sim(info)._items.get(id),
            "inventoryItems": lambda _r, info, **a: _sim(info)._item_connection(a),
            "location": lambda _r, info, id=None: _sim(info)._location_or_primary(id),
            "locations": lambda _r, info, **a: _sim(info)._location_connection(a),
            "node": lambda _r, info, id: _sim(info)._node(id),
            "nodes": lambda _r, info, ids: [_sim(info)._node(i) for i in ids],
            "productVariant": lambda _r, info, id: _sim(info)._variants.get(id),
            "productVariants": lambda _r, info, **a: _sim(info)._variant_connection(a),
        },
        "Location": {
            "fulfillsOnlineOrders": lambda loc, _i: loc.fulfills_online_orders,
            "inventoryLevel": lambda loc, info, inventoryItemId: _sim(info)._level(
                inventoryItemId, loc.id
            ),
            "inventoryLevels": lambda loc, info, **a: _sim(info)._location_levels(loc, a),
            "isActive": lambda loc, _i: loc.is_active,
        },
        "ProductVariant": {
            "displayName": lambda v, _i: f"{v.product.title} - {v.title}",
            "inventoryItem": lambda v, _i: v.item,
        },
        "InventoryItem": {
            "inventoryLevel": lambda item, info, locationId: _sim(info)._level(item.id, locationId),
            "inventoryLevels": lambda item, info, **a: _sim(info)._item_levels(item, a),
        },
        "InventoryLevel": {
            "id": lambda level, _i: (
                f"{_gid('InventoryLevel', level.location.num)}?inventory_item_id={level.item.num}"
            ),
            "quantities": lambda level, info, names: _sim(info)._quantities(level, names),
        },
        "InventoryAdjustmentGroup": {
            "changes": _group_changes,
            "createdAt": lambda group, _i: group.created_at,
            "referenceDocumentUri": lambda group, _i: group.reference_document_uri,
        },
        "Mutation": {
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
    return schema


_SCHEMA: Final = _build_schema()
_COST_KINDS: Final = _cost_kinds(_SCHEMA)


# --------------------------------------------------------------------------------------------
# The simulator


class ShopifySim:
    """An in-process Shopify store: Python methods drive it, `app()` serves its Admin API.

    What tests and benchmarks read back:
    - `levels`: (item gid, location gid) -> available, for stocked pairs;
    - `mutation_calls`: executed mutation fields by name (rejected calls included);
    - `set_quantities_sizes`: the number of quantities in each executed inventorySetQuantities;
    - `changes`: every element inventorySetQuantities applied, timestamped on `clock`;
    - `throttled_total`: requests answered THROTTLED; `requests_total`: GraphQL POSTs received.
    """

    def __init__(
        self,
        *,
        bucket_size: float = 1000,
        restore_rate: float = 100.0,
        access_token: str = "shpat_sim",
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        shop: str = "sim-shop.myshopify.com",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shop = shop
        self.bucket_size = float(bucket_size)
        self.restore_rate = float(restore_rate)
        self.faults = ShopifyFaults()
        self.mutation_calls: collections.Counter[str] = collections.Counter()
        self.set_quantities_sizes: list[int] = []
        self.throttled_total = 0
        self.requests_total = 0
        self.changes: list[AppliedChange] = []
        self._access_token = access_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._bucket = self.bucket_size
        self._bucket_at = clock()
        self._issued_tokens: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._locations: dict[str, _Location] = {}
        self._location_nums: dict[int, _Location] = {}
        self._products: dict[str, _Product] = {}
        self._variants: dict[str, _Variant] = {}
        self._variant_nums: dict[int, _Variant] = {}
        self._variant_order: list[int] = []
        self._variants_by_sku: dict[str, list[_Variant]] = {}
        self._items: dict[str, _Item] = {}
        self._item_nums: dict[int, _Item] = {}
        self._item_order: list[int] = []
        # Quantities per stocked (item, location); on_hand = available + committed. Committed
        # is stored only where an order put some (most of 300k levels never have any).
        self._available: dict[LevelKey, int] = {}
        self._committed: dict[LevelKey, int] = {}
        self._idempotency: dict[str, _IdempotencyRecord] = {}

    # -- the shop, driven directly by tests and the demo ------------------------------------

    def add_location(self, name: str) -> str:
        """Create an active location; returns its gid."""
        num = next(self._ids)
        location = _Location(num=num, id=_gid("Location", num), name=name)
        self._locations[location.id] = location
        self._location_nums[num] = location
        return location.id

    def add_variant(
        self,
        sku: str | None,
        *,
        tracked: bool = True,
        stocked_at: Iterable[str] | None = None,
        available: int = 0,
    ) -> ShopifyVariant:
        """Create a product with one variant and its inventory item, stocked at `stocked_at`.

        `stocked_at` None means every location that exists now; `available` is set at each.
        """
        location_ids = list(self._locations if stocked_at is None else stocked_at)
        for location_id in location_ids:
            if location_id not in self._locations:
                raise KeyError(f"unknown location {location_id}")
        product_num = next(self._ids)
        product = _Product(product_num, _gid("Product", product_num), f"Product {product_num}")
        variant_num, item_num = next(self._ids), next(self._ids)
        item = _Item(item_num, _gid("InventoryItem", item_num), sku, tracked)
        variant = _Variant(
            variant_num, _gid("ProductVariant", variant_num), sku, "Default Title", product, item
        )
        item.variant = variant
        self._products[product.id] = product
        self._variants[variant.id] = variant
        self._variant_nums[variant_num] = variant
        self._variant_order.append(variant_num)
        self._items[item.id] = item
        self._item_nums[item_num] = item
        self._item_order.append(item_num)
        if sku is not None:
            self._variants_by_sku.setdefault(sku.casefold(), []).append(variant)
        for location_id in location_ids:
            self._stock(item, self._locations[location_id], available)
        return ShopifyVariant(id=variant.id, sku=sku, inventory_item_id=item.id, tracked=tracked)

    def available(self, item_id: str, location_id: str) -> int | None:
        """Shopify's available quantity, or None when the item is not stocked there."""
        return self._available.get((item_id, location_id))

    def set_available_manually(self, item_id: str, location_id: str, qty: int) -> None:
        """A merchant edits available in the admin (drift stocksync must overwrite)."""
        key = self._stocked_key(item_id, location_id)
        self._available[key] = qty

    def place_order(self, item_id: str, location_id: str, qty: int) -> None:
        """A customer orders `qty`: Shopify lowers available and commits the units at once."""
        if qty <= 0:
            raise ValueError("an order is for a positive quantity")
        key = self._stocked_key(item_id, location_id)
        self._available[key] -= qty
        self._committed[key] = self._committed.get(key, 0) + qty

    @property
    def levels(self) -> Mapping[LevelKey, int]:
        """Read-only live view: (item gid, location gid) -> available, stocked pairs only."""
        return MappingProxyType(self._available)

    def app(self) -> web.Application:
        """The aiohttp application serving the Admin GraphQL API and the OAuth token endpoint."""
        application = web.Application()
        application.router.add_post("/admin/api/{version}/graphql.json", self._handle_graphql)
        application.router.add_post("/admin/oauth/access_token", self._handle_access_token)
        return application

    def _stock(self, item: _Item, location: _Location, available: int) -> None:
        key = (item.id, location.id)
        if key in self._available:
            return
        self._available[key] = available
        _insert_sorted(location.item_nums, item.num)

    def _stocked_key(self, item_id: str, location_id: str) -> LevelKey:
        if item_id not in self._items:
            raise KeyError(f"unknown inventory item {item_id}")
        if location_id not in self._locations:
            raise KeyError(f"unknown location {location_id}")
        key = (item_id, location_id)
        if key not in self._available:
            raise ValueError(f"{item_id} is not stocked at {location_id}")
        return key

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle_graphql(self, request: web.Request) -> web.StreamResponse:
        self.requests_total += 1
        version = request.match_info["version"]
        if not _VERSION_RE.fullmatch(version):
            return web.json_response({"errors": "Not Found"}, status=404)
        if self.faults.outage:
            return _outage_response()
        failure = self.faults._take_failure()
        if failure is not None:
            return web.json_response({"errors": http.HTTPStatus(failure).phrase}, status=failure)
        if self.faults._take_http429():
            return web.json_response(
                {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]},
                status=429,
                headers={"Retry-After": "2.0"},
            )
        if not self._token_valid(request.headers.get("X-Shopify-Access-Token")):
            return web.json_response(INVALID_TOKEN_BODY, status=401)
        query, variables, operation_name = await _read_graphql_body(request)
        if query is None:
            return web.json_response(
                {"errors": {"query": "Required parameter missing or invalid"}}, status=400
            )
        body = self.execute(query, variables, operation_name, version=version)
        return web.json_response(body, headers={"X-Shopify-API-Version": version})

    async def _handle_access_token(self, request: web.Request) -> web.StreamResponse:
        if self.faults.outage:
            return _outage_response()
        if request.content_type == "application/json":
            try:
                form: Mapping[str, Any] = await request.json()
            except ValueError:
                form = {}
        else:
            form = await request.post()
        if not isinstance(form, Mapping) or form.get("grant_type") != "client_credentials":
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The grant type is not supported.",
                },
                status=400,
            )
        client_id, client_secret = (
            str(form.get("client_id", "")),
            str(form.get("client_secret", "")),
        )
        if not (
            _same_secret(client_id, self._client_id)
            and _same_secret(client_secret, self._client_secret)
        ):
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed: unknown client or "
                    "wrong client secret.",
                },
                status=400,
            )
        token = f"shpat_{secrets.token_hex(16)}"
        self._issued_tokens[token] = self._clock() + TOKEN_LIFETIME_SECONDS
        return web.json_response(
            {"access_token": token, "scope": TOKEN_SCOPE, "expires_in": TOKEN_LIFETIME_SECONDS}
        )

    def _token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        if _same_secret(token, self._access_token):
            return True
        expires_at = self._issued_tokens.get(token)
        return expires_at is not None and self._clock() < expires_at

    # -- GraphQL execution ---------------------------------------------------------------------

    def execute(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        *,
        version: str = "2026-10",
    ) -> dict[str, Any]:
        """Run one authenticated GraphQL request as Shopify would; returns the JSON body."""
        provided = dict(variables or {})
        document, errors = _prepare(query)
        if document is None:
            return {"errors": list(errors)}
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f'No operation named "{operation_name}"'
                if operation_name
                else "An operation name is required"
            )
            return {"errors": [{"message": message}]}
        variable_errors = _variable_errors(operation, provided)
        if variable_errors:
            return {"errors": variable_errors}
        fragments = _fragments(document)
        raw_variables = _variables_with_defaults(operation, provided)
        size_error = _input_size_error(operation, fragments, raw_variables)
        if size_error is not None:
            return {"errors": [size_error]}
        requested = _requested_cost(operation, fragments, raw_variables)
        if requested > MAX_QUERY_COST:
            return self._max_cost_exceeded(requested)
        self._restore_bucket()
        if self.faults._take_throttle() or self._bucket < requested:
            self.throttled_total += 1
            return self._throttled(requested)
        self._bucket -= requested
        is_mutation = operation.operation is OperationType.MUTATION
        context = _Request(self, version, raw_variables)
        result = execute_sync(
            _SCHEMA,
            document,
            context_value=context,
            variable_values=provided,
            operation_name=operation_name,
            # Mutations cost a flat 10, so only queries need their fields counted.
            middleware=None if is_mutation else [_cost_middleware],
        )
        actual = requested if is_mutation else min(context.actual_cost, requested)
        self._bucket = min(self.bucket_size, self._bucket + requested - actual)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        body["data"] = result.data
        body["extensions"] = {"cost": self._cost(requested, actual)}
        return body

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

    # -- reads -----------------------------------------------------------------------------------

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

    def _level(self, item_id: str, location_id: str) -> _LevelRef | None:
        if (item_id, location_id) not in self._available:
            return None
        return _LevelRef(self._items[item_id], self._locations[location_id])

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

    def _quantity(self, key: LevelKey, name: str) -> int:
        if name == "available":
            return self._available[key]
        if name == "committed":
            return self._committed.get(key, 0)
        if name == "on_hand":
            return self._available[key] + self._committed.get(key, 0)
        return 0

    def _location_connection(self, args: Mapping[str, Any]) -> _Connection:
        nums = sorted(self._location_nums)
        return _paginate(nums, args, self._location_nums.__getitem__)

    def _variant_connection(self, args: Mapping[str, Any]) -> _Connection:
        query = args.get("query")
        nums = self._variant_order if not query else self._search_variants(query)
        return _paginate(nums, args, self._variant_nums.__getitem__)

    def _item_connection(self, args: Mapping[str, Any]) -> _Connection:
        query = args.get("query")
        if not query:
            return _paginate(self._item_order, args, self._item_nums.__getitem__)
        item_nums = sorted(
            {self._variant_nums[n].item.num for n in self._search_variants(query, by_item=True)}
        )
        return _paginate(item_nums, args, self._item_nums.__getitem__)

    def _location_levels(self, location: _Location, args: Mapping[str, Any]) -> _Connection:
        def fetch(item_num: int) -> _LevelRef | None:
            return self._level(_gid("InventoryItem", item_num), location.id)

        return _paginate(location.item_nums, args, fetch)

    def _item_levels(self, item: _Item, args: Mapping[str, Any]) -> _Connection:
        def fetch(location_num: int) -> _LevelRef | None:
            return self._level(item.id, _gid("Location", location_num))

        # A shop has a handful of locations: finding the item's ones on demand is cheap.
        stocked = [
            num for num, loc in self._location_nums.items() if (item.id, loc.id) in self._available
        ]
        return _paginate(sorted(stocked), args, fetch)

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

    # -- mutations ---------------------------------------------------------------------------------

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
        ignore_compare = bool(input_.get("ignoreCompareQuantity"))
        errors, planned = self._check_quantities(
            quantities, raw_quantities, name, ignore_compare, request.strict_inventory_rules
        )
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
        ignore_compare: bool,
        strict: bool,
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
            error = self._check_quantity(
                index, element, raw, name, ignore_compare, strict, index in duplicates
            )
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
        ignore_compare: bool,
        strict: bool,
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
        return self._check_compare(index, element, raw, name, key, ignore_compare, strict)

    def _check_compare(
        self,
        index: int,
        element: Mapping[str, Any],
        raw: Any,
        name: str,
        key: LevelKey,
        ignore_compare: bool,
        strict: bool,
    ) -> dict[str, Any] | None:
        """Compare-and-swap on changeFromQuantity, or (before 2026-04) on compareQuantity."""
        current = self._quantity(key, name)
        if isinstance(raw, dict) and "changeFromQuantity" in raw:
            expected = element.get("changeFromQuantity")
            if expected is None or expected == current:
                return None
            return _user_error(
                "CHANGE_FROM_QUANTITY_STALE",
                None
                if self.faults.stale_without_field
                else ["input", "quantities", str(index), "changeFromQuantity"],
                "The changeFromQuantity argument no longer matches the persisted quantity.",
            )
        if strict or ignore_compare:
            return None
        expected = element.get("compareQuantity")
        if expected is None:
            return _user_error(
                "COMPARE_QUANTITY_REQUIRED",
                ["input", "quantities", str(index), "compareQuantity"],
                "The compareQuantity argument must be given to each quantity or ignored using "
                "ignoreCompareQuantity.",
            )
        if expected != current:
            return _user_error(
                "COMPARE_QUANTITY_STALE",
                None,
                "The compareQuantity argument no longer matches the persisted quantity.",
            )
        return None

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
            created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
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
        if key is None:
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
                if record.failed:
                    return _keyed_failure(
                        result_field,
                        "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
                        "A previous request with this idempotency key failed. Retry with a new "
                        "idempotency key.",
                    )
                return record.payload
        payload = run()
        if record is None:
            self._idempotency[key] = _IdempotencyRecord(
                fingerprint, now, payload, failed=bool(payload["userErrors"])
            )
        return payload


# --------------------------------------------------------------------------------------------
# Small helpers used by the simulator


def _same_secret(given: str, expected: str) -> bool:
    # Constant-time, and on bytes: compare_digest refuses non-ASCII str.
    return secrets.compare_digest(given.encode(), expected.encode())


def _insert_sorted(values: list[int], value: int) -> None:
    # Objects are mostly created in id order, so appending is the common case.
    if not values or values[-1] < value:
        values.append(value)
    else:
        values.insert(bisect_left(values, value), value)


@functools.lru_cache(maxsize=256)
def _prepare(query: str) -> tuple[DocumentNode | None, tuple[dict[str, Any], ...]]:
    """Parse and validate a query once: a daemon sends the same few documents over and over."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, (_formatted(error, code="PARSE_ERROR"),)
    errors = validate(_SCHEMA, document, _VALIDATION_RULES)
    if errors:
        return None, tuple(dict(error.formatted) for error in errors)
    return document, ()


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


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


def _formatted(error: GraphQLError, *, code: str) -> dict[str, Any]:
    formatted = dict(error.formatted)
    formatted["extensions"] = {"code": code}
    return formatted


def _outage_response() -> web.Response:
    return web.Response(
        status=503, text="<html><body>Service Unavailable</body></html>", content_type="text/html"
    )


async def _read_graphql_body(
    request: web.Request,
) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """The query, variables and operation name of a GraphQL POST (JSON or application/graphql)."""
    if request.content_type == "application/graphql":
        return await request.text(), None, None
    try:
        body = await request.json()
    except ValueError:
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or (variables is not None and not isinstance(variables, dict)):
        return None, None, None
    return query, variables, name if isinstance(name, str) else None
