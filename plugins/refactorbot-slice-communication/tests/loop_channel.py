"""``loop``: a channel adapter for the slice's tests, whose "platform" is an in-memory object of the test.

It is a complete adapter (it passes ``ChannelContract``): messages come in through ``inject`` or
its webhook, replies are recorded with their ids, and the test scripts the platform's behaviour:
start failures, send failures (``SendFailed`` with ``retry_after``, ``FormattingRejected``), a
channel that dies while running.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import time
from typing import Any

from pydantic import Field
from refactorbot import hookimpl
from refactorbot.channels import (
    ChannelAdapter,
    ChannelConfig,
    Delivery,
    WebhookRequest,
    WebhookResponse,
)
from refactorbot.models import IncomingMessage, OutgoingMessage

REFACTORBOT_API = 1


class LoopPlatform:
    """What the loop channel's platform knows: messages sent, failures to play, starts seen."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.attempts: list[OutgoingMessage] = []
        #: Played one per send: an exception is raised, None lets the send through.
        self.send_failures: collections.deque[BaseException | None] = collections.deque()
        self.attempt_times: list[float] = []
        self.start_times: list[float] = []
        self.start_failures: collections.deque[BaseException] = collections.deque()
        self.starts = 0
        self.stops = 0
        self.typing: list[str] = []
        #: Set: the platform reports each message with this status before ``send`` returns (a
        #: status callback overtaking the send's own answer); the results go to ``early_reports``.
        self.report_on_send: str | None = None
        self.early_reports: list[bool] = []
        #: Edits (a channel with ``edit``): each ``(message_id, text, text_format, time)``; failures
        #: to play, one per edit; what each sent message shows now.
        self.edits: list[tuple[str, str, str, float]] = []
        self.edit_attempts: list[tuple[str, str, str, float]] = []
        self.edit_failures: collections.deque[BaseException | None] = collections.deque()
        self.shown: dict[str, str] = {}
        self.adapters: list[LoopChannel] = []
        self._ids = itertools.count(1)
        self.changed = asyncio.Event()

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [m.text for m in self.sent if chat_id is None or m.chat_id == chat_id]

    async def wait_sent(self, count: int, timeout: float = 30.0) -> list[OutgoingMessage]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()
        return list(self.sent)

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever the platform sees something)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def wait_attempts(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the channel was started (successfully or not) ``count`` times."""
        async with asyncio.timeout(timeout):
            while len(self.adapters) < count:
                self.changed.clear()
                await self.changed.wait()


PLATFORMS: dict[str, LoopPlatform] = {}


class LoopConfig(ChannelConfig):
    platform: str = Field("default", description="key of the LoopPlatform in PLATFORMS")
    limit: int = Field(500, ge=10)


class LoopChannel(ChannelAdapter):
    name = "loop"
    Config = LoopConfig
    webhook = True
    max_body = 4096

    def __init__(self, config: Any = None, *, env: Any = None) -> None:
        super().__init__(config, env=env)
        self.text_limit = self.settings.limit
        self.platform = PLATFORMS.setdefault(self.settings.platform, LoopPlatform())
        self.running = False

    async def start(self) -> None:
        self.platform.adapters.append(self)
        self.platform.start_times.append(time.monotonic())
        if self.platform.start_failures:
            failure = self.platform.start_failures.popleft()
            self.platform.changed.set()
            raise failure
        self.running = True
        self.platform.starts += 1
        self.platform.changed.set()

    async def stop(self) -> None:
        if self.running:
            self.platform.stops += 1
        self.running = False

    async def send(self, message: OutgoingMessage) -> list[str]:
        self.platform.attempts.append(message)
        self.platform.attempt_times.append(time.monotonic())
        failure = self.platform.send_failures.popleft() if self.platform.send_failures else None
        if failure is not None:
            self.platform.changed.set()
            raise failure
        assert len(message.text) <= self.text_limit, "the slice split above the limit"
        self.platform.sent.append(message)
        self.platform.changed.set()
        platform_id = f"p-{next(self.platform._ids)}"
        if self.platform.report_on_send is not None:
            self.platform.early_reports.append(await self.report_delivery(platform_id, self.platform.report_on_send))
        return [platform_id]

    async def report(self, message_id: str, status: str, reason: str | None = None, **extra: Any) -> bool:
        """Play the platform's status callback for a message it took."""
        return await self.report_delivery(message_id, status, reason, **extra)  # type: ignore[arg-type]

    async def typing(self, chat_id: str) -> None:
        self.platform.typing.append(chat_id)

    async def inject(
        self, text: str, *, chat_id: str = "chat-1", sender_id: str = "alice", message_id: str, **fields: Any
    ) -> Delivery:
        return await self.deliver(
            IncomingMessage(
                channel=self.name,
                chat_id=chat_id,
                sender_id=sender_id,
                text=text,
                message_id=message_id,
                raw={"payload": "RAW-PAYLOAD-MARKER"},
                **fields,
            )
        )

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        if request.header("x-loop-key") != "open-sesame":
            return WebhookResponse.error(401, "missing x-loop-key")
        data = json.loads(request.body)
        delivery = await self.inject(
            data["text"], chat_id=data["chat_id"], sender_id=data["sender_id"], message_id=data["id"]
        )
        return WebhookResponse.json({"status": delivery.value, "bytes": len(request.body)})


@hookimpl
def register_channels(register: Any) -> None:
    register(LoopChannel)
