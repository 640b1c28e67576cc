"""Delivery through a real channel: the webhook channel POSTs signed messages to a loopback receiver.

A channel-message job records where its message went only once the receiver accepted it, and the
refusal otherwise. Alerts go out through the communication slice's template: once per alert while it
fires, a "resolved" when it clears, and no more per hour than the limit (the rest are counted).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RECORDER, SCHEDULING, echo, ok, quiet
from refactorbot.testing import ModelServer, WebhookReceiver, host_running, loopback_config

SECRET = "scheduling-webhook-secret-0123456789"
PLUGINS = [
    SCHEDULING,
    RECORDER,
    "refactorbot_slice_communication.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_slice_session.plugin",
    "refactorbot_channel_webhook.plugin",
    "refactorbot.testing.loopback",
]


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def config(model: ModelServer, receiver: WebhookReceiver, **scheduling: Any) -> dict[str, Any]:
    base = quiet(**scheduling)
    return {
        **base,
        **loopback_config(model),
        "slices": {**base["slices"], "communication": {"send_backoff": 0.01}},
        "channels": {"webhook": {"callback_url": f"{receiver.url}/alerts", "secret_env": "RB_SCHED_HOOK_SECRET"}},
    }


def running(tmp_path: Path, model: ModelServer, receiver: WebhookReceiver, **scheduling: Any) -> Any:
    env = {"RB_SCHED_HOOK_SECRET": SECRET}
    return host_running(tmp_path, PLUGINS, config=config(model, receiver, **scheduling), env=env)


async def channel_running(host: Any) -> None:
    from conftest import until

    runners = host.instance("communication").runners
    await until(lambda: runners["webhook"].running)


@pytest.mark.asyncio
async def test_a_message_job_records_the_send_only_once_the_receiver_took_it(
    tmp_path: Path, model: ModelServer
) -> None:
    with WebhookReceiver(SECRET) as receiver:
        async with running(tmp_path, model, receiver) as host:
            await channel_running(host)
            target = {"type": "message", "channel": "webhook", "chat_id": "standup", "text": "Stand-up in 5 minutes"}
            await ok(host, "scheduling.add", name="standup", cron="55 8 * * 1-5", target=target)
            run = (await ok(host, "scheduling.run_now", name="standup"))["run"]
            assert run["status"] == "succeeded"
            assert [(m["chat_id"], m["text"]) for m in receiver.messages] == [("standup", "Stand-up in 5 minutes")]
            assert run["delivery"].startswith("sent to webhook:standup (message ")
            assert run["delivery"].endswith("; platform ids received-1)")

    # A receiver that does not know the channel's secret refuses the message: the run failed, with why.
    with WebhookReceiver("another-secret-that-does-not-match") as stranger:
        async with running(tmp_path, model, stranger) as host:
            await channel_running(host)
            run = (await ok(host, "scheduling.run_now", name="standup"))["run"]
            assert run["status"] == "failed"
            assert stranger.messages == [] and [why for why, _ in stranger.rejected] == ["signature does not match"]
            assert run["delivery"].startswith("failed: send to webhook chat standup failed: ")
            assert "401" in run["delivery"] and "sent to" not in run["delivery"]
            assert run["error"] == run["delivery"][len("failed: ") :]
            history = (await ok(host, "scheduling.history", name="standup"))["runs"]
            assert [r["status"] for r in history] == ["failed", "succeeded"]


@pytest.mark.asyncio
async def test_alerts_reach_the_channel_once_resolve_and_stay_within_the_hourly_limit(
    tmp_path: Path, model: ModelServer
) -> None:
    with WebhookReceiver(SECRET) as receiver:
        settings = {"failure_alert_after": 1, "alert_channels": ["webhook:ops"], "alert_max_per_hour": 3}
        async with running(tmp_path, model, receiver, **settings) as host:
            await channel_running(host)
            for name in ("backup", "report", "cleanup"):
                await ok(host, "scheduling.add", name=name, cron="0 3 * * *", target=echo(name, fail=True))
            await ok(host, "scheduling.run_now", name="backup")

            found = await ok(host, "scheduling.check_alerts")
            assert found["raised"] == ["job_failing:backup"]
            assert [(m["chat_id"], m["text"]) for m in receiver.messages] == [
                ("ops", "[firing] job_failing: backup\njob backup failed 1 time(s) in a row (last: failed)")
            ]
            for _ in range(3):  # still failing: one alert, one message
                assert (await ok(host, "scheduling.check_alerts"))["raised"] == []
            assert len(receiver.messages) == 1
            firing = (await ok(host, "scheduling.alerts", state="firing"))["alerts"]
            assert [(a["key"], a["sent_count"]) for a in firing] == [("job_failing:backup", 1)]
            assert firing[0]["delivery"].startswith("sent to webhook:ops (message ")

            # The job works again: the alert resolves and the channel hears so.
            await ok(host, "scheduling.remove", name="backup")
            await ok(host, "scheduling.add", name="backup", cron="0 3 * * *", target=echo("backup"))
            await ok(host, "scheduling.run_now", name="backup")
            assert (await ok(host, "scheduling.check_alerts"))["resolved"] == ["job_failing:backup"]
            assert receiver.texts("ops")[-1] == (
                "[resolved] job_failing: backup\njob backup failed 1 time(s) in a row (last: failed)"
            )

            # Two more failing jobs: the third message of the hour goes out, the fourth is held back.
            await ok(host, "scheduling.run_now", name="report")
            await ok(host, "scheduling.run_now", name="cleanup")
            found = await ok(host, "scheduling.check_alerts")
            assert sorted(found["raised"]) == ["job_failing:cleanup", "job_failing:report"]
            assert len(receiver.messages) == 3
            alerts = {a["key"]: a for a in (await ok(host, "scheduling.alerts", state="firing"))["alerts"]}
            sent = [k for k, a in alerts.items() if a["sent_count"] == 1]
            held = [k for k, a in alerts.items() if a["suppressed"] == 1]
            assert len(sent) == 1 and len(held) == 1 and set(sent + held) == set(alerts)
            assert alerts[held[0]]["delivery"] is None and alerts[held[0]]["sent_count"] == 0

            # An alert the channel never heard of resolves without a message.
            await ok(host, "scheduling.remove", name=held[0].partition(":")[2])
            assert (await ok(host, "scheduling.check_alerts"))["resolved"] == [held[0]]
            assert len(receiver.messages) == 3
            template = await ok(host, "communication.template_list")
            assert "alert" in {t["name"] for t in template["templates"]}
