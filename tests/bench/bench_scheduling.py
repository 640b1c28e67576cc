"""Scheduling benchmark: 10,000 active jobs on one timer — lateness (p50/p99/max, never early), idle CPU.

Each job calls a trivial operation through the host every minute; the jobs' phases are spread evenly
over the minute (about 167 fires a second). Lateness is a run's start (after its claim in SQLite)
minus its scheduled time, read from the runs table, and split in two: scheduled time to claim (the
timer waking and the loop getting to it) and claim to start (the claim's transaction). Idle CPU is
this process's CPU time while 10,000 jobs wait for fires a day away: the loop sleeps on one timer,
nothing polls.

A loop-lag probe separates stalls of the process from the scheduler's own cost: a task asks to
wake every 10 ms and records how late it wakes, and how much CPU the main thread used meanwhile.
A stall with the main thread on the CPU is work in this process (ours, or the garbage collector,
whose pauses are timed through ``gc.callbacks``); a stall without is the process waiting for a CPU
(the machine is loaded) or for the GIL. The machine's load average is printed with the results.

Cron arithmetic, on its own (``--cron`` runs only this part): the CPU time of one next-fire
computation of a 5-field and a 6-field cron in Europe/Berlin, at an ordinary instant and in the
first pass of the fall-back hour (the one case that looks back), and of working out a day's
missed fires of a 6-field cron after a standby (``count_cron`` plus the last 1 or 10 fires, what
the misfire policies use).

Run with `nox -s bench -- scheduling` or `python tests/bench/bench_scheduling.py [--quick]`
(`--freeze` calls `gc.freeze()` once the host has started, to compare collector pauses).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
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
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


class LagProbe:
    """Wakes every ``period`` seconds; records each late wake-up (ms) with the main thread's CPU meanwhile."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.ticks: list[tuple[float, float, float]] = []  # (wall time woken, lag ms, main-thread CPU ms)
        self.gc_pauses: list[tuple[int, float, float]] = []  # (generation, wall time ended, ms)
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.time(), (time.perf_counter() - self._gc_started) * 1000))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                asked, cpu = loop.time(), time.thread_time()
                await asyncio.sleep(self.period)
                lag = (loop.time() - asked - self.period) * 1000
                self.ticks.append((time.time(), lag, (time.thread_time() - cpu) * 1000))
        finally:
            gc.callbacks.remove(self._on_gc)

    def summary(self) -> dict[str, Any]:
        lags = [lag for _, lag, _ in self.ticks]
        stalls = [(lag, cpu) for _, lag, cpu in self.ticks if lag >= 50]
        busy = [s for s in stalls if s[1] >= 0.5 * (s[0] + self.period * 1000)]
        gen2 = [ms for gen, _, ms in self.gc_pauses if gen == 2]
        return {
            "loop_lag_p50_ms": round(percentile(lags, 50), 2),
            "loop_lag_p99_ms": round(percentile(lags, 99), 2),
            "loop_lag_max_ms": round(max(lags, default=0.0), 2),
            "stalls_50ms": len(stalls),
            "stalls_50ms_on_cpu": len(busy),
            "stalls_50ms_off_cpu": len(stalls) - len(busy),
            "gc_collections": len(self.gc_pauses),
            "gc_max_ms": round(max((ms for _, _, ms in self.gc_pauses), default=0.0), 2),
            "gc_gen2": len(gen2),
            "gc_gen2_max_ms": round(max(gen2, default=0.0), 2),
        }

    def stalled_at(self, start: float, end: float) -> bool:
        """Return whether the loop stalled 20 ms or more at some point between two wall times."""
        return any(lag >= 20 and woke - lag / 1000 <= end and woke >= start for woke, lag, _ in self.ticks)


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


