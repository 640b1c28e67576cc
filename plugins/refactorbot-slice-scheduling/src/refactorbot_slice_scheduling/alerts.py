"""Liveness and alerting: rules over what the host measures, and the built-in jobs that run them.

Rules: a slice down, degraded, restarting or without a heartbeat; an operation error rate over a
window; p95 latency; LLM spend past a share of a budget (the providers slice); a job failing N
times in a row; a slice's self-diagnostics failing. A condition that starts raises ``alert.<kind>``
(``state = "firing"``) once; while it holds it is repeated at most every ``alert_repeat`` seconds;
when it clears, ``alert.<kind>`` with ``state = "resolved"`` follows. At most
``alert_max_per_hour`` are sent; the rest are counted as suppressed. Each goes to the configured
chats through the communication slice's template, when that slice runs.
"""

from __future__ import annotations

import collections
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refactorbot import OperationFailed, SliceUnavailable

from refactorbot_slice_scheduling import heartbeat, targets
from refactorbot_slice_scheduling.models import Alert, AlertList, CheckResult, Diagnosis, DiagnosticsList

if TYPE_CHECKING:
    from refactorbot_slice_scheduling.slice import SchedulingSlice

DEFAULT_TEMPLATE = "[$state] $kind: $subject\n$message"
_COLUMNS = (
    "key, kind, subject, state, message, value, first_at, last_seen_at, last_sent_at, sent_count, suppressed,"
    " resolved_at, delivery"
)
Condition = tuple[str, str, str, float | None]  # kind, subject, message, value


