"""Settings, operation parameters and results of the improve slice."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from refactorbot import ActionKind, ImprovementFeedback, Model, Risk, SliceConfig, WindowMetrics

SLICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ChangeStatus = Literal[
    "pending",
    "approved",
    "rejected",
    "failed",
    "coding",
    "ready_to_land",
    "evaluating",
    "kept",
    "rolled_back",
    "handed_off",
]
Verdict = Literal["better", "equal", "worse", "inconclusive"]
#: Changes still waiting on someone or something.
OPEN_STATUSES = ("pending", "approved", "coding", "ready_to_land", "evaluating", "handed_off")
#: A slice with a change in one of these has its one change in progress: the next waits.
BUSY_STATUSES = ("coding", "evaluating")
Argv = Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=200)]
RISKS = ("low", "medium", "high")


class ImproveConfig(SliceConfig):
    """``[slices.improve]`` (every field also ``RB_IMPROVE_<FIELD>``)."""

    auto_apply: list[ActionKind] = Field(
        default_factory=list, description='kinds approved without a person, e.g. ["config", "prompt"]'
    )
    auto_apply_max_risk: Risk = Field("low", description="riskier actions wait for approval even when auto-applied")
    evidence_window: float = Field(3600.0, gt=0, le=30 * 86_400, description="seconds of metrics a plan looks at")
    eval_window: float = Field(
        600.0, gt=0, le=30 * 86_400, description="seconds after a deploy before it is evaluated at the latest"
    )
    min_calls: int = Field(20, ge=1, le=1_000_000, description="calls needed on each side of a deploy to compare")
    error_rate_margin: float = Field(
        0.02, ge=0, le=1, description="rise of the error rate (absolute) that makes a change worse"
    )
    latency_margin: float = Field(
        0.5, ge=0, le=100, description="relative rise of p95 latency that makes a change worse"
    )
    latency_floor_ms: float = Field(5.0, ge=0, description="p95 differences below this many ms are noise")
    candidate_timeout: float = Field(30.0, gt=0, le=600, description="seconds a candidate may take to start and stop")
    code_test_commands: dict[str, Argv] = Field(
        default_factory=dict,
        description="per slice id: the distribution's own test command, run in the checkout at the"
        " integration branch (default: this Python's -m pytest <distribution folder>/tests)",
    )
    code_land: bool = Field(
        False, description="land a green code change (fast-forward) by itself; false: stop at ready_to_land"
    )
    code_agents: int = Field(1, ge=1, le=32, description="Refactory coders per code change")
    code_planner: Literal["auto", "model", "template"] = Field("auto", description="Refactory planner of a code change")
    code_timeout: float = Field(
        3600.0, gt=0, le=7 * 86_400, description="seconds a code change may spend in Refactory before it fails"
    )
    test_timeout: float = Field(900.0, gt=0, le=86_400, description="seconds the distribution's tests may run")


class _Params(Model):
    model_config = ConfigDict(extra="forbid")


class RunCycleParams(_Params):
    slice_id: str = Field(pattern=SLICE_ID, description="the slice to improve")
    feedback: ImprovementFeedback | None = None
    trigger: str = Field("operation", min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")


class ChangeId(_Params):
    id: int = Field(ge=1)


class DecideParams(_Params):
    id: int = Field(ge=1)
    by: str = Field("operator", min_length=1, max_length=80, description="who decides (shown in the audit trail)")
    reason: str = Field("", max_length=1000)


class EvaluateParams(_Params):
    id: int | None = Field(None, ge=1, description="one change (default: every change being evaluated)")
    final: bool = Field(False, description="conclude even before min_calls (inconclusive without data)")


class ListChangesParams(_Params):
    status: ChangeStatus | None = None
    slice_id: str | None = Field(None, pattern=SLICE_ID)
    limit: int = Field(100, ge=1, le=1000)


class ListCyclesParams(_Params):
    slice_id: str | None = Field(None, pattern=SLICE_ID)
    limit: int = Field(50, ge=1, le=1000)


class CycleId(_Params):
    id: int = Field(ge=1)


class AuditParams(_Params):
    cycle_id: int | None = Field(None, ge=1)
    change_id: int | None = Field(None, ge=1)
    limit: int = Field(200, ge=1, le=5000)


class Change(Model):
    """One proposed change and everything that happened to it."""

    id: int
    cycle_id: int
    slice_id: str
    kind: ActionKind
    target: str
    title: str
    change: Any
    previous: Any = None
    diff: str = ""
    rationale: str
    expected_effect: str
    risk: Risk
    status: ChangeStatus
    decided_by: str | None = None
    reason: str | None = None
    candidate: str | None = None
    deployed_at: float | None = None
    evaluate_by: float | None = None
    concluded_at: float | None = None
    before_metrics: WindowMetrics | None = None
    after_metrics: WindowMetrics | None = None
    verdict: Verdict | None = None
    refactory_request: int | None = None
    created_at: float
    updated_at: float


class AuditEntry(Model):
    id: int
    ts: float
    cycle_id: int | None = None
    change_id: int | None = None
    step: str
    actor: str
    detail: str


class Cycle(Model):
    """One improvement cycle: the plan for one slice, its changes and (in ``show``) its audit trail."""

    id: int
    slice_id: str
    trigger: str
    status: str
    notes: str
    plan: dict[str, Any]
    metrics: WindowMetrics | None = None
    error: str | None = None
    created_at: float
    changes: list[Change] = Field(default_factory=list)
    audit: list[AuditEntry] = Field(default_factory=list)


class Evaluated(Model):
    """What ``evaluate`` did: changes concluded, and those still waiting for calls."""

    concluded: list[Change] = Field(default_factory=list)
    waiting: list[str] = Field(default_factory=list, description="one line per change still collecting calls")


class Override(Model):
    slice_id: str
    settings: dict[str, Any]
    file: str
