"""The scheduling slice: jobs on cron, interval and one-shot schedules, run through the host.

Each fire is claimed in the database (a ``runs`` row, unique per job and scheduled time) before
its target starts, so a restart never runs it twice; a run left ``running`` by a process that
died is recorded ``interrupted`` on the next start. One timer (``JobTimer``) sleeps until the
earliest due job. Fires missed while the host was down follow the job's ``misfire`` policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from refactorbot import AtomicSlice, RefactorbotError, SingletonLease, operation, singleton, tracing

from refactorbot_slice_scheduling import targets
from refactorbot_slice_scheduling.models import (
    AddJob,
    AlertList,
    AlertsParams,
    CheckResult,
    DiagnosticsList,
    HistoryParams,
    Job,
    JobList,
    JobName,
    JobPolicy,
    ListJobs,
    NoParams,
    Removed,
    RunList,
    RunNowResult,
    SchedulingConfig,
    Status,
    Timeline,
    TimelineParams,
    Upcoming,
)
from refactorbot_slice_scheduling.schedules import (
    ScheduleError,
    check_cron,
    count_cron,
    last_cron,
    parse_at,
    parse_every,
    zone,
)
from refactorbot_slice_scheduling.store import JOB_COLUMNS, RUN_COLUMNS, Finished, FinishWriter, JobRow, run_of

if TYPE_CHECKING:
    from refactorbot_slice_scheduling.alerts import AlertManager
    from refactorbot_slice_scheduling.timer import JobTimer

SYSTEM_PREFIX = "system."
#: The lease under which one host of a deployment fires scheduled jobs.
TIMER_LEASE = "scheduling.timer"
#: Fires claimed per INSERT statement (6 parameters each, well within SQLite's limit of 32,766).
_CLAIM_CHUNK = 1000


async def _finished(coro: Any) -> Any:
    """Await ``coro`` to the end even if the caller is cancelled (then re-raise the cancellation).

    A run's record must reach the database before ``stop`` closes it.
    """
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class JobNotFound(RefactorbotError):
    """Raise when a job name is unknown."""


class Claim:
    """A fire claimed in the database: the run row, the time it was scheduled for, what fired it."""

    def __init__(self, job: JobRow, run_id: int, scheduled_for: float, status: str, trigger: str) -> None:
        self.job, self.run_id, self.scheduled_for, self.status = job, run_id, scheduled_for, status
        self.trigger = trigger
        self.done = asyncio.get_running_loop().create_future()


class SchedulingSlice(AtomicSlice):
    """Scheduled jobs: cron, every and at schedules; operations, prompts, messages and workflows; alerts."""

    slice_id = "scheduling"
    version = "0.1.0"
    description = "Scheduled jobs (cron in a zone, every, at), run history, heartbeat, liveness and alerts."
    # No ``requires``: listing or adding jobs from the command line starts this slice alone. The
    # slices a target calls are reached through the host when the job runs; in ``refactorbot
    # serve`` the timer is armed only once the host has brought every slice up (``_begin``).
    requires = ()
    Config = SchedulingConfig

    def __init__(self, ctx: Any, config: BaseModel | None = None) -> None:
        super().__init__(ctx, config)
        self.settings: SchedulingConfig = self.config  # type: ignore[assignment]
        self.jobs: dict[int, JobRow] = {}
        self.running: dict[int, int] = {}
        self.queued: dict[int, list[Claim]] = {}
        self.serving = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self._timer: JobTimer | None = None
        self._started_at = 0.0
        #: ``scheduling.timer``: the timer fires only while this process holds it.
        self._lease: SingletonLease | None = None
        #: The fencing token it is held with (``None``: not held); every scheduled fire is claimed under it.
        self._token: int | None = None
        self._held_once = False
        self._records: FinishWriter | None = None
        self._slots: asyncio.Semaphore | None = None
        self.alerts: AlertManager | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def local_tz(self) -> str:
        """Return the host's zone: ``[core] timezone`` (the machine's by default)."""
        settings = self.ctx.settings
        core = getattr(settings, "core", None)
        return str(getattr(core, "timezone", None) or "UTC")

    async def start(self) -> None:
        """Load the jobs; in ``refactorbot serve``, recover, apply misfire policies and arm the timer."""
        from refactorbot_slice_scheduling.alerts import AlertManager
        from refactorbot_slice_scheduling.timer import JobTimer

        self.serving = self.ctx.host is not None and self.ctx.host.serving
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_runs)
        self.alerts = AlertManager(self)
        assert self.db is not None
        self._records = FinishWriter(self.db)
        await self._sync_system_jobs()
        await self._load()
        if not self.serving:
            return
        self._started_at = time.time()
        await self._write(
            "UPDATE runs SET status = 'interrupted', error = 'the scheduler stopped during the run',"
            " ended_at = ? WHERE status IN ('running', 'queued')",
            (self._started_at,),
        )
        self._timer = JobTimer(self._on_due, held=True)
        for job in self.jobs.values():
            self._arm(job)
        self._spawn(self._begin())

    async def _begin(self) -> None:
        """Once the host has started every slice: contend for ``scheduling.timer``.

        The timer fires on one host of a deployment at a time: the one holding the lease (with
        no shared lease, this one at once). ``_lead`` runs when it is held, ``_follow`` when it
        is lost.
        """
        await self._host_started()
        self._lease = await singleton(self.ctx, TIMER_LEASE, self._lead, self._follow)

    async def _lead(self, token: int) -> None:
        """This host holds ``scheduling.timer`` under ``token``: catch up, then let the timer fire.

        Taken at start, with no other holder, fires missed before this slice started follow
        their misfire policy. Taken over from another host (now or after a first term here),
        every fire due until now does: this host's due times did not advance while another
        fired the jobs, and the fires due between that holder's last claim and now were run by
        nobody.
        """
        self._token = token
        first, self._held_once = not self._held_once, True
        lease = self._lease
        contended = lease is not None and lease.contended
        self._spawn(self._take_over(token, self._started_at if first and not contended else time.time()))

    async def _take_over(self, token: int, since: float) -> None:
        """Apply misfire policies to fires missed before ``since`` (claimed under ``token``), then release the timer.

        Fires missed before this slice started, or while another host held the timer, follow
        their job's misfire policy; those another holder claimed already are not claimed again.
        Fires that came due while the other slices were starting are ordinary fires.
        """
        await self._recover_missed(since)
        if self._timer is not None and self._token == token:
            self._timer.release()

    async def _follow(self) -> None:
        """This host no longer holds ``scheduling.timer``: keep due times, fire nothing."""
        self._token = None
        if self._timer is not None:
            self._timer.hold()

    async def _host_started(self) -> None:
        """Wait until no other slice of the host is still pending or initializing (bounded)."""
        host = self.ctx.host
        if host is None:
            return
        core = getattr(self.ctx.settings, "core", None)
        budget = float(getattr(core, "start_timeout", 30.0)) * max(1, len(host.slice_ids()))
        deadline = time.monotonic() + budget
        while True:
            waiting = [
                row["slice_id"]
                for row in host.slice_status()
                if row["slice_id"] != self.slice_id and row["status"] in ("pending", "initializing")
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                self.log.warning("arming the job timer while %s still start", ", ".join(waiting))
                return
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Let go of the timer's lease, disarm the timer and cancel the runs in progress (recorded ``interrupted``)."""
        if self._lease is not None:
            lease, self._lease = self._lease, None
            await lease.stop()
        if self._timer is not None:
            self._timer.clear()
            self._timer = None
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._records is not None:
            await self._records.close()

    async def _load(self) -> None:
        assert self.db is not None
        rows = await self.db.fetchall(f"SELECT {JOB_COLUMNS} FROM jobs")  # noqa: S608  constant names; values are ? parameters
        self.jobs = {row["id"]: JobRow.of(row) for row in rows}

    async def _write(self, sql: str, params: Any = ()) -> int:
        assert self.db is not None
        row_id: int = await _finished(self.db.execute(sql, params))
        return row_id

    def _arm(self, job: JobRow) -> None:
        if self._timer is not None:
            self._timer.set(job.id, None if job.paused else job.next_run_at)

    # -- system jobs -------------------------------------------------------------------------------

    async def _sync_system_jobs(self) -> None:
        """Create, update or remove the heartbeat, alerts and diagnostics jobs as configured."""
        wanted = {
            "heartbeat": self.settings.heartbeat_every * 60,
            "alerts": self.settings.alerts_every,
            "diagnostics": self.settings.diagnostics_every,
        }
        assert self.db is not None
        now = time.time()
        for task, every in wanted.items():
            name = SYSTEM_PREFIX + task
            row = await self.db.fetchone("SELECT id, spec FROM jobs WHERE name = ?", (name,))
            if not every:
                if row is not None:
                    await self._write("DELETE FROM jobs WHERE id = ?", (row["id"],))
                continue
            if row is not None and float(row["spec"]) == every:
                continue
            policy = JobPolicy(misfire="skip", overlap="skip", keep_runs=100).model_dump()
            target = {"type": "system", "task": task}
            if row is None:
                await self._write(
                    "INSERT INTO jobs (name, kind, spec, tz, target, policy, description, system, anchor, next_run_at,"
                    " created_at, updated_at) VALUES (?, 'every', ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                    (
                        name,
                        repr(float(every)),
                        self.local_tz,
                        json.dumps(target),
                        json.dumps(policy),
                        f"built-in: {task}",
                        now,
                        now + every,
                        now,
                        now,
                    ),
                )
            else:
                await self._write(
                    "UPDATE jobs SET spec = ?, anchor = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
                    (repr(float(every)), now, now + every, now, row["id"]),
                )

    # -- firing ------------------------------------------------------------------------------------

    def _on_due(self, job_ids: list[int]) -> None:
        self._spawn(self._fire([self.jobs[i] for i in job_ids if i in self.jobs]))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _fire(self, jobs: list[JobRow]) -> None:
        """Claim the due fire of each job (one transaction), advance their next runs, start the claimed ones."""
        fires = []
        now = time.time()
        for job in jobs:
            if job.paused or job.next_run_at is None:
                continue
            if job.next_run_at > now:  # its due time moved on since the timer took it (a misfire pass): not yet
                self._arm(job)
                continue
            scheduled = job.next_run_at
            fires.append((job, [scheduled], "schedule", job.next_after(max(scheduled, time.time()))))
        claims = await self._claim(fires)
        self._dispatch(claims)

    async def _claim(self, fires: list[tuple[JobRow, list[float], str, float | None]]) -> list[Claim]:
        """Insert a run row per fire (skipped, queued or running by the overlap policy) and store next runs.

        One transaction for every fire due at the same instant: multi-row INSERTs that return the
        rows they claimed (a fire claimed before, by a run that was interrupted, is not claimed
        again), and one statement for the jobs' next runs.
        """
        assert self.db is not None
        fires = await self._fenced(fires)
        if not fires:
            return []
        now = time.time()
        busy = {job.id for job, _, _, _ in fires if self.running.get(job.id)}
        rows: list[tuple[Any, ...]] = []
        wanted: dict[tuple[int, float], tuple[JobRow, str, str]] = {}
        for job, times, trigger, _ in fires:
            for n, scheduled in enumerate(times):
                # Caught-up fires of one job run one after another, whatever its overlap policy.
                status, error = ("queued", None) if n else self._overlap(job, busy)
                rows.append((job.id, scheduled, trigger, status, now, error))
                if status != "skipped":
                    wanted[(job.id, scheduled)] = (job, status, trigger)
                if status == "running" and job.policy.get("overlap") != "allow":
                    busy.add(job.id)
        claimed: dict[tuple[int, float], int] = {}
        async with self.db.transaction() as conn:
            for start in range(0, len(rows), _CLAIM_CHUNK):
                chunk = rows[start : start + _CLAIM_CHUNK]
                sql = (
                    "INSERT INTO runs (job_id, scheduled_for, trigger, status, claimed_at, error) VALUES "  # noqa: S608  constant names; values are ? parameters
                    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
                    + " ON CONFLICT (job_id, scheduled_for) DO NOTHING RETURNING id, job_id, scheduled_for"
                )
                for run_id, job_id, scheduled in await conn.execute_fetchall(sql, [v for row in chunk for v in row]):
                    claimed[(job_id, scheduled)] = run_id
            await conn.executemany(
                "UPDATE jobs SET next_run_at = ?, updated_at = ? WHERE id = ?",
                [(next_at, now, job.id) for job, _, _, next_at in fires],
            )
        for job, _, _, next_at in fires:
            job.next_run_at = next_at
            self._arm(job)
        return [
            Claim(job, claimed[key], key[1], status, trigger)
            for key, (job, status, trigger) in wanted.items()
            if key in claimed
        ]

    async def _fenced(
        self, fires: list[tuple[JobRow, list[float], str, float | None]]
    ) -> list[tuple[JobRow, list[float], str, float | None]]:
        """Keep the scheduled fires claimed under the timer's token; manual runs pass as they are.

        With no token (the timer's lease lost, or never held) or a token no longer current (a newer
        holder exists: this host was paused or cut off), no scheduled fire is claimed and nothing
        is written. A fire another holder claimed already is dropped, but its job still advances.
        """
        scheduled = [f for f in fires if f[2] != "manual"]
        if not scheduled:
            return fires
        token, lease = self._token, self._lease
        if token is None or lease is None:
            return [f for f in fires if f[2] == "manual"]
        keys = [f"{job.name}@{at:.6f}" for job, times, _, _ in scheduled for at in times]
        claimed = await lease.claim(token, keys)
        if not claimed and not await lease.is_current(token):
            self.log.warning("scheduled fires refused: the job timer's lease has a newer holder than token %d", token)
            return [f for f in fires if f[2] == "manual"]
        kept = []
        for job, times, trigger, next_at in fires:
            if trigger != "manual":
                times = [at for at in times if f"{job.name}@{at:.6f}" in claimed]
            kept.append((job, times, trigger, next_at))
        return kept

    def _overlap(self, job: JobRow, busy: set[int]) -> tuple[str, str | None]:
        if job.id not in busy:
            return "running", None
        policy = job.policy.get("overlap", "skip")
        if policy == "allow":
            return "running", None
        if policy == "queue":
            return "queued", None
        return "skipped", "the previous run was still running (overlap = skip)"

    def _dispatch(self, claims: list[Claim]) -> None:
        for claim in claims:
            if claim.status == "queued":
                self.queued.setdefault(claim.job.id, []).append(claim)
            else:
                self._start(claim)
        for claim in claims:  # queued behind a fire that was claimed before (and is not running): go
            waiting = self.queued.get(claim.job.id)
            if waiting and not self.running.get(claim.job.id):
                self._start(waiting.pop(0))

    def _start(self, claim: Claim) -> None:
        self.running[claim.job.id] = self.running.get(claim.job.id, 0) + 1
        self._spawn(self._run(claim))

    async def _run(self, claim: Claim) -> None:
        job = claim.job
        try:
            assert self._slots is not None
            async with self._slots:
                await self._execute(claim)
        finally:
            self.running[job.id] -= 1
            if not claim.done.done():
                claim.done.set_result(None)
            waiting = self.queued.get(job.id)
            if waiting and not self.running[job.id] and self._timer is not None:
                self._start(waiting.pop(0))

    async def _execute(self, claim: Claim) -> None:
        """Run the target inside the run's ``job <name>`` span (a no-op when tracing is off).

        A run the schedule fired starts a trace of its own; one asked for by ``run_now`` is a child
        of that operation's span.
        """
        job = claim.job
        if claim.trigger != "manual":
            tracing.TRACEPARENT.set(None)  # this task's context only: not the trace that armed the timer
        attributes: dict[str, tracing.AttributeValue] = {
            "refactorbot.job.id": job.id,
            "refactorbot.job.name": job.name,
            "refactorbot.job.run_id": claim.run_id,
            "refactorbot.job.scheduled_for": datetime.fromtimestamp(claim.scheduled_for, UTC).isoformat(),
            "refactorbot.job.target": str(job.target.get("type", "")),
            "refactorbot.job.trigger": claim.trigger,
        }
        with tracing.span(f"job {job.name}", attributes=attributes) as span:
            status, attempts, error = await self._execute_run(claim)
            span.set_attribute("refactorbot.job.status", status)
            span.set_attribute("refactorbot.job.attempts", attempts)
            if status in ("failed", "timeout"):
                span.set_error(status, error)

    async def _execute_run(self, claim: Claim) -> tuple[str, int, str | None]:
        """Run the target with its timeout and retries; record the outcome (``interrupted`` if cancelled).

        Return the run's status, its attempts and its error.
        """
        job, policy = claim.job, claim.job.policy
        jitter = float(policy.get("jitter") or 0)
        if jitter:
            await asyncio.sleep(random.uniform(0, jitter))  # noqa: S311  jitter spreads runs, not a secret
        started = time.time()
        if claim.status == "queued":
            await self._write("UPDATE runs SET status = 'running' WHERE id = ?", (claim.run_id,))
        timeout = float(policy.get("timeout") or self.settings.default_timeout)
        attempts, status = 0, "failed"
        output = error = delivery = None
        steps: list[dict[str, Any]] | None = None
        try:
            for attempt in range(int(policy.get("retries") or 0) + 1):
                if attempt:
                    await asyncio.sleep(float(policy.get("retry_backoff") or 1) * 2 ** (attempt - 1))
                attempts = attempt + 1
                try:
                    async with asyncio.timeout(timeout):
                        outcome = await self._target(job)
                    status, output, delivery, steps, error = (
                        "succeeded",
                        outcome.output,
                        outcome.delivery,
                        outcome.steps,
                        None,
                    )
                    break
                except TimeoutError:
                    status, error = "timeout", f"timed out after {timeout:g}s (attempt {attempts})"
                except targets.RunSkipped as exc:
                    status, error = "skipped", exc.reason
                    break
                except targets.RunFailed as exc:
                    status, error, delivery, steps = "failed", exc.reason, exc.delivery, exc.steps
        except asyncio.CancelledError:
            status, error = "interrupted", "the scheduler stopped during the run"
            raise
        finally:
            await self._finish(claim, status, attempts, started, output, error, delivery, steps)
        return status, attempts, error

    async def _target(self, job: JobRow) -> targets.Outcome:
        if job.target.get("type") == "system":
            assert self.alerts is not None
            return await self.alerts.system_task(job.target["task"])
        return await targets.run_target(self.ctx, job.name, job.target, self.settings.output_limit)

    async def _finish(
        self,
        claim: Claim,
        status: str,
        attempts: int,
        started: float,
        output: str | None,
        error: str | None,
        delivery: str | None,
        steps: list[dict[str, Any]] | None,
    ) -> None:
        job, limit = claim.job, self.settings.output_limit
        ended = time.time()
        failed = status in ("failed", "timeout")
        job.last_run_at, job.last_status = started, status
        job.consecutive_failures = (
            job.consecutive_failures + 1 if failed else 0 if status == "succeeded" else job.consecutive_failures
        )
        keep = int(job.policy.get("keep_runs") or 100)
        assert self.db is not None

        assert self._records is not None
        await _finished(
            self._records.write(
                Finished(
                    run=(
                        status,
                        attempts,
                        started,
                        ended,
                        round((ended - started) * 1000, 3),
                        output[:limit] if output else output,
                        error[:limit] if error else error,
                        delivery,
                        json.dumps(steps) if steps is not None else None,
                        claim.run_id,
                    ),
                    job=(started, status, job.consecutive_failures, job.id),
                    trim=(job.id, job.id, keep),
                )
            )
        )
        if job.next_run_at is None and job.kind == "at" and self._timer is not None:
            self._arm(job)

    # -- misfire -----------------------------------------------------------------------------------

    async def _recover_missed(self, now: float) -> None:
        """Apply each job's misfire policy to the fires it missed while the scheduler was down."""
        fires: list[tuple[JobRow, list[float], str, float | None]] = []
        skipped: list[tuple[JobRow, float, int]] = []
        for job in self.jobs.values():
            if job.paused or job.next_run_at is None or job.next_run_at > now:
                continue
            policy = job.policy.get("misfire", "run_once")
            keep = int(job.policy.get("catch_up_max") or 1) if policy == "catch_up" else 1
            missed, count = self._missed(job, now, keep)
            following = job.next_after(now)
            if policy == "skip":
                skipped.append((job, missed[0], count))
                job.next_run_at = following
                self._arm(job)  # the timer still holds the missed due time
                continue
            if count > len(missed):
                skipped.append((job, job.next_run_at, count - len(missed)))
            trigger = "catch_up" if policy == "catch_up" else "misfire"
            fires.append((job, missed, trigger, following))
        if skipped:
            async with self.db.transaction() as conn:  # type: ignore[union-attr]
                for job, first, count in skipped:
                    why = f"missed {count} fire(s) while the scheduler was down (misfire = {job.policy.get('misfire')})"
                    await conn.execute(
                        "INSERT INTO runs (job_id, scheduled_for, trigger, status, claimed_at, error)"
                        " VALUES (?, ?, 'misfire', 'skipped', ?, ?) ON CONFLICT (job_id, scheduled_for) DO NOTHING",
                        (job.id, first, now, why),
                    )
                    await conn.execute("UPDATE jobs SET next_run_at = ? WHERE id = ?", (job.next_run_at, job.id))
        if fires:
            claims = await self._claim(fires)
            self._dispatch(claims)

    def _missed(self, job: JobRow, now: float, keep: int) -> tuple[list[float], int]:
        """Return the last ``keep`` fires due at or before ``now`` (from ``next_run_at``) and how many there were.

        Neither steps through every missed fire: an interval's are computed, a cron's counted
        (``count_cron``) and only the last ``keep`` listed, so a long standby costs milliseconds.
        """
        assert job.next_run_at is not None
        if job.kind == "every":
            every = float(job.spec)
            count = int((now - job.next_run_at) // every) + 1
            last = job.next_run_at + (count - 1) * every
            return [last - i * every for i in reversed(range(min(keep, count)))], count
        if job.kind == "cron":
            first = datetime.fromtimestamp(job.next_run_at, UTC)
            until = datetime.fromtimestamp(now, UTC)
            count = 1 + count_cron(job.spec, job.tz, first, until)
            fires = [fire.timestamp() for fire in last_cron(job.spec, job.tz, first, until, keep)]
            # next_run_at itself as it is stored: a fire claimed before a crash is refused by the
            # runs' unique (job, scheduled_for), which a value rounded through datetime would miss.
            return [job.next_run_at if abs(fire - job.next_run_at) < 0.001 else fire for fire in fires], count
        return [job.next_run_at], 1  # a one-shot fires once

    # -- operations: jobs --------------------------------------------------------------------------

    def _job(self, name: str) -> JobRow:
        for job in self.jobs.values():
            if job.name == name:
                return job
        raise JobNotFound(f"no job named {name!r} (refactorbot schedule list shows them)")

    def _view(self, job: JobRow) -> Job:
        return job.view(self.local_tz, self.running.get(job.id, 0) + len(self.queued.get(job.id, [])))

    @operation
    async def add(self, params: AddJob) -> Job:
        """Add a job: a schedule (cron in a zone, every, or a one-shot at) and a target; a past `at` is refused."""
        if params.name.startswith(SYSTEM_PREFIX):
            raise RefactorbotError(f"job names starting with {SYSTEM_PREFIX!r} are reserved for built-in jobs")
        tz = params.tz or self.local_tz
        now = time.time()
        try:
            zone(tz)
            if params.cron is not None:
                kind, spec = "cron", check_cron(params.cron, tz)
            elif params.every is not None:
                kind, spec = "every", repr(parse_every(params.every))
            else:
                assert params.at is not None
                kind, spec = "at", repr(parse_at(params.at, tz, datetime.fromtimestamp(now, UTC)).timestamp())
        except ScheduleError as exc:
            raise RefactorbotError(str(exc)) from None
        policy = JobPolicy.model_validate(params.model_dump(include=set(JobPolicy.model_fields))).model_dump()
        target = params.target.model_dump()
        probe = JobRow(
            0,
            params.name,
            kind,
            spec,
            tz,
            target,
            policy,
            params.description,
            False,
            params.paused,
            now,
            None,
            None,
            None,
            0,
            now,
        )
        probe.next_run_at = probe.next_after(now)
        assert self.db is not None
        if await self.db.scalar("SELECT 1 FROM jobs WHERE name = ?", (params.name,)):
            raise RefactorbotError(f"a job named {params.name!r} exists; remove it first or pick another name")
        probe.id = await self._write(
            "INSERT INTO jobs (name, kind, spec, tz, target, policy, description, paused, anchor, next_run_at,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                params.name,
                kind,
                spec,
                tz,
                json.dumps(target),
                json.dumps(policy),
                params.description,
                int(params.paused),
                now,
                probe.next_run_at,
                now,
                now,
            ),
        )
        self.jobs[probe.id] = probe
        self._arm(probe)
        return self._view(probe)

    @operation(name="list")
    async def list_jobs(self, params: ListJobs) -> JobList:
        """List jobs with their zone, next run (in it and in the host's zone), state and last status."""
        jobs = sorted(self.jobs.values(), key=lambda j: (j.system, j.name))
        views = [self._view(j) for j in jobs if params.include_system or not j.system]
        return JobList(local_tz=self.local_tz, jobs=views)

    @operation
    async def show(self, params: JobName) -> Job:
        """Show one job."""
        return self._view(self._job(params.name))

    @operation
    async def remove(self, params: JobName) -> Removed:
        """Remove a job and its history."""
        job = self._job(params.name)
        if job.system:
            raise RefactorbotError(f"{job.name} is built in: turn it off in [slices.scheduling] instead")
        await self._write("DELETE FROM jobs WHERE id = ?", (job.id,))
        del self.jobs[job.id]
        if self._timer is not None:
            self._timer.set(job.id, None)
        self.queued.pop(job.id, None)
        return Removed(removed=True)

    async def _set_paused(self, name: str, paused: bool) -> Job:
        job = self._job(name)
        now = time.time()
        job.paused = paused
        if not paused and job.next_run_at is not None and job.next_run_at <= now:
            job.next_run_at = job.next_after(now)  # fires due while paused are not made up
        await self._write(
            "UPDATE jobs SET paused = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
            (int(paused), job.next_run_at, now, job.id),
        )
        self._arm(job)
        return self._view(job)

    @operation
    async def pause(self, params: JobName) -> Job:
        """Pause a job: it does not fire until resumed."""
        return await self._set_paused(params.name, True)

    @operation
    async def resume(self, params: JobName) -> Job:
        """Resume a paused job from its next fire after now (fires due while paused are not made up)."""
        return await self._set_paused(params.name, False)

    @operation
    async def run_now(self, params: JobName) -> RunNowResult:
        """Run a job now, outside its schedule (its overlap policy applies); return the run once it ended."""
        job = self._job(params.name)
        if self._slots is None:
            raise RefactorbotError("the scheduler is not started")
        now = time.time()
        claims = await self._claim([(job, [now], "manual", job.next_run_at)])
        if not claims:
            raise RefactorbotError(f"{job.name} is running and its overlap policy is skip: not started")
        self._dispatch(claims)
        await claims[0].done
        return RunNowResult(run=await self._run_row(claims[0].run_id))

    async def _run_row(self, run_id: int) -> Any:
        assert self.db is not None
        row = await self.db.fetchone(
            f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?",  # noqa: S608  constant names; values are ? parameters
            (run_id,),
        )
        return run_of(row)

    @operation
    async def history(self, params: HistoryParams) -> RunList:
        """A job's runs, newest first: start, end, duration, status, output or error, delivery, steps."""
        job = self._job(params.name)
        assert self.db is not None
        sql = f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ?"  # noqa: S608  constant names; values are ? parameters
        args: list[Any] = [job.id]
        if params.status:
            sql += " AND r.status = ?"
            args.append(params.status)
        rows = await self.db.fetchall(sql + " ORDER BY r.id DESC LIMIT ?", (*args, params.limit))
        return RunList(runs=[run_of(r) for r in rows])

    @operation
    async def timeline(self, params: TimelineParams) -> Timeline:
        """Runs of the last ``hours`` and fires due in the next ``hours``, for the dashboard's timeline."""
        now = time.time()
        horizon = now + params.hours * 3600
        assert self.db is not None
        rows = await self.db.fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.claimed_at >= ?"  # noqa: S608  constant names; values are ? parameters
            " ORDER BY r.claimed_at DESC LIMIT ?",
            (now - params.hours * 3600, params.limit),
        )
        upcoming: list[Upcoming] = []
        for job in self.jobs.values():
            at, count = job.next_run_at, 0
            while not job.paused and at is not None and at <= horizon and count < params.per_job:
                upcoming.append(Upcoming(job=job.name, at=at))
                at, count = job.next_after(at), count + 1
        upcoming.sort(key=lambda u: u.at)
        runs = [run_of(r) for r in reversed(rows)]
        return Timeline(now=now, runs=runs, upcoming=upcoming[: params.limit])

    @operation
    async def status(self, params: NoParams) -> Status:
        """The scheduler at a glance: jobs, runs in progress, the next fire and the timer."""
        active = [j for j in self.jobs.values() if not j.paused and j.next_run_at is not None]
        firing = await self.db.scalar("SELECT count(*) FROM alerts WHERE state = 'firing'") if self.db else 0
        return Status(
            serving=self.serving,
            jobs=len(self.jobs),
            active=len(active),
            paused=sum(1 for j in self.jobs.values() if j.paused),
            running=sum(self.running.values()),
            next_run_at=min((j.next_run_at for j in active if j.next_run_at is not None), default=None),
            armed_for=self._timer.armed_for if self._timer is not None else None,
            timer=("held" if self._token is not None else "standby") if self._timer is not None else "off",
            timer_holder=self._lease.holder if self._lease is not None else None,
            local_tz=self.local_tz,
            alerts_firing=int(firing or 0),
        )

    # -- operations: alerts and diagnostics --------------------------------------------------------

    @operation(name="alerts")
    async def list_alerts(self, params: AlertsParams) -> AlertList:
        """Alerts, firing first, newest first."""
        assert self.alerts is not None
        return await self.alerts.list(params.state, params.limit)

    @operation
    async def check_alerts(self, params: NoParams) -> CheckResult:
        """Check every alert rule now: raise new alerts, resolve cleared ones."""
        assert self.alerts is not None
        return await self.alerts.check()

    @operation
    async def diagnostics(self, params: NoParams) -> DiagnosticsList:
        """The latest self-diagnostics result of each slice (run by the system.diagnostics job)."""
        assert self.alerts is not None
        return await self.alerts.latest_diagnostics()
