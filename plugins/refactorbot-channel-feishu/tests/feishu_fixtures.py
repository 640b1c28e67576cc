"""Shared fixtures: a loopback Feishu and a running channel in either mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from refactorbot.testing import Inbox
from refactorbot.testing.feishu import FeishuServer
from refactorbot_channel_feishu.channel import FeishuChannel

ENCRYPT_KEY = "loopback-encrypt-key-0123456789"
VERIFICATION_TOKEN = "loopback-verification-token-42"


def env_for(server: FeishuServer, **extra: str) -> dict[str, str]:
    return {"FEISHU_APP_ID": server.app_id, "FEISHU_APP_SECRET": server.app_secret, **extra}


@pytest.fixture
def feishu() -> Iterator[FeishuServer]:
    with FeishuServer() as server:
        yield server


@pytest_asyncio.fixture
async def webhook_channel(feishu: FeishuServer) -> AsyncIterator[tuple[FeishuChannel, Inbox, FeishuServer]]:
    env = env_for(feishu, FEISHU_ENCRYPT_KEY=ENCRYPT_KEY, FEISHU_VERIFICATION_TOKEN=VERIFICATION_TOKEN)
    adapter = FeishuChannel({"api_base": feishu.url, "mode": "webhook"}, env=env)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        yield adapter, inbox, feishu
    finally:
        await adapter.stop()


@pytest_asyncio.fixture
async def ws_channel(feishu: FeishuServer) -> AsyncIterator[tuple[FeishuChannel, Inbox, FeishuServer]]:
    adapter = FeishuChannel(
        {"api_base": feishu.url, "reconnect_backoff": 0.05, "reconnect_backoff_max": 0.2}, env=env_for(feishu)
    )
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        yield adapter, inbox, feishu
    finally:
        await adapter.stop()


def outgoing(text: str, chat_id: str = "oc_chat1", reply_to: str | None = None, plain: bool = False) -> Any:
    from refactorbot.models import OutgoingMessage

    return OutgoingMessage(
        channel="feishu", chat_id=chat_id, text=text, reply_to=reply_to, text_format="plain" if plain else "platform"
    )
