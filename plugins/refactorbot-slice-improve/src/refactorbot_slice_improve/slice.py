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
from pathlib import Path
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

from refactorbot_slice_improve import apply, code, store
from refactorbot_slice_improve.evaluation import compare
from refactorbot_slice_improve.models import (
    BUSY_STATUSES,
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
        self._coding: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Arm the end of the evaluation window of every change being evaluated; follow code changes in Refactory."""
        for change in await store.list_changes(self._db, "evaluating", None, 1000):
            self._arm(change)
        for change in await store.list_changes(self._db, "coding", None, 1000):
            self._follow(change.id)

    async def stop(self) -> None:
        """Disarm the evaluation timers and stop following code changes (both resume at the next start)."""
        timers, self._timers = [*self._timers.values(), *self._coding.values()], {}
        self._coding = {}
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
        if change.status not in ("pending", "approved", "ready_to_land"):
            raise RefactorbotError(
                f"change {change.id} is {change.status}: only pending, approved or ready_to_land changes are rejected"
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
        """Undo a kept or evaluating change (the slice's newest deployed one of that target; code: a revert commit)."""
        change = await store.get_change(self._db, params.id)
        if change.status not in ("kept", "evaluating"):
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
    async def land(self, params: DecideParams) -> Change:
        """Land a ``ready_to_land`` code change: fast-forward its branch, hot-reload the slice, evaluate it."""
        change = await store.get_change(self._db, params.id)
        if change.status != "ready_to_land":
            raise RefactorbotError(f"change {change.id} is {change.status}, not ready_to_land")
        async with self._lock(change.slice_id):
            await self._land_and_deploy(change.id, actor=params.by)
        return await store.get_change(self._db, change.id)

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
                "SELECT id FROM changes WHERE slice_id = ? AND status IN (?, ?) LIMIT 1", (slice_id, *BUSY_STATUSES)
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
        """Create the Refactory request of a code change and follow it in the background (``coding``)."""
        if not self.ctx.has_slice("refactory"):
            raise apply.ChangeRefused("code changes go through Refactory: install refactorbot-slice-refactory")
        row = next((r for r in self._host().slice_status() if r["slice_id"] == change.slice_id), None)
        if row is None:
            raise apply.ChangeRefused(f"slice '{change.slice_id}' is not installed and enabled")
        repo, folder = apply.source_checkout(row["plugin"])
        dist_folder = folder.relative_to(repo).as_posix()
        state: dict[str, Any] = {"repo": str(repo), "distribution": row["plugin"], "dist_folder": dist_folder}
        git = self._git(state)
        branch = await git.checked_out()
        if not await git.clean():
            raise apply.ChangeRefused(f"{repo} has uncommitted changes on {branch}: commit or discard them first")
        tests = self.config.code_test_commands.get(change.slice_id) or code.default_test_command(dist_folder)
        payload = apply.code_request(change, row["plugin"], repo, branch, tests)
        request = await self.ctx.call("refactory.create_request", **payload)
        state.update(branch=branch, test_command=tests, handed_off_at=time.time())
        await store.update_change(self._db, change.id, status="coding", refactory_request=request["id"], previous=state)
        await store.audit(
            self._db,
            "handoff",
            f"Refactory request {request['id']} against {repo} (branch {branch});"
            f" the distribution's tests: {' '.join(tests)}",
            actor=SELF,
            change_id=change.id,
        )
        self._follow(change.id)

    def _git(self, state: dict[str, Any]) -> code.Git:
        return code.Git(Path(state["repo"]), self.ctx.home, code.GIT_TIMEOUT)

    def _follow(self, change_id: int) -> None:
        if change_id in self._coding:
            return
        self._coding[change_id] = asyncio.get_running_loop().create_task(
            self._code_run(change_id), name=f"improve code change {change_id}"
        )

    async def _code_run(self, change_id: int) -> None:
        """Plan, orchestrate and wait in Refactory; run the distribution's tests; land or stop at ready_to_land."""
        try:
            change = await store.get_change(self._db, change_id)
            state = dict(change.previous or {})
            deadline = float(state.get("handed_off_at") or time.time()) + self.config.code_timeout
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + max(0.0, deadline - time.time())):
                report = await self._orchestrated(change, state)
            problem = code.report_problem(report, state.get("orchestration_status", ""))
            if problem is not None:
                raise apply.ChangeRefused(f"Refactory plan {state['plan_id']}: {problem}")
            await self._test_branch(change, state)
            if self.config.code_land:
                async with self._lock(change.slice_id):
                    await self._land_and_deploy(change_id, actor=SELF)
            else:
                async with self._lock(change.slice_id):
                    await store.update_change(self._db, change_id, status="ready_to_land")
                    await store.audit(
                        self._db,
                        "ready",
                        f"ready to land: {state['integration']} at {state['integration_head'][:12]} onto"
                        f" {state['branch']} in {state['repo']} (refactorbot improve land {change_id})",
                        actor=SELF,
                        change_id=change_id,
                    )
                    await self.ctx.publish(
                        "improve.ready_to_land",
                        {"change_id": change_id, "slice_id": change.slice_id, "branch": state["integration"]},
                    )
                    await self._advance(change.slice_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the change records why it stopped; the next approved change goes on
            if isinstance(exc, TimeoutError):
                reason = f"not finished in Refactory within code_timeout ({self.config.code_timeout:g}s)"
            elif isinstance(exc, RefactorbotError):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
            await self._code_failed(change_id, reason)
        finally:
            self._coding.pop(change_id, None)

    async def _code_failed(self, change_id: int, reason: str) -> None:
        change = await store.get_change(self._db, change_id)
        async with self._lock(change.slice_id):
            current = await store.get_change(self._db, change_id)
            if current.status in ("coding", "ready_to_land", "approved"):
                await store.update_change(self._db, change_id, status="failed", reason=one_line(reason))
                await store.audit(self._db, "failure", reason, actor=SELF, change_id=change_id)
                await self.ctx.publish("improve.failed", {"change_id": change_id, "reason": one_line(reason)})
            await self._advance(change.slice_id)

    async def _orchestrated(self, change: Change, state: dict[str, Any]) -> dict[str, Any] | None:
        """Plan and orchestrate the change's request (once each, across restarts); return the report at its end."""
        if "plan_id" not in state:
            planned = await self.ctx.call(
                "refactory.create_plan", request_id=change.refactory_request, planner=self.config.code_planner
            )
            state["plan_id"] = planned["id"]
            await store.update_change(self._db, change.id, previous=state)
            fallback = f" WITHOUT a model: {planned['planner_fallback']}" if planned.get("planner_fallback") else ""
            titles = "; ".join(t["title"] for t in planned["tasks"])
            await store.audit(
                self._db,
                "refactory",
                f"plan {planned['id']} ({planned['planner']} planner{fallback}) at {planned['base_commit'][:12]}:"
                f" {len(planned['tasks'])} task(s): {titles}",
                actor=SELF,
                change_id=change.id,
            )
        finished = asyncio.Event()

        async def on_finished(event: Any) -> None:
            if event.payload.get("id") == state.get("orchestration_id"):
                finished.set()

        unsubscribe = self._host().bus.subscribe("refactory.orchestration.finished", on_finished)
        try:
            if "orchestration_id" not in state:
                started = await self.ctx.call(
                    "refactory.orchestrate", plan_id=state["plan_id"], agents=self.config.code_agents, land=False
                )
                state["orchestration_id"] = started["id"]
                await store.update_change(self._db, change.id, previous=state)
                await store.audit(
                    self._db,
                    "refactory",
                    f"orchestration {started['id']}: {self.config.code_agents} coder(s), merge queue into"
                    f" {started['integration']}",
                    actor=SELF,
                    change_id=change.id,
                )
            while True:
                orch = await self.ctx.call("refactory.get_orchestration", id=state["orchestration_id"])
                if orch["status"] != "running":
                    break
                await finished.wait()
                finished.clear()
        finally:
            unsubscribe()
        report = orch.get("report") or {}
        state.update(
            orchestration_status=orch["status"],
            integration=orch["integration"],
            integration_head=report.get("integration_head") or orch["integration_head"],
        )
        await store.update_change(self._db, change.id, previous=state)
        merged = ", ".join(f"task {m['task']} ({m['attempts']} tries)" for m in report.get("merged", []))
        await store.audit(
            self._db,
            "refactory",
            f"orchestration {orch['id']} {orch['status']}: merged {merged or 'nothing'};"
            f" {len(report.get('failed', []))} failed; the tests on {orch['integration']} are"
            f" {'green' if report.get('tests_green') else 'red'}",
            actor=SELF,
            change_id=change.id,
        )
        return report or None

    async def _test_branch(self, change: Change, state: dict[str, Any]) -> None:
        """Run the distribution's own tests at the integration head; ``ChangeRefused`` when they fail."""
        checkout = Path(state["repo"])
        git = self._git(state)
        paths = code.import_paths(state["distribution"], checkout)
        outcome = await code.test_branch(
            git,
            state["integration_head"],
            list(state["test_command"]),
            paths,
            self.ctx.home / "improve" / "worktrees",
            f"change-{change.id}",
            self.config.test_timeout,
        )
        head = state["integration_head"][:12]
        if not outcome.ok:
            await store.update_change(self._db, change.id, candidate=outcome.output)
            raise apply.ChangeRefused(
                f"the distribution's tests failed at {head} (exit {outcome.code}): {code.summary(outcome)}"
            )
        found = f"the distribution's tests passed at {head}: {code.summary(outcome)}"
        await store.update_change(self._db, change.id, candidate=found)
        await store.audit(self._db, "test", found, actor=SELF, change_id=change.id)

    async def _land_and_deploy(self, change_id: int, *, actor: str) -> None:
        """Fast-forward the checkout to the tested head, hot-reload the slice, start evaluating (lock held)."""
        change = await store.get_change(self._db, change_id)
        busy = await self._db.scalar(
            "SELECT id FROM changes WHERE slice_id = ? AND id != ? AND status = 'evaluating' LIMIT 1",
            (change.slice_id, change.id),
        )
        if busy is not None:
            raise apply.ChangeRefused(f"change {busy} of {change.slice_id} is being evaluated: land this one after it")
        state = dict(change.previous or {})
        git = self._git(state)
        before = await self._before_metrics(change)
        old, new = await code.land(git, state["branch"], state["integration_head"])
        state.update(old_head=old, new_head=new)
        diff = (await git.run("diff", "--no-color", "--no-ext-diff", old, new)).output
        await store.update_change(self._db, change.id, previous=state, diff=diff)
        await store.audit(
            self._db,
            "land",
            f"{state['branch']} fast-forwarded {old[:12]} -> {new[:12]} in {state['repo']}",
            actor=actor,
            change_id=change.id,
        )
        try:
            await self._reload(change.slice_id)
        except Exception as exc:  # the landed code does not start: revert it, reload the old code
            why = f"the reload with the landed code failed: {one_line(str(exc))}"
            with contextlib.suppress(Exception):
                await self._undo(await store.get_change(self._db, change.id))
            await store.update_change(self._db, change.id, status="failed", reason=why)
            await store.audit(self._db, "failure", why, actor=SELF, change_id=change.id)
            return
        now = time.time()
        done = await store.update_change(
            self._db,
            change.id,
            status="evaluating",
            deployed_at=now,
            evaluate_by=now + self.config.eval_window,
            before_metrics=before,
        )
        await store.audit(
            self._db,
            "deploy",
            f"deployed {_summary(done)} by hot reload at {new[:12]};"
            f" evaluating until {self.config.min_calls} calls or {self.config.eval_window:g}s",
            actor=SELF,
            change_id=change.id,
        )
        await self.ctx.publish("improve.deployed", {"change_id": change.id, "slice_id": change.slice_id})
        self._arm(done)

    async def _reload(self, slice_id: str) -> None:
        await self._host().reload_slice(slice_id)

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
        else:
            state = dict(change.previous or {})
            if not state.get("new_head"):
                raise apply.ChangeRefused(f"change {change.id} was never landed: nothing to revert")
            git = self._git(state)
            commit = await code.revert(
                git,
                state["branch"],
                state["old_head"],
                state["new_head"],
                f"Revert self-improvement change {change.id} of {change.slice_id}\n\n"
                f"Restores {state['old_head'][:12]}: {change.title}"[:2000],
            )
            state["revert_commit"] = commit
            await store.update_change(self._db, change.id, previous=state)
            await store.audit(
                self._db,
                "revert",
                f"{state['branch']} at {commit[:12]}: the tree of {state['old_head'][:12]} again",
                actor=SELF,
                change_id=change.id,
            )
            await self._reload(change.slice_id)

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
