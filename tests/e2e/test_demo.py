"""`stocksync demo` as a person runs it: readable status lines, a clean stop on SIGTERM that
takes the daemon child with it, and no folder left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
DEMO = [sys.executable, "-m", "daemon", "demo", "--variants", "20", "--events-per-second", "2"]


class Demo:
    """A running `stocksync demo`, its output read line by line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []

    def wait_for(self, pattern: str) -> re.Match[str]:
        """Read output until a line matches `pattern` (the demo must not exit first)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def stop(self, sig: signal.Signals) -> int:
        """Send `sig`, read the rest of the output, return the exit code."""
        self.process.send_signal(sig)
        rest, _ = self.process.communicate(timeout=STOP_TIMEOUT)
        self.lines.extend(rest.splitlines())
        return self.process.returncode


@contextmanager
def demo(*options: str) -> Iterator[Demo]:
    process = subprocess.Popen(
        [*DEMO, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield Demo(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped does not count: it has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_sigterm_stops_the_daemon_child_and_removes_the_demo_folder() -> None:
    with demo() as running:
        folder = Path(running.wait_for(r"demo folder:\s+(\S+)").group(1))
        pid = int(running.wait_for(r"daemon pid:\s+(\d+)").group(1))
        running.wait_for(r"^\[\s*\d+ s\] in sync")
        assert folder.is_dir()

        code = running.stop(signal.SIGTERM)

    assert code == 0, "\n".join(running.lines)
    assert not _alive(pid)
    assert not folder.exists()


def test_status_lines_stay_apart_from_log_lines_which_go_to_the_kept_log_file_in_budget() -> None:
    with demo("--keep") as running:
        folder = Path(running.wait_for(r"demo folder:\s+(\S+)").group(1))
        running.wait_for(r"^\[\s*\d+ s\] in sync")
        running.wait_for(r"^\[\s*\d+ s\] in sync")

        code = running.stop(signal.SIGINT)

    try:
        assert code == 0, "\n".join(running.lines)
        # The daemon logs several lines a cycle: none of them reached the demo's output.
        assert not [line for line in running.lines if "[info" in line or "daemon_started" in line]
        log = (folder / "daemon.log").read_text()
        assert "daemon_started" in log
        # The simulated Katana's budget lets cycles keep to the demo's poll interval.
        assert "poll_interval_below_katana_budget" not in log
        assert "kept" in running.lines[-1]
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
        folder.rmdir()


def test_verbose_shows_the_daemon_log_lines_too() -> None:
    with demo("--verbose") as running:
        running.wait_for(r"daemon_started")

        assert running.stop(signal.SIGTERM) == 0


def test_too_small_a_catalogue_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--variants", "5"],
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
        env={**os.environ},
        check=False,
    )

    assert result.returncode == 2
    assert "--variants: must be at least 20" in result.stderr
    assert "Traceback" not in result.stderr
