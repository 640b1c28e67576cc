"""Self-improvement: a plan's actions, the evidence a slice gathers, and asking its brain.

The default ``AtomicSlice.self_improve`` (``default_self_improve``) gathers the slice's evidence
— error rate, p95 latency and recent failures with their messages from ``master.db``'s operation
log, its failed diagnostics, the feedback given, its settings and prompt templates — and, when
there is something to improve, asks the slice's brain (``[slices.<id>] brain_model``, default
the main model) for an ``ImprovementPlan``. The brain answers JSON validated against
``BrainAnswer``: each ``ImprovementAction`` is checked against the slice (a ``config`` action
must be a valid setting of its ``Config``); an invalid answer is sent back once with the error,
then the plan falls back to the rule-based one. Without a model (no gateway) it is rule-based.

An action travels inside the ``ImprovementPlan`` contract as a ``Proposal`` whose ``changes``
hold ``target``, ``change``, ``expected_effect`` and ``risk`` (``ImprovementAction.to_proposal``;
``actions_of(plan)`` reads them back). Nothing here applies a change: the improve slice
(``refactorbot-slice-improve``) tests, deploys, evaluates and rolls back.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refactorbot.errors import (
    GatewayError,
    LLMCallRefused,
    RefactorbotError,
    describe_validation_error,
    one_line,
)
from refactorbot.models import DiagnosticCheck, ImprovementFeedback, ImprovementPlan, Model, Proposal

if TYPE_CHECKING:
    from refactorbot.slice import AtomicSlice, Host

__all__ = [
    "ActionKind",
    "BrainAnswer",
    "BrainAnswerInvalid",
    "FailureSample",
    "ImprovementAction",
    "Risk",
    "SliceEvidence",
    "WindowMetrics",
    "actions_of",
    "ask_brain",
    "check_action",
    "config_with",
    "default_self_improve",
    "gather_evidence",
    "window_metrics",
]

#: What an action changes: a setting, a prompt template, or the slice's code (through Refactory).
ActionKind = Literal["config", "prompt", "code"]
#: How much an action may break; ``auto_apply`` lets only low-risk actions through unattended.
Risk = Literal["low", "medium", "high"]
ACTION_KINDS: tuple[str, ...] = ("config", "prompt", "code")
#: Seconds of operation log the evidence covers.
EVIDENCE_WINDOW = 3600.0
#: Characters of one prompt template shown to the brain.
PROMPT_EXCERPT = 4000
#: Operations a slice must have for ``prompt`` actions (the agent slice's prompt versions).
PROMPT_OPERATIONS = ("get_prompt", "set_prompt", "list_prompts", "rollback_prompt")


class BrainAnswerInvalid(RefactorbotError):
    """Raise when the brain's answer is not a valid plan, even after being told why once."""


class ImprovementAction(Model):
    """One action of a plan: what to change, how, why, what it should do and what it risks."""

    model_config = ConfigDict(extra="forbid")

    kind: ActionKind
    target: str = Field(
        min_length=1,
        max_length=200,
        description="config: the setting's name; prompt: the template's name; code: the module or area",
    )
    change: Any = Field(
        description="config: the setting's new value; prompt: the template's whole new text; code: the change in words"
    )
    rationale: str = Field(min_length=1, max_length=2000, description="why, from the evidence")
    expected_effect: str = Field(min_length=1, max_length=1000, description="what should improve, measurably")
    risk: Risk = "medium"
    title: str = Field("", max_length=200)

    def to_proposal(self) -> Proposal:
        """Return the action as a ``Proposal`` of the ``ImprovementPlan`` contract."""
        return Proposal(
            title=self.title or f"{self.kind} {self.target}",
            rationale=self.rationale,
            kind=self.kind,
            changes={
                "target": self.target,
                "change": self.change,
                "expected_effect": self.expected_effect,
                "risk": self.risk,
            },
        )

    @classmethod
    def from_proposal(cls, proposal: Proposal) -> ImprovementAction | None:
        """Return the action a proposal carries, or ``None`` for advice (no kind, target or change)."""
        changes = proposal.changes
        if proposal.kind not in ACTION_KINDS or "target" not in changes or "change" not in changes:
            return None
        return cls(
            kind=proposal.kind,  # type: ignore[arg-type]  # checked against ACTION_KINDS above
            target=changes["target"],
            change=changes["change"],
            rationale=proposal.rationale,
            expected_effect=changes.get("expected_effect") or "not stated",
            risk=changes.get("risk", "medium"),
            title=proposal.title,
        )


class BrainAnswer(Model):
    """What the brain must answer: at most five actions and a short note."""

    model_config = ConfigDict(extra="forbid")

    actions: list[ImprovementAction] = Field(default_factory=list, max_length=5)
    notes: str = Field("", max_length=2000)


class FailureSample(Model):
    """Failures of one operation with one message, in a window."""

    operation: str
    error_type: str | None = None
    message: str = ""
    count: int
    last_at: float


