"""Retention of the tool execution log: by age and by row count, in batches, off the request path."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from refactorbot.testing import host_running
from tools_slice_samples import SAMPLE_TOOLS

SLICE = "refactorbot_slice_tools.plugin"


def config(**tools: Any) -> dict[str, Any]:
    return {"core": {"health_interval": 3600}, "slices": {"tools": tools}}


def add_calls(home: Path, stamps: list[float]) -> None:
    """Write logged calls straight into the slice's SQLite file (as older runs of the slice left them)."""
    with sqlite3.connect(home / "slices" / "tools.db") as conn:
        conn.executemany(
            "INSERT INTO tool_executions (tool, call_id, parameters, result, success, error, duration_ms,"
            " session_id, user_id, timestamp) VALUES ('echo', NULL, '{}', 'x', 1, NULL, 1.0, 's', 'u', ?)",
            [(ts,) for ts in stamps],
        )
    conn.close()


def logged(home: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(home / "slices" / "tools.db") as conn:
        rows = conn.execute("SELECT tool, timestamp FROM tool_executions ORDER BY timestamp, id").fetchall()
    conn.close()
    return rows


@pytest.mark.asyncio
async def test_prune_drops_calls_past_the_age_and_keeps_the_newest_rows(tmp_path: Path) -> None:
    settings = config(retention_days=7, retention_max_rows=300, retention_interval=3600, retention_batch=64)
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=settings) as host:
        assert (await host.call("tools.prune")).data == {"deleted": 0, "remaining": 0}  # after the start pass
        now = time.time()
        add_calls(tmp_path, [now - 10 * 86_400 + i for i in range(200)])  # past 7 days
        add_calls(tmp_path, [now - 86_400 + i for i in range(400)])  # recent, 100 beyond the bound
        answer = await host.call("tools.execute", tool="echo", arguments={"text": "hi"})
        assert answer.success and answer.data["ok"]
        begins: list[str] = []
        db = host.instance("tools").db
        await db.run(lambda conn: conn.set_trace_callback(lambda sql: begins.append(sql) if sql == "BEGIN" else None))
        pruned = await host.call("tools.prune")
        await db.run(lambda conn: conn.set_trace_callback(None))
        assert pruned.success, pruned.error_message
        assert pruned.data == {"deleted": 200 + 101, "remaining": 300}
        assert len(begins) >= (200 + 101) // 64  # short transactions, not one long one
        rows = logged(tmp_path)
        assert len(rows) == 300
        assert rows[-1][1] > now  # the call just made is the newest, and it stays
        assert rows[0][1] == now - 86_400 + 101
        again = await host.call("tools.prune")
        assert again.data == {"deleted": 0, "remaining": 300}
        history = await host.call("tools.history", limit=1)
        assert history.data["executions"][0]["result"] == "hi"


@pytest.mark.asyncio
async def test_calls_keep_being_logged_while_a_long_prune_runs(tmp_path: Path) -> None:
    settings = config(retention_days=1, retention_max_rows=0, retention_interval=3600, retention_batch=100)
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=settings) as host:
        assert (await host.call("tools.prune")).data == {"deleted": 0, "remaining": 0}  # after the start pass
        add_calls(tmp_path, [1_000_000.0 + i for i in range(3000)])
        db = host.instance("tools").db
        loop = asyncio.get_running_loop()
        commits: list[str] = []
        first = asyncio.Event()

        def trace(sql: str) -> None:
            if sql == "COMMIT":
                commits.append(sql)
                loop.call_soon_threadsafe(first.set)

        await db.run(lambda conn: conn.set_trace_callback(trace))
        pruning = asyncio.create_task(host.call("tools.prune"))
        await first.wait()
        answer = await host.call("tools.execute", tool="echo", arguments={"text": "during"})
        assert answer.success and answer.data["ok"]
        assert not pruning.done(), "the call waited for the whole prune"
        pruned = await pruning
        await db.run(lambda conn: conn.set_trace_callback(None))
        assert pruned.success and pruned.data == {"deleted": 3000, "remaining": 1}
        assert len(commits) >= 30  # 30 batches of 100 and the call's own row
        assert logged(tmp_path)[-1][0] == "echo"
        assert len(logged(tmp_path)) == 1


@pytest.mark.asyncio
async def test_the_retention_task_prunes_at_start(tmp_path: Path) -> None:
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config()):
        pass  # creates the database
    add_calls(tmp_path, [time.time() - 31 * 86_400 + i for i in range(50)] + [time.time() - 60])
    settings = config(retention_max_rows=10, retention_interval=3600)
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=settings):
        deadline = time.monotonic() + 60
        while len(logged(tmp_path)) != 1:  # the default 30 days apply; the task runs in the background
            assert time.monotonic() < deadline, f"the start pass did not prune: {len(logged(tmp_path))} rows"
            await asyncio.sleep(0.02)
    assert logged(tmp_path)[0][1] > time.time() - 3600


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"retention_days": -1}, "retention_days: Input should be greater than or equal to 0"),
        ({"retention_max_rows": -10}, "retention_max_rows: Input should be greater than or equal to 0"),
        ({"retention_interval": 0}, "retention_interval: Input should be greater than 0"),
        ({"retention_batch": 0}, "retention_batch: Input should be greater than or equal to 1"),
        ({"retention_batch": 500_000}, "retention_batch: Input should be less than or equal to 100000"),
        ({"retention_days": "soon"}, "retention_days: Input should be a valid number"),
    ],
)
async def test_bad_retention_settings_are_refused_in_one_line(
    tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    async with host_running(tmp_path, [SLICE], config=config(**setting)) as host:
        status = next(s for s in host.slice_status() if s["slice_id"] == "tools")
        assert status["status"] == "failed"
        assert status["error"].startswith(f"[slices.tools]: {message}")
        assert "\n" not in status["error"]
