"""stocksync's Katana side checked against Katana's own API descriptions.

- Every request the client makes (path and query parameter names), recorded while each public
  method of KatanaClient runs against the simulator (so a new method or source cannot be
  missed), exists in Katana's live gateway spec, or in the developer portal where the gateway
  names a parameter group (`pagination`, `dateFilter`) without its members.
- Every answer the simulated Katana gives those requests validates against the response schema
  of Katana's refined OpenAPI 3.1 document (JSON Schema 2020-12), headers included.
- Katana's own response examples (the developer portal's) parse to the right typed rows.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from yarl import URL

import daemon.katana.client as katana_client
import daemon.katana.models as katana_models
from daemon.domain.models import StockRow
from daemon.katana.client import KatanaClient, KatanaError
from daemon.katana.models import KatanaItem, KatanaLocation, KatanaVariantRow
from daemon.katana.parse import (
    parse_bom_row,
    parse_changes,
    parse_item,
    parse_location,
    parse_stock_row,
    parse_timestamp,
    parse_variant,
)
from daemon.katana.ratelimit import RateLimiter
from daemon.secrets import Secret
from daemon.sim.harness import run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.shopify import ShopifySim

KEY = "katana-reference-key"
# Before anything in the small world: a `since` that sees every row.
SINCE = datetime(2000, 1, 1, tzinfo=UTC)
# The members of the live gateway's parameter groups, as the portal pages spell them out.
PARAMETER_GROUPS: dict[str, frozenset[str]] = {
    "pagination": frozenset({"limit", "page"}),
    "dateFilter": frozenset(
        {"created_at_min", "created_at_max", "updated_at_min", "updated_at_max"}
    ),
}


# -- the small world and the client's requests ---------------------------------------------------


def build_world(sim: KatanaSim) -> list[int]:
    """A small account with a row for every list the client reads; its variant ids."""
    warehouse, outlet = sim.add_location("Warehouse"), sim.add_location("Outlet")
    chair, lamp, no_sku = sim.add_product("Furniture", ["CHAIR", "LAMP", None])
    [kit] = sim.add_product("Kit", ["KIT"], is_auto_assembly=True)
    [oak] = sim.add_material("Oak", ["OAK"])
    [retired] = sim.add_product("Old", ["OLD"])
    sim.add_bom_row(kit, oak, "2.5")
    sim.add_bom_row(kit, chair, 1)
    sim.set_stock(chair, warehouse, 10)
    sim.set_stock(oak, warehouse, 40)
    sim.set_stock(kit, outlet, 1)
    sim.adjust_stock(lamp, warehouse, "3.5")
    sim.create_sales_order([(chair, 2), (lamp, 1)], warehouse)
    sim.deliver_sales_order(sim.create_sales_order([(chair, 1)], warehouse))
    sim.delete_sales_order(sim.create_sales_order([(lamp, 1)], warehouse))
    sim.create_manufacturing_order(kit, warehouse, 3)
    sim.complete_manufacturing_order(sim.create_manufacturing_order(kit, warehouse, 1))
    sim.create_stock_transfer([(chair, 1)], warehouse, outlet)
    sim.transfer_stock(oak, warehouse, outlet, 5)
    sim.create_purchase_order([(oak, 4)], warehouse)
    sim.receive_purchase_order([(oak, "1.5")], warehouse)
    sim.create_outsourced_purchase_order(kit, warehouse, 2)
    sim.delete_variant(retired)
    return [chair, lamp, no_sku, kit, oak, retired]


def _sources() -> list[str]:
    """Every source name the Katana modules list (DELTA_SOURCES, ROW_SOURCES, ...)."""
    names: set[str] = set()
    for module in (katana_models, katana_client):
        for name, value in vars(module).items():
            if name.endswith("SOURCES") and isinstance(value, tuple | set | frozenset):
                names.update(v for v in value if isinstance(v, str))
    return sorted(names)


class Unexercisable(Exception):
    """A public method takes a parameter this module does not know how to fill."""


def _choices(name: str, parameter: inspect.Parameter, variant_ids: list[int]) -> list[Any]:
    annotation = str(parameter.annotation)
    optional = "None" in annotation
    if "datetime" in annotation:
        return [SINCE, None] if optional else [SINCE]
    if re.search(r"(Collection|Iterable|Sequence|list|set|frozenset)\[int\]", annotation):
        return [variant_ids, None] if optional else [variant_ids]
    if parameter.name.endswith("source") and annotation == "str":
        return _sources()
    if parameter.name == "filters" and annotation == "Params":
        # A targeted read (daemon/sync/targeted.py) picks rows by id; every delta list takes
        # `ids`. Its document filters (sales_order_ids, manufacturing_order_id,
        # purchase_order_id, purchase_order_row_id) are each valid on one list only: their names
        # were checked against live-gateway.yaml by hand (issue 17), not here.
        return [[("ids", str(variant_ids[0]))]]
    if parameter.default is not inspect.Parameter.empty:
        return [parameter.default]
    raise Unexercisable(
        f"KatanaClient.{name}({parameter.name}: {annotation}): teach "
        "tests/reference/test_katana_reference.py how to fill it, so its requests are checked"
    )


def calls(variant_ids: list[int]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every public KatanaClient method with every combination of arguments worth sending."""
    for name, method in inspect.getmembers(KatanaClient, inspect.isfunction):
        if name.startswith("_"):
            continue
        parameters = list(inspect.signature(method).parameters.values())[1:]
        options = [_choices(name, p, variant_ids) for p in parameters]
        for arguments in itertools.product(*options):
            yield name, arguments


