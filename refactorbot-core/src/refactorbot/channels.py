"""The channel contract: adapters that carry messages between a chat platform and the host.

A channel adapter is a class registered with ``register_channels``. The communication slice
(``refactorbot-slice-communication``) runs the enabled ones inside ``refactorbot serve``::

    adapter = AdapterClass(settings, env=env)   # settings: its [channels.<name>] section, validated
    adapter.bind(inbound)                       # where incoming messages go
    await adapter.start()                       # connect, poll, or wait for webhooks
    ids = await adapter.send(OutgoingMessage(...))
    await adapter.report_delivery(ids[0], "delivered")  # when the platform reports it
    await adapter.stop()

The adapter normalizes every platform message to an ``IncomingMessage`` and hands it over with
``await self.deliver(message)``; access control, de-duplication, per-chat ordering, the agent
turn, rendering, splitting, retries and the message log are the slice's work, not the adapter's.
Everything here is standard library and pydantic: an adapter's module imports in milliseconds,
and imports its platform SDK or HTTP client inside the methods that use it.
"""

from __future__ import annotations

import abc
import asyncio
import bisect
import dataclasses
import hashlib
import heapq
import hmac
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import ConfigDict, Field, field_validator

from refactorbot import tracing
from refactorbot.config import HttpUrl
from refactorbot.errors import RefactorbotError
from refactorbot.models import IncomingMessage, Model, OutgoingMessage

__all__ = [
    "ChannelAdapter",
    "ChannelConfig",
    "ChannelError",
    "Delivery",
    "DeliveryReports",
    "DeliveryStatus",
    "FormattingRejected",
    "Inbound",
    "ReplayCacheFull",
    "ReplayGuard",
    "SendFailed",
    "TextPart",
    "WebhookRequest",
    "WebhookResponse",
    "close_fences",
    "hmac_sha256_hex",
    "markdown_to_plain",
    "parse_retry_after",
    "signatures_match",
    "split_parts",
    "split_text",
]

#: What a channel name may look like: it is a TOML key, an env-var part and a URL segment.
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

DmPolicy = Literal["pairing", "allowlist", "open", "disabled"]
GroupPolicy = Literal["mention", "allowlist", "open", "disabled"]


# -- errors ------------------------------------------------------------------------------------


class ChannelError(RefactorbotError):
    """A channel cannot do what was asked; the message is one line, fit for status pages."""


class SendFailed(ChannelError):
    """Raise from ``send`` when the platform did not take the message.

    ``retry_after``: seconds the platform asked to wait (HTTP 429 ``Retry-After``), ``permanent``:
    retrying cannot help (unknown chat, message refused). The slice retries the others with backoff.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent


class FormattingRejected(SendFailed):
    """Raise from ``send`` when the platform refused the message's formatting; it is resent as plain text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, permanent=True)


# -- configuration -----------------------------------------------------------------------------


class ChannelConfig(Model):
    """Base of every adapter's ``Config``: the ``[channels.<name>]`` section.

    Each field can be overridden by ``RB_<NAME>_<FIELD>`` (``RB_TELEGRAM_DM_POLICY=open``); list
    fields take a comma-separated value there (``RB_TELEGRAM_ALLOW_SENDERS=123,456``).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(
        None, description="run this channel with `refactorbot serve`; unset: the adapter decides (see its docs)"
    )
    api_base: HttpUrl | None = Field(None, description="the platform's API base URL (tests, self-hosted gateways)")
    dm_policy: DmPolicy = Field("pairing", description="who may talk to the agent in a direct chat")
    group_policy: GroupPolicy = Field("mention", description="when the agent answers in a group chat")
    allow_senders: list[str] = Field(default_factory=list, description="sender ids always allowed")
    allow_chats: list[str] = Field(default_factory=list, description="chat ids always allowed")
    stream: bool = Field(
        False, description="stream replies: send the first part once text starts and edit it as it grows (needs edit)"
    )
    stream_interval: float = Field(
        1.0, ge=0.2, le=60.0, description="seconds between two edits of a streamed reply (platform rate limits)"
    )

    @field_validator("allow_senders", "allow_chats", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                return json.loads(stripped)
            return [part.strip() for part in stripped.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value


# -- webhooks ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WebhookRequest:
    """One request to ``/hooks/<channel>``: the raw body, before anything parsed it.

    ``headers`` has lower-case names. Verify the signature over ``body`` before parsing it.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    client: str | None = None

    def header(self, name: str) -> str | None:
        """Return a header's value (``name`` in any case), or None."""
        return self.headers.get(name.lower())


