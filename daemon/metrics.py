"""Prometheus metric definitions, on a registry owned by one app instance (never the global one).

Every family is created at start-up so that it is exported before it has samples. Nothing here
does I/O: values are pushed in by the code that observes them.
"""

from __future__ import annotations

import platform
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)

from daemon import __version__
from daemon.katana.models import DELTA_SOURCES
from daemon.status.window import ActivityWindow

# Katana change -> Shopify acknowledgement: seconds to tens of minutes.
LAG_BUCKETS = (1, 2, 5, 10, 15, 30, 45, 60, 90, 120, 300, 600, 1800, 3600, 7200)
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
APIS = ("katana", "shopify")
# Every resource the API clients can report a malformed row for (the `resource` label). A
# counter child born on its first increment shows no increase() for that increment, so each
# one is created at start-up (tests/unit/test_metrics.py scans the clients for new names).
MALFORMED_RESOURCES = {
    "katana": (
        "locations",
        "variants",
        "products",
        "materials",
        "bom_rows",
        "inventory",
        *DELTA_SOURCES,
    ),
    "shopify": ("locations", "product_variants", "product_variants_count", "inventory_levels"),
}
# Every value the push_errors `code` label may take: Shopify's InventorySetQuantitiesUserErrorCode
# enum (admin 2026-04 schema, plus the key-replacement code of 2026-10), TRANSPORT for a batch
# that could not be sent, and OTHER for anything else. A label that took any string Shopify (or
# a proxy) sends would let a misbehaving server create series without bound.
PUSH_ERROR_CODES = frozenset(
    {
        "INVALID_INVENTORY_ITEM",
        "INVALID_LOCATION",
        "INVALID_QUANTITY_NEGATIVE",
        "INVALID_REASON",
        "INVALID_REFERENCE_DOCUMENT",
        "ITEM_NOT_STOCKED_AT_LOCATION",
        "INVALID_QUANTITY_TOO_HIGH",
        "INVALID_QUANTITY_TOO_LOW",
        "COMPARE_QUANTITY_REQUIRED",
        "COMPARE_QUANTITY_STALE",
        "CHANGE_FROM_QUANTITY_STALE",
        "INVALID_NAME",
        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
        "NON_MUTABLE_INVENTORY_ITEM",
        "IDEMPOTENCY_CONCURRENT_REQUEST",
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
        "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
        "TRANSPORT",
        "OTHER",
    }
)


def push_error_code(code: str | None) -> str:
    """The push_errors `code` label for an error code: the code if known, else OTHER."""
    return code if code is not None and code in PUSH_ERROR_CODES else "OTHER"


class _PushErrors(Counter):
    """push_errors_total, whose `code` label only ever takes a PUSH_ERROR_CODES value.

    Bounded here rather than at each caller, so no code path can add a series.
    """

    def labels(self, *labelvalues: object, **labelkwargs: object) -> _PushErrors:
        """The child for these labels, with `code` mapped through push_error_code."""
        if "code" in labelkwargs:
            code = labelkwargs["code"]
            labelkwargs["code"] = push_error_code(code if isinstance(code, str) else None)
        elif len(labelvalues) == 2:
            code = labelvalues[1]
            labelvalues = (labelvalues[0], push_error_code(code if isinstance(code, str) else None))
        return super().labels(*labelvalues, **labelkwargs)


class ProcessCollector(process_collector.ProcessCollector):
    """prometheus-client's process_* collector, also where only /proc/PID is visible.

    systemd's ProcSubset=pid (set in the units) hides /proc/stat, and the stock collector, which
    reads the boot time from there, then exports nothing. The boot time is also the wall clock
    minus CLOCK_BOOTTIME, which needs no /proc at all.
    """

    def _boot_time(self) -> float | None:
        try:
            found: float | None = super()._boot_time()  # type: ignore[no-untyped-call]
        except OSError:
            found = None
        boottime = getattr(time, "CLOCK_BOOTTIME", None)
        if found is None and boottime is not None:
            return time.time() - time.clock_gettime(boottime)
        return found


