"""Singletons on a real Redis: the scheduler's timer fires on one host, and a host cut off cannot claim runs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import refactorbot_bus_redis.plugin as redis_plugin
import refactorbot_slice_scheduling.plugin as scheduling_plugin
import work_plugin
from conftest import raw_client, redis_config, until
from refactorbot import MasterCore
from refactorbot.testing import build_host
from refactorbot_bus_redis.lock import Singleton
from refactorbot_bus_redis.testing import RedisServer

pytestmark = pytest.mark.asyncio

TICK = {"type": "operation", "operation": "work.run", "payload": {"key": "tick"}}


def node_config(url: str, namespace: str) -> dict[str, Any]:
    return {
        "core": {"health_interval": 3600, "log_level": "WARNING"},
        "plugins": {"redis": {"url": url, "namespace": namespace, "lock_ttl": 0.6}},
        "slices": {"scheduling": {"heartbeat_every": 0, "alerts_every": 0, "diagnostics_every": 0}},
    }


def node(home: Path, url: str, namespace: str) -> MasterCore:
    return build_host(home, [redis_plugin, scheduling_plugin, work_plugin], config=node_config(url, namespace))


def scheduler(host: MasterCore) -> Any:
    return host.instance("scheduling")


async def ok(host: MasterCore, operation: str, /, **payload: Any) -> Any:
    response = await host.call(operation, **payload)
    assert response.success, response.error_message
    return response.data


async def scheduled_times(host: MasterCore) -> list[float]:
    runs = (await ok(host, "scheduling.history", name="tick", limit=1000))["runs"]
    return [r["scheduled_for"] for r in runs if r["trigger"] != "manual"]


async def test_the_timer_fires_on_one_host_and_a_host_cut_off_claims_nothing(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    hosts = [node(tmp_path / name, redis_server.url, namespace) for name in ("a", "b")]
    for host in hosts:
        await host.start()
    try:
        for host in hosts:  # the same job on both hosts, firing every second
            await ok(host, "scheduling.add", name="tick", every="1", target=TICK)
        await until(lambda: all(scheduler(h)._lease is not None for h in hosts))
        leases = [scheduler(h)._lease for h in hosts]
        assert all(isinstance(lease, Singleton) for lease in leases)
        await until(lambda: any(lease.holding.is_set() for lease in leases))
        holder_i = next(i for i, lease in enumerate(leases) if lease.holding.is_set())
        holder, standby = hosts[holder_i], hosts[1 - holder_i]
        holder_runs, standby_runs = work_plugin.runs_of(holder.home), work_plugin.runs_of(standby.home)

        await until(lambda: holder_runs["tick"] >= 2)
        assert standby_runs["tick"] == 0
        status = await ok(standby, "scheduling.status")
        assert status["timer"] == "standby"
        assert status["timer_holder"] == leases[holder_i].owner
        assert (await ok(holder, "scheduling.status"))["timer"] == "held"

        # Cut the holder off: its lease stops renewing (a paused process), while its timer keeps
        # running. The lock expires, the standby host takes over with a newer token, and every
        # fire the old holder still tries is refused by the fence.
        old = leases[holder_i]
        old_token = old.token
        assert old._task is not None
        old._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await old._task
        old._task = None
        new = leases[1 - holder_i]
        await until(lambda: new.holding.is_set())
        assert new.token is not None and old_token is not None and new.token > old_token
        assert old.token == old_token  # it still believes it holds the lock
        assert not await old.is_current(old_token)
        assert await old.claim(old_token, ["tick@elsewhere"]) == set()

        await until(lambda: standby_runs["tick"] >= 1)
        cut_off_count = holder_runs["tick"]
        await until(lambda: standby_runs["tick"] >= 3)
        assert holder_runs["tick"] == cut_off_count  # the timer fired on the old holder, nothing was claimed
        assert (await ok(standby, "scheduling.status"))["timer"] == "held"

        first, second = await scheduled_times(holder), await scheduled_times(standby)
        assert first and second
        assert not set(first) & set(second)  # no scheduled fire ran on both hosts
    finally:
        for host in hosts:
            await host.stop()


async def test_a_stopped_holder_hands_the_timer_over(redis_server: RedisServer, namespace: str, tmp_path: Path) -> None:
    hosts = [node(tmp_path / name, redis_server.url, namespace) for name in ("a", "b")]
    for host in hosts:
        await host.start()
    stopped: MasterCore | None = None
    try:
        for host in hosts:
            await ok(host, "scheduling.add", name="tick", every="1", target=TICK)
        await until(lambda: all(scheduler(h)._lease is not None for h in hosts))
        leases = [scheduler(h)._lease for h in hosts]
        await until(lambda: any(lease.holding.is_set() for lease in leases))
        holder_i = next(i for i, lease in enumerate(leases) if lease.holding.is_set())
        stopped, other = hosts[holder_i], hosts[1 - holder_i]
        await stopped.stop()  # frees the lock at once
        await until(lambda: leases[1 - holder_i].holding.is_set())
        await until(lambda: work_plugin.runs_of(other.home)["tick"] >= 1)
        async with raw_client(redis_server.url) as raw:
            held = await raw.get(f"rb:{{{namespace}}}:lock:scheduling.timer")
        assert held is not None and held.decode().startswith(leases[1 - holder_i].owner + " ")
    finally:
        for host in hosts:
            if host is not stopped:
                await host.stop()


async def test_claimed_keys_are_claimed_once_and_only_under_the_current_token(
    redis_server: RedisServer, namespace: str
) -> None:
    config = redis_config(redis_server.url, namespace)
    seen: list[int] = []

    async def acquired(token: int) -> None:
        seen.append(token)

    async def lost() -> None:
        seen.append(-1)

    first = Singleton(config, "claims", acquired, lost, ttl=30, owner="first")
    second = Singleton(config, "claims", acquired, lost, ttl=30, owner="second")
    await first.start()
    try:
        await until(lambda: first.holding.is_set())
        await second.start()
        token = first.token
        assert token is not None
        assert await first.claim(token, ["job@1", "job@2"]) == {"job@1", "job@2"}
        assert await first.claim(token, ["job@2", "job@3"]) == {"job@3"}
        await until(lambda: second.holder == "first")
        async with raw_client(redis_server.url) as raw:  # the lock vanishes (expired while its holder was paused)
            await raw.delete(f"rb:{{{namespace}}}:lock:claims")
        await until(lambda: second.holding.is_set())
        assert second.token == token + 1
        assert await first.claim(token, ["job@4"]) == set()
        assert await second.claim(token + 1, ["job@3", "job@4"]) == {"job@4"}
    finally:
        await first.stop()
        await second.stop()
