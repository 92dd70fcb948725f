"""The daemon's HTTP face: /metrics for Prometheus, /healthz and /readyz for probes, webhooks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client.aiohttp import make_aiohttp_handler
from structlog.typing import FilteringBoundLogger

from daemon.metrics import Metrics
from daemon.status.routes import StatusRoutes

WebhookHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Ready while the last successful poll is at most this many poll intervals old.
READY_INTERVALS = 3
# In-flight requests are tiny (a scrape, a webhook); do not hold shutdown for aiohttp's 60 s.
SHUTDOWN_TIMEOUT_SECONDS = 5.0
# A request's headers must be complete this long after the connection opened (or after the
# previous answer on a kept-alive one); aiohttp's default is an hour, so a slow or stalled client
# held its connection, and a file descriptor, practically forever.
HEADER_TIMEOUT_SECONDS = 10.0
# Prometheus and Katana's webhook deliveries need a handful of connections at once; beyond this
# a new connection is closed as soon as it is accepted, so clients can never use up the
# process's file descriptors (which SQLite and the API clients need too).
MAX_CONNECTIONS = 64
# asyncio logs a failed accept (out of file descriptors) once per pending connection per loop
# tick, traceback included: hundreds of megabytes a minute. One such line per window is enough.
REPEATED_LOG_WINDOW_SECONDS = 60.0
RATE_LIMITED_MESSAGES = ("socket.accept() out of system resource",)

_access_log: FilteringBoundLogger = structlog.get_logger("aiohttp.access")
_http_log: FilteringBoundLogger = structlog.get_logger(__name__)


class Health:
    """Readiness state: when the last poll cycle succeeded, on a monotonic clock."""

    def __init__(
        self,
        poll_interval: float | Callable[[], float],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Read when asked: a config reload may change the poll interval.
        self._poll_interval = poll_interval
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
        interval = self._poll_interval
        limit = READY_INTERVALS * (interval() if callable(interval) else interval)
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
    metrics: Metrics,
    health: Health,
    *,
    webhook: WebhookHandler | None = None,
    status: StatusRoutes | None = None,
) -> web.Application:
    """The aiohttp application serving /metrics, /healthz, /readyz and, if given, the webhook
    and the status page (/, /status, /status.json)."""

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
    if status is not None:
        status.add_to(app)
    return app


class ListenError(Exception):
    """The HTTP server could not bind its address."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {address}: {reason}")


class RepeatedLogFilter(logging.Filter):
    """Lets through one record per window for each listed message; the next says how many
    were dropped meanwhile."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        window: float = REPEATED_LOG_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window = window
        self._clock = clock
        self._until: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a listed message already logged within the window."""
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        now = self._clock()
        if now < self._until.get(prefix, float("-inf")):
            self._dropped[prefix] = self._dropped.get(prefix, 0) + 1
            return False
        self._until[prefix] = now + self.window
        dropped = self._dropped.pop(prefix, 0)
        if dropped:
            record.msg = f"{message}\n({dropped} more like this not logged in {self.window:g} s)"
            record.args = None
        return True


def rate_limit_accept_errors() -> None:
    """Install the RepeatedLogFilter on asyncio's logger (once per process)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, RepeatedLogFilter) for f in logger.filters):
        logger.addFilter(RepeatedLogFilter(RATE_LIMITED_MESSAGES))


class _Refused(asyncio.Protocol):
    """A connection over MAX_CONNECTIONS: closed at once, before anything is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _CappedSite(web.TCPSite):
    """A TCPSite that accepts at most `max_connections` open connections at a time."""

    __slots__ = ("_max_connections",)

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int) -> None:
        super().__init__(runner, host, port)
        self._max_connections = max_connections

    async def start(self) -> None:
        """Bind like TCPSite, with a protocol factory that refuses connections over the cap."""
        # BaseSite.start registers the site with its runner; TCPSite.start would bind with the
        # runner's own factory, which accepts without limit.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        refused = 0

        def protocol() -> asyncio.Protocol:
            nonlocal refused
            if len(server.connections) < self._max_connections:
                return server()
            refused += 1
            if refused == 1 or refused % 1000 == 0:
                _http_log.warning(
                    "http_connection_refused",
                    reason=f"{self._max_connections} connections already open",
                    refused_so_far=refused,
                )
            return _Refused()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> web.AppRunner:
    """Serve `app` on host:port; the caller owns the returned runner and its cleanup()."""
    rate_limit_accept_errors()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=DebugAccessLogger,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        # aiohttp closes a connection still waiting for a request's headers at this timeout.
        keepalive_timeout=header_timeout,
    )
    await runner.setup()
    site = _CappedSite(runner, host, port, max_connections)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(host, port, exc.strerror or str(exc)) from exc
    return runner
