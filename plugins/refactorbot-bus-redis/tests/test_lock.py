"""The Redis lock and ``Singleton``: one holder at a time, fencing tokens, takeover within the TTL."""

from __future__ import annotations

import asyncio

import pytest
from conftest import raw_client, redis_config
from refactorbot_bus_redis.lock import RedisLock, Singleton
from refactorbot_bus_redis.testing import RedisServer

pytestmark = pytest.mark.asyncio


async def test_one_holder_and_a_larger_token_after_expiry(redis_server: RedisServer, namespace: str) -> None:
    async with raw_client(redis_server.url) as raw:
        first = RedisLock(raw, namespace, "timer", "a", ttl=0.2)
        second = RedisLock(raw, namespace, "timer", "b", ttl=5)
        token = await first.acquire()
        assert token == 1
        assert await first.acquire() == 1  # the holder extends what it holds
        assert await second.acquire() is None
        async with asyncio.timeout(30):  # the holder stops renewing: the lock expires by its TTL
            while await raw.exists(first.key):
                await asyncio.sleep(0.01)
        assert await second.acquire() == 2
        assert not await first.renew(token)
        assert not await first.is_current(token) and await second.is_current(2)
        assert not await first.release(token)
        assert await raw.get(first.key) == b"b 2"
        assert await second.release(2)
        assert await first.acquire() == 3


async def test_bad_names_are_refused(redis_server: RedisServer, namespace: str) -> None:
    async with raw_client(redis_server.url) as raw:
        with pytest.raises(ValueError, match="without spaces"):
            RedisLock(raw, namespace, "a b", "o", ttl=1)
        with pytest.raises(ValueError, match="positive"):
            RedisLock(raw, namespace, "a", "o", ttl=0)


async def test_a_singleton_runs_on_one_process_and_moves_when_it_stops(
    redis_server: RedisServer, namespace: str
) -> None:
    running: dict[str, int] = {}
    history: list[tuple[str, str, int]] = []

    def member(name: str) -> Singleton:
        async def acquired(token: int) -> None:
            running[name] = token
            history.append(("start", name, token))

        async def lost() -> None:
            history.append(("stop", name, running.pop(name)))

        return Singleton(redis_config(redis_server.url, namespace), "poller", acquired, lost, ttl=0.6, owner=name)

    members = [member(n) for n in ("a", "b", "c")]
    for m in members:
        await m.start()
    try:
        async with asyncio.timeout(30):
            while not running:
                await asyncio.sleep(0.01)
        holder = next(m for m in members if m.holding.is_set())
        assert len(running) == 1 and list(running) == [holder.owner]
        await holder.stop()  # frees the lock: another takes it at its next try
        async with asyncio.timeout(30):
            while len(running) != 1 or holder.owner in running:
                await asyncio.sleep(0.01)
        ((new_owner, token),) = running.items()
        assert token == 2 and new_owner != holder.owner
    finally:
        for m in members:
            await m.stop()
    assert not running
    starts = [h for h in history if h[0] == "start"]
    assert [t for _, _, t in starts] == [1, 2]
