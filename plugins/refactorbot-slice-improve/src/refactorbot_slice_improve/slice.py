"""The improve slice: improvement cycles for any slice, with approval, deploy, evaluation and rollback.

A cycle asks the slice for its ``ImprovementPlan`` (``self_improve``: its brain, or rules) and
stores each action as a *change*: ``pending`` until approved (``approve``; ``auto_apply`` kinds
at low risk are approved at once) or ``rejected``. An approved change is tried on a candidate,
deployed (a config change by hot reload), then ``evaluating``: once ``min_calls`` calls came in
(``evaluate``), or when ``eval_window`` ends, the slice's metrics after the deploy are compared
with those before it; a worse change is rolled back automatically, a better or equal one kept.
One change per slice is deployed at a time; the others wait, approved, in order. Every step is
written to the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from refactorbot import (
    AtomicSlice,
    ImprovementFeedback,
    RefactorbotError,
    SliceUnavailable,
    WindowMetrics,
    one_line,
    operation,
    window_metrics,
)

from refactorbot_slice_improve import apply, store
from refactorbot_slice_improve.evaluation import compare
from refactorbot_slice_improve.models import (
    RISKS,
    AuditEntry,
    AuditParams,
    Change,
    ChangeId,
    Cycle,
    CycleId,
    DecideParams,
    Evaluated,
    EvaluateParams,
    ImproveConfig,
    ListChangesParams,
    ListCyclesParams,
    Override,
    RunCycleParams,
)

#: The actor of steps the slice takes by itself in the audit trail.
SELF = "improve"


class ImproveSlice(AtomicSlice):
    """Self-improvement of slices: cycles, approval, candidate tests, hot-reload deploys, evaluation, rollback."""

    slice_id = "improve"
    Config = ImproveConfig
    config: ImproveConfig

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Arm the end of the evaluation window of every change being evaluated."""
        for change in await store.list_changes(self._db, "evaluating", None, 1000):
            self._arm(change)

    async def stop(self) -> None:
        """Disarm the evaluation timers (they are armed again at the next start)."""
        timers, self._timers = list(self._timers.values()), {}
        for task in timers:
            task.cancel()
        for task in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def _db(self) -> Any:
        assert self.db is not None
        return self.db

    def _host(self) -> Any:
        if self.ctx.host is None:
            raise SliceUnavailable("the improve slice runs without a host: no slices to improve")
        return self.ctx.host

    def _lock(self, slice_id: str) -> asyncio.Lock:
        return self._locks.setdefault(slice_id, asyncio.Lock())

    # -- operations: cycles ------------------------------------------------------------------

    @operation
    async def run_cycle(self, params: RunCycleParams) -> Cycle:
        """Ask a slice for its improvement plan and store its actions as changes (approved at once per ``auto_apply``)."""
        host = self._host()
        instance = host.instance(params.slice_id)
        if instance is None:
            raise SliceUnavailable(f"slice '{params.slice_id}' is not running")
        feedback = params.feedback or ImprovementFeedback(source=params.trigger)
        metrics = await window_metrics(host, params.slice_id, time.time() - self.config.evidence_window)
        try:
            plan = await instance.self_improve(feedback)
        except Exception as exc:  # the slice's own self_improve broke: the cycle records why
            reason = f"{params.slice_id}.self_improve raised {type(exc).__name__}: {one_line(str(exc))}"
            cycle_id = await store.add_failed_cycle(self._db, params.slice_id, params.trigger, reason)
            await store.audit(self._db, "failure", reason, actor=SELF, cycle_id=cycle_id)
            return await store.get_cycle(self._db, cycle_id)
        cycle_id = await store.add_cycle(self._db, params.slice_id, params.trigger, plan, metrics)
        await store.audit(
            self._db,
            "cycle",
            f"{params.trigger} cycle for {params.slice_id}: {metrics.calls} calls, error rate {metrics.error_rate:.1%},"
            f" p95 {metrics.p95_ms:.1f} ms over the last {self.config.evidence_window:g}s",
            actor=params.trigger,
            cycle_id=cycle_id,
        )
        cycle = await store.get_cycle(self._db, cycle_id)
        advice = len(plan.proposals) - len(cycle.changes)
        await store.audit(
            self._db,
            "plan",
            f"{len(cycle.changes)} action(s), {advice} piece(s) of advice: {plan.notes}",
            actor=SELF,
            cycle_id=cycle_id,
        )
        for change in cycle.changes:
            await store.audit(self._db, "plan", _summary(change), actor=SELF, cycle_id=cycle_id, change_id=change.id)
            if self._auto_approved(change):
                await store.update_change(self._db, change.id, status="approved", decided_by="auto_apply")
                await store.audit(
                    self._db,
                    "approval",
                    f"approved by auto_apply ({change.kind}, risk {change.risk})",
                    actor="auto_apply",
                    change_id=change.id,
                )
        await self.ctx.publish("improve.cycle_planned", {"cycle_id": cycle_id, "slice_id": params.slice_id})
        async with self._lock(params.slice_id):
            await self._advance(params.slice_id)
        return await store.get_cycle(self._db, cycle_id)

    @operation
    async def cycles(self, params: ListCyclesParams) -> list[Cycle]:
        """Return cycles with their changes, newest first."""
        return await store.list_cycles(self._db, params.slice_id, params.limit)

    @operation
    async def show(self, params: CycleId) -> Cycle:
        """Return one cycle: its plan, changes and audit trail."""
        return await store.get_cycle(self._db, params.id)

    @operation
    async def audit(self, params: AuditParams) -> list[AuditEntry]:
        """Return the audit trail of a cycle, of a change, or the newest entries."""
        return await store.audit_trail(self._db, params.cycle_id, params.change_id, params.limit)

    # -- operations: changes -----------------------------------------------------------------

    @operation
    async def changes(self, params: ListChangesParams) -> list[Change]:
        """Return changes, newest first (``status``: pending ones wait for approval)."""
        return await store.list_changes(self._db, params.status, params.slice_id, params.limit)

    @operation
    async def change(self, params: ChangeId) -> Change:
        """Return one change: its diff, candidate test, metrics before and after, verdict."""
        return await store.get_change(self._db, params.id)

    @operation
    async def approve(self, params: DecideParams) -> Change:
        """Approve a pending change: it is tried, deployed and evaluated (after the slice's current one)."""
        change = await store.get_change(self._db, params.id)
        if change.status != "pending":
            raise RefactorbotError(f"change {change.id} is {change.status}, not pending")
        async with self._lock(change.slice_id):
            await store.update_change(
                self._db, change.id, status="approved", decided_by=params.by, reason=params.reason or None
            )
            await store.audit(self._db, "approval", params.reason or "approved", actor=params.by, change_id=change.id)
            await self._advance(change.slice_id)
        return await store.get_change(self._db, change.id)

    @operation
    async def reject(self, params: DecideParams) -> Change:
        """Reject a pending or approved (not yet deployed) change."""
        change = await store.get_change(self._db, params.id)
        if change.status not in ("pending", "approved"):
            raise RefactorbotError(
                f"change {change.id} is {change.status}: only pending or approved changes are rejected"
            )
        await store.audit(self._db, "rejection", params.reason or "rejected", actor=params.by, change_id=change.id)
        return await store.update_change(
            self._db, change.id, status="rejected", decided_by=params.by, reason=params.reason or None
        )

    @operation
    async def evaluate(self, params: EvaluateParams) -> Evaluated:
        """Evaluate deployed changes that have ``min_calls`` calls since (all with ``final``); roll back worse ones."""
        if params.id is not None:
            change = await store.get_change(self._db, params.id)
            if change.status != "evaluating":
                raise RefactorbotError(f"change {change.id} is {change.status}, not being evaluated")
            targets = [change]
        else:
            targets = await store.list_changes(self._db, "evaluating", None, 1000)
        result = Evaluated()
        for change in targets:
            async with self._lock(change.slice_id):
                done, line = await self._conclude(change.id, final=params.final)
                if done is None:
                    result.waiting.append(line)
                else:
                    result.concluded.append(done)
                    await self._advance(change.slice_id)
        return result

    @operation
    async def rollback(self, params: DecideParams) -> Change:
        """Undo a kept or evaluating config or prompt change (the slice's newest deployed one)."""
        change = await store.get_change(self._db, params.id)
        if change.status not in ("kept", "evaluating") or change.kind == "code":
            raise RefactorbotError(
                f"change {change.id} is a {change.status} {change.kind} change: nothing to undo here"
            )
        async with self._lock(change.slice_id):
            newer = await self._db.scalar(
                "SELECT id FROM changes WHERE slice_id = ? AND id > ? AND status IN ('evaluating', 'kept')"
                " AND target = ? AND kind = ? ORDER BY id LIMIT 1",
                (change.slice_id, change.id, change.target, change.kind),
            )
            if newer is not None:
                raise RefactorbotError(f"change {newer} changed {change.target} since: roll that one back first")
            self._disarm(change.id)
            await self._undo(change)
            await store.audit(
                self._db, "rollback", params.reason or "rolled back by hand", actor=params.by, change_id=change.id
            )
            done = await store.update_change(
                self._db,
                change.id,
                status="rolled_back",
                decided_by=params.by,
                reason=params.reason or "rolled back by hand",
                concluded_at=time.time(),
            )
            await self._advance(change.slice_id)
        return done

    @operation
    async def overrides(self) -> list[Override]:
        """Return the setting overrides every slice runs with (``<home>/overrides/<id>.json``)."""
        settings = self.ctx.settings
        if settings is None:
            return []
        folder = settings.home / "overrides"
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            found.append(Override(slice_id=path.stem, settings=apply.read_overrides(path), file=str(path)))
        return found

    # -- the pipeline ------------------------------------------------------------------------

    def _auto_approved(self, change: Change) -> bool:
        allowed = RISKS.index(change.risk) <= RISKS.index(self.config.auto_apply_max_risk)
        return change.kind in self.config.auto_apply and allowed

    async def _advance(self, slice_id: str) -> None:
        """Deploy the slice's oldest approved change unless one is being evaluated (the lock is held)."""
        while True:
            busy = await self._db.scalar(
                "SELECT id FROM changes WHERE slice_id = ? AND status = 'evaluating' LIMIT 1", (slice_id,)
            )
            row = await self._db.fetchone(
                "SELECT * FROM changes WHERE slice_id = ? AND status = 'approved' ORDER BY id LIMIT 1", (slice_id,)
            )
            if busy is not None or row is None:
                return
            change = store.change_of(row)
            try:
                await self._deploy(change)
            except Exception as exc:  # a refused or failed deploy is recorded; the next approved change goes on
                reason = str(exc) if isinstance(exc, RefactorbotError) else f"{type(exc).__name__}: {exc}"
                await store.update_change(self._db, change.id, status="failed", reason=one_line(reason))
                await store.audit(self._db, "failure", reason, actor=SELF, change_id=change.id)
                await self.ctx.publish("improve.failed", {"change_id": change.id, "reason": one_line(reason)})

    async def _deploy(self, change: Change) -> None:
        if change.slice_id == self.slice_id:
            raise apply.ChangeRefused("the improve slice does not deploy changes to itself")
        if change.kind == "code":
            await self._hand_off(change)
            return
        before = await self._before_metrics(change)
        if change.kind == "config":
            fields = await self._deploy_config(change)
        else:
            fields = await self._deploy_prompt(change)
        now = time.time()
        done = await store.update_change(
            self._db,
            change.id,
            status="evaluating",
            deployed_at=now,
            evaluate_by=now + self.config.eval_window,
            before_metrics=before,
            **fields,
        )
        await store.audit(
            self._db,
            "deploy",
            f"deployed {_summary(done)}; evaluating until {self.config.min_calls} calls or {self.config.eval_window:g}s",
            actor=SELF,
            change_id=change.id,
        )
        await self.ctx.publish("improve.deployed", {"change_id": change.id, "slice_id": change.slice_id})
        self._arm(done)

    async def _before_metrics(self, change: Change) -> WindowMetrics:
        """Return the slice's metrics since its settings last changed (at most ``evidence_window`` back)."""
        now = time.time()
        since = now - self.config.evidence_window
        epoch = await store.config_epoch(self._db, change.slice_id, change.id)
        return await window_metrics(self._host(), change.slice_id, max(since, epoch or since), now)

    async def _deploy_config(self, change: Change) -> dict[str, Any]:
        host, settings = self._host(), self.ctx.settings
        action = store.action_of(change)
        config = apply.config_candidate(host, settings, change.slice_id, action)
        found = await apply.try_candidate(
            host.slice_class(change.slice_id), change.slice_id, config, settings, self.config.candidate_timeout
        )
        await store.audit(self._db, "candidate", found, actor=SELF, change_id=change.id)
        path = settings.overrides_file(change.slice_id)
        before = apply.read_overrides(path)
        after = {**before, change.target: config.model_dump(mode="json")[change.target]}
        apply.write_overrides(path, after)
        try:
            await self._reload(change.slice_id)
            running = host.instance(change.slice_id)
            if running is None or getattr(running.config, change.target) != getattr(config, change.target):
                raise apply.ChangeRefused(f"the reloaded slice does not run with {change.target}={change.change!r}")
        except Exception:
            apply.write_overrides(path, before)
            with contextlib.suppress(Exception):  # the reload failure is what the change records
                await self._reload(change.slice_id)
            raise
        return {
            "previous": apply.previous_setting(before, change.target),
            "diff": apply.config_diff(path, before, after),
            "candidate": found,
        }

    async def _deploy_prompt(self, change: Change) -> dict[str, Any]:
        if not isinstance(change.change, str):
            raise apply.ChangeRefused("a prompt change must be the template's whole new text")
        current = await self.ctx.call(f"{change.slice_id}.get_prompt", name=change.target)
        found = apply.check_prompt(current["content"], change.change)
        await store.audit(self._db, "candidate", found, actor=SELF, change_id=change.id)
        saved = await self.ctx.call(
            f"{change.slice_id}.set_prompt",
            name=change.target,
            content=change.change,
            note=f"self-improvement change {change.id}",
        )
        return {
            "previous": {"version": current["version"], "new_version": saved["version"]},
            "diff": apply.text_diff(change.target, current["content"], change.change),
            "candidate": found,
        }

    async def _hand_off(self, change: Change) -> None:
        if not self.ctx.has_slice("refactory"):
            raise apply.ChangeRefused("code changes go through Refactory: install refactorbot-slice-refactory")
        row = next((r for r in self._host().slice_status() if r["slice_id"] == change.slice_id), None)
        if row is None:
            raise apply.ChangeRefused(f"slice '{change.slice_id}' is not installed and enabled")
        repo = apply.source_checkout(row["plugin"])
        request = await self.ctx.call("refactory.create_request", **apply.code_request(change, row["plugin"], repo))
        await store.update_change(self._db, change.id, status="handed_off", refactory_request=request["id"])
        await store.audit(
            self._db,
            "handoff",
            f"Refactory request {request['id']} against {repo}: planned, coded, tested and merged there;"
            f" reload the slice once it has landed (refactorbot slices reload {change.slice_id})",
            actor=SELF,
            change_id=change.id,
        )

    async def _reload(self, slice_id: str) -> None:
        reload = getattr(self._host(), "reload_slice", None)
        if reload is None:
            raise apply.ChangeRefused("this host cannot hot-reload a slice")
        await reload(slice_id)

    async def _undo(self, change: Change) -> None:
        if change.kind == "config":
            settings = self.ctx.settings
            path = settings.overrides_file(change.slice_id)
            apply.write_overrides(
                path, apply.restored(apply.read_overrides(path), change.target, change.previous or {})
            )
            await self._reload(change.slice_id)
        elif change.kind == "prompt":
            version = (change.previous or {}).get("version")
            await self.ctx.call(f"{change.slice_id}.rollback_prompt", name=change.target, version=version)

    async def _conclude(self, change_id: int, *, final: bool) -> tuple[Change | None, str]:
        """Evaluate one deployed change (the slice's lock is held); ``(None, why)`` while it waits for calls."""
        change = await store.get_change(self._db, change_id)
        if change.status != "evaluating" or change.deployed_at is None or change.before_metrics is None:
            return None, f"change {change_id} is {change.status}"
        now = time.time()
        after = await window_metrics(self._host(), change.slice_id, change.deployed_at, now)
        due = final or now >= (change.evaluate_by or now)
        if after.calls < self.config.min_calls and not due:
            return None, f"change {change.id}: {after.calls} of {self.config.min_calls} calls since the deploy"
        verdict, why = compare(change.before_metrics, after, self.config)
        await store.audit(self._db, "evaluation", f"{verdict}: {why}", actor=SELF, change_id=change.id)
        status = "kept"
        if verdict == "worse":
            try:
                await self._undo(change)
            except Exception as exc:  # the change stays deployed: say so loudly
                reason = f"rollback failed, the change is still live: {type(exc).__name__}: {one_line(str(exc))}"
                await store.audit(self._db, "failure", reason, actor=SELF, change_id=change.id)
                done = await store.update_change(
                    self._db, change.id, status="failed", reason=reason, verdict=verdict, after_metrics=after
                )
                self._disarm(change.id)
                return done, reason
            status = "rolled_back"
            await store.audit(
                self._db, "rollback", f"rolled back automatically: {why}", actor=SELF, change_id=change.id
            )
        else:
            await store.audit(self._db, "keep", f"kept ({verdict})", actor=SELF, change_id=change.id)
        done = await store.update_change(
            self._db,
            change.id,
            status=status,
            verdict=verdict,
            after_metrics=after,
            concluded_at=time.time(),
            reason=why,
        )
        self._disarm(change.id)
        await self.ctx.publish(
            "improve.evaluated",
            {"change_id": change.id, "slice_id": change.slice_id, "verdict": verdict, "status": status},
        )
        return done, why

    # -- evaluation timers -------------------------------------------------------------------

    def _arm(self, change: Change) -> None:
        if change.evaluate_by is None or change.id in self._timers:
            return
        delay = max(0.0, change.evaluate_by - time.time())
        self._timers[change.id] = asyncio.get_running_loop().create_task(
            self._at_window_end(change.id, change.slice_id, delay), name=f"improve evaluate {change.id}"
        )

    def _disarm(self, change_id: int) -> None:
        task = self._timers.pop(change_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _at_window_end(self, change_id: int, slice_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            async with self._lock(slice_id):
                done, _ = await self._conclude(change_id, final=True)
                if done is not None:
                    await self._advance(slice_id)
        except Exception:  # logged; `refactorbot improve evaluate` concludes it by hand
            self.log.exception("evaluating change %d at the end of its window failed", change_id)
        finally:
            self._timers.pop(change_id, None)


def _summary(change: Change) -> str:
    if change.kind == "config":
        what = f"{change.target} = {change.change!r}"
    elif change.kind == "prompt":
        what = f"prompt '{change.target}' ({len(str(change.change))} characters)"
    else:
        what = f"code: {change.target}"
    return f"change {change.id}: {change.kind} {what} (risk {change.risk}): {change.expected_effect}"
