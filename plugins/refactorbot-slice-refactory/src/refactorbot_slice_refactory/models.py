"""Configuration, parameters, the planner's output and the results of the refactory slice."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, field_validator
from refactorbot import Model, SliceConfig

#: Task states, in the order a task normally goes through them.
STATES = ("planned", "assigned", "working", "reported", "queued", "merging", "merged", "failed")
TaskState = Literal["planned", "assigned", "working", "reported", "queued", "merging", "merged", "failed"]
AGENT_NAME = r"^[a-z][a-z0-9_-]{0,39}$"
BRANCH = re.compile(r"^(?!/|.*//|.*\.\.|.*@\{|.*\.lock$|.*/$|-)[A-Za-z0-9._/-]{1,200}$")
MAX_TASKS = 50
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Id = Annotated[int, Field(ge=1, le=2**62)]
AgentName = Annotated[str, StringConstraints(pattern=AGENT_NAME)]


def _argv(value: Any) -> Any:
    """Accept a command as a list of arguments or as one string split like a shell would (no shell runs it)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split the command: {exc}") from None
    return value


Argv = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]],
    BeforeValidator(_argv),
    Field(min_length=1, max_length=200),
]
Glob = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300, pattern=r"^[^/\x00][^\x00]*$")
]


def check_branch(name: str) -> str:
    """Return ``name`` when it is a safe git branch name, else raise ``ValueError``."""
    if not BRANCH.match(name):
        raise ValueError(f"{name[:100]!r} is not an accepted branch name (letters, digits, ., _, -, /)")
    return name


class RefactoryConfig(SliceConfig):
    """``[slices.refactory]``: models, bounds and commands of the workflow."""

    worktrees: str = Field("refactory/worktrees", description="folder of the worktrees (relative: to the home)")
    max_coders: int = Field(4, ge=1, le=32, description="coders running at once, across orchestrations")
    max_attempts: int = Field(3, ge=1, le=10, description="merge attempts per task (conflict or red re-queues)")
    test_command: Argv = Field(
        default_factory=lambda: ["python", "-m", "pytest", "-q"],
        description="the repository's test command when a request names none (no shell)",
    )
    command_timeout: float = Field(600.0, gt=0, le=86_400, description="seconds an acceptance or test command may run")
    git_timeout: float = Field(120.0, gt=0, le=3600, description="seconds one git command may run")
    planner_model: str | None = Field(None, max_length=200, description="planner model (default: [llm] model)")
    coder_model: str | None = Field(None, max_length=200, description="coder model (default: the agent's)")
    reviewer_model: str | None = Field(None, max_length=200, description="reviewer model (default: [llm] model)")
    coder_max_steps: int = Field(30, ge=1, le=100, description="model calls per coder run")
    use_model_planner: bool = Field(True, description="false: always the templated planner (one task per request)")
    use_model_reviewer: bool = Field(True, description="false: the review lists scope and size risks only")
    diff_chars: int = Field(60_000, ge=1000, le=1_000_000, description="characters of each task's diff kept")