@dataclass
class Exercise:
    """What running every public method against the simulator left behind."""

    requests: list[URL] = field(default_factory=list)  # every GET, in order
    failures: list[str] = field(default_factory=list)  # calls that raised
    bodies: dict[str, tuple[int, Any, Mapping[str, str]]] = field(default_factory=dict)
    base: URL = field(default_factory=URL)


async def _consume(result: Any) -> None:
    if inspect.isawaitable(result):
        await result
    elif isinstance(result, AsyncIterator):
        async for _ in result:
            pass


async def _exercise() -> Exercise:
    sim = KatanaSim(api_key=KEY, requests_per_minute=100_000)
    variant_ids = build_world(sim)
    done = Exercise()

    async def on_request_start(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
    ) -> None:
        done.requests.append(params.url)

    async def no_wait(_seconds: float) -> None:
        return None

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with (
        run_simulators(sim, ShopifySim()) as urls,
        aiohttp.ClientSession(trace_configs=[trace]) as session,
    ):
        done.base = URL(urls.katana)
        client = KatanaClient(
            session,
            urls.katana,
            Secret(KEY),
            RateLimiter(100_000),
            max_attempts=1,
            sleep=no_wait,
        )
        for name, arguments in calls(variant_ids):
            try:
                await _consume(getattr(client, name)(*arguments))
            except KatanaError as exc:
                done.failures.append(f"KatanaClient.{name}{arguments!r}: {exc}")
        # The same requests again, read raw, for their bodies and headers.
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession() as plain:
            for url in dict.fromkeys(done.requests):
                async with plain.get(url, headers=headers) as response:
                    body = await response.json(content_type=None)
                    done.bodies[str(url)] = (response.status, body, dict(response.headers))
    return done


@pytest.fixture(scope="module")
def exercise() -> Exercise:
    """Every public KatanaClient method run against the simulator with a small world (once)."""
    return asyncio.run(_exercise())


def _path(exercise: Exercise, url: URL) -> str:
    return "/" + url.path.removeprefix(exercise.base.path).lstrip("/")


# -- requests against the live gateway and the portal ----------------------------------------------


def _matching_path(paths: Mapping[str, Any], path: str) -> str | None:
    if path in paths:
        return path
    for template in paths:
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return None


