"""Benchmarks of retention: pruning a million rows while the server answers; prints a markdown table.

    python tests/bench/bench_retention.py

- ``master.db`` holds 1,000,000 unified-log rows and ``[core] log_max_rows = 100000``: the host's
  retention pass at start deletes 900,000 of them in batches of ``retention_batch`` while a client
  calls ``GET /slices`` over one keep-alive connection; p50 / p99 / max during the pass, and the
  same once it is over (target: p99 during the pass <= 50 ms);
- ``SliceDatabase.prune`` cutting a slice table (the tool execution log's shape) from 1,000,000 to
  100,000 rows, and the slowest query another task ran on the same database meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROWS = 1_000_000
KEEP = 100_000
BATCH = 5_000


def _fill_logs(path: Path) -> None:
    """Create ``master.db`` with the host's schema and ``ROWS`` recent log rows."""
    from refactorbot.state import GlobalState

    async def create() -> None:
        state = GlobalState(path)
        await state.open()
        await state.close()

    asyncio.run(create())
    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, 20, 'INFO', 'bench', 'l', ?)",
            ((now - (ROWS - i) * 0.01, f"row {i}") for i in range(ROWS)),
        )
    conn.close()


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _row(name: str, samples: list[float], target: str) -> tuple[str, str, str]:
    p50, p99, top = statistics.median(samples), _pct(samples, 0.99), max(samples)
    return (
        f"{name} ({len(samples)} requests)",
        f"{p50 * 1000:.2f} / {p99 * 1000:.2f} / {top * 1000:.1f} ms",
        target,
    )


def bench_master_logs(results: list[tuple[str, str, str]]) -> None:
    """Time ``GET /slices`` while the host prunes 900,000 log rows at start, and after."""
    import bench_api
    import httpx
    from refactorbot_api.testing import running_server

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        _fill_logs(home / "master.db")
        results.append((f"setup: {ROWS:,} log rows in master.db", f"{time.perf_counter() - started:.1f} s", "setup"))
        config = {"core": {"log_max_rows": KEEP, "retention_batch": BATCH, "retention_interval": 3600}}
        reader = sqlite3.connect(home / "master.db")

        def pruned() -> bool:  # the original rows past the bound are gone (ids grow with time)
            oldest = reader.execute("SELECT min(id) FROM logs").fetchone()[0]
            return oldest is not None and oldest > ROWS - KEEP

        with running_server(home, [bench_api], config=config) as server:
            during: list[float] = []
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
                begun = time.perf_counter()
                while not pruned():
                    for _ in range(20):
                        t0 = time.perf_counter()
                        client.get("/slices").raise_for_status()
                        during.append(time.perf_counter() - t0)
                elapsed = time.perf_counter() - begun
                after: list[float] = []
                for _ in range(max(300, len(during))):
                    t0 = time.perf_counter()
                    client.get("/slices").raise_for_status()
                    after.append(time.perf_counter() - t0)
            left = reader.execute("SELECT count(*) FROM logs").fetchone()[0]
        reader.close()
    results.append(
        (f"retention pass at start: {ROWS:,} log rows cut to {KEEP:,}", f"{elapsed:.1f} s, {left:,} rows left", "setup")
    )
    if during:
        p99 = _pct(during, 0.99)
        verdict = "ok" if p99 <= 0.05 else "over 50 ms"
        results.append(_row("GET /slices during the pass: p50 / p99 / max", during, f"p99 <= 50 ms: {verdict}"))
    else:
        results.append(("GET /slices during the pass", "the pass ended before the first request", "-"))
    results.append(_row("GET /slices after the pass: p50 / p99 / max", after, "reference"))


def bench_slice_prune(results: list[tuple[str, str, str]]) -> None:
    """Time ``SliceDatabase.prune`` from 1,000,000 to 100,000 rows and a concurrent query's latency."""
    from refactorbot.database import SliceDatabase

    async def run(home: Path) -> None:
        migrations = home / "migrations"
        migrations.mkdir()
        (migrations / "0001_calls.sql").write_text(
            "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, tool TEXT NOT NULL, parameters TEXT NOT NULL,"
            " result TEXT, timestamp REAL NOT NULL);"
            "CREATE INDEX calls_tool_time ON calls (tool, timestamp); CREATE INDEX calls_time ON calls (timestamp);"
        )
        db = SliceDatabase(home / "slice.db", migrations)
        await db.open()
        now = time.time()
        await db.executemany(
            "INSERT INTO calls (tool, parameters, result, timestamp) VALUES (?, '{\"path\": \"a.txt\"}', 'ok', ?)",
            ((f"tool{i % 7}", now - (ROWS - i) * 0.01) for i in range(ROWS)),
        )
        latencies: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await db.scalar("SELECT count(*) FROM calls WHERE tool = 'tool3' AND timestamp > ?", (now - 60,))
                latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(0.001)

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        deleted = await db.prune("calls", "timestamp", max_age_seconds=30 * 86_400, max_rows=KEEP, batch=BATCH)
        elapsed = time.perf_counter() - started
        stop.set()
        await prober
        left = await db.scalar("SELECT count(*) FROM calls")
        await db.close()
        results.append(
            (
                f"SliceDatabase.prune: {ROWS:,} rows to {KEEP:,}, batch {BATCH:,}",
                f"{elapsed:.1f} s ({deleted / elapsed:,.0f} rows/s), {left:,} left",
                "setup",
            )
        )
        results.append(_row("a query on the same database meanwhile: p50 / p99 / max", latencies, "reference"))

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


def main() -> None:
    """Run every benchmark and print the table."""
    sys.path.insert(0, str(Path(__file__).parent))
    results: list[tuple[str, str, str]] = []
    bench_master_logs(results)
    bench_slice_prune(results)
    print("\n### retention\n")
    print("| measurement | result | target |")
    print("|---|---|---|")
    for name, value, verdict in results:
        print(f"| {name} | {value} | {verdict} |")


if __name__ == "__main__":
    main()
