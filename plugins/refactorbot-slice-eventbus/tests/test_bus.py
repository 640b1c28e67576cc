"""The durable bus in a real host: storage before publish returns, ordered at-least-once delivery,
retries and dead letters, requeue, overflow policies, restarts, replay and retention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import EVENTBUS, SINK, rows, running, until
from refactorbot.events import Event, EventRejected, InMemoryEventBus
from refactorbot_slice_eventbus.bus import DurableEventBus
from sink_plugin import SINKS, record_for


@pytest.fixture(autouse=True)
def clean_sinks() -> None:
    SINKS.clear()


@pytest.mark.asyncio
async def test_installed_it_replaces_the_in_memory_bus(tmp_path: Path) -> None:
    async with running(tmp_path) as host:
        assert isinstance(host.bus, DurableEventBus)
        assert "eventbus" in host.running_slices()
    async with running(tmp_path / "without", [SINK]) as host:
        assert isinstance(host.bus, InMemoryEventBus)
        record = record_for(tmp_path / "without")
        await host.publish(Event(topic="work.x", payload={"n": 1}))
        await until(lambda: record.of("on_work") == [1])


@pytest.mark.asyncio
async def test_publish_returns_once_stored_and_delivers_in_order(tmp_path: Path) -> None:
    async with running(tmp_path) as host:
        record = record_for(tmp_path)
        await asyncio.gather(*(host.publish(Event(topic="work.item", payload={"n": n})) for n in range(500)))
        # Stored before publish returned: a second connection sees every row now.
        stored = rows(tmp_path, 'SELECT "offset", payload FROM events ORDER BY "offset"')
        assert len(stored) == 500
        await until(lambda: len(record.of("on_work")) == 500)
        offsets = record.offsets("on_work")
        assert offsets == sorted(offsets) == [o for o, _ in stored]
        assert sorted(record.of("on_work")) == list(range(500))
        await host.publish(Event(topic="other.thing", payload={"n": 9}))
        stats = (await host.call("eventbus.stats")).data
        sub = next(s for s in stats["subscribers"] if s["name"] == "sink.on_work")
        assert sub["delivered"] == 500 and sub["active"]
        await until(lambda: host.bus.subscriber("sink.on_work").acked == 501)


@pytest.mark.asyncio
async def test_failures_are_retried_then_dead_lettered_and_requeued(tmp_path: Path) -> None:
    async with running(tmp_path, max_attempts=3) as host:
        record = record_for(tmp_path)
        record.fail = {1: 2, 2: 10}  # n=1 succeeds on its third attempt; n=2 never does
        for n in range(4):
            await host.publish(Event(topic="work.item", payload={"n": n}))
        await until(lambda: record.of("on_work") == [0, 1, 3])
        letters = (await host.call("eventbus.dead_letters")).data["items"]
        assert [(d["subscriber"], d["payload"], d["attempts"]) for d in letters] == [("sink.on_work", {"n": 2}, 3)]
        assert "RuntimeError: refusing n=2" in letters[0]["error"]
        sub = next(s for s in (await host.call("eventbus.stats")).data["subscribers"] if s["name"] == "sink.on_work")
        assert (sub["retries"], sub["dead"], sub["failures"], sub["dead_letters"]) == (2 + 2, 1, 2 + 3, 1)
        record.fail[2] = 0
        changed = await host.call("eventbus.requeue", ids=[letters[0]["id"]])
        assert changed.data == {"count": 1}
        await until(lambda: record.of("on_work") == [0, 1, 3, 2])
        await until(lambda: rows(tmp_path, "SELECT status FROM dead_letters") == [("redelivered",)])


@pytest.mark.asyncio
async def test_restart_resumes_from_the_stored_offset(tmp_path: Path) -> None:
    async with running(tmp_path) as host:
        record = record_for(tmp_path)
        for n in range(3):
            await host.publish(Event(topic="work.item", payload={"n": n}))
        await until(lambda: record.of("on_work") == [0, 1, 2])
        record.gate.clear()  # the sink stops taking events: these stay unacknowledged
        for n in range(3, 6):
            await host.publish(Event(topic="work.item", payload={"n": n}))
    SINKS.clear()
    async with running(tmp_path) as host:
        record = record_for(tmp_path)
        await until(lambda: record.of("on_work") == [3, 4, 5])
    assert rows(tmp_path, "SELECT acked_offset FROM subscribers WHERE name = 'sink.on_work'") == [(6,)]


@pytest.mark.asyncio
async def test_without_the_sink_events_wait_and_a_new_subscriber_replays_from_earliest(tmp_path: Path) -> None:
    async with running(tmp_path, [EVENTBUS]) as host:
        for n in range(3):
            await host.publish(Event(topic="audit.login", payload={"n": n}))
    async with running(tmp_path) as host:
        record = record_for(tmp_path)
        # sink.auditor subscribes with start="earliest": it gets what was published before it existed.
        await until(lambda: record.of("auditor") == [0, 1, 2])
        assert record.of("on_work") == []


@pytest.mark.asyncio
async def test_replay_from_an_offset(tmp_path: Path) -> None:
    async with running(tmp_path) as host:
        record = record_for(tmp_path)
        for n in range(5):
            await host.publish(Event(topic="work.item", payload={"n": n}))
        await until(lambda: len(record.of("on_work")) == 5)
        answer = await host.call("eventbus.replay", subscriber="sink.on_work", from_offset=3)
        assert answer.data["acked_offset"] == 2
        await until(lambda: record.of("on_work") == [0, 1, 2, 3, 4, 2, 3, 4])
        refused = await host.call("eventbus.replay", subscriber="nobody", from_offset=1)
        assert not refused.success and "no subscriber named 'nobody'" in refused.error_message


@pytest.mark.asyncio
async def test_overflow_reject(tmp_path: Path) -> None:
    async with running(tmp_path, max_in_flight=2, overflow="reject") as host:
        record = record_for(tmp_path)
        await until(lambda: host.bus.subscriber("sink.on_work").ready)
        record.gate.clear()
        await host.publish(Event(topic="work.item", payload={"n": 0}))
        await host.publish(Event(topic="work.item", payload={"n": 1}))
        with pytest.raises(EventRejected, match="subscriber sink.on_work has 2 unacknowledged events"):
            await host.publish(Event(topic="work.item", payload={"n": 2}))
        await host.publish(Event(topic="other.item", payload={"n": 3}))  # not matching: stored
        assert rows(tmp_path, "SELECT count(*) FROM events") == [(3,)]
        record.gate.set()
        await until(lambda: record.of("on_work") == [0, 1])
        assert host.bus.subscriber("sink.on_work").counters["rejected"] == 1


@pytest.mark.asyncio
async def test_overflow_drop_oldest(tmp_path: Path) -> None:
    async with running(tmp_path, max_in_flight=3, overflow="drop_oldest") as host:
        record = record_for(tmp_path)
        await until(lambda: host.bus.subscriber("sink.on_work").ready)
        record.gate.clear()
        await host.publish(Event(topic="work.item", payload={"n": 0}))
        await until(lambda: host.bus.subscriber("sink.on_work").current == 1)  # n=0 is in the handler
        for n in range(1, 7):
            await host.publish(Event(topic="work.item", payload={"n": n}))
        record.gate.set()
        # Three may wait: n=0 (in delivery) and the two newest; the oldest waiting ones were dropped.
        await until(lambda: record.of("on_work") == [0, 5, 6])
        await until(lambda: host.bus.subscriber("sink.on_work").acked == 7)
        assert host.bus.subscriber("sink.on_work").counters["dropped"] == 4


@pytest.mark.asyncio
async def test_overflow_block_waits_for_room(tmp_path: Path) -> None:
    async with running(tmp_path, max_in_flight=2, overflow="block") as host:
        record = record_for(tmp_path)
        await until(lambda: host.bus.subscriber("sink.on_work").ready)
        record.gate.clear()
        await host.publish(Event(topic="work.item", payload={"n": 0}))
        await host.publish(Event(topic="work.item", payload={"n": 1}))
        blocked = asyncio.create_task(host.publish(Event(topic="work.item", payload={"n": 2})))
        await until(lambda: host.bus.subscriber("sink.on_work").counters["blocked"] == 1)
        assert not blocked.done()
        assert rows(tmp_path, "SELECT count(*) FROM events") == [(2,)]
        record.gate.set()
        await blocked
        await until(lambda: record.of("on_work") == [0, 1, 2])


@pytest.mark.asyncio
async def test_overflow_block_times_out(tmp_path: Path) -> None:
    async with running(tmp_path, max_in_flight=1, overflow="block", block_timeout=0.05) as host:
        record = record_for(tmp_path)
        await until(lambda: host.bus.subscriber("sink.on_work").ready)
        record.gate.clear()
        await host.publish(Event(topic="work.item", payload={"n": 0}))
        with pytest.raises(EventRejected, match="stayed full"):
            await host.publish(Event(topic="work.item", payload={"n": 1}))
        assert host.bus.subscriber("sink.on_work").counters["block_timeouts"] == 1
        record.gate.set()


@pytest.mark.asyncio
async def test_a_handler_publishing_to_its_own_full_topic_does_not_deadlock(tmp_path: Path) -> None:
    async with running(tmp_path, max_in_flight=1, overflow="block") as host:
        record = record_for(tmp_path)
        await host.publish(Event(topic="work.item", payload={"n": 1, "echo": True}))
        await until(lambda: record.of("on_work") == [1, 1])
        assert record.published_from_handler == [1]


@pytest.mark.asyncio
async def test_retention_by_count_and_age_counts_what_subscribers_lose(tmp_path: Path) -> None:
    async with running(tmp_path, retention_max_events=4) as host:
        record = record_for(tmp_path)
        await until(lambda: host.bus.subscriber("sink.on_work").ready)
        record.gate.clear()
        for n in range(10):
            await host.publish(Event(topic="work.item", payload={"n": n}))
        result = (await host.call("eventbus.retention")).data
        assert result["cut"] == 6 and result["events"] == 6
        assert rows(tmp_path, 'SELECT min("offset"), count(*) FROM events') == [(7, 4)]
        record.gate.set()
        await until(lambda: host.bus.subscriber("sink.on_work").acked == 10)
        # n=0 was in the handler when retention ran; 1-5 were deleted unread and counted.
        assert record.of("on_work") == [0, 6, 7, 8, 9]
        assert host.bus.subscriber("sink.on_work").counters["expired"] == 5
        aged = await host.bus.apply_retention(now=10**10)
        assert aged["events"] == 4 and rows(tmp_path, "SELECT count(*) FROM events") == [(0,)]


@pytest.mark.asyncio
async def test_bad_events_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    async with running(tmp_path) as host:
        with pytest.raises(EventRejected, match="cannot be stored as JSON"):
            await host.publish(Event(topic="work.item", payload={"when": object()}))
        with pytest.raises(EventRejected, match="invalid topic"):
            await host.publish(Event(topic="has space", payload={}))
        refused = await host.call("eventbus.publish", topic="", payload={})
        assert not refused.success
        stored = await host.call("eventbus.publish", topic="work.item", payload={"n": 1})
        assert stored.success and stored.data == {"offset": 1, "topic": "work.item"}


@pytest.mark.asyncio
async def test_a_second_host_on_the_same_home_keeps_the_in_memory_bus(tmp_path: Path) -> None:
    async with running(tmp_path) as first:
        async with running(tmp_path) as second:
            assert isinstance(first.bus, DurableEventBus)
            assert isinstance(second.bus, InMemoryEventBus)
            refused = await second.call("eventbus.publish", topic="work.item", payload={})
            assert not refused.success and "runs in process" in refused.error_message
            stats = await second.call("eventbus.stats")
            assert stats.success and stats.data["running"] is False
