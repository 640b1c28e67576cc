"""Settings, operation parameters and results of the communication slice."""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from refactorbot import Model, SliceConfig

CHANNEL = r"^[a-z][a-z0-9_]{0,39}$"
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
#: Pairing codes: 8 characters of an alphabet without look-alikes (0/O, 1/I/L).
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


class CommunicationConfig(SliceConfig):
    """``[slices.communication]`` (every field also ``RB_COMMUNICATION_<FIELD>``)."""

    retention_days: float = Field(
        30.0, ge=0, le=36_500, allow_inf_nan=False, description="days the message log keeps messages (0: forever)"
    )
    retention_max_rows: int = Field(
        1_000_000, ge=0, description="the message log keeps the newest N messages (0: no count bound)"
    )
    retention_batch: int = Field(5_000, ge=1, le=100_000, description="message rows deleted per transaction")
    dedupe_days: float = Field(
        7.0, gt=0, description="days a platform message id is remembered, so a redelivery runs no second turn"
    )
    max_queue_per_chat: int = Field(20, ge=1, le=10_000, description="messages of one chat waiting for its turn")
    max_concurrent_turns: int = Field(8, ge=1, le=1_000, description="chats answered at the same time")
    send_attempts: int = Field(4, ge=1, le=20, description="tries per outgoing part before it is recorded failed")
    send_backoff: float = Field(1.0, gt=0, le=600, description="seconds before the first retry, doubled each time")
    send_backoff_max: float = Field(30.0, gt=0, le=3600)
    max_retry_after: float = Field(
        120.0, ge=0, le=86_400, description="longest Retry-After honoured; a longer one fails the send"
    )
    channel_backoff: float = Field(1.0, gt=0, le=600, description="seconds before restarting a failed channel")
    channel_backoff_max: float = Field(300.0, gt=0, le=86_400)
    channel_start_timeout: float = Field(30.0, gt=0, le=3600, description="seconds a channel may take to start")
    pairing_ttl: float = Field(3600.0, gt=0, le=7 * 86_400, description="seconds a pairing code stays valid")
    max_pending_pairings: int = Field(50, ge=1, le=10_000, description="pending pairing requests per channel")
    failure_reply: str = Field(
        "Sorry, I could not answer that. The problem was logged.",
        min_length=1,
        max_length=2000,
        description="sent when a turn fails (the reason goes to the log, not to the chat)",
    )
    typing: bool = Field(True, description="show a typing indicator while a turn runs, where the channel can")
    maintenance_interval: float = Field(3600.0, gt=0, description="seconds between retention purges")
    stop_grace: float = Field(
        5.0, ge=0, le=300, description="seconds running turns get to finish when the slice stops (then cancelled)"
    )


# -- operations ----------------------------------------------------------------------------------


class SendParams(Model):
    """Send a message to a chat: ``text``, or a ``template`` filled with ``variables``."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(pattern=CHANNEL, description="channel name, e.g. webhook")
    chat_id: str = Field(min_length=1, max_length=200, description="the platform's chat id")
    text: str | None = Field(None, min_length=1, max_length=100_000, description="Markdown text")
    template: str | None = Field(None, pattern=TEMPLATE_NAME, description="name of a stored template")
    variables: dict[str, str] = Field(default_factory=dict, max_length=100, description="the template's $variables")
    reply_to: str | None = Field(None, min_length=1, max_length=200, description="platform id of a message")

    @model_validator(mode="after")
    def _text_or_template(self) -> SendParams:
        if (self.text is None) == (self.template is None):
            raise ValueError("give either text or template")
        if self.variables and self.template is None:
            raise ValueError("variables go with a template")
        return self


class SendResult(Model):
    """A message the platform took."""

    id: int = Field(description="row in the message log")
    channel: str
    chat_id: str
    status: str
    parts: int
    platform_ids: list[str]


class ChannelInfo(Model):
    """One registered channel: its state and traffic."""

    name: str
    plugin: str | None = None
    enabled: bool
    status: str
    last_error: str | None = None
    last_error_at: float | None = None
    started_at: float | None = None
    next_retry_at: float | None = None
    restarts: int = 0
    text_limit: int | None = None
    webhook: str | None = Field(None, description="path of its webhook on the control API")
    supports_edit: bool = False
    streaming: bool = Field(False, description="replies are streamed by edits (stream = true and the channel edits)")
    inbound: int = 0
    outbound: int = 0
    failed: int = 0
    refused: int = 0
    duplicates: int = 0
    held_by: str | None = Field(None, description="the host running this channel while it is standby here")


class ChannelList(Model):
    """Every registered channel."""

    serving: bool = Field(description="whether this host runs channels (refactorbot serve)")
    channels: list[ChannelInfo]


class NoParams(Model):
    """No parameters."""

    model_config = ConfigDict(extra="forbid")


class Status(Model):
    """The slice at a glance."""

    serving: bool
    channels_running: int
    channels_failed: int
    chats_active: int
    queued: int
    turns_running: int
    pending_pairings: int
    messages_in: int
    messages_out: int
    failed_sends: int
    writes_committed: int = Field(
        0, description="per-message writes (arrival, claim, outcome) committed since the slice started"
    )
    write_transactions: int = Field(
        0, description="transactions that committed them (group commit: writes per transaction = their ratio)"
    )


Direction = Literal["in", "out"]


class MessagesParams(Model):
    """Filter the message log; pages go by ``before_id`` (newest first)."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(None, pattern=CHANNEL)
    chat_id: str | None = Field(None, min_length=1, max_length=200)
    direction: Direction | None = None
    status: str | None = Field(None, pattern=r"^[a-z]{1,20}$")
    delivery: Literal["sent", "delivered", "read", "failed"] | None = Field(
        None, description="outgoing messages whose delivery reports sum up to this"
    )
    since: float | None = Field(None, ge=0, le=1e11, description="Unix time, inclusive")
    until: float | None = Field(None, ge=0, le=1e11, description="Unix time, exclusive")
    before_id: int | None = Field(None, ge=1, le=2**62, description="page: rows with a smaller id")
    limit: int = Field(50, ge=1, le=500)


