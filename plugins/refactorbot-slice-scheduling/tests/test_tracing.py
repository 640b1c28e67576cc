"""Each run of a job is a ``job <name>`` span: the target's operation is its child, the outcome on it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, RECORDER, SCHEDULING, Recorder, echo, ok, until
from refactorbot.testing import host_running


async def trace_named(host: Any, root: str) -> list[dict[str, Any]]:
    """Return the spans of the newest trace whose root span's name contains ``root``."""
    listed = await ok(host, "traces.recent", name_contains=root)
    assert listed["traces"], f"no trace named {root}"
    detail = await ok(host, "traces.trace", trace_id=listed["traces"][0]["trace_id"])
    spans: list[dict[str, Any]] = detail["spans"]
    return spans


@pytest.mark.asyncio
async def test_a_run_is_a_span_with_its_job_time_and_status(tmp_path: Path) -> None:
    plugins = [SCHEDULING, RECORDER, "refactorbot_otel.plugin"]
    async with host_running(tmp_path, plugins, config=QUIET) as host:
        soon = time.time() + 0.2
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(soon)) + f".{int(soon % 1 * 1e6):06d}+00:00"
        job = await ok(host, "scheduling.add", name="once", at=when, target=echo("once"))
        await until(lambda: Recorder.calls)
        scheduling = host.instance("scheduling")
        await until(lambda: scheduling.running.get(job["id"]) == 0)

        root, child = await trace_named(host, "job once")
        assert root["name"] == "job once" and root["parent_id"] is None  # fired by the timer: a trace of its own
        assert child["name"] == "recorder.echo" and child["parent_id"] == root["span_id"]
        attributes = root["attributes"]
        assert attributes["refactorbot.job.id"] == job["id"]
        assert attributes["refactorbot.job.name"] == "once"
        assert attributes["refactorbot.job.status"] == "succeeded"
        assert attributes["refactorbot.job.attempts"] == 1
        assert attributes["refactorbot.job.target"] == "operation"
        assert attributes["refactorbot.job.trigger"] == "schedule"
        (run,) = (await ok(host, "scheduling.history", name="once"))["runs"]
        assert attributes["refactorbot.job.run_id"] == run["id"]
        assert attributes["refactorbot.job.scheduled_for"].startswith(when[:19])
        assert root["status"] == "unset"

        await ok(
            host,
            "scheduling.add",
            name="broken",
            cron="0 0 1 1 *",
            retries=1,
            retry_backoff=0.01,
            target=echo("broken", fail=True),
        )
        refused = await host.call("scheduling.run_now", name="broken")
        assert refused.success, refused.error_message
        spans = await trace_named(host, "scheduling.run_now")
        by_name = {s["name"]: s for s in spans}
        run_now, failed = by_name["scheduling.run_now"], by_name["job broken"]
        assert failed["parent_id"] == run_now["span_id"]  # run by hand: inside the operation that asked
        assert failed["status"] == "error" and failed["attributes"]["error.type"] == "failed"
        assert failed["attributes"]["refactorbot.job.attempts"] == 2
        assert "echo of broken failed as asked" in failed["status_message"]
        echoes = [s for s in spans if s["name"] == "recorder.echo"]
        assert len(echoes) == 2 and all(s["parent_id"] == failed["span_id"] for s in echoes)
