"""Scheduling through a real `refactorbot serve`: a run killed with the process is recorded interrupted and
never run twice; a fire missed while the server was down runs once after the restart; the CLI shows zones.

The job's target is `scheduling.status` itself (a real operation of the installed slices), so nothing here
is scripted: the server process, its SQLite files and the CLI are the real ones.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from refactorbot.testing import ModelServer, Reply
from serving import clean_env, cli, serve, wait_until, write_config

TOML = (
    '[core]\nhealth_interval = 3600\ntimezone = "America/New_York"\n'
    "[slices.scheduling]\nheartbeat_every = 0\nalerts_every = 0\ndiagnostics_every = 0\n"
)


def rows(home: Path, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(home / "slices" / "scheduling.db") as db:
        return db.execute(sql, args).fetchall()


def test_kill_mid_run_records_interrupted_never_runs_twice_and_a_missed_fire_runs_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_config(home, TOML)
    added = cli(
        home,
        "schedule",
        "add",
        "nightly",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--operation",
        "scheduling.status",
        "--misfire",
        "run_once",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added nightly: 30 2 * * * (Europe/Berlin)")
    assert "(Europe/Berlin) = " in added.stdout and "(local)" in added.stdout

    listed = cli(home, "schedule", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert "ZONE" in header and "NEXT RUN (ZONE)" in header and "NEXT RUN (LOCAL)" in header
    assert row.split()[:3] == ["nightly", "30", "2"] and "Europe/Berlin" in row and "T02:30:00+0" in row

    refused = cli(home, "schedule", "add", "late", "--at", "2001-01-01T00:00", "--operation", "scheduling.status")
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("Error: at '2001-01-01T00:00' is already past")

    # A run in progress when the process dies: its claim is in the database.
    with serve(home) as served:
        job_id = rows(home, "SELECT id FROM jobs WHERE name = 'nightly'")[0][0]
        held_for = time.time() - 5
        with sqlite3.connect(home / "slices" / "scheduling.db") as db:
            db.execute(
                "INSERT INTO runs (job_id, scheduled_for, trigger, status, claimed_at) VALUES (?, ?, 'schedule', 'running', ?)",
                (job_id, held_for, time.time()),
            )
            # And the server is down past the job's time: next_run_at is now in the past.
            db.execute("UPDATE jobs SET next_run_at = ? WHERE id = ?", (held_for, job_id))
        served.kill()

    with serve(home) as served:
        wait_until(lambda: rows(home, "SELECT count(*) FROM runs WHERE status = 'interrupted'")[0][0] == 1)
        # The fire whose claim survived the kill is not run again: its row stays interrupted, and
        # (job, scheduled_for) is unique, so the misfire policy cannot claim it a second time.
        statuses = rows(home, "SELECT scheduled_for, status, trigger FROM runs ORDER BY id")
        assert statuses == [(held_for, "interrupted", "schedule")]
        history = served.call("scheduling.history", name="nightly")["runs"]
        assert [r["status"] for r in history] == ["interrupted"]
        job = served.call("scheduling.show", name="nightly")
        assert job["next_run_at"] > time.time() and job["local_tz"] == "America/New_York"
        assert job["next_run"].endswith(("+01:00", "+02:00"))
        assert job["next_run_local"].endswith(("-04:00", "-05:00"))

        # A missed fire with no claim: run once after a restart. The job's last 02:30 in Berlin,
        # so that this fire is the only one missed whatever the time of day.
        berlin = ZoneInfo("Europe/Berlin")
        today = datetime.now(berlin).replace(hour=2, minute=30, second=0, microsecond=0)
        last = today if today.timestamp() <= time.time() else today - timedelta(days=1)
        last = datetime(last.year, last.month, last.day, 2, 30, tzinfo=berlin)  # the wall clock, whatever the offset
        with sqlite3.connect(home / "slices" / "scheduling.db") as db:
            db.execute("UPDATE jobs SET next_run_at = ? WHERE id = ?", (last.timestamp(), job_id))
        served.kill()

    with serve(home) as served:
        wait_until(lambda: rows(home, "SELECT count(*) FROM runs WHERE status = 'succeeded'")[0][0] == 1)
        run = served.call("scheduling.history", name="nightly", status="succeeded")["runs"][0]
        assert run["trigger"] == "misfire" and run["started_at"] >= run["scheduled_for"]
        assert json.loads(run["output"])["jobs"] == 1
        now = cli(home, "schedule", "run-now", "nightly")
        assert now.returncode == 0, now.stderr
        assert now.stdout.startswith("nightly: succeeded in ")
        history = cli(home, "schedule", "history", "nightly")
        assert [line.split()[3:5] for line in history.stdout.splitlines()[1:]] == [
            ["manual", "succeeded"],
            ["misfire", "succeeded"],
            ["schedule", "interrupted"],
        ]
    with sqlite3.connect(home / "slices" / "scheduling.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_prompt_killed_mid_run_is_interrupted_and_not_sent_to_the_model_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ModelServer() as model:
        model.script(Reply.timeout(600))  # the model never answers: the run is in progress when the process dies
        write_config(home, TOML, model=model)
        added = cli(home, "schedule", "add", "digest", "--every", "1d", "--prompt", "Summarize the day.")
        assert added.returncode == 0, added.stderr
        with serve(home) as served:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "refactorbot", "--home", str(home), "schedule", "run-now", "digest"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_env(),
            )
            try:
                wait_until(lambda: len(model.requests) == 1)
                assert rows(home, "SELECT status, trigger FROM runs") == [("running", "manual")]
            finally:
                served.kill()
                waiting.wait(timeout=60)
        assert waiting.returncode != 0, "run-now must not report a run that the server never finished"
        with serve(home) as served:
            wait_until(lambda: rows(home, "SELECT status FROM runs") == [("interrupted",)])
            job = served.call("scheduling.show", name="digest")
            assert job["state"] == "active" and job["last_status"] is None
            assert len(model.requests) == 1, "the interrupted run was sent to the model again"
            sent = [m["content"] for m in model.requests[0]["messages"] if m["role"] == "user"]
            assert sent[-1] == "Summarize the day."