class MessageRecord(Model):
    """One row of the message log."""

    id: int
    direction: Direction
    kind: str
    channel: str
    chat_id: str
    sender_id: str | None = None
    sender_name: str | None = None
    message_id: str | None = None
    platform_ids: list[str] = Field(default_factory=list)
    reply_to: str | None = None
    text: str
    is_group: bool = False
    mentions_bot: bool = False
    status: str
    detail: str | None = None
    attempts: int = 0
    parts: int = 0
    in_reply_to: int | None = None
    delivery: str | None = Field(
        None,
        description="out: the platform's delivery reports summed up: sent, delivered or read (every part),"
        " failed (any part); None: no report",
    )
    delivered_at: float | None = Field(None, description="out: when the last part was reported delivered")
    read_at: float | None = Field(None, description="out: when the last part was reported read")
    created_at: float
    updated_at: float


class MessagePage(Model):
    """A page of the message log; ``next_before_id`` is None on the last page."""

    items: list[MessageRecord]
    next_before_id: int | None = None


class TrafficParams(Model):
    """Messages per minute over the last ``minutes``."""

    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(60, ge=1, le=10_080)
    channel: str | None = Field(None, pattern=CHANNEL)


class TrafficBucket(Model):
    """Messages of one channel and direction in one minute."""

    minute: float = Field(description="Unix time of the minute's start")
    channel: str
    direction: Direction
    count: int
    failed: int


class Traffic(Model):
    """Per-minute buckets, oldest first."""

    buckets: list[TrafficBucket]


PairingStatus = Literal["pending", "approved", "denied", "expired"]


class PairingListParams(Model):
    """Which pairing requests to list."""

    model_config = ConfigDict(extra="forbid")

    status: PairingStatus | Literal["all"] = "pending"
    channel: str | None = Field(None, pattern=CHANNEL)
    limit: int = Field(100, ge=1, le=1000)


class PairingRequest(Model):
    """An unknown sender's request to talk to the agent in a direct chat."""

    code: str
    channel: str
    sender_id: str
    sender_name: str | None = None
    chat_id: str
    status: PairingStatus
    created_at: float
    expires_at: float
    decided_at: float | None = None


class PairingList(Model):
    """Pairing requests, newest first."""

    requests: list[PairingRequest]


class PairingCode(Model):
    """A pairing code as the sender got it (any case, dashes and spaces ignored)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=4, max_length=32, pattern=r"^[A-Za-z0-9 -]+$")

    @field_validator("code")
    @classmethod
    def _normalize(cls, value: str) -> str:
        code = value.replace("-", "").replace(" ", "").upper()
        if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
            raise ValueError(f"a pairing code is {CODE_LENGTH} characters of {CODE_ALPHABET}")
        return code


class TemplateSetParams(Model):
    """Create or replace a template; ``$name`` or ``${name}`` mark its variables (``$$`` is a dollar)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TEMPLATE_NAME)
    body: str = Field(min_length=1, max_length=20_000, description="Markdown with $variables")
    description: str = Field("", max_length=500)

    @field_validator("body")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        if not string.Template(value).is_valid():
            raise ValueError("invalid placeholder: use $name or ${name} (letters, digits, _), and $$ for a dollar")
        return value


class Template(Model):
    """A stored template."""

    name: str
    body: str
    description: str = ""
    variables: list[str]
    created_at: float
    updated_at: float


class TemplateList(Model):
    """Every template, by name."""

    templates: list[Template]


class TemplateName(Model):
    """A template's name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TEMPLATE_NAME)


class Purged(Model):
    """What one retention pass deleted."""

    messages: int = Field(description="message-log rows past retention_days or beyond retention_max_rows")
    seen: int = Field(description="remembered platform ids past dedupe_days")
    pairing: int = Field(description="pairing requests expired over a day ago")
    reports: int = Field(description="delivery reports whose message never came")


class Removed(Model):
    """Whether something was removed."""

    removed: bool


def template_variables(body: str) -> list[str]:
    """Return the variable names of a template body, in order of first use."""
    return list(dict.fromkeys(string.Template(body).get_identifiers()))


def fill_template(name: str, body: str, variables: dict[str, Any]) -> str:
    """Return ``body`` with its variables filled; raise ``ValueError`` naming the missing or unknown ones."""
    wanted = template_variables(body)
    missing = [v for v in wanted if v not in variables]
    if missing:
        raise ValueError(f"template {name!r} needs variable(s): {', '.join(missing)}")
    unknown = sorted(set(variables) - set(wanted))
    if unknown:
        raise ValueError(f"template {name!r} has no variable(s): {', '.join(unknown)}")
    return string.Template(body).substitute(variables)
