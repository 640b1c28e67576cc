"""Parameters and results of the session slice's operations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field
from refactorbot import Model, SliceConfig

Role = Literal["system", "user", "assistant", "tool"]
Status = Literal["active", "archived"]
_ID: dict[str, Any] = {"min_length": 1, "max_length": 200}


class SessionConfig(SliceConfig):
    """``[slices.session]``: token budgets and archival rules."""

    context_window: int = Field(8192, ge=256, description="tokens the default model accepts")
    reserve_tokens: int = Field(1024, ge=0, description="tokens kept free for the answer")
    context_windows: dict[str, int] = Field(default_factory=dict, description="per-model context windows")
    archive_after_days: float = Field(30.0, gt=0, description="sessions idle this long are archived")
    archive_on_start: bool = Field(True, description="run archive_idle when the slice starts")
    max_content_chars: int = Field(200_000, ge=1, description="longest message accepted")


class _Params(Model):
    model_config = ConfigDict(extra="forbid")


class GetOrCreateParams(_Params):
    channel: str = Field(description="channel name, e.g. 'cli' or 'telegram'", **_ID)
    chat_id: str = Field(description="the chat on that channel", **_ID)
    user_id: str = Field(description="who is talking", **_ID)
    title: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Session(Model):
    """One conversation."""

    session_id: str
    channel: str
    chat_id: str
    user_id: str
    status: Status
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    updated_at: float
    archived_at: float | None = None
    message_count: int = 0
    token_count: int = 0
    created: bool = False


class NewMessage(_Params):
    role: Role
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = Field(None, description="OpenAI-style tool calls of an assistant turn")
    tool_call_id: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)
    duration_ms: float | None = Field(None, ge=0)


class AppendParams(NewMessage):
    session_id: str = Field(**_ID)


class ExtendParams(_Params):
    session_id: str = Field(**_ID)
    messages: list[NewMessage] = Field(min_length=1, max_length=200)


class Message(Model):
    """One stored message."""

    id: int
    session_id: str
    role: Role
    content: str
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    tokens: int
    duration_ms: float | None = None
    created_at: float


class HistoryParams(_Params):
    session_id: str = Field(**_ID)
    max_tokens: int | None = Field(None, ge=1, description="token budget (default: context window minus reserve)")
    model: str | None = Field(None, max_length=200, description="pick the budget from this model's context window")
    limit: int | None = Field(None, ge=1, le=10_000, description="newest messages at most")


class BeginTurnParams(_Params):
    channel: str = Field(description="channel name, e.g. 'cli' or 'telegram'", **_ID)
    chat_id: str = Field(description="the chat on that channel", **_ID)
    user_id: str = Field(description="who is talking (the owner of a session created now)", **_ID)
    content: str = Field(description="the user's message, stored in the session")
    title: str | None = Field(None, max_length=200, description="title of a session created now")
    metadata: dict[str, Any] = Field(default_factory=dict, description="metadata of a session created now")
    max_tokens: int | None = Field(None, ge=1, description="history budget (default: context window minus reserve)")
    model: str | None = Field(None, max_length=200, description="pick the budget from this model's context window")
    limit: int | None = Field(None, ge=1, le=10_000, description="newest messages of the history at most")


class History(Model):
    """A session's messages in chat format, trimmed to a token budget."""

    session_id: str
    messages: list[dict[str, Any]]
    tokens: int
    budget: int
    dropped: int = Field(description="older messages left out to fit the budget")


class ListParams(_Params):
    user_id: str | None = Field(None, **_ID)
    channel: str | None = Field(None, **_ID)
    status: Status | None = None
    limit: int = Field(50, ge=1, le=1000)


class SessionIdParams(_Params):
    session_id: str = Field(**_ID)


class ArchiveIdleParams(_Params):
    idle_days: float | None = Field(None, gt=0, description="default: archive_after_days from the config")


class ArchiveResult(Model):
    archived: int
    session_ids: list[str]


class StatsParams(_Params):
    session_id: str | None = Field(None, **_ID)


class SessionStats(Model):
    """Analytics of one session, or of all when no session is named."""

    sessions: int
    active: int
    archived: int
    messages: int
    tokens: int
    by_role: dict[str, int]
    span_seconds: float = Field(description="first to last message (one session) or mean span per session")
    mean_response_ms: float | None = Field(None, description="mean duration of assistant turns")


class TurnStart(Model):
    """What ``begin_turn`` returns: the session, the user's stored message, the history ending with it."""

    session: Session
    message: Message
    history: History


class SearchParams(_Params):
    query: str = Field(
        min_length=1, max_length=200, description="text found in a session's id, title, chat, user or messages"
    )
    status: Status | None = None
    limit: int = Field(50, ge=1, le=500)


class SessionMatch(Session):
    """A session a search found, and where: the newest matching message's text around the match."""

    matched: Literal["session", "message"] = Field(description="the session's own fields, or a message")
    snippet: str = Field("", description="up to 160 characters of the matching message")
