"""The real `stocksync run` process against the simulators, served from the test's own loop.

Each test gets a fresh seeded world: a KatanaSim and a ShopifySim on loopback (they keep
answering while the test awaits, because the daemon is an asyncio subprocess), a scenario with
its oracle (`Scenario.expected_levels`), and a config written for them. `DaemonProcess` starts,
probes, scrapes, signals and always kills the daemon; its log tail is printed at teardown, so a
failing test shows what the daemon was doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from daemon.domain.models import LevelKey
from daemon.sim.harness import SimulatorUrls, run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.scenario import EventStream, Scenario, build_catalogue
from daemon.sim.shopify import ShopifySim

# Katana's real budget (60/min) would stretch every cycle to seconds; the simulated account and
# the config allow far more so that a test sees many cycles in a few seconds.
REQUESTS_PER_MINUTE = 6000
CATALOGUE_VARIANTS = 60
POLL_INTERVAL_SECONDS = 1  # the smallest the config accepts
CATALOGUE_SEED = 3
# Generous bounds: a loaded 2-core CI box may start Python slowly, and a wait ends as soon as
# its condition holds, so a large timeout costs nothing when things work.
START_TIMEOUT = 20.0
CONVERGE_TIMEOUT = 20.0
LOG_TAIL_LINES = 60
POLL_EVERY = 0.1

Predicate = Callable[[], bool | Awaitable[bool]]


# --------------------------------------------------------------------------------------------
# Waiting


async def wait_until(
    predicate: Predicate,
    *,
    within: float,
    what: str,
    explain: Callable[[], str] | None = None,
    daemon: DaemonProcess | None = None,
) -> None:
    """Poll `predicate` every 0.1 s until it holds; fail naming `what` and `explain()` if not.

    With `daemon`, fail at once (with its exit code) if that process exits meanwhile.
    """
    deadline = time.monotonic() + within
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if daemon is not None and daemon.returncode is not None:
            pytest.fail(f"the daemon exited with code {daemon.returncode} while waiting for {what}")
        if time.monotonic() >= deadline:
            detail = f": {explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {within:g} s waiting for {what}{detail}")
        await asyncio.sleep(POLL_EVERY)


def free_port() -> int:
    """A TCP port nobody listens on right now (the daemon binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class Scrape:
    """One parsed /metrics answer."""

    families: Mapping[str, str]  # family name (counters without _total) -> metric type
    samples: tuple[tuple[str, Mapping[str, str], float], ...]

    def value(self, name: str, default: float | None = None, **labels: str) -> float:
        """The sum of `name`'s samples carrying `labels`; `default` (or a failure) if none."""
        found = [
            v
            for sample, sample_labels, v in self.samples
            if sample == name and all(sample_labels.get(k) == x for k, x in labels.items())
        ]
        if found:
            return sum(found)
        if default is not None:
            return default
        pytest.fail(f"/metrics has no sample {name}{labels or ''}")

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """Parse the Prometheus text exposition format."""
        families: dict[str, str] = {}
        samples: list[tuple[str, Mapping[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            samples.extend((s.name, dict(s.labels), s.value) for s in family.samples)
        return cls(families=families, samples=tuple(samples))


# --------------------------------------------------------------------------------------------
# sd_notify


class NotifyListener:
    """The service manager's end of NOTIFY_SOCKET: a bound unix datagram socket."""

    def __init__(self, folder: Path) -> None:
        path = folder / "notify.sock"
        self._own_folder: Path | None = None
        if len(os.fsencode(path)) >= 100:  # sun_path holds 108 bytes
            self._own_folder = Path(tempfile.mkdtemp(prefix="stocksync-notify-"))
            path = self._own_folder / "notify.sock"
        self.path = path
        self.messages: list[tuple[float, str]] = []  # (monotonic time received, datagram)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setblocking(False)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Receive datagrams in the background until close()."""
        self._task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, 4096)
            self.messages.append((time.monotonic(), data.decode()))

    def assignments(self) -> list[list[str]]:
        """Each datagram received so far, split into its KEY=VALUE lines."""
        return [text.split("\n") for _, text in self.messages]

    def index_of(self, line: str, after: int = 0) -> int | None:
        """The index of the first datagram from `after` on that carries `line`."""
        for n, lines in enumerate(self.assignments()[after:], start=after):
            if line in lines:
                return n
        return None

    async def close(self) -> None:
        """Stop receiving and remove the socket file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
        self.path.unlink(missing_ok=True)
        if self._own_folder is not None:
            self._own_folder.rmdir()


# --------------------------------------------------------------------------------------------
# The daemon process


class DaemonProcess:
    """One `python -m daemon run -c CONFIG` child process, observed from the outside."""

    def __init__(
        self, config: Path, env: Mapping[str, str], http_port: int, log_path: Path
    ) -> None:
        self.config = config
        self.env = dict(env)
        self.http_port = http_port
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """The daemon's HTTP listen address."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        """The process id (started processes only)."""
        assert self.process is not None, "the daemon was not started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while it runs (or before it started)."""
        return None if self.process is None else self.process.returncode

    async def start(self) -> None:
        """Spawn the daemon; stdout and stderr go to the log file (appended)."""
        assert self.process is None, "a DaemonProcess is started once"
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            "-c",
            str(self.config),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: a Ctrl-C aimed at pytest does not reach it; teardown kills it.
            start_new_session=True,
        )
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def get(self, path: str) -> tuple[int, str] | None:
        """GET one of the daemon's endpoints: (status, body), or None if nobody answers."""
        assert self._session is not None, "the daemon was not started"
        try:
            async with self._session.get(self.base_url + path) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def status(self, path: str) -> int | None:
        """The HTTP status of one endpoint, or None when it does not answer."""
        answer = await self.get(path)
        return None if answer is None else answer[0]

    async def wait_ready(self, within: float = START_TIMEOUT) -> None:
        """Wait until /readyz answers 200 (the first cycle succeeded)."""

        async def ready() -> bool:
            return await self.status("/readyz") == 200

        await wait_until(ready, within=within, what="/readyz 200", daemon=self)

    async def try_scrape(self) -> Scrape | None:
        """Fetch and parse /metrics; None while nobody answers (starting, or gone)."""
        answer = await self.get("/metrics")
        if answer is None:
            return None
        if answer[0] != 200:
            pytest.fail(f"/metrics answered HTTP {answer[0]}: {answer[1][:200]}")
        return Scrape.parse(answer[1])

    async def scrape(self) -> Scrape:
        """Fetch and parse /metrics, which must answer."""
        scrape = await self.try_scrape()
        if scrape is None:
            pytest.fail(f"/metrics did not answer (daemon exit code: {self.returncode})")
        return scrape

    async def metric(self, name: str, default: float | None = None, **labels: str) -> float:
        """One value from a fresh scrape (see Scrape.value)."""
        return (await self.scrape()).value(name, default, **labels)

    async def wait_metric(
        self,
        name: str,
        condition: Callable[[float], bool],
        *,
        within: float = CONVERGE_TIMEOUT,
        what: str,
        **labels: str,
    ) -> float:
        """Wait until `condition(value)` holds for a metric (absent counts as 0); the value."""
        seen: list[float] = []

        async def holds() -> bool:
            scrape = await self.try_scrape()
            if scrape is None:
                return False
            seen.append(scrape.value(name, 0.0, **labels))
            return condition(seen[-1])

        await wait_until(
            holds,
            within=within,
            what=what,
            explain=lambda: f"last value {seen[-1:]}",
            daemon=self,
        )
        return seen[-1]

    def send_signal(self, signum: signal.Signals) -> None:
        """Deliver a signal to the daemon."""
        assert self.process is not None, "the daemon was not started"
        self.process.send_signal(signum)

    async def wait_exit(self, within: float) -> int:
        """The exit code; fails if the process is still running after `within` seconds."""
        assert self.process is not None, "the daemon was not started"
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=within)
        except TimeoutError:
            pytest.fail(f"the daemon did not exit within {within:g} s")

    async def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()

    async def close(self) -> None:
        """Kill, reap and release everything this helper opened."""
        await self.kill()
        if self._session is not None:
            await self._session.close()
        if self._log is not None:
            self._log.close()

    def log_events(self) -> list[str]:
        """The `event` names of every JSON log line so far, in order."""
        if not self.log_path.exists():
            return []
        events = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a traceback or a line cut short by SIGKILL
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                events.append(entry["event"])
        return events

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the daemon printed."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Shopify answers that can be held back


class HoldableShopifySim(ShopifySim):
    """A ShopifySim whose inventorySetQuantities answers can be held back after it applied them.

    Models the answer being lost in transit: Shopify changed the level, the daemon never heard.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold_set_answers = False
        self.answer_held = asyncio.Event()
        self._release = asyncio.Event()

    def release(self) -> None:
        """Let every held answer go (to whoever is still listening)."""
        self.hold_set_answers = False
        self._release.set()

    def app(self) -> web.Application:
        """The simulator's application, with the holding middleware in front."""
        application = super().app()

        @web.middleware
        async def hold(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            before = self.mutation_calls["inventorySetQuantities"]
            response = await handler(request)
            if self.hold_set_answers and self.mutation_calls["inventorySetQuantities"] > before:
                self.answer_held.set()
                await self._release.wait()
            return response

        application.middlewares.append(hold)
        return application


# --------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    """Simulated Katana and Shopify on loopback, a scenario over them, and daemon launchers."""

    katana: KatanaSim
    shop: HoldableShopifySim
    scenario: Scenario
    urls: SimulatorUrls
    folder: Path
    http_port: int
    events: EventStream
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def connection(self) -> str:
        """The scenario's only connection name."""
        return self.scenario.connections[0].name

    @property
    def state_path(self) -> Path:
        """The daemon's SQLite state (kept across restarts within a test)."""
        return self.folder / "state" / "state.db"

    def write_config(
        self,
        *,
        sync_inventory: bool = True,
        shutdown_timeout_seconds: float | None = None,
        late_push_seconds: float | None = None,
    ) -> Path:
        """Write (or rewrite) stocksync.toml for this world; its path."""
        path = self.scenario.write_config(
            self.folder,
            katana_url=self.urls.katana,
            shopify_urls=self.urls.shopify[0],
            state_path=self.state_path,
            http_port=self.http_port,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
            sync_inventory=sync_inventory,
            log_format="json",
            late_push_seconds=late_push_seconds,
        )
        if shutdown_timeout_seconds is not None:
            # write_config has no parameter for it: add the key to the [daemon] table.
            text = path.read_text(encoding="utf-8")
            line = f"shutdown_timeout_seconds = {shutdown_timeout_seconds!r}"
            path.write_text(text.replace("[daemon]\n", f"[daemon]\n{line}\n", 1), encoding="utf-8")
        return path

    @property
    def config_path(self) -> Path:
        """Where write_config puts the TOML file."""
        return self.folder / "stocksync.toml"

    async def start_daemon(self, extra_env: Mapping[str, str] | None = None) -> DaemonProcess:
        """Start `stocksync run` on the current config (written first if missing)."""
        if not self.config_path.exists():
            self.write_config()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        env.update(self.scenario.secrets_env())
        env["PYTHONUNBUFFERED"] = "1"  # a SIGKILLed daemon's last lines still reach the log
        env.update(extra_env or {})
        daemon = DaemonProcess(
            self.config_path, env, self.http_port, self.folder / f"daemon-{len(self.daemons)}.log"
        )
        self.daemons.append(daemon)
        await daemon.start()
        return daemon

    def level(self, key: LevelKey) -> int:
        """Shopify's available at a stocked (item, location)."""
        available = self.shop.available(*key)
        assert available is not None, f"{key} is not stocked"
        return available

    def differences(self) -> list[tuple[LevelKey, int, int | None]]:
        """(level, expected, Shopify's) for every level where Shopify differs from the oracle."""
        expected = self.scenario.expected_levels()
        return [
            (key, qty, self.shop.available(*key))
            for key, qty in sorted(expected.items())
            if self.shop.available(*key) != qty
        ]

    def explain_differences(self) -> str:
        """A readable summary of the levels that differ."""
        diffs = self.differences()
        shown = ", ".join(
            f"{item}@{loc}: want {want}, Shopify {got}" for (item, loc), want, got in diffs[:8]
        )
        more = f" (+{len(diffs) - 8} more)" if len(diffs) > 8 else ""
        return (
            f"{len(diffs)} of {len(self.scenario.expected_levels())} levels differ: {shown}{more}"
        )

    async def converged(self, daemon: DaemonProcess, within: float = CONVERGE_TIMEOUT) -> None:
        """Wait until every level Shopify should show equals Katana's formula (the oracle)."""
        await wait_until(
            lambda: not self.differences(),
            within=within,
            what="Shopify to equal the oracle",
            explain=self.explain_differences,
            daemon=daemon,
        )

    def apply_events(self, count: int) -> None:
        """Apply `count` business events at once."""
        for _ in range(count):
            self.events.step()

    async def apply_events_over(self, count: int, seconds: float) -> None:
        """Apply `count` business events spread over `seconds` (so they span several cycles)."""
        for _ in range(count):
            self.events.step()
            await asyncio.sleep(seconds / count)

    def set_calls(self) -> int:
        """inventorySetQuantities calls Shopify has executed so far."""
        return self.shop.mutation_calls["inventorySetQuantities"]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A fresh seeded world; every daemon started in it is killed at teardown."""
    katana = KatanaSim(requests_per_minute=REQUESTS_PER_MINUTE)
    shop = HoldableShopifySim()
    scenario = build_catalogue(katana, shop, variants=CATALOGUE_VARIANTS, seed=CATALOGUE_SEED)
    async with run_simulators(katana, shop) as urls:
        w = World(
            katana=katana,
            shop=shop,
            scenario=scenario,
            urls=urls,
            folder=tmp_path,
            http_port=free_port(),
            events=EventStream(scenario, seed=CATALOGUE_SEED),
        )
        try:
            yield w
        finally:
            shop.release()
            for daemon in w.daemons:
                await daemon.close()
            # Shown by pytest only when the test failed; the last daemons are the telling ones.
            for daemon in w.daemons[-3:]:
                print(f"---- {daemon.log_path.name} (last {LOG_TAIL_LINES} lines) ----")
                print(daemon.log_tail())


@pytest.fixture
async def notify_listener(tmp_path: Path) -> AsyncIterator[NotifyListener]:
    """A bound NOTIFY_SOCKET receiving in the background."""
    listener = NotifyListener(tmp_path)
    listener.start()
    try:
        yield listener
    finally:
        await listener.close()


@pytest.fixture
def rng_seed() -> int:
    """The seed for tests that draw random kill points (printed so a failure can be replayed)."""
    seed = int(os.environ.get("STOCKSYNC_E2E_SEED", "20261126"))
    print(f"STOCKSYNC_E2E_SEED={seed}")
    return seed
