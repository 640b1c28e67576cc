"""Benchmark of slice requests through a Redis worker against in-process routing; prints numbers (``nox -s bench``).

A redis-server on loopback (``appendfsync everysec``), one host running a no-op slice, and:

1. In process: ``host.route`` of the no-op, one request at a time (p50, p99).
2. Through Redis: the same request sent by a ``RequestClient`` to a ``SliceWorker`` serving
   that host (both in this process, so the difference is the Redis hop and its scripts), one at
   a time (p50, p99, and the p50 added over in-process routing).
3. Throughput through Redis with ``--concurrency`` requests in flight.

    python tests/bench/bench_worker.py [--requests 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from refactorbot import AtomicSlice, operation
from refactorbot.models import SliceRequest
from refactorbot.testing import host_running, plugin_of
from refactorbot_bus_redis.config import RedisConfig
from refactorbot_bus_redis.testing import RedisServer
from refactorbot_bus_redis.transport import RequestClient, SliceWorker


class NoopSlice(AtomicSlice):
    slice_id = "noop"
    uses_database = False

    @operation
    async def ping(self) -> None:
        """Do nothing."""


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def timed(run: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        answer = await run(SliceRequest(slice_id="noop", operation="ping"))
        samples.append((time.perf_counter() - began) * 1000)
        assert answer.success, answer.error_message
    return samples


async def main(requests: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder) / "redis", appendfsync="everysec") as server:
        config = RedisConfig(url=server.url, namespace=f"b{secrets.token_hex(3)}")
        async with host_running(Path(folder) / "home", [plugin_of(slices=[NoopSlice], name="noop")]) as host:
            worker = SliceWorker(config, ["noop"], host.route, stopping=lambda: host.stopping)
            client = RequestClient(config, timeout=30)
            await worker.start()
            await client.start()
            try:
                await timed(host.route, 200)  # warm up both paths
                await timed(client.execute, 200)
                local = await timed(host.route, requests)
                remote = await timed(client.execute, requests)
                began = time.perf_counter()
                per = requests // concurrency

                async def sender() -> None:
                    for _ in range(per):
                        assert (await client.execute(SliceRequest(slice_id="noop", operation="ping"))).success

                await asyncio.gather(*(sender() for _ in range(concurrency)))
                rate = per * concurrency / (time.perf_counter() - began)
            finally:
                await client.stop()
                await worker.stop()
    local_p50, local_p99 = quantiles(local)
    remote_p50, remote_p99 = quantiles(remote)
    print(f"in-process route   p50 {local_p50:.3f} ms  p99 {local_p99:.3f} ms")
    print(f"through Redis      p50 {remote_p50:.3f} ms  p99 {remote_p99:.3f} ms")
    print(f"added per hop      p50 {remote_p50 - local_p50:.3f} ms (goal <= 1 ms)")
    print(f"throughput through Redis, {concurrency} in flight: {rate:,.0f} requests/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
