"""The channel contract, against the loopback Bot API (polling mode)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ENV, FAST, TOKEN
from refactorbot.testing import ChannelContract
from refactorbot.testing.telegram import TelegramServer
from refactorbot_channel_telegram.channel import TelegramChannel
from refactorbot_channel_telegram.html import utf16_len


class TestTelegramContract(ChannelContract):
    adapter_class = TelegramChannel
    plugin = "refactorbot_channel_telegram.plugin"
    # A private chat's id is its user's id; the second chat of the contract is a channel's name.
    chat_id = "700100"
    sender_id = "700100"

    @pytest.fixture
    def platform(self) -> Iterator[TelegramServer]:
        with TelegramServer(TOKEN) as server:
            server.add_chat(self.chat_id)
            server.add_chat(f"{self.chat_id}-2", chat_type="channel")
            yield server

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return {"api_base": platform.url, **FAST}

    def adapter_env(self, platform: Any) -> dict[str, str]:
        return dict(ENV)

    def delivered(self, platform: Any, adapter: Any) -> list[tuple[str, str]]:
        return [(str(m["chat"]["id"]), m.get("html") or m["text"]) for m in platform.all_sent()]

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        platform.user_message(text, chat_id=int(chat_id), sender_id=int(sender_id))


def test_limit_is_counted_in_utf16_units() -> None:
    assert utf16_len("a😀é") == 4  # the emoji is a surrogate pair in UTF-16
