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
- Repeating a key with the same arguments within 24 h replays the first answer, userErrors
  included (2026-04 has no ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``: that code only arrives in
  2026-10). Live stores have been seen to re-execute such retries instead;
  ``faults.reexecute_idempotent_retries`` reproduces that.
- ``locations`` lists deactivated locations only with ``includeInactive: true``, as Shopify does.
- The schema is the 2026-04 one (a subset of it): ``compareQuantity`` and
  ``ignoreCompareQuantity`` do not exist there. Before 2026-04 an omitted ``changeFromQuantity``
  skips the compare.
- Bulk queries (``bulkOperationRunQuery``, 10 points like any mutation, no ``@idempotent``
  needed): the query is checked when submitted (schema validation and the bulk rules: one
  top-level connection, not ``node``/``nodes``, at most five connections nested at most two deep,
  the parent of a nested connection selecting ``id``), and any failure is a userError ``INVALID``
  on ``["query"]``. From 2026-01 up to five bulk query operations run at a time per shop
  (``LIMIT_REACHED`` beyond), before that one (``OPERATION_IN_PROGRESS``). The operation reads
  ``RUNNING`` until ``bulk_delay`` seconds of the sim's clock have passed and its result is
  written, then ``COMPLETED``. The result is written in the background from submission on, a
  slice of top-level nodes at a time, so a 100,000-variant export never stalls the server;
  ``objectCount`` is the running count (connections need no ``first`` and are read whole). The
  result is JSONL served at ``GET /bulk/<n>.jsonl?signature=...`` on the same app, a stand-in
  for Shopify's signed storage URL (no access token needed): one line per connection node,
  nested connections' nodes on lines of their own carrying ``__parentId``; with
  ``groupObjects: false`` (the default since 2026-01) every top-level line comes before the
  nested ones, with ``true`` children follow their parent. An operation without results has
  ``url: null``; results expire after seven days (``EXPIRED``). ``faults.bulk_fail_next`` ends
  operations ``FAILED`` with an ``errorCode``.

Where Shopify's behaviour is undocumented the simulator chooses, and says so: setting a quantity
on an untracked item is rejected with ``INVALID_INVENTORY_ITEM``; ``first``/``last`` above 250 or
both missing fail the connection field at run time; the wording of the bulk-query userErrors;
``productVariantsCount`` ignores its ``query`` (Shopify documents no search fields for it).

