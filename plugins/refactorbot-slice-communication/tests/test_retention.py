"""Retention of the message log: by age and by row count, in batches; waiting messages always stay."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import host_config, running, running_adapter
from loop_channel import LoopPlatform
from refactorbot.testing import ModelServer


async def add_messages(db: Any, stamps: list[float], status: str = "sent", direction: str = "out") -> None:
    await db.executemany(
        "INSERT INTO messages (direction, kind, channel, chat_id, text, status, created_at, updated_at)"
        " VALUES (?, 'send', 'loop', 'c', ?, ?, ?, ?)",
        [(direction, f"m{ts}", status, ts, ts) for ts in stamps],
    )


@pytest.mark.asyncio
async def test_prune_keeps_the_newest_messages_and_the_ones_still_waiting(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    settings = host_config(model, platform, retention_days=2, retention_max_rows=30, retention_batch=8)
    async with running(tmp_path, settings) as host:
        await running_adapter(host)
        db = host.instance("communication").db
        now = time.time()
        await add_messages(db, [now - 5 * 86_400 + i for i in range(20)])  # past the age
        await add_messages(db, [now - 4 * 86_400 + i for i in range(3)], status="queued", direction="in")
        await add_messages(db, [now - 3600 + i for i in range(40)])
        sent = await host.call("communication.send", channel="loop", chat_id="c", text="newest")
        assert sent.success, sent.error_message

        begins: list[str] = []
        await db.run(lambda c: c.set_trace_callback(lambda sql: begins.append(sql) if sql == "BEGIN" else None))
        purged = await host.call("communication.prune")
        await db.run(lambda c: c.set_trace_callback(None))
        assert purged.success, purged.error_message
        # 20 past the age; then 44 rows for a bound of 30: the 14 oldest go, but the 3 queued ones stay.
        assert purged.data["messages"] == 20 + 11
        assert len(begins) >= (20 + 11) // 8
        rows = await db.fetchall("SELECT text, status, created_at FROM messages ORDER BY created_at, id")
        assert [r["status"] for r in rows[:3]] == ["queued"] * 3
        assert [r["created_at"] for r in rows[3:-1]] == [now - 3600 + i for i in range(11, 40)]
        assert rows[-1]["text"] == "newest"
        again = await host.call("communication.prune")
        assert again.data == {"messages": 0, "seen": 0, "pairing": 0, "reports": 0}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"retention_max_rows": -1}, "retention_max_rows: Input should be greater than or equal to 0"),
        ({"retention_batch": 0}, "retention_batch: Input should be greater than or equal to 1"),
        ({"retention_days": float("inf")}, "retention_days: Input should be a finite number"),
    ],
)
async def test_bad_retention_settings_are_refused_in_one_line(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform, setting: dict[str, Any], message: str
) -> None:
    async with running(tmp_path, host_config(model, platform, **setting)) as host:
        status = next(s for s in host.slice_status() if s["slice_id"] == "communication")
        assert status["status"] == "failed"
        assert status["error"].startswith(f"[slices.communication]: {message}")
        assert "\n" not in status["error"]
