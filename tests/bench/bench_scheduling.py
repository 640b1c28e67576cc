"""Scheduling benchmark: 10,000 active jobs on one timer — lateness (p50/p99/max, never early), idle CPU.

Each job calls a trivial operation through the host every minute; the jobs' phases are spread evenly
over the minute (about 167 fires a second). Lateness is a run's start (after its claim in SQLite)
minus its scheduled time, read from the runs table. Idle CPU is this process's CPU time while
10,000 jobs wait for fires a day away: the loop sleeps on one timer, nothing polls.

Run with `nox -s bench -- scheduling` or `python tests/bench/bench_scheduling.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from refactorbot import AtomicSlice, operation
from refactorbot.testing import host_running, plugin_of

SCHEDULING = "refactorbot_slice_scheduling.plugin"
CONFIG: dict[str, Any] = {
    "core": {"health_interval": 3600, "timezone": "UTC", "operation_log": False},
    "slices": {
        "scheduling": {"heartbeat_every": 0, "alerts_every": 0, "diagnostics_every": 0, "max_concurrent_runs": 256}
    },
}


class Tick(AtomicSlice):
    """The jobs' target: does nothing."""

    slice_id = "tick"
    uses_database = False

    @operation
    async def tick(self) -> int:
        """Return 1."""
        return 1


TICK = plugin_of(slices=[Tick], name="tick")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def add_jobs(home: Path, count: int, every: str) -> float:
    started = time.perf_counter()
    async with host_running(home, [SCHEDULING, TICK], config=CONFIG) as host:
        target = {"type": "operation", "operation": "tick.tick"}
        for i in range(count):
            answer = await host.call("scheduling.add", name=f"job-{i}", every=every, target=target, keep_runs=5)
            assert answer.success, answer.error_message
    return time.perf_counter() - started


def spread(home: Path, period: float, lead: float) -> None:
    """Spread the jobs' phases evenly over ``period`` seconds, starting ``lead`` seconds from now."""
    base = time.time() + lead
    with sqlite3.connect(home / "slices" / "scheduling.db") as db:
        count = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        db.execute(
            "UPDATE jobs SET anchor = ? + (id % ?) * ? - ?, next_run_at = ? + (id % ?) * ?",
            (base, count, period / count, period, base, count, period / count),
        )


async def lateness(home: Path, seconds: float) -> dict[str, Any]:
    async with host_running(home, [SCHEDULING, TICK], config=CONFIG) as host:
        cpu0, wall0 = time.process_time(), time.time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        status = (await host.call("scheduling.status")).data
    with sqlite3.connect(home / "slices" / "scheduling.db") as db:
        rows = db.execute(
            "SELECT started_at - scheduled_for FROM runs WHERE status = 'succeeded' AND claimed_at >= ?", (wall0,)
        ).fetchall()
        failed = db.execute("SELECT count(*) FROM runs WHERE status != 'succeeded'").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    late = [r[0] * 1000 for r in rows]
    return {
        "runs": len(late),
        "not_succeeded": failed,
        "early": sum(1 for x in late if x < 0),
        "p50_ms": round(statistics.median(late), 2),
        "p99_ms": round(percentile(late, 99), 2),
        "max_ms": round(max(late), 2),
        "min_ms": round(min(late), 3),
        "cpu_share_busy": round(cpu / seconds, 3),
        "jobs": status["jobs"],
        "integrity": integrity,
    }


async def idle(home: Path, seconds: float) -> dict[str, Any]:
    spread(home, 86_400, 3600)  # every fire at least an hour away
    async with host_running(home, [SCHEDULING, TICK], config=CONFIG) as host:
        await asyncio.sleep(1)  # let start-up settle
        cpu0 = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        armed = (await host.call("scheduling.status")).data["armed_for"]
    return {
        "idle_cpu_s": round(cpu, 4),
        "idle_window_s": seconds,
        "idle_cpu_share": round(cpu / seconds, 5),
        "armed_in_s": round(armed - time.time()),
    }


async def main(quick: bool) -> None:
    count = 2_000 if quick else 10_000
    window = 20.0 if quick else 75.0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        added = await add_jobs(home, count, "60")
        spread(home, 60.0, 3.0)
        result = {"jobs": count, "add_s": round(added, 1), **await lateness(home, window)}
        result.update(await idle(home, 10.0 if quick else 30.0))
    print(json.dumps(result, indent=2))
    print()
    print("| jobs | runs | early | lateness p50 | p99 | max | CPU while firing | idle CPU |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {count} | {result['runs']} | {result['early']} | {result['p50_ms']} ms | {result['p99_ms']} ms |"
        f" {result['max_ms']} ms | {result['cpu_share_busy']:.0%} | {result['idle_cpu_s']} s in {result['idle_window_s']:g} s |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs for 20 s")
    asyncio.run(main(parser.parse_args().quick))
