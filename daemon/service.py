"""The long-running daemon: start-up, the poll loop, reload, drain, shutdown.

Signal handlers only set flags; the main loop does the work (uvicorn's pattern). One lock
serialises cycles, reconciliations and reloads, so they never push the same levels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from daemon.config import ConfigError, Settings, load_settings
from daemon.domain.mapping import LocationError
from daemon.http import Health, ListenError, build_app, start_http
from daemon.katana.client import KatanaClient, KatanaError
from daemon.logs import HealthLog, add_secrets
from daemon.metrics import Metrics
from daemon.runtime import Runtime, open_runtime
from daemon.sdnotify import Notifier
from daemon.shopify.client import ShopifyError
from daemon.status.model import StatusModel, StatusSources
from daemon.status.routes import StatusRoutes
from daemon.store import StateError
from daemon.sync.mappings import connection_locations
from daemon.sync.reconcile import NIGHTLY, Reconciler, previous_fire_time
from daemon.sync.report import CycleReport
from daemon.sync.sources import sustainable_poll_interval
from daemon.watchdog import Watchdog
from daemon.webhooks import DeliveryResult, Hint, katana_webhook

log = structlog.get_logger(__name__)

RECONCILE_JOB = "reconciliation"
# A nightly run delayed by downtime still runs if the daemon is back within this window.
MISFIRE_GRACE_SECONDS = 6 * 3600
# Webhook deliveries that arrive together are read in one targeted cycle: after the first, wait
# this long for others (bounded), unless this many are queued already.
COALESCE_SECONDS = 0.5
COALESCE_MAX = 200


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings (for the log redactor)."""
    values = [settings.katana.api_key.reveal()]
    if settings.webhooks.token is not None:
        values.append(settings.webhooks.token.reveal())
    if settings.daemon.status_token is not None:
        values.append(settings.daemon.status_token.reveal())
    for conn in settings.connections:
        for secret in (conn.access_token, conn.client_secret):
            if secret is not None:
                values.append(secret.reveal())
    return values


