"""stocksync's Shopify side checked against Shopify's real Admin schema, API version 2026-04.

- Every GraphQL document stocksync can send (every string in daemon/shopify/ that parses as an
  operation, found by scanning the modules, so a new one cannot be missed) validates against the
  real schema; so does every document the client actually sends when each of its public methods
  runs against the simulator (a document built at run time cannot hide either).
- Every type, field, argument, input field, enum value and directive the simulated Shopify
  defines exists in the real schema with the same types and nullability (the simulator may be a
  subset, but must not accept what Shopify refuses).
- Every userError code and bulk status the client acts on exists in the real schema's enums.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from graphql import (
    DocumentNode,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    build_schema,
    is_required_argument,
    is_required_input_field,
    parse,
    print_ast,
    validate,
)

import daemon.shopify
import daemon.sim.shopify.schema as sim_schema
from daemon.domain.models import PlannedPush
from daemon.metrics import PUSH_ERROR_CODES
from daemon.secrets import Secret
from daemon.shopify.auth import StaticToken
from daemon.shopify.client import ShopifyClient
from daemon.shopify.inventory import NEW_KEY_FROM_2026_10
from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.shopify import ShopifySim

SIM_FOLDER = Path(sim_schema.__file__).parent
TOKEN = "shpat_reference_0001"
PAGE_SIZE = 250

# -- the documents stocksync sends ---------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    where: str  # "daemon.shopify.queries.LOCATIONS", or file:line for a string inside a function
    text: str
    ast: DocumentNode


def _operation(text: str) -> DocumentNode | None:
    """`text` parsed, when it is a GraphQL document holding at least one operation."""
    try:
        document = parse(text)
    except GraphQLError:
        return None
    if any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        return document
    return None


def _shopify_modules() -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(daemon.shopify.__path__):
        yield importlib.import_module(f"daemon.shopify.{info.name}")


def collect_documents() -> list[Document]:
    """Every GraphQL operation in daemon/shopify/: module-level strings and string literals."""
    found: dict[str, Document] = {}
    for module in _shopify_modules():
        # Strings computed at import time (concatenations, constants of constants).
        for name, value in vars(module).items():
            if isinstance(value, str) and (document := _operation(value)) is not None:
                found.setdefault(
                    print_ast(document), Document(f"{module.__name__}.{name}", value, document)
                )
        # Literals anywhere in the file, a document written inside a function included.
        source = Path(inspect.getfile(module))
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                document = _operation(node.value)
                if document is not None:
                    where = f"{source.relative_to(Path(daemon.shopify.__path__[0]).parents[1])}"
                    found.setdefault(
                        print_ast(document),
                        Document(f"{where}:{node.lineno}", node.value, document),
                    )
    return sorted(found.values(), key=lambda d: d.where)


DOCUMENTS = collect_documents()


def test_the_document_collector_finds_the_documents_stocksync_sends() -> None:
    names = {d.where.rpartition(".")[2] for d in DOCUMENTS}
    # The ones that matter most; the scan finds any other without being told.
    assert {"LOCATIONS", "VARIANTS", "AVAILABLE_LEVELS", "SET_QUANTITIES", "ACTIVATE"} <= names
    assert {"BULK_VARIANTS", "BULK_AVAILABLE_LEVELS", "BULK_RUN", "BULK_OPERATION"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.where for d in DOCUMENTS])
def test_every_graphql_document_stocksync_sends_validates_against_the_2026_04_schema(
    shopify_schema: GraphQLSchema, document: Document
) -> None:
    errors = validate(shopify_schema, document.ast)

    assert [e.message for e in errors] == [], f"{document.where} is invalid in 2026-04"


# The client's public methods, each with a call that runs it against the small shop below.
Exercise = Callable[[ShopifyClient, "SmallShop"], Any]


@dataclass(frozen=True)
class SmallShop:
    main: str
    closed: str
    stocked: list[str]  # inventory items stocked at `main`
    unstocked: str  # an item stocked nowhere


CLIENT_EXERCISES: dict[str, Exercise] = {
    "locations": lambda client, shop: client.locations(),
    "variants": lambda client, shop: client.variants(),
    "available_levels": lambda client, shop: client.available_levels(
        [*shop.stocked, shop.unstocked], [shop.main, shop.closed]
    ),
    "set_available": lambda client, shop: client.set_available(
        [
            PlannedPush(1, "A", shop.stocked[0], shop.main, 7, None),
            # A stale compare: the client re-reads the level before reporting it.
            PlannedPush(2, "B", shop.stocked[1], shop.main, 8, 99),
        ],
        reference="gid://stocksync/SyncRun/1",
    ),
    "activate": lambda client, shop: client.activate(shop.unstocked, shop.main, 3),
}


def _public_methods(cls: type) -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    )


def _record_documents(shop: ShopifySim) -> list[str]:
    """Wrap the simulator's executor so every document it is sent is kept (bulk queries too)."""
    sent: list[str] = []
    execute = shop.execute

    def recording(
        query: str, variables: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        sent.append(query)
        document = _operation(query)
        bulk_query = (variables or {}).get("query")
        if document is not None and "bulkOperationRunQuery" in print_ast(document):
            assert isinstance(bulk_query, str)
            sent.append(bulk_query)
        return execute(query, variables, *args, **kwargs)

    shop.execute = recording  # type: ignore[method-assign]
    return sent


async def _exercise_shopify_client() -> list[str]:
    shop = ShopifySim(access_token=TOKEN, bucket_size=10_000, restore_rate=10_000, bulk_delay=0)
    main = shop.add_location("Main")
    closed = shop.add_location("Closed")
    shop.deactivate_location(closed)
    stocked = [shop.add_variant(sku, stocked_at=[main], available=5) for sku in ("A", "B")]
    shop.add_variant("UNTRACKED", tracked=False, stocked_at=[main])
    unstocked = shop.add_variant("C", stocked_at=[])
    # A full first page with more behind it: the client counts the catalogue before paging on.
    for number in range(PAGE_SIZE):
        shop.add_variant(f"FILL-{number}", stocked_at=[])
    small = SmallShop(
        main, closed, [v.inventory_item_id for v in stocked], unstocked.inventory_item_id
    )
    sent = _record_documents(shop)

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.01))

    async with run_simulators(KatanaSim(), shop) as urls, aiohttp.ClientSession() as session:
        url = f"{urls.shopify[0]}/admin/api/2026-04/graphql.json"
        # Pages below the bulk threshold, then bulk operations above it (threshold 0).
        for threshold in (1_000_000, 0):
            client = ShopifyClient(
                session, url, StaticToken(Secret(TOKEN)), sleep=no_wait, bulk_threshold=threshold
            )
            for name in _public_methods(ShopifyClient):
                await CLIENT_EXERCISES[name](client, small)
    return sent