@dataclasses.dataclass(frozen=True)
class WebhookResponse:
    """What ``/hooks/<channel>`` answers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> WebhookResponse:
        """Return a JSON answer."""
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers or {}))

    @classmethod
    def text(cls, text: str, status: int = 200) -> WebhookResponse:
        """Return a plain-text answer (a verification challenge, say)."""
        return cls(status, text.encode(), "text/plain; charset=utf-8")

    @classmethod
    def error(cls, status: int, detail: str, headers: Mapping[str, str] | None = None) -> WebhookResponse:
        """Return ``{"detail": ...}`` with ``status``."""
        return cls.json({"detail": detail}, status, headers)

    @classmethod
    def for_delivery(cls, delivery: Delivery, payload: Any, *, not_taken: int | None = None) -> WebhookResponse:
        """Return the JSON answer to a webhook whose message became ``delivery``.

        The status is ``delivery.http_status`` (or ``not_taken`` for a platform that wants another
        code when the message was not taken); a message not taken carries ``Retry-After: 5`` so
        the platform redelivers it later.
        """
        if delivery.taken:
            return cls.json(payload)
        return cls.json(payload, not_taken or delivery.http_status, {"Retry-After": "5"})


def hmac_sha256_hex(secret: str | bytes, message: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``message`` with ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signatures_match(expected: str | bytes, given: str | bytes | None) -> bool:
    """Compare two signatures in constant time; None or a non-ASCII value never matches."""
    if given is None:
        return False
    try:
        left = expected.encode("ascii") if isinstance(expected, str) else expected
        right = given.encode("ascii") if isinstance(given, str) else given
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(left, right)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(0.0, seconds)


class ReplayCacheFull(ChannelError):
    """Raise when a ``ReplayGuard`` holds its maximum of live entries (refuse the request: 503)."""


class ReplayGuard:
    """Remember keys (signatures, nonces) until they expire, in memory and bounded.

    ``check(key, expires_at)`` returns True the first time a key is seen and False for a replay.
    At ``max_entries`` live keys it raises ``ReplayCacheFull`` rather than forget one early. Keys
    are strings or bytes (a raw digest takes half the memory of its hex form).
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._expiry: dict[str | bytes, float] = {}
        self._heap: list[tuple[float, str | bytes]] = []

    def __len__(self) -> int:
        self._prune()
        return len(self._expiry)

    def _prune(self) -> None:
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            expires, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]

    def check(self, key: str | bytes, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at`` (wall-clock seconds); return False when it was already there."""
        self._prune()
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            raise ReplayCacheFull(f"too many recent requests to remember ({self.max_entries}); try again later")
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True


# -- inbound -----------------------------------------------------------------------------------


class Delivery(StrEnum):
    """What became of an incoming message handed to the host."""

    ACCEPTED = "accepted"  # recorded; a turn will run (or a pairing code was sent)
    DUPLICATE = "duplicate"  # the same (channel, message id) was received before: dropped
    REFUSED = "refused"  # recorded; access control said no, no turn runs
    BUSY = "busy"  # the chat's queue is full: not recorded, the platform may redeliver later
    UNAVAILABLE = "unavailable"  # nothing takes messages (the host is stopping): not recorded

    @property
    def taken(self) -> bool:
        """Return whether the host has the message (recorded or deliberately dropped): no redelivery needed."""
        return self not in (Delivery.BUSY, Delivery.UNAVAILABLE)

    @property
    def http_status(self) -> int:
        """Return the HTTP status a webhook answers with: 200 when taken, 429 when busy, 503 when unavailable."""
        return 200 if self.taken else (429 if self is Delivery.BUSY else 503)


class DeliveryStatus(StrEnum):
    """What a platform reported about a message the bot sent (``ChannelAdapter.report_delivery``)."""

    SENT = "sent"  # the platform's servers took it
    DELIVERED = "delivered"  # it reached the recipient's device
    READ = "read"  # the recipient read it
    FAILED = "failed"  # the platform gave up on it (the reason says why)


#: Where an adapter hands incoming messages: the communication slice's intake. Any async callable
#: taking an ``IncomingMessage`` and returning a ``Delivery``; one that also has
#: ``report_delivery`` (``DeliveryReports``) takes delivery reports too.
Inbound = Callable[[IncomingMessage], Awaitable[Delivery]]


class DeliveryReports(Protocol):
    """An ``Inbound`` that also records what became of sent messages (the communication slice's intake)."""

    async def __call__(self, message: IncomingMessage) -> Delivery: ...

    async def report_delivery(
        self, channel: str, message_id: str, status: DeliveryStatus, reason: str | None, chat_id: str | None
    ) -> bool: ...


#: The longest platform message id and failure reason ``report_delivery`` takes.
MAX_REPORT_ID = 512
MAX_REPORT_REASON = 500


class ChannelAdapter(abc.ABC):
    """A chat platform. Subclass, set ``name``, implement ``start``, ``stop`` and ``send``.

    Optional: ``edit`` (streamed replies), ``typing``, ``render``/``plain`` (the platform's
    formatting), ``split`` (a dialect that needs its own cutting), ``handle_webhook`` (with
    ``webhook = True``), ``enabled_by_default``. An adapter whose platform reports delivery
    (sent, delivered, read, failed) passes each report on with ``report_delivery``.
    """

    #: The channel's name: ``[channels.<name>]``, ``RB_<NAME>_*``, ``/hooks/<name>``.
    name: ClassVar[str]
    #: The ``[channels.<name>]`` model; subclass ``ChannelConfig`` to add settings.
    Config: ClassVar[type[ChannelConfig]] = ChannelConfig
    #: The most characters one platform message may hold (after rendering); an instance may lower it.
    text_limit: int = 4096
    #: Whether ``handle_webhook`` serves ``/hooks/<name>`` on the control API.
    webhook: ClassVar[bool] = False
    #: The largest webhook body accepted, in bytes (larger: 413, never read whole).
    max_body: ClassVar[int] = 1_048_576
    #: Whether the channel receives by polling the platform or over a long connection, which must
    #: happen on one host of a deployment at a time: the runtime starts it only on the holder of
    #: the lease ``channel.<name>`` (see ``runs_once``). Webhooks need no such care.
    singleton: ClassVar[bool] = False

    def __init__(
        self, config: ChannelConfig | Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None
    ):
        if isinstance(config, ChannelConfig):
            if not isinstance(config, self.Config):
                config = self.Config.model_validate(config.model_dump(exclude_unset=True))
            self.settings: Any = config
        else:
            from refactorbot.config import validate_section

            self.settings = validate_section(self.Config, dict(config or {}), f"[channels.{self.name}]")
        #: The section as a dict (what was set).
        self.config: dict[str, Any] = self.settings.model_dump(exclude_unset=True)
        #: Where secrets are read from (by the variable names the settings give).
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._inbound: Inbound | None = None
        self._failure: asyncio.Future[str] | None = None
        #: A directory for the channel's own small state (a polling offset, say), kept across
        #: restarts: ``<home>/channels/<name>``, created 0700 by the runtime before ``start``.
        #: ``None`` when nothing set it (then keep such state in memory).
        self.state_dir: Path | None = None

    # -- what the runtime calls -----------------------------------------------------------------

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Return whether the channel runs when its section does not say ``enabled`` (default: True).

        Override to run only when configured (its token is set) or when it makes sense (a terminal).
        """
        return True

    @classmethod
    def runs_once(cls, settings: ChannelConfig) -> bool:
        """Return whether, with ``settings``, the channel must run on one host of a deployment at a time.

        Default: ``singleton``. An adapter that polls or holds a connection in one mode and takes
        webhooks in another overrides it (``return settings.mode == "polling"``).
        """
        return cls.singleton

    def bind(self, inbound: Inbound) -> None:
        """Set where ``deliver`` hands incoming messages (the runtime calls this before ``start``)."""
        self._inbound = inbound

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin receiving: connect, start polling, or get ready for webhooks.

        Return once running; raise ``ChannelError`` with a one-line reason when it cannot (a
        missing token, the platform refusing it). Background work an adapter starts here must
        end in ``stop``; if it dies on its own, call ``self.fail(reason)``.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop receiving and release connections. Safe to call twice, or without ``start``."""

    @abc.abstractmethod
    async def send(self, message: OutgoingMessage) -> list[str]:
        """Deliver one message (at most ``text_limit`` characters) and return the platform's message ids.

        ``message.text_format`` says whether ``text`` is in the platform's dialect (``"platform"``,
        what ``render`` made) or plain (``"plain"``: send it without formatting). Raise
        ``SendFailed`` (``retry_after`` on 429), or ``FormattingRejected`` when the platform
        refused the formatting.
        """

    async def edit(
        self, chat_id: str, message_id: str, text: str, *, text_format: Literal["platform", "plain"] = "platform"
    ) -> None:
        """Replace the text of a sent message (streamed replies). Not supported by default.

        ``text`` (at most ``text_limit`` characters) is rendered (``"platform"``) or plain
        (``"plain"``: after the platform refused the formatting). Raise like ``send``:
        ``SendFailed`` (``retry_after`` on 429) or ``FormattingRejected``. An adapter written
        before ``text_format`` existed (``edit(chat_id, message_id, text)``) still works: it is
        then handed plain text without the keyword.
        """
        raise ChannelError(f"channel {self.name} cannot edit messages")

    async def typing(self, chat_id: str) -> None:
        """Show that a reply is being written, where the platform can (default: nothing)."""

    @property
    def supports_edit(self) -> bool:
        """Return whether this adapter implements ``edit``."""
        return type(self).edit is not ChannelAdapter.edit

    def render(self, markdown: str) -> str:
        """Return the agent's Markdown in the platform's dialect (default: Markdown as it is)."""
        return markdown

    def render_partial(self, markdown: str) -> str:
        """Return Markdown still being written (a streamed reply) in the platform's dialect.

        Default: a code fence left open at the end is closed (``close_fences``), then ``render``.
        Override when the dialect has other constructs that must be closed to be accepted.
        """
        return self.render(close_fences(markdown))

    def plain(self, text: str) -> str:
        """Return ``text`` (in the platform's dialect) without formatting: the fallback when it is refused."""
        return markdown_to_plain(text)

    def split(self, text: str) -> list[str]:
        """Return ``text`` (rendered) in parts of at most ``text_limit`` characters (see ``split_text``)."""
        return split_text(text, self.text_limit)

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Answer a request to ``/hooks/<name>`` (``webhook = True``): verify it, then ``deliver``."""
        return WebhookResponse.error(404, f"channel {self.name} takes no webhooks")

    # -- what adapters call ----------------------------------------------------------------------

    async def deliver(self, message: IncomingMessage) -> Delivery:
        """Hand one normalized incoming message to the host; return what became of it."""
        if self._inbound is None:
            return Delivery.UNAVAILABLE
        if message.channel != self.name:
            raise ChannelError(f"channel {self.name} delivered a message of channel {message.channel!r}")
        if tracing.tracer() is None:
            return await self._inbound(message)
        with tracing.span(f"receive {self.name}", kind="consumer", attributes=_channel_attributes(self.name)) as span:
            delivery = await self._inbound(message)
            span.set_attribute("refactorbot.delivery", delivery.value)
            return delivery

    async def report_delivery(
        self,
        message_id: str,
        status: DeliveryStatus | Literal["sent", "delivered", "read", "failed"],
        reason: str | None = None,
        *,
        chat_id: str | None = None,
    ) -> bool:
        """Report what the platform said became of a message sent earlier; return whether it was recorded.

        ``message_id`` is one of the ids ``send`` returned; ``status`` one of ``sent``,
        ``delivered``, ``read``, ``failed`` (``reason``: why it failed, one line). Give ``chat_id``
        when the platform's ids are unique only within a chat. Returns False when the bound
        inbound takes no reports, or no message sent on this channel has that id. Raises
        ``ChannelError`` for an unknown status or an empty or oversized id (map the platform's
        own statuses first; ignore the ones that are none of these).
        """
        try:
            state = DeliveryStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            raise ChannelError(f"unknown delivery status {str(status)[:40]!r} (one of {allowed})") from None
        if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_REPORT_ID:
            raise ChannelError(f"a delivery report needs a platform message id of 1 to {MAX_REPORT_ID} characters")
        if chat_id is not None and (not isinstance(chat_id, str) or not chat_id or len(chat_id) > MAX_REPORT_ID):
            raise ChannelError(f"a delivery report's chat id must be 1 to {MAX_REPORT_ID} characters")
        if reason is not None:
            reason = " ".join(str(reason).split())[:MAX_REPORT_REASON] or None
        report = getattr(self._inbound, "report_delivery", None)
        if report is None:
            return False
        return bool(await report(self.name, message_id, state, reason, chat_id))

    def secret(self, variable: str) -> str:
        """Return the value of environment variable ``variable``; raise ``ChannelError`` naming it when unset."""
        value = self.env.get(variable, "")
        if not value:
            raise ChannelError(f"channel {self.name}: environment variable {variable} is not set")
        return value

    def fail(self, reason: str) -> None:
        """Report that the running channel broke (its connection or poller died); the runtime restarts it."""
        future = self.failure()
        if not future.done():
            future.set_result(reason)

    def failure(self) -> asyncio.Future[str]:
        """Return a future the runtime awaits: its result is the reason first given to ``fail``."""
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure


# -- formatting --------------------------------------------------------------------------------

_PLAIN_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)"), r"\1 (\2)"),  # images
    (re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)"), r"\1 (\2)"),  # links
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),  # _italic_
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strike-through
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code
    (re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.MULTILINE), r"\1"),  # headings
)


def markdown_to_plain(text: str) -> str:
    """Return Markdown as plain text: emphasis, code spans and fences dropped, links as ``text (url)``.

    Meant as a fallback for a platform that refused formatting, not as a Markdown parser: code
    block contents are kept verbatim.
    """
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            chunk = "".join(prose)
            for pattern, replacement in _PLAIN_RULES:
                chunk = pattern.sub(replacement, chunk)
            out.append(chunk)
            prose.clear()

    for line, delimiter, fence in _scan_fences(text):
        if delimiter:
            flush()
        elif fence is not None:  # inside a fence: verbatim
            flush()
            out.append(line)
        else:
            prose.append(line)
    flush()
    return "".join(out)


# -- splitting ---------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*?)\r?\n?$")


@dataclasses.dataclass(frozen=True)
class _Fence:
    marker: str  # the run of backticks or tildes that opened it
    line: str  # the opening line, without its line break (reopened as it was)


def _scan_fences(text: str) -> list[tuple[str, bool, _Fence | None]]:
    """Return ``(line, is_fence_delimiter, fence_open_before_the_line)`` for each line (breaks kept)."""
    rows: list[tuple[str, bool, _Fence | None]] = []
    fence: _Fence | None = None
    for line in text.splitlines(keepends=True):
        before = fence
        match = _FENCE_OPEN.match(line)
        delimiter = False
        if match is not None:
            marker, info = match.group(1), match.group(2)
            if fence is None:
                if not (marker[0] == "`" and "`" in info):
                    fence = _Fence(marker, line.rstrip("\r\n").lstrip(" "))
                    delimiter = True
            elif marker[0] == fence.marker[0] and len(marker) >= len(fence.marker) and not info.strip():
                fence = None
                delimiter = True
        rows.append((line, delimiter, before))
    return rows


@dataclasses.dataclass(frozen=True)
class TextPart:
    """One part of a split text: ``body`` is a slice of the original; ``opener``/``closer`` re-balance fences."""

    opener: str
    body: str
    closer: str

    @property
    def text(self) -> str:
        """Return the part as sent."""
        return self.opener + self.body + self.closer


class _Lines:
    """Line starts, delimiter flags and fence state of a text, for finding safe cut points."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.delimiter: list[bool] = []
        self.before: list[_Fence | None] = []
        position = 0
        for line, delimiter, before in _scan_fences(text):
            self.starts.append(position)
            position += len(line)
            self.ends.append(position)
            self.delimiter.append(delimiter)
            self.before.append(before)

    def state(self, position: int) -> tuple[bool, _Fence | None, bool]:
        """Return ``(cut allowed, fence open at position, position starts a line)``.

        A cut inside a line is refused when either half of the line would read as a fence
        delimiter on its own (the tail starts a line in the next part).
        """
        i = bisect.bisect_right(self.starts, position) - 1
        if i < 0 or position >= self.ends[-1]:
            return True, None, True
        start, end = self.starts[i], self.ends[i]
        if position == start:
            return True, self.before[i], True
        if (
            self.delimiter[i]
            or _FENCE_OPEN.match(self.text[start:position])
            or _FENCE_OPEN.match(self.text[position:end])
        ):
            return False, None, False
        return True, self.before[i], False


def split_parts(text: str, limit: int) -> list[TextPart]:
    """Split ``text`` into parts of at most ``limit`` characters; see ``split_text``."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if len(text) <= limit:
        return [TextPart("", text, "")]
    lines = _Lines(text)
    parts: list[TextPart] = []
    position = 0
    fence: _Fence | None = None
    while True:
        opener = fence.line + "\n" if fence is not None and _fits(fence, limit) else ""
        if len(opener) + len(text) - position <= limit:
            parts.append(TextPart(opener, text[position:], ""))
            return parts
        cut, closer = _cut(text, lines, position, limit - len(opener), limit)
        parts.append(TextPart(opener, text[position:cut], closer))
        _, fence, _ = lines.state(cut)
        position = cut


def _fits(fence: _Fence, limit: int) -> bool:
    """Return whether re-balancing ``fence`` leaves at least half of each part to the text."""
    return (len(fence.line) + 1) + (len(fence.marker) + 1) <= limit // 2


def _closer(lines: _Lines, cut: int, limit: int) -> str | None:
    """Return what must follow a part ending at ``cut`` ("" or a fence closer), None if it cannot end there."""
    allowed, fence, at_start = lines.state(cut)
    if not allowed:
        return None
    if fence is None or not _fits(fence, limit):
        return ""
    return fence.marker if at_start else "\n" + fence.marker


def _cut(text: str, lines: _Lines, position: int, budget: int, limit: int) -> tuple[int, str]:
    """Return the end of the part starting at ``position`` with ``budget`` characters, and its closer."""
    high = position + budget
    half = position + budget // 2

    def fits(cut: int) -> str | None:
        if cut <= position:
            return None
        closer = _closer(lines, cut, limit)
        if closer is None or (cut - position) + len(closer) > budget:
            return None
        return closer

    for separator in ("\n\n", "\n"):  # paragraph, then line, in the second half of the part
        index = text.rfind(separator, half, high)
        while index != -1:
            cut = index + len(separator)
            closer = fits(cut)
            if closer is not None:
                return cut, closer
            index = text.rfind(separator, half, index + len(separator) - 1)
    for cut in range(high, position, -1):  # word: just after a space or tab
        if text[cut - 1] in " \t":
            closer = fits(cut)
            if closer is not None:
                return cut, closer
    for cut in range(high, position, -1):  # anywhere that keeps fences whole
        closer = fits(cut)
        if closer is not None:
            return cut, closer
    return high, ""  # a fence line longer than a part: cut it (the only case fences are not re-balanced)


def close_fences(text: str) -> str:
    """Return Markdown ``text`` with a code fence left open at its end closed (for an interim render).

    A streamed reply is rendered while the model is still writing; a half-written code block
    would otherwise render as broken formatting, or be refused by the platform.
    """
    rows = _scan_fences(text)
    if not rows:
        return text
    line, delimiter, before = rows[-1]
    fence = before
    if delimiter and before is None:  # the last line opens a fence
        match = _FENCE_OPEN.match(line)
        fence = _Fence(match.group(1), line) if match is not None else None
    elif delimiter:  # the last line closes the open fence
        fence = None
    if fence is None:
        return text
    return text + ("" if text.endswith("\n") else "\n") + fence.marker


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, for platforms that cap message length.

    Cuts at the last paragraph break in the second half of a part, else the last line break
    there, else after the last space, else anywhere. A code fence left open at a cut is closed at
    the end of the part and reopened (with its info string) at the start of the next, so every
    part renders as code; the parts' bodies joined give back ``text`` exactly
    (``split_parts`` shows which characters were added). Fences are re-balanced only when their
    markers take at most half of a part.
    """
    return [part.text for part in split_parts(text, limit)]


def _channel_attributes(channel: str) -> dict[str, tracing.AttributeValue]:
    return {"messaging.system": "refactorbot", "refactorbot.channel": channel}


def send_span(channel: str, message: OutgoingMessage) -> tracing.SpanScope:
    """Return the span of one ``send`` to a platform (``send <channel>``; a no-op when tracing is off).

    The runtime that calls ``ChannelAdapter.send`` opens it around each call, so a reply's parts
    are children of the chat turn that wrote them.
    """
    if tracing.tracer() is None:
        return tracing.NOOP_SPAN
    attributes = _channel_attributes(channel)
    attributes["refactorbot.text_format"] = message.text_format
    return tracing.span(f"send {channel}", kind="producer", attributes=attributes)
