"""Request and response bodies of the control API (they make up its OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

# Plain pydantic models: FastAPI builds their schemas itself (deferred builds confuse its body aliases).
from pydantic import BaseModel, ConfigDict, Field
from refactorbot import DiagnosticCheck, SliceCapabilities


class ErrorBody(BaseModel):
    """Every error: one line saying what went wrong."""

    detail: str = Field(description="what went wrong, in one line")


class ValidationErrorBody(BaseModel):
    """A request the API refused: one line, plus the individual errors."""

    detail: str = Field(description="what is wrong with the request, in one line")
    errors: list[dict[str, Any]] = Field(default_factory=list)


class DiagnosticsResult(BaseModel):
    """A slice's self-diagnosis and whether every check passed."""

    slice_id: str
    checks: list[DiagnosticCheck]
    passed: bool


class Health(BaseModel):
    """Liveness of the host (the only endpoint without a token)."""

    status: Literal["ok"] = "ok"
    version: str
    slices_running: int
    slices_total: int


class PluginInfo(BaseModel):
    """One plugin as the host loaded it (failed ones included)."""

    name: str
    version: str | None = None
    entry_point: str | None = None
    status: str = Field(description="ok, failed, hung, blocked or incompatible")
    hooks: list[str] = Field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    warning: str | None = Field(
        None, description="set on a plugin that loaded with something to know (declares no REFACTORBOT_API)"
    )


class SliceStatus(BaseModel):
    """One slice: lifecycle status, health, heartbeat age and operation totals."""

    model_config = ConfigDict(extra="allow")

    slice_id: str
    plugin: str
    version: str
    status: str = Field(description="pending, initializing, running, degraded, failed or stopped")
    health: str | None = None
    heartbeat_age_s: float | None = None
    restarts: int = 0
    error: str | None = None
    requires: list[str] = Field(default_factory=list)
    count: int = 0
    errors: int = 0
    error_rate: float = 0.0
    ops_per_s: float = 0.0


class SliceDetail(SliceStatus):
    """A slice's status plus its capabilities (operations with JSON schemas)."""

    capabilities: SliceCapabilities


class OperationStats(BaseModel):
    """Counts and latency percentiles of one ``slice.operation``."""

    count: int
    errors: int
    error_rate: float
    ops_per_s: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


class MetricsReport(BaseModel):
    """Per-operation metrics, process readings and per-slice resource use."""

    operations: dict[str, OperationStats] = Field(description="keyed by slice.operation")
    process: dict[str, float] = Field(description="pid, rss_mb, cpu_seconds, cpu_percent, threads")
    resources: dict[str, dict[str, Any]] = Field(description="limits and current use per slice")


class OperationBucket(BaseModel):
    """Operations of one slice in one minute."""

    minute: float = Field(description="start of the minute, Unix seconds")
    slice_id: str
    count: int
    errors: int
    mean_ms: float
    max_ms: float


class LogEntry(BaseModel):
    """One row of the unified log."""

    id: int
    ts: float
    level: int
    level_name: str
    slice_id: str | None = None
    logger: str
    message: str


class LogPage(BaseModel):
    """A page of log rows, newest first; pass ``next_before_id`` as ``before_id`` for the next page."""

    items: list[LogEntry]
    next_before_id: int | None = None


class SettingsView(BaseModel):
    """The configuration file's content with secrets masked."""

    config_file: str
    exists: bool
    sections: dict[str, Any] = Field(description="the TOML tables, secrets replaced by '***'")


class SettingsUpdated(SettingsView):
    """The configuration after a successful update."""

    section: str
    restart_required: bool = True


class ChatRequest(BaseModel):
    """A message for the agent, as an API client sends it."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000)
    chat_id: str = Field("api", min_length=1, max_length=200)
    sender_id: str = Field("api", min_length=1, max_length=200)
    sender_name: str | None = Field(None, max_length=200)
