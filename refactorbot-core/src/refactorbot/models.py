"""The request, response and status models shared by the host, slices and clients."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """Base of refactorbot's models: schemas are built on first use, keeping imports fast."""

    model_config = ConfigDict(defer_build=True)


#: Ids need to be unique, not secret: a generator seeded from the OS (again in a forked child)
#: draws them without a system call each.
_IDS = random.Random(os.urandom(32))  # noqa: S311  ids must be unique, not unguessable; seeded from os.urandom
os.register_at_fork(after_in_child=lambda: _IDS.seed(os.urandom(32)))


def _request_id() -> str:
    """Return 32 random hex digits (uuid4's shape)."""
    return f"{_IDS.getrandbits(128):032x}"


class SliceRequest(Model):
    """A request for one operation of one slice."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    slice_id: str
    operation: str
    payload: dict[str, Any] = Field(default_factory=dict)
    request_id: str = Field(default_factory=_request_id)
    caller: str | None = None  # slice id of a cross-slice caller, None for external callers
    created_at: float = Field(default_factory=time.time)
    #: W3C ``traceparent`` of the caller's span (a request from another process: the API's header,
    #: a worker); once routed with tracing on, of the request's own operation span. See ``refactorbot.tracing``.
    traceparent: str | None = Field(None, max_length=512)

    @property
    def target(self) -> str:
        """Return ``slice.operation``."""
        return f"{self.slice_id}.{self.operation}"


class ErrorType(StrEnum):
    """Why a request failed; stable strings for clients to branch on."""

    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_OPERATION = "unknown_operation"
    SLICE_UNAVAILABLE = "slice_unavailable"
    SLICE_CRASHED = "slice_crashed"  # an isolated slice's worker process died while running it
    RESOURCE_LIMIT = "resource_limit"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    OPERATION_ERROR = "operation_error"


class SliceResponse(Model):
    """The outcome of a request: data on success, a one-line error otherwise."""

    request_id: str
    success: bool
    data: Any = None
    error_message: str | None = None
    error_type: ErrorType | None = None
    duration_ms: float = 0.0

    @classmethod
    def failure(
        cls, request: SliceRequest, error_type: ErrorType, message: str, duration_ms: float = 0.0
    ) -> SliceResponse:
        """Return a failed response for ``request``."""
        return cls(
            request_id=request.request_id,
            success=False,
            error_type=error_type,
            error_message=message,
            duration_ms=duration_ms,
        )


class HealthState(StrEnum):
    """Coarse health of a slice."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class HealthStatus(Model):
    """What ``AtomicSlice.health_check`` reports."""

    status: HealthState = HealthState.HEALTHY
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """Return whether the slice can serve requests."""
        return self.status is not HealthState.UNHEALTHY


class OperationInfo(Model):
    """One operation of a slice as clients see it: name, description and JSON schemas."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    stream: bool = False  # streamed: chunks come before the result (``MasterCore.astream``)


class SliceCapabilities(Model):
    """Everything a slice offers, derived from its ``@operation`` methods."""

    slice_id: str
    version: str
    description: str
    requires: list[str]
    operations: list[OperationInfo]


class ImprovementFeedback(Model):
    """Input to ``AtomicSlice.self_improve``: what went wrong or could be better."""

    source: str = "user"
    summary: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Proposal(Model):
    """One concrete change a slice proposes to itself."""

    title: str
    rationale: str
    kind: Literal["config", "code", "data", "prompt", "other"] = "other"
    changes: dict[str, Any] = Field(default_factory=dict)


class ImprovementPlan(Model):
    """What ``AtomicSlice.self_improve`` returns: proposals, never applied silently."""

    slice_id: str
    proposals: list[Proposal] = Field(default_factory=list)
    notes: str = ""


class DiagnosticCheck(Model):
    """One check of a self-diagnosis."""

    name: str
    passed: bool
    detail: str = ""


class DiagnosticReport(Model):
    """What ``AtomicSlice.run_self_diagnostics`` returns."""

    slice_id: str
    checks: list[DiagnosticCheck] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Return whether every check passed."""
        return all(c.passed for c in self.checks)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- channel messages (the channel contract: refactorbot.channels) ---------------------------------


class MediaRef(Model):
    """A piece of media attached to a message, by reference (a platform file id or a URL), never its bytes."""

    kind: Literal["image", "audio", "voice", "video", "file", "sticker", "location", "other"] = "file"
    ref: str = Field(min_length=1, max_length=2048, description="platform file id or URL")
    mime_type: str | None = Field(None, max_length=255)
    name: str | None = Field(None, max_length=1024)
    size: int | None = Field(None, ge=0)


class IncomingMessage(Model):
    """A message from a channel, normalized for every platform.

    ``raw`` keeps the platform's payload for the adapter's own use; it is left out of ``repr``,
    of ``model_dump``/JSON and so of logs and the message log.
    """

    channel: str
    chat_id: str
    sender_id: str
    text: str
    message_id: str = Field(default_factory=_request_id)
    sender_name: str | None = None
    received_at: datetime = Field(default_factory=_utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)
    is_group: bool = Field(False, description="sent in a group chat (not a direct chat with the bot)")
    mentions_bot: bool = Field(False, description="the bot was @mentioned")
    reply_to: str | None = Field(None, description="platform id of the message this one replies to")
    media: list[MediaRef] = Field(default_factory=list)
    raw: Any = Field(None, exclude=True, repr=False, description="the platform payload (never serialized)")


class OutgoingMessage(Model):
    """A reply to send through a channel.

    ``text_format``: ``markdown`` as the agent wrote it, ``platform`` once rendered to the
    channel's dialect, ``plain`` to be sent without formatting.
    """

    channel: str
    chat_id: str
    text: str
    reply_to: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    text_format: Literal["markdown", "platform", "plain"] = "markdown"
    media: list[MediaRef] = Field(default_factory=list)


# -- end of channel messages ---------------------------------------------------------------------
