"""Retention of the agent's executions log: by age and by row count, in batches, off the request path."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from agent_fixtures import tools_plugin
from refactorbot.testing import host_running, loopback_config
from refactorbot.testing.model_server import ModelServer, Reply

AGENT = "refactorbot_slice_agent.plugin"
LOOPBACK = "refactorbot.testing.loopback"


def config_for(server: ModelServer, **agent: Any) -> dict[str, Any]:
    return {"core": {"health_interval": 3600}, **loopback_config(server), "slices": {"agent": agent}}


def add_runs(home: Path, stamps: list[float]) -> None:
    """Write runs straight into the slice's SQLite file (as older runs of the slice left them)."""
    with sqlite3.connect(home / "slices" / "agent.db") as conn:
        conn.executemany(
            "INSERT INTO executions (id, session_id, user_id, request, response, mode, model, plan, steps,"
            " duration_ms, success, created_at) VALUES (?, 's', 'u', 'q', 'a', 'single', 'm', NULL, 1, 1.0, 1, ?)",
            [(f"old-{ts}", ts) for ts in stamps],
        )
    conn.close()


def logged(home: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(home / "slices" / "agent.db") as conn:
        rows = conn.execute("SELECT request, created_at FROM executions ORDER BY created_at").fetchall()
    conn.close()
    return rows


@pytest.mark.asyncio
async def test_prune_drops_runs_past_the_age_and_keeps_the_newest(tmp_path: Path) -> None:
    with ModelServer() as server:
        server.script(Reply.text("hello there"))
        settings = config_for(server, retention_days=2, retention_max_rows=50, retention_batch=16)
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=settings) as host:
            assert (await host.call("agent.prune")).data == {"deleted": 0, "remaining": 0}  # after the start pass
            now = time.time()
            add_runs(tmp_path, [now - 5 * 86_400 + i for i in range(40)])
            add_runs(tmp_path, [now - 3600 + i for i in range(60)])
            answer = await host.call("agent.run", message="hi", session_id="s1")
            assert answer.success, answer.error_message
            begins: list[str] = []
            db = host.instance("agent").db
            await db.run(lambda c: c.set_trace_callback(lambda sql: begins.append(sql) if sql == "BEGIN" else None))
            pruned = await host.call("agent.prune")  # flushes the batched run first
            await db.run(lambda c: c.set_trace_callback(None))
            assert pruned.success, pruned.error_message
            assert pruned.data == {"deleted": 40 + 11, "remaining": 50}
            assert len(begins) >= (40 + 11) // 16
            rows = logged(tmp_path)
            assert rows[-1][0] == "hi"  # the run just made is the newest and stays
            assert rows[0][1] == now - 3600 + 11
            recent = await host.call("agent.executions", limit=1)
            assert recent.data[0]["request"] == "hi"


@pytest.mark.asyncio
async def test_the_retention_task_prunes_at_start(tmp_path: Path) -> None:
    with ModelServer() as server:
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server)):
            pass  # creates the database
        add_runs(tmp_path, [time.time() - 40 * 86_400 + i for i in range(30)] + [time.time() - 10])
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server)):
            deadline = time.monotonic() + 60
            while len(logged(tmp_path)) != 1:  # the default 30 days apply, in the background task
                assert time.monotonic() < deadline, f"the start pass did not prune: {len(logged(tmp_path))} rows"
                await asyncio.sleep(0.02)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"retention_days": -1}, "retention_days: Input should be greater than or equal to 0"),
        ({"retention_max_rows": -1}, "retention_max_rows: Input should be greater than or equal to 0"),
        ({"retention_interval": -5}, "retention_interval: Input should be greater than 0"),
        ({"retention_batch": 0}, "retention_batch: Input should be greater than or equal to 1"),
    ],
)
async def test_bad_retention_settings_are_refused_in_one_line(
    tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    with ModelServer() as server:
        async with host_running(
            tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server, **setting)
        ) as host:
            status = next(s for s in host.slice_status() if s["slice_id"] == "agent")
            assert status["status"] == "failed"
            assert status["error"].startswith(f"[slices.agent]: {message}")
            assert "\n" not in status["error"]
