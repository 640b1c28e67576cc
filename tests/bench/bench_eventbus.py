"""Benchmarks of the durable event bus (refactorbot-slice-eventbus); prints numbers (run by ``nox -s bench``).

One host in this process with the durable bus and a ``bench`` slice whose handlers subscribe:

1. Publish throughput with a fast subscriber (a handler that only counts): ``--events`` events
   from ``--publishers`` concurrent publishers, each ``publish`` returning once its event is
   committed (group commit). Also one publisher at a time, for the cost of a lone commit.
   Target (issue 11): >= 20,000 events/s published.
2. Memory with a slow subscriber (one event per ``--slow-ms`` ms): ``--long`` events published
   while it falls ever further behind; the process's RSS after each tenth. Target: flat (+-10 MB).

    python tests/bench/bench_eventbus.py [--events 100000] [--publishers 64] [--long 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from refactorbot import AtomicSlice, Event, hookimpl, subscribe
from refactorbot.testing import build_host


class BenchSlice(AtomicSlice):
    slice_id = "bench"
    uses_database = False
    received = 0
    slow_seconds = 0.0
    done: asyncio.Event | None = None
    expected = 0

    @subscribe("fast.*")
    async def on_fast(self, event: Event) -> None:
        cls = type(self)
        cls.received += 1
        if cls.received >= cls.expected and cls.done is not None:
            cls.done.set()

    @subscribe("slow.*")
    async def on_slow(self, event: Event) -> None:
        await asyncio.sleep(type(self).slow_seconds)


class BenchPlugin:
    @hookimpl
    def register_slices(self, register: Any) -> None:
        register(BenchSlice)


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


async def publish_many(host: Any, topic: str, count: int, publishers: int) -> float:
    """Publish ``count`` events from ``publishers`` tasks; return the seconds until the last one returned."""
    per = count // publishers
    began = time.perf_counter()

    async def one(worker: int) -> None:
        for i in range(per):
            await host.publish(Event(topic=topic, payload={"n": i, "worker": worker, "text": "x" * 64}))

    await asyncio.gather(*(one(w) for w in range(publishers)))
    return time.perf_counter() - began


async def throughput(home: Path, events: int, publishers: int, rounds: int) -> None:
    config = {
        "core": {"health_interval": 3600, "log_level": "WARNING"},
        "slices": {"eventbus": {"max_in_flight": 10_000_000}},
    }
    host = build_host(home, ["refactorbot_slice_eventbus.plugin", BenchPlugin()], config=config)
    await host.start()
    try:
        rates, deliveries = [], []
        for _ in range(rounds):
            BenchSlice.received, BenchSlice.expected = 0, (events // publishers) * publishers
            BenchSlice.done = asyncio.Event()
            began = time.perf_counter()
            seconds = await publish_many(host, "fast.tick", events, publishers)
            await asyncio.wait_for(BenchSlice.done.wait(), 600)
            delivered = time.perf_counter() - began
            rates.append(BenchSlice.expected / seconds)
            deliveries.append(BenchSlice.expected / delivered)
        print(
            f"publish, {publishers} publishers, {events} events x {rounds}: median {statistics.median(rates):,.0f}"
            f" events/s (runs: {', '.join(f'{r:,.0f}' for r in rates)}); published and delivered:"
            f" {statistics.median(deliveries):,.0f} events/s"
        )
        single = 5_000
        BenchSlice.received, BenchSlice.expected = 0, single
        BenchSlice.done = asyncio.Event()
        seconds = await publish_many(host, "fast.tick", single, 1)
        await asyncio.wait_for(BenchSlice.done.wait(), 600)
        print(f"publish, 1 publisher (one commit per event), {single} events: {single / seconds:,.0f} events/s")
        stats = (await host.call("eventbus.stats")).data
        print(f"batches: {stats['batches']} for {stats['published']} events")
    finally:
        await host.stop()


async def memory(home: Path, total: int, slow_ms: float, publishers: int) -> None:
    config = {
        "core": {"health_interval": 3600, "log_level": "WARNING"},
        "slices": {"eventbus": {"max_in_flight": 10_000_000, "retention_max_events": 10_000_000}},
    }
    BenchSlice.slow_seconds = slow_ms / 1000
    host = build_host(home, ["refactorbot_slice_eventbus.plugin", BenchPlugin()], config=config)
    await host.start()
    try:
        tenth = total // 10
        readings = []
        began = time.perf_counter()
        for part in range(10):
            await publish_many(host, "slow.tick", tenth, publishers)
            readings.append(rss_mb())
            sub = host.bus.subscriber("bench.on_slow")
            print(
                f"  {(part + 1) * tenth:>9,} published: RSS {readings[-1]:7.1f} MB,"
                f" slow subscriber {sub.pending:,} behind, {time.perf_counter() - began:6.1f} s"
            )
        print(
            f"RSS over {total:,} events with a slow subscriber: first tenth {readings[0]:.1f} MB, last {readings[-1]:.1f} MB,"
            f" spread after the first tenth {max(readings[1:]) - min(readings[1:]):.1f} MB"
        )
        size = (home / "slices" / "eventbus.db").stat().st_size / 2**20
        print(f"eventbus.db: {size:.0f} MB")
    finally:
        await host.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--publishers", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=1_000_000)
    parser.add_argument("--slow-ms", type=float, default=1.0)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(throughput(Path(tmp) / "fast", args.events, args.publishers, args.rounds))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(memory(Path(tmp) / "slow", args.long, args.slow_ms, args.publishers))


if __name__ == "__main__":
    main()
