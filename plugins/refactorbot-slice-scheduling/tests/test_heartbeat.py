"""The heartbeat through a real host and agent: no active task skips the model; HEARTBEAT_OK is dropped; news is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, SCHEDULING
from refactorbot.testing import ModelServer, Reply, host_running, loopback_config
from refactorbot_slice_scheduling.heartbeat import active_tasks, within

PLUGINS = [
    SCHEDULING,
    "refactorbot_slice_agent.plugin",
    "refactorbot_slice_session.plugin",
    "refactorbot.testing.loopback",
]


def test_active_tasks_and_hours() -> None:
    text = "# Watch\n\n<!-- a note\n- [ ] hidden -->\n- [x] done already\n- [ ] check the backup\nplain line\n"
    assert active_tasks(text) == ["- [ ] check the backup", "plain line"]
    assert active_tasks("# only a heading\n- [X] done\n") == []
    from datetime import UTC, datetime

    noon = datetime(2030, 1, 1, 11, 0, tzinfo=UTC)  # 12:00 in Berlin
    assert within("08:00-22:00", "Europe/Berlin", noon)
    assert not within("22:00-07:00", "Europe/Berlin", noon)
    assert within("22:00-13:00", "Europe/Berlin", noon)


@pytest.mark.asyncio
async def test_heartbeat_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ModelServer() as model:
        config: dict[str, Any] = {
            **QUIET,
            **loopback_config(model),
            "slices": {
                "scheduling": {**QUIET["slices"]["scheduling"], "heartbeat_every": 30, "workspace": str(workspace)}
            },
        }
        async with host_running(home, PLUGINS, config=config) as host:
            first = await host.call("scheduling.run_now", name="system.heartbeat")
            assert first.data["run"]["status"] == "skipped"
            assert first.data["run"]["error"] == "HEARTBEAT.md lists no active tasks"
            (workspace / "HEARTBEAT.md").write_text("# Watch\n- [x] old\n")
            second = await host.call("scheduling.run_now", name="system.heartbeat")
            assert second.data["run"]["status"] == "skipped"
            assert model.requests == [], "no active task: no model call"

            (workspace / "HEARTBEAT.md").write_text("# Watch\n- [ ] tell me when the backup fails\n")
            model.script(Reply.text("HEARTBEAT_OK"))
            quiet = (await host.call("scheduling.run_now", name="system.heartbeat")).data["run"]
            assert (quiet["status"], quiet["output"]) == ("succeeded", "HEARTBEAT_OK (dropped)")
            assert "tell me when the backup fails" in model.requests[-1]["messages"][-1]["content"]

            model.script(Reply.text("The backup failed at 03:00."))
            news = (await host.call("scheduling.run_now", name="system.heartbeat")).data["run"]
            assert news["output"] == "The backup failed at 03:00."
            assert news["delivery"] == "not delivered: set heartbeat_channel and heartbeat_chat_id"
            sessions = await host.call("session.list", channel="cron")
            assert [s["chat_id"] for s in sessions.data] == ["heartbeat"]
