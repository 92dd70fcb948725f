"""The real daemon as a child process: start it, read its /metrics and /proc, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

CYCLES = "stocksync_poll_cycles_total"
# How often the bench reads /metrics while it waits for cycles: well under a poll interval.
SCRAPE_EVERY = 0.1
STOP_TIMEOUT = 20.0


class BenchError(RuntimeError):
    """The benchmark could not produce a figure (the daemon died, a phase timed out...)."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess:
    """`python -m daemon run -c CONFIG`, exactly as systemd starts it, logging into a file."""

    def __init__(
        self,
        config: Path,
        env: Mapping[str, str],
        http_port: int,
        log_path: Path,
        *,
        profile_path: Path | None = None,
    ) -> None:
        self.config = config
        self.env = dict(env)
        self.metrics_url = f"http://127.0.0.1:{http_port}/metrics"
        self.log_path = log_path
        self.profile_path = profile_path
        self.started_at = 0.0
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DaemonProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        if self._process is None:
            raise BenchError("the daemon is not running")
        return self._process.pid

    async def start(self) -> float:
        """Spawn the daemon; returns time.monotonic() just before the spawn."""
        command = [sys.executable]
        if self.profile_path is not None:
            # cProfile writes its file when the daemon exits normally (SIGTERM drains and exits).
            command += ["-m", "cProfile", "-o", str(self.profile_path)]
        command += ["-m", "daemon", "run", "-c", str(self.config)]
        log = self.log_path.open("ab")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self.started_at = time.monotonic()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own process group: a Ctrl-C of the bench reaches the bench, which stops it.
                start_new_session=True,
            )
        finally:
            log.close()
        return self.started_at

    async def stop(self) -> None:
        """SIGTERM, wait for the drain, SIGKILL if it hangs."""
        process, self._process = self._process, None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def scrape(self) -> dict[str, float]:
        """Every sample of /metrics, labels folded into the name; empty while it is not up."""
        if self._session is None:
            return {}
        try:
            async with self._session.get(self.metrics_url) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                name = f"{sample.name}{{{labels}}}" if labels else sample.name
                samples[name] = sample.value
        return samples

    async def cycles(self) -> tuple[int, int]:
        """(successful, failed) poll cycles so far."""
        samples = await self.scrape()
        return (
            int(samples.get(f"{CYCLES}{{result=success}}", 0)),
            int(samples.get(f"{CYCLES}{{result=error}}", 0)),
        )

    async def wait_cycles(self, count: int, within: float) -> float:
        """Wait until `count` cycles (either result) have ended; time.monotonic() when seen."""
        deadline = time.monotonic() + within
        while True:
            self._check_alive()
            ok, failed = await self.cycles()
            now = time.monotonic()
            if ok + failed >= count:
                return now
            if now > deadline:
                raise BenchError(
                    f"the daemon ended {ok + failed} of {count} cycles within {within:.0f} s "
                    f"(log: {self.log_path})"
                )
            await asyncio.sleep(SCRAPE_EVERY)

    async def total_cycles(self) -> int:
        """Cycles ended so far, whatever their result."""
        ok, failed = await self.cycles()
        return ok + failed

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set size (VmHWM) as the kernel counted it."""
        return self._status_kib("VmHWM") * 1024

    def rss_bytes(self) -> int:
        """The process's resident set size now (VmRSS)."""
        return self._status_kib("VmRSS") * 1024

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the daemon logged (for error messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _status_kib(self, field: str) -> int:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        except OSError as exc:
            raise BenchError(f"cannot read the daemon's /proc status: {exc}") from exc
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
        raise BenchError(f"/proc/{self.pid}/status has no {field}")

    def _check_alive(self) -> None:
        if self._process is None:
            raise BenchError("the daemon is not running")
        if self._process.returncode is not None:
            raise BenchError(
                f"the daemon exited with code {self._process.returncode}; last log lines:\n"
                + self.log_tail()
            )
