"""Traces across the Redis bus: the traceparent travels in the stream entry (``tp``), and each
delivery is a ``process <topic>`` span, child of the ``publish <topic>`` span."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import raw_client, until
from refactorbot import AtomicSlice, Event, subscribe, tracing
from refactorbot.testing import build_host, plugin_of
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.config import Keys
from sink_plugin import SINKS, record_for

REDIS = "refactorbot_bus_redis.plugin"
OTEL = "refactorbot_otel.plugin"


class Flaky(AtomicSlice):
    """Fails the first delivery of each event, takes the second."""

    slice_id = "flaky"
    uses_database = False
    failed: set[int] = set()  # noqa: RUF012 - shared by the test and the slice on purpose
    taken: list[int] = []  # noqa: RUF012

    @subscribe("flaky.*", name="flaky.taker")
    async def take(self, event: Event) -> None:
        n = int(event.payload["n"])
        if n not in Flaky.failed:
            Flaky.failed.add(n)
            raise RuntimeError(f"not yet: {n}")
        Flaky.taken.append(n)


async def spans_of(host: Any, root: str) -> list[dict[str, Any]]:
    listed = await host.call("traces.recent", name_contains=root)
    assert listed.success, listed.error_message
    assert listed.data["traces"], f"no trace named {root}"
    detail = await host.call("traces.trace", trace_id=listed.data["traces"][0]["trace_id"])
    assert detail.success, detail.error_message
    spans: list[dict[str, Any]] = detail.data["spans"]
    return spans


@pytest.mark.asyncio
async def test_deliveries_and_retries_continue_the_publishers_trace(redis_server, namespace, tmp_path: Path) -> None:
    home = tmp_path / "home"
    SINKS.clear()
    Flaky.failed, Flaky.taken = set(), []
    env = {"RB_REDIS_URL": redis_server.url, "RB_REDIS_NAMESPACE": namespace, "RB_REDIS_RETRY_BACKOFF": "0.01"}
    plugins = [REDIS, OTEL, "sink_plugin", plugin_of(slices=[Flaky], name="flaky")]
    host = build_host(home, plugins, config={"core": {"health_interval": 3600}}, env=env)
    await host.start()
    try:
        assert type(host.bus) is RedisEventBus
        record = record_for(home)
        await host.publish(Event(topic="work.item", payload={"n": 1}))
        await host.publish(Event(topic="flaky.item", payload={"n": 2}))
        await until(lambda: len(record.seen) == 3 and Flaky.taken == [2])
        # every delivery acknowledged, so its span ended
        await until(lambda: sum(sub.counters["delivered"] for sub in host.bus.subscribers()) == 4)
        async with raw_client(redis_server.url) as client:
            entries = await client.xrange(Keys(namespace).events)
        carried = [fields[b"tp"].decode() for _, fields in entries]
        assert len(carried) == 2 and all(tracing.parse_traceparent(tp) is not None for tp in carried)

        work = await spans_of(host, "publish work.item")
        publish = next(s for s in work if s["name"] == "publish work.item")
        assert carried[0].split("-")[2] == publish["span_id"]
        deliveries = {s["attributes"]["messaging.consumer.group.name"]: s for s in work if s["kind"] == "consumer"}
        assert set(deliveries) == {"sink.on_work", "sink.everything"}
        assert all(
            s["parent_id"] == publish["span_id"] and s["name"] == "process work.item" for s in deliveries.values()
        )
        assert deliveries["sink.on_work"]["attributes"]["refactorbot.event.offset"] == 1

        flaky = await spans_of(host, "publish flaky.item")
        publish = next(s for s in flaky if s["name"] == "publish flaky.item")
        taker = sorted(
            (s for s in flaky if s["attributes"].get("messaging.consumer.group.name") == "flaky.taker"),
            key=lambda s: s["attributes"]["refactorbot.delivery.attempt"],
        )
        assert [s["attributes"]["refactorbot.delivery.attempt"] for s in taker] == [1, 2]
        assert all(s["parent_id"] == publish["span_id"] for s in taker)
        assert taker[0]["status"] == "error" and "not yet: 2" in taker[0]["status_message"]
        assert taker[1]["status"] == "unset"
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_without_tracing_or_with_an_invalid_traceparent_nothing_is_carried(redis_server, namespace) -> None:
    from conftest import running_bus

    got: list[str | None] = []

    @subscribe("*", name="keeper")
    async def keep(event: Event) -> None:
        got.append(event.traceparent)

    async with running_bus(redis_server.url, namespace) as bus:
        bus.subscribe("*", keep)
        await bus.publish(Event(topic="a.b", payload={}, traceparent="00-not-a-traceparent-01"))
        valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await bus.publish(Event(topic="a.b", payload={}, traceparent=valid))
        await until(lambda: len(got) == 2)
        assert got == [None, valid]
        async with raw_client(redis_server.url) as client:
            entries = await client.xrange(Keys(namespace).events)
        assert [b"tp" in fields for _, fields in entries] == [False, True]