class WindowMetrics(Model):
    """A slice's operations in ``[since, until)`` from the operation log."""

    slice_id: str
    since: float
    until: float
    calls: int = 0
    errors: int = 0
    error_rate: float = 0.0
    mean_ms: float = 0.0
    p95_ms: float = 0.0
    failures: list[FailureSample] = Field(default_factory=list)


class SliceEvidence(Model):
    """What the brain is shown: metrics, failed checks, feedback, settings and prompt templates."""

    slice_id: str
    description: str = ""
    operations: list[str] = Field(default_factory=list)
    metrics: WindowMetrics | None = None
    failed_checks: list[DiagnosticCheck] = Field(default_factory=list)
    feedback: ImprovementFeedback = Field(default_factory=ImprovementFeedback)
    settings: dict[str, Any] = Field(default_factory=dict)
    settings_schema: dict[str, Any] = Field(default_factory=dict)
    prompts: dict[str, str] = Field(default_factory=dict)

    @property
    def has_findings(self) -> bool:
        """Return whether there is anything to improve: failures, failed checks or feedback."""
        failing = self.metrics is not None and self.metrics.errors > 0
        return failing or bool(self.failed_checks) or bool(self.feedback.summary.strip())


def actions_of(plan: ImprovementPlan) -> list[ImprovementAction]:
    """Return the actions a plan carries (its proposals that are actions, not advice)."""
    found = []
    for proposal in plan.proposals:
        try:
            action = ImprovementAction.from_proposal(proposal)
        except ValidationError:
            continue
        if action is not None:
            found.append(action)
    return found


async def window_metrics(
    host: Host, slice_id: str, since: float, until: float | None = None, *, failures: int = 5
) -> WindowMetrics:
    """Return ``slice_id``'s calls, errors, mean and p95 latency and top failures in ``[since, until)``."""
    until = time.time() if until is None else until
    db = await host.master_db()
    where = "slice_id = ? AND ts >= ? AND ts < ?"
    args = (slice_id, since, until)
    row = await db.fetchone(
        f"SELECT COUNT(*) AS calls, COALESCE(SUM(success = 0), 0) AS errors,"  # noqa: S608  fixed clause; values are ? parameters
        f" COALESCE(AVG(duration_ms), 0) AS mean_ms FROM operation_log WHERE {where}",
        args,
    )
    calls = int(row["calls"]) if row else 0
    errors = int(row["errors"]) if row else 0
    p95 = 0.0
    if calls:
        rank = max(0, min(calls - 1, round(0.95 * calls + 0.5) - 1))  # nearest rank, as Metrics does
        p95 = float(
            await db.scalar(
                f"SELECT duration_ms FROM operation_log WHERE {where} ORDER BY duration_ms LIMIT 1 OFFSET ?",  # noqa: S608  fixed clause; values are ? parameters
                (*args, rank),
            )
        )
    rows = await db.fetchall(
        f"SELECT operation, error_type, COALESCE(error_message, '') AS message, COUNT(*) AS count,"  # noqa: S608  fixed clause; values are ? parameters
        f" MAX(ts) AS last_at FROM operation_log WHERE {where} AND success = 0"
        " GROUP BY operation, error_type, message ORDER BY count DESC, last_at DESC LIMIT ?",
        (*args, failures),
    )
    return WindowMetrics(
        slice_id=slice_id,
        since=since,
        until=until,
        calls=calls,
        errors=errors,
        error_rate=errors / calls if calls else 0.0,
        mean_ms=float(row["mean_ms"]) if row else 0.0,
        p95_ms=p95,
        failures=[FailureSample(**{**dict(r), "message": one_line(r["message"])[:500]}) for r in rows],
    )


async def gather_evidence(
    slice_: AtomicSlice, feedback: ImprovementFeedback, failed_checks: list[DiagnosticCheck], window: float
) -> SliceEvidence:
    """Return the evidence of ``slice_``: metrics over the last ``window`` seconds, checks, settings, prompts."""
    host = slice_.ctx.host
    metrics = None
    if host is not None:
        metrics = await window_metrics(host, slice_.slice_id, time.time() - window)
    return SliceEvidence(
        slice_id=slice_.slice_id,
        description=slice_.description or (type(slice_).__doc__ or "").strip().split("\n")[0],
        operations=sorted(slice_.operations()),
        metrics=metrics,
        failed_checks=failed_checks,
        feedback=feedback,
        settings=slice_.config.model_dump(mode="json"),
        settings_schema=type(slice_.config).model_json_schema(),
        prompts=await _prompts_of(slice_),
    )


async def _prompts_of(slice_: AtomicSlice) -> dict[str, str]:
    if not all(op in slice_.operations() for op in PROMPT_OPERATIONS):
        return {}
    from refactorbot.models import SliceRequest

    response = await slice_.execute(SliceRequest(slice_id=slice_.slice_id, operation="list_prompts"))
    if not response.success or not isinstance(response.data, list):
        return {}
    return {str(p["name"]): str(p["content"])[:PROMPT_EXCERPT] for p in response.data}


