from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.config import RedisConfig
from refactorbot_bus_redis.testing import RedisServer, RedisServerMissing


def start_server(folder: Path) -> RedisServer:
    try:
        server = RedisServer(folder)
    except RedisServerMissing as exc:
        pytest.fail(str(exc))
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by namespace."""
    server = start_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return f"t{secrets.token_hex(4)}"


def redis_config(url: str, namespace: str, **overrides: Any) -> RedisConfig:
    settings: dict[str, Any] = {
        "url": url,
        "namespace": namespace,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.05,
        "stop_timeout": 1,
        "trim_interval": 0.05,
        **overrides,
    }
    return RedisConfig.model_validate(settings)


@contextlib.asynccontextmanager
async def running_bus(url: str, namespace: str, **overrides: Any) -> AsyncIterator[RedisEventBus]:
    bus = RedisEventBus(redis_config(url, namespace, **overrides))
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@contextlib.asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[Any]:
    """A plain redis-py client, to look at the stream the way an operator would."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_timeout=30)
    try:
        yield client
    finally:
        await client.aclose()


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    """Wait for ``predicate()`` to hold, checking as the loop turns (a generous deadline, no fixed sleeps)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
