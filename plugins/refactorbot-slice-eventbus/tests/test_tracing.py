"""Traces across the durable bus: the publisher's traceparent is stored with the event, and each
delivery attempt is a ``process <topic>`` span, child of the ``publish <topic>`` span."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import EVENTBUS, SINK, rows, running, until
from refactorbot import tracing
from refactorbot.events import Event
from sink_plugin import SINKS, record_for

OTEL = "refactorbot_otel.plugin"


@pytest.fixture(autouse=True)
def clean_sinks() -> None:
    SINKS.clear()


async def spans_of(host: Any, root: str) -> list[dict[str, Any]]:
    listed = await host.call("traces.recent", name_contains=root)
    assert listed.success, listed.error_message
    assert listed.data["traces"], f"no trace named {root}"
    detail = await host.call("traces.trace", trace_id=listed.data["traces"][0]["trace_id"])
    assert detail.success, detail.error_message
    spans: list[dict[str, Any]] = detail.data["spans"]
    return spans


@pytest.mark.asyncio
async def test_each_attempt_is_a_span_of_the_publishers_trace(tmp_path: Path) -> None:
    async with running(tmp_path, [EVENTBUS, SINK, OTEL], max_attempts=3) as host:
        record = record_for(tmp_path)
        record.fail = {7: 1}  # the first attempt fails, the second succeeds
        await host.publish(Event(topic="work.item", payload={"n": 7}))
        await until(lambda: record.of("on_work") == [7])
        await until(lambda: host.bus.subscriber("sink.on_work").acked == 1)
        ((stored,),) = rows(tmp_path, "SELECT traceparent FROM events")

        spans = await spans_of(host, "publish work.item")
        publish = next(s for s in spans if s["name"] == "publish work.item")
        assert stored is not None and tracing.parse_traceparent(stored) is not None
        assert stored.split("-")[2] == publish["span_id"]
        attempts = [s for s in spans if s["name"] == "process work.item"]
        assert len(attempts) == 2
        assert all(s["parent_id"] == publish["span_id"] and s["kind"] == "consumer" for s in attempts)
        first, second = sorted(attempts, key=lambda s: s["attributes"]["refactorbot.delivery.attempt"])
        assert first["status"] == "error" and first["attributes"]["error.type"] == "RuntimeError"
        assert "refusing n=7" in first["status_message"]
        assert second["status"] == "unset"
        for span in attempts:
            assert span["attributes"]["messaging.consumer.group.name"] == "sink.on_work"
            assert span["attributes"]["refactorbot.event.offset"] == 1
            assert span["attributes"]["refactorbot.handler"] == "SinkSlice.on_work"


@pytest.mark.asyncio
async def test_a_stored_event_continues_its_trace_after_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path, [EVENTBUS, SINK, OTEL]) as host:
        record = record_for(tmp_path)
        record.gate.clear()  # the subscriber holds the event: it is stored, not acknowledged
        await host.publish(Event(topic="work.item", payload={"n": 1}))
        await until(lambda: host.bus.subscriber("sink.on_work").pending == 1)
        publish = next(s for s in await spans_of(host, "publish work.item") if s["name"] == "publish work.item")
    SINKS.clear()
    async with running(tmp_path, [EVENTBUS, SINK, OTEL]) as host:
        record = record_for(tmp_path)
        await until(lambda: record.of("on_work") == [1])
        await until(lambda: host.bus.subscriber("sink.on_work").acked == 1)
        spans = await spans_of(host, "publish work.item")
        redelivered = [s for s in spans if s["name"] == "process work.item" and s["status"] == "unset"]
        assert redelivered and all(s["parent_id"] == publish["span_id"] for s in redelivered), spans


@pytest.mark.asyncio
async def test_an_invalid_traceparent_is_not_stored(tmp_path: Path) -> None:
    async with running(tmp_path) as host:
        record = record_for(tmp_path)
        await host.bus.publish(Event(topic="work.item", payload={"n": 2}, traceparent="00-nonsense"))
        await host.bus.publish(Event(topic="work.item", payload={"n": 3}))
        await until(lambda: record.of("on_work") == [2, 3])
        assert rows(tmp_path, 'SELECT traceparent FROM events ORDER BY "offset"') == [(None,), (None,)]
