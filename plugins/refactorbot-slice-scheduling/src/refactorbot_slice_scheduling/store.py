"""Rows of the scheduling database as the slice keeps them in memory, and their conversions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from refactorbot_slice_scheduling.models import Job, Run
from refactorbot_slice_scheduling.schedules import next_fire, zone

if TYPE_CHECKING:
    from refactorbot import SliceDatabase

JOB_COLUMNS = (
    "id, name, kind, spec, tz, target, policy, description, system, paused, anchor, next_run_at, last_run_at,"
    " last_status, consecutive_failures, created_at"
)
RUN_COLUMNS = (
    "r.id, j.name AS job, r.scheduled_for, r.trigger, r.status, r.attempts, r.claimed_at, r.started_at, r.ended_at,"
    " r.duration_ms, r.output, r.error, r.delivery, r.steps"
)


@dataclasses.dataclass
class JobRow:
    """A job as stored."""

    id: int
    name: str
    kind: str
    spec: str
    tz: str
    target: dict[str, Any]
    policy: dict[str, Any]
    description: str
    system: bool
    paused: bool
    anchor: float
    next_run_at: float | None
    last_run_at: float | None
    last_status: str | None
    consecutive_failures: int
    created_at: float

    @classmethod
    def of(cls, row: Any) -> JobRow:
        """Return the job of a database row."""
        return cls(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            spec=row["spec"],
            tz=row["tz"],
            target=json.loads(row["target"]),
            policy=json.loads(row["policy"]),
            description=row["description"],
            system=bool(row["system"]),
            paused=bool(row["paused"]),
            anchor=row["anchor"],
            next_run_at=row["next_run_at"],
            last_run_at=row["last_run_at"],
            last_status=row["last_status"],
            consecutive_failures=row["consecutive_failures"],
            created_at=row["created_at"],
        )

    def next_after(self, after: float) -> float | None:
        """Return the first fire strictly after ``after`` (Unix time), or ``None``."""
        spec: Any = self.spec
        if self.kind == "every":
            spec = float(self.spec)
        elif self.kind == "at":
            spec = datetime.fromtimestamp(float(self.spec), UTC)
        found = next_fire(
            self.kind, spec, self.tz, datetime.fromtimestamp(after, UTC), datetime.fromtimestamp(self.anchor, UTC)
        )
        return None if found is None else found.timestamp()

    def schedule_text(self) -> str:
        """Return the schedule as a user wrote it (``at`` in the job's zone)."""
        if self.kind == "at":
            return iso(float(self.spec), self.tz) or self.spec
        if self.kind == "every":
            return f"every {float(self.spec):g}s"
        return self.spec

    def view(self, local_tz: str, running: int) -> Job:
        """Return the job as operations show it."""
        if self.paused:
            state = "paused"
        elif self.next_run_at is None:
            state = "done"
        else:
            state = "active"
        return Job(
            id=self.id,
            name=self.name,
            kind=self.kind,
            schedule=self.schedule_text(),
            tz=self.tz,
            target=self.target,
            policy=self.policy,
            description=self.description,
            system=self.system,
            state=state,
            next_run_at=None if self.paused else self.next_run_at,
            next_run=None if self.paused else iso(self.next_run_at, self.tz),
            next_run_local=None if self.paused else iso(self.next_run_at, local_tz),
            local_tz=local_tz,
            last_run_at=self.last_run_at,
            last_status=self.last_status,
            consecutive_failures=self.consecutive_failures,
            running=running,
            created_at=self.created_at,
        )


def iso(seconds: float | None, tz: str) -> str | None:
    """Return a Unix time as ISO 8601 in zone ``tz`` (to the second), or ``None``."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, zone(tz)).isoformat(timespec="seconds")


def run_of(row: Any) -> Run:
    """Return the run of a database row (``RUN_COLUMNS``)."""
    data = dict(row)
    data["steps"] = json.loads(data["steps"]) if data.get("steps") else None
    return Run(**data)


_FINISH = (
    "UPDATE runs SET status = ?, attempts = ?, started_at = ?, ended_at = ?, duration_ms = ?, output = ?, error = ?,"
    " delivery = ?, steps = ? WHERE id = ?"
)
_LAST = "UPDATE jobs SET last_run_at = ?, last_status = ?, consecutive_failures = ? WHERE id = ?"
_TRIM = (
    "DELETE FROM runs WHERE job_id = ? AND status NOT IN ('running', 'queued') AND id <="
    " (SELECT id FROM runs WHERE job_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
)


@dataclasses.dataclass
class Finished:
    """The outcome of a run, to record: its row, its job's last status, the history to keep."""

    run: tuple[Any, ...]  # the parameters of ``_FINISH``
    job: tuple[Any, ...]  # the parameters of ``_LAST``
    trim: tuple[int, int, int]  # the parameters of ``_TRIM``


class FinishWriter:
    """Records ended runs in shared transactions: whoever ends while one commits joins the next.

    ``write`` returns once its record is committed. At 160 runs a second this is a handful of
    transactions a second rather than one per run, so a fire's claim (a transaction of its own)
    rarely waits behind run records.
    """

    def __init__(self, db: SliceDatabase) -> None:
        self.db = db
        self._pending: list[tuple[Finished, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, item: Finished) -> None:
        """Record ``item``; return once it is committed (raise what the database raised)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        await asyncio.shield(future)

    async def close(self) -> None:
        """Wait until everything written so far is committed."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.db.transaction() as conn:
                    await conn.executemany(_FINISH, [item.run for item, _ in batch])
                    await conn.executemany(_LAST, [item.job for item, _ in batch])
                    await conn.executemany(_TRIM, list(dict.fromkeys(item.trim for item, _ in batch)))
            except Exception as exc:  # each writer hears why its record is not in the database
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