class _Params(Model):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Params):
    """Arguments of ``refactory.create_request``."""

    title: Text
    description: str = Field("", max_length=20_000)
    repo: str = Field(min_length=1, max_length=1024, description="path of the git repository (its main work tree)")
    target_branch: str = Field("main", min_length=1, max_length=200)
    test_command: Argv | None = Field(None, description="the repository's test command (default: [slices.refactory])")

    @field_validator("target_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        return check_branch(value)


class IdParams(_Params):
    """One record by id."""

    id: Id


class ListRequests(_Params):
    """Arguments of ``refactory.list_requests``."""

    limit: int = Field(100, ge=1, le=1000)


class PlanParams(_Params):
    """Arguments of ``refactory.create_plan``."""

    request_id: Id
    planner: Literal["auto", "model", "template"] = Field("auto", description="auto: the model when one is set up")


class OrchestrateParams(_Params):
    """Arguments of ``refactory.orchestrate``."""

    plan_id: Id
    agents: int = Field(2, ge=1, le=32, description="coder agents (coder1..coderN)")
    target_branch: str | None = Field(None, max_length=200, description="default: the request's")
    land: bool = Field(False, description="fast-forward the target branch to the integration branch when all is green")
    coders: Literal["inprocess", "external"] = Field(
        "inprocess", description="external: coders are `refactorbot refactory coder` processes polling the API"
    )

    @field_validator("target_branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        return None if value is None else check_branch(value)


class ListTasks(_Params):
    """Arguments of ``refactory.list_tasks``."""

    plan_id: Id | None = None
    state: TaskState | None = None
    agent: AgentName | None = None
    limit: int = Field(200, ge=1, le=1000)


class ClaimParams(_Params):
    """Arguments of ``refactory.claim_task``: an external coder starts an assigned task."""

    id: Id
    agent: AgentName


class ReportParams(_Params):
    """Arguments of ``refactory.report_pr``: a coder reports its work on a task (the seed's PR)."""

    agent: AgentName
    task_id: Id
    summary: str = Field("", max_length=20_000, description="what the coder says it did")


class PlanIdParams(_Params):
    """One plan by id."""

    plan_id: Id


# -- the planner's structured output ------------------------------------------------------


class PlannedTask(Model):
    """One task as the planner writes it."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="short id, e.g. t1")
    title: Text
    detail: str = Field(min_length=1, max_length=10_000)
    scope: list[Glob] = Field(min_length=1, max_length=50, description="file globs the task may change")
    acceptance: Argv = Field(description="command that passes once the task is done (argument list)")
    depends_on: list[str] = Field(default_factory=list, max_length=MAX_TASKS, description="keys of earlier tasks")


class PlanDraft(Model):
    """The planner's whole answer."""

    model_config = ConfigDict(extra="forbid")

    design: str = Field(min_length=1, max_length=50_000, description="the design document (Markdown)")
    tasks: list[PlannedTask] = Field(min_length=1, max_length=MAX_TASKS)


# -- results ------------------------------------------------------------------------------


class RequestOut(Model):
    """A request."""

    id: int
    title: str
    description: str
    repo: str
    target_branch: str
    test_command: list[str]
    created_at: float


class RequestList(Model):
    """Requests, newest first."""

    requests: list[RequestOut]


class TaskOut(Model):
    """A task and everything recorded about it."""

    id: int
    plan_id: int
    seq: int
    title: str
    detail: str
    scope: list[str]
    acceptance: list[str]
    depends: list[int]
    state: str
    agent: str | None
    attempts: int
    branch: str | None
    worktree: str | None
    start_commit: str | None
    head_commit: str | None
    diff_stat: str | None
    diff_lines: int | None
    files: list[str]
    acceptance_ok: bool | None
    test_ok: bool | None
    risks: list[str]
    review: str | None
    review_fallback: str | None = Field(None, description="why the review was made without a model")
    failure: str | None
    updated_at: float
    diff: str | None = None
    acceptance_output: str | None = None
    test_output: str | None = None
    coder_answer: str | None = None
    requeue_context: str | None = None


class TaskList(Model):
    """Tasks in plan and sequence order."""

    tasks: list[TaskOut]


class PlanOut(Model):
    """A plan, its tasks and the tasks by state (the board)."""

    id: int
    request_id: int
    design: str
    base_commit: str
    planner: str
    planner_fallback: str | None = Field(
        None, description="why the templated planner was used although a model was asked for (auto mode)"
    )
    warnings: list[str]
    created_at: float
    tasks: list[TaskOut]
    board: dict[str, list[int]]


class MergeAttempt(Model):
    """One try of the merge queue."""

    id: int
    task_id: int
    attempt: int
    before_head: str
    after_head: str | None
    outcome: str
    detail: str
    created_at: float


class OrchestrationOut(Model):
    """An orchestration: its state, the merge queue's history and, once finished, the report."""

    id: int
    plan_id: int
    agents: int
    coders: str
    target_branch: str
    land: bool
    status: str
    integration: str
    integration_head: str
    resumes: int
    started_at: float
    finished_at: float | None
    report: dict[str, Any] | None
    queue: list[int] = Field(default_factory=list, description="task ids waiting to merge, in merge order")
    attempts: list[MergeAttempt] = Field(default_factory=list)


class Claimed(Model):
    """What an external coder needs to work on a task."""

    task: TaskOut
    worktree: str
    prompt: str
