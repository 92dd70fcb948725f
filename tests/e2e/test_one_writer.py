"""One process writes a state file (PRODUCT.md §3): real processes on one state file."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.statelock import lock_path
from tests.e2e.conftest import DaemonProcess, World, free_port

pytestmark = pytest.mark.e2e

COMMAND_TIMEOUT = 60.0


@dataclass
class Run:
    code: int
    out: str
    err: str


async def stocksync(world: World, *args: str, config: Path | None = None) -> Run:
    """`python -m daemon ARGS -c CONFIG` with the world's secrets, to completion."""
    env = _env(world)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        *args,
        "-c",
        str(config or world.config_path),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=COMMAND_TIMEOUT)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def _env(world: World) -> dict[str, str]:
    """The environment the world's daemons get: its secrets, no service-manager variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env.update(world.scenario.secrets_env())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def second_config(world: World) -> Path:
    """The world's config with another HTTP port: only the state file is shared."""
    text = world.config_path.read_text(encoding="utf-8")
    other = text.replace(f"127.0.0.1:{world.http_port}", f"127.0.0.1:{free_port()}")
    assert other != text
    path = world.folder / "second.toml"
    path.write_text(other, encoding="utf-8")
    return path


async def test_a_second_daemon_on_the_same_state_file_refuses_naming_it_and_the_holder(
    world: World,
) -> None:
    first = await world.start_daemon()
    await first.wait_ready()

    second = DaemonProcess(
        second_config(world), _env(world), free_port(), world.folder / "second.log"
    )
    world.daemons.append(second)
    await second.start()
    code = await second.wait_exit(within=COMMAND_TIMEOUT)

    assert code == 1
    said = second.log_tail()
    assert str(world.state_path) in said
    assert f"pid {first.pid}" in said
    assert "daemon_started" not in second.log_events()  # refused before opening anything
    assert first.returncode is None
    world.apply_events(10)
    await world.converged(first)


@pytest.mark.parametrize("command", ["sync-once", "reconcile"])
async def test_a_writing_command_beside_a_running_daemon_refuses_naming_the_file_and_the_holder(
    world: World, command: str
) -> None:
    daemon = await world.start_daemon()
    await daemon.wait_ready()

    run = await stocksync(world, command)

    assert run.code == 1, run.out + run.err
    assert str(world.state_path) in run.err
    assert f"pid {daemon.pid}" in run.err
    assert run.out == ""  # refused before any work: no table, no report
    assert daemon.returncode is None


@pytest.mark.parametrize(
    "args",
    [["plan"], ["mappings"], ["reconcile", "--dry-run"], ["history", "SKU-0001"]],
    ids=["plan", "mappings", "reconcile-dry-run", "history"],
)
async def test_read_only_commands_work_beside_a_running_daemon(
    world: World, args: list[str]
) -> None:
    daemon = await world.start_daemon()
    await daemon.wait_ready()

    run = await stocksync(world, *args)

    assert run.code == 0, run.out + run.err
    assert daemon.returncode is None


async def test_release_hold_works_beside_a_running_daemon(world: World) -> None:
    # By design (daemon/statelock.py): the daemon reads the holds at every cycle.
    daemon = await world.start_daemon()
    await daemon.wait_ready()

    run = await stocksync(world, "release-hold", world.connection)

    assert run.code == 0, run.out + run.err
    assert "was not held" in run.out


async def test_the_writer_lock_ends_with_its_process_even_when_killed(world: World) -> None:
    daemon = await world.start_daemon()
    await daemon.wait_ready()
    await daemon.kill()  # SIGKILL: no clean-up ran

    run = await stocksync(world, "sync-once")

    assert run.code == 0, run.out + run.err
    assert lock_path(world.state_path).exists()
