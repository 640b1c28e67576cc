"""Delivery reports: what a platform said became of a sent message, recorded on the outgoing message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import host_config, idle, running, running_adapter
from loop_channel import PLATFORMS, LoopChannel, LoopPlatform
from refactorbot.channels import ChannelError, Delivery, DeliveryStatus
from refactorbot.models import IncomingMessage
from refactorbot.testing import ModelServer, Reply
from refactorbot.testing.channel_contract import Inbox, Report

ANSWER = "First paragraph of the answer.\n\nSecond paragraph, long enough for its own part.\n\nThird and last."


async def outgoing(host: Any, **filters: Any) -> dict[str, Any]:
    response = await host.call("communication.messages", direction="out", **filters)
    assert response.success, response.error_message
    (row,) = response.data["items"]
    return dict(row)


async def answered_in_three_parts(host: Any, platform: LoopPlatform, model: ModelServer) -> LoopChannel:
    model.script(Reply.text(ANSWER))
    adapter: LoopChannel = await running_adapter(host)
    assert await adapter.inject("hello", message_id="m-1") is Delivery.ACCEPTED
    await platform.wait_sent(3)
    await idle(host)
    return adapter


@pytest.mark.asyncio
async def test_delivered_and_read_are_recorded_with_their_time_once_every_part_got_there(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "open", "limit": 40})
    async with running(tmp_path, config) as host:
        adapter = await answered_in_three_parts(host, platform, model)
        row = await outgoing(host)
        assert (row["status"], row["delivery"], row["platform_ids"]) == ("sent", None, ["p-1", "p-2", "p-3"])

        assert await adapter.report("p-1", "sent") is True
        assert (await outgoing(host))["delivery"] == "sent"
        for platform_id in ("p-1", "p-2"):
            assert await adapter.report(platform_id, DeliveryStatus.DELIVERED) is True
        row = await outgoing(host)
        assert (row["delivery"], row["delivered_at"]) == ("sent", None), "two parts of three are not the message"
        assert await adapter.report("p-3", "delivered") is True
        row = await outgoing(host)
        assert row["delivery"] == "delivered" and row["delivered_at"] is not None and row["read_at"] is None
        delivered_at = row["delivered_at"]

        # read implies delivered; repeating a report changes nothing
        for platform_id in ("p-1", "p-2", "p-3", "p-3"):
            assert await adapter.report(platform_id, "read") is True
        row = await outgoing(host)
        assert (row["status"], row["delivery"], row["delivered_at"]) == ("sent", "read", delivered_at)
        assert row["read_at"] is not None and row["read_at"] >= delivered_at
        assert (await outgoing(host, delivery="read"))["id"] == row["id"], "the log filters by delivery"
        channels = (await host.call("communication.channels")).data["channels"]
        assert (channels[0]["outbound"], channels[0]["failed"]) == (1, 0)


@pytest.mark.asyncio
async def test_a_part_reported_failed_fails_the_message_and_nothing_later_hides_it(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "open", "limit": 40})
    async with running(tmp_path, config) as host:
        adapter = await answered_in_three_parts(host, platform, model)
        assert await adapter.report("p-2", "failed", "131047: re-engagement\nmessage  outside the window") is True
        row = await outgoing(host)
        assert (row["status"], row["delivery"]) == ("failed", "failed")
        assert (
            row["detail"]
            == "the platform reported part 2 of 3 failed: 131047: re-engagement message outside the window"
        )
        for platform_id in ("p-1", "p-2", "p-3"):  # every part delivered and read afterwards
            assert await adapter.report(platform_id, "delivered") is True
            assert await adapter.report(platform_id, "read") is True
        assert await adapter.report("p-3", "failed") is True  # a second failure keeps the first reason
        later = await outgoing(host)
        assert (later["status"], later["delivery"], later["detail"]) == ("failed", "failed", row["detail"])
        channels = (await host.call("communication.channels")).data["channels"]
        assert channels[0]["failed"] == 1
        status = (await host.call("communication.status")).data
        assert status["failed_sends"] == 1


@pytest.mark.asyncio
async def test_a_report_that_overtakes_the_record_of_its_message_is_applied_when_it_is_recorded(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    platform.report_on_send = "delivered"
    config = host_config(model, platform, loop={"dm_policy": "open", "limit": 40})
    async with running(tmp_path, config) as host:
        adapter = await answered_in_three_parts(host, platform, model)
        assert platform.early_reports == [False, False, False], "no message had those ids yet"
        row = await outgoing(host)
        assert (row["status"], row["delivery"]) == ("sent", "delivered") and row["delivered_at"] is not None

        platform.report_on_send = "failed"
        sent = await host.call("communication.send", channel="loop", chat_id="chat-9", text="a notice")
        assert sent.success, sent.error_message
        assert sent.data["status"] == "sent", "what send saw; the report arrived before it was recorded"
        row = await outgoing(host, chat_id="chat-9")
        assert (row["status"], row["delivery"]) == ("failed", "failed")
        assert row["detail"] == "the platform reported failed: no reason given"
        assert await adapter.report("p-unknown", "read") is False


@pytest.mark.asyncio
async def test_reports_name_the_chat_when_ids_are_unique_only_within_one(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "open"})
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        for chat in ("A", "B"):
            assert (await host.call("communication.send", channel="loop", chat_id=chat, text=f"to {chat}")).success
        assert await adapter.report("p-1", "read", chat_id="B") is False, "p-1 went to chat A"
        assert await adapter.report("p-1", "read", chat_id="A") is True
        assert (await outgoing(host, chat_id="A"))["delivery"] == "read"
        assert (await outgoing(host, chat_id="B"))["delivery"] is None


@pytest.mark.asyncio
async def test_report_delivery_validates_and_needs_an_inbound_that_takes_reports() -> None:
    adapter = LoopChannel({"platform": "reports"})
    assert await adapter.report_delivery("x", "delivered") is False, "not bound"

    async def plain_inbound(message: IncomingMessage) -> Delivery:
        return Delivery.ACCEPTED

    adapter.bind(plain_inbound)
    assert await adapter.report_delivery("x", "delivered") is False, "an inbound without reports"

    inbox = Inbox(report_answer=False)
    adapter.bind(inbox)
    assert await adapter.report_delivery("w-1", "failed", "  too\nlong " + "x" * 600, chat_id="c") is False
    assert await adapter.report_delivery("w-2", DeliveryStatus.READ) is False
    (first, second) = await inbox.wait_reports(2)
    assert first.reason is not None and len(first.reason) == 500 and first.reason.startswith("too long x")
    assert (first.channel, first.message_id, first.status, first.chat_id) == ("loop", "w-1", "failed", "c")
    assert second == Report("loop", "w-2", DeliveryStatus.READ)
    for bad in ({"status": "seen"}, {"message_id": ""}, {"message_id": "x" * 513}, {"chat_id": ""}):
        arguments: dict[str, Any] = {"message_id": "w-3", "status": "sent", **bad}
        with pytest.raises(
            ChannelError,
            match=r"^(unknown delivery status 'seen' \(one of sent, delivered, read, failed\)|a delivery report)",
        ):
            await adapter.report_delivery(**arguments)
    assert len(inbox.reports) == 2, "nothing invalid was passed on"
    PLATFORMS.pop("reports", None)


@pytest.mark.asyncio
async def test_reports_survive_a_restart_and_the_rule_holds_after_it(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "open"})
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        assert (await host.call("communication.send", channel="loop", chat_id="A", text="hello")).success
        assert await adapter.report("p-1", "failed", "undeliverable") is True
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        assert await adapter.report("p-1", "read") is True
        row = await outgoing(host)
        assert (row["status"], row["delivery"], row["detail"]) == (
            "failed",
            "failed",
            "the platform reported failed: undeliverable",
        )