async def lateness(home: Path, seconds: float, freeze: bool) -> dict[str, Any]:
    async with host_running(home, [SCHEDULING, TICK], config=CONFIG) as host:
        if freeze:
            gc.freeze()
        probe = LagProbe()
        probing = asyncio.get_running_loop().create_task(probe.run())
        cpu0, wall0 = time.process_time(), time.time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        probing.cancel()
        status = (await host.call("scheduling.status")).data
    with sqlite3.connect(home / "slices" / "scheduling.db") as db:
        rows = db.execute(
            "SELECT scheduled_for, claimed_at, started_at FROM runs WHERE status = 'succeeded' AND claimed_at >= ?",
            (wall0,),
        ).fetchall()
        # Runs still in progress when the host stopped are recorded interrupted, as they should be.
        failed = dict(db.execute("SELECT status, count(*) FROM runs WHERE status != 'succeeded' GROUP BY status"))
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    late = [(started - scheduled) * 1000 for scheduled, _, started in rows]
    to_claim = [(claimed - scheduled) * 1000 for scheduled, claimed, _ in rows]
    to_start = [(started - claimed) * 1000 for _, claimed, started in rows]
    over = [(s, st) for s, _, st in rows if (st - s) * 1000 > 50]
    return {
        "runs": len(late),
        "not_succeeded": failed,
        "early": sum(1 for x in late if x < 0),
        "p50_ms": round(statistics.median(late), 2),
        "p99_ms": round(percentile(late, 99), 2),
        "max_ms": round(max(late), 2),
        "min_ms": round(min(late), 3),
        "to_claim_p99_ms": round(percentile(to_claim, 99), 2),
        "claim_to_start_p99_ms": round(percentile(to_start, 99), 2),
        "runs_over_50ms": len(over),
        "runs_over_50ms_during_a_stall": sum(1 for s, st in over if probe.stalled_at(s, st)),
        "cpu_share_busy": round(cpu / seconds, 3),
        **probe.summary(),
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


def cpu_ms(work: Any, repeat: int) -> float:
    """Return the CPU time of one call of ``work`` (ms), the best of three runs of ``repeat`` calls."""
    work()  # imports and caches
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(repeat):
            work()
        best = min(best, (time.process_time() - started) / repeat)
    return best * 1000


def cron_costs() -> dict[str, Any]:
    from refactorbot_slice_scheduling.schedules import count_cron, last_cron, next_cron

    tz = "Europe/Berlin"
    ordinary = datetime(2024, 6, 12, 10, 17, 31, 250_000, tzinfo=UTC)
    fall_back = datetime(2024, 10, 27, 0, 40, 31, 250_000, tzinfo=UTC)  # 02:40:31 CEST, first pass
    rows = []
    for expr in ("*/15 * * * *", "* * * * *", "0 9 * * 1-5", "* * * * * *", "*/10 * * * * *"):
        rows.append(
            {
                "cron": expr,
                "next_fire_ms": round(cpu_ms(lambda e=expr: next_cron(e, tz, ordinary), 200), 3),
                "next_fire_fall_back_ms": round(cpu_ms(lambda e=expr: next_cron(e, tz, fall_back), 200), 3),
            }
        )
    first = datetime(2024, 10, 26, 12, 0, tzinfo=UTC)  # a day missed, across the fall-back night
    until = first + timedelta(days=1, minutes=30)
    missed = {
        "cron": "* * * * * *",
        "missed": count_cron("* * * * * *", tz, first, until) + 1,
        "count_ms": round(cpu_ms(lambda: count_cron("* * * * * *", tz, first, until), 50), 3),
        "last_1_ms": round(cpu_ms(lambda: last_cron("* * * * * *", tz, first, until, 1), 50), 3),
        "last_10_ms": round(cpu_ms(lambda: last_cron("* * * * * *", tz, first, until, 10), 50), 3),
    }
    return {"next_fire": rows, "missed_day": missed}


def print_cron(result: dict[str, Any]) -> None:
    print("| cron | next fire (CPU) | in the first pass of fall-back |")
    print("|---|---|---|")
    for row in result["next_fire"]:
        print(f"| `{row['cron']}` | {row['next_fire_ms']} ms | {row['next_fire_fall_back_ms']} ms |")
    m = result["missed_day"]
    print(
        f"\n{m['missed']} fires of `{m['cron']}` missed in a day: counted in {m['count_ms']} ms,"
        f" last 1 in {m['last_1_ms']} ms, last 10 in {m['last_10_ms']} ms"
    )


async def main(quick: bool, freeze: bool) -> None:
    load = os.getloadavg()
    count = 2_000 if quick else 10_000
    window = 20.0 if quick else 75.0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        added = await add_jobs(home, count, "60")
        spread(home, 60.0, 3.0)
        result = {"jobs": count, "add_s": round(added, 1), **await lateness(home, window, freeze)}
        result.update(await idle(home, 10.0 if quick else 30.0))
    result["load_average"] = [round(x, 2) for x in (*load, *os.getloadavg())]  # before 1/5/15 min, after 1/5/15
    result["gc_freeze"] = freeze
    print(json.dumps(result, indent=2))
    print()
    print(
        "| jobs | runs | early | lateness p50 | p99 | max | loop lag p99 / max | CPU while firing | idle CPU | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {count} | {result['runs']} | {result['early']} | {result['p50_ms']} ms | {result['p99_ms']} ms |"
        f" {result['max_ms']} ms | {result['loop_lag_p99_ms']} / {result['loop_lag_max_ms']} ms |"
        f" {result['cpu_share_busy']:.0%} | {result['idle_cpu_s']} s in {result['idle_window_s']:g} s |"
        f" {result['load_average'][0]} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs for 20 s")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() once the host has started")
    parser.add_argument("--cron", action="store_true", help="only the cron arithmetic")
    arguments = parser.parse_args()
    costs = cron_costs()
    print(json.dumps(costs, indent=2))
    print_cron(costs)
    print()
    if not arguments.cron:
        asyncio.run(main(arguments.quick, arguments.freeze))