class AlertManager:
    """Evaluates the alert rules and runs the built-in heartbeat, alerts and diagnostics jobs."""

    def __init__(self, owner: SchedulingSlice) -> None:
        self.owner = owner
        self.ctx = owner.ctx
        self.settings = owner.settings
        self._sent: collections.deque[float] = collections.deque()
        self._restarts: dict[str, int] = {}

    # -- built-in jobs -----------------------------------------------------------------------------

    async def system_task(self, task: str) -> targets.Outcome:
        """Run one built-in job."""
        if task == "heartbeat":
            return await self.heartbeat()
        if task == "alerts":
            found = await self.check()
            return targets.Outcome(json.dumps(found.model_dump(), sort_keys=True))
        if task == "diagnostics":
            return await self.diagnose()
        raise targets.RunFailed(f"unknown built-in task {task!r}")

    def workspace(self) -> Path:
        """Return the folder holding ``HEARTBEAT.md``."""
        configured = self.settings.workspace
        return Path(configured).expanduser() if configured else self.ctx.home / "workspace"

    async def heartbeat(self) -> targets.Outcome:
        """Read ``HEARTBEAT.md``; ask the agent when it lists active tasks; deliver what is not ``HEARTBEAT_OK``."""
        tz = self.settings.heartbeat_tz or self.owner.local_tz
        if not heartbeat.within(self.settings.heartbeat_active_hours, tz, datetime.now(UTC)):
            raise targets.RunSkipped(f"outside active hours {self.settings.heartbeat_active_hours} ({tz})")
        tasks, text = heartbeat.read_tasks(self.workspace())
        if not tasks:
            raise targets.RunSkipped(f"{heartbeat.HEARTBEAT_FILE} lists no active tasks")
        answer = await targets.prompt(self.ctx, "heartbeat", heartbeat.PROMPT.format(tasks=text))
        if heartbeat.is_ok(answer):
            return targets.Outcome(f"{heartbeat.OK} (dropped)")
        channel, chat = self.settings.heartbeat_channel, self.settings.heartbeat_chat_id
        if not channel or not chat:
            return targets.Outcome(answer, "not delivered: set heartbeat_channel and heartbeat_chat_id")
        delivery = await targets.send(self.ctx, channel, chat, text=answer)
        return targets.Outcome(answer, delivery)

    async def diagnose(self) -> targets.Outcome:
        """Run every running slice's self-diagnostics; keep the results; alert on failures."""
        host = self.ctx.host
        db = self.owner.db
        assert db is not None
        results = {}
        for slice_id in host.slice_ids() if host is not None else []:
            instance = host.instance(slice_id) if host is not None else None
            if instance is None:
                continue
            try:
                report = (await instance.run_self_diagnostics()).model_dump(mode="json")
                passed = bool(report.get("passed", all(c.get("passed") for c in report.get("checks", []))))
            except Exception as exc:  # a diagnostics routine that raises is itself a failed check
                report = {"error": f"{type(exc).__name__}: {exc}", "checks": []}
                passed = False
            results[slice_id] = passed
            await db.execute(
                "INSERT INTO diagnostics (slice_id, ran_at, passed, report) VALUES (?, ?, ?, ?)",
                (slice_id, time.time(), int(passed), json.dumps(report, default=str)),
            )
        await db.execute(
            "DELETE FROM diagnostics WHERE id NOT IN (SELECT id FROM diagnostics ORDER BY id DESC LIMIT 1000)"
        )
        await self.check()
        failed = sorted(s for s, ok in results.items() if not ok)
        summary = f"{len(results)} slice(s) checked; failed: {', '.join(failed) or 'none'}"
        return targets.Outcome(summary)

    async def latest_diagnostics(self) -> DiagnosticsList:
        """Return the latest result of each slice."""
        db = self.owner.db
        assert db is not None
        rows = await db.fetchall(
            "SELECT slice_id, ran_at, passed, report FROM diagnostics WHERE id IN"
            " (SELECT max(id) FROM diagnostics GROUP BY slice_id) ORDER BY slice_id"
        )
        return DiagnosticsList(
            results=[
                Diagnosis(
                    slice_id=r["slice_id"], ran_at=r["ran_at"], passed=bool(r["passed"]), report=json.loads(r["report"])
                )
                for r in rows
            ]
        )

    # -- rules -------------------------------------------------------------------------------------

    async def conditions(self) -> dict[str, Condition]:
        """Return every alert condition that holds now, by key."""
        found: dict[str, Condition] = {}
        self._slices(found)
        await self._operations(found)
        await self._spend(found)
        self._jobs(found)
        await self._diagnostics(found)
        return found

    def _slices(self, found: dict[str, Condition]) -> None:
        host = self.ctx.host
        if host is None:
            return
        for row in host.slice_status():
            sid, status, restarts = row["slice_id"], row["status"], int(row.get("restarts") or 0)
            error = f": {row['error']}" if row.get("error") else ""
            if status in ("failed", "stopped") and not host.stopping:
                found[f"slice_down:{sid}"] = ("slice_down", sid, f"slice {sid} is {status}{error}", None)
            elif status == "degraded":
                found[f"slice_degraded:{sid}"] = ("slice_degraded", sid, f"slice {sid} is degraded{error}", None)
            elif status == "running" and (row.get("heartbeat_age_s") or 0) > self.settings.stale_after:
                age = row["heartbeat_age_s"]
                found[f"slice_down:{sid}"] = ("slice_down", sid, f"slice {sid}: no heartbeat for {age:.0f}s", age)
            before = self._restarts.get(sid)
            if (before is not None and restarts > before) or (status in ("pending", "initializing") and restarts):
                found[f"slice_restarting:{sid}"] = (
                    "slice_restarting",
                    sid,
                    f"slice {sid} restarted ({restarts} restart(s))",
                    float(restarts),
                )
            self._restarts[sid] = restarts

    async def _operations(self, found: dict[str, Condition]) -> None:
        host = self.ctx.host
        if host is None:
            return
        db = await host.master_db()
        since = time.time() - self.settings.error_rate_window
        rows = await db.fetchall(
            "SELECT slice_id, count(*) AS n, sum(CASE WHEN success = 0 THEN 1 ELSE 0 END) AS errors"
            " FROM operation_log WHERE ts >= ? GROUP BY slice_id",
            (since,),
        )
        window = f"{self.settings.error_rate_window:g}s"
        for row in rows:
            sid, n, errors = row["slice_id"], row["n"], row["errors"] or 0
            if n < self.settings.error_rate_min_calls:
                continue
            rate = errors / n
            if rate >= self.settings.error_rate_threshold:
                found[f"error_rate:{sid}"] = (
                    "error_rate",
                    sid,
                    f"{sid}: {errors} of {n} operations failed in the last {window} ({rate:.0%})",
                    rate,
                )
            p95 = await db.scalar(
                "SELECT duration_ms FROM operation_log WHERE slice_id = ? AND ts >= ?"
                " ORDER BY duration_ms DESC LIMIT 1 OFFSET ?",
                (sid, since, int(n * 0.05)),
            )
            if p95 is not None and p95 >= self.settings.latency_p95_ms:
                found[f"latency:{sid}"] = (
                    "latency",
                    sid,
                    f"{sid}: p95 latency {p95:.0f} ms over the last {window}",
                    float(p95),
                )

    async def _spend(self, found: dict[str, Condition]) -> None:
        if not self.ctx.has_slice("providers"):
            return
        try:
            budgets = await self.ctx.call("providers.get_budgets")
        except (SliceUnavailable, OperationFailed) as exc:
            self.owner.log.warning("cannot read LLM budgets: %s", exc)
            return
        share = self.settings.spend_share
        for budget in budgets:
            who = budget.get("slice_id") or "all"
            for period, limit_key, spent_key in (
                ("daily", "daily_usd", "spent_today_usd"),
                ("monthly", "monthly_usd", "spent_month_usd"),
            ):
                limit, spent = budget.get(limit_key), float(budget.get(spent_key) or 0)
                if limit and spent >= share * limit:
                    found[f"spend:{who}:{period}"] = (
                        "spend",
                        who,
                        f"LLM spend of {who}: ${spent:.2f} of the {period} budget ${limit:.2f}"
                        f" ({spent / limit:.0%}, alert at {share:.0%})",
                        spent / limit,
                    )

    def _jobs(self, found: dict[str, Condition]) -> None:
        after = self.settings.failure_alert_after
        for job in self.owner.jobs.values():
            if job.consecutive_failures >= after:
                found[f"job_failing:{job.name}"] = (
                    "job_failing",
                    job.name,
                    f"job {job.name} failed {job.consecutive_failures} time(s) in a row (last: {job.last_status})",
                    float(job.consecutive_failures),
                )

    async def _diagnostics(self, found: dict[str, Condition]) -> None:
        for result in (await self.latest_diagnostics()).results:
            if not result.passed:
                checks = [c for c in result.report.get("checks", []) if not c.get("passed")]
                detail = "; ".join(f"{c.get('name')}: {c.get('detail')}" for c in checks) or result.report.get(
                    "error", ""
                )
                found[f"diagnostics:{result.slice_id}"] = (
                    "diagnostics",
                    result.slice_id,
                    f"self-diagnostics of {result.slice_id} failed: {detail}",
                    None,
                )

    # -- state -------------------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        """Evaluate the rules; raise new alerts, repeat old ones when due, resolve cleared ones."""
        db = self.owner.db
        assert db is not None
        now = time.time()
        current = await self.conditions()
        rows = {r["key"]: dict(r) for r in await db.fetchall(f"SELECT {_COLUMNS} FROM alerts")}  # noqa: S608  constant names; values are ? parameters
        raised, resolved = [], []
        for key, (kind, subject, message, value) in current.items():
            row = rows.get(key)
            if row is None or row["state"] == "resolved":
                row = {
                    "key": key,
                    "kind": kind,
                    "subject": subject,
                    "state": "firing",
                    "message": message,
                    "value": value,
                    "first_at": now,
                    "last_seen_at": now,
                    "last_sent_at": None,
                    "sent_count": 0,
                    "suppressed": 0,
                    "resolved_at": None,
                    "delivery": None,
                }
                raised.append(key)
                await self._notify(row, now)
            else:
                row.update(message=message, value=value, last_seen_at=now)
                if now - (row["last_sent_at"] or 0) >= self.settings.alert_repeat:
                    await self._notify(row, now)
            await self._save(row)
        for key, row in rows.items():
            if row["state"] == "firing" and key not in current:
                row.update(state="resolved", resolved_at=now, last_seen_at=now)
                resolved.append(key)
                if row["sent_count"]:  # one never announced (held back by the hourly limit) resolves quietly
                    await self._notify(row, now)
                await self._save(row)
        return CheckResult(firing=sorted(current), raised=raised, resolved=resolved)

    async def _save(self, row: dict[str, Any]) -> None:
        db = self.owner.db
        assert db is not None
        await db.execute(
            f"INSERT OR REPLACE INTO alerts ({_COLUMNS}) VALUES ({', '.join('?' * 13)})",  # noqa: S608  constant names; values are ? parameters
            tuple(row[c.strip()] for c in _COLUMNS.split(",")),
        )

    async def _notify(self, row: dict[str, Any], now: float) -> None:
        """Publish ``alert.<kind>`` and send it to the configured chats, within the hourly limit."""
        while self._sent and now - self._sent[0] > 3600:
            self._sent.popleft()
        if len(self._sent) >= self.settings.alert_max_per_hour:
            row["suppressed"] += 1
            return
        self._sent.append(now)
        row["last_sent_at"], row["sent_count"] = now, row["sent_count"] + 1
        payload = {k: row[k] for k in ("key", "kind", "subject", "state", "message", "value", "first_at")}
        payload["at"] = now
        await self.ctx.publish(f"alert.{row['kind']}", payload)
        row["delivery"] = await self._deliver(row) if self.settings.alert_channels else None

    async def _deliver(self, row: dict[str, Any]) -> str:
        if not self.ctx.has_slice("communication"):
            return "not delivered: the communication slice is not running"
        name = self.settings.alert_template
        try:
            listed = await self.ctx.call("communication.template_list")
            if name not in {t["name"] for t in listed["templates"]}:
                await self.ctx.call(
                    "communication.template_set",
                    name=name,
                    body=DEFAULT_TEMPLATE,
                    description="alerts raised by the scheduling slice",
                )
        except (SliceUnavailable, OperationFailed) as exc:
            return f"failed: {exc}"
        variables = {"state": row["state"], "kind": row["kind"], "subject": row["subject"], "message": row["message"]}
        outcomes = []
        for address in self.settings.alert_channels:
            channel, _, chat = address.partition(":")
            try:
                outcomes.append(await targets.send(self.ctx, channel, chat, template=name, variables=variables))
            except targets.RunFailed as exc:
                outcomes.append(f"{address}: {exc.delivery or exc.reason}")
        return "; ".join(outcomes)

    async def list(self, state: str, limit: int) -> AlertList:
        """Return alerts, firing first, newest first."""
        db = self.owner.db
        assert db is not None
        where = "" if state == "all" else " WHERE state = ?"
        args: tuple[Any, ...] = () if state == "all" else (state,)
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM alerts{where} ORDER BY state = 'firing' DESC, last_seen_at DESC LIMIT ?",  # noqa: S608  constant names; values are ? parameters
            (*args, limit),
        )
        return AlertList(alerts=[Alert(**dict(r)) for r in rows])
