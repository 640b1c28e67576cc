"""Benchmark of a routed no-op through an isolated slice against in-process routing (``nox -s bench``).

One host with two identical no-op slices: ``inline`` in the host's process, ``isolated`` with
``isolation = "process"`` (its own worker, length-prefixed JSON over a socketpair).

1. One request at a time through ``host.route``: p50 and p99 of each, and the p50 added by the
   process hop.
2. Throughput with ``--concurrency`` requests in flight, each slice.
3. The time a crashed worker takes to serve again (``os._exit`` → first answer of the new worker),
   with ``restart_backoff`` at its minimum here (0.01 s).

    python tests/bench/bench_isolation.py [--requests 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLUGIN = '''
import os
from refactorbot import AtomicSlice, hookimpl, operation

class Inline(AtomicSlice):
    slice_id = "inline"
    uses_database = False

    @operation
    async def ping(self) -> None:
        """Do nothing."""

class Isolated(Inline):
    slice_id = "isolated"

    @operation
    async def pid(self) -> int:
        """Return the worker's pid."""
        return os.getpid()

    @operation
    async def die(self) -> None:
        """End the worker."""
        os._exit(1)

@hookimpl
def register_slices(register):
    register(Inline)
    register(Isolated)
'''


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def one_at_a_time(host, slice_id: str, n: int) -> list[float]:
    from refactorbot.models import SliceRequest

    for _ in range(200):  # warm up
        await host.route(SliceRequest(slice_id=slice_id, operation="ping"))
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = await host.route(SliceRequest(slice_id=slice_id, operation="ping"))
        times.append((time.perf_counter() - started) * 1000)
        assert response.success, response
    return times


async def throughput(host, slice_id: str, n: int, concurrency: int) -> float:
    from refactorbot.models import SliceRequest

    left = n

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await host.route(SliceRequest(slice_id=slice_id, operation="ping"))
            assert response.success, response

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def recovery(host) -> float:
    before = (await host.call("isolated.pid")).data
    started = time.perf_counter()
    await host.call("isolated.die")
    while True:
        answer = await host.call("isolated.pid")
        if answer.success and answer.data != before:
            return (time.perf_counter() - started) * 1000
        await asyncio.sleep(0.001)


async def main(requests: int, concurrency: int) -> None:
    from refactorbot.testing import host_running

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "rb_bench_isolation.py").write_text(textwrap.dedent(PLUGIN))
        sys.path.insert(0, str(site))  # the worker gets the host's sys.path
        plugin = importlib.import_module("rb_bench_isolation")
        config = {
            "core": {"health_interval": 3600, "operation_log": False, "restart_backoff": 0.01},
            "resources": {"max_concurrency": 1024},
            "slices": {"isolated": {"isolation": "process"}},
        }
        async with host_running(Path(tmp) / "home", [plugin], config=config) as host:
            inline = await one_at_a_time(host, "inline", requests)
            isolated = await one_at_a_time(host, "isolated", requests)
            print(f"routed no-op, one at a time ({requests} requests):")
            for name, times in (("in-process", inline), ("isolated", isolated)):
                print(
                    f"  {name:<11} p50 {pct(times, 50):.3f} ms  p99 {pct(times, 99):.3f} ms"
                    f"  mean {statistics.fmean(times):.3f} ms"
                )
            print(f"  added by the process hop: p50 {pct(isolated, 50) - pct(inline, 50):.3f} ms")
            print(f"throughput, {concurrency} in flight:")
            for name in ("inline", "isolated"):
                rate = await throughput(host, name, requests, concurrency)
                print(f"  {name:<11} {rate:,.0f} requests/s")
            times = [await recovery(host) for _ in range(5)]
            print(
                f"crash to first answer of the new worker (5 crashes): p50 {pct(times, 50):.1f} ms,"
                f" max {max(times):.1f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
