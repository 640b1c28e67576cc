"""Settings, targets, policies, operation parameters and results of the scheduling slice."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from refactorbot import Model, SliceConfig

JOB_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
OPERATION = r"^[a-z][a-z0-9_]{0,39}\.[a-z_][a-z0-9_]{0,63}$"
CHANNEL = r"^[a-z][a-z0-9_]{0,39}$"
STEP_NAME = r"^[a-z][a-z0-9_]{0,39}$"
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
CHAT_ADDRESS = r"^[a-z][a-z0-9_]{0,39}:.{1,200}$"
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

Misfire = Literal["skip", "run_once", "catch_up"]
Overlap = Literal["skip", "queue", "allow"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "timeout", "interrupted", "skipped"]


def check_hours(value: str | None) -> str | None:
    """Return ``HH:MM-HH:MM`` (start inclusive, end exclusive; may cross midnight) or raise ``ValueError``."""
    if value is None:
        return None
    if not _HOURS.match(value) or value.endswith("24:01"):
        raise ValueError("active hours are HH:MM-HH:MM, e.g. 08:00-22:00 (24:00 for midnight at the end)")
    start, end = value.split("-")
    if start == end:
        raise ValueError("active hours must not start and end at the same time")
    return value


class SchedulingConfig(SliceConfig):
    """``[slices.scheduling]`` (every field also ``RB_SCHEDULING_<FIELD>``)."""

    default_timeout: float = Field(300.0, gt=0, le=86_400, description="seconds a run may take unless its job says")
    max_concurrent_runs: int = Field(64, ge=1, le=10_000, description="runs at the same time, all jobs together")
    output_limit: int = Field(10_000, ge=100, le=1_000_000, description="characters of output or error kept per run")
    failure_alert_after: int = Field(3, ge=1, le=1000, description="failed runs in a row that raise alert.job_failing")
    workspace: str | None = Field(None, description="folder holding HEARTBEAT.md (default <home>/workspace)")
    heartbeat_every: float = Field(30.0, ge=0, le=1440, description="minutes between heartbeats (0: off)")
    heartbeat_active_hours: str | None = Field(
        None, description="HH:MM-HH:MM when heartbeats run, in heartbeat_tz (default: all day)"
    )
    heartbeat_tz: str | None = Field(None, description="zone of the active hours (default [core] timezone)")
    heartbeat_channel: str | None = Field(None, pattern=CHANNEL, description="channel a heartbeat's news goes to")
    heartbeat_chat_id: str | None = Field(None, min_length=1, max_length=200, description="chat on that channel")
    alerts_every: float = Field(60.0, ge=0, le=86_400, description="seconds between alert rule checks (0: off)")
    alert_channels: list[Annotated[str, Field(pattern=CHAT_ADDRESS)]] = Field(
        default_factory=list, max_length=20, description='chats alerts go to, as "channel:chat_id"'
    )
    alert_template: str = Field("alert", pattern=TEMPLATE_NAME, description="communication template of alerts")
    alert_repeat: float = Field(3600.0, gt=0, description="seconds before a still-firing alert is sent again")
    alert_max_per_hour: int = Field(20, ge=1, le=10_000, description="alert messages sent per hour at most")
    stale_after: float = Field(120.0, gt=0, description="seconds without a slice heartbeat before it counts as down")
    error_rate_threshold: float = Field(0.2, gt=0, le=1, description="share of failed operations that alerts")
    error_rate_window: float = Field(300.0, gt=0, le=86_400, description="seconds the error rate and p95 look back")
    error_rate_min_calls: int = Field(10, ge=1, description="operations in the window before the rate counts")
    latency_p95_ms: float = Field(10_000.0, gt=0, description="p95 operation latency (ms) that alerts")
    spend_share: float = Field(0.8, gt=0, le=10, description="share of an LLM budget spent that alerts")
    diagnostics_every: float = Field(21_600.0, ge=0, le=30 * 86_400, description="seconds between self-diagnostics")

    @field_validator("heartbeat_active_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        return check_hours(value)


# -- targets -------------------------------------------------------------------------------------


class _Strict(Model):
    model_config = ConfigDict(extra="forbid")


class OperationTarget(_Strict):
    """Run a slice operation with a payload."""

    type: Literal["operation"] = "operation"
    operation: str = Field(pattern=OPERATION, description="slice.operation, e.g. memory.prune")
    payload: dict[str, Any] = Field(default_factory=dict)


class PromptTarget(_Strict):
    """Send a prompt to the agent: in the job's own session ``cron:<job>``, or in a chat's session."""

    type: Literal["prompt"] = "prompt"
    prompt: str = Field(min_length=1, max_length=20_000)
    channel: str | None = Field(None, pattern=CHANNEL, description="with chat_id: run in that chat's session")
    chat_id: str | None = Field(None, min_length=1, max_length=200)
    deliver: bool = Field(True, description="send the answer to the chat (when channel and chat_id are given)")

    @model_validator(mode="after")
    def _both(self) -> PromptTarget:
        if (self.channel is None) != (self.chat_id is None):
            raise ValueError("give channel and chat_id together")
        return self


class MessageTarget(_Strict):
    """Send a message to a chat through the communication slice: ``text``, or a ``template`` with variables."""

    type: Literal["message"] = "message"
    channel: str = Field(pattern=CHANNEL)
    chat_id: str = Field(min_length=1, max_length=200)
    text: str | None = Field(None, min_length=1, max_length=100_000)
    template: str | None = Field(None, pattern=TEMPLATE_NAME)
    variables: dict[str, str] = Field(default_factory=dict, max_length=100)

    @model_validator(mode="after")
    def _text_or_template(self) -> MessageTarget:
        if (self.text is None) == (self.template is None):
            raise ValueError("give either text or template")
        if self.variables and self.template is None:
            raise ValueError("variables go with a template")
        return self


class WorkflowStep(_Strict):
    """One step: an operation or a prompt. ``$prev`` and ``$<step>`` in its strings are earlier outputs."""

    name: str = Field(pattern=STEP_NAME)
    operation: str | None = Field(None, pattern=OPERATION)
    payload: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = Field(None, min_length=1, max_length=20_000)

    @model_validator(mode="after")
    def _one(self) -> WorkflowStep:
        if (self.operation is None) == (self.prompt is None):
            raise ValueError("a step has either operation or prompt")
        if self.payload and self.operation is None:
            raise ValueError("payload goes with operation")
        return self


class WorkflowTarget(_Strict):
    """Ordered steps, each seeing the previous outputs; stops at the first failure."""

    type: Literal["workflow"] = "workflow"
    steps: list[WorkflowStep] = Field(min_length=1, max_length=20)

    @field_validator("steps")
    @classmethod
    def _unique(cls, steps: list[WorkflowStep]) -> list[WorkflowStep]:
        names = [s.name for s in steps]
        if len(set(names)) != len(names) or "prev" in names:
            raise ValueError("step names must be unique and not 'prev'")
        return steps


Target = Annotated[
    OperationTarget | PromptTarget | MessageTarget | WorkflowTarget,
    Field(discriminator="type"),
]


class JobPolicy(_Strict):
    """What happens around a run: missed fires, overlaps, timeout, retries, jitter, history kept."""

    misfire: Misfire = Field("run_once", description="fires missed while down: skip, run_once or catch_up")
    catch_up_max: int = Field(10, ge=1, le=1000, description="with misfire = catch_up: missed fires run at most")
    overlap: Overlap = Field("skip", description="a fire while the last run still runs: skip, queue or allow")
    timeout: float | None = Field(None, gt=0, le=86_400, description="seconds (default: default_timeout)")
    retries: int = Field(0, ge=0, le=10, description="attempts after a failed one")
    retry_backoff: float = Field(30.0, ge=0.01, le=3600, description="seconds before the first retry, doubled")
    jitter: float = Field(0.0, ge=0, le=3600, description="random delay up to this many seconds")
    keep_runs: int = Field(100, ge=1, le=100_000, description="runs kept in the job's history")


# -- operations ----------------------------------------------------------------------------------


class AddJob(JobPolicy):
    """A new job: a name, one schedule (cron, every or at), a zone and a target."""

    name: str = Field(pattern=JOB_NAME)
    cron: str | None = Field(None, min_length=9, max_length=200, description="5 fields, or 6 with seconds first")
    every: str | None = Field(None, min_length=1, max_length=32, description="seconds or 30s, 15m, 2h, 1d, 1h30m")
    at: str | None = Field(
        None, min_length=10, max_length=40, description="ISO 8601 time, in tz unless it has an offset"
    )
    tz: str | None = Field(None, min_length=1, max_length=64, description="IANA zone (default [core] timezone)")
    target: Target
    description: str = Field("", max_length=500)
    paused: bool = False

    @model_validator(mode="after")
    def _one_schedule(self) -> AddJob:
        given = [k for k in ("cron", "every", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one schedule: cron, every or at")
        return self


class JobName(_Strict):
    """A job's name."""

    name: str = Field(pattern=JOB_NAME)


