"""Rows of the refactory database turned into results, and the task updates the workflow makes."""

from __future__ import annotations

import json
import time
from typing import Any

from refactorbot import SliceDatabase

from refactorbot_slice_refactory.models import MergeAttempt, OrchestrationOut, RequestOut, TaskOut

#: Task columns a caller may set through ``update_task``.
TASK_COLUMNS = frozenset(
    {
        "state",
        "agent",
        "attempts",
        "branch",
        "worktree",
        "start_commit",
        "head_commit",
        "diff_stat",
        "diff_lines",
        "diff",
        "files",
        "acceptance_ok",
        "acceptance_output",
        "test_ok",
        "test_output",
        "review",
        "review_fallback",
        "risks",
        "coder_answer",
        "requeue_context",
        "failure",
    }
)
_JSON = frozenset({"files", "risks"})


def _loads(value: Any, default: Any) -> Any:
    try:
        return json.loads(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def request_of(row: Any) -> RequestOut:
    """Return a request row as a result."""
    return RequestOut(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        repo=row["repo"],
        target_branch=row["target_branch"],
        test_command=_loads(row["test_command"], []),
        created_at=row["created_at"],
    )


def task_of(row: Any, *, full: bool = False) -> TaskOut:
    """Return a task row as a result (``full``: with its diff, outputs, answer and re-queue context)."""
    task = TaskOut(
        id=row["id"],
        plan_id=row["plan_id"],
        seq=row["seq"],
        title=row["title"],
        detail=row["detail"],
        scope=_loads(row["scope"], []),
        acceptance=_loads(row["acceptance"], []),
        depends=_loads(row["depends"], []),
        state=row["state"],
        agent=row["agent"],
        attempts=row["attempts"],
        branch=row["branch"],
        worktree=row["worktree"],
        start_commit=row["start_commit"],
        head_commit=row["head_commit"],
        diff_stat=row["diff_stat"],
        diff_lines=row["diff_lines"],
        files=_loads(row["files"], []),
        acceptance_ok=_flag(row["acceptance_ok"]),
        test_ok=_flag(row["test_ok"]),
        risks=_loads(row["risks"], []),
        review=row["review"],
        review_fallback=row["review_fallback"],
        failure=row["failure"],
        updated_at=row["updated_at"],
    )
    if full:
        task.diff = row["diff"]
        task.acceptance_output = row["acceptance_output"]
        task.test_output = row["test_output"]
        task.coder_answer = row["coder_answer"]
        task.requeue_context = row["requeue_context"]
    return task


def attempt_of(row: Any) -> MergeAttempt:
    """Return a merge-attempt row as a result."""
    return MergeAttempt(
        id=row["id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        before_head=row["before_head"],
        after_head=row["after_head"],
        outcome=row["outcome"],
        detail=row["detail"],
        created_at=row["created_at"],
    )


def orchestration_of(row: Any) -> OrchestrationOut:
    """Return an orchestration row as a result (without its queue and attempts)."""
    return OrchestrationOut(
        id=row["id"],
        plan_id=row["plan_id"],
        agents=row["agents"],
        coders=row["coders"],
        target_branch=row["target_branch"],
        land=bool(row["land"]),
        status=row["status"],
        integration=row["integration"],
        integration_head=row["integration_head"],
        resumes=row["resumes"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        report=_loads(row["report"], None),
    )


async def update_task(db: SliceDatabase, task_id: int, **fields: Any) -> None:
    """Set columns of one task (names checked against ``TASK_COLUMNS``) and its ``updated_at``."""
    unknown = set(fields) - TASK_COLUMNS
    if unknown:
        raise ValueError(f"unknown task columns: {sorted(unknown)}")
    values = [json.dumps(v) if k in _JSON else (int(v) if isinstance(v, bool) else v) for k, v in fields.items()]
    assignments = ", ".join(f"{name} = ?" for name in fields)
    await db.execute(
        f"UPDATE tasks SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608  names checked against TASK_COLUMNS above; values are ? parameters
        (*values, time.time(), task_id),
    )