class Daemon:
    """Owns the process lifecycle of `stocksync run`."""

    def __init__(self, config_path: Path, settings: Settings) -> None:
        self.config_path = config_path
        # Until the runtime opens; from then on the engine's context is the only holder of the
        # settings in force (a reload swaps them there, in one call).
        self._initial: Settings | None = settings
        self.metrics = Metrics()
        self.health = Health(poll_interval=lambda: self.settings.daemon.poll_interval_seconds)
        self.notifier = Notifier.from_environment()
        self._watchdog: Watchdog | None = None
        self.health_log = HealthLog()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_requested = False
        self._signals = 0
        self._work = asyncio.Lock()
        self._status_sent = ""
        self._runtime: Runtime | None = None
        self._reconciler: Reconciler | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The latest completed cycle's report (the status page shows per-connection errors).
        self.last_report: CycleReport | None = None
        # Webhook hints waiting for a targeted cycle (None: a delivery naming nothing usable),
        # and when the first of them arrived (the coalescing window starts there).
        self._hints: list[Hint | None] = []
        self._first_hint_at = 0.0
        # Deliveries are trusted from the start (a quiet shop sends none), until a safety-net
        # poll finds a change no delivery announced; the next delivery trusts them again.
        self._webhooks_healthy = settings.webhooks.enabled
        self.metrics.webhook_healthy.set(int(self._webhooks_healthy))
        # Monotonic time the next delta poll (every source) is due; 0: now.
        self._delta_due = 0.0
        # Whether the next delta poll may judge the webhooks (not the start-up catch-up).
        self._judge = False

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        if self._runtime is not None:
            return self._runtime.engine.settings
        assert self._initial is not None
        return self._initial

    # ---------------------------------------------------------------- signals

    def _on_stop_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("forced_exit", signal=signal.Signals(signum).name)
            os._exit(1)
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self._stop.set()
        self._wake.set()

    def _on_reload_signal(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def poll_now(self) -> None:
        """Wake the main loop for an immediate delta cycle (every source)."""
        self._delta_due = 0.0
        self._wake.set()

    def webhook_event(self, hint: Hint | None) -> None:
        """A signed delivery: queue its hint for a targeted cycle and wake the main loop."""
        if not self._hints:
            self._first_hint_at = time.monotonic()
        self._hints.append(hint)
        if not self._webhooks_healthy:
            self._set_webhooks_healthy(True)
        self._wake.set()

    def _webhook_result(self, result: DeliveryResult) -> None:
        self.metrics.webhook_deliveries.labels(result=result).inc()

    def _set_webhooks_healthy(self, healthy: bool) -> None:
        if healthy and not self._webhooks_healthy:
            log.info("webhooks_trusted")
        elif self._webhooks_healthy and not healthy:
            log.info("webhooks_distrusted")
        self._webhooks_healthy = healthy
        self.metrics.webhook_healthy.set(int(healthy))

    def _delta_interval(self) -> float:
        """Seconds between delta polls: relaxed while webhook deliveries are trusted."""
        settings = self.settings
        interval = settings.daemon.poll_interval_seconds
        if settings.webhooks.enabled and self._webhooks_healthy:
            return max(interval, settings.webhooks.safety_poll_seconds)
        return interval

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        try:
            async with open_runtime(
                self.settings, metrics=self.metrics, on_katana_trouble=self._katana_trouble
            ) as runtime:
                self._runtime, self._initial = runtime, None
                self._reconciler = Reconciler.of(runtime.engine)
                self.metrics.katana_budget_used.set_function(
                    lambda: self._runtime.limiter.used() if self._runtime is not None else 0.0
                )
                webhook = None
                if self.settings.webhooks.enabled and self.settings.webhooks.token is not None:
                    webhook = katana_webhook(
                        self.settings.webhooks.token,
                        self.webhook_event,
                        on_result=self._webhook_result,
                    )
                http = await start_http(
                    build_app(
                        self.metrics,
                        self.health,
                        webhook=webhook,
                        status=self._status_routes(runtime),
                    ),
                    self.settings.daemon.http_host,
                    self.settings.daemon.http_port,
                )
                try:
                    last = await runtime.store.last_successful_run(NIGHTLY)
                    if last is not None:
                        self.metrics.reconciliation_last_success.set(last.timestamp())
                    self._start_scheduler()
                    await self._catch_up_reconciliation()
                    self._start_watchdog()
                    self._warn_if_poll_outruns_katana()
                    log.info(
                        "daemon_started",
                        config=str(self.config_path),
                        http=f"{self.settings.daemon.http_host}:{self.settings.daemon.http_port}",
                        connections=[c.name for c in self.settings.connections],
                        enabled=[c.name for c in runtime.engine.enabled()],
                    )
                    # READY means started and serving (the convention): /metrics, /healthz and
                    # the status page answer. Whether Shopify is in step is STATUS= and /readyz,
                    # kept current after every cycle; a failing first cycle no longer leaves the
                    # unit "activating" for ever.
                    self.notifier.ready()
                    self._report_status()
                    await self._main_loop()
                finally:
                    await self._shutdown(http)
        except StateError as exc:
            log.error("state_unusable", error=str(exc))
            return 1
        except ListenError as exc:
            log.error("http_listen_failed", error=str(exc))
            return 1
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("daemon_stopped")
        return 0

    def _warn_if_poll_outruns_katana(self) -> None:
        floor = sustainable_poll_interval(self.settings.katana.requests_per_minute)
        if self.settings.daemon.poll_interval_seconds < floor:
            # Cycles then run back to back, paced by the limiter: fresher is not possible.
            log.warning(
                "poll_interval_below_katana_budget",
                poll_interval_seconds=self.settings.daemon.poll_interval_seconds,
                sustainable_seconds=round(floor, 1),
                requests_per_minute=self.settings.katana.requests_per_minute,
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _main_loop(self) -> None:
        while not self._stop.is_set():
            if self._reload_requested:
                self._reload_requested = False
                await self._reload()
            # Cleared before the cycle, not after: a delivery arriving while it runs wakes the
            # next wait at once instead of waiting for the next poll.
            self._wake.clear()
            hints = self._take_hints()
            self._turned(idle=False)
            cycle = asyncio.create_task(self._cycle(hints))
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({cycle, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not cycle.done():
                # Stopping mid-cycle: systemd hears it at once, then the cycle gets its budget.
                self.notifier.stopping()
                await self._drain(cycle)
            self._turned(idle=True)
            if self._stop.is_set():
                break
            await self._wait_for_work()

    def _take_hints(self) -> list[Hint | None] | None:
        """The hints for a targeted cycle; None for a delta cycle (due, or nothing queued).

        A delta cycle that runs while hints are queued reads every source anyway: they are
        dropped, and `[]` tells the engine not to judge the webhooks by what it finds.
        """
        now = time.monotonic()
        hints, self._hints = self._hints, []
        if hints and now < self._delta_due:
            return hints
        judge, self._judge = self._judge and not hints, True
        self._delta_due = now + self._delta_interval()
        return None if judge else []

    async def _wait_for_work(self) -> None:
        """Until the next delta poll is due, a delivery arrives (then its coalescing window
        ends), a signal or poll_now."""
        timeout = self._delta_due - time.monotonic()
        if not self._hints and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        if self._hints and not self._stop.is_set():
            wait = self._first_hint_at + COALESCE_SECONDS - time.monotonic()
            while wait > 0 and len(self._hints) < COALESCE_MAX and not self._stop.is_set():
                await asyncio.sleep(min(wait, 0.05))
                wait = self._first_hint_at + COALESCE_SECONDS - time.monotonic()

    def _turned(self, *, idle: bool) -> None:
        """The main loop made progress: about to run a cycle, or waiting for the next one."""
        if self._watchdog is not None:
            self._watchdog.idle(idle)

    async def _shutdown(self, http: web.AppRunner) -> None:
        """Phased, as uvicorn does: stop intake, drain with a bound, await every task, close."""
        self.notifier.stopping()
        # 1. Intake: no new connections (webhooks, scrapes), no new reconciliation jobs.
        for site in list(http.sites):
            await site.stop()
        if self._scheduler is not None:
            self._scheduler.pause()
        # 2. Drain: a reconciliation still running gets the shutdown budget (the main loop
        # drained its own cycle already).
        await self._shutdown_scheduler()
        # 3. Every task this daemon started is cancelled and awaited, not left to the loop.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # 4. Close what is left (open connections, the app).
        await http.cleanup()

    async def _drain(self, task: asyncio.Task[Any]) -> None:
        """Give an in-flight cycle the shutdown budget to finish, then cancel it."""
        budget = self.settings.daemon.shutdown_timeout_seconds
        log.info("draining", timeout_seconds=budget)
        done, _ = await asyncio.wait({task}, timeout=budget)
        if not done:
            # Safe to abandon: sent batches are marked in flight and re-pushed after restart.
            log.warning("drain_timeout_cancelling_cycle", timeout_seconds=budget)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _cycle(self, hints: list[Hint | None] | None = None) -> None:
        assert self._runtime is not None
        async with self._work:
            try:
                report = await self._runtime.engine.cycle(hints)
            except (KatanaError, ShopifyError, LocationError, OSError, TimeoutError) as exc:
                self.metrics.poll_cycles.labels(result="error").inc()
                self.health_log.failed("poll", exc)
                self._report_status()
                self._retry_soon()
                return
            except Exception as exc:
                # A bug must not stop the daemon: the state is transactional, so the next cycle
                # starts clean. Log it loudly (with the traceback) and count it.
                self.metrics.poll_cycles.labels(result="error").inc()
                log.exception("cycle_crashed", error=repr(exc))
                self._retry_soon()
                return
        if report.unannounced and self._webhooks_healthy and self.settings.webhooks.enabled:
            # A change no delivery announced: deliveries are being lost; poll as without them.
            log.warning("webhook_change_missed", variants=report.unannounced)
            self._set_webhooks_healthy(False)
            self._delta_due = min(
                self._delta_due, time.monotonic() + self.settings.daemon.poll_interval_seconds
            )
        self._cycle_done(report)

    def _retry_soon(self) -> None:
        """A failed cycle (its hints are gone with it): the next delta poll at the usual pace."""
        self._delta_due = min(
            self._delta_due, time.monotonic() + self.settings.daemon.poll_interval_seconds
        )

    def _status_routes(self, runtime: Runtime) -> StatusRoutes:
        """The status page over this process's live state (it only reads)."""
        sources = StatusSources(
            engine=runtime.engine,
            metrics=self.metrics,
            outage=self.health_log.outage,
            last_cycle=lambda: self.last_report,
            started_at=datetime.now(UTC),
        )
        return StatusRoutes(StatusModel(sources), lambda: self.settings.daemon.status_token)

    def _cycle_done(self, report: CycleReport) -> None:
        self.last_report = report
        if not report.ok:
            self.metrics.poll_cycles.labels(result="error").inc()
            errors = [e for c in report.connections for e in c.errors]
            self.health_log.failed("push", "; ".join(sorted(set(errors)))[:500])
            return
        self.health_log.succeeded("poll")
        self.health_log.succeeded("push")
        self.metrics.poll_cycles.labels(result="success").inc()
        self.metrics.last_successful_poll.set(time.time())
        self.health.mark_success()
        if report.changed_variants or report.pushed:
            log.info(
                "cycle_done",
                run_id=report.run_id,
                changed_variants=report.changed_variants,
                pushed=report.pushed,
                connections={
                    c.name: {"planned": c.planned, "applied": c.applied, "held": c.held}
                    for c in report.connections
                },
            )
        self._report_status()

    def _katana_trouble(self, reason: str) -> None:
        # The outage starts at its first failed request: source_failed comes after one timeout,
        # not after a whole cycle of retries, and the recovery line measures from there.
        self.health_log.failed("poll", reason)
        self._report_status()

    def _report_status(self) -> None:
        """STATUS= for `systemctl status`, kept current after every cycle (sent on change)."""
        text = self._status_text()
        if text != self._status_sent:
            self._status_sent = text
            self.notifier.status(text)

    def _status_text(self) -> str:
        held = [
            c.name for c in (self.last_report.connections if self.last_report else ()) if c.held
        ]
        if held:
            return f"held by the safety valve: {', '.join(held)} (stocksync release-hold)"
        outage = self.health_log.outage("poll")
        if outage is not None:
            minutes = max(0, round((time.time() - outage.started_at) / 60))
            return f"Katana unreachable for {minutes} min: {outage.message}"[:200]
        if self.last_report is None:
            return "starting: first cycle"
        if not self.last_report.ok:
            return "Shopify errors: some pushes failed; retrying"
        waiting = self.metrics.dirty_variants_value()
        if waiting:
            return f"catching up: {waiting} variants waiting"
        return "in sync"

    def _start_watchdog(self) -> None:
        """WATCHDOG=1 while the daemon makes progress (see daemon/watchdog.py)."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        self._watchdog = Watchdog(self.notifier.watchdog, interval, self.metrics.requests_done)
        self._spawn(self._watchdog.run())

    # ---------------------------------------------------------------- reload

    async def _reload(self) -> None:
        assert self._runtime is not None
        self.notifier.reloading()
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            self._reject_reload(exc.errors)
            return
        runtime = self._runtime
        async with self._work:
            unknown = await self._unknown_locations(new)
            if unknown:
                # Valid TOML naming a Katana location that does not exist: applied, it would
                # stop those connections; the running configuration is kept instead.
                self._reject_reload(unknown)
                return
            restart_only = _restart_only_changes(self.settings, new)
            if restart_only:
                log.warning("config_change_needs_restart", keys=restart_only)
            add_secrets(settings_secrets(new))
            previous = self.settings
            try:
                await runtime.engine.apply(new, runtime.clients(new))
            except (KatanaError, ShopifyError, OSError, TimeoutError) as exc:
                # The configuration is valid; the catalogue is re-read by the next cycle.
                log.warning("reload_catalogue_refresh_failed", error=str(exc))
            except Exception as exc:
                # A bug must not end the daemon on a reload: back to what ran before.
                log.exception("config_reload_failed", error=repr(exc))
                await self._restore(previous)
                self._reject_reload([f"{self.config_path}: could not be applied: {exc!r}"])
                return
        self._reschedule()
        self.metrics.config_reloads.labels(result="success").inc()
        log.info(
            "config_reloaded",
            enabled=[c.name for c in new.connections if c.sync_inventory],
            disabled=[c.name for c in new.connections if not c.sync_inventory],
        )
        self.notifier.ready()

    def _reject_reload(self, errors: list[str]) -> None:
        self.metrics.config_reloads.labels(result="error").inc()
        log.error("config_reload_rejected", errors=errors, kept="previous configuration")
        self.notifier.ready()

    async def _unknown_locations(self, new: Settings) -> list[str]:
        """A problem line for each connection of `new` (sync on) naming a Katana location that
        does not exist; none when Katana cannot be asked now."""
        assert self._runtime is not None
        runtime = self._runtime
        # Two attempts, not six: a reload waits on this, and the check is only a precaution.
        katana = KatanaClient(
            runtime.katana_session,
            new.katana.base_url,
            new.katana.api_key,
            runtime.limiter,
            metrics=self.metrics,
            max_attempts=2,
        )
        try:
            locations = await katana.locations()
        except (KatanaError, OSError, TimeoutError) as exc:
            # The reload goes ahead; a connection whose locations turn out unknown then waits,
            # reported, while the others sync (daemon/sync/catalogue.py).
            log.warning("reload_locations_unchecked", error=str(exc))
            return []
        problems = []
        for conn in new.connections:
            if not conn.sync_inventory:
                continue
            try:
                connection_locations(conn, locations)
            except LocationError as exc:
                problems.append(f"{self.config_path}: connections.{conn.name}.locations: {exc}")
        return problems

    async def _restore(self, previous: Settings) -> None:
        """Put the configuration that ran before a failed reload back in force."""
        assert self._runtime is not None
        runtime = self._runtime
        try:
            await runtime.engine.apply(previous, runtime.clients(previous))
        except (KatanaError, ShopifyError, OSError, TimeoutError) as exc:
            log.warning("reload_catalogue_refresh_failed", error=str(exc))
        except Exception as exc:
            log.exception("config_restore_failed", error=repr(exc))

    # ---------------------------------------------------------------- reconciliation

    def _trigger(self) -> CronTrigger:
        rec = self.settings.reconciliation
        return CronTrigger.from_crontab(rec.cron, timezone=rec.timezone)

    def _start_scheduler(self) -> None:
        if not self.settings.reconciliation.enabled:
            return
        scheduler = AsyncIOScheduler(
            timezone=self.settings.reconciliation.timezone,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )
        scheduler.add_job(self._reconcile_job, self._trigger(), id=RECONCILE_JOB)
        scheduler.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        scheduler.start()
        self._scheduler = scheduler

    def _reschedule(self) -> None:
        if self._scheduler is None:
            self._start_scheduler()
        elif not self.settings.reconciliation.enabled:
            self._scheduler.remove_all_jobs()
        else:
            self._scheduler.add_job(
                self._reconcile_job, self._trigger(), id=RECONCILE_JOB, replace_existing=True
            )

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            self.metrics.reconciliation_runs.labels(result="missed").inc()
            log.warning("reconciliation_missed", scheduled=str(event.scheduled_run_time))
        else:
            self.metrics.reconciliation_runs.labels(result="error").inc()
            log.error("reconciliation_job_crashed", error=repr(event.exception))

    async def _reconcile_job(self) -> None:
        assert self._reconciler is not None
        if self._stop.is_set():
            return
        async with self._work:
            try:
                await self._reconciler.run()
            except (KatanaError, ShopifyError, OSError, TimeoutError) as exc:
                self.metrics.reconciliation_runs.labels(result="error").inc()
                log.error("reconciliation_failed", error=str(exc))

    async def _catch_up_reconciliation(self) -> None:
        """Run a nightly reconciliation missed while the daemon was down (after start-up)."""
        assert self._runtime is not None
        rec = self.settings.reconciliation
        if not rec.enabled or self._scheduler is None:
            return
        last = await self._runtime.store.last_successful_run(NIGHTLY)
        due = previous_fire_time(rec.cron, rec.timezone, datetime.now(UTC))
        if last is not None and due is not None and last < due:
            log.info("reconciliation_catch_up", last_success=last.isoformat(), due=due.isoformat())
            self._scheduler.add_job(self._reconcile_job, id="reconciliation-catch-up")

    async def _shutdown_scheduler(self) -> None:
        if self._scheduler is None:
            return
        # Let a running reconciliation finish its current batches, within the drain budget.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._work.acquire(), timeout=self.settings.daemon.shutdown_timeout_seconds
            )
            self._work.release()
        self._scheduler.shutdown(wait=False)


def _restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """Keys whose change a reload cannot apply (they need a restart)."""
    changed = []
    pairs: Iterable[tuple[str, object, object]] = (
        ("daemon.state_path", old.daemon.state_path, new.daemon.state_path),
        (
            "daemon.http_listen",
            (old.daemon.http_host, old.daemon.http_port),
            (new.daemon.http_host, new.daemon.http_port),
        ),
        ("daemon.log_format", old.daemon.log_format, new.daemon.log_format),
        ("daemon.log_level", old.daemon.log_level, new.daemon.log_level),
    )
    for key, before, after in pairs:
        if before != after:
            changed.append(key)
    return changed
