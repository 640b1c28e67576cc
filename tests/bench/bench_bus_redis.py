"""Benchmark of the event bus on Redis Streams (refactorbot-bus-redis); prints numbers (``nox -s bench``).

A redis-server on loopback (append-only file, ``appendfsync everysec``: Redis's default
durability trade-off) and, in this process, buses as hosts would hold them:

1. Publish: ``--events`` events from ``--publishers`` concurrent publishers, each ``publish``
   returning once Redis stored the entry; and one publisher alone (one round trip per event).
2. Deliver: the same events to one subscriber whose handler only counts, timed from the first
   publish to the last delivery (publishing and delivering at once).
3. Two hosts: two buses share one subscriber group; delivered/s to the group and the split.

    python tests/bench/bench_bus_redis.py [--events 20000] [--publishers 32]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from refactorbot import Event
from refactorbot.events import subscribe
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.config import RedisConfig
from refactorbot_bus_redis.testing import RedisServer


class Counter:
    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.done = asyncio.Event()

    def handler(self, name: str) -> Any:
        @subscribe("bench.*", name=name)
        async def handle(event: Event) -> None:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()

        return handle


def config(url: str, namespace: str) -> RedisConfig:
    return RedisConfig(url=url, namespace=namespace, max_len=10_000, batch=200)


async def publish_many(bus: RedisEventBus, count: int, publishers: int) -> float:
    per = count // publishers
    began = time.perf_counter()

    async def one(worker: int) -> None:
        for i in range(per):
            await bus.publish(Event(topic="bench.tick", payload={"n": i, "worker": worker, "text": "x" * 64}))

    await asyncio.gather(*(one(w) for w in range(publishers)))
    return time.perf_counter() - began


async def run(url: str, events: int, publishers: int) -> None:
    namespace = f"bench{secrets.token_hex(3)}"
    bus = RedisEventBus(config(url, namespace))
    await bus.start()
    try:
        seconds = await publish_many(bus, events, publishers)
        print(f"publish, {publishers} publishers: {events / seconds:,.0f} events/s ({events} events, {seconds:.2f}s)")
        alone = min(events, 5000)
        seconds = await publish_many(bus, alone, 1)
        print(f"publish, 1 publisher:  {alone / seconds:,.0f} events/s ({seconds / alone * 1e6:.0f} µs per publish)")

        counter = Counter(events)
        bus.subscribe("bench.*", counter.handler("bench.counter"))
        await bus.subscribers()[0].group_ready.wait()
        began = time.perf_counter()
        await publish_many(bus, events, publishers)
        published = time.perf_counter() - began
        await counter.done.wait()
        delivered = time.perf_counter() - began
        print(
            f"publish + deliver to 1 subscriber: {events / delivered:,.0f} events/s delivered"
            f" (publishing took {published:.2f}s, last delivery at {delivered:.2f}s)"
        )
    finally:
        await bus.stop()

    namespace = f"bench{secrets.token_hex(3)}"
    one, two = RedisEventBus(config(url, namespace)), RedisEventBus(config(url, namespace))
    await one.start()
    await two.start()
    try:
        counter = Counter(events)
        one.subscribe("bench.*", counter.handler("bench.shared"))
        two.subscribe("bench.*", counter.handler("bench.shared"))
        await one.subscribers()[0].group_ready.wait()
        await two.subscribers()[0].group_ready.wait()
        began = time.perf_counter()
        await asyncio.gather(
            publish_many(one, events // 2, publishers // 2), publish_many(two, events // 2, publishers // 2)
        )
        await counter.done.wait()
        seconds = time.perf_counter() - began
        split = [b.subscribers()[0].counters["delivered"] for b in (one, two)]
        print(f"two hosts, one group: {events / seconds:,.0f} events/s delivered (split {split[0]} / {split[1]})")
    finally:
        await one.stop()
        await two.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--publishers", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder), appendfsync="everysec")
        server.start()
        try:
            asyncio.run(run(server.url, args.events, args.publishers))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