def _get_operation(spec: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    paths = spec.get("paths", {})
    template = _matching_path(paths, path)
    if template is None:
        return None
    operation = paths[template].get("get")
    return operation if isinstance(operation, Mapping) else None


def _parameters(spec: Mapping[str, Any], operation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = spec["components"]["parameters"][parameter["$ref"].rpartition("/")[2]]
        if parameter.get("in") == "query":
            found.append(parameter)
    return found


def request_problems(
    path: str,
    names: Iterable[str],
    gateway: Mapping[str, Any],
    pages: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Why a GET of `path` with these query parameters is not one Katana documents ([]: it is)."""
    live = _get_operation(gateway, path)
    page_template = _matching_path(pages, path)
    page = pages[page_template] if page_template is not None else None
    if live is None and page is None:
        return [f"GET {path} is in neither the live gateway nor the portal pages"]
    documented = (
        {p["name"] for p in page.get("parameters", []) if p.get("in") == "query"}
        if (page is not None)
        else set()
    )
    if live is None:
        accepted = documented
    else:
        accepted = set()
        for parameter in _parameters(gateway, live):
            if "content" not in parameter:  # a plain parameter
                accepted.add(parameter["name"])
            elif parameter["name"] in PARAMETER_GROUPS:
                # A group the gateway leaves opaque: its members as the portal page lists them.
                accepted |= PARAMETER_GROUPS[parameter["name"]] & documented
            else:
                return [f"GET {path}: teach this test the members of {parameter['name']!r}"]
    return [
        f"GET {path}?{name}=: Katana documents no such parameter there"
        for name in sorted(set(names) - accepted)
    ]


def test_the_request_check_refuses_what_katana_does_not_document(
    katana_gateway: Mapping[str, Any], katana_portal_pages: Mapping[str, Mapping[str, Any]]
) -> None:
    def check(path: str, *names: str) -> list[str]:
        return request_problems(path, names, katana_gateway, katana_portal_pages)

    assert check("/bom_rows", "updated_at_min", "limit", "page") == []
    assert check("/sales_order_rows", "updated_at_min", "include_deleted") == []
    # The real /bom_rows has no deleted rows, /inventory no date filters.
    assert check("/bom_rows", "include_deleted") == [
        "GET /bom_rows?include_deleted=: Katana documents no such parameter there"
    ]
    assert check("/inventory", "updated_at_min") == [
        "GET /inventory?updated_at_min=: Katana documents no such parameter there"
    ]
    assert check("/sales_order_lines") == [
        "GET /sales_order_lines is in neither the live gateway nor the portal pages"
    ]


def test_every_public_katana_client_method_can_be_exercised() -> None:
    methods = {name for name, _ in calls([1])}  # raises Unexercisable, naming the parameter

    assert {"locations", "variants", "items", "bom_rows", "inventory", "changes"} <= methods


def test_every_katana_request_stocksync_makes_exists_in_the_live_gateway_or_the_portal(
    exercise: Exercise,
    katana_gateway: Mapping[str, Any],
    katana_portal_pages: Mapping[str, Mapping[str, Any]],
) -> None:
    requests = {
        (_path(exercise, url), tuple(sorted(set(url.query.keys())))) for url in exercise.requests
    }
    paths = {path for path, _ in requests}
    # Every catalogue list and every delta source went out (with and without a since).
    assert {"/locations", "/variants", "/products", "/materials", "/bom_rows", "/inventory"} <= (
        paths
    )
    assert {f"/{source}" for source in _sources()} <= paths

    problems = sorted(
        {
            problem
            for path, names in requests
            for problem in request_problems(path, names, katana_gateway, katana_portal_pages)
        }
    )
    assert problems == []


# -- the simulated Katana's answers against the refined OpenAPI schemas ----------------------------

_URI = "urn:stocksync:katana-openapi"


def _validator(openapi: Mapping[str, Any], schema: Mapping[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        _URI, Resource(contents=openapi, specification=DRAFT202012)
    )
    if "$ref" in schema and str(schema["$ref"]).startswith("#"):
        schema = {"$ref": _URI + str(schema["$ref"])}
    return Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    if error.context:
        for inner in error.context:
            yield from _leaves(inner)
    else:
        yield error


def _resolve(openapi: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        target: Any = openapi
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_problems(
    openapi: Mapping[str, Any], path: str, status: int, body: Any, headers: Mapping[str, str]
) -> list[str]:
    """How one answer differs from the refined spec's 200 response of `GET path` ([]: not)."""
    operation = _get_operation(openapi, path)
    if operation is None:
        return [f"GET {path} has no response schema in katana-openapi.yaml"]
    if status != 200:
        return [f"GET {path} answered HTTP {status}: {str(body)[:200]}"]
    response = _resolve(openapi, operation["responses"]["200"])
    problems = []
    schema = response["content"]["application/json"]["schema"]
    for error in _validator(openapi, schema).iter_errors(body):
        for leaf in _leaves(error):
            where = re.sub(r"/\d+", "/N", "/".join(map(str, leaf.absolute_path)))
            problems.append(f"GET {path} body /{where}: {leaf.message[:160]}")
    for name, header in response.get("headers", {}).items():
        header = _resolve(openapi, header)
        value = headers.get(name)
        if value is None or "schema" not in header:
            continue
        header_schema = header["schema"]
        try:
            decoded: Any = json.loads(value) if header_schema.get("type") == "object" else value
            if header_schema.get("type") == "integer":
                decoded = int(value)
        except ValueError:
            problems.append(f"GET {path} header {name}: {value!r} is not {header_schema['type']}")
            continue
        for error in _validator(openapi, header_schema).iter_errors(decoded):
            problems.append(f"GET {path} header {name}: {error.message[:160]}")
    return problems


def test_every_answer_of_the_simulated_katana_validates_against_katanas_openapi_schemas(
    exercise: Exercise, katana_openapi: Mapping[str, Any]
) -> None:
    assert exercise.failures == []
    problems: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    for url, (status, body, headers) in exercise.bodies.items():
        path = _path(exercise, URL(url))
        problems.update(response_problems(katana_openapi, path, status, body, headers))
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            rows[path] += len(body["data"])

    assert sorted(problems) == []
    # Validating empty lists would prove nothing: the small world has rows for every list.
    assert sorted(p for p in {_path(exercise, u) for u in exercise.requests} if not rows[p]) == []


def test_the_response_check_catches_a_string_where_katana_sends_a_number(
    katana_openapi: Mapping[str, Any],
) -> None:
    movement = {
        "id": 1,
        "variant_id": 1,
        "location_id": 1,
        "resource_type": "SalesOrderRow",
        "movement_date": "2020-10-23T10:37:05.085Z",
        "quantity_change": "-1.00000",
        "balance_after": 6,
        "value_per_unit": 0,
        "value_in_stock_after": 0,
        "average_cost_after": 0,
        "created_at": "2020-10-23T10:37:05.085Z",
        "updated_at": "2020-10-23T10:37:05.085Z",
    }

    problems = response_problems(
        katana_openapi, "/inventory_movements", 200, {"data": [movement]}, {}
    )

    assert problems == [
        "GET /inventory_movements body /data/N/quantity_change: '-1.00000' is not of type 'number'"
    ]


# -- Katana's own examples through stocksync's parser ---------------------------------------------


def example(portal: Mapping[str, Any], path: str) -> list[Mapping[str, Any]]:
    """The `data` rows of the developer portal's example answer to `GET path`."""
    response = portal["paths"][path]["get"]["responses"]["200"]
    rows: list[Mapping[str, Any]] = response["content"]["application/json"]["example"]["data"]
    assert rows, f"the portal has no example row for GET {path}"
    return rows


def at(text: str) -> datetime:
    return parse_timestamp(text)


def test_katanas_inventory_example_parses_to_its_exact_quantities(
    katana_portal: Mapping[str, Any],
) -> None:
    (row,) = example(katana_portal, "/inventory")

    assert parse_stock_row(row) == StockRow(
        variant_id=1, location_id=1, in_stock=7, committed=0, potential=200
    )


def test_katanas_variants_example_parses_to_its_sku_product_and_timestamps(
    katana_portal: Mapping[str, Any],
) -> None:
    (row,) = example(katana_portal, "/variants")

    assert parse_variant(row) == KatanaVariantRow(
        id=1,
        sku="EM",
        product_id=1,
        material_id=None,
        created_at=datetime(2020, 10, 23, 10, 37, 5, 85000, tzinfo=UTC),
        updated_at=datetime(2020, 10, 23, 10, 37, 5, 85000, tzinfo=UTC),
        deleted_at=None,
    )


def test_katanas_products_example_parses_to_an_archived_kit(
    katana_portal: Mapping[str, Any],
) -> None:
    (row,) = example(katana_portal, "/products")

    assert parse_item(row, "product") == KatanaItem(
        id=1,
        kind="product",
        is_auto_assembly=True,
        archived=True,  # archived_at is set
        updated_at=at("2020-10-23T10:37:05.085Z"),
        category="lightsaber",  # category_name: what sync filters match
    )


def test_katanas_materials_example_parses_to_an_archived_material(
    katana_portal: Mapping[str, Any],
) -> None:
    (row,) = example(katana_portal, "/materials")

    assert parse_item(row, "material") == KatanaItem(
        id=1,
        kind="material",
        is_auto_assembly=False,
        archived=True,
        updated_at=at("2020-10-23T10:37:05.085Z"),
        category="Lightsaber components",
    )


def test_katanas_locations_example_parses_to_its_two_live_locations(
    katana_portal: Mapping[str, Any],
) -> None:
    rows = example(katana_portal, "/locations")

    assert [parse_location(row) for row in rows] == [
        KatanaLocation(id=1, name="Main location", deleted=False),
        KatanaLocation(id=2, name="Secondary location", deleted=False),
    ]


def test_katanas_bom_rows_example_parses_to_its_kit_ingredient_quantity_and_update(
    katana_portal: Mapping[str, Any],
) -> None:
    (row,) = example(katana_portal, "/bom_rows")

    parsed = parse_bom_row(row)

    assert parsed.id == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert (parsed.product_variant_id, parsed.ingredient_variant_id) == (1, 1)
    assert parsed.quantity == 2
    assert not parsed.deleted
    # The bom_rows cursor follows it.
    assert parsed.updated_at == at("2021-04-05T12:00:00.000Z")


@dataclass(frozen=True)
class Expected:
    source: str
    resource_id: int
    variant_ids: Sequence[int]
    at: str


DELTA_EXAMPLES = [
    # Movements are reported at their creation, everything else at its last update.
    Expected("inventory_movements", 1, [1], "2020-10-23T10:37:05.085Z"),
    Expected("sales_orders", 1, [1], "2020-10-23T10:37:05.085Z"),
    Expected("manufacturing_orders", 21400, [1418016], "2021-10-15T14:05:47.625Z"),
    Expected("manufacturing_order_recipe_rows", 1, [1], "2021-02-18T12:33:39.957Z"),
    Expected("stock_transfers", 1, [1, 2], "2021-10-06T11:47:13.846Z"),
    Expected("stock_adjustments", 1, [1, 2], "2021-10-06T11:47:13.846Z"),
    Expected("purchase_orders", 1, [1], "2021-10-13T15:31:48.490Z"),
]


@pytest.mark.parametrize("expected", DELTA_EXAMPLES, ids=[e.source for e in DELTA_EXAMPLES])
def test_katanas_delta_source_examples_parse_to_a_change_per_variant_at_the_right_time(
    katana_portal: Mapping[str, Any], expected: Expected
) -> None:
    (row,) = example(katana_portal, f"/{expected.source}")

    changes, bad = parse_changes(expected.source, row)

    assert bad == []
    assert [(c.source, c.resource_id, c.variant_id, c.at) for c in changes] == [
        (expected.source, expected.resource_id, variant, at(expected.at))
        for variant in expected.variant_ids
    ]


def _named_variants(row: Mapping[str, Any]) -> set[int]:
    """The variant ids an example row names, itself or in its list of line rows."""
    keys = ("variant_id", "ingredient_variant_id")
    found = {row[k] for k in keys if isinstance(row.get(k), int)}
    if found:
        return found
    return {
        line[k]
        for value in row.values()
        if isinstance(value, list)
        for line in value
        if isinstance(line, dict)
        for k in keys
        if isinstance(line.get(k), int)
    }


@pytest.mark.parametrize("source", _sources())
def test_every_delta_sources_example_parses_to_the_variants_it_names(
    katana_portal: Mapping[str, Any], source: str
) -> None:
    # Covers sources added later too (row endpoints): each one's own example, read generically.
    for row in example(katana_portal, f"/{source}"):
        changes, bad = parse_changes(source, row)

        assert bad == []
        assert {c.variant_id for c in changes} == _named_variants(row)
        assert all(isinstance(c.at, datetime) and c.at.tzinfo is not None for c in changes)