def test_every_public_shopify_client_method_is_exercised() -> None:
    missing = sorted(set(_public_methods(ShopifyClient)) - set(CLIENT_EXERCISES))

    assert missing == [], (
        f"ShopifyClient.{missing[0]} is not exercised: add a call to CLIENT_EXERCISES so the "
        "documents it sends are checked against the real schema"
    )


def test_every_graphql_document_the_client_sends_validates_against_the_2026_04_schema(
    shopify_schema: GraphQLSchema,
) -> None:
    sent = asyncio.run(_exercise_shopify_client())
    collected = {print_ast(d.ast) for d in DOCUMENTS}

    distinct = {print_ast(parse(text)): text for text in sent}
    for printed, text in distinct.items():
        errors = validate(shopify_schema, parse(text))
        assert [e.message for e in errors] == [], f"invalid in 2026-04:\n{text}"
        # Sent documents are written out in daemon/shopify/, where the scan above finds them.
        assert printed in collected, f"a document built at run time:\n{text}"
    # ...and every document written out there is one the client really sends.
    unsent = [d.where for d in DOCUMENTS if print_ast(d.ast) not in distinct]
    assert unsent == []


# -- the simulated Shopify's schema ----------------------------------------------------------------


def _default(value: GraphQLArgument | GraphQLInputField) -> str | None:
    # Compared as SDL text: graphql-core 3.2 and 3.3 keep coerced defaults differently.
    node = value.ast_node
    default = getattr(node, "default_value", None) if node is not None else None
    return None if default is None else print_ast(default)


def _compare_arguments(
    where: str,
    sim: Mapping[str, GraphQLArgument],
    real: Mapping[str, GraphQLArgument],
) -> Iterator[str]:
    for name, argument in sim.items():
        real_argument = real.get(name)
        if real_argument is None:
            yield f"{where}({name}:) does not exist"
        elif str(argument.type) != str(real_argument.type):
            yield f"{where}({name}:) is {argument.type}, Shopify has {real_argument.type}"
        elif _default(argument) != _default(real_argument):
            yield (
                f"{where}({name}:) defaults to {_default(argument)}, "
                f"Shopify to {_default(real_argument)}"
            )
    for name, real_argument in real.items():
        if name not in sim and is_required_argument(real_argument):
            yield f"{where}({name}:) is required by Shopify but missing"


