"""Planning: the model planner (structured output, validated, retried once), the templated one, the DAG."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from refactorbot import RefactorbotError, describe_validation_error

from refactorbot_slice_refactory.models import PlanDraft, PlannedTask

PLANNER_PROMPT = """You are the planner of a team of coding agents working on one git repository.
Write a short design document and split the request into tasks that coders can do in parallel.
Answer with ONE JSON object and nothing else:
{{"design": "<markdown>", "tasks": [{{"key": "t1", "title": "...", "detail": "...",
  "scope": ["glob of files the task may change", ...], "acceptance": ["argv", "of", "a", "command"],
  "depends_on": ["keys of tasks that must be merged first"]}}]}}
Rules: keys are short ids; scopes are globs relative to the repository root; acceptance is an
argument list run without a shell in the repository and must pass once the task is done; give
tasks that run at the same time disjoint scopes; dependencies form no cycle.

Request: {title}
{description}

Files in the repository (first {shown} of {total}):
{files}
"""


class PlanInvalid(RefactorbotError):
    """The planner's answer was not a valid plan, even after one retry."""


def templated(title: str, description: str, test_command: list[str]) -> PlanDraft:
    """Return the plan of the templated planner: one task doing the whole request."""
    design = f"# {title}\n\n{description or title}\n\nOne task carries the whole request (templated planner)."
    task = PlannedTask(
        key="t1",
        title=title,
        detail=description or title,
        scope=["**"],
        acceptance=test_command,
        depends_on=[],
    )
    return PlanDraft(design=design, tasks=[task])


def _json_object(text: str) -> Any:
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.DOTALL)
    candidate = fenced.group(1) if fenced else text[text.find("{") : text.rfind("}") + 1]
    return json.loads(candidate)


async def model_plan(
    complete: Callable[[list[dict[str, Any]]], Awaitable[str]],
    title: str,
    description: str,
    files: list[str],
) -> PlanDraft:
    """Ask the model for a plan; validate it (and its DAG); retry once with the error; else ``PlanInvalid``."""
    shown = files[:300]
    prompt = PLANNER_PROMPT.format(
        title=title, description=description, files="\n".join(shown), shown=len(shown), total=len(files)
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    error = ""
    for _attempt in range(2):
        answer = await complete(messages)
        try:
            draft = PlanDraft.model_validate(_json_object(answer))
            order(draft)
            return draft
        except json.JSONDecodeError as exc:
            error = f"not a JSON object: {exc.msg} at position {exc.pos}"
        except ValidationError as exc:
            error = describe_validation_error(exc, limit=8)
        except PlanInvalid as exc:
            error = str(exc)
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": f"That plan is invalid: {error}. Answer again with the corrected JSON only."},
        ]
    raise PlanInvalid(f"the planner's answer was invalid twice: {error}")


def order(draft: PlanDraft) -> list[PlannedTask]:
    """Return the tasks in a dependency order (stable); ``PlanInvalid`` on unknown keys or a cycle."""
    keys = [t.key for t in draft.tasks]
    if len(set(keys)) != len(keys):
        raise PlanInvalid("task keys must be unique")
    by_key = {t.key: t for t in draft.tasks}
    for task in draft.tasks:
        for dep in task.depends_on:
            if dep not in by_key:
                raise PlanInvalid(f"task {task.key} depends on unknown task {dep!r}")
            if dep == task.key:
                raise PlanInvalid(f"task {task.key} depends on itself")
    done: list[PlannedTask] = []
    placed: set[str] = set()
    while len(done) < len(keys):
        ready = [t for t in draft.tasks if t.key not in placed and all(d in placed for d in t.depends_on)]
        if not ready:
            stuck = sorted(k for k in keys if k not in placed)
            raise PlanInvalid(f"the task dependencies form a cycle among {', '.join(stuck)}")
        for task in ready:
            done.append(task)
            placed.add(task.key)
    return done


def _ancestors(tasks: list[PlannedTask]) -> dict[str, set[str]]:
    by_key = {t.key: t for t in tasks}
    memo: dict[str, set[str]] = {}

    def up(key: str) -> set[str]:
        if key not in memo:
            memo[key] = set()
            for dep in by_key[key].depends_on:
                memo[key] |= {dep, *up(dep)}
        return memo[key]

    return {t.key: up(t.key) for t in tasks}


def _globs_meet(a: str, b: str, files: list[str]) -> list[str]:
    if a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a):
        return [a if "*" not in a else b]
    return [f for f in files if fnmatch.fnmatchcase(f, a) and fnmatch.fnmatchcase(f, b)][:5]


def overlaps(tasks: list[PlannedTask], files: list[str]) -> list[str]:
    """Return a warning for each pair of tasks that may run at once and whose scopes overlap."""
    ancestry = _ancestors(tasks)
    warnings = []
    for i, first in enumerate(tasks):
        for second in tasks[i + 1 :]:
            if first.key in ancestry[second.key] or second.key in ancestry[first.key]:
                continue  # one waits for the other: they never run at once
            shared: list[str] = []
            for a in first.scope:
                for b in second.scope:
                    shared += [s for s in _globs_meet(a, b, files) if s not in shared]
            if shared:
                warnings.append(
                    f"tasks {first.key} and {second.key} may run at once and share scope: {', '.join(shared[:5])}"
                )
    return warnings
