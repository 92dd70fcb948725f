"""The daemon's main loop with webhooks (issue 17): a delivery during a cycle is not lost, hints
become targeted cycles, and the safety-net poll relaxes while deliveries are trusted.

The Daemon runs with a fake engine (only `cycle` and `settings`); no timing is asserted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import Settings, load_settings
from daemon.service import Daemon
from daemon.sync.report import CycleReport
from daemon.webhooks import Hint
from tests.unit.test_config import ENV, config_text, write

HINT = Hint("sales_order", "sales_order.created", "7")


def settings(tmp_path: Path, *, webhooks: bool = True) -> Settings:
    text = config_text(
        daemon="poll_interval_seconds = 3600",
        webhooks=(
            'enabled = true\ntoken_env = "HOOK"\nsafety_poll_seconds = 7200' if webhooks else ""
        ),
    )
    return load_settings(write(tmp_path, text), {**ENV, "HOOK": "0123456789abcdef"})


@dataclass
class FakeEngine:
    settings: Settings
    calls: list[list[Hint | None] | None] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    unannounced: int = 0

    async def cycle(self, hints: list[Hint | None] | None = None) -> CycleReport:
        self.calls.append(hints)
        self.started.set()
        await self.release.wait()
        return CycleReport(
            run_id="r", targeted=bool(hints), unannounced=0 if hints else self.unannounced
        )


@dataclass
class FakeRuntime:
    engine: FakeEngine


def daemon_with(engine: FakeEngine, tmp_path: Path) -> Daemon:
    daemon = Daemon(tmp_path / "stocksync.toml", engine.settings)
    runtime: Any = FakeRuntime(engine)
    daemon._runtime, daemon._initial = runtime, None
    return daemon


async def wait_for_calls(engine: FakeEngine, count: int) -> None:
    while len(engine.calls) < count:
        engine.started.clear()
        await engine.started.wait()


async def test_a_webhook_during_a_cycle_is_not_lost(tmp_path: Path) -> None:
    engine = FakeEngine(settings(tmp_path))
    daemon = daemon_with(engine, tmp_path)
    loop = asyncio.create_task(daemon._main_loop())
    await wait_for_calls(engine, 1)  # the start-up delta cycle is running

    daemon.webhook_event(HINT)  # arrives mid-cycle
    engine.release.set()
    await wait_for_calls(engine, 2)

    daemon._stop.set()
    daemon._wake.set()
    await loop
    # The start-up cycle is a delta cycle not judged ([]); the delivery then gets its own
    # targeted cycle at once, not after the hour-long poll interval.
    assert engine.calls == [[], [HINT]]


async def test_hints_arriving_together_make_one_targeted_cycle(tmp_path: Path) -> None:
    engine = FakeEngine(settings(tmp_path))
    engine.release.set()
    daemon = daemon_with(engine, tmp_path)
    loop = asyncio.create_task(daemon._main_loop())
    await wait_for_calls(engine, 1)
    other = Hint("current_inventory", "current_inventory.product_updated", "9")
    daemon.webhook_event(HINT)
    daemon.webhook_event(other)
    await wait_for_calls(engine, 2)
    daemon._stop.set()
    daemon._wake.set()
    await loop
    assert engine.calls[1] == [HINT, other]


async def test_relaxed_polling_while_healthy_and_reverting_when_deliveries_stop(
    tmp_path: Path,
) -> None:
    engine = FakeEngine(settings(tmp_path))
    engine.release.set()
    daemon = daemon_with(engine, tmp_path)
    # Trusted from the start: a quiet shop sends no deliveries and still polls relaxed.
    assert daemon.metrics.webhook_healthy._value.get() == 1
    assert daemon._delta_interval() == 7200

    await daemon._cycle(daemon._take_hints())  # start-up: not judged
    engine.unannounced = 3
    hints = daemon._take_hints()
    assert hints is None  # a safety-net poll, judged
    await daemon._cycle(hints)
    # It found changes no delivery announced: deliveries are being lost.
    assert daemon._delta_interval() == 3600
    assert daemon.metrics.webhook_healthy._value.get() == 0

    daemon.webhook_event(HINT)  # deliveries arrive again
    assert daemon._delta_interval() == 7200
    assert daemon.metrics.webhook_healthy._value.get() == 1


async def test_without_webhooks_the_poll_interval_stands(tmp_path: Path) -> None:
    engine = FakeEngine(settings(tmp_path, webhooks=False))
    daemon = daemon_with(engine, tmp_path)
    assert daemon._delta_interval() == 3600
    assert daemon.metrics.webhook_healthy._value.get() == 0