class Metrics:
    """All stocksync metric families, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
            platform_collector.PlatformCollector(registry=self.registry)
            gc_collector.GCCollector(registry=self.registry)
        r = self.registry
        # The last hours of pushes and lag per connection, for the status page: Prometheus
        # histograms cannot give "p99 over the last hour" without a Prometheus server.
        self.activity = ActivityWindow()
        p = "stocksync_"
        # The daemon's own start time and version: process_start_time_seconds is not exported
        # everywhere (a sandbox may hide /proc), and the alerts' grace after a start needs one.
        self.start_time = Gauge(
            p + "start_time_seconds", "Unix time the stocksync process started.", registry=r
        )
        self.start_time.set(time.time())
        self.build_info = Gauge(
            p + "build_info",
            "Always 1; the labels say which stocksync and Python run.",
            ["version", "python", "implementation"],
            registry=r,
        )
        self.build_info.labels(
            version=__version__,
            python=platform.python_version(),
            implementation=platform.python_implementation(),
        ).set(1)
        self.poll_cycles = Counter(
            p + "poll_cycles", "Poll-and-push cycles by result.", ["result"], registry=r
        )
        self.last_successful_poll = Gauge(
            p + "last_successful_poll_timestamp_seconds",
            "Unix time of the last poll cycle that completed.",
            registry=r,
        )
        self.quantities_pushed = Counter(
            p + "quantities_pushed",
            "Inventory quantities Shopify acknowledged.",
            ["connection"],
            registry=r,
        )
        self.push_errors = _PushErrors(
            p + "push_errors",
            "Quantities Shopify rejected or that could not be pushed, by error code.",
            ["connection", "code"],
            registry=r,
        )
        self.stale_overwrites = Counter(
            p + "stale_overwrites",
            "Levels changed in Shopify since the last push (CHANGE_FROM_QUANTITY_STALE), "
            "re-read and overwritten with Katana's value.",
            ["connection"],
            registry=r,
        )
        self.sync_lag = Histogram(
            p + "sync_lag_seconds",
            "Katana change timestamp to Shopify acknowledgement.",
            ["connection"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            p + "api_requests",
            "HTTP requests to Katana and Shopify by status (HTTP code, or 'error').",
            ["api", "status"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            p + "api_request_duration_seconds",
            "Duration of HTTP requests to Katana and Shopify.",
            ["api"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self.api_throttled = Counter(
            p + "api_throttled",
            "Responses that said slow down (Katana 429, Shopify THROTTLED).",
            ["api"],
            registry=r,
        )
        self.katana_budget_used = Gauge(
            p + "katana_budget_used_ratio",
            "Share of katana.requests_per_minute taken over the last minute (0..1).",
            registry=r,
        )
        self.webhook_healthy = Gauge(
            p + "webhook_healthy",
            "1 while Katana webhook deliveries are trusted (the delta poll relaxes to "
            "webhooks.safety_poll_seconds), 0 otherwise or when webhooks are off.",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            p + "webhook_deliveries",
            "Katana webhook deliveries by result (accepted, duplicate, ignored, rejected).",
            ["result"],
            registry=r,
        )
        self.malformed_rows = Counter(
            p + "malformed_rows",
            "API rows skipped because they could not be parsed.",
            ["api", "resource"],
            registry=r,
        )
        self.dirty_variants = Gauge(
            p + "dirty_variants", "Variants waiting to be pushed (outbox size).", registry=r
        )
        self.mapped_variants = Gauge(
            p + "mapped_variants", "Katana variants mapped to Shopify.", ["connection"], registry=r
        )
        self.unmapped_variants = Gauge(
            p + "unmapped_variants",
            "Katana variants with no Shopify counterpart.",
            ["connection"],
            registry=r,
        )
        self.filtered_variants = Gauge(
            p + "filtered_variants",
            "Katana variants with Shopify counterparts that the connection's sync filters leave "
            "out (their Shopify levels are left as last pushed).",
            ["connection"],
            registry=r,
        )
        self.duplicate_skus = Gauge(
            p + "duplicate_skus",
            "SKUs shared by several variants on one side.",
            ["connection", "side"],
            registry=r,
        )
        self.untracked_items = Gauge(
            p + "untracked_items",
            "Mapped Shopify variants whose inventory is not tracked (skipped).",
            ["connection"],
            registry=r,
        )
        self.sync_enabled = Gauge(
            p + "sync_enabled",
            "1 when the connection's sync_inventory is on.",
            ["connection"],
            registry=r,
        )
        self.reconciliation_last_success = Gauge(
            p + "reconciliation_last_success_timestamp_seconds",
            "Unix time of the last reconciliation that completed.",
            registry=r,
        )
        self.reconciliation_drift = Counter(
            p + "reconciliation_drift",
            "Levels found different in Shopify by a full reconciliation and overwritten.",
            ["connection"],
            registry=r,
        )
        self.reconciliation_runs = Counter(
            p + "reconciliation_runs",
            "Reconciliation runs by result (missed = skipped by the scheduler).",
            ["result"],
            registry=r,
        )
        self.config_reloads = Counter(
            p + "config_reloads", "SIGHUP reloads by result.", ["result"], registry=r
        )
        self.held_connections = Gauge(
            p + "held_connections",
            "Connections whose pushes are held by the safety valve.",
            registry=r,
        )
        self.connection_held = Gauge(
            p + "connection_held",
            "1 while the safety valve holds this connection's pushes.",
            ["connection"],
            registry=r,
        )
        self.unreadable_variants = Gauge(
            p + "unreadable_variants",
            "Mapped variants whose Katana stock could not be read: not pushed, retried.",
            ["connection"],
            registry=r,
        )
        self.late_push_corrections = Counter(
            p + "late_push_corrections",
            "Levels read back after a push whose answer was lost, found wrong and corrected.",
            ["connection"],
            registry=r,
        )
        # Label-less families with a result label: pre-create both children so they show as 0.
        for result in ("success", "error"):
            self.poll_cycles.labels(result=result)
            self.config_reloads.labels(result=result)
            self.reconciliation_runs.labels(result=result)
        self.reconciliation_runs.labels(result="missed")
        for delivery in ("accepted", "duplicate", "ignored", "rejected"):
            self.webhook_deliveries.labels(result=delivery)
        for api in APIS:
            self.api_throttled.labels(api=api)
            self.api_request_duration.labels(api=api)
            for resource in MALFORMED_RESOURCES[api]:
                self.malformed_rows.labels(api=api, resource=resource)

    def dirty_variants_value(self) -> int:
        """The outbox size last exported."""
        return int(self.registry.get_sample_value("stocksync_dirty_variants") or 0)

    def requests_done(self) -> float:
        """How many API requests have completed so far, any API, any status (the watchdog's
        sign of work moving)."""
        return sum(
            sample.value
            for metric in self.api_requests.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def connection_started(self, connection: str) -> None:
        """Create a connection's labelled children so they export 0 before any sample."""
        self.quantities_pushed.labels(connection=connection)
        self.stale_overwrites.labels(connection=connection)
        self.reconciliation_drift.labels(connection=connection)
        self.connection_held.labels(connection=connection)
        self.unreadable_variants.labels(connection=connection)
        self.filtered_variants.labels(connection=connection)
        self.late_push_corrections.labels(connection=connection)
        self.sync_lag.labels(connection=connection)
        # The codes are a closed set (PUSH_ERROR_CODES): every child exists from the start, so
        # increase() sees a connection's first error of any kind.
        for code in sorted(PUSH_ERROR_CODES):
            self.push_errors.labels(connection=connection, code=code)