def _compare_type(sim: GraphQLNamedType, real: GraphQLNamedType) -> Iterator[str]:
    name = sim.name
    if type(sim) is not type(real):
        yield f"{name} is a {type(sim).__name__}, Shopify's a {type(real).__name__}"
        return
    if isinstance(sim, GraphQLObjectType | GraphQLInterfaceType):
        assert isinstance(real, GraphQLObjectType | GraphQLInterfaceType)
        extra = {i.name for i in sim.interfaces} - {i.name for i in real.interfaces}
        if extra:
            yield f"{name} implements {sorted(extra)}, Shopify's does not"
        for field_name, field in sim.fields.items():
            real_field = real.fields.get(field_name)
            if real_field is None:
                yield f"{name}.{field_name} does not exist"
                continue
            if str(field.type) != str(real_field.type):
                yield f"{name}.{field_name} is {field.type}, Shopify has {real_field.type}"
            yield from _compare_arguments(f"{name}.{field_name}", field.args, real_field.args)
    elif isinstance(sim, GraphQLInputObjectType):
        assert isinstance(real, GraphQLInputObjectType)
        for field_name, input_field in sim.fields.items():
            real_input = real.fields.get(field_name)
            if real_input is None:
                yield f"input {name}.{field_name} does not exist"
            elif str(input_field.type) != str(real_input.type):
                yield (
                    f"input {name}.{field_name} is {input_field.type}, "
                    f"Shopify has {real_input.type}"
                )
            elif _default(input_field) != _default(real_input):
                yield f"input {name}.{field_name} has another default than Shopify's"
        for field_name, real_input in real.fields.items():
            if field_name not in sim.fields and is_required_input_field(real_input):
                yield f"input {name}.{field_name} is required by Shopify but missing"
    elif isinstance(sim, GraphQLEnumType):
        assert isinstance(real, GraphQLEnumType)
        for value in sorted(set(sim.values) - set(real.values)):
            yield f"enum {name}.{value} does not exist"
    elif isinstance(sim, GraphQLUnionType):
        assert isinstance(real, GraphQLUnionType)
        extra = {t.name for t in sim.types} - {t.name for t in real.types}
        if extra:
            yield f"union {name} has {sorted(extra)}, Shopify's does not"


def schema_differences(sim: GraphQLSchema, real: GraphQLSchema) -> list[str]:
    """Everything in `sim` that is not in `real` exactly so (an empty list: a faithful subset)."""
    problems: list[str] = []
    for root in ("query_type", "mutation_type", "subscription_type"):
        sim_root, real_root = getattr(sim, root), getattr(real, root)
        if sim_root is not None and (real_root is None or sim_root.name != real_root.name):
            problems.append(f"the {root} is {sim_root.name}, Shopify's is {real_root}")
    for name, named in sim.type_map.items():
        if name.startswith("__"):
            continue
        real_named = real.type_map.get(name)
        if real_named is None:
            problems.append(f"type {name} does not exist")
        else:
            problems.extend(_compare_type(named, real_named))
    for directive in sim.directives:
        real_directive = real.get_directive(directive.name)
        if real_directive is None:
            problems.append(f"directive @{directive.name} does not exist")
            continue
        problems.extend(
            _compare_arguments(f"@{directive.name}", directive.args, real_directive.args)
        )
        extra = set(directive.locations) - set(real_directive.locations)
        if extra:
            problems.append(f"@{directive.name} is allowed on {sorted(map(str, extra))} too")
    return problems


def _simulator_schemas() -> dict[str, Callable[[], GraphQLSchema]]:
    """Every schema the simulated Shopify defines: its SDL files and the one schema.py serves."""
    schemas: dict[str, Callable[[], GraphQLSchema]] = {
        path.name: (lambda path=path: build_schema(path.read_text(encoding="utf-8")))
        for path in sorted(SIM_FOLDER.glob("*.graphql"))
    }
    for name, value in vars(sim_schema).items():
        if isinstance(value, GraphQLSchema):
            schemas[f"shopify/schema.py:{name}"] = lambda value=value: value
    return schemas


SIMULATOR_SCHEMAS = _simulator_schemas()


def test_the_simulated_shopify_defines_a_schema() -> None:
    assert "shopify_schema.graphql" in SIMULATOR_SCHEMAS
    assert any(name.startswith("shopify/schema.py:") for name in SIMULATOR_SCHEMAS)


@pytest.mark.parametrize("source", sorted(SIMULATOR_SCHEMAS))
def test_every_type_the_simulated_shopify_defines_matches_the_2026_04_schema(
    shopify_schema: GraphQLSchema, source: str
) -> None:
    simulated = SIMULATOR_SCHEMAS[source]()

    assert schema_differences(simulated, shopify_schema) == []


