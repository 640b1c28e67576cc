"""Retention of the LLM call log: rows pruned by age and by count in batches; spend and budgets unchanged."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from providers_setup import LOOPBACK, PLUGIN, home_with, providers_config
from refactorbot.testing import host_running
from refactorbot.testing.model_server import ModelServer, Reply
from test_providers import ask


def rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "slices" / "providers.db") as conn:
        found = conn.execute(sql).fetchall()
    conn.close()
    return found


async def record(host: Any, ts: float, slice_id: str, model: str, cost: float, tokens: int) -> None:
    answer = await host.call(
        "providers.record_call",
        model=model,
        slice_id=slice_id,
        cost_usd=cost,
        prompt_tokens=tokens,
        completion_tokens=tokens // 2,
        timestamp=ts,
    )
    assert answer.success, answer.error_message


@pytest.mark.asyncio
async def test_pruned_calls_leave_spend_and_budgets_unchanged(server: ModelServer, tmp_path: Path) -> None:
    server.script(Reply.text("fresh", usage=(100, 50)))
    settings = providers_config(
        server,
        retention_days=3,
        retention_max_rows=40,
        retention_batch=16,
        budgets={"overall": {"daily_usd": 1000, "monthly_usd": 5000}, "slices": {"agent": {"monthly_usd": 900}}},
    )
    home = home_with(tmp_path, settings)
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        assert (await host.call("providers.prune")).data == {"deleted": 0, "remaining": 0}  # after the start pass
        now = time.time()
        for i in range(60):  # 10 and 6 days ago: past the age
            await record(
                host,
                now - (10 if i % 2 else 6) * 86_400 + i,
                ("agent", "memory")[i % 3 == 0],
                "loop/cheap",
                0.125,
                1000 + i,
            )
        for i in range(50):  # the last hours: 11 of these are beyond the row bound once the live call lands
            await record(
                host,
                now - 7200 + i * 60,
                ("agent", "memory")[i % 2],
                ("loop/cheap", "loop/strong")[i % 5 == 0],
                0.25 + (i % 4) * 0.0625,
                10 * i,
            )
        await host.complete(ask())  # a real call, priced from the table: the newest row
        grouped = {"group_by": ["day", "slice", "model"]}
        spend_before = (await host.call("providers.spend", **grouped)).data
        total_before = (await host.call("providers.spend")).data
        budgets_before = (await host.call("providers.get_budgets")).data

        begins: list[str] = []
        db = host.instance("providers").db
        await db.run(lambda c: c.set_trace_callback(lambda sql: begins.append(sql) if sql == "BEGIN" else None))
        pruned = await host.call("providers.prune")
        await db.run(lambda c: c.set_trace_callback(None))
        assert pruned.success, pruned.error_message
        assert pruned.data == {"deleted": 60 + 11, "remaining": 40}
        assert len(begins) >= (60 + 11) // 16

        assert (await host.call("providers.spend", **grouped)).data == spend_before
        assert (await host.call("providers.spend")).data == total_before
        assert (await host.call("providers.get_budgets")).data == budgets_before
        assert total_before["calls"] == 111
        # The kept rows are the newest ones; the live call is among them.
        kept = rows(home, "SELECT ts, requested_model FROM llm_calls ORDER BY ts")
        assert len(kept) == 40 and kept[0][0] == pytest.approx(now - 7200 + 10 * 60)
        assert kept[-1][0] > now
        assert rows(home, "SELECT SUM(calls) FROM llm_spend_pruned") == [(71,)]

        # A second pass folds into the same daily totals.
        for i in range(45):
            await record(host, now - 60 + i, "agent", "loop/cheap", 0.5, 7)
        before = (await host.call("providers.spend", **grouped)).data
        assert (await host.call("providers.prune")).data == {"deleted": 45, "remaining": 40}
        assert (await host.call("providers.spend", **grouped)).data == before


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"retention_days": -1}, "retention_days: Input should be greater than or equal to 0"),
        ({"retention_max_rows": -1}, "retention_max_rows: Input should be greater than or equal to 0"),
        ({"retention_interval": 0}, "retention_interval: Input should be greater than 0"),
        ({"retention_batch": 100_001}, "retention_batch: Input should be less than or equal to 100000"),
    ],
)
async def test_bad_retention_settings_are_refused_in_one_line(
    server: ModelServer, tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    home = home_with(tmp_path, providers_config(server, **setting))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        status = next(s for s in host.slice_status() if s["slice_id"] == "providers")
        assert status["status"] == "failed"
        assert status["error"].startswith(f"[slices.providers]: {message}")
        assert "\n" not in status["error"]
