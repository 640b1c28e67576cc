"""Core benchmarks: start-up of `plugins list`, import time, routing throughput, idle footprint.

Run with `nox -s bench` (or `python tests/bench/bench_core.py [--quick]` in an environment with the
core and the example slice installed). Prints a markdown table; docs/benchmarks.md records results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

DUMMY = textwrap.dedent(
    '''
    from pydantic import BaseModel
    from refactorbot import AtomicSlice, hookimpl, operation

    REFACTORBOT_API = 1


    class Params(BaseModel):
        text: str = ""


    class Dummy{i}(AtomicSlice):
        slice_id = "dummy{i}"

        @operation
        async def echo(self, params: Params) -> Params:
            """Echo."""
            return params


    @hookimpl
    def register_slices(register):
        register(Dummy{i})
    '''
)


def make_site(root: Path, count: int) -> Path:
    """Write ``count`` installed-looking plugin distributions into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        module = f"rb_bench_dummy{i}"
        (root / f"{module}.py").write_text(DUMMY.format(i=i))
        info = root / f"rb_bench_dummy{i}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: rb-bench-dummy{i}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[refactorbot]\ndummy{i} = {module}\n")
    return root


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment for timed subprocesses: bytecode caching on, no RB_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def wall(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Return wall times (ms) of ``runs`` runs of ``cmd`` after one warm-up run."""
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    return times


def bench_startup(runs: int) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        site = make_site(Path(tmp) / "site", 25)
        dummies = ",".join(f"rb-bench-dummy{i}" for i in range(25))
        env = clean_env(PYTHONPATH=str(site), RB_HOME=str(Path(tmp) / "home"))
        only = clean_env(PYTHONPATH=str(site), RB_HOME=str(Path(tmp) / "home"), RB_LOAD_PLUGINS=dummies)
        listed = subprocess.run(
            [sys.executable, "-m", "refactorbot", "plugins", "list", "--json"], env=env, capture_output=True, text=True
        )
        installed = listed.stdout.count('"name"')
        cmd = [sys.executable, "-m", "refactorbot", "plugins", "list"]
        floor = statistics.median(wall([sys.executable, "-c", "import pluggy"], env, runs))
        plist = statistics.median(wall(cmd, only, runs))
        full = statistics.median(wall(cmd, env, runs))
        imp = statistics.median(wall([sys.executable, "-c", "import refactorbot"], env, runs))
        bare = statistics.median(wall([sys.executable, "-c", "pass"], env, runs))
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import refactorbot"],
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stderr
    cumulative = [int(line.split("|")[1]) for line in out.splitlines() if line.rstrip().endswith("| refactorbot")]
    return [
        ("`refactorbot plugins list`, 25 plugins loaded (median wall)", f"{plist:.0f} ms", "≤ 300 ms"),
        (
            f"`refactorbot plugins list`, all {installed} installed plugins loaded",
            f"{full:.0f} ms",
            "(everything in this venv)",
        ),
        ("`python -c 'import pluggy'` (floor)", f"{floor:.0f} ms", "baseline"),
        ("`python -c 'import refactorbot'` (median wall)", f"{imp:.0f} ms", f"interpreter alone {bare:.0f} ms"),
        (
            "`import refactorbot` (-X importtime, cumulative)",
            f"{cumulative[0] / 1000:.1f} ms" if cumulative else "?",
            "≤ 100 ms",
        ),
    ]


async def bench_routing(seconds: float) -> list[tuple[str, str, str]]:
    from refactorbot import AtomicSlice, hookimpl, operation
    from refactorbot.database import SliceDatabase
    from refactorbot.metrics import percentile
    from refactorbot.testing import host_running

    class Noop(AtomicSlice):
        slice_id = "noop"
        uses_database = False

        @operation
        async def noop(self) -> None:
            """Do nothing."""

    class Plugin:
        REFACTORBOT_API = 1

        @hookimpl
        def register_slices(self, register):
            register(Noop)

        @hookimpl
        def before_operation(self, request):
            return None

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with host_running(Path(tmp), [Plugin()], config={"core": {"health_interval": 3600}}) as host:
            for _ in range(2000):  # warm-up
                await host.call("noop.noop")
            latencies = []
            end = time.perf_counter() + seconds
            count = 0
            start = time.perf_counter()
            while time.perf_counter() < end:
                t = time.perf_counter()
                await host.call("noop.noop")
                latencies.append((time.perf_counter() - t) * 1000)
                count += 1
            elapsed = time.perf_counter() - start
            latencies.sort()
            rows.append(
                (
                    "routed no-op, sequential (hooks, limits, SQLite op log)",
                    f"{count / elapsed:,.0f} ops/s",
                    "≥ 5,000 ops/s",
                )
            )
            rows.append(
                (
                    "routed no-op latency p50 / p99",
                    f"{percentile(latencies, 50):.3f} / {percentile(latencies, 99):.3f} ms",
                    "p99 ≤ 5 ms",
                )
            )
            start = time.perf_counter()
            total = 0
            while time.perf_counter() - start < seconds:
                await asyncio.gather(*(host.call("noop.noop") for _ in range(100)))
                total += 100
            await host.master_db()  # count the time to commit every log row
            rows.append(
                (
                    "routed no-op, 100 concurrent, log rows committed",
                    f"{total / (time.perf_counter() - start):,.0f} ops/s",
                    "",
                )
            )
            logged = await (await host.master_db()).scalar("SELECT count(*) FROM operation_log")
            rows.append(("operation-log rows written", f"{logged:,}", f"of {count + total + 2000:,} calls"))
        # Baseline: the same rows straight into SQLite through aiosqlite, 500 per transaction.
        db = SliceDatabase(Path(tmp) / "raw.db")
        await db.open()
        await db.execute(
            "CREATE TABLE t (ts REAL, rid TEXT, a TEXT, b TEXT, c TEXT, ok INTEGER, e TEXT, m TEXT, ms REAL)"
        )
        row = (time.time(), "0" * 32, "noop", "noop", None, 1, None, None, 0.01)
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            async with db.transaction() as conn:
                await conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [row] * 500)
            n += 500
        rows.append(
            (
                "raw aiosqlite insert loop, 500 rows a transaction (baseline)",
                f"{n / (time.perf_counter() - start):,.0f} rows/s",
                "baseline",
            )
        )
        await db.close()
    return rows


def bench_footprint(seconds: float) -> list[tuple[str, str, str]]:
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env(RB_HOME=tmp, RB_LOAD_PLUGINS="refactorbot-example-notes")
        proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stdout.readline()
            ps = psutil.Process(proc.pid)
            time.sleep(2)
            cpu_before = sum(ps.cpu_times()[:2])
            time.sleep(seconds)
            cpu = (sum(ps.cpu_times()[:2]) - cpu_before) / seconds * 100
            rss = ps.memory_info().rss / 1_048_576
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return [
        (f"`refactorbot serve` idle RSS ({line.strip()[:60]}…)", f"{rss:.1f} MB", "≤ 80 MB"),
        (f"`refactorbot serve` idle CPU over {seconds:.0f} s", f"{cpu:.2f} %", "~0 %"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    args = parser.parse_args()
    runs, seconds, idle = (5, 1.0, 5.0) if args.quick else (15, 3.0, 30.0)
    rows = bench_startup(runs) + asyncio.run(bench_routing(seconds)) + bench_footprint(idle)
    print(f"\n## Core ({sys.platform}, {os.cpu_count()} cores, Python {sys.version.split()[0]})\n")
    print("| measure | result | goal / baseline |\n|---|---|---|")
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")


if __name__ == "__main__":
    main()
