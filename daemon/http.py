"""The daemon's HTTP face: /metrics for Prometheus, /healthz and /readyz for probes, webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client.aiohttp import make_aiohttp_handler
from structlog.typing import FilteringBoundLogger

from daemon.metrics import Metrics

WebhookHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Ready while the last successful poll is at most this many poll intervals old.
READY_INTERVALS = 3
# In-flight requests are tiny (a scrape, a webhook); do not hold shutdown for aiohttp's 60 s.
SHUTDOWN_TIMEOUT_SECONDS = 5.0

_access_log: FilteringBoundLogger = structlog.get_logger("aiohttp.access")


class Health:
    """Readiness state: when the last poll cycle succeeded, on a monotonic clock."""

    def __init__(
        self, poll_interval: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Mutable on purpose: a config reload may change the poll interval.
        self.poll_interval = poll_interval
        self.last_success: float | None = None
        self._clock = clock

    def mark_success(self) -> None:
        """Record that a poll cycle completed now."""
        self.last_success = self._clock()

    def ready(self) -> tuple[bool, str]:
        """Whether the daemon is ready, and a one-line reason for the probe's body."""
        if self.last_success is None:
            return False, "not ready: no successful poll yet"
        age = self._clock() - self.last_success
        limit = READY_INTERVALS * self.poll_interval
        if age > limit:
            return False, f"not ready: last successful poll {age:.0f} s ago (limit {limit:g} s)"
        return True, f"ready: last successful poll {age:.0f} s ago"


class DebugAccessLogger(AbstractAccessLogger):
    """Access lines at DEBUG: Prometheus scrapes every 15 s and would flood INFO."""

    @property
    def enabled(self) -> bool:
        """Skip building the line at all unless DEBUG is on for aiohttp.access."""
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log one request without its query string (it could carry a credential)."""
        _access_log.debug(
            "http_request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_seconds=round(time, 4),
        )


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(
    metrics: Metrics, health: Health, *, webhook: WebhookHandler | None = None
) -> web.Application:
    """The aiohttp application serving /metrics, /healthz, /readyz and, if given, the webhook."""

    async def readyz(_request: web.Request) -> web.Response:
        ready, reason = health.ready()
        return web.Response(status=200 if ready else 503, text=reason)

    app = web.Application()
    # make_aiohttp_handler negotiates the exposition format and gzip from the request headers.
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readyz)
    if webhook is not None:
        app.router.add_post("/webhooks/katana", webhook)
    return app


class ListenError(Exception):
    """The HTTP server could not bind its address."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {address}: {reason}")


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port; the caller owns the returned runner and its cleanup()."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=DebugAccessLogger,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(host, port, exc.strerror or str(exc)) from exc
    return runner
