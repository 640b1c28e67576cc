"""The channel contract against the loopback Feishu, in both event modes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from feishu_fixtures import ENCRYPT_KEY, VERIFICATION_TOKEN, env_for
from refactorbot.channels import WebhookRequest
from refactorbot.testing import ChannelContract
from refactorbot.testing.feishu import FeishuServer, encrypt_body, message_event, sign_headers
from refactorbot_channel_feishu.channel import FeishuChannel


class TestFeishuLongConnectionContract(ChannelContract):
    adapter_class = FeishuChannel
    plugin = "refactorbot_channel_feishu.plugin"

    @pytest.fixture
    def platform(self) -> Iterator[FeishuServer]:
        with FeishuServer() as server:
            yield server

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return {"api_base": platform.url}

    def adapter_env(self, platform: Any) -> dict[str, str]:
        return env_for(platform)

    def delivered(self, platform: Any, adapter: Any) -> list[tuple[str, str]]:
        return [(m["chat_id"], m["text"]) for m in platform.messages]

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        event = message_event(chat_id=chat_id, sender_open_id=sender_id, text=text, message_id=message_id)
        key = await asyncio.to_thread(platform.push_event, event)
        ack = await asyncio.to_thread(platform.wait_for_ack, key)
        assert ack["code"] == 200


class TestFeishuWebhookContract(TestFeishuLongConnectionContract):
    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return {"api_base": platform.url, "mode": "webhook"}

    def adapter_env(self, platform: Any) -> dict[str, str]:
        return env_for(platform, FEISHU_ENCRYPT_KEY=ENCRYPT_KEY, FEISHU_VERIFICATION_TOKEN=VERIFICATION_TOKEN)

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        event = message_event(
            chat_id=chat_id, sender_open_id=sender_id, text=text, message_id=message_id, token=VERIFICATION_TOKEN
        )
        body = encrypt_body(event, ENCRYPT_KEY)
        headers = {k.lower(): v for k, v in sign_headers(body, ENCRYPT_KEY).items()}
        answer = await adapter.handle_webhook(WebhookRequest("POST", "/hooks/feishu", headers, {}, body))
        assert answer.status == 200, answer.body
