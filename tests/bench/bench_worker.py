"""Benchmark of slice requests through a Redis worker against in-process routing; prints numbers (``nox -s bench``).

A redis-server on loopback (``appendfsync everysec``), one host running a no-op slice, and:

1. In process: ``host.route`` of the no-op, one request at a time (p50, p99).
2. Through Redis: the same request sent by a ``RequestClient`` to a ``SliceWorker`` serving
   that host (both in this process, so the difference is the Redis hop and its scripts), one at
   a time (p50, p99, and the p50 added over in-process routing).
3. Throughput through Redis with ``--concurrency`` requests in flight.
4. Scale: an orchestrator host (``[slices.sleep20] location = "redis"``) and ``refactorbot worker``
   processes, 1 then 3, each running an operation of 20 ms of I/O at most 4 at once
   (``[slices.sleep20.resources] max_concurrency = 4``). Bursts of ``--burst`` requests sent at
   once, the two deployments taking turns ``--rounds`` times; the best burst of each, in
   requests/s, the ratio, and the CPU each process spent per request. ``--appendfsync always``
   runs this part on a Redis that syncs its append-only file before answering each write.

    python tests/bench/bench_worker.py [--requests 2000] [--concurrency 32] [--burst 600] [--rounds 3]
                                       [--appendfsync everysec|always]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from refactorbot import AtomicSlice, operation
from refactorbot.models import SliceRequest
from refactorbot.testing import build_host, host_running, plugin_of
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


SLEEPER = """
import asyncio
from typing import Any
from refactorbot import AtomicSlice, hookimpl, operation

class Sleep20(AtomicSlice):
    slice_id = "sleep20"
    uses_database = False

    @operation
    async def run(self) -> None:
        \"\"\"Wait 20 ms, as an operation waiting on I/O does.\"\"\"
        await asyncio.sleep(0.02)

@hookimpl
def register_slices(register: Any) -> None:
    register(Sleep20)
"""
#: Runs of the operation at once on one worker.
LIMIT = 4


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Deployment:
    """``count`` worker processes serving ``sleep20`` in their own namespace, and an orchestrator host."""

    def __init__(self, root: Path, site: Path, url: str, count: int) -> None:
        self.namespace = f"s{count}{secrets.token_hex(3)}"
        self.workers: list[subprocess.Popen[str]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RB_", "REFACTORBOT_"))}
        env.update(
            RB_LOAD_PLUGINS="refactorbot-bus-redis,rbsleep",
            RB_REDIS_NAMESPACE=self.namespace,
            PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        )
        for number in range(count):
            home = root / f"{self.namespace}-w{number}"
            home.mkdir(parents=True)
            (home / "refactorbot.toml").write_text(f"[slices.sleep20.resources]\nmax_concurrency = {LIMIT}\n")
            argv = [sys.executable, "-m", "refactorbot", "--home", str(home), "worker", "--slices", "sleep20"]
            worker = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments, no shell
                [*argv, "--redis", url], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            assert worker.stdout is not None
            if not worker.stdout.readline().startswith("refactorbot worker serving"):
                raise RuntimeError(f"worker {number} did not start")
            self.workers.append(worker)
        import rbsleep  # type: ignore[import-not-found]
        import refactorbot_bus_redis.plugin as redis_plugin

        config = {"slices": {"sleep20": {"location": "redis", "resources": {"max_concurrency": 10_000}}}}
        self.host = build_host(
            root / f"{self.namespace}-orchestrator",
            [redis_plugin, rbsleep],
            config=config,
            env={"RB_REDIS_URL": url, "RB_REDIS_NAMESPACE": self.namespace},
            serving=False,
        )

    async def burst(self, size: int, redis_pid: int) -> tuple[float, dict[str, float]]:
        pids = {"redis": redis_pid, **{f"worker{i}": w.pid for i, w in enumerate(self.workers)}}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own = time.process_time()
        began = time.perf_counter()
        answers = await asyncio.gather(
            *(self.host.route(SliceRequest(slice_id="sleep20", operation="run")) for _ in range(size))
        )
        rate = size / (time.perf_counter() - began)
        assert all(a.success for a in answers), [a.error_message for a in answers if not a.success][:3]
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        cpu["orchestrator"] = time.process_time() - own
        return rate, {name: 1000 * seconds / size for name, seconds in cpu.items()}

    def stop(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=60)


async def scale(burst: int, rounds: int, appendfsync: str = "everysec") -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
        RedisServer(Path(folder) / "redis", appendfsync=appendfsync) as server,
    ):
        root = Path(folder)
        site = root / "site"
        (site / "rbsleep-0.1.0.dist-info").mkdir(parents=True)
        (site / "rbsleep.py").write_text(SLEEPER)
        (site / "rbsleep-0.1.0.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: rbsleep\nVersion: 0.1.0\n"
        )
        (site / "rbsleep-0.1.0.dist-info" / "entry_points.txt").write_text("[refactorbot]\nsleep20 = rbsleep\n")
        sys.path.insert(0, str(site))
        assert server.process is not None
        deployments = {count: Deployment(root, site, server.url, count) for count in (1, 3)}
        best: dict[int, tuple[float, dict[str, float]]] = {}
        try:
            for deployment in deployments.values():
                await deployment.host.start()
                await deployment.burst(40, server.process.pid)  # warm up
            for _ in range(rounds):
                for count, deployment in deployments.items():
                    result = await deployment.burst(burst, server.process.pid)
                    if count not in best or result[0] > best[count][0]:
                        best[count] = result
        finally:
            for deployment in deployments.values():
                await deployment.host.stop()
                deployment.stop()
    for count, (rate, cpu) in best.items():
        spent = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
        print(
            f"{count} worker(s), {LIMIT} at once each, 20 ms operation: {rate:,.0f} requests/s (CPU ms per request: {spent})"
        )
    print(f"3 workers / 1 worker: {best[3][0] / best[1][0]:.2f}x (goal >= 2.5x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--appendfsync",
        choices=["everysec", "always"],
        default="everysec",
        help="Redis's fsync policy in the scale part",
    )
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
    asyncio.run(scale(args.burst, args.rounds, args.appendfsync))
