"""Configuration, parameters and results of the agent slice."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field
from refactorbot import Model, RetentionConfig

Mode = Literal["auto", "single", "two_phase"]
_ID: dict[str, Any] = {"min_length": 1, "max_length": 200}


class AgentConfig(RetentionConfig):
    """``[slices.agent]``: models, limits, context sources."""

    model: str | None = Field(None, description="model of single-phase runs (default: the host's [llm] model)")
    planning_model: str | None = Field(None, description="model that writes the plan in two-phase runs")
    execution_model: str | None = Field(None, description="model that carries the plan out")
    max_steps: int = Field(8, ge=1, le=100, description="model calls per run at most")
    max_run_tokens: int = Field(60_000, ge=100, description="tokens one run may spend")
    history_tokens: int | None = Field(None, ge=1, description="history budget (default: the session slice's)")
    memory_limit: int = Field(5, ge=0, le=50, description="memories recalled per run")
    workspace: str | None = Field(None, description="project folder (default: <home>/workspace)")
    rules_file: str | None = Field(None, description="project rules file (default: <workspace>/AGENTS.md)")
    rules_max_chars: int = Field(20_000, ge=0)
    native_tools: bool = Field(True, description="false: describe tools in the prompt and parse TOOL: lines")
    two_phase_min_chars: int = Field(600, ge=1, description="auto mode plans first for requests this long")
    tool_output_chars: int = Field(20_000, ge=100, description="tool output longer than this is cut for the model")


class _Params(Model):
    model_config = ConfigDict(extra="forbid")


class RunParams(_Params):
    message: str = Field(min_length=1, max_length=100_000, description="what the user said")
    session_id: str | None = Field(None, **_ID)
    user_id: str | None = Field(None, **_ID)
    mode: Mode = Field("auto", description="auto (chosen from the request), single or two_phase")
    model: str | None = Field(None, max_length=200, description="override the configured model(s)")
    memories: list[str] | None = Field(None, max_length=50, description="already recalled memories (skips the search)")
    history: list[dict[str, Any]] | None = Field(
        None,
        max_length=10_000,
        description=(
            "the session's history as the caller just read it (session.begin_turn or session.history with this"
            " run's model), oldest first: used instead of reading session.history again, unless"
            " [slices.agent] sets its own budget (history_tokens, or model when the run names none)"
        ),
    )
    max_steps: int | None = Field(None, ge=1, le=100)
    workspace: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="folder every tool call of this run works in (absolute; the tools slice checks it is allowed)",
    )


class ToolCallRecord(Model):
    """One tool call the agent made and how it went."""

    id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool
    output: str = ""
    error: str | None = None
    duration_ms: float = 0.0


class TokenCount(Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class RunResult(Model):
    """What one agent run produced."""

    answer: str
    success: bool = True
    execution_id: str
    mode: Literal["single", "two_phase"]
    model: str = ""
    plan: str | None = None
    steps: int = 0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    tokens: TokenCount = Field(default_factory=TokenCount)
    limit_hit: Literal["steps", "tokens"] | None = None
    remember: list[str] = Field(default_factory=list, description="facts the model marked with REMEMBER:")
    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="the turn's new messages (tool calls, tool results, answer) in chat format"
    )
    duration_ms: float = 0.0
    error: str | None = None


class ExecutionsParams(_Params):
    limit: int = Field(20, ge=1, le=500)
    session_id: str | None = Field(None, **_ID)
    user_id: str | None = Field(None, **_ID)


class Execution(Model):
    """A recorded run."""

    id: str
    session_id: str | None
    user_id: str | None
    request: str
    response: str
    mode: str
    model: str | None
    plan: str | None
    steps: int
    tool_calls: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float
    success: bool
    limit_hit: str | None
    error: str | None
    created_at: float


class PromptName(_Params):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    version: int | None = Field(None, ge=1, description="default: the newest")


class SetPromptParams(_Params):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    content: str = Field(min_length=1, max_length=50_000)
    note: str | None = Field(None, max_length=500)


class PromptTemplate(Model):
    name: str
    version: int
    content: str
    note: str | None = None
    created_at: float


class PromptVersionsParams(_Params):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")


class RollbackPromptParams(_Params):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1, description="the version whose text becomes the current one again")


class Pruned(Model):
    """What one retention pass of the executions log deleted, and what it keeps."""

    deleted: int = Field(description="runs deleted (past retention_days, or beyond retention_max_rows)")
    remaining: int = Field(description="runs the log still holds")
