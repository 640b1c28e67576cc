"""Alert rules over what a real host measures: a slice that fails, is restarted or stops beating; operations
that really fail or take long; LLM money really spent through the providers slice; self-diagnostics run on
their own schedule. Each alert is raised once, kept while it holds, and resolved when its condition clears.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import RECORDER, SCHEDULING, ok, quiet, until
from refactorbot import AtomicSlice, Event, subscribe
from refactorbot.models import DiagnosticCheck, DiagnosticReport, HealthState, HealthStatus
from refactorbot.testing import ModelServer, Reply, host_running, loopback_config, plugin_of
from refactorbot.testing.gateway_contract import write_config


def status_of(host: Any, slice_id: str) -> dict[str, Any]:
    return next(row for row in host.slice_status() if row["slice_id"] == slice_id)


async def check(host: Any) -> dict[str, Any]:
    return await ok(host, "scheduling.check_alerts")  # type: ignore[no-any-return]


async def alert(host: Any, key: str) -> dict[str, Any]:
    alerts = (await ok(host, "scheduling.alerts", state="all"))["alerts"]
    return next(a for a in alerts if a["key"] == key)  # type: ignore[no-any-return]


class Crashy(AtomicSlice):
    """Healthy until its upstream goes away: then its health check says so and the host takes it down."""

    slice_id = "crashy"
    uses_database = False
    sick: ClassVar[bool] = False

    async def health_check(self) -> HealthStatus:
        if type(self).sick:
            return HealthStatus(status=HealthState.UNHEALTHY, message="lost its upstream connection")
        return HealthStatus()


@pytest.mark.asyncio
async def test_a_failed_slice_alerts_its_restart_alerts_and_both_resolve(tmp_path: Path) -> None:
    Crashy.sick = False
    config = quiet()
    # Health checks every 50 ms; a failed slice waits an hour for its automatic restart.
    config["core"] = {**config["core"], "health_interval": 0.05, "restart_backoff": 3600}
    crashy = plugin_of(slices=[Crashy], name="crashy")
    async with host_running(tmp_path, [SCHEDULING, crashy], config=config) as host:
        assert (await check(host))["firing"] == []

        Crashy.sick = True
        await until(lambda: status_of(host, "crashy")["status"] == "failed")
        found = await check(host)
        assert found["raised"] == ["slice_down:crashy"]
        down = await alert(host, "slice_down:crashy")
        assert down["message"] == "slice crashy is failed: lost its upstream connection"
        assert (await check(host))["raised"] == []  # still down: the same alert, not a new one

        Crashy.sick = False
        assert await host.restart_slice("crashy")
        found = await check(host)
        assert found["raised"] == ["slice_restarting:crashy"] and found["resolved"] == ["slice_down:crashy"]
        assert (await alert(host, "slice_restarting:crashy"))["message"] == "slice crashy restarted (1 restart(s))"
        assert (await check(host))["resolved"] == ["slice_restarting:crashy"]  # no restart since

        await host.stop_slice("crashy")
        assert (await check(host))["raised"] == ["slice_down:crashy"]
        assert (await alert(host, "slice_down:crashy"))["message"] == "slice crashy is stopped"


class Hanging(AtomicSlice):
    """A slice whose health check hangs on ``gate``: the supervisor waits on it and no heartbeat is recorded."""

    slice_id = "hanging"
    uses_database = False
    gate: ClassVar[asyncio.Event | None] = None
    entered: ClassVar[asyncio.Event | None] = None

    async def health_check(self) -> HealthStatus:
        if type(self).gate is not None and type(self).entered is not None:
            type(self).entered.set()
            await type(self).gate.wait()
        return HealthStatus()


@pytest.mark.asyncio
async def test_a_slice_without_a_heartbeat_alerts_until_it_beats_again(tmp_path: Path) -> None:
    Hanging.gate, Hanging.entered = asyncio.Event(), asyncio.Event()
    config = quiet(stale_after=0.5)
    config["core"] = {**config["core"], "health_interval": 0.05, "stop_timeout": 600}
    hanging = plugin_of(slices=[Hanging], name="hanging")
    try:
        async with host_running(tmp_path, [SCHEDULING, hanging], config=config) as host:
            await Hanging.entered.wait()
            await until(lambda: (status_of(host, "hanging")["heartbeat_age_s"] or 0) > 0.5)
            assert status_of(host, "hanging")["status"] == "running"
            found = await check(host)
            assert "slice_down:hanging" in found["raised"]
            stale = await alert(host, "slice_down:hanging")
            assert stale["message"].startswith("slice hanging: no heartbeat for ") and stale["value"] > 0.5

            Hanging.gate.set()  # the health check answers: heartbeats resume
            await until(lambda: all((r["heartbeat_age_s"] or 0) < 0.5 for r in host.slice_status()))
            assert "slice_down:hanging" in (await check(host))["resolved"]
    finally:
        Hanging.gate.set()


@pytest.mark.asyncio
async def test_an_error_rate_over_the_window_and_a_slow_p95_alert_then_resolve(tmp_path: Path) -> None:
    config = quiet(error_rate_threshold=0.5, error_rate_min_calls=10, error_rate_window=600, latency_p95_ms=50)
    async with host_running(tmp_path, [SCHEDULING, RECORDER], config=config) as host:
        for i in range(9):
            assert (await host.call("recorder.echo", text=f"e{i}", fail=i >= 3)).success == (i < 3)
        assert (await check(host))["firing"] == [], "9 calls: fewer than error_rate_min_calls"
        assert not (await host.call("recorder.echo", text="e9", fail=True)).success
        found = await check(host)
        assert found["raised"] == ["error_rate:recorder"]
        rate = await alert(host, "error_rate:recorder")
        assert rate["message"] == "recorder: 7 of 10 operations failed in the last 600s (70%)"
        assert rate["value"] == pytest.approx(0.7)

        for i in range(10):
            await ok(host, "recorder.echo", text=f"fine{i}")
        assert (await check(host))["resolved"] == ["error_rate:recorder"]  # 7 of 20: below half

        for i in range(3):  # 3 of 23 calls take 60 ms: more than 5 %, so p95 is one of them
            await ok(host, "recorder.echo", text=f"slow{i}", delay=0.06)
        found = await check(host)
        assert found["raised"] == ["latency:recorder"]
        slow = await alert(host, "latency:recorder")
        assert slow["value"] >= 60 and slow["message"].startswith("recorder: p95 latency ")
        assert slow["message"].endswith(" ms over the last 600s")

        for i in range(60):  # 3 of 83: under 5 %
            await ok(host, "recorder.echo", text=f"quick{i}")
        assert (await check(host))["resolved"] == ["latency:recorder"]


KEY_ENV = "RB_SCHED_TEST_LLM_KEY"


def providers_config(model: ModelServer, **scheduling: Any) -> dict[str, Any]:
    """The loopback model priced at $1 per million prompt tokens through the providers slice."""
    providers = {
        "providers": [{"name": "loop", "gateway": "loopback", "api_key_env": KEY_ENV, "base_url": model.base_url}],
        "models": [
            {
                "name": "loop/cheap",
                "provider": "loop",
                "context_window": 16000,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
            }
        ],
    }
    base = quiet(**scheduling)
    return {
        **base,
        **loopback_config(model, model="loop/cheap", api_key_env=KEY_ENV),
        "slices": {**base["slices"], "providers": providers},
    }


@pytest.mark.asyncio
async def test_llm_spend_past_a_share_of_the_budget_alerts_and_resolves_when_the_budget_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-loopback")  # the providers slice checks the key in the process environment
    plugins = [
        SCHEDULING,
        "refactorbot_slice_agent.plugin",
        "refactorbot_slice_session.plugin",
        "refactorbot_slice_providers.plugin",
        "refactorbot.testing.loopback",
    ]
    with ModelServer() as model:
        home = tmp_path / "home"
        write_config(home, providers_config(model, spend_share=0.8))  # arrays of tables: written as TOML
        async with host_running(home, plugins) as host:
            await ok(host, "providers.set_budget", daily_usd=2.0)
            await ok(host, "scheduling.add", name="digest", cron="0 7 * * *", target={"type": "prompt", "prompt": "Hi"})
            model.script(Reply.text("cheap", usage=(300_000, 0)))  # $0.30: 15 % of the day's budget
            first = (await ok(host, "scheduling.run_now", name="digest"))["run"]
            assert first["status"] == "succeeded", first["error"]
            assert (await check(host))["firing"] == []

            model.script(Reply.text("costly", usage=(1_400_000, 0)))  # $1.40 more: $1.70 is 85 %
            assert (await ok(host, "scheduling.run_now", name="digest"))["run"]["status"] == "succeeded"
            found = await check(host)
            assert found["raised"] == ["spend:all:daily"]
            spend = await alert(host, "spend:all:daily")
            assert spend["message"] == "LLM spend of all: $1.70 of the daily budget $2.00 (85%, alert at 80%)"
            assert spend["value"] == pytest.approx(0.85)

            await ok(host, "providers.set_budget", daily_usd=10.0)
            assert (await check(host))["resolved"] == ["spend:all:daily"]
            assert len(model.requests) == 2


class Spool(AtomicSlice):
    """A slice whose self-diagnostics check that its spool folder exists."""

    slice_id = "spool"
    uses_database = False

    async def run_self_diagnostics(self) -> DiagnosticReport:
        folder = self.ctx.home / "spool"
        checks = [DiagnosticCheck(name="spool", passed=folder.is_dir(), detail=f"{folder.name} folder")]
        return DiagnosticReport(slice_id=self.slice_id, checks=checks)


class AlertWatcher(AtomicSlice):
    slice_id = "watcher"
    uses_database = False
    seen: ClassVar[list[Event]] = []

    @subscribe("alert.*")
    async def on_alert(self, event: Event) -> None:
        type(self).seen.append(event)


@pytest.mark.asyncio
async def test_self_diagnostics_run_on_their_schedule_are_kept_and_alerted_on(tmp_path: Path) -> None:
    AlertWatcher.seen = []
    config = quiet(diagnostics_every=0.3)
    plugins = [SCHEDULING, plugin_of(slices=[Spool], name="spool"), plugin_of(slices=[AlertWatcher], name="watcher")]
    async with host_running(tmp_path, plugins, config=config) as host:
        await until(lambda: any(e.payload["key"] == "diagnostics:spool" for e in AlertWatcher.seen))
        raised = next(e for e in AlertWatcher.seen if e.payload["key"] == "diagnostics:spool")
        assert raised.topic == "alert.diagnostics" and raised.payload["state"] == "firing"
        assert raised.payload["message"] == "self-diagnostics of spool failed: spool: spool folder"
        kept = {d["slice_id"]: d for d in (await ok(host, "scheduling.diagnostics"))["results"]}
        assert set(kept) >= {"scheduling", "spool", "watcher"}
        assert not kept["spool"]["passed"] and kept["scheduling"]["passed"]
        assert kept["spool"]["report"]["checks"] == [{"name": "spool", "passed": False, "detail": "spool folder"}]

        (tmp_path / "spool").mkdir()  # fixed: the next scheduled diagnosis passes and the alert resolves
        await until(lambda: any(e.payload["state"] == "resolved" for e in AlertWatcher.seen))
        assert [(e.payload["key"], e.payload["state"]) for e in AlertWatcher.seen] == [
            ("diagnostics:spool", "firing"),
            ("diagnostics:spool", "resolved"),
        ]
        runs = (await ok(host, "scheduling.history", name="system.diagnostics", limit=1000))["runs"]
        assert {r["trigger"] for r in runs} == {"schedule"}
        finished = [r for r in runs if r["status"] == "succeeded"]
        assert any(r["output"] == "3 slice(s) checked; failed: spool" for r in finished)
        assert finished[0]["output"] == "3 slice(s) checked; failed: none"
        assert all(r["started_at"] >= r["scheduled_for"] for r in finished)
