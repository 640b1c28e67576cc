"""Retention of master.db: the unified log and the operation log pruned by age and by row count, in batches."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from refactorbot.config import CoreSettings
from refactorbot.state import GlobalState, Retention


async def fill(state: GlobalState, table: str, rows: int, start_ts: float) -> None:
    async with state.db.transaction() as conn:
        if table == "logs":
            await conn.executemany(
                "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, 20, 'INFO', 's', 'l', ?)",
                [(start_ts + i, f"row {i}") for i in range(rows)],
            )
        else:
            await conn.executemany(
                "INSERT INTO operation_log (ts, request_id, slice_id, operation, caller, success, error_type,"
                " error_message, duration_ms) VALUES (?, ?, 's', 'op', NULL, 1, NULL, NULL, 1.0)",
                [(start_ts + i, f"r{i}") for i in range(rows)],
            )


@pytest.mark.asyncio
async def test_prune_keeps_the_newest_rows_within_both_bounds(tmp_path: Path) -> None:
    state = GlobalState(tmp_path / "master.db")
    await state.open()
    try:
        now = time.time()
        await fill(state, "logs", 3000, now - 40 * 86_400)  # 3,000 rows past 30 days
        await fill(state, "logs", 12_000, now - 12_000)  # then 12,000 recent ones
        await fill(state, "operation_log", 2500, now - 2500)
        policy = Retention(log_days=30, log_rows=10_000, operation_days=30, operation_rows=2000, batch=700)
        deleted = await state.prune(policy)
        assert deleted == {"logs": 3000 + 2000, "operation_log": 500}
        assert await state.db.scalar("SELECT count(*) FROM logs") == 10_000
        assert await state.db.scalar("SELECT min(message) FROM logs WHERE ts < ?", (now - 10_000,)) is None
        assert await state.db.scalar("SELECT count(*) FROM operation_log") == 2000
        assert await state.db.scalar("SELECT request_id FROM operation_log ORDER BY id LIMIT 1") == "r500"
        assert await state.prune(policy) == {"logs": 0, "operation_log": 0}  # already within bounds
    finally:
        await state.close()


def test_the_policy_comes_from_core_settings() -> None:
    core = CoreSettings(log_max_rows=5000, operation_log_retention_days=2, retention_batch=100)
    assert Retention.of(core) == Retention(30.0, 5000, 2.0, 1_000_000, 100)
    with pytest.raises(ValueError):
        CoreSettings(log_max_rows=10)
