"""The Redis bus against a real redis-server: groups, claims, dead letters, trimming, outages."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import raw_client, redis_config, running_bus, start_server, until
from refactorbot import Event, EventRejected, RefactorbotError
from refactorbot.events import subscribe
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.config import Keys

pytestmark = pytest.mark.asyncio
HERE = Path(__file__).parent


class Collector:
    """Handlers under stable subscriber names that record offsets and payloads."""

    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = collections.defaultdict(list)
        self.payloads: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.calls: collections.Counter[str] = collections.Counter()
        self.fail: set[str] = set()

    def handler(self, name: str, start: str | int = "latest", pattern: str = "*") -> Any:
        """Return a handler named ``name`` for ``pattern`` (subscribe it with that pattern)."""

        @subscribe(pattern, name=name, start=start)
        async def handle(event: Event) -> None:
            self.calls[name] += 1
            if name in self.fail:
                raise RuntimeError(f"{name} refuses #{event.offset}")
            assert event.offset is not None
            self.seen[name].append(event.offset)
            self.payloads[name].append(event.payload)

        return handle


async def test_publish_returns_the_offset_and_subscribers_get_topic_payload_source(redis_server, namespace) -> None:
    got = Collector()
    async with running_bus(redis_server.url, namespace) as bus:
        bus.subscribe("notes.*", got.handler("a.notes", pattern="notes.*"))
        first = await bus.append(Event(topic="notes.added", payload={"id": 1, "text": "é"}, source="notes"))
        await bus.publish(Event(topic="other.thing", payload={"id": 2}))
        third = await bus.append(Event(topic="notes.removed", payload={"id": 3}))
        await until(lambda: len(got.seen["a.notes"]) == 2)
        assert got.seen["a.notes"] == [first, third]
        assert third == first + 2
        assert got.payloads["a.notes"] == [{"id": 1, "text": "é"}, {"id": 3}]
        stats = bus.stats()["subscribers"]["a.notes"]
        assert stats["delivered"] == 2
    async with raw_client(redis_server.url) as client:
        entry = await client.xrange(Keys(namespace).events, f"{first}-0", f"{first}-0")
        fields = entry[0][1]
        assert fields[b"t"] == b"notes.added" and fields[b"s"] == b"notes"
        assert json.loads(fields[b"d"]) == {"id": 1, "text": "é"}


async def test_each_group_gets_each_event_once_across_two_buses(redis_server, namespace) -> None:
    """Two buses on one Redis are two hosts: a subscriber they both run shares its events."""
    left, right = Collector(), Collector()
    async with (
        running_bus(redis_server.url, namespace, batch=5) as one,
        running_bus(redis_server.url, namespace, batch=5) as two,
    ):
        assert one.consumer != two.consumer
        for bus, got in ((one, left), (two, right)):
            bus.subscribe("work.*", got.handler("shared.worker", pattern="work.*"))
            bus.subscribe("*", got.handler(f"only.{id(bus)}"))

        async def burst(bus: RedisEventBus, base: int) -> list[int]:
            return [await bus.append(Event(topic="work.item", payload={"n": base + i})) for i in range(150)]

        offsets = sorted([*await burst(one, 0), *await burst(two, 1000)])
        assert len(set(offsets)) == 300
        shared = lambda: left.seen["shared.worker"] + right.seen["shared.worker"]  # noqa: E731
        await until(lambda: len(shared()) >= 300)
        await until(lambda: len(left.seen[f"only.{id(one)}"]) == 300 and len(right.seen[f"only.{id(two)}"]) == 300)
        assert sorted(shared()) == offsets  # every event once, to one of the two hosts
        assert sorted(left.seen[f"only.{id(one)}"]) == offsets
        assert sorted(right.seen[f"only.{id(two)}"]) == offsets
        assert left.seen["shared.worker"] and right.seen["shared.worker"], "both hosts took part"


async def test_two_hosts_share_a_slice_s_events_through_the_host(redis_server, namespace, tmp_path) -> None:
    """Two MasterCores with the sink slice: its two subscribers each get every event exactly once."""
    from refactorbot.testing import build_host
    from sink_plugin import record_for

    env = {"RB_REDIS_URL": redis_server.url, "RB_REDIS_NAMESPACE": namespace, "RB_REDIS_BATCH": "4"}
    config = {"core": {"health_interval": 3600}}
    hosts = [
        build_host(tmp_path / name, ["refactorbot_bus_redis.plugin", "sink_plugin"], config=config, env=env)
        for name in ("a", "b")
    ]
    for host in hosts:
        await host.start()
    try:
        assert all(type(h.bus) is RedisEventBus for h in hosts)
        for i in range(100):
            await hosts[i % 2].publish(Event(topic="work.done", payload={"n": i}))
        records = [record_for(tmp_path / name) for name in ("a", "b")]

        def total(handler: str) -> list[int | None]:
            return [o for r in records for o in r.offsets(handler)]

        await until(lambda: len(total("on_work")) >= 100 and len(total("everything")) >= 100)
        for handler in ("on_work", "everything"):
            assert len(total(handler)) == 100 and len(set(total(handler))) == 100, handler
    finally:
        for host in hosts:
            await host.stop()


async def test_a_killed_consumer_s_entries_are_claimed_after_claim_idle(redis_server, namespace) -> None:
    """A process holding entries is killed (SIGKILL); another consumer claims them by XAUTOCLAIM."""
    got = Collector()
    async with running_bus(redis_server.url, namespace) as publisher:
        offsets = [await publisher.append(Event(topic="job.run", payload={"n": i})) for i in range(3)]
        holder = subprocess.Popen(
            [sys.executable, str(HERE / "holder.py"), redis_server.url, namespace, "worker.held"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            lines = [await asyncio.to_thread(holder.stdout.readline) for _ in range(2)]
            assert [line.strip() for line in lines] == ["subscribed", f"holding {offsets[0]}"]
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            async with raw_client(redis_server.url) as client:
                pending = await client.xpending(Keys(namespace).events, "worker.held")
                assert pending["pending"] == 3  # the batch it had read, none acknowledged
            async with running_bus(redis_server.url, namespace, claim_idle=0.3) as rescuer:
                rescuer.subscribe("job.*", got.handler("worker.held", pattern="job.*"))
                await until(lambda: len(got.seen["worker.held"]) == 3)
                assert got.seen["worker.held"] == offsets
                assert rescuer.stats()["subscribers"]["worker.held"]["claimed"] == 3
            async with raw_client(redis_server.url) as client:
                pending = await client.xpending(Keys(namespace).events, "worker.held")
                assert pending["pending"] == 0
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()


async def test_a_live_slow_handler_keeps_its_entry(redis_server, namespace) -> None:
    """A handler that runs past claim_idle is not taken over: its consumer keeps re-claiming the entry."""
    release = asyncio.Event()
    started = asyncio.Event()
    calls: list[int] = []

    @subscribe("*", name="slow.one")
    async def slow(event: Event) -> None:
        assert event.offset is not None
        calls.append(event.offset)
        started.set()
        await release.wait()

    other = Collector()
    async with (
        running_bus(redis_server.url, namespace, claim_idle=0.2) as one,
        running_bus(redis_server.url, namespace, claim_idle=0.2) as two,
    ):
        one.subscribe("*", slow)
        await one.publish(Event(topic="a.b", payload={}))
        await started.wait()
        two.subscribe("*", other.handler("slow.one"))
        # Ten claim passes of the second consumer (one every claim_idle / 2) while the first holds it.
        await until(lambda: two.subscribers()[0].counters["claim_passes"] >= 10)
        assert two.subscribers()[0].counters["claimed"] == 0
        async with raw_client(redis_server.url) as client:
            info = await client.xpending_range(Keys(namespace).events, "slow.one", "-", "+", 10)
            assert [row["consumer"].decode() for row in info] == [one.consumer]
            assert info[0]["times_delivered"] == 1
        release.set()
        await until(lambda: one.subscribers()[0].counters["delivered"] == 1)
    assert calls == [1]
    assert other.seen["slow.one"] == []


async def test_dead_letter_after_max_attempts(redis_server, namespace) -> None:
    got = Collector()
    got.fail.add("bad.handler")
    async with running_bus(redis_server.url, namespace, max_attempts=3) as bus:
        bus.subscribe("*", got.handler("bad.handler"))
        bus.subscribe("*", got.handler("good.handler"))
        offset = await bus.append(Event(topic="x.y", payload={"n": 7}, source="src"))
        await until(lambda: bus.subscribers()[0].counters["dead"] == 1)
        assert got.calls["bad.handler"] == 3
        await until(lambda: got.seen["good.handler"] == [offset])
        counters = bus.stats()["subscribers"]["bad.handler"]
        assert counters["failures"] == 3 and counters["retries"] == 2
        assert counters["last_error"] == f"RuntimeError: bad.handler refuses #{offset}"
    async with raw_client(redis_server.url) as client:
        letters = await client.xrange(Keys(namespace).dead)
        assert len(letters) == 1
        letter = {k.decode(): v.decode() for k, v in letters[0][1].items()}
        assert letter["subscriber"] == "bad.handler"
        assert letter["offset"] == str(offset) and letter["topic"] == "x.y" and letter["source"] == "src"
        assert json.loads(letter["payload"]) == {"n": 7}
        assert letter["attempts"] == "3"
        assert letter["error"] == f"RuntimeError: bad.handler refuses #{offset}"
        assert (await client.xpending(Keys(namespace).events, "bad.handler"))["pending"] == 0


async def test_an_entry_whose_consumers_kept_dying_is_dead_lettered_without_a_call(redis_server, namespace) -> None:
    """Deliveries to consumers that crashed count: past max_attempts the handler is not called again."""
    keys = Keys(namespace)
    got = Collector()
    async with running_bus(redis_server.url, namespace, max_attempts=2, claim_idle=0.05) as bus:
        async with raw_client(redis_server.url) as client:
            await client.xgroup_create(keys.events, "poison.eater", id="$", mkstream=True)
            offset = await bus.append(Event(topic="p.q", payload={}))
            # Two consumers read it and "crashed" (never acknowledged): delivered twice.
            await client.xreadgroup("poison.eater", "crashed-1", {keys.events: ">"})
            await client.xclaim(keys.events, "poison.eater", "crashed-2", 0, [f"{offset}-0"])
            bus.subscribe("*", got.handler("poison.eater"))
            await until(lambda: bus.subscribers()[0].counters["dead"] == 1)
            assert got.calls["poison.eater"] == 0
            letters = await client.xrange(keys.dead)
            error = letters[0][1][b"error"].decode()
            assert error == "delivered 2 times without an acknowledgement (the consumers holding it stopped or crashed)"


async def test_trimming_never_drops_unread_entries(redis_server, namespace) -> None:
    keys = Keys(namespace)
    got = Collector()
    async with running_bus(redis_server.url, namespace, max_len=10) as bus:
        # "late.reader" exists (its group was created) but is not running.
        async with raw_client(redis_server.url) as client:
            await client.xgroup_create(keys.events, "late.reader", id="$", mkstream=True)
            bus.subscribe("*", got.handler("fast.reader"))
            offsets = [await bus.append(Event(topic="t.x", payload={"n": i, "pad": "x" * 50})) for i in range(1000)]
            await until(lambda: len(got.seen["fast.reader"]) == 1000)
            result = await bus.trim()
            assert result["group"] == "late.reader" and result["floor"] == offsets[0]
            assert await client.xlen(keys.events) == 1000
    late = Collector()
    async with running_bus(redis_server.url, namespace, max_len=10, batch=100) as bus:
        bus.subscribe("*", late.handler("late.reader"))
        await until(lambda: len(late.seen["late.reader"]) == 1000)
        assert late.seen["late.reader"] == offsets
        # Everyone has read everything: the trim keeps max_len, rounded up to whole nodes (100 entries).
        async with raw_client(redis_server.url) as client:
            await until(lambda: bus.floor.get("floor") == offsets[-1] + 1)
            await bus.trim()
            assert 10 <= await client.xlen(keys.events) <= 110


async def test_publish_is_refused_rather_than_trimming_unread_entries(redis_server, namespace) -> None:
    keys = Keys(namespace)
    async with running_bus(redis_server.url, namespace, max_len=5, max_unacked=50) as bus:
        async with raw_client(redis_server.url) as client:
            await client.xgroup_create(keys.events, "stuck.reader", id="$", mkstream=True)
        await bus.trim()
        for i in range(50):
            await bus.publish(Event(topic="t.x", payload={"n": i}))
        with pytest.raises(EventRejected) as refused:
            await bus.publish(Event(topic="t.x", payload={"n": 50}))
        assert (
            str(refused.value)
            == "subscriber stuck.reader has 50 unacknowledged events (max_unacked 50); t.x not stored"
        )
        assert bus.stats()["rejected"] == 1
        # The reader catches up: publishing goes on.
        got = Collector()
        bus.subscribe("*", got.handler("stuck.reader"))
        await until(lambda: len(got.seen["stuck.reader"]) == 50)
        await until(lambda: bus.floor.get("floor") == 51)
        await bus.publish(Event(topic="t.x", payload={"n": 50}))


async def test_delivery_goes_on_after_redis_restarts(tmp_path, namespace) -> None:
    server = start_server(tmp_path / "redis")
    try:
        got = Collector()
        async with running_bus(server.url, namespace, claim_idle=0.5, publish_timeout=60) as bus:
            bus.subscribe("*", got.handler("survivor"))
            before = [await bus.append(Event(topic="a.b", payload={"n": i})) for i in range(20)]
            await until(lambda: len(got.seen["survivor"]) == 20)
            server.stop(kill=True)
            # Published while Redis is down: retried until it is back.
            pending = asyncio.ensure_future(bus.append(Event(topic="a.b", payload={"n": 20})))
            await until(lambda: bus.publish_retries > 0)
            server.start()
            during = await pending
            after = [await bus.append(Event(topic="a.b", payload={"n": i})) for i in range(21, 40)]
            assert [*before, during, *after] == list(range(1, 41))
            await until(lambda: set(got.seen["survivor"]) == set(range(1, 41)))
            assert {p["n"] for p in got.payloads["survivor"]} == set(range(40))
    finally:
        server.stop()


async def test_a_publish_retried_after_a_lost_reply_is_stored_once(redis_server, namespace) -> None:
    """The retry looks for its publish id among the newest entries before adding the event again."""
    async with running_bus(redis_server.url, namespace) as bus:
        args = [10, 1000, 0, "feedfacefeedface", "r.s", b"{}", "", "1.0"]
        first = await bus._run_publish(list(args), "r.s")
        args[2] = 1
        again = await bus._run_publish(list(args), "r.s")
        assert first[0] == 1 and again[0] == 0 and again[1] == first[1]
        async with raw_client(redis_server.url) as client:
            assert await client.xlen(Keys(namespace).events) == 1


async def test_stop_hands_back_what_it_had_not_delivered(redis_server, namespace) -> None:
    """Entries read but not delivered at stop go to the next consumer at once, not after claim_idle."""
    gate = asyncio.Event()
    first: list[int] = []

    @subscribe("*", name="handover")
    async def blocked(event: Event) -> None:
        assert event.offset is not None
        first.append(event.offset)
        await gate.wait()

    async with running_bus(redis_server.url, namespace, claim_idle=3600, stop_timeout=0.1, batch=10) as publisher:
        one = RedisEventBus(redis_config(redis_server.url, namespace, claim_idle=3600, stop_timeout=0.1, batch=10))
        await one.start()
        one.subscribe("*", blocked)
        await one.subscribers()[0].group_ready.wait()
        offsets = [await publisher.append(Event(topic="h.o", payload={"n": i})) for i in range(5)]
        await until(lambda: first == [offsets[0]])
        await one.stop()  # the handler is cancelled after stop_timeout; all five are handed back
        got = Collector()
        async with running_bus(redis_server.url, namespace, claim_idle=3600) as two:
            two.subscribe("*", got.handler("handover"))
            await until(lambda: len(got.seen["handover"]) == 5)
            assert got.seen["handover"] == offsets


async def test_bad_events_are_refused_with_one_line(redis_server, namespace) -> None:
    async with running_bus(redis_server.url, namespace, max_payload_bytes=100) as bus:
        for topic in ("", "has space", "x" * 201, "tab\tbed"):
            with pytest.raises(EventRejected, match="invalid topic"):
                await bus.publish(Event(topic=topic))
        with pytest.raises(EventRejected, match=r"payload of a\.b cannot be stored as JSON"):
            await bus.publish(Event(topic="a.b", payload={"x": float("nan")}))
        with pytest.raises(EventRejected, match=r"payload of a\.b is 111 bytes, over max_payload_bytes 100"):
            await bus.publish(Event(topic="a.b", payload={"x": "y" * 103}))
        assert bus.published == 0


async def test_starting_without_redis_fails_with_the_address_and_no_password(namespace) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bus = RedisEventBus(
        redis_config(f"redis://user:hunter2@127.0.0.1:{port}/0", namespace, password="also-secret", connect_timeout=2)
    )
    with pytest.raises(RefactorbotError) as failed:
        await bus.start()
    message = str(failed.value)
    assert message.startswith(f"Redis at redis://127.0.0.1:{port}/0 unreachable: ")
    assert "hunter2" not in message and "also-secret" not in message and "\n" not in message


async def test_a_lost_group_is_created_again_where_the_subscriber_was(redis_server, namespace) -> None:
    keys = Keys(namespace)
    got = Collector()
    async with running_bus(redis_server.url, namespace) as bus:
        bus.subscribe("*", got.handler("phoenix"))
        first = [await bus.append(Event(topic="a.b", payload={})) for _ in range(3)]
        await until(lambda: got.seen["phoenix"] == first)
        async with raw_client(redis_server.url) as client:
            await client.xgroup_destroy(keys.events, "phoenix")
        later = [await bus.append(Event(topic="a.b", payload={})) for _ in range(3)]
        await until(lambda: got.seen["phoenix"] == first + later)
