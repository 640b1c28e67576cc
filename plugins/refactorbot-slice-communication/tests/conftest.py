from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from loop_channel import PLATFORMS, LoopPlatform
from refactorbot.testing import ModelServer, build_host, loopback_config

COMMUNICATION = "refactorbot_slice_communication.plugin"
PLUGINS = [
    COMMUNICATION,
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot.testing.loopback",
    "loop_channel",
]
_keys = itertools.count(1)


@pytest.fixture
def model() -> Iterator[ModelServer]:
    """A loopback model that echoes the user's message (``echo: ...``) unless scripted."""
    with ModelServer() as server:
        yield server


@pytest.fixture
def platform() -> Iterator[LoopPlatform]:
    key = f"p{next(_keys)}"
    PLATFORMS[key] = found = LoopPlatform()
    found.key = key  # type: ignore[attr-defined]
    yield found
    PLATFORMS.pop(key, None)


def host_config(
    model: ModelServer, platform: LoopPlatform, *, loop: dict[str, Any] | None = None, **communication: Any
) -> dict[str, Any]:
    channel = {"platform": platform.key, **(loop or {})}  # type: ignore[attr-defined]
    return {
        "core": {"health_interval": 3600},
        **loopback_config(model),
        "slices": {"communication": {"send_backoff": 0.01, "channel_backoff": 0.05, **communication}},
        "channels": {"loop": channel},
    }


@contextlib.asynccontextmanager
async def running(home: Path, config: dict[str, Any], plugins: list[Any] | None = None) -> AsyncIterator[Any]:
    """Start a serving host with the communication slice, agent, session and the loop channel."""
    host = build_host(home, plugins or PLUGINS, config=config)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


async def until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for ``predicate()`` to hold, checking as the loop turns (generous deadline, no fixed sleeps)."""
    import asyncio

    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def running_adapter(host: Any, name: str = "loop") -> Any:
    """Wait until channel ``name`` runs; return its adapter."""
    runners = host.instance("communication").runners
    await until(lambda: runners[name].running, what=f"channel {name} running")
    return runners[name].adapter


async def idle(host: Any, timeout: float = 30.0) -> None:
    """Wait until every chat's turns (and their replies) are done and recorded."""
    assert await host.instance("communication").lanes.wait_idle(timeout), "chats still busy"
