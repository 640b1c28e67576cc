"""``ChannelContract``: the checks every channel adapter passes, against its loopback platform.

Subclass it in the adapter's tests, give it the platform to talk to and say how to reach it::

    class TestWebhookContract(ChannelContract):
        adapter_class = WebhookChannel
        plugin = "refactorbot_channel_webhook.plugin"

        @pytest.fixture
        def platform(self):
            with WebhookReceiver(SECRET) as receiver:
                yield receiver

        def adapter_config(self, platform):
            return {"callback_url": platform.url}

        def adapter_env(self, platform):
            return {"REFACTORBOT_WEBHOOK_SECRET": SECRET}

        def delivered(self, platform, adapter):
            return [(m["chat_id"], m["text"]) for m in platform.messages]

        async def push_inbound(self, adapter, platform, *, chat_id, sender_id, text, message_id):
            ...  # make the platform deliver one message to the adapter

The contract checks the plugin registration and its import cost, the ``Config`` model and its
``RB_<NAME>_*`` overrides, the lifecycle (start, stop, restart, stop twice), that ``send``
returns the platform's ids and the platform got the text in the right chat, that the text limit
holds for every part of a long reply, the plain-text fallback of ``render``, and that an incoming
message reaches the host normalized, its raw payload kept out of serialization.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from refactorbot.channels import (
    CHANNEL_NAME,
    ChannelAdapter,
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    FormattingRejected,
    SendFailed,
    split_parts,
)
from refactorbot.config import Settings
from refactorbot.errors import ConfigError
from refactorbot.models import IncomingMessage, OutgoingMessage
from refactorbot.testing.contracts import IMPORT_BUDGET_MS, check_import_cost

#: A reply with every kind of formatting the contract renders and splits.
SAMPLE_MARKDOWN = (
    "# Plan\n\nThis is **bold**, _italic_, `code` and a [link](https://example.com/docs).\n\n"
    "```python\ndef answer() -> int:\n    return 42\n```\n\n- one\n- two\n"
)


@dataclasses.dataclass(frozen=True)
class Report:
    """One delivery report an adapter passed on (``ChannelAdapter.report_delivery``)."""

    channel: str
    message_id: str
    status: DeliveryStatus
    reason: str | None = None
    chat_id: str | None = None


class Inbox:
    """An ``Inbound`` for contract tests: records every message and delivery report; a test waits for them.

    ``report_answer`` is what ``report_delivery`` returns (True: "recorded").
    """

    def __init__(self, answer: Delivery = Delivery.ACCEPTED, *, report_answer: bool = True) -> None:
        self.answer = answer
        self.report_answer = report_answer
        self.messages: list[IncomingMessage] = []
        self.reports: list[Report] = []
        self._arrived = asyncio.Event()

    async def __call__(self, message: IncomingMessage) -> Delivery:
        self.messages.append(message)
        self._arrived.set()
        return self.answer

    async def report_delivery(
        self, channel: str, message_id: str, status: DeliveryStatus, reason: str | None, chat_id: str | None
    ) -> bool:
        """Record a delivery report; return ``report_answer``."""
        self.reports.append(Report(channel, message_id, status, reason, chat_id))
        self._arrived.set()
        return self.report_answer

    async def wait_reports(self, count: int, timeout: float = 30.0) -> list[Report]:
        """Wait until ``count`` delivery reports arrived; return them."""
        async with asyncio.timeout(timeout):
            while len(self.reports) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.reports)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[IncomingMessage]:
        """Wait until ``count`` messages arrived; return them."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.messages)