def test_the_schema_comparison_catches_what_shopify_2026_04_lacks(
    shopify_schema: GraphQLSchema,
) -> None:
    # The comparison itself, on the differences the simulator once had.
    wrong = build_schema(
        """
        schema { query: QueryRoot mutation: Mutation }
        type QueryRoot { locations(first: Int, includeInactive: Boolean = true): Int }
        type Mutation { inventorySetQuantities(input: InventorySetQuantitiesInput): Int }
        input InventorySetQuantitiesInput {
          ignoreCompareQuantity: Boolean = false
          name: String
          reason: String!
          quantities: [InventoryQuantityInput!]!
        }
        input InventoryQuantityInput {
          compareQuantity: Int
          inventoryItemId: ID!
          locationId: ID!
          quantity: Int!
        }
        enum InventorySetQuantitiesUserErrorCode { IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED }
        """
    )

    assert sorted(schema_differences(wrong, shopify_schema)) == [
        "Mutation.inventorySetQuantities is Int, Shopify has InventorySetQuantitiesPayload",
        "Mutation.inventorySetQuantities(input:) is InventorySetQuantitiesInput, "
        "Shopify has InventorySetQuantitiesInput!",
        "QueryRoot.locations is Int, Shopify has LocationConnection!",
        "QueryRoot.locations(includeInactive:) defaults to true, Shopify to false",
        "enum InventorySetQuantitiesUserErrorCode.IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED "
        "does not exist",
        "input InventoryQuantityInput.compareQuantity does not exist",
        "input InventorySetQuantitiesInput.ignoreCompareQuantity does not exist",
        "input InventorySetQuantitiesInput.name is String, Shopify has String!",
    ]


# -- the codes and statuses the client acts on ---------------------------------------------------

# Each constant of daemon/shopify/ that names Shopify codes or statuses, and the enum of the real
# schema its values come from.
CODE_ENUMS: dict[str, str] = {
    "inventory.STALE_CODES": "InventorySetQuantitiesUserErrorCode",
    "inventory.NEW_KEY_CODES": "InventorySetQuantitiesUserErrorCode",
    "inventory.CONCURRENT_REQUEST_CODE": "InventorySetQuantitiesUserErrorCode",
    "bulk.BUSY_CODES": "BulkOperationUserErrorCode",
    "bulk.COMPLETED": "BulkOperationStatus",
    "bulk.FAILED": "BulkOperationStatus",
}


def _code_constants() -> dict[str, object]:
    """String constants of daemon/shopify/ named *_CODE(S), *_STATUS(ES), COMPLETED or FAILED."""
    found: dict[str, object] = {}
    for module in _shopify_modules():
        short = module.__name__.rpartition(".")[2]
        for name, value in vars(module).items():
            texts = [value] if isinstance(value, str) else value
            if not isinstance(texts, list | tuple | set | frozenset):
                continue
            if not all(isinstance(text, str) for text in texts):
                continue
            if name.endswith(("_CODE", "_CODES", "_STATUS", "_STATUSES")) or name in (
                "COMPLETED",
                "FAILED",
            ):
                found[f"{short}.{name}"] = value
    return found


def test_every_code_constant_of_the_shopify_client_is_checked() -> None:
    assert sorted(_code_constants()) == sorted(CODE_ENUMS)


@pytest.mark.parametrize("constant", sorted(CODE_ENUMS))
def test_every_user_error_code_and_status_the_client_acts_on_exists_in_2026_04(
    shopify_schema: GraphQLSchema, constant: str
) -> None:
    value = _code_constants()[constant]
    values = {value} if isinstance(value, str) else set(value)  # type: ignore[call-overload]
    enum = shopify_schema.get_type(CODE_ENUMS[constant])
    assert isinstance(enum, GraphQLEnumType)

    assert sorted(values - set(enum.values)) == []


def test_a_code_the_client_acts_on_only_from_2026_10_is_absent_from_2026_04(
    shopify_schema: GraphQLSchema,
) -> None:
    # Had 2026-04 grown it, the version gate in the client would be needless; had the client
    # acted on it unconditionally, it would act on a code its default version never sends.
    enum = shopify_schema.get_type("InventorySetQuantitiesUserErrorCode")
    assert isinstance(enum, GraphQLEnumType)

    assert NEW_KEY_FROM_2026_10 not in enum.values


def test_the_push_error_label_takes_every_2026_04_user_error_code_and_nothing_unbounded(
    shopify_schema: GraphQLSchema,
) -> None:
    enum = shopify_schema.get_type("InventorySetQuantitiesUserErrorCode")
    assert isinstance(enum, GraphQLEnumType)
    ours = {"TRANSPORT", "OTHER", NEW_KEY_FROM_2026_10}

    assert set(enum.values) <= PUSH_ERROR_CODES
    assert sorted(PUSH_ERROR_CODES - set(enum.values) - ours) == []