Ids come from one sequence shared by every resource type, so a variant id never equals an item
id: a client that mixes them up gets "not found" instead of silently touching the wrong object.
"""

from __future__ import annotations

import asyncio
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
    GraphQLScalarType,
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

__all__ = ["AppliedChange", "BulkDownload", "ShopifyFaults", "ShopifySim"]

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
# Bulk operations: the version from which five query operations may run at once (one before),
# the shape limits of a bulk query, and how long a result stays downloadable.
BULK_CONCURRENCY_VERSION: Final = "2026-01"
BULK_QUERIES_AT_ONCE: Final = 5
BULK_MAX_CONNECTIONS: Final = 5
BULK_MAX_NESTING: Final = 2
BULK_RESULT_LIFETIME_SECONDS: Final = 7 * 24 * 3600.0
BULK_RUNNING: Final = frozenset({"CREATED", "RUNNING"})
# Top-level nodes a bulk operation writes between two turns of the event loop.
BULK_SLICE: Final = 100
# How long (real seconds) a GraphQL request waits for a due bulk operation's last slices, so
# that an operation whose delay is over reads COMPLETED as soon as it can.
BULK_SETTLE_SECONDS: Final = 1.0
# In-process executions have no request origin; result URLs then point here.
DEFAULT_ORIGIN: Final = "http://localhost"


# --------------------------------------------------------------------------------------------
# Public records and fault controls


@dataclass(frozen=True, slots=True)
class BulkDownload:
    """One GET of a bulk operation's result file, as the storage host saw it."""

    operation_id: str
    status: int
    # Shopify's result URLs are signed storage URLs: the shop's token must never be sent there.
    with_access_token: bool


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
        self._holds: collections.deque[tuple[float | None, bool]] = collections.deque()
        self._failures: collections.deque[int] = collections.deque()
        self._bulk_failures: collections.deque[str] = collections.deque()
        self._download_failures: collections.deque[int] = collections.deque()

    def throttle_next(self, n: int) -> None:
        """Answer the next `n` GraphQL requests THROTTLED at HTTP 200, whatever the bucket holds."""
        self._throttle += n

    def http429_next(self, n: int) -> None:
        """Answer the next `n` GraphQL requests with HTTP 429 and a Retry-After header."""
        self._http429 += n

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` GraphQL requests with HTTP `status` (a server error)."""
        self._failures.extend([status] * n)

    def hold_next_set(self, n: int, seconds: float | None = None, *, dedup: bool = False) -> None:
        """Hold the next `n` inventorySetQuantities requests for `seconds` (None: until
        `ShopifySim.release_held()`), then apply them, whether or not their sender is still
        waiting (it may have timed out, or died).

        With `dedup` false the held request is applied as received even if its key was used
        again meanwhile: Shopify's idempotency has been reported unreliable, and a late request
        overtaking newer ones is the failure this models.
        """
        self._holds.extend([(seconds, dedup)] * n)

    def _take_hold(self) -> tuple[float | None, bool] | None:
        return self._holds.popleft() if self._holds else None

    def bulk_fail_next(self, n: int = 1, error_code: str = "INTERNAL_SERVER_ERROR") -> None:
        """End the next `n` bulk operations started FAILED with `error_code` and no data."""
        self._bulk_failures.extend([error_code] * n)

    def bulk_download_fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next `n` downloads of a bulk result with HTTP `status`."""
        self._download_failures.extend([status] * n)

    def _take_failure(self) -> int | None:
        return self._failures.popleft() if self._failures else None

    def _take_bulk_failure(self) -> str | None:
        return self._bulk_failures.popleft() if self._bulk_failures else None

    def _take_download_failure(self) -> int | None:
        return self._download_failures.popleft() if self._download_failures else None

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


@dataclass(slots=True, eq=False)
class _BulkOperation:
    """A bulk query: submitted, then run once its delay has passed on the sim's clock."""

    num: int
    id: str
    query: str
    document: DocumentNode
    version: str
    group_objects: bool
    started_at: float
    created_at: str
    signature: str
    fail_with: str | None
    status: str = "CREATED"
    error_code: str | None = None
    finished_at: float | None = None
    completed_at: str | None = None
    jsonl: bytes | None = None
    # The result as written so far, encoded: lines by connection depth when ungrouped (top
    # level first in the file), all in one part when grouped; and where to go on.
    parts: dict[int, list[bytes]] = field(default_factory=dict)
    object_count: int = 0
    root_object_count: int = 0
    next_root: int = 0
    written: bool = False
    writer: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _IdempotencyRecord:
    fingerprint: str
    at: float
    payload: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class _BulkRead:
    """How a bulk operation reads a connection: whole, or (its top level) one window of it."""

    window: tuple[int, int] | None = None


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


# --------------------------------------------------------------------------------------------
# Bulk queries: the shape rules checked on submission, and the JSONL a finished one writes.
# Shopify words these refusals its own way; the sim's wording keeps the "Invalid bulk query:"
# prefix and says what is wrong.


def _checked_bulk_query(query: str) -> DocumentNode | str:
    """The parsed bulk query, or why Shopify would refuse it."""
    document, errors = _prepare(query)
    if document is None:
        return f"Invalid bulk query: {errors[0]['message']}"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
        return "Invalid bulk query: a bulk query is a single query operation"
    operation = operations[0]
    if operation.variable_definitions:
        return "Invalid bulk query: bulk queries take no variables"
    fragments = _fragments(document)
    query_type = _SCHEMA.query_type
    assert query_type is not None
    roots = [
        f
        for f in _collect(operation.selection_set, query_type, fragments)
        if f.name.value != "__typename"
    ]
    if len({_response_key(f) for f in roots}) != 1:
        return "Invalid bulk query: a bulk query selects exactly one top-level field"
    if roots[0].name.value in ("node", "nodes"):
        return "Invalid bulk query: the top-level node and nodes fields can't be used"
    shape = _BulkShape()
    _scan_bulk(operation.selection_set, query_type, fragments, 0, None, shape)
    if shape.connections == 0:
        return "Invalid bulk query: a bulk query must contain at least one connection"
    if shape.connections > BULK_MAX_CONNECTIONS:
        return (
            f"Invalid bulk query: bulk queries cannot contain more than {BULK_MAX_CONNECTIONS} "
            f"connections (this one has {shape.connections})"
        )
    if shape.nesting > BULK_MAX_NESTING:
        return (
            f"Invalid bulk query: connections can be nested at most {BULK_MAX_NESTING} levels "
            f"deep (this query nests {shape.nesting})"
        )
    if shape.without_parent_id:
        return (
            "Invalid bulk query: the parent 'node' field for a nested connection must select "
            "the 'id' field without an alias. Connection fields without 'id': "
            + ", ".join(shape.without_parent_id)
        )
    return document


@dataclass(slots=True)
class _BulkShape:
    connections: int = 0
    nesting: int = 0
    without_parent_id: list[str] = field(default_factory=list)


def _response_key(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def _scan_bulk(
    selection_set: SelectionSetNode,
    type_: GraphQLNamedType,
    fragments: Mapping[str, FragmentDefinitionNode],
    depth: int,
    parent_has_id: bool | None,
    shape: _BulkShape,
) -> None:
    """Count the connections and their nesting; note nested ones whose parent lacks `id`.

    `parent_has_id` is None at the top level, else whether the enclosing connection's node
    (the object its lines belong to) selects `id`.
    """
    if not isinstance(type_, GraphQLObjectType):
        return  # only node/nodes return an interface, and they are refused at the top level
    for node in _collect(selection_set, type_, fragments):
        definition = type_.fields.get(node.name.value)
        if definition is None or node.selection_set is None:
            continue
        named = get_named_type(definition.type)
        if not named.name.endswith("Connection"):
            _scan_bulk(node.selection_set, named, fragments, depth, parent_has_id, shape)
            continue
        shape.connections += 1
        shape.nesting = max(shape.nesting, depth + 1)
        if parent_has_id is False:
            shape.without_parent_id.append(node.name.value)
        for node_selection, node_type in _node_selections(node.selection_set, named, fragments):
            has_id = any(
                f.name.value == "id" and f.alias is None
                for f in _collect(node_selection, node_type, fragments)
            )
            _scan_bulk(node_selection, node_type, fragments, depth + 1, has_id, shape)


def _node_selections(
    selection_set: SelectionSetNode,
    connection: GraphQLNamedType,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> list[tuple[SelectionSetNode, GraphQLObjectType]]:
    """The selections made on a connection's nodes, via `nodes { }` or `edges { node { } }`."""
    assert isinstance(connection, GraphQLObjectType)
    found: list[tuple[SelectionSetNode, GraphQLObjectType]] = []
    for node in _collect(selection_set, connection, fragments):
        if node.selection_set is None:
            continue
        if node.name.value == "nodes":
            node_type = get_named_type(connection.fields["nodes"].type)
            assert isinstance(node_type, GraphQLObjectType)
            found.append((node.selection_set, node_type))
        elif node.name.value == "edges":
            edge_type = get_named_type(connection.fields["edges"].type)
            assert isinstance(edge_type, GraphQLObjectType)
            for edge_field in _collect(node.selection_set, edge_type, fragments):
                if edge_field.name.value == "node" and edge_field.selection_set is not None:
                    node_type = get_named_type(edge_type.fields["node"].type)
                    assert isinstance(node_type, GraphQLObjectType)
                    found.append((edge_field.selection_set, node_type))
    return found


# A nested connection met while writing a line: its value, its selections, its type.
_Nested: TypeAlias = tuple[Any, SelectionSetNode, GraphQLObjectType]


def _bulk_lines(
    data: Mapping[str, Any], document: DocumentNode
) -> list[tuple[int, dict[str, Any]]]:
    """The JSONL objects of a bulk query's result, each with its connection nesting depth.

    Every node of a connection is one line without the `edges`/`node` wrapping; a nested
    connection's nodes are lines of their own carrying `__parentId`, the id of the line they
    belong to, right after it (the grouped order).
    """
    operation = get_operation_ast(document)
    query_type = _SCHEMA.query_type
    assert operation is not None
    assert query_type is not None
    fragments = _fragments(document)
    lines: list[tuple[int, dict[str, Any]]] = []
    for key, nodes in _grouped_fields(operation.selection_set, query_type, fragments).items():
        definition = query_type.fields.get(nodes[0].name.value)
        selection = _merged_selection(nodes)
        if definition is None or selection is None:
            continue
        named = get_named_type(definition.type)
        if named.name.endswith("Connection"):
            assert isinstance(named, GraphQLObjectType)
            _write_connection(data.get(key), selection, named, fragments, 0, None, lines)
    return lines


def _write_connection(
    value: Any,
    selection_set: SelectionSetNode,
    connection: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
    depth: int,
    parent_id: Any,
    lines: list[tuple[int, dict[str, Any]]],
) -> None:
    if not isinstance(value, dict):
        return
    for node_value, node_selection, node_type in _connection_values(
        value, selection_set, connection, fragments
    ):
        if not isinstance(node_value, dict):
            continue
        line: dict[str, Any] = {}
        nested: list[_Nested] = []
        _write_object(line, node_value, node_selection, node_type, fragments, nested)
        if parent_id is not None:
            line["__parentId"] = parent_id
        lines.append((depth, line))
        for child_value, child_selection, child_type in nested:
            _write_connection(
                child_value,
                child_selection,
                child_type,
                fragments,
                depth + 1,
                line.get("id"),
                lines,
            )


def _connection_values(
    value: Mapping[str, Any],
    selection_set: SelectionSetNode,
    connection: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> list[tuple[Any, SelectionSetNode, GraphQLObjectType]]:
    """(node value, its selections, its type) for each node, read via `nodes` or `edges`."""
    for key, nodes in _grouped_fields(selection_set, connection, fragments).items():
        selection = _merged_selection(nodes)
        if selection is None:
            continue
        if nodes[0].name.value == "nodes":
            node_type = get_named_type(connection.fields["nodes"].type)
            assert isinstance(node_type, GraphQLObjectType)
            return [(node, selection, node_type) for node in value.get(key) or ()]
        if nodes[0].name.value == "edges":
            edge_type = get_named_type(connection.fields["edges"].type)
            node_type = get_named_type(connection.fields["nodes"].type)
            assert isinstance(edge_type, GraphQLObjectType)
            assert isinstance(node_type, GraphQLObjectType)
            for edge_key, edge_nodes in _grouped_fields(selection, edge_type, fragments).items():
                node_selection = _merged_selection(edge_nodes)
                if edge_nodes[0].name.value == "node" and node_selection is not None:
                    edges = value.get(key) or ()
                    return [
                        (edge.get(edge_key), node_selection, node_type)
                        for edge in edges
                        if isinstance(edge, dict)
                    ]
    return []


def _write_object(
    target: dict[str, Any],
    value: Mapping[str, Any],
    selection_set: SelectionSetNode,
    type_: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
    nested: list[_Nested],
) -> None:
    """Copy an object's selected fields into `target`, setting its connections aside."""
    for key, nodes in _grouped_fields(selection_set, type_, fragments).items():
        definition = type_.fields.get(nodes[0].name.value)
        selection = _merged_selection(nodes)
        sub_value = value.get(key)
        if definition is None or selection is None:
            target[key] = sub_value  # scalars, enums, __typename
            continue
        named = get_named_type(definition.type)
        if named.name.endswith("Connection"):
            assert isinstance(named, GraphQLObjectType)
            nested.append((sub_value, selection, named))
            continue
        target[key] = _inline_value(sub_value, selection, named, fragments, nested)


def _inline_value(
    value: Any,
    selection_set: SelectionSetNode,
    type_: GraphQLNamedType,
    fragments: Mapping[str, FragmentDefinitionNode],
    nested: list[_Nested],
) -> Any:
    """An object (or list of them) inside a line, written inline as the API returns it."""
    if isinstance(value, list):
        return [_inline_value(v, selection_set, type_, fragments, nested) for v in value]
    if not isinstance(value, dict) or not isinstance(type_, GraphQLObjectType):
        return value
    inline: dict[str, Any] = {}
    _write_object(inline, value, selection_set, type_, fragments, nested)
    return inline


def _grouped_fields(
    selection_set: SelectionSetNode,
    type_: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> dict[str, list[FieldNode]]:
    """Selections by response key (a field selected twice, e.g. via a fragment, merges)."""
    grouped: dict[str, list[FieldNode]] = {}
    for node in _collect(selection_set, type_, fragments):
        grouped.setdefault(_response_key(node), []).append(node)
    return grouped


def _merged_selection(nodes: Sequence[FieldNode]) -> SelectionSetNode | None:
    selections = [
        s for n in nodes if n.selection_set is not None for s in n.selection_set.selections
    ]
    return SelectionSetNode(selections=tuple(selections)) if selections else None


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
    _BulkOperation: "BulkOperation",
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
    - `throttled_total`: requests answered THROTTLED; `requests_total`: GraphQL POSTs received;
    - `bulk_downloads`: every GET of a bulk operation's result file.

    `bulk_delay` (seconds of `clock`) is how long a bulk operation runs; `bulk_query_limit`
    overrides how many bulk queries may run at once (None: what the request's API version allows).
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
        bulk_delay: float = 0.2,
        bulk_query_limit: int | None = None,
    ) -> None:
        self.shop = shop
        self.bulk_delay = bulk_delay
        self.bulk_query_limit = bulk_query_limit
        self.bulk_downloads: list[BulkDownload] = []
        self.bucket_size = float(bucket_size)
        self.restore_rate = float(restore_rate)
        self.faults = ShopifyFaults()
        self.mutation_calls: collections.Counter[str] = collections.Counter()
        # Executed queries by operation name ("Variants", "AvailableLevels", ...).
        self.query_calls: collections.Counter[str] = collections.Counter()
        # The idempotency key of every inventorySetQuantities call executed, in order.
        self.set_quantities_keys: list[str | None] = []
        self.set_quantities_sizes: list[int] = []
        self.throttled_total = 0
        self.requests_total = 0
        # Query points charged (the actual cost of every executed request), so tests can hold
        # a read to its budget without a clock.
        self.points_spent = 0
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
        # Requests held by `faults.hold_next_set`, still to be applied; and whether the one
        # being applied bypasses the idempotency records.
        self._held: set[asyncio.Task[dict[str, Any]]] = set()
        self._bypass_idempotency = False
        self._held_release = asyncio.Event()
        self._bulk_operations: dict[str, _BulkOperation] = {}

    # -- the shop, driven directly by tests and the demo ------------------------------------

    def add_location(self, name: str) -> str:
        """Create an active location; returns its gid."""
        num = next(self._ids)
        location = _Location(num=num, id=_gid("Location", num), name=name)
        self._locations[location.id] = location
        self._location_nums[num] = location
        return location.id

    def deactivate_location(self, location_id: str) -> None:
        """Deactivate a location: `locations` lists it only with `includeInactive: true`."""
        self._locations[location_id].is_active = False

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

    def stock_item(self, item_id: str, location_id: str, available: int = 0) -> None:
        """The merchant stocks an item at a location (a no-op where it is stocked already)."""
        self._stock(self._items[item_id], self._locations[location_id], available)

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
        application.router.add_get("/bulk/{name}", self._handle_bulk_result)
        application.on_cleanup.append(self._stop_bulk_writers)
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
        await self._settle_bulk()
        origin = str(request.url.origin())
        hold = self.faults._take_hold() if "inventorySetQuantities" in query else None
        if hold is not None:
            task = asyncio.ensure_future(
                self._apply_later(*hold, query, variables, operation_name, version, origin)
            )
            self._held.add(task)
            task.add_done_callback(self._held.discard)
            # Shielded: the request is applied even when its sender hangs up or dies.
            body = await asyncio.shield(task)
        else:
            body = self.execute(query, variables, operation_name, version=version, origin=origin)
        return web.json_response(body, headers={"X-Shopify-API-Version": version})

    async def _apply_later(
        self,
        seconds: float | None,
        dedup: bool,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        version: str,
        origin: str,
    ) -> dict[str, Any]:
        if seconds is None:
            await self._held_release.wait()
        else:
            await asyncio.sleep(seconds)
        self._bypass_idempotency = not dedup
        try:
            return self.execute(query, variables, operation_name, version=version, origin=origin)
        finally:
            self._bypass_idempotency = False

    def release_held(self) -> None:
        """Let every request held until released be applied now."""
        self._held_release.set()

    @property
    def held_requests(self) -> int:
        """Requests held by `faults.hold_next_set` and not applied yet."""
        return len(self._held)

    async def held_applied(self) -> None:
        """Wait until every held request has been applied."""
        while self._held:
            await asyncio.wait(set(self._held))

    async def _handle_bulk_result(self, request: web.Request) -> web.StreamResponse:
        """A bulk result file, as Shopify's signed storage URL serves it (no token needed)."""
        name = re.fullmatch(r"(\d+)\.jsonl", request.match_info["name"])
        operation = (
            self._bulk_operations.get(_gid("BulkOperation", int(name.group(1)))) if name else None
        )
        signature = request.query.get("signature", "")
        if operation is None or not _same_secret(signature, operation.signature):
            return _storage_error(403, "SignatureDoesNotMatch", "Access denied.")
        self._advance_bulk(operation)
        with_token = "X-Shopify-Access-Token" in request.headers
        status = self.faults._take_download_failure()
        if status is None and (operation.status != "COMPLETED" or operation.jsonl is None):
            status = 400
        self.bulk_downloads.append(BulkDownload(operation.id, status or 200, with_token))
        if status == 400:
            return _storage_error(400, "ExpiredToken", "The provided token has expired.")
        if status is not None:
            return _storage_error(status, "InternalError", http.HTTPStatus(status).phrase)
        assert operation.jsonl is not None
        return web.Response(body=operation.jsonl, content_type="application/jsonl")

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
        origin: str = DEFAULT_ORIGIN,
    ) -> dict[str, Any]:
        """Run one authenticated GraphQL request as Shopify would; returns the JSON body.

        `origin` is where the request came in: bulk result URLs point there.
        """
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
        if not is_mutation:
            self.query_calls[operation.name.value if operation.name else ""] += 1
        context = _Request(self, version, raw_variables, origin=origin)
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
        self.points_spent += actual
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

    # -- bulk operations -------------------------------------------------------------------------

    def _bulk_operation(self, gid: str) -> _BulkOperation | None:
        operation = self._bulk_operations.get(gid)
        if operation is not None:
            self._advance_bulk(operation)
        return operation

    def _current_bulk_operation(self, kind: str) -> _BulkOperation | None:
        # The sim runs no bulk mutations, so the most recent MUTATION operation is none.
        if kind != "QUERY" or not self._bulk_operations:
            return None
        return self._bulk_operation(next(reversed(self._bulk_operations)))

    async def _settle_bulk(self) -> None:
        """Give operations whose delay is over a moment to write their last slices."""
        now = self._clock()
        due = [
            op.writer
            for op in self._bulk_operations.values()
            if op.writer is not None
            and not op.writer.done()
            and now - op.started_at >= self.bulk_delay
        ]
        if due:
            await asyncio.wait(due, timeout=BULK_SETTLE_SECONDS)

    async def _stop_bulk_writers(self, _app: web.Application) -> None:
        writers = [op.writer for op in self._bulk_operations.values() if op.writer is not None]
        for writer in writers:
            writer.cancel()
        await asyncio.gather(*writers, return_exceptions=True)

    def _bulk_url(self, operation: _BulkOperation, origin: str) -> str | None:
        if operation.status != "COMPLETED" or not operation.jsonl:
            return None
        return f"{origin}/bulk/{operation.num}.jsonl?signature={operation.signature}"

    def _run_bulk_query(self, info: _Info, query: str, group_objects: bool) -> dict[str, Any]:
        request = _request(info)
        self.mutation_calls["bulkOperationRunQuery"] += 1
        document = _checked_bulk_query(query)
        if isinstance(document, str):
            return _bulk_refusal("INVALID", ["query"], document)
        for operation in self._bulk_operations.values():
            self._advance_bulk(operation)
        running = [op for op in self._bulk_operations.values() if op.status in BULK_RUNNING]
        concurrent = request.version == "unstable" or request.version >= BULK_CONCURRENCY_VERSION
        limit = self.bulk_query_limit
        if limit is None:
            limit = BULK_QUERIES_AT_ONCE if concurrent else 1
        if len(running) >= limit:
            if concurrent:
                return _bulk_refusal(
                    "LIMIT_REACHED", None, "Bulk operations limit reached. Please try again later."
                )
            return _bulk_refusal(
                "OPERATION_IN_PROGRESS",
                None,
                f"A bulk query operation for this app and shop is already in progress: "
                f"{running[-1].id}.",
            )
        num = next(self._ids)
        operation = _BulkOperation(
            num=num,
            id=_gid("BulkOperation", num),
            query=query,
            document=document,
            version=request.version,
            group_objects=group_objects,
            started_at=self._clock(),
            created_at=_now_iso(),
            signature=secrets.token_urlsafe(24),
            fail_with=self.faults._take_bulk_failure(),
        )
        self._bulk_operations[operation.id] = operation
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # executed outside any server: written when first looked at
        if loop is not None and operation.fail_with is None:
            operation.writer = loop.create_task(self._write_bulk(operation))
        return {"bulkOperation": operation, "userErrors": []}

    async def _write_bulk(self, operation: _BulkOperation) -> None:
        """Write a result slice by slice, letting the server answer requests in between."""
        try:
            for _ in itertools.count():
                if self._write_bulk_slice(operation):
                    return
                await asyncio.sleep(0)
        except Exception:
            # Whatever broke the writing fails the operation, as a broken export does on Shopify.
            operation.fail_with = "INTERNAL_SERVER_ERROR"
            operation.written = True

    def _write_bulk_slice(self, operation: _BulkOperation) -> bool:
        """Write the next slice of top-level nodes; True once the result is whole."""
        start = operation.next_root
        context = _Request(
            self, operation.version, {}, bulk=True, bulk_window=(start, start + BULK_SLICE)
        )
        # The shop is read as it is while the operation runs, as on Shopify.
        result = execute_sync(_SCHEMA, operation.document, context_value=context)
        if result.errors or result.data is None:
            operation.fail_with = "INTERNAL_SERVER_ERROR"
            operation.written = True
            return True
        for depth, line in _bulk_lines(result.data, operation.document):
            encoded = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode()
            part = operation.parts.setdefault(0 if operation.group_objects else depth, [])
            part.append(encoded + b"\n")
            operation.object_count += 1
            if depth == 0:
                operation.root_object_count += 1
        operation.next_root = start + BULK_SLICE
        operation.written = not context.bulk_more
        return operation.written

    def _advance_bulk(self, operation: _BulkOperation) -> None:
        """Move an operation along the sim's clock: finish it once its delay is over and its
        result written, expire it after seven days."""
        now = self._clock()
        if operation.status in BULK_RUNNING:
            operation.status = "RUNNING"
            if now - operation.started_at < self.bulk_delay:
                return
            if operation.fail_with is None and not operation.written:
                if operation.writer is None:
                    while not self._write_bulk_slice(operation):
                        pass
                elif not operation.writer.done():
                    return  # still writing in the background
                else:
                    operation.fail_with = "INTERNAL_SERVER_ERROR"  # the writer was stopped
            self._finish_bulk(operation, now)
        if (
            operation.status == "COMPLETED"
            and operation.finished_at is not None
            and now - operation.finished_at > BULK_RESULT_LIFETIME_SECONDS
        ):
            operation.status = "EXPIRED"

    def _finish_bulk(self, operation: _BulkOperation, now: float) -> None:
        operation.finished_at = now
        if operation.fail_with is not None:
            operation.status, operation.error_code = "FAILED", operation.fail_with
            operation.parts, operation.object_count, operation.root_object_count = {}, 0, 0
            return
        operation.jsonl = b"".join(
            line for depth in sorted(operation.parts) for line in operation.parts[depth]
        )
        operation.parts = {}
        operation.status, operation.completed_at = "COMPLETED", _now_iso()

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
# Small helpers used by the simulator


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bulk_refusal(code: str, field_path: list[str] | None, message: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [_user_error(code, field_path, message)]}


def _storage_error(status: int, code: str, message: str) -> web.Response:
    """An error as the storage host behind result URLs words it (XML, like Google Cloud)."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


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
