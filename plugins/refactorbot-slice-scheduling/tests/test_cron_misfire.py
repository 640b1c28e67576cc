"""Misfire after a long standby with a 6-field cron: the missed fires are counted, not stepped through."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, RECORDER, SCHEDULING, Recorder, echo, ok, until
from refactorbot.testing import host_running


async def runs(host: Any, name: str) -> list[dict[str, Any]]:
    return list(reversed((await ok(host, "scheduling.history", name=name, limit=1000))["runs"]))


@pytest.mark.asyncio
@pytest.mark.parametrize(("misfire", "calls"), [("skip", 0), ("run_once", 1), ("catch_up", 4)])
async def test_a_day_of_a_seconds_cron_missed(tmp_path: Path, misfire: str, calls: int) -> None:
    async with host_running(tmp_path, [SCHEDULING, RECORDER], config=QUIET) as host:
        await ok(host, "scheduling.add", name="s", cron="0 * * * * *", misfire=misfire, catch_up_max=4, target=echo())
        # Down for a day: the job was due a day ago, at a whole minute (the cron fires each minute).
        due = (int(time.time()) // 60 - 24 * 60) * 60
        await host.instance("scheduling").db.execute("UPDATE jobs SET next_run_at = ? WHERE name = 's'", (due,))
    async with host_running(tmp_path, [SCHEDULING, RECORDER], config=QUIET) as host:
        await until(lambda: len(Recorder.calls) >= calls)
        async with asyncio.timeout(30):  # the skipped record and every run ended
            while True:
                history = [r for r in await runs(host, "s") if r["trigger"] != "schedule"]
                if len(history) == 1 + calls and all(r["status"] != "running" for r in history):
                    break
                await asyncio.sleep(0.01)
        started = host.instance("scheduling")._started_at
    # Fires from ``due`` to the restart, one a minute: 24 * 60 + the minutes the first host lived.
    missed = int(started // 60 * 60 - due) // 60 + 1
    assert 24 * 60 + 1 <= missed <= 24 * 60 + 2
    skipped = history[0]
    assert skipped["status"] == "skipped"
    if misfire == "skip":
        assert skipped["error"] == f"missed {missed} fire(s) while the scheduler was down (misfire = skip)"
        assert len(history) == 1
    else:
        assert skipped["error"] == f"missed {missed - calls} fire(s) while the scheduler was down (misfire = {misfire})"
        caught = history[1:]
        assert [r["status"] for r in caught] == ["succeeded"] * calls
        # The latest missed fires, a minute apart, the last one at or before the restart
        times = [r["scheduled_for"] for r in caught]
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == [60.0] * (calls - 1)
        assert started - 60 < times[-1] <= started
