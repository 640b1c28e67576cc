"""Jobs through a real host: firing never early, at refused when past, overlap, misfire, retries, timeout, workflows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, RECORDER, SCHEDULING, Recorder, echo, ok, until
from refactorbot import AtomicSlice, Event, subscribe
from refactorbot.testing import host_running, plugin_of


async def runs(host: Any, name: str) -> list[dict[str, Any]]:
    return list(reversed((await ok(host, "scheduling.history", name=name, limit=1000))["runs"]))


@pytest.mark.asyncio
async def test_an_every_job_fires_never_early_and_keeps_its_history(rb_host: Any) -> None:
    job = await ok(rb_host, "scheduling.add", name="tick", every="1", target=echo(), keep_runs=3)
    assert job["tz"] == "Europe/Berlin" and job["local_tz"] == "Europe/Berlin"
    assert job["next_run"].endswith(("+01:00", "+02:00"))
    await until(lambda: len(Recorder.calls) >= 4)
    history = await runs(rb_host, "tick")
    assert len(history) <= 4  # keep_runs = 3 finished ones (+ one that may be running)
    for run in history:
        if run["status"] == "succeeded":
            assert run["started_at"] >= run["scheduled_for"], "a run started before its time"
            assert run["output"].startswith('{"echo": "tick"')
    anchor = job["next_run_at"] - 1
    for k, (_, called) in enumerate(Recorder.calls, start=1):
        assert called >= anchor + k, f"call {k} came {anchor + k - called:.3f}s early"


@pytest.mark.asyncio
async def test_a_past_at_is_refused_and_a_future_one_fires_once(rb_host: Any) -> None:
    refused = await rb_host.call("scheduling.add", name="late", at="2001-01-01T09:00", target=echo())
    assert not refused.success
    assert "already past" in refused.error_message and "\n" not in refused.error_message
    soon = time.time() + 0.3
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(soon)) + f".{int(soon % 1 * 1e6):06d}+00:00"
    await ok(rb_host, "scheduling.add", name="once", at=when, target=echo("once"))
    await until(lambda: Recorder.calls)
    assert Recorder.calls[0][1] >= soon
    await until(lambda: rb_host.instance("scheduling").running.get(1) == 0)
    shown = await ok(rb_host, "scheduling.show", name="once")
    assert shown["state"] == "done" and shown["next_run_at"] is None and shown["last_status"] == "succeeded"


@pytest.mark.asyncio
@pytest.mark.parametrize(("overlap", "expected"), [("skip", "skipped"), ("queue", "queued"), ("allow", "running")])
async def test_overlap_policies(rb_host: Any, overlap: str, expected: str) -> None:
    Recorder.gate, Recorder.entered = asyncio.Event(), asyncio.Event()
    await ok(rb_host, "scheduling.add", name="slow", cron="0 0 1 1 *", overlap=overlap, target=echo("slow", hold=True))
    slice_ = rb_host.instance("scheduling")
    first = asyncio.ensure_future(rb_host.call("scheduling.run_now", name="slow"))
    await Recorder.entered.wait()
    second = asyncio.ensure_future(rb_host.call("scheduling.run_now", name="slow"))
    await until(lambda: len([r for r in slice_.tasks]) >= 1)
    if overlap == "skip":
        refused = await second
        assert not refused.success and "overlap policy is skip" in refused.error_message
    elif overlap == "queue":
        await until(lambda: slice_.queued.get(1))
        assert len(Recorder.calls) == 1, "a queued run must wait for the running one"
    else:
        await until(lambda: len(Recorder.calls) == 2)
    history = await runs(rb_host, "slow")
    assert [r["status"] for r in history] == ["running", expected]
    Recorder.gate.set()
    assert (await first).success
    if overlap != "skip":
        assert (await second).success
    assert [r["status"] for r in await runs(rb_host, "slow")] == (
        ["succeeded", "skipped"] if overlap == "skip" else ["succeeded", "succeeded"]
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("misfire", "expected_calls", "expected_statuses"),
    [
        ("skip", 0, ["skipped"]),
        ("run_once", 1, ["skipped", "succeeded"]),
        ("catch_up", 3, ["skipped", "succeeded", "succeeded", "succeeded"]),
    ],
)
async def test_misfire_policies_after_downtime(
    tmp_path: Path, misfire: str, expected_calls: int, expected_statuses: list[str]
) -> None:
    async with host_running(tmp_path, [SCHEDULING, RECORDER], config=QUIET) as host:
        await ok(host, "scheduling.add", name="m", every="10m", misfire=misfire, catch_up_max=3, target=echo("m"))
        # The host was down for an hour: six fires of a 10-minute job were missed.
        await host.instance("scheduling").db.execute(
            "UPDATE jobs SET next_run_at = ?, anchor = ? WHERE name = 'm'", (time.time() - 3590, time.time() - 4190)
        )
    async with host_running(tmp_path, [SCHEDULING, RECORDER], config=QUIET) as host:
        await until(lambda: len(Recorder.calls) >= expected_calls)
        async with asyncio.timeout(30):  # the misfire policy is applied once every slice has started
            while len(history := await runs(host, "m")) < len(expected_statuses) or any(
                r["status"] == "running" for r in history
            ):
                await asyncio.sleep(0.01)
        assert [r["status"] for r in history] == expected_statuses, history
        if misfire == "skip":
            assert history[0]["error"] == "missed 6 fire(s) while the scheduler was down (misfire = skip)"
        if misfire == "run_once":
            assert history[0]["error"] == "missed 5 fire(s) while the scheduler was down (misfire = run_once)"
            assert history[1]["trigger"] == "misfire"
        if misfire == "catch_up":
            assert "missed 3 fire(s)" in history[0]["error"]
            assert [r["trigger"] for r in history[1:]] == ["catch_up"] * 3
        job = await ok(host, "scheduling.show", name="m")
        assert job["next_run_at"] > time.time()
    assert len(Recorder.calls) == expected_calls


@pytest.mark.asyncio
async def test_retries_with_backoff_then_timeout(rb_host: Any) -> None:
    Recorder.failures = 2
    await ok(rb_host, "scheduling.add", name="flaky", cron="0 0 1 1 *", retries=2, retry_backoff=0.01, target=echo())
    run = (await ok(rb_host, "scheduling.run_now", name="flaky"))["run"]
    assert (run["status"], run["attempts"]) == ("succeeded", 3)

    Recorder.gate = asyncio.Event()  # never opened: the run times out
    await ok(rb_host, "scheduling.add", name="stuck", cron="0 0 1 1 *", timeout=0.2, target=echo("s", hold=True))
    run = (await ok(rb_host, "scheduling.run_now", name="stuck"))["run"]
    assert run["status"] == "timeout" and run["error"] == "timed out after 0.2s (attempt 1)"


@pytest.mark.asyncio
async def test_a_workflow_passes_outputs_on_and_stops_at_the_first_failure(rb_host: Any) -> None:
    steps = [
        {"name": "first", "operation": "recorder.echo", "payload": {"text": "alpha"}},
        {"name": "second", "operation": "recorder.echo", "payload": {"text": "got $first"}},
        {"name": "third", "operation": "recorder.echo", "payload": {"text": "x", "fail": True}},
        {"name": "never", "operation": "recorder.echo", "payload": {"text": "never"}},
    ]
    await ok(rb_host, "scheduling.add", name="flow", cron="0 0 1 1 *", target={"type": "workflow", "steps": steps})
    run = (await ok(rb_host, "scheduling.run_now", name="flow"))["run"]
    assert run["status"] == "failed"
    assert run["error"] == "step third failed: recorder.echo failed: echo of x failed as asked"
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("first", "succeeded"),
        ("second", "succeeded"),
        ("third", "failed"),
    ]
    assert [text for text, _ in Recorder.calls] == ["alpha", 'got {"echo": "alpha", "n": 1}', "x"]


@pytest.mark.asyncio
async def test_a_message_that_cannot_be_sent_is_a_failed_run_with_the_reason(rb_host: Any) -> None:
    target = {"type": "message", "channel": "webhook", "chat_id": "ops", "text": "hello"}
    await ok(rb_host, "scheduling.add", name="note", cron="0 9 * * *", target=target)
    run = (await ok(rb_host, "scheduling.run_now", name="note"))["run"]
    assert run["status"] == "failed"
    assert run["delivery"].startswith("failed: ") and "communication" in run["delivery"]


class AlertWatcher(AtomicSlice):
    slice_id = "watcher"
    uses_database = False
    seen: list[Event] = []

    @subscribe("alert.*")
    async def on_alert(self, event: Event) -> None:
        type(self).seen.append(event)


@pytest.mark.asyncio
async def test_a_failing_job_raises_an_alert_once_then_resolves(tmp_path: Path) -> None:
    AlertWatcher.seen = []
    config = {**QUIET, "slices": {"scheduling": {**QUIET["slices"]["scheduling"], "failure_alert_after": 2}}}
    watcher = plugin_of(slices=[AlertWatcher], name="watcher")
    async with host_running(tmp_path, [SCHEDULING, RECORDER, watcher], config=config) as host:
        await ok(host, "scheduling.add", name="bad", cron="0 0 1 1 *", target=echo("b", fail=True))
        for _ in range(2):
            await ok(host, "scheduling.run_now", name="bad")
        found = await ok(host, "scheduling.check_alerts")
        assert found["raised"] == ["job_failing:bad"]
        assert (await ok(host, "scheduling.check_alerts"))["raised"] == []  # deduplicated
        await until(lambda: len(AlertWatcher.seen) == 1)
        assert AlertWatcher.seen[0].topic == "alert.job_failing"
        assert AlertWatcher.seen[0].payload["message"] == "job bad failed 2 time(s) in a row (last: failed)"
        await ok(host, "scheduling.remove", name="bad")
        assert (await ok(host, "scheduling.check_alerts"))["resolved"] == ["job_failing:bad"]
        await until(lambda: len(AlertWatcher.seen) == 2)
        assert AlertWatcher.seen[1].payload["state"] == "resolved"
        alerts = (await ok(host, "scheduling.alerts"))["alerts"]
        assert [(a["key"], a["state"], a["sent_count"]) for a in alerts] == [("job_failing:bad", "resolved", 2)]