class ListJobs(_Strict):
    """Which jobs to list."""

    include_system: bool = Field(True, description="also the heartbeat, alert and diagnostics jobs")


class Job(Model):
    """A job as stored, with its next run in its zone and in the host's zone."""

    id: int
    name: str
    kind: str
    schedule: str
    tz: str
    target: dict[str, Any]
    policy: dict[str, Any]
    description: str
    system: bool
    state: Literal["active", "paused", "done"]
    next_run_at: float | None = Field(None, description="Unix time")
    next_run: str | None = Field(None, description="ISO 8601 in the job's zone")
    next_run_local: str | None = Field(None, description="ISO 8601 in the host's zone")
    local_tz: str
    last_run_at: float | None = None
    last_status: str | None = None
    consecutive_failures: int = 0
    running: int = 0
    created_at: float


class JobList(Model):
    """Jobs by name."""

    local_tz: str
    jobs: list[Job]


class Removed(Model):
    """Whether a job was removed."""

    removed: bool


class HistoryParams(_Strict):
    """A job's runs, newest first."""

    name: str = Field(pattern=JOB_NAME)
    limit: int = Field(20, ge=1, le=1000)
    status: RunStatus | None = None


class Run(Model):
    """One run of a job."""

    id: int
    job: str
    scheduled_for: float
    trigger: str
    status: str
    attempts: int
    claimed_at: float
    started_at: float | None = None
    ended_at: float | None = None
    duration_ms: float | None = None
    output: str | None = None
    error: str | None = None
    delivery: str | None = None
    steps: list[dict[str, Any]] | None = None


