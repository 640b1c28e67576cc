"""Benchmarks of the control API and the dashboard; prints a markdown table.

    python tests/bench/bench_api.py

- each dashboard page's AppTest run with 10,000 operation-log rows in master.db (target <= 1 s);
- ``GET /slices`` p50 with 20 slices (target <= 5 ms);
- ``GET /logs`` with 1,000,000 log rows: newest page, filtered, deep page (indexed, keyset-paged).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from refactorbot import AtomicSlice, DashboardPage, hookimpl, operation

REFACTORBOT_API = 1
SLICES = 20


class Ping(BaseModel):
    """Parameters of ``ping``."""

    text: str = "ping"


def _make_slice(index: int) -> type[AtomicSlice]:
    async def ping(self: AtomicSlice, params: Ping) -> str:
        """Answer at once."""
        return params.text

    ping.__annotations__ = {"params": Ping, "return": str}
    return type(
        f"BenchSlice{index:02d}",
        (AtomicSlice,),
        {
            "slice_id": f"bench{index:02d}",
            "uses_database": False,
            "__doc__": "A benchmark slice.",
            "ping": operation(ping),
        },
    )


BENCH_SLICES = [_make_slice(i) for i in range(SLICES)]


def _render_bench_page(api: Any) -> None:
    import streamlit as st

    st.title("Bench page")
    st.dataframe(api.get("/slices"), hide_index=True)


@hookimpl
def register_slices(register: Any) -> None:
    """Register the benchmark slices."""
    for cls in BENCH_SLICES:
        register(cls)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register one contributed page."""
    register(DashboardPage(group="bench00", title="Bench page", render=_render_bench_page))


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


async def _insert_operation_log(host: Any, rows: int) -> None:
    now = time.time()
    data = [
        (now - i * 0.5, f"req{i}", f"bench{i % SLICES:02d}", "ping", None, int(i % 50 != 0), None, None, 0.1 + (i % 7))
        for i in range(rows)
    ]
    async with (await host.master_db()).transaction() as conn:
        await conn.executemany(
            "INSERT INTO operation_log (ts, request_id, slice_id, operation, caller, success, error_type,"
            " error_message, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            data,
        )


async def _insert_logs(host: Any, rows: int) -> None:
    now = time.time()
    levels = [(10, "DEBUG"), (20, "INFO"), (20, "INFO"), (30, "WARNING"), (20, "INFO")]
    rng = random.Random(7)
    data = []
    for i in range(rows):
        level, name = levels[i % 5] if i % 1000 else (40, "ERROR")
        data.append(
            (now - (rows - i) * 0.01, level, name, f"bench{rng.randrange(SLICES):02d}", "refactorbot.bench", f"row {i}")
        )
    async with (await host.master_db()).transaction() as conn:
        await conn.executemany(
            "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, ?, ?, ?, ?, ?)", data
        )


def bench_pages(server: Any, results: list[tuple[str, str, str]]) -> None:
    """Time each page's AppTest run (median of 3 after a warm-up)."""
    from refactorbot_dashboard import navigation
    from refactorbot_dashboard.testing import log_in
    from streamlit.testing.v1 import AppTest

    app = Path(navigation.__file__).with_name("app.py")
    os.environ.update(
        {
            "RB_DASHBOARD_API_URL": server.url,
            "RB_DASHBOARD_API_TOKEN": server.token,
            "RB_DASHBOARD_PLUGINS": "bench_api",
            "RB_LOAD_PLUGINS": "",
        }
    )
    pages = [(f"master_pages/{file}", title) for file, title, _, _ in navigation.MASTER_PAGES]
    for target, title in [*pages, ("bench00-dashboard", "Bench page (contributed)")]:
        samples = []
        for attempt in range(4):
            if target.endswith(".py"):
                os.environ.pop("RB_DASHBOARD_START_PAGE", None)
                at = log_in(AppTest.from_file(str(app), default_timeout=60), server.token)
                started = time.perf_counter()
                at.switch_page(target).run()
            else:
                os.environ["RB_DASHBOARD_START_PAGE"] = target
                at = log_in(AppTest.from_file(str(app), default_timeout=60), server.token)
                started = time.perf_counter()
                at.run()
            elapsed = time.perf_counter() - started
            if at.exception:
                raise SystemExit(f"{title}: {at.exception}")
            if attempt:
                samples.append(elapsed)
        median = statistics.median(samples)
        verdict = "ok" if median <= 1.0 else "over 1 s"
        results.append((f"AppTest run: {title} (10,000 operation-log rows)", f"{median * 1000:.0f} ms", verdict))


def bench_slices(server: Any, results: list[tuple[str, str, str]]) -> None:
    """Time ``GET /slices`` with 20 slices over one keep-alive connection."""
    import httpx

    with httpx.Client(base_url=server.url, headers=server.headers) as client:
        assert len(client.get("/slices").json()) == SLICES
        samples = []
        for _ in range(300):
            started = time.perf_counter()
            client.get("/slices").raise_for_status()
            samples.append(time.perf_counter() - started)
    p50, p95 = _percentiles(samples)
    results.append(
        (
            f"GET /slices, {SLICES} slices: p50 / p95",
            f"{p50 * 1000:.2f} / {p95 * 1000:.2f} ms",
            "ok" if p50 <= 0.005 else "over 5 ms",
        )
    )


def bench_logs(server: Any, results: list[tuple[str, str, str]]) -> None:
    """Time ``GET /logs`` variants over 1,000,000 rows."""
    import httpx

    started = time.perf_counter()
    server.run(_insert_logs(server.host, 1_000_000), timeout=600)
    results.append(("insert 1,000,000 log rows (one executemany)", f"{time.perf_counter() - started:.1f} s", "setup"))
    now = time.time()
    cases = {
        "newest 100": {"limit": 100},
        "one slice, newest 100": {"slice_id": "bench07", "limit": 100},
        "ERROR and above, newest 100": {"level": "ERROR", "limit": 100},
        "deep page (before_id=500000)": {"before_id": 500_000, "limit": 100},
        "time window (60 s, an hour ago)": {"since": now - 3_660, "until": now - 3_600, "limit": 100},
        "one slice + ERROR": {"slice_id": "bench07", "level": "ERROR", "limit": 100},
    }
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        for name, params in cases.items():
            client.get("/logs", params=params).raise_for_status()
            samples = []
            for _ in range(20):
                t = time.perf_counter()
                page = client.get("/logs", params=params)
                samples.append(time.perf_counter() - t)
            page.raise_for_status()
            p50, _ = _percentiles(samples)
            rows = len(page.json()["items"])
            results.append(
                (
                    f"GET /logs at 1,000,000 rows: {name} ({rows} rows)",
                    f"{p50 * 1000:.1f} ms",
                    "ok" if p50 <= 0.05 else "slow",
                )
            )


def main() -> None:
    """Run every benchmark and print the table."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_api
    from refactorbot_api.testing import running_server

    results: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp), [bench_api]) as server:
        server.run(_insert_operation_log(server.host, 10_000))
        bench_pages(server, results)
        bench_slices(server, results)
        bench_logs(server, results)
    print("\n### refactorbot-api / refactorbot-dashboard\n")
    print("| measurement | result | target |")
    print("|---|---|---|")
    for name, value, verdict in results:
        print(f"| {name} | {value} | {verdict} |")


if __name__ == "__main__":
    main()