def long_markdown(limit: int) -> str:
    """Return a reply about three times ``limit`` long: paragraphs, long lines and a long code block."""
    words = " ".join(f"word{i}" for i in range(max(20, limit // 6)))
    code = "\n".join(f"    value_{i} = compute({i})" for i in range(max(8, limit // 40)))
    text = f"Intro paragraph.\n\n{words}\n\n```python\n{code}\n```\n\nClosing paragraph with **bold** text."
    while len(text) < 3 * limit:
        text += f"\n\n{words}"
    return text


class ChannelContract:
    """Subclass with ``adapter_class``, ``plugin``, a ``platform`` fixture and the four hooks below."""

    adapter_class: ClassVar[type[ChannelAdapter]]
    #: The entry-point module registering the adapter.
    plugin: ClassVar[str]
    #: Chats and senders the contract uses.
    chat_id: ClassVar[str] = "contract-chat"
    #: A second chat, for checks that send to two (``None``: ``chat_id`` + ``-2``; set it where
    #: chat ids have a fixed form, such as numbers).
    second_chat_id: ClassVar[str | None] = None
    sender_id: ClassVar[str] = "contract-sender"

    # -- what a subclass provides ---------------------------------------------------------------

    @pytest.fixture
    def platform(self) -> Iterator[Any]:
        """Yield the loopback platform the adapter talks to (override; default: none)."""
        yield None

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        """Return the ``[channels.<name>]`` table pointing the adapter at ``platform``."""
        return {}

    def adapter_env(self, platform: Any) -> dict[str, str]:
        """Return the environment the adapter reads its secrets from."""
        return {}

    def delivered(self, platform: Any, adapter: ChannelAdapter) -> list[tuple[str, str]]:
        """Return ``(chat_id, text)`` of every message the platform received, in order."""
        raise NotImplementedError

    async def wait_delivered(self, platform: Any, adapter: ChannelAdapter, count: int) -> list[tuple[str, str]]:
        """Wait until the platform received ``count`` messages (default: poll ``delivered``); return them."""
        async with asyncio.timeout(30):
            while len(found := self.delivered(platform, adapter)) < count:
                await asyncio.sleep(0.01)
        return found

    async def push_inbound(
        self, adapter: ChannelAdapter, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        """Make the platform deliver one direct message to the running ``adapter``."""
        raise NotImplementedError

    def make_adapter(self, platform: Any, **overrides: Any) -> ChannelAdapter:
        """Return the adapter configured by ``adapter_config`` (plus ``overrides``) and ``adapter_env``."""
        return self.adapter_class({**self.adapter_config(platform), **overrides}, env=self.adapter_env(platform))

    # -- the contract ------------------------------------------------------------------------------

    def test_registered_by_plugin(self) -> None:
        module = importlib.import_module(self.plugin)
        registered: list[Any] = []
        module.register_channels(registered.append)
        assert self.adapter_class in registered
        assert getattr(module, "REFACTORBOT_API", None) == 1
        assert CHANNEL_NAME.match(self.adapter_class.name), f"{self.adapter_class.name!r} is not a valid channel name"

    def test_import_fast_and_light(self) -> None:
        result = check_import_cost(self.plugin)
        assert not result["heavy"], f"{self.plugin} imports heavy libraries at module level: {result['heavy']}"
        assert result["ms"] < IMPORT_BUDGET_MS, f"{self.plugin} took {result['ms']:.1f} ms to import"

    def test_config_model_and_env_overrides(self, tmp_path: Any) -> None:
        name = self.adapter_class.name
        model = self.adapter_class.Config
        assert issubclass(model, ChannelConfig)
        assert {"enabled", "api_base", "dm_policy", "group_policy"} <= set(model.model_fields)
        settings = Settings(home=tmp_path, channels={name: {"dm_policy": "allowlist"}})
        env_key = name.upper()
        env = {f"RB_{env_key}_ENABLED": "false", f"RB_{env_key}_ALLOW_SENDERS": "alice, bob"}
        section = settings.section("channels", name, model, env)
        assert (section.enabled, section.dm_policy, section.allow_senders) == (False, "allowlist", ["alice", "bob"])
        with pytest.raises(ConfigError, match=rf"\[channels\.{name}\]"):
            Settings(home=tmp_path, channels={name: {"no_such_setting": 1}}).section("channels", name, model, {})
        with pytest.raises(ConfigError, match="api_base"):
            Settings(home=tmp_path, channels={name: {"api_base": "ftp://x"}}).section("channels", name, model, {})

    @pytest.mark.asyncio
    async def test_lifecycle(self, platform: Any) -> None:
        fresh = self.make_adapter(platform)
        await fresh.stop()  # stop before start is harmless
        adapter = self.make_adapter(platform)
        adapter.bind(Inbox())
        await adapter.start()
        await adapter.stop()
        await adapter.start()  # a stopped adapter starts again
        await adapter.stop()
        await adapter.stop()  # and stopping twice is harmless

    @pytest.mark.asyncio
    async def test_send_returns_platform_ids(self, platform: Any) -> None:
        other_chat = self.second_chat_id or f"{self.chat_id}-2"
        adapter = self.make_adapter(platform)
        adapter.bind(Inbox())
        await adapter.start()
        try:
            first = await adapter.send(self._outgoing("first reply"))
            second = await adapter.send(self._outgoing("second reply", chat_id=other_chat))
        finally:
            await adapter.stop()
        for ids in (first, second):
            assert isinstance(ids, list) and ids, "send returns the platform's message ids"
            assert all(isinstance(i, str) and i for i in ids)
        assert not set(first) & set(second), "each message gets its own ids"
        received = await self.wait_delivered(platform, adapter, 2)
        assert [(chat, text.strip()) for chat, text in received[-2:]] == [
            (self.chat_id, "first reply"),
            (other_chat, "second reply"),
        ]

    @pytest.mark.asyncio
    async def test_text_limit_holds_for_every_part(self, platform: Any) -> None:
        adapter = self.make_adapter(platform)
        limit = adapter.text_limit
        assert isinstance(limit, int) and limit >= 1
        rendered = adapter.render(long_markdown(limit))
        parts = adapter.split(rendered)
        assert len(parts) >= 3
        assert all(len(p) <= limit for p in parts), [len(p) for p in parts]
        if type(adapter).split is ChannelAdapter.split:
            assert "".join(p.body for p in split_parts(rendered, limit)) == rendered
        adapter.bind(Inbox())
        await adapter.start()
        try:
            for part in parts:
                ids = await adapter.send(self._outgoing(part))
                assert ids
        finally:
            await adapter.stop()
        received = await self.wait_delivered(platform, adapter, len(parts))
        texts = [text for chat, text in received[-len(parts) :] if chat == self.chat_id]
        assert len(texts) == len(parts)
        assert all(len(t) <= limit for t in texts)

    def test_render_has_a_plain_fallback(self) -> None:
        adapter = self.adapter_class(env={})
        rendered = adapter.render(SAMPLE_MARKDOWN)
        assert isinstance(rendered, str) and "42" in rendered
        plain = adapter.plain(rendered)
        assert isinstance(plain, str)
        for word in ("Plan", "bold", "italic", "code", "link", "https://example.com/docs", "return 42", "one"):
            assert word in plain, (word, plain)
        for marker in ("**", "```", "`code`", "](", "# Plan"):
            assert marker not in plain, (marker, plain)
        assert adapter.render("") == ""
        assert issubclass(FormattingRejected, SendFailed) and FormattingRejected("x").permanent

    @pytest.mark.asyncio
    async def test_inbound_reaches_the_host_normalized(self, platform: Any) -> None:
        adapter = self.make_adapter(platform)
        inbox = Inbox()
        adapter.bind(inbox)
        await adapter.start()
        try:
            await self.push_inbound(
                adapter, platform, chat_id=self.chat_id, sender_id=self.sender_id, text="hello there", message_id="m-1"
            )
            (message,) = await inbox.wait_for(1)
        finally:
            await adapter.stop()
        assert message.channel == self.adapter_class.name
        assert (message.chat_id, message.sender_id, message.text) == (self.chat_id, self.sender_id, "hello there")
        assert message.message_id, "the platform's message id is kept (it is the de-duplication key)"
        assert not message.is_group
        dumped = message.model_dump(mode="json")
        assert "raw" not in dumped and "raw=" not in repr(message)

    def _outgoing(self, text: str, chat_id: str | None = None) -> OutgoingMessage:
        return OutgoingMessage(
            channel=self.adapter_class.name, chat_id=chat_id or self.chat_id, text=text, text_format="platform"
        )
