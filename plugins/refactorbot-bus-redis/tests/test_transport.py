"""Slice requests through Redis: a worker host serves them, a client on another host gets the answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import raw_client, redis_config
from refactorbot.models import ErrorType, SliceRequest
from refactorbot.testing import host_running
from refactorbot_bus_redis.config import Keys
from refactorbot_bus_redis.testing import RedisServer
from refactorbot_bus_redis.transport import GROUP, RequestClient, SliceWorker
from work_plugin import GATES, STARTED, runs_of

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def worker_host(home: Path, url: str, namespace: str, **overrides: Any) -> AsyncIterator[SliceWorker]:
    """A host running the ``work`` slice, serving it from Redis."""
    async with host_running(home, ["work_plugin"]) as host:
        served = SliceWorker(
            redis_config(url, namespace, **overrides), ["work"], host.route, stopping=lambda: host.stopping
        )
        await served.start()
        try:
            yield served
        finally:
            await served.stop()


@contextlib.asynccontextmanager
async def client(url: str, namespace: str, timeout: float = 30.0) -> AsyncIterator[RequestClient]:
    sender = RequestClient(redis_config(url, namespace), timeout=timeout)
    await sender.start()
    try:
        yield sender
    finally:
        await sender.stop()


async def test_a_request_runs_on_the_worker_and_its_answer_comes_back(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    async with (
        worker_host(tmp_path / "w", redis_server.url, namespace) as served,
        client(redis_server.url, namespace) as sender,
    ):
        answers = await asyncio.gather(
            *(
                sender.execute(SliceRequest(slice_id="work", operation="run", payload={"key": f"k{i}"}))
                for i in range(50)
            )
        )
        assert all(a.success for a in answers), [a.error_message for a in answers if not a.success]
        assert sorted(a.data["key"] for a in answers) == sorted(f"k{i}" for i in range(50))
        assert {a.data["home"] for a in answers} == {str((tmp_path / "w").resolve())}
        assert runs_of(tmp_path / "w") == {f"k{i}": 1 for i in range(50)}
        assert served.served == 50
        bad = await sender.execute(SliceRequest(slice_id="work", operation="run", payload={"nope": 1}))
        assert bad.error_type is ErrorType.INVALID_PAYLOAD and "key" in (bad.error_message or "")


async def test_no_worker_is_a_timeout_naming_the_slice(redis_server: RedisServer, namespace: str) -> None:
    async with client(redis_server.url, namespace) as sender:
        answer = await sender.execute(SliceRequest(slice_id="work", operation="run", payload={"key": "x"}), timeout=0.2)
    assert answer.error_type is ErrorType.TIMEOUT
    assert answer.error_message == "no worker of slice 'work' answered work.run within 0.2s"


async def test_a_request_past_its_deadline_is_not_run(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    async with client(redis_server.url, namespace) as sender:
        late = await sender.execute(
            SliceRequest(slice_id="work", operation="run", payload={"key": "late"}), timeout=0.05
        )
        assert late.error_type is ErrorType.TIMEOUT
        async with worker_host(tmp_path / "w", redis_server.url, namespace):  # reads it from the stream's start
            keys = Keys(namespace)
            async with raw_client(redis_server.url) as raw:
                async with asyncio.timeout(30):
                    while (await raw.xpending(keys.key("req", "work"), GROUP))["pending"] or not await raw.exists(
                        keys.key("done", late.request_id)
                    ):
                        await asyncio.sleep(0.01)
    assert runs_of(tmp_path / "w")["late"] == 0


async def test_the_same_request_id_runs_once_and_is_answered_again_from_the_record(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    request = SliceRequest(slice_id="work", operation="run", payload={"key": "once"})
    async with worker_host(tmp_path / "w", redis_server.url, namespace), client(redis_server.url, namespace) as sender:
        first = await sender.execute(request)
        again = await sender.execute(request.model_copy())
    assert first.success and again.success and again.data == first.data
    assert runs_of(tmp_path / "w")["once"] == 1


async def test_requests_held_by_a_dead_worker_are_claimed_and_answered_once(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """A consumer that read requests and died (never acknowledged) loses them to a live worker after claim_idle."""
    keys = Keys(namespace)
    stream = keys.key("req", "work")
    async with client(redis_server.url, namespace) as sender, raw_client(redis_server.url) as raw:
        await raw.xgroup_create(stream, GROUP, id="0", mkstream=True)
        calls = [
            asyncio.create_task(
                sender.execute(SliceRequest(slice_id="work", operation="run", payload={"key": f"d{i}"}))
            )
            for i in range(5)
        ]
        async with asyncio.timeout(30):
            while await raw.xlen(stream) < 5:
                await asyncio.sleep(0.005)
        taken = await raw.xreadgroup(GROUP, "dead-node:1:abc", {stream: ">"}, count=10)
        assert len(taken[0][1]) == 5
        async with worker_host(tmp_path / "w", redis_server.url, namespace, claim_idle=0.3):
            answers = await asyncio.gather(*calls)
        assert all(a.success for a in answers)
        assert runs_of(tmp_path / "w") == {f"d{i}": 1 for i in range(5)}
        assert (await raw.xpending(stream, GROUP))["pending"] == 0


async def test_a_redelivered_request_that_finished_is_not_run_again(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """The same entry appended again (as a redelivery would present it) is answered from the record."""
    keys = Keys(namespace)
    stream = keys.key("req", "work")
    request = SliceRequest(slice_id="work", operation="run", payload={"key": "r"})
    async with worker_host(tmp_path / "w", redis_server.url, namespace), client(redis_server.url, namespace) as sender:
        assert (await sender.execute(request)).success
        async with raw_client(redis_server.url) as raw:
            entries = await raw.xrange(stream)
            fields = entries[-1][1]
            await raw.xadd(stream, fields)
            async with asyncio.timeout(30):
                while (await raw.xpending(stream, GROUP))["pending"] or await raw.xlen(sender.reply_key) < 2:
                    await asyncio.sleep(0.01)
    assert runs_of(tmp_path / "w")["r"] == 1


async def test_a_long_request_stays_with_its_worker(redis_server: RedisServer, namespace: str, tmp_path: Path) -> None:
    """A request running longer than claim_idle is re-claimed by its worker, so a second worker never takes it."""
    one, two = (tmp_path / "one").resolve(), (tmp_path / "two").resolve()
    for home in (one, two):
        GATES[home], STARTED[home] = asyncio.Event(), asyncio.Event()
    async with (
        worker_host(one, redis_server.url, namespace, claim_idle=1.0),
        client(redis_server.url, namespace) as sender,
    ):
        call = asyncio.create_task(
            sender.execute(SliceRequest(slice_id="work", operation="hold", payload={"key": "h"}))
        )
        await STARTED[one].wait()
        async with worker_host(two, redis_server.url, namespace, claim_idle=1.0) as second:
            # the second worker scans for idle entries while the first has held its own past claim_idle
            for _ in range(4):
                await second._take_over()
                await asyncio.sleep(0.5)
            GATES[one].set()
            answer = await call
    assert answer.success and answer.data == "h"
    assert runs_of(one)["h"] == 1 and runs_of(two)["h"] == 0
