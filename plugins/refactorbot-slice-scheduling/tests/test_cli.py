"""``refactorbot schedule`` without a server: job commands start the scheduling slice alone, ``run-now``
starts what a target may call; and in a serving host, a job is never run before the slices it calls are up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUIET, SCHEDULING, ok, until
from refactorbot.testing import ModelServer, Reply, host_running, loopback_config

TOML = (
    '[core]\nhealth_interval = 3600\ntimezone = "Asia/Tokyo"\n'
    "[slices.scheduling]\nheartbeat_every = 0\nalerts_every = 0\ndiagnostics_every = 0\n"
)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def started(home: Path) -> set[str]:
    """Return the slices a one-shot host brought up (each leaves a row in master.db's slice_state)."""
    with sqlite3.connect(home / "master.db") as db:
        return {row[0] for row in db.execute("SELECT slice_id FROM slice_state WHERE started_at IS NOT NULL")}


def test_job_commands_start_only_the_scheduling_slice_and_run_now_starts_the_targets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "refactorbot.toml").write_text(TOML)
    added = cli(home, "schedule", "add", "sessions", "--every", "6h", "--operation", "session.list")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added sessions: every 21600s (Asia/Tokyo)\nnext run: ")
    listed = cli(home, "schedule", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["name"] for j in json.loads(listed.stdout)["jobs"]] == ["sessions"]
    shown = cli(home, "schedule", "show", "sessions")
    assert shown.returncode == 0 and "never ran" in shown.stdout
    # Neither the agent, the session slice nor the communication slice was started for these.
    assert not started(home) & {"agent", "session", "communication"}
    assert "scheduling" in started(home)

    ran = cli(home, "schedule", "run-now", "sessions", "--json")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert (run["status"], run["trigger"], run["output"]) == ("succeeded", "manual", "[]")
    assert "session" in started(home)
    history = cli(home, "schedule", "history", "sessions", "--json")
    assert [r["status"] for r in json.loads(history.stdout)] == ["succeeded"]

    missing = cli(home, "schedule", "run-now", "nothing")
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == "Error: no job named 'nothing' (refactorbot schedule list shows them)"


@pytest.mark.asyncio
async def test_a_fire_missed_while_down_waits_for_the_agent_before_it_runs(tmp_path: Path) -> None:
    plugins = [
        SCHEDULING,
        "refactorbot_slice_agent.plugin",
        "refactorbot_slice_session.plugin",
        "refactorbot.testing.loopback",
    ]
    with ModelServer() as model:
        config = {**QUIET, **loopback_config(model)}
        async with host_running(tmp_path, plugins, config=config) as host:
            await ok(host, "scheduling.add", name="brief", cron="0 8 * * *", target={"type": "prompt", "prompt": "Go"})
            await host.instance("scheduling").db.execute(
                "UPDATE jobs SET next_run_at = ? WHERE name = 'brief'", (time.time() - 3600,)
            )
        order = [s for s in host._order if s in ("scheduling", "agent")]  # noqa: SLF001
        assert order == ["scheduling", "agent"], "this test needs the scheduler to start before the agent"

        model.script(Reply.text("Good morning."))
        async with host_running(tmp_path, plugins, config=config) as host:
            scheduler = host.instance("scheduling")
            await until(lambda: scheduler.jobs[1].last_status is not None and not scheduler.running.get(1))
            run = (await ok(host, "scheduling.history", name="brief"))["runs"][0]
            assert (run["trigger"], run["status"], run["output"]) == ("misfire", "succeeded", "Good morning.")
