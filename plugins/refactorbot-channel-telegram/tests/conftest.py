"""Shared pieces of the Telegram channel's tests: the loopback Bot API and a running adapter bound to an inbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from refactorbot.testing.channel_contract import Inbox
from refactorbot.testing.telegram import TelegramServer
from refactorbot_channel_telegram.channel import TelegramChannel

TOKEN = "7000001:loopback-token-AbCdEfGhIjKlMnOpQrStUvWx"
SECRET = "webhook-secret_0123456789-abcdefXYZ"
ENV = {"TELEGRAM_BOT_TOKEN": TOKEN}
WEBHOOK_ENV = {**ENV, "TELEGRAM_WEBHOOK_SECRET": SECRET}
#: Short waits, so the tests do not idle; the behaviour under test is the same at the defaults.
FAST = {"poll_timeout": 5, "backoff": 0.05, "backoff_max": 0.4, "busy_wait": 0.02, "request_timeout": 10}


@pytest.fixture
def telegram() -> Iterator[TelegramServer]:
    with TelegramServer(TOKEN) as server:
        yield server


def make_channel(
    server: TelegramServer, state_dir: Path | None = None, env: dict[str, str] | None = None, **settings: Any
) -> TelegramChannel:
    channel = TelegramChannel({"api_base": server.url, **FAST, **settings}, env=ENV if env is None else env)
    channel.state_dir = state_dir
    return channel


@pytest_asyncio.fixture
async def polling(
    telegram: TelegramServer, tmp_path: Path
) -> AsyncIterator[tuple[TelegramChannel, Inbox, TelegramServer]]:
    channel = make_channel(telegram, tmp_path)
    inbox = Inbox()
    channel.bind(inbox)
    await channel.start()
    try:
        yield channel, inbox, telegram
    finally:
        await channel.stop()


@pytest_asyncio.fixture
async def hooked(telegram: TelegramServer) -> AsyncIterator[tuple[TelegramChannel, Inbox, TelegramServer]]:
    channel = make_channel(
        telegram, None, WEBHOOK_ENV, mode="webhook", webhook_url="https://bot.example.com/hooks/telegram"
    )
    inbox = Inbox()
    channel.bind(inbox)
    await channel.start()
    try:
        yield channel, inbox, telegram
    finally:
        await channel.stop()


async def until(server: TelegramServer, predicate: Any, timeout: float = 30.0) -> None:
    """Wait, without blocking the event loop, until ``predicate()`` holds on the server."""
    await asyncio.to_thread(server.wait_until, predicate, timeout)
