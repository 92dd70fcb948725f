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

The package, one module per job (each imports, at run time, only those above it; type hints
may look down):

- ``faults``: ``ShopifyFaults``, the failures injected into the next requests;
- ``model``: the shop's objects (locations, products, variants, inventory items and levels,
  adjustment groups, bulk operations) and its state, with the Python API tests and the demo
  drive it by (``add_location``, ``add_variant``, ``place_order``...);
- ``pagination``: connections over ascending ids with Shopify's opaque cursors;
- ``request``: one request as the resolvers see it (the context, the 2026-04 rules flag) and the
  raw argument values the client sent, "absent" kept apart from null;
- ``schema``: ``shopify_schema.graphql`` loaded and every field wired to its resolver;
- ``validation``: parsing and validation in graphql-ruby's error shape, variables, input size;
- ``cost``: requested and actual query cost, the leaky bucket and its THROTTLED answers;
- ``mutations``: ``inventorySetQuantities``, ``inventoryActivate`` and idempotency keys;
- ``bulk``: bulk queries: the shape rules, the background writer, the JSONL and its URL;
- ``resolvers``: the reads (``node``, ``locations``, ``productVariants``, ``inventoryItems``,
  levels, quantities, search);
- ``server``: ``ShopifySim`` itself: the aiohttp app (GraphQL, OAuth token endpoint, the
  storage host of bulk results), held requests, and ``execute``, which runs one request
  through validation, cost and the schema.
"""

from daemon.sim.shopify.faults import ShopifyFaults
from daemon.sim.shopify.model import AppliedChange, BulkDownload
from daemon.sim.shopify.server import ShopifySim

__all__ = ["AppliedChange", "BulkDownload", "ShopifyFaults", "ShopifySim"]
