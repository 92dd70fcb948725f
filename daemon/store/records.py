"""Records kept beside the sync: per-item problems, safety-valve holds, reconciliation runs."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from daemon.domain.models import Problem
from daemon.store.base import StoreBase, _from_iso, _iso, _maybe_from_iso


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A finished run (a reconciliation) as recorded; `connection` None = every connection."""

    kind: str
    connection: str | None
    started_at: datetime
    finished_at: datetime
    ok: bool
    drift: int
    detail: str


class RecordsStore(StoreBase):
    """Problems reported once, holds and their times, runs and how they ended."""

    # -- per-item problems, reported once ----------------------------------------------------

    async def note_problems(self, connection: str, problems: Iterable[Problem]) -> list[Problem]:
        """Record many problems in one transaction; return those new or changed (to log)."""
        latest = {p.subject: p for p in problems}  # one situation per subject: the last wins
        if not latest:
            return []
        now = _iso(self._clock())
        async with self._write() as db:
            known = {
                subject: (kind, detail)
                for subject, kind, detail in await db.execute_fetchall(
                    "SELECT subject, kind, detail FROM problems WHERE connection = ?",
                    (connection,),
                )
            }
            fresh = [p for p in latest.values() if known.get(p.subject) != (p.kind, p.detail)]
            fresh_subjects = {p.subject for p in fresh}
            seen = [(now, connection, s) for s in latest if s not in fresh_subjects]
            await db.executemany(
                "INSERT INTO problems (connection, subject, kind, detail, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connection, subject) DO UPDATE SET "
                "kind = excluded.kind, detail = excluded.detail, "
                "first_seen = excluded.first_seen, last_seen = excluded.last_seen",
                [(connection, p.subject, p.kind, p.detail, now, now) for p in fresh],
            )
            await db.executemany(
                "UPDATE problems SET last_seen = ? WHERE connection = ? AND subject = ?", seen
            )
        return fresh

    async def problems(self, connection: str) -> dict[str, Problem]:
        """The problems currently recorded for `connection`, by subject."""
        rows = await self._fetch(
            "SELECT subject, kind, detail FROM problems WHERE connection = ?", (connection,)
        )
        return {subject: Problem(kind, subject, detail) for subject, kind, detail in rows}

    async def count_problems(self, connection: str, kind: str) -> int:
        """How many problems of `kind` are recorded for `connection`."""
        rows = await self._fetch(
            "SELECT COUNT(*) FROM problems WHERE connection = ? AND kind = ?", (connection, kind)
        )
        return int(rows[0][0])

    async def clear_problems(
        self, connection: str, subjects: Iterable[str], kinds: Collection[str] | None = None
    ) -> None:
        """Forget resolved problems (of these `kinds` only, when given), so that a recurrence is
        reported again."""
        rows: list[tuple[str, ...]] = [(connection, subject) for subject in subjects]
        if not rows:
            return
        sql = "DELETE FROM problems WHERE connection = ? AND subject = ?"
        if kinds is not None:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            rows = [(*row, *sorted(kinds)) for row in rows]
        async with self._write() as db:
            await db.executemany(sql, rows)

    # -- safety-valve holds ------------------------------------------------------------------

    async def hold(self, connection: str, reason: str) -> None:
        """Hold pushes to `connection` until released (keeps the first hold's time)."""
        async with self._write() as db:
            await db.execute(
                "INSERT INTO holds (connection, reason, since) VALUES (?, ?, ?) "
                "ON CONFLICT (connection) DO UPDATE SET reason = excluded.reason",
                (connection, reason, _iso(self._clock())),
            )

    async def release_hold(self, connection: str) -> bool:
        """Release the hold on `connection`; False if it was not held."""
        async with self._write() as db:
            cursor = await db.execute("DELETE FROM holds WHERE connection = ?", (connection,))
            released = cursor.rowcount > 0
            await cursor.close()
        return released

    async def holds(self) -> dict[str, str]:
        """Held connections and why."""
        rows = await self._fetch("SELECT connection, reason FROM holds")
        return {str(connection): str(reason) for connection, reason in rows}

    async def hold_times(self) -> dict[str, datetime]:
        """When each held connection was first held."""
        rows = await self._fetch("SELECT connection, since FROM holds")
        return {str(connection): _from_iso(since) for connection, since in rows}

    # -- reconciliation runs -----------------------------------------------------------------

    async def start_run(self, kind: str, connection: str | None) -> int:
        """Record the start of a run; returns its id."""
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO runs (kind, connection, started_at) VALUES (?, ?, ?)",
                (kind, connection, _iso(self._clock())),
            )
            run_id = cursor.lastrowid
            await cursor.close()
        if run_id is None:  # pragma: no cover - SQLite always reports the inserted rowid
            raise RuntimeError("SQLite did not report the new run id")
        return run_id

    async def finish_run(self, run_id: int, *, ok: bool, drift: int, detail: str = "") -> None:
        """Record how run `run_id` ended."""
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE runs SET finished_at = ?, ok = ?, drift = ?, detail = ? WHERE id = ?",
                (_iso(self._clock()), int(ok), drift, detail, run_id),
            )
            found = cursor.rowcount > 0
            await cursor.close()
        if not found:
            raise ValueError(f"no run {run_id} in {self._path}")

    async def last_run(self, kind: str, connection: str) -> RunRecord | None:
        """The latest finished run of `kind` that covered `connection` (alone or with all)."""
        rows = await self._fetch(
            "SELECT kind, connection, started_at, finished_at, ok, drift, detail FROM runs "
            "WHERE kind = ? AND finished_at IS NOT NULL AND (connection = ? OR connection IS NULL) "
            "ORDER BY id DESC LIMIT 1",
            (kind, connection),
        )
        if not rows:
            return None
        kind_, conn, started, finished, ok, drift, detail = rows[0]
        return RunRecord(
            kind=str(kind_),
            connection=None if conn is None else str(conn),
            started_at=_from_iso(started),
            finished_at=_from_iso(finished),
            ok=bool(ok),
            drift=int(drift or 0),
            detail=str(detail),
        )

    async def last_successful_run(self, kind: str) -> datetime | None:
        """When the latest successful run of `kind` finished; None if there was none."""
        rows = await self._fetch(
            "SELECT max(finished_at) FROM runs WHERE kind = ? AND ok = 1", (kind,)
        )
        return _maybe_from_iso(rows[0][0])
