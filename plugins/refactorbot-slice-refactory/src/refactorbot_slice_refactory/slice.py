"""The refactory slice: requests, plans, orchestrations of coder agents, and the merge queue."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from refactorbot import (
    AtomicSlice,
    OperationFailed,
    RefactorbotError,
    SliceUnavailable,
    operation,
)

from refactorbot_slice_refactory import planner
from refactorbot_slice_refactory.gitops import Completed, Git, GitError, run_command
from refactorbot_slice_refactory.models import (
    Claimed,
    ClaimParams,
    CreateRequest,
    IdParams,
    ListRequests,
    ListTasks,
    OrchestrateParams,
    OrchestrationOut,
    PlanIdParams,
    PlanOut,
    PlanParams,
    RefactoryConfig,
    ReportParams,
    RequestList,
    RequestOut,
    TaskList,
    TaskOut,
)
from refactorbot_slice_refactory.store import (
    attempt_of,
    orchestration_of,
    request_of,
    task_of,
    update_task,
)

TERMINAL = ("merged", "failed")
#: Environment variables a task's commands inherit (no keys or tokens reach them).
COMMAND_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
#: A diff this large is flagged by the review.
LARGE_DIFF = 800


class RefactoryError(RefactorbotError):
    """A refused request of the refactory workflow (one line saying why)."""


def integration_branch(plan_id: int) -> str:
    """Return the integration branch of a plan."""
    return f"refactory/{plan_id}/integration"


def task_branch(plan_id: int, task_id: int) -> str:
    """Return the branch of a task."""
    return f"refactory/{plan_id}/{task_id}"


def command_env(home: Path) -> dict[str, str]:
    """Return the environment of acceptance and test commands."""
    env = {k: os.environ[k] for k in COMMAND_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update({"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", "GIT_CONFIG_NOSYSTEM": "1"})
    return env


def in_scope(path: str, scope: list[str]) -> bool:
    """Return True when ``path`` matches one of the scope globs (``**`` matches everything)."""
    return any(g in ("**", "*") or fnmatch.fnmatchcase(path, g) for g in scope)


class RefactorySlice(AtomicSlice):
    """Request → plan → coder agents on git worktrees → a test-gated merge queue into an integration branch."""

    slice_id = "refactory"
    version = "0.1.0"
    requires = ("agent", "tools")
    Config = RefactoryConfig

    def __init__(self, ctx: Any, config: BaseModel | None = None) -> None:
        super().__init__(ctx, config)
        self.settings: RefactoryConfig = self.config  # type: ignore[assignment]
        self.git = Git(self.settings.git_timeout)
        self.root = self._home_relative(self.settings.worktrees)
        self.runners: dict[int, asyncio.Task[None]] = {}
        self.wakeups: dict[int, asyncio.Event] = {}
        self.coder_slots = asyncio.Semaphore(self.settings.max_coders)

    def _home_relative(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.ctx.home / path

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every orchestration left running (in ``refactorbot serve`` only)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.ctx.host is not None and self.ctx.host.serving:
            await self.resume_all()

    async def resume_all(self) -> list[int]:
        """Start the runner of every orchestration whose status is ``running``; return their ids."""
        assert self.db is not None
        rows = await self.db.fetchall("SELECT id FROM orchestrations WHERE status = 'running' ORDER BY id")
        for row in rows:
            await self.db.execute("UPDATE orchestrations SET resumes = resumes + 1 WHERE id = ?", (row["id"],))
            self._launch(row["id"])
        return [row["id"] for row in rows]

    async def stop(self) -> None:
        """Interrupt the runners; their orchestrations stay ``running`` and resume at the next start."""
        runners = list(self.runners.values())
        for runner in runners:
            runner.cancel()
        for runner in runners:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        self.runners.clear()

    def _launch(self, orch_id: int) -> None:
        if orch_id in self.runners and not self.runners[orch_id].done():
            return
        self.wakeups[orch_id] = asyncio.Event()
        self.runners[orch_id] = asyncio.create_task(self._drive(orch_id), name=f"refactory-orchestration-{orch_id}")

    def _wake(self, orch_id: int | None) -> None:
        if orch_id is not None and orch_id in self.wakeups:
            self.wakeups[orch_id].set()

    # -- requests ----------------------------------------------------------------------------

    @operation
    async def create_request(self, params: CreateRequest) -> RequestOut:
        """Record a request: title, description, the repository (its main work tree), target branch, test command."""
        assert self.db is not None
        path = Path(params.repo).expanduser()
        if not path.is_absolute() or not path.is_dir():
            raise RefactoryError(f"repo must be an existing folder given by its absolute path: {params.repo[:200]}")
        try:
            top = await self.git.toplevel(path)
        except GitError:
            raise RefactoryError(f"{path} is not a git repository") from None
        test_command = params.test_command or list(self.settings.test_command)
        now = time.time()
        request_id = await self.db.execute(
            "INSERT INTO requests (title, description, repo, target_branch, test_command, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (params.title, params.description, str(top), params.target_branch, json.dumps(test_command), now),
        )
        return await self._request(request_id)

    async def _request(self, request_id: int) -> RequestOut:
        assert self.db is not None
        row = await self.db.fetchone("SELECT * FROM requests WHERE id = ?", (request_id,))
        if row is None:
            raise RefactoryError(f"no request {request_id}")
        return request_of(row)

    @operation
    async def get_request(self, params: IdParams) -> RequestOut:
        """Return one request."""
        return await self._request(params.id)

    @operation
    async def list_requests(self, params: ListRequests) -> RequestList:
        """Return the requests, newest first."""
        assert self.db is not None
        rows = await self.db.fetchall("SELECT * FROM requests ORDER BY id DESC LIMIT ?", (params.limit,))
        return RequestList(requests=[request_of(r) for r in rows])

    # -- plans -------------------------------------------------------------------------------

    @operation
    async def create_plan(self, params: PlanParams) -> PlanOut:
        """Plan a request: design and scoped tasks (a DAG) at a pinned base commit; overlapping scopes flagged."""
        assert self.db is not None
        request = await self._request(params.request_id)
        repo = Path(request.repo)
        try:
            base = await self.git.resolve(repo, request.target_branch)
        except GitError:
            raise RefactoryError(f"branch {request.target_branch!r} does not exist in {repo}") from None
        files = (await self.git.out(repo, "ls-tree", "-r", "--name-only", base)).splitlines()
        warnings: list[str] = []
        draft, used, fallback = None, "template", None
        if params.planner != "template" and (params.planner == "model" or self.settings.use_model_planner):
            try:
                draft = await planner.model_plan(self._planner_call, request.title, request.description, files)
                used = "model"
            except planner.PlanInvalid:
                raise
            except RefactorbotError as exc:
                if params.planner == "model":
                    raise RefactoryError(f"the model planner is unavailable: {exc}") from None
                fallback = f"the model planner was unavailable: {str(exc)[:300]}"
                warnings.append(f"planned without a model: {str(exc)[:300]}")
                self.log.warning("plan of request %s made by the templated planner: %s", request.id, fallback)
        if draft is None:
            draft = planner.templated(request.title, request.description, request.test_command)
        ordered = planner.order(draft)
        warnings += planner.overlaps(ordered, files)
        now = time.time()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO plans (request_id, design, base_commit, planner, planner_fallback, warnings, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request.id, draft.design, base, used, fallback, json.dumps(warnings), now),
            )
            plan_id = cur.lastrowid
            ids: dict[str, int] = {}
            for seq, task in enumerate(ordered, 1):
                cur = await conn.execute(
                    "INSERT INTO tasks (plan_id, seq, title, detail, scope, acceptance, depends, state, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', ?)",
                    (
                        plan_id,
                        seq,
                        task.title,
                        task.detail,
                        json.dumps(task.scope),
                        json.dumps(task.acceptance),
                        json.dumps([ids[d] for d in task.depends_on]),
                        now,
                    ),
                )
                assert cur.lastrowid is not None
                ids[task.key] = cur.lastrowid
        assert plan_id is not None
        return await self._plan(plan_id)

    async def _planner_call(self, messages: list[dict[str, Any]]) -> str:
        response = await self.ctx.complete(messages, model=self.settings.planner_model, temperature=0)
        return response.content or ""

    async def _plan(self, plan_id: int) -> PlanOut:
        assert self.db is not None
        row = await self.db.fetchone("SELECT * FROM plans WHERE id = ?", (plan_id,))
        if row is None:
            raise RefactoryError(f"no plan {plan_id}")
        tasks = [
            task_of(t) for t in await self.db.fetchall("SELECT * FROM tasks WHERE plan_id = ? ORDER BY seq", (plan_id,))
        ]
        board: dict[str, list[int]] = {}
        for task in tasks:
            board.setdefault(task.state, []).append(task.id)
        return PlanOut(
            id=row["id"],
            request_id=row["request_id"],
            design=row["design"],
            base_commit=row["base_commit"],
            planner=row["planner"],
            planner_fallback=row["planner_fallback"],
            warnings=json.loads(row["warnings"]),
            created_at=row["created_at"],
            tasks=tasks,
            board=board,
        )

    @operation
    async def get_plan(self, params: IdParams) -> PlanOut:
        """Return a plan with its tasks and the board (task ids by state)."""
        return await self._plan(params.id)

    # -- tasks -------------------------------------------------------------------------------

    @operation
    async def list_tasks(self, params: ListTasks) -> TaskList:
        """List tasks, filtered by plan, state and agent."""
        assert self.db is not None
        where, args = ["1 = 1"], []
        for column, value in (("plan_id", params.plan_id), ("state", params.state), ("agent", params.agent)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = await self.db.fetchall(
            f"SELECT * FROM tasks WHERE {' AND '.join(where)} ORDER BY plan_id, seq LIMIT ?",  # noqa: S608  fixed names; values are ? parameters
            (*args, params.limit),
        )
        return TaskList(tasks=[task_of(r) for r in rows])

    async def _task(self, task_id: int) -> TaskOut:
        assert self.db is not None
        row = await self.db.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise RefactoryError(f"no task {task_id}")
        return task_of(row, full=True)

    @operation
    async def get_task(self, params: IdParams) -> TaskOut:
        """Return one task with its diff, acceptance and test output, review and coder's answer."""
        return await self._task(params.id)

    # -- orchestration -------------------------------------------------------------------------

    @operation
    async def orchestrate(self, params: OrchestrateParams) -> OrchestrationOut:
        """Assign the plan's tasks round-robin in DAG order to N coders and start the run (returns at once)."""
        assert self.db is not None
        plan = await self._plan(params.plan_id)
        request = await self._request(plan.request_id)
        existing = await self.db.fetchone("SELECT id, status FROM orchestrations WHERE plan_id = ?", (plan.id,))
        if existing is not None:
            raise RefactoryError(
                f"plan {plan.id} already has orchestration {existing['id']} ({existing['status']});"
                " create a new plan to run it again"
            )
        target = params.target_branch or request.target_branch
        repo = Path(request.repo)
        if not await self.git.branch_exists(repo, target):
            raise RefactoryError(f"target branch {target!r} does not exist in {repo}")
        branch = integration_branch(plan.id)
        now = time.time()
        names = [f"coder{i}" for i in range(1, params.agents + 1)]
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO orchestrations (plan_id, agents, coders, target_branch, land, status, integration,"
                " integration_head, started_at) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (plan.id, params.agents, params.coders, target, int(params.land), branch, plan.base_commit, now),
            )
            orch_id = cur.lastrowid
            for name in names:
                await conn.execute(
                    "INSERT INTO agents (name, orchestration_id, kind) VALUES (?, ?, ?)", (name, orch_id, params.coders)
                )
            for index, task in enumerate(plan.tasks):  # plan.tasks is in DAG order
                await conn.execute(
                    "UPDATE tasks SET state = 'assigned', agent = ?, branch = ?, updated_at = ? WHERE id = ?",
                    (names[index % len(names)], task_branch(plan.id, task.id), now, task.id),
                )
        assert orch_id is not None
        self._launch(orch_id)
        return await self._orchestration(orch_id)

    async def _orchestration(self, orch_id: int) -> OrchestrationOut:
        assert self.db is not None
        row = await self.db.fetchone("SELECT * FROM orchestrations WHERE id = ?", (orch_id,))
        if row is None:
            raise RefactoryError(f"no orchestration {orch_id}")
        out = orchestration_of(row)
        attempts = await self.db.fetchall("SELECT * FROM merge_attempts WHERE plan_id = ? ORDER BY id", (out.plan_id,))
        out.attempts = [attempt_of(a) for a in attempts]
        tasks = [task_of(t) for t in await self.db.fetchall("SELECT * FROM tasks WHERE plan_id = ?", (out.plan_id,))]
        out.queue = [t.id for t in self._merge_order(tasks)]
        return out

    @operation
    async def get_orchestration(self, params: IdParams) -> OrchestrationOut:
        """Return an orchestration: status, the merge queue, every merge attempt and, once finished, the report."""
        return await self._orchestration(params.id)

    @operation
    async def plan_orchestration(self, params: PlanIdParams) -> OrchestrationOut:
        """Return the orchestration of a plan (without resuming it)."""
        return await self._orchestration((await self._orchestration_of_plan(params.plan_id)).id)

    @operation
    async def reconcile(self, params: PlanIdParams) -> OrchestrationOut:
        """Resume the plan's orchestration if it was interrupted (the merge queue included) and return it."""
        assert self.db is not None
        row = await self.db.fetchone("SELECT id, status FROM orchestrations WHERE plan_id = ?", (params.plan_id,))
        if row is None:
            raise RefactoryError(f"plan {params.plan_id} has no orchestration; run orchestrate first")
        if row["status"] == "running" and (row["id"] not in self.runners or self.runners[row["id"]].done()):
            await self.db.execute("UPDATE orchestrations SET resumes = resumes + 1 WHERE id = ?", (row["id"],))
            self._launch(row["id"])
        return await self._orchestration(row["id"])

    # -- external coders -------------------------------------------------------------------------

    @operation
    async def claim_task(self, params: ClaimParams) -> Claimed:
        """An external coder starts one of its assigned tasks: its worktree is created and the prompt returned."""
        assert self.db is not None
        task = await self._task(params.id)
        orch = await self._orchestration_of_plan(task.plan_id)
        if task.agent != params.agent or task.state != "assigned":
            raise RefactoryError(f"task {task.id} is {task.state} for {task.agent}, not assigned to {params.agent}")
        if orch.coders != "external":
            raise RefactoryError(f"orchestration {orch.id} runs its coders in-process")
        if not await self._deps_merged(task):
            raise RefactoryError(f"task {task.id} waits for its dependencies to merge")
        await self._seen(params.agent, orch.id)
        worktree = await self._prepare(task, orch)
        return Claimed(task=await self._task(task.id), worktree=str(worktree), prompt=await self._prompt(task))

    @operation
    async def report_pr(self, params: ReportParams) -> TaskOut:
        """A coder reports a task done (the seed's PR): commit, acceptance, tests and review; green ones queue to merge."""
        task = await self._task(params.task_id)
        if task.agent != params.agent:
            raise RefactoryError(f"task {task.id} is assigned to {task.agent}, not {params.agent}")
        if task.state != "working":
            raise RefactoryError(f"task {task.id} is {task.state}; only a task being worked on can be reported")
        orch = await self._orchestration_of_plan(task.plan_id)
        await self._seen(params.agent, orch.id)
        await self._finish(task, orch, params.summary)
        self._wake(orch.id)
        return await self._task(task.id)

    async def _orchestration_of_plan(self, plan_id: int) -> OrchestrationOut:
        assert self.db is not None
        row = await self.db.fetchone("SELECT * FROM orchestrations WHERE plan_id = ?", (plan_id,))
        if row is None:
            raise RefactoryError(f"plan {plan_id} is not orchestrated")
        return orchestration_of(row)

    async def _seen(self, agent: str, orch_id: int) -> None:
        assert self.db is not None
        await self.db.execute(
            "UPDATE agents SET last_seen = ? WHERE name = ? AND orchestration_id = ?", (time.time(), agent, orch_id)
        )

    # -- the runner ----------------------------------------------------------------------------

    async def _drive(self, orch_id: int) -> None:
        """Run an orchestration to its end: coders, tests, reviews, merges; then the report."""
        try:
            await self._recover(orch_id)
            coders: dict[str, asyncio.Task[None]] = {}
            while True:
                self.wakeups[orch_id].clear()
                orch = await self._orchestration(orch_id)
                tasks = await self._tasks(orch.plan_id)
                await self._fail_orphans(tasks)
                tasks = await self._tasks(orch.plan_id)
                if all(t.state in TERMINAL for t in tasks):
                    break
                if orch.coders == "inprocess":
                    busy = {name for name, job in coders.items() if not job.done()}
                    for task in tasks:
                        if task.state == "assigned" and task.agent not in busy and await self._deps_merged(task):
                            busy.add(task.agent or "")
                            coders[task.agent or ""] = asyncio.create_task(self._code(task.id, orch_id))
                queue = self._merge_order(tasks)
                if queue:
                    await self._merge(queue[0], orch)
                    continue
                running = any(not job.done() for job in coders.values())
                if orch.coders == "inprocess" and not running and not any(t.state == "reported" for t in tasks):
                    stuck = [t for t in tasks if t.state not in TERMINAL]
                    if stuck and not any(t.state in ("queued", "merging") for t in stuck):
                        for task in stuck:
                            await update_task(self.db, task.id, state="failed", failure="no progress possible")  # type: ignore[arg-type]
                        continue
                await self.wakeups[orch_id].wait()
            await self._conclude(orch_id)
        except asyncio.CancelledError:
            for job in list(locals().get("coders", {}).values()):
                job.cancel()
            raise
        except Exception as exc:
            self.log.exception("orchestration %s failed", orch_id)
            assert self.db is not None
            await self.db.execute(
                "UPDATE orchestrations SET status = 'failed', finished_at = ?, report = ? WHERE id = ?",
                (time.time(), json.dumps({"error": f"{type(exc).__name__}: {exc}"[:1000]}), orch_id),
            )

    async def _tasks(self, plan_id: int) -> list[TaskOut]:
        assert self.db is not None
        rows = await self.db.fetchall("SELECT * FROM tasks WHERE plan_id = ? ORDER BY seq", (plan_id,))
        return [task_of(r) for r in rows]

    async def _deps_merged(self, task: TaskOut) -> bool:
        if not task.depends:
            return True
        assert self.db is not None
        marks = ",".join("?" * len(task.depends))
        merged = await self.db.scalar(
            f"SELECT count(*) FROM tasks WHERE state = 'merged' AND id IN ({marks})",  # noqa: S608  fixed names; values are ? parameters
            tuple(task.depends),
        )
        return bool(merged == len(task.depends))

    async def _fail_orphans(self, tasks: list[TaskOut]) -> None:
        failed = {t.id: t for t in tasks if t.state == "failed"}
        for task in tasks:
            dead = [d for d in task.depends if d in failed]
            if dead and task.state not in TERMINAL:
                await update_task(self.db, task.id, state="failed", failure=f"dependency task {dead[0]} failed")  # type: ignore[arg-type]

    def _merge_order(self, tasks: list[TaskOut]) -> list[TaskOut]:
        """Return the queued tasks ready to merge: dependencies merged, smallest diff first, then plan order."""
        merged = {t.id for t in tasks if t.state == "merged"}
        ready = [t for t in tasks if t.state == "queued" and all(d in merged for d in t.depends)]
        return sorted(ready, key=lambda t: (t.diff_lines or 0, t.seq))

    async def _recover(self, orch_id: int) -> None:
        """Put an interrupted orchestration back in a known state: worktrees rebuilt, half-done steps undone."""
        assert self.db is not None
        orch = await self._orchestration(orch_id)
        repo = await self._repo(orch.plan_id)
        for row in await self.db.fetchall(
            "SELECT * FROM merge_attempts WHERE plan_id = ? AND outcome = 'pending'", (orch.plan_id,)
        ):
            await self.db.execute(
                "UPDATE merge_attempts SET outcome = 'interrupted', detail = 'the host stopped during the merge' WHERE id = ?",
                (row["id"],),
            )
            await update_task(self.db, row["task_id"], state="queued")
        for task in await self._tasks(orch.plan_id):
            if task.state in ("working", "reported"):
                # The coder's run was cut short: start it again from a fresh worktree.
                await update_task(self.db, task.id, state="assigned", attempts=max(0, task.attempts - 1))
                if task.worktree:
                    await self.git.remove_worktree(repo, Path(task.worktree))
        # The integration worktree is rebuilt at the head the database recorded: a merge the host
        # made but did not record is dropped with it.
        await self.git.add_worktree(repo, self._integration_path(orch.plan_id), orch.integration, orch.integration_head)
        if orch.resumes == 0 and not orch.attempts:
            green = await self._run_tests(orch.plan_id, self._integration_path(orch.plan_id))
            await self.db.execute("UPDATE orchestrations SET tests_green = ? WHERE id = ?", (int(green.ok), orch_id))

    async def _repo(self, plan_id: int) -> Path:
        assert self.db is not None
        repo = await self.db.scalar(
            "SELECT r.repo FROM plans p JOIN requests r ON r.id = p.request_id WHERE p.id = ?", (plan_id,)
        )
        return Path(str(repo))

    def _integration_path(self, plan_id: int) -> Path:
        return self.root / str(plan_id) / "integration"

    def _task_path(self, plan_id: int, task_id: int) -> Path:
        return self.root / str(plan_id) / f"task-{task_id}"

    async def _prepare(self, task: TaskOut, orch: OrchestrationOut) -> Path:
        """Create the task's worktree on its branch: at the base commit, or on the integration head when
        the task depends on others or is re-queued; mark it working."""
        assert self.db is not None
        repo = await self._repo(task.plan_id)
        plan = await self._plan(task.plan_id)
        fresh = orch.integration_head if (task.depends or task.requeue_context) else plan.base_commit
        path = self._task_path(task.plan_id, task.id)
        await self.git.add_worktree(repo, path, task_branch(task.plan_id, task.id), fresh)
        await self.ctx.call("tools.allow_workspace_root", path=str(self.root))
        await update_task(
            self.db, task.id, state="working", worktree=str(path), start_commit=fresh, attempts=task.attempts + 1
        )
        return path

    async def _prompt(self, task: TaskOut) -> str:
        plan = await self._plan(task.plan_id)
        lines = [
            f"You are a coder working on task {task.id} of plan {plan.id}: {task.title}",
            "",
            task.detail,
            "",
            "Your workspace is a git worktree of the repository; read and change files with your tools.",
            f"Change only files matching: {', '.join(task.scope)}.",
            f"The task is done when this command passes in the repository: {' '.join(task.acceptance)}",
            "Do not commit; when you are done, answer with a short summary of what you changed.",
        ]
        if task.requeue_context:
            lines += ["", task.requeue_context]
        return "\n".join(lines)

    async def _code(self, task_id: int, orch_id: int) -> None:
        """One in-process coder run: worktree, agent with tools confined to it, then the PR."""
        try:
            async with self.coder_slots:
                task = await self._task(task_id)
                orch = await self._orchestration(orch_id)
                worktree = await self._prepare(task, orch)
                prompt = await self._prompt(task)
                summary = ""
                try:
                    result = await self.ctx.call(
                        "agent.run",
                        message=prompt,
                        workspace=str(worktree),
                        user_id=f"refactory-{task.agent}",
                        mode="single",
                        memories=[],
                        max_steps=self.settings.coder_max_steps,
                        **({"model": self.settings.coder_model} if self.settings.coder_model else {}),
                    )
                    summary = str(result.get("answer") or "")
                    if not result.get("success", True):
                        summary = f"(the coder's run did not finish: {result.get('limit_hit') or 'failed'}) {summary}"
                except (SliceUnavailable, OperationFailed) as exc:
                    summary = f"(the coder could not run: {exc})"
                await self._finish(await self._task(task_id), orch, summary)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("coder run of task %s failed", task_id)
            await self._requeue(await self._task(task_id), f"the coder's run failed: {type(exc).__name__}: {exc}", None)
        finally:
            self._wake(orch_id)

    async def _finish(self, task: TaskOut, orch: OrchestrationOut, summary: str) -> None:
        """Commit the coder's work, run its acceptance command and the tests, review it; queue it when green."""
        assert self.db is not None and task.worktree and task.start_commit
        await update_task(self.db, task.id, state="reported", coder_answer=summary[:20_000])
        tree = Path(task.worktree)
        head = await self.git.commit_all(tree, f"refactory: task {task.id} — {task.title}\n\nPlan {task.plan_id}.")
        if head is None:
            await self._requeue(task, "the coder changed nothing", None)
            return
        stat, lines, files = await self.git.diff_stat(tree, task.start_commit, head)
        diff = (await self.git.diff(tree, task.start_commit, head))[: self.settings.diff_chars]
        accepted = await self._run(task.acceptance, tree)
        tested = await self._run_tests(task.plan_id, tree)
        risks = [f"changes {f}, outside its scope" for f in files if not in_scope(f, task.scope)]
        if lines > LARGE_DIFF:
            risks.append(f"a large diff: {lines} lines")
        if not tested.ok:
            risks.append("the repository's tests fail in this task's worktree")
        review, model_risks, review_fallback = await self._review(task, diff, stat)
        await update_task(
            self.db,
            task.id,
            head_commit=head,
            diff_stat=stat,
            diff_lines=lines,
            diff=diff,
            files=files,
            acceptance_ok=accepted.ok,
            acceptance_output=accepted.output,
            test_ok=tested.ok,
            test_output=tested.output,
            review=review,
            review_fallback=review_fallback,
            risks=risks + model_risks,
        )
        if accepted.ok:
            await update_task(self.db, task.id, state="queued", failure=None)
        else:
            await self._requeue(
                await self._task(task.id),
                "its acceptance command failed",
                f"Acceptance output:\n{accepted.output[-3000:]}",
            )

    async def _run(self, argv: list[str], tree: Path) -> Completed:
        return await run_command(argv, tree, env=command_env(tree), timeout=self.settings.command_timeout)

    async def _run_tests(self, plan_id: int, tree: Path) -> Completed:
        assert self.db is not None
        raw = await self.db.scalar(
            "SELECT r.test_command FROM plans p JOIN requests r ON r.id = p.request_id WHERE p.id = ?", (plan_id,)
        )
        return await self._run(json.loads(str(raw)), tree)

    async def _review(self, task: TaskOut, diff: str, stat: str) -> tuple[str, list[str], str | None]:
        """Return the review agent's summary, the risks it flags (``RISK:`` lines) and, when no model
        reviewed it, why."""
        if not self.settings.use_model_reviewer:
            return f"Diff: {stat.splitlines()[-1] if stat else 'empty'}. (model review off)", [], "model review off"
        messages = [
            {
                "role": "system",
                "content": "You review one task's diff. Summarise what it changes in two or three sentences,"
                " then list each risk on its own line starting with 'RISK: '. Write no RISK line when there is none.",
            },
            {"role": "user", "content": f"Task: {task.title}\n{task.detail}\n\nDiff:\n{diff[:30_000]}"},
        ]
        try:
            response = await self.ctx.complete(messages, model=self.settings.reviewer_model, temperature=0)
        except RefactorbotError as exc:
            reason = f"the model reviewer was unavailable: {str(exc)[:300]}"
            self.log.warning("task %s reviewed without a model: %s", task.id, reason)
            return f"Diff: {stat.splitlines()[-1] if stat else 'empty'}. No model review.", [], reason
        text = response.content or ""
        risks = [
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().upper().startswith("RISK:")
        ]
        summary = "\n".join(line for line in text.splitlines() if not line.strip().upper().startswith("RISK:")).strip()
        return summary or text, [r for r in risks if r], None

    async def _requeue(self, task: TaskOut, reason: str, context: str | None) -> None:
        """Give the task back to its coder with the reason in context, or fail it once attempts run out."""
        assert self.db is not None
        if task.attempts >= self.settings.max_attempts:
            await update_task(self.db, task.id, state="failed", failure=f"{reason} (after {task.attempts} attempts)")
        else:
            note = f"This task was re-queued: {reason}."
            if context:
                note += "\n" + context
            await update_task(self.db, task.id, state="assigned", failure=reason, requeue_context=note[:20_000])
        if task.worktree:
            with contextlib.suppress(GitError):
                await self.git.remove_worktree(await self._repo(task.plan_id), Path(task.worktree))

    # -- the merge queue -----------------------------------------------------------------------

    async def _merge(self, task: TaskOut, orch: OrchestrationOut) -> None:
        """Merge one green task into the integration branch; test; keep it, or undo it and re-queue the task."""
        assert self.db is not None and task.branch
        tree = self._integration_path(orch.plan_id)
        before = orch.integration_head
        attempt = (
            int(await self.db.scalar("SELECT count(*) FROM merge_attempts WHERE task_id = ?", (task.id,)) or 0) + 1
        )
        attempt_id = await self.db.execute(
            "INSERT INTO merge_attempts (plan_id, task_id, attempt, before_head, outcome, created_at)"
            " VALUES (?, ?, ?, ?, 'pending', ?)",
            (orch.plan_id, task.id, attempt, before, time.time()),
        )
        await update_task(self.db, task.id, state="merging")
        await self.git.run(tree, "clean", "-fdq")
        merged = await self.git.merge(tree, task.branch, f"refactory: merge task {task.id} — {task.title}")
        if not merged.ok:
            files = await self.git.conflicted(tree)
            await self.git.undo_merge(tree, before)
            detail = f"conflict in {', '.join(files)}" if files else f"merge failed: {merged.output[-500:]}"
            await self._attempt(attempt_id, "conflict", detail)
            await self._requeue(await self._task(task.id), detail, await self._conflict_context(task, files, orch))
            return
        after = await self.git.out(tree, "rev-parse", "HEAD")
        failures, broken = [], []
        for other in [t for t in await self._tasks(orch.plan_id) if t.state == "merged"] + [task]:
            accepted = await self._run(other.acceptance, tree)
            if not accepted.ok:
                failures.append(f"task {other.id}'s acceptance command fails:\n{accepted.output[-1500:]}")
                if other.id != task.id:
                    broken.append(other)
        tested = await self._run_tests(orch.plan_id, tree)
        was_green = bool(await self.db.scalar("SELECT tests_green FROM orchestrations WHERE id = ?", (orch.id,)))
        if was_green and not tested.ok:
            failures.append(
                f"the repository's tests passed before this merge and fail after it:\n{tested.output[-1500:]}"
            )
        if failures:
            await self.git.undo_merge(tree, before)
            detail = failures[0].splitlines()[0]
            await self._attempt(attempt_id, "red", "\n".join(failures)[:5000])
            checks = ("Merged on top of the integration branch, it made the checks fail:\n" + "\n".join(failures))[
                :8000
            ]
            holding = broken or [t for t in await self._tasks(orch.plan_id) if t.state == "merged"]
            intro = "You now start from the integration branch, which already holds these merged tasks:"
            context = checks + "\n" + await self._intents(task, holding, intro)
            await self._requeue(await self._task(task.id), f"red after merge: {detail}", context)
            return
        await self._attempt(attempt_id, "merged", "tests green" if tested.ok else "acceptance green", after)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE orchestrations SET integration_head = ?, tests_green = ? WHERE id = ?",
                (after, int(tested.ok or was_green), orch.id),
            )
            await conn.execute(
                "UPDATE tasks SET state = 'merged', failure = NULL, updated_at = ? WHERE id = ?", (time.time(), task.id)
            )
        if task.worktree:
            await self.git.remove_worktree(await self._repo(task.plan_id), Path(task.worktree))

    async def _attempt(self, attempt_id: int, outcome: str, detail: str, after: str | None = None) -> None:
        assert self.db is not None
        await self.db.execute(
            "UPDATE merge_attempts SET outcome = ?, detail = ?, after_head = ? WHERE id = ?",
            (outcome, detail, after, attempt_id),
        )

    async def _conflict_context(self, task: TaskOut, files: list[str], orch: OrchestrationOut) -> str:
        """Both intents: what the integration branch already holds for these files, and this task's own."""
        merged = [t for t in await self._tasks(orch.plan_id) if t.state == "merged" and set(t.files) & set(files)]
        intro = (
            f"Its branch conflicts with the integration branch in: {', '.join(files)}.\n"
            "You now start from the integration branch, which already holds these merged tasks:"
        )
        return await self._intents(task, merged, intro)

    async def _intents(self, task: TaskOut, merged: list[TaskOut], intro: str) -> str:
        """The merged tasks' intents, this task's own, and its previous diff: what a re-queued coder keeps."""
        lines = [intro]
        for other in merged:
            lines.append(f"- task {other.id} ({other.title}): {other.detail}")
        lines += [
            "Keep what they did and redo your own change on top of it. Your task's intent:",
            f"- task {task.id} ({task.title}): {task.detail}",
            "Your previous attempt's diff, for reference:",
            ((await self._task(task.id)).diff or "")[:6000],
        ]
        return "\n".join(lines)

    # -- the end ---------------------------------------------------------------------------------

    async def _conclude(self, orch_id: int) -> None:
        """Write the report, land when asked and green (fast-forward only), remove the worktrees."""
        assert self.db is not None
        orch = await self._orchestration(orch_id)
        repo = await self._repo(orch.plan_id)
        tasks = await self._tasks(orch.plan_id)
        tree = self._integration_path(orch.plan_id)
        final = await self._run_tests(orch.plan_id, tree)
        merged = [t for t in tasks if t.state == "merged"]
        failed = [t for t in tasks if t.state == "failed"]
        landed, land_note = False, "not asked (--land)"
        if orch.land:
            landed, land_note = await self._land(repo, orch, final.ok and not failed)
        plan = await self._plan(orch.plan_id)
        unreviewed = [{"task": t.id, "reason": t.review_fallback} for t in tasks if t.review_fallback]
        report = {
            "plan_id": orch.plan_id,
            "planner": plan.planner,
            "planner_fallback": plan.planner_fallback,
            "reviewed_without_model": unreviewed,
            "integration_branch": orch.integration,
            "integration_head": orch.integration_head,
            "repo": str(repo),
            "tests_green": final.ok,
            "test_output": final.output[-4000:],
            "merged": [
                {"task": t.id, "title": t.title, "commit": t.head_commit, "attempts": t.attempts} for t in merged
            ],
            "failed": [{"task": t.id, "title": t.title, "reason": t.failure} for t in failed],
            "merge_attempts": len(orch.attempts),
            "conflicts": sum(1 for a in orch.attempts if a.outcome == "conflict"),
            "landed": landed,
            "land": land_note,
        }
        for task in tasks:
            if task.worktree:
                with contextlib.suppress(GitError):
                    await self.git.remove_worktree(repo, Path(task.worktree))
        await self.git.remove_worktree(repo, tree)
        status = "done" if not failed and final.ok else "finished_with_failures"
        await self.db.execute(
            "UPDATE orchestrations SET status = ?, finished_at = ?, report = ? WHERE id = ?",
            (status, time.time(), json.dumps(report), orch_id),
        )
        await self.ctx.publish("refactory.orchestration.finished", {"id": orch_id, "status": status})

    async def _land(self, repo: Path, orch: OrchestrationOut, green: bool) -> tuple[bool, str]:
        """Fast-forward the target branch to the integration head, only when green and a fast-forward."""
        if not green:
            return False, "not landed: some tasks failed or the tests are red"
        target = orch.target_branch
        old = await self.git.resolve(repo, target)
        ancestor = await self.git.run(repo, "merge-base", "--is-ancestor", old, orch.integration_head, check=False)
        if not ancestor.ok:
            return False, f"not landed: {target} moved and is not an ancestor of the integration branch"
        current = (await self.git.run(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False)).output.strip()
        if current == target:
            dirty = await self.git.out(repo, "status", "--porcelain", "--untracked-files=no")
            if dirty:
                return False, f"not landed: {target} is checked out in {repo} with uncommitted changes"
            await self.git.run(repo, "merge", "--ff-only", "-q", orch.integration_head)
        else:
            await self.git.run(repo, "update-ref", f"refs/heads/{target}", orch.integration_head, old)
        return True, f"{target} fast-forwarded to {orch.integration_head[:12]}"