def config_with(config: BaseModel, setting: str, value: Any) -> BaseModel:
    """Return a copy of ``config`` with ``setting`` set to ``value``, validated; ``ValueError`` says why not."""
    fields = type(config).model_fields
    if setting not in fields:
        known = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"'{setting}' is not a setting of this slice (settings: {known})")
    data = config.model_dump()
    data[setting] = value
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"setting {setting}={value!r} is invalid: {describe_validation_error(exc)}") from None


def check_action(slice_: AtomicSlice, action: ImprovementAction) -> None:
    """Raise ``ValueError`` (one line) when ``action`` cannot apply to ``slice_``."""
    if action.kind == "config":
        config_with(slice_.config, action.target, action.change)
    elif action.kind == "prompt":
        if not all(op in slice_.operations() for op in PROMPT_OPERATIONS):
            raise ValueError(f"slice '{slice_.slice_id}' has no prompt templates")
        if not isinstance(action.change, str) or not action.change.strip():
            raise ValueError("a prompt action's change must be the template's whole new text")
    elif not isinstance(action.change, str) or not action.change.strip():
        raise ValueError("a code action's change must describe the change in words")


async def default_self_improve(
    slice_: AtomicSlice, feedback: ImprovementFeedback, *, window: float = EVIDENCE_WINDOW
) -> ImprovementPlan:
    """Return the slice's plan: from its brain when it has findings and a model, else rule-based."""
    report = await slice_.run_self_diagnostics()
    failed = [c for c in report.checks if not c.passed]
    plan = _rule_based(slice_.slice_id, failed, feedback)
    evidence = await gather_evidence(slice_, feedback, failed, window)
    host = slice_.ctx.host
    if host is None or not evidence.has_findings:
        return plan
    settings = slice_.ctx.settings
    model = settings.slice_brain_model(slice_.slice_id, slice_.ctx.env) if settings is not None else ""
    try:
        answer = await ask_brain(slice_, evidence, model)
    except (GatewayError, LLMCallRefused, BrainAnswerInvalid) as exc:  # no model, refused, or no valid plan
        plan.notes += f"; brain unavailable ({one_line(str(exc))}): rule-based"
        return plan
    return ImprovementPlan(
        slice_id=slice_.slice_id,
        proposals=[a.to_proposal() for a in answer.actions],
        notes=answer.notes or f"{len(answer.actions)} action(s) from {model or 'the main model'}",
    )


def _rule_based(slice_id: str, failed: list[DiagnosticCheck], feedback: ImprovementFeedback) -> ImprovementPlan:
    proposals = [
        Proposal(
            title=f"Fix failing check '{check.name}'",
            rationale=check.detail,
            kind="config" if check.name.startswith("error_rate") else "other",
        )
        for check in failed
    ]
    if feedback.summary:
        proposals.append(
            Proposal(title=f"Address {feedback.source} feedback", rationale=feedback.summary, changes=feedback.details)
        )
    notes = f"{len(proposals)} proposal(s) from diagnostics" if failed else "all checks passed"
    return ImprovementPlan(slice_id=slice_id, proposals=proposals, notes=notes)


_SYSTEM = """You improve one slice of a plugin host for LLM agents: a component with its own \
operations, settings and metrics. From the evidence, propose at most five actions that should \
lower its error rate or latency, or answer the feedback. Kinds:
- "config": set one setting of the slice; "target" is the setting's name, "change" its new value \
(valid against the settings' JSON schema).
- "prompt": a new version of one prompt template; "target" is its name, "change" its whole new text.
- "code": a change to the slice's source; "target" is the module or area, "change" the change in words.
Prefer the smallest change that addresses the cause the failure messages show. Answer with one \
JSON object and nothing else: {"actions": [{"kind": ..., "target": ..., "change": ..., \
"rationale": ..., "expected_effect": ..., "risk": "low"|"medium"|"high", "title": ...}], \
"notes": "..."}. No action when nothing should change."""


async def ask_brain(slice_: AtomicSlice, evidence: SliceEvidence, model: str) -> BrainAnswer:
    """Ask the slice's brain for a plan; retry once with the error; raise ``BrainAnswerInvalid`` after."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "Evidence:\n" + evidence.model_dump_json(indent=1)},
    ]
    problem = ""
    for _ in range(2):
        response = await slice_.ctx.complete(messages, model=model or None)
        try:
            return _parse_answer(slice_, response.content)
        except ValueError as exc:
            problem = one_line(str(exc))
        messages += [
            {"role": "assistant", "content": response.content},
            {"role": "user", "content": f"That answer is invalid: {problem}. Answer again with the JSON object only."},
        ]
    raise BrainAnswerInvalid(f"the brain's plan for '{slice_.slice_id}' is invalid: {problem}")


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def _parse_answer(slice_: AtomicSlice, text: str) -> BrainAnswer:
    fenced = _FENCE.match(text)
    raw = fenced.group(1) if fenced else text.strip()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON object ({exc.msg} at character {exc.pos})") from None
    try:
        answer = BrainAnswer.model_validate(data)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None
    for index, action in enumerate(answer.actions):
        try:
            check_action(slice_, action)
        except ValueError as exc:
            raise ValueError(f"actions.{index}: {exc}") from None
    return answer
