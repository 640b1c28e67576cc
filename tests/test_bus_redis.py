"""Every installed distribution together, two hosts on one real Redis: the Redis bus is chosen
over the durable SQLite bus, and a slice both hosts run gets each event once between them."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from refactorbot import AtomicSlice, Event, hookimpl, subscribe
from refactorbot.testing import build_host
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.testing import RedisServer, RedisServerMissing

SEEN: dict[str, list[int]] = {}


class TallySlice(AtomicSlice):
    slice_id = "tally"
    uses_database = False

    @subscribe("tally.*")
    async def on_tally(self, event: Event) -> None:
        assert event.offset is not None
        SEEN.setdefault(self.ctx.home.name, []).append(event.offset)


class TallyPlugin:
    @hookimpl
    def register_slices(self, register: Any) -> None:
        register(TallySlice)


@pytest.fixture
def redis_url(tmp_path: Path):
    try:
        server = RedisServer(tmp_path / "redis")
    except RedisServerMissing as exc:
        pytest.fail(str(exc))
    server.start()
    yield server.url
    server.stop()


@pytest.mark.asyncio
async def test_two_hosts_with_everything_installed_share_events_on_redis(redis_url: str, tmp_path: Path) -> None:
    env = {"RB_REDIS_URL": redis_url, "RB_REDIS_NAMESPACE": f"it{secrets.token_hex(3)}"}
    config = {"core": {"health_interval": 3600}}
    hosts = [
        build_host(tmp_path / name, [TallyPlugin()], config=config, env=env, load_installed=True, serving=False)
        for name in ("east", "west")
    ]
    for host in hosts:
        await host.start()
    try:
        assert all(type(h.bus) is RedisEventBus for h in hosts)
        for i in range(60):
            await hosts[i % 2].publish(Event(topic="tally.add", payload={"n": i}))
        async with asyncio.timeout(30):
            while sum(len(v) for v in SEEN.values()) < 60:
                await asyncio.sleep(0.005)
        offsets = [o for name in ("east", "west") for o in SEEN.get(name, [])]
        assert len(offsets) == 60 and len(set(offsets)) == 60
    finally:
        for host in hosts:
            await host.stop()
