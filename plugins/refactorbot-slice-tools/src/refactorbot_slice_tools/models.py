"""Configuration, operation parameters and results of the tools slice."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from refactorbot import Model, RetentionConfig

TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class ToolsConfig(RetentionConfig):
    """``[slices.tools]``: the workspace, timeouts, rate limits and what the log keeps."""

    workspace: str | None = Field(None, description="workspace given to tools (default <home>/workspace)")
    extra_workspace_roots: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="folders under which a tools.execute call may name its own workspace (relative: to the home)",
    )
    timeout: float = Field(20.0, gt=0, description="seconds a tool may run (keep below the slice's timeout)")
    timeouts: dict[str, float] = Field(default_factory=dict, description="per-tool timeouts in seconds")
    rate_limits: dict[str, float] = Field(default_factory=dict, description="per-tool calls per minute")
    disabled: list[str] = Field(default_factory=list, description="tools disabled at every start")
    log_result_chars: int = Field(2_000, ge=0, description="characters of each result kept in the log")
    log_value_chars: int = Field(500, ge=16, description="characters of each logged argument value")


class ToolInfo(Model):
    """One installed tool as the registry knows it."""

    name: str
    description: str
    category: str
    plugin: str | None = None
    version: str | None = None
    enabled: bool = True
    definition: dict[str, Any] = Field(description="the tool in OpenAI function-calling format")


class ListParams(Model):
    """Arguments of ``tools.list``."""

    model_config = {"extra": "forbid"}

    include_disabled: bool = Field(False, description="list disabled tools too (their schemas are never offered)")
    category: str | None = Field(None, description="only tools of this category (files, exec, web, ...)")


class ToolList(Model):
    """Installed tools and, in ``schemas``, the enabled ones ready to pass as ``tools=`` to an LLM."""

    tools: list[ToolInfo]
    schemas: list[dict[str, Any]]


class ExecuteParams(Model):
    """Arguments of ``tools.execute``."""

    model_config = {"extra": "forbid"}

    tool: str = Field(min_length=1, max_length=64, description="tool name, e.g. files_read")
    arguments: dict[str, Any] | str = Field(
        default_factory=dict, description="the tool's arguments (an object, or its JSON text as a model wrote it)"
    )
    session_id: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, max_length=200)
    call_id: str | None = Field(None, max_length=200, description="the model's tool-call id")
    workspace: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="run in this folder instead of the slice's workspace; it must lie inside an allowed root"
        " ([slices.tools] extra_workspace_roots, or one a slice registered)",
    )


class WorkspaceRoot(Model):
    """Arguments of ``tools.allow_workspace_root`` (accepted only from another slice)."""

    model_config = {"extra": "forbid"}

    path: str = Field(min_length=1, max_length=1024, description="absolute folder; workspaces may be made below it")


class WorkspaceRoots(Model):
    """The folders under which a call may name its own workspace."""

    roots: list[str]


class ToolName(Model):
    """Arguments of ``tools.enable`` and ``tools.disable``."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=64, description="tool name")


class StatsParams(Model):
    """Arguments of ``tools.stats``."""

    model_config = {"extra": "forbid"}

    tool: str | None = Field(None, max_length=64, description="one tool only")
    since: float | None = Field(None, ge=0, description="only calls after this Unix time")


class ToolUsage(Model):
    """Usage of one tool."""

    tool: str
    calls: int
    errors: int
    error_rate: float
    avg_ms: float
    p95_ms: float
    last_used: float | None


class ToolStats(Model):
    """Usage statistics per tool, busiest first."""

    tools: list[ToolUsage]
    total_calls: int


class HistoryParams(Model):
    """Arguments of ``tools.history``."""

    model_config = {"extra": "forbid"}

    tool: str | None = Field(None, max_length=64, description="one tool only")
    session_id: str | None = Field(None, max_length=200, description="one session only")
    failures_only: bool = Field(False, description="only failed calls")
    limit: int = Field(50, ge=1, le=1000)


class ExecutionRecord(Model):
    """One logged tool call (secrets masked, long values cut)."""

    id: int
    tool: str
    call_id: str | None
    parameters: Any
    result: str | None
    success: bool
    error: str | None
    duration_ms: float
    session_id: str | None
    user_id: str | None
    timestamp: float


class History(Model):
    """Recent tool calls, newest first."""

    executions: list[ExecutionRecord]


class ToolLimit(Model):
    """One tool's limits and how close it is to them."""

    tool: str
    enabled: bool
    timeout_s: float = Field(description="seconds a call may run")
    per_minute: float | None = Field(None, description="rate limit in calls per minute (None: none)")
    available: float | None = Field(None, description="calls that may start now without waiting (rate-limited tools)")
    refused: int = Field(0, description="calls refused by the rate limit since the slice started")


class ToolLimits(Model):
    """Every installed tool's limits."""

    tools: list[ToolLimit]


class Pruned(Model):
    """What one retention pass of the execution log deleted, and what it keeps."""

    deleted: int = Field(description="calls deleted (past retention_days, or beyond retention_max_rows)")
    remaining: int = Field(description="calls the log still holds")
