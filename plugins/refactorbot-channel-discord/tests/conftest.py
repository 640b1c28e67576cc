"""Shared pieces of the Discord channel's tests: the loopback Discord and an adapter connected to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from refactorbot.testing import Inbox
from refactorbot.testing.discord import DiscordServer
from refactorbot_channel_discord.channel import DiscordChannel

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.loopback.bot-token-for-tests"
DM = "1100000000000000001"
GUILD_CHANNEL = "1200000000000000001"
GUILD = "1300000000000000001"
ALICE = "100000000000000001"
BOB = "100000000000000002"


@pytest.fixture
def discord() -> Iterator[DiscordServer]:
    with DiscordServer(TOKEN, heartbeat_interval=41_250) as server:
        yield server


def make_channel(server: DiscordServer, env: dict[str, str] | None = None, **config: Any) -> DiscordChannel:
    settings = {"api_base": server.api_base, "reconnect_backoff": 0.05, **config}
    return DiscordChannel(settings, env={"DISCORD_BOT_TOKEN": TOKEN, **(env or {})})


@pytest_asyncio.fixture
async def running(discord: DiscordServer) -> AsyncIterator[tuple[DiscordChannel, Inbox, DiscordServer]]:
    adapter = make_channel(discord)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        yield adapter, inbox, discord
    finally:
        await adapter.stop()


async def wait_for(server: DiscordServer, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (without blocking the event loop) until ``predicate`` holds, woken by the server's requests."""
    await asyncio.to_thread(server.wait_until, predicate, timeout)