class RunList(Model):
    """Runs, newest first."""

    runs: list[Run]


class RunNowResult(Model):
    """A run started by hand, once it ended."""

    run: Run


class TimelineParams(_Strict):
    """Runs in the last ``hours`` and fires due in the next ``hours``."""

    hours: float = Field(24.0, gt=0, le=168)
    limit: int = Field(
        2000, ge=1, le=20_000, description="runs, and fires due, at most (the newest runs, the soonest fires)"
    )
    per_job: int = Field(
        100, ge=1, le=20_000, description="fires due of one job at most, so a frequent job leaves room"
    )


class Upcoming(Model):
    """A fire due later."""

    job: str
    at: float


class Timeline(Model):
    """What ran and what is due, around now."""

    now: float
    runs: list[Run]
    upcoming: list[Upcoming]


class Alert(Model):
    """An alert: firing or resolved."""

    key: str
    kind: str
    subject: str
    state: Literal["firing", "resolved"]
    message: str
    value: float | None = None
    first_at: float
    last_seen_at: float
    last_sent_at: float | None = None
    sent_count: int = 0
    suppressed: int = 0
    resolved_at: float | None = None
    delivery: str | None = None


class AlertsParams(_Strict):
    """Which alerts to list."""

    state: Literal["firing", "resolved", "all"] = "all"
    limit: int = Field(100, ge=1, le=1000)


class AlertList(Model):
    """Alerts, firing first, newest first."""

    alerts: list[Alert]


class CheckResult(Model):
    """What one check of the alert rules found."""

    firing: list[str]
    raised: list[str]
    resolved: list[str]


class Diagnosis(Model):
    """One slice's self-diagnostics result."""

    slice_id: str
    ran_at: float
    passed: bool
    report: dict[str, Any]


class DiagnosticsList(Model):
    """The latest self-diagnostics of each slice."""

    results: list[Diagnosis]


class NoParams(_Strict):
    """No parameters."""


class Status(Model):
    """The scheduler at a glance."""

    serving: bool
    jobs: int
    active: int
    paused: int
    running: int
    next_run_at: float | None
    armed_for: float | None = Field(None, description="when the one timer fires next")
    timer: str = Field(
        "off",
        description="the timer: held (this host fires jobs), standby (another host holds scheduling.timer), off",
    )
    timer_holder: str | None = Field(None, description="who holds scheduling.timer, when known")
    local_tz: str
    alerts_firing: int
