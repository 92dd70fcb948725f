"""Simulated Katana MRP: in-memory business state, its public REST API, and fault injection.

The HTTP side follows the Katana API notes (shared/spec/katana-api.md) and the payload shapes
of docs/design.md ("Katana payloads"). The business side models what moves Katana's numbers:
sales orders commit stock until they are packed, manufacturing orders commit their ingredients
until done, open stock transfers commit at their source, and an inventory movement exists
exactly when in-stock changes. Tests, the demo and the benchmarks drive it through the Python
methods below and read it back through the API, as the daemon does. See README.md beside it.

The package, one module per job:

- ``records``: the vocabulary (quantities and their formats, statuses), the records an account
  keeps, their indexed tables, and the public value types (``ProductSpec``, ``SimVariant``);
- ``state``: the account's tables and running totals, its clock and id sequences, and the reads
  oracles, drivers and the API make of it (``in_stock``, ``committed``, ``stock_row``...);
- the business events, by Katana's own areas, each a part of ``KatanaSim``: ``catalogue``
  (locations, products, materials, variants, BOM rows), ``stock`` (stock counts, adjustments,
  transfers, movements, and what every document commits and expects), ``manufacturing``,
  ``sales`` and ``purchasing`` (regular and outsourced purchase orders);
- ``account``: ``KatanaSim``, those parts put together, and ``app()``;
- ``faults``: ``KatanaFaults``, the failures injected into the HTTP API;
- ``api``: the REST API: auth, rate limit, faults and the Date header; list queries,
  pagination, filters, the per-query cache, ``/inventory``; errors in Katana's shape;
- ``params``: a request's query string, validated as Katana's validator does (422);
- ``payloads``: every resource rendered as Katana's API returns it.
"""

from daemon.sim.katana.account import KatanaSim
from daemon.sim.katana.faults import KatanaFaults
from daemon.sim.katana.records import ProductSpec, SimVariant
from daemon.sim.katana.state import gc_paused

__all__ = ["KatanaFaults", "KatanaSim", "ProductSpec", "SimVariant", "gc_paused"]
