"""A worker reads requests only into free slots: what it cannot run yet stays in the stream for others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import raw_client, redis_config
from refactorbot.models import SliceRequest
from refactorbot.testing import host_running
from refactorbot_bus_redis.config import Keys
from refactorbot_bus_redis.testing import RedisServer
from refactorbot_bus_redis.transport import GROUP, RequestClient, SliceWorker
from work_plugin import GATES, runs_of

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def serving(home: Path, url: str, namespace: str, **options: Any) -> AsyncIterator[SliceWorker]:
    """A host running the ``work`` slice, served from Redis by a worker built with ``options``."""
    GATES[home.resolve()] = asyncio.Event()
    async with host_running(home, ["work_plugin"]) as host:
        worker = SliceWorker(
            redis_config(url, namespace), ["work"], host.route, stopping=lambda: host.stopping, **options
        )
        await worker.start()
        try:
            yield worker
        finally:
            GATES[home.resolve()].set()
            await worker.stop()


@contextlib.asynccontextmanager
async def client(url: str, namespace: str) -> AsyncIterator[RequestClient]:
    sender = RequestClient(redis_config(url, namespace), timeout=60)
    await sender.start()
    try:
        yield sender
    finally:
        await sender.stop()


async def until(condition: Any) -> None:
    """Wait until ``condition()`` holds (checked every few ms; the test's own timeout bounds it)."""
    async with asyncio.timeout(30):
        while not await condition():
            await asyncio.sleep(0.005)


def hold(key: str, request_id: str | None = None) -> SliceRequest:
    extra = {"request_id": request_id} if request_id else {}
    return SliceRequest(slice_id="work", operation="hold", payload={"key": key}, **extra)


async def pending_of(raw: Any, stream: str) -> dict[str, int]:
    """Return the entries each consumer of the group holds (read, not acknowledged)."""
    summary = await raw.xpending(stream, GROUP)
    return {c["name"].decode(): int(c["pending"]) for c in summary["consumers"]}


async def test_a_busy_worker_leaves_what_it_cannot_run_to_a_worker_with_free_slots(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    stream = Keys(namespace).key("req", "work")
    first, second = tmp_path / "first", tmp_path / "second"
    async with (
        client(redis_server.url, namespace) as sender,
        raw_client(redis_server.url) as raw,
        serving(first, redis_server.url, namespace, concurrency=8, limits={"work": 2}) as busy,
    ):
        assert busy.limits == {"work": 2}
        calls = [asyncio.create_task(sender.execute(hold(f"h{i}"))) for i in range(10)]

        async def two_running() -> bool:
            return sum(runs_of(first).values()) == 2

        await until(two_running)
        # its two slots are busy: it holds the two it runs and nothing more; eight wait in the stream
        assert busy.busy() == {"work": 2}
        assert await pending_of(raw, stream) == {busy.consumer: 2}
        assert await raw.xlen(stream) == 10
        async with serving(second, redis_server.url, namespace, concurrency=3) as idle:
            assert idle.limits == {"work": 3}

            async def second_running() -> bool:
                return sum(runs_of(second).values()) == 3

            await until(second_running)  # the newcomer takes three of the eight, up to its own limit
            assert await pending_of(raw, stream) == {busy.consumer: 2, idle.consumer: 3}
            GATES[first.resolve()].set()
            GATES[second.resolve()].set()
            answers = await asyncio.gather(*calls)
    assert all(a.success for a in answers), [a.error_message for a in answers if not a.success]
    assert sorted(a.data for a in answers) == sorted(f"h{i}" for i in range(10))
    ran = runs_of(first) + runs_of(second)
    assert ran == {f"h{i}": 1 for i in range(10)}
    assert sum(runs_of(second).values()) >= 3


async def test_a_request_sent_again_while_the_worker_is_busy_is_answered_from_its_record(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """Read into a freed slot together with new work, a finished id is answered without running or taking the slot."""
    home = tmp_path / "w"
    async with (
        client(redis_server.url, namespace) as sender,
        serving(home, redis_server.url, namespace, concurrency=1) as worker,
    ):
        done = await sender.execute(SliceRequest(slice_id="work", operation="run", payload={"key": "once"}))
        assert done.success
        blocking = asyncio.create_task(sender.execute(hold("gate")))

        async def gate_running() -> bool:
            return runs_of(home)["gate"] == 1

        await until(gate_running)
        again = asyncio.create_task(
            sender.execute(
                SliceRequest(slice_id="work", operation="run", payload={"key": "once"}, request_id=done.request_id)
            )
        )
        after = asyncio.create_task(sender.execute(hold("after")))
        stream = Keys(namespace).key("req", "work")
        async with raw_client(redis_server.url) as raw:

            async def both_queued() -> bool:
                return bool(await raw.xlen(stream) == 4)

            await until(both_queued)
        GATES[home.resolve()].set()
        answers = await asyncio.gather(blocking, again, after)
    assert [a.success for a in answers] == [True, True, True]
    assert answers[1].data == done.data and answers[1].request_id == done.request_id
    assert runs_of(home) == {"once": 1, "gate": 1, "after": 1}
    assert worker.served == 3  # the resend was answered from the record, not run


async def test_limits_below_one_are_refused(redis_server: RedisServer, namespace: str) -> None:
    async def route(request: SliceRequest) -> Any:
        raise AssertionError("never routed")

    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        SliceWorker(redis_config(redis_server.url, namespace), ["work"], route, concurrency=0)
    with pytest.raises(ValueError, match="the limit of slice 'work' must be at least 1, not 0"):
        SliceWorker(redis_config(redis_server.url, namespace), ["work"], route, limits={"work": 0})
