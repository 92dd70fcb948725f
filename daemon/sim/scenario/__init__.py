"""A seeded, realistic Katana + Shopify catalogue, its expected end state, and live business.

`build_catalogue` fills a KatanaSim and one or more ShopifySims with every case the sync rules
care about; `Scenario.expected_levels` is an oracle written straight from PRODUCT.md §1 over the
simulators' state (it shares no code with `daemon.domain`, so it can catch the daemon out);
`EventStream` applies a realistic mix of business events and records when each happened so
benchmarks can measure lag; `Scenario.write_config` writes a real stocksync configuration.

The package: `model.py` `Scenario` (the oracle, the config it writes); `catalogue.py`
`build_catalogue`; `events.py` `EventStream`.
"""

from daemon.sim.scenario.catalogue import build_catalogue
from daemon.sim.scenario.events import DEFAULT_MIX, AppliedEvent, EventStream
from daemon.sim.scenario.model import (
    API_VERSION,
    MAIN_WAREHOUSE,
    MIN_VARIANTS,
    WHOLESALE_DEPOT,
    Scenario,
    ShopConnection,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_MIX",
    "MAIN_WAREHOUSE",
    "MIN_VARIANTS",
    "WHOLESALE_DEPOT",
    "AppliedEvent",
    "EventStream",
    "Scenario",
    "ShopConnection",
    "build_catalogue",
]
