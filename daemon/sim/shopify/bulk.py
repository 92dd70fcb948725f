"""Bulk queries: checked on submission, written in the background, served as JSONL.

``bulkOperationRunQuery`` (10 points like any mutation, no ``@idempotent`` needed) checks the
query (schema validation and the bulk rules: one top-level connection, not ``node``/``nodes``,
at most five connections nested at most two deep, the parent of a nested connection selecting
``id``); any failure is a userError ``INVALID`` on ``["query"]``. From 2026-01 up to five bulk
query operations run at a time per shop (``LIMIT_REACHED`` beyond), before that one
(``OPERATION_IN_PROGRESS``). The result is written from submission on, a slice of top-level
nodes at a time, so a 100,000-variant export never stalls the server; the operation reads
``RUNNING`` until ``bulk_delay`` seconds of the sim's clock have passed and its result is
written, then ``COMPLETED``, and ``EXPIRED`` after seven days. The JSONL has one line per
connection node, nested connections' nodes on lines of their own carrying ``__parentId``; its
URL (``/bulk/<n>.jsonl?signature=...``, served by `server`) stands in for Shopify's signed
storage URL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from aiohttp import web
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLNamedType,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute_sync,
    get_named_type,
    get_operation_ast,
)

from daemon.sim.shopify.model import _BulkOperation, _gid, _now_iso, _Shop
from daemon.sim.shopify.mutations import _user_error
from daemon.sim.shopify.request import _Request, _request
from daemon.sim.shopify.schema import _SCHEMA, _collect, _fragments
from daemon.sim.shopify.validation import _prepare

if TYPE_CHECKING:
    from daemon.sim.shopify.request import _Info
    from daemon.sim.shopify.server import ShopifySim


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
# Bulk operations


class _Bulk(_Shop):
    """The shop's bulk operations: submitted, written in the background, moved along the clock."""

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
        # `self` is a ShopifySim (this class is one of its parts), as the context says.
        context = _Request(
            cast("ShopifySim", self),
            operation.version,
            {},
            bulk=True,
            bulk_window=(start, start + BULK_SLICE),
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


def _bulk_refusal(code: str, field_path: list[str] | None, message: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [_user_error(code, field_path, message)]}
