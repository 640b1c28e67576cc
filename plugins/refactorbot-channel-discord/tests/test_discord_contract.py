"""The channel contract against the loopback Discord (REST and Gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import TOKEN
from refactorbot.testing import ChannelContract
from refactorbot.testing.discord import DiscordServer
from refactorbot_channel_discord.channel import DiscordChannel


class TestDiscordContract(ChannelContract):
    adapter_class = DiscordChannel
    plugin = "refactorbot_channel_discord.plugin"
    chat_id = "1400000000000000001"
    second_chat_id = "1400000000000000002"
    sender_id = "100000000000000009"

    @pytest.fixture
    def platform(self) -> Iterator[DiscordServer]:
        with DiscordServer(TOKEN) as server:
            yield server

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return {"api_base": platform.api_base}

    def adapter_env(self, platform: Any) -> dict[str, str]:
        return {"DISCORD_BOT_TOKEN": TOKEN}

    def delivered(self, platform: Any, adapter: Any) -> list[tuple[str, str]]:
        return [(m["channel_id"], m["content"]) for m in platform.bot_messages()]

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        platform.push_message(chat_id, text, author_id=sender_id, message_id=message_id)
