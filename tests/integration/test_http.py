"""The HTTP app through a real aiohttp server and client."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from daemon.http import Health, ListenError, RepeatedLogFilter, build_app, start_http
from daemon.logs import configure_logging
from daemon.metrics import Metrics

POLL_INTERVAL = 30.0
REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def health(clock: FakeClock) -> Health:
    return Health(POLL_INTERVAL, clock=clock)


@pytest.fixture
async def client(
    metrics: Metrics, health: Health
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(build_app(metrics, health))) as test_client:
        yield test_client


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    apscheduler = logging.getLogger("apscheduler")
    apscheduler_level = apscheduler.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    apscheduler.setLevel(apscheduler_level)
    structlog.reset_defaults()


def exposed_name(family_name: str, family_type: str) -> str:
    # The text format names a counter's family after its _total sample.
    return family_name + "_total" if family_type == "counter" else family_name


async def test_metrics_exports_every_family_before_any_sample(
    client: TestClient[web.Request, web.Application], metrics: Metrics
) -> None:
    response = await client.get("/metrics")
    text = await response.text()

    assert response.status == 200
    assert response.content_type == "text/plain"
    parsed = {family.name for family in text_string_to_metric_families(text)}
    declared = [
        family
        for attribute in vars(metrics).values()
        if isinstance(attribute, MetricWrapperBase)
        for family in attribute.describe()
    ]
    assert len(declared) >= 20
    for family in declared:
        name = exposed_name(family.name, family.type)
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} {family.type}\n" in text
        assert family.name in parsed


async def test_metrics_reflect_pushed_values(
    client: TestClient[web.Request, web.Application], metrics: Metrics
) -> None:
    metrics.quantities_pushed.labels(connection="eu").inc(7)

    text = await (await client.get("/metrics")).text()

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("stocksync_quantities_pushed_total", (("connection", "eu"),))] == 7.0


async def test_metrics_are_gzipped_when_the_scraper_accepts_gzip(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})

    assert response.headers["Content-Encoding"] == "gzip"
    assert "stocksync_poll_cycles_total" in await response.text()


async def test_metrics_speak_openmetrics_when_asked(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})

    assert response.content_type == "application/openmetrics-text"
    assert (await response.text()).rstrip().endswith("# EOF")


async def test_healthz_is_ok_while_the_process_runs(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.text() == "ok"


async def test_readyz_is_503_until_the_first_successful_poll(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/readyz")

    assert response.status == 503
    assert await response.text() == "not ready: no successful poll yet"


async def test_readyz_is_200_up_to_three_poll_intervals_after_a_successful_poll(
    client: TestClient[web.Request, web.Application], health: Health, clock: FakeClock
) -> None:
    health.mark_success()
    clock.now += 3 * POLL_INTERVAL

    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.text() == "ready: last successful poll 90 s ago"


async def test_readyz_is_503_when_the_last_successful_poll_is_older_than_three_intervals(
    client: TestClient[web.Request, web.Application], health: Health, clock: FakeClock
) -> None:
    health.mark_success()
    clock.now += 95

    response = await client.get("/readyz")

    assert response.status == 503
    assert await response.text() == "not ready: last successful poll 95 s ago (limit 90 s)"


async def test_readyz_recovers_with_the_next_successful_poll(
    client: TestClient[web.Request, web.Application], health: Health, clock: FakeClock
) -> None:
    health.mark_success()
    clock.now += 200
    assert (await client.get("/readyz")).status == 503

    health.mark_success()

    assert (await client.get("/readyz")).status == 200


async def test_readyz_follows_a_reloaded_poll_interval(clock: FakeClock) -> None:
    interval = [POLL_INTERVAL]
    health = Health(lambda: interval[0], clock=clock)
    health.mark_success()
    clock.now += 60
    interval[0] = 10.0  # the reload swapped the settings: readiness reads the new interval

    async with TestClient(TestServer(build_app(Metrics(process=False), health))) as client:
        response = await client.get("/readyz")

        assert response.status == 503
        assert await response.text() == "not ready: last successful poll 60 s ago (limit 30 s)"


async def test_katana_webhook_is_404_without_a_handler(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/webhooks/katana", data=b"{}")

    assert response.status == 404


async def test_katana_webhook_is_routed_to_the_handler_when_given(
    metrics: Metrics, health: Health
) -> None:
    bodies: list[bytes] = []

    async def webhook(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        return web.Response(status=202)

    app = build_app(metrics, health, webhook=webhook)
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.post("/webhooks/katana", data=b'{"action":"x"}')
        wrong_method = await test_client.get("/webhooks/katana")

    assert response.status == 202
    assert bodies == [b'{"action":"x"}']
    assert wrong_method.status == 405


async def test_start_http_serves_the_app_on_the_given_address(
    metrics: Metrics, health: Health
) -> None:
    runner = await start_http(build_app(metrics, health), "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/healthz") as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()


async def test_start_http_names_the_address_it_cannot_bind(
    metrics: Metrics, health: Health
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ListenError, match=f"127.0.0.1:{port}"):
            await start_http(build_app(metrics, health), "127.0.0.1", port)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("level", "lines"), [(logging.INFO, 0), (logging.DEBUG, 1)])
async def test_access_lines_are_logged_only_at_debug(
    metrics: Metrics, health: Health, level: int, lines: int
) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out, level=level)
    runner = await start_http(build_app(metrics, health), "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/metrics?key=abc") as response,
        ):
            await response.read()
    finally:
        await runner.cleanup()

    access = [
        json.loads(line)
        for line in out.getvalue().splitlines()
        if json.loads(line)["event"] == "http_request"
    ]
    assert len(access) == lines
    for entry in access:
        assert entry["level"] == "debug"
        assert entry["path"] == "/metrics"
        assert entry["status"] == 200


async def _open_partial(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent only the start of a request's headers."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    return reader, writer


async def test_a_request_whose_headers_never_complete_is_closed_at_the_header_timeout(
    metrics: Metrics, health: Health
) -> None:
    runner = await start_http(build_app(metrics, health), "127.0.0.1", 0, header_timeout=0.3)
    try:
        host, port = runner.addresses[0][:2]
        reader, writer = await _open_partial(host, port)
        # The server gives up on the request by itself: the read ends with EOF, not a reply.
        assert await asyncio.wait_for(reader.read(), timeout=20) == b""
        writer.close()
    finally:
        await runner.cleanup()


async def test_connections_beyond_the_cap_are_closed_at_once_and_the_others_served(
    metrics: Metrics, health: Health
) -> None:
    runner = await start_http(build_app(metrics, health), "127.0.0.1", 0, max_connections=3)
    try:
        host, port = runner.addresses[0][:2]
        held = [await _open_partial(host, port) for _ in range(3)]
        extra_reader, extra_writer = await _open_partial(host, port)
        assert await asyncio.wait_for(extra_reader.read(), timeout=20) == b""
        extra_writer.close()
        for reader, writer in held:
            writer.write(b"Connection: close\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=20)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:60]
            writer.close()
    finally:
        await runner.cleanup()


def test_a_repeated_accept_error_is_logged_once_per_window_then_counted() -> None:
    now = [100.0]
    log_filter = RepeatedLogFilter(("socket.accept() out of",), 60.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    passed = [
        log_filter.filter(record("socket.accept() out of system resource")) for _ in range(500)
    ]
    other = log_filter.filter(record("Task exception was never retrieved"))
    now[0] += 61
    after = record("socket.accept() out of system resource")

    assert passed.count(True) == 1
    assert other
    assert log_filter.filter(after)
    assert "499 more like this" in after.getMessage()


SERVER_AT_THE_FILE_LIMIT = """
import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
from daemon.http import Health, build_app, start_http
from daemon.logs import configure_logging
from daemon.metrics import Metrics

async def main() -> None:
    configure_logging("json", stream=sys.stderr)
    runner = await start_http(
        build_app(Metrics(process=False), Health(30)), "127.0.0.1", 0, max_connections=1000
    )
    print(runner.addresses[0][1], flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    await runner.cleanup()

asyncio.run(main())
"""


async def test_a_server_out_of_file_descriptors_logs_the_accept_error_once(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER_AT_THE_FILE_LIMIT, encoding="utf-8")
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            "3",
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            cwd=REPO,
        )
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        # Far more connections than the 48 descriptors the server may open.
        writers = []
        for _ in range(120):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        for writer in writers:
            writer.close()

    lines = log_path.read_text(encoding="utf-8").splitlines()
    accept_errors = [line for line in lines if "socket.accept() out of system resource" in line]
    assert 1 <= len(accept_errors) <= 2, f"{len(accept_errors)} lines, {len(lines)} in all"
