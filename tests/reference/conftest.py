"""The real APIs' descriptions, read from ../shared/reference/ beside the repository (never copied).

CI always has that folder: when it is missing every reference test fails with one clear message
instead of being skipped. Each file is parsed once per test session (Shopify's SDL is 3.5 MB).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from graphql import GraphQLSchema, build_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT / ".." / "shared" / "reference"
SHOPIFY_SDL = Path("shopify", "admin-2026-04.graphql")
KATANA_OPENAPI = Path("katana", "katana-openapi.yaml")
KATANA_GATEWAY = Path("katana", "live-gateway.yaml")
KATANA_PORTAL = Path("katana", "readme-portal.yaml")
KATANA_PAGES = Path("katana", "portal-pages")

# The OpenAPI blocks embedded in the developer-portal pages.
_JSON_BLOCK = re.compile(r"```json\n(.*?)\n```", re.DOTALL)


def reference_file(relative: Path) -> Path:
    """A file of ../shared/reference/; fails the test (never skips) when it is not there."""
    path = REFERENCE / relative
    if not path.exists():
        pytest.fail(
            f"the API reference {path.resolve()} is missing: the reference tests read the real "
            "APIs' descriptions from ../shared/reference/ beside the repository (CI always has "
            "it; see that folder's README.md). Do not copy them into the project.",
            pytrace=False,
        )
    return path


@cache
def _yaml(relative: Path) -> Any:
    # libyaml's loader reads the 1.5 MB portal spec in well under a second; the pure-Python one
    # takes many seconds.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with reference_file(relative).open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=loader)


@cache
def _shopify_schema() -> GraphQLSchema:
    # Shopify's schema breaks a rule graphql-core 3.3 added to schema validation (deprecated
    # fields implementing non-deprecated interface fields); 3.2 accepts it. The schema is what
    # Shopify serves, so it is taken as valid: documents are still validated against it in full.
    return build_schema(reference_file(SHOPIFY_SDL).read_text(encoding="utf-8"), assume_valid=True)


@pytest.fixture(scope="session")
def shopify_schema() -> GraphQLSchema:
    """Shopify's Admin GraphQL schema, API version 2026-04 (built once per session)."""
    return _shopify_schema()


@pytest.fixture(scope="session")
def katana_openapi() -> Mapping[str, Any]:
    """Katana's hand-refined OpenAPI 3.1 document (response schemas, nullability)."""
    return _yaml(KATANA_OPENAPI)


@pytest.fixture(scope="session")
def katana_gateway() -> Mapping[str, Any]:
    """Katana's live /v1/openapi.json snapshot (request parameters; no response schemas)."""
    return _yaml(KATANA_GATEWAY)


@pytest.fixture(scope="session")
def katana_portal() -> Mapping[str, Any]:
    """The spec of Katana's developer portal, with Katana's own response examples."""
    return _yaml(KATANA_PORTAL)


@pytest.fixture(scope="session")
def katana_portal_pages() -> Mapping[str, Mapping[str, Any]]:
    """GET operations documented by the portal's reference pages, by path."""
    folder = reference_file(KATANA_PAGES)
    operations: dict[str, Mapping[str, Any]] = {}
    for page in sorted(folder.rglob("*.md")):
        for block in _JSON_BLOCK.findall(page.read_text(encoding="utf-8")):
            try:
                spec = json.loads(block)
            except ValueError:
                continue
            for path, methods in spec.get("paths", {}).items():
                if isinstance(methods, dict) and "get" in methods:
                    operations.setdefault(path, methods["get"])
    return operations
