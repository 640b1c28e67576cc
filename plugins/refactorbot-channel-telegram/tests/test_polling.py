"""Long polling: offsets moved only past handled updates and kept across restarts, 409 and failures backed off."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, TOKEN, make_channel, until
from refactorbot.channels import Delivery
from refactorbot.models import IncomingMessage
from refactorbot.testing.channel_contract import Inbox
from refactorbot.testing.telegram import TelegramServer


def offsets(server: TelegramServer) -> list[int | None]:
    return [r.json().get("offset") for r in server.calls("getUpdates")]


@pytest.mark.asyncio
async def test_start_deletes_the_webhook_then_polls(polling: Any) -> None:
    _, _, server = polling
    await until(server, lambda: len(server.calls("getUpdates")) >= 1)
    methods = [r.path.rsplit("/", 1)[-1] for r in server.requests]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    first = server.calls("getUpdates")[0].json()
    assert first["allowed_updates"] == ["message", "edited_message"] and first["timeout"] == FAST["poll_timeout"]


@pytest.mark.asyncio
async def test_updates_arrive_in_order_and_the_offset_is_kept_in_state_dir(
    telegram: TelegramServer, tmp_path: Path
) -> None:
    channel = make_channel(telegram, tmp_path)
    inbox = Inbox()
    channel.bind(inbox)
    await channel.start()
    try:
        sent = [telegram.user_message(f"hello {i}", chat_id=42, sender_id=42) for i in range(3)]
        messages = await inbox.wait_for(3)
        await until(telegram, lambda: telegram.confirmed > sent[-1]["update_id"])  # the next poll passed the offset
    finally:
        await channel.stop()
    assert [m.text for m in messages] == ["hello 0", "hello 1", "hello 2"]
    assert [m.message_id for m in messages] == [f"42:{u['message']['message_id']}" for u in sent]
    stored = json.loads((tmp_path / "offset.json").read_text())
    assert stored == {"bot_id": 7000001, "offset": sent[-1]["update_id"] + 1}

    polls = len(telegram.calls("getUpdates"))
    restarted = make_channel(telegram, tmp_path)
    restarted.bind(Inbox())
    await restarted.start()
    try:
        await until(telegram, lambda: len(telegram.calls("getUpdates")) > polls)
    finally:
        await restarted.stop()
    assert offsets(telegram)[-1] == sent[-1]["update_id"] + 1, "a restart goes on from the stored offset"


@pytest.mark.asyncio
async def test_an_offset_of_another_bot_is_ignored(telegram: TelegramServer, tmp_path: Path) -> None:
    (tmp_path / "offset.json").write_text(json.dumps({"bot_id": 999, "offset": 10**9}))
    channel = make_channel(telegram, tmp_path)
    inbox = Inbox()
    channel.bind(inbox)
    await channel.start()
    try:
        telegram.user_message("for me", chat_id=5, sender_id=5)
        (message,) = await inbox.wait_for(1)
    finally:
        await channel.stop()
    assert message.text == "for me"


class BusyTwice:
    """An inbound whose chat is busy twice before it takes the message; records the confirmed offset each time."""

    def __init__(self, server: TelegramServer) -> None:
        self.server = server
        self.calls: list[tuple[str, int]] = []
        self.accepted = asyncio.Event()

    async def __call__(self, message: IncomingMessage) -> Delivery:
        self.calls.append((message.text, self.server.confirmed))
        if len(self.calls) <= 2:
            return Delivery.BUSY
        self.accepted.set()
        return Delivery.ACCEPTED


@pytest.mark.asyncio
async def test_a_busy_chat_keeps_the_update_until_it_is_taken(telegram: TelegramServer) -> None:
    channel = make_channel(telegram)  # no state_dir: the offset is kept in memory
    inbound = BusyTwice(telegram)
    channel.bind(inbound)
    await channel.start()
    try:
        update = telegram.user_message("wait for me", chat_id=7, sender_id=7)
        await asyncio.wait_for(inbound.accepted.wait(), 30)
        await until(telegram, lambda: telegram.confirmed > update["update_id"])
    finally:
        await channel.stop()
    assert [text for text, _ in inbound.calls] == ["wait for me"] * 3
    assert all(confirmed <= update["update_id"] for _, confirmed in inbound.calls), "not confirmed before taken"


@pytest.mark.asyncio
async def test_a_webhook_set_elsewhere_gives_409_logged_and_backed_off_then_polling_resumes(
    polling: Any, caplog: pytest.LogCaptureFixture
) -> None:
    channel, inbox, server = polling
    await until(server, lambda: len(server.calls("getUpdates")) >= 1)
    caplog.set_level(logging.WARNING, "refactorbot.channels.telegram")
    before = len(server.calls("getUpdates"))
    server.set_webhook("https://elsewhere.example.com/hook")
    await until(server, lambda: len(server.calls("getUpdates")) >= before + 5)
    server.delete_webhook()
    server.user_message("after the conflict", chat_id=9, sender_id=9)
    (message,) = await inbox.wait_for(1)
    assert message.text == "after the conflict"
    conflicted = server.calls("getUpdates")[before : before + 5]
    gaps = [later.at - earlier.at for earlier, later in zip(conflicted, conflicted[1:], strict=False)]
    expected = [0.05, 0.1, 0.2, 0.4]  # backoff doubling up to backoff_max: never a tight loop
    assert all(gap >= wait for gap, wait in zip(gaps, expected, strict=True)), gaps
    warnings = [r.getMessage() for r in caplog.records if "409" in r.getMessage()]
    assert len(warnings) >= 4
    assert all("another process is polling this bot, or a webhook is set" in w for w in warnings)
    assert all("\n" not in w and TOKEN not in w for w in warnings)


def _intruder(server: TelegramServer, polls: int, done: threading.Event) -> None:
    """Another process polling the same bot: each of its getUpdates terminates the channel's."""
    url = f"{server.url}/bot{TOKEN}/getUpdates"
    for _ in range(polls):
        body = json.dumps({"timeout": 0.3}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json", "User-Agent": "intruder"})
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10).read()
        except OSError:
            pass
    done.set()


@pytest.mark.asyncio
async def test_another_poller_of_the_same_bot_is_named_in_the_log(
    polling: Any, caplog: pytest.LogCaptureFixture
) -> None:
    channel, inbox, server = polling
    caplog.set_level(logging.WARNING, "refactorbot.channels.telegram")
    await until(server, lambda: len(server.calls("getUpdates")) >= 1)
    done = threading.Event()
    thread = threading.Thread(target=_intruder, args=(server, 4, done), daemon=True)
    thread.start()
    await asyncio.to_thread(done.wait, 30)
    thread.join(10)
    assert any("terminated by other getUpdates request" in r.getMessage() for r in caplog.records)
    ours = [r for r in server.calls("getUpdates") if r.headers.get("user-agent") != "intruder"]
    assert len(ours) < 40, "the channel backed off instead of fighting for the updates"
    server.user_message("still here", chat_id=3, sender_id=3)
    messages = await inbox.wait_for(1)
    assert messages[-1].text == "still here"


@pytest.mark.asyncio
async def test_retry_after_and_server_errors_on_getupdates_are_waited_out(telegram: TelegramServer) -> None:
    telegram.fail_next("getUpdates", 429, "Too Many Requests: retry after 1", retry_after=1)
    telegram.fail_next("getUpdates", 502, "Bad Gateway")
    telegram.user_message("eventually", chat_id=11, sender_id=11)
    channel = make_channel(telegram)
    inbox = Inbox()
    channel.bind(inbox)
    await channel.start()
    try:
        (message,) = await inbox.wait_for(1)
    finally:
        await channel.stop()
    assert message.text == "eventually"
    limited, failed, succeeded = telegram.calls("getUpdates")[:3]
    assert failed.at - limited.at >= 1.0, "retry_after honoured"
    assert succeeded.at - failed.at >= FAST["backoff"] * 2, "the backoff grew after a second failure"


@pytest.mark.asyncio
async def test_a_revoked_token_while_polling_fails_the_channel(polling: Any) -> None:
    channel, _, server = polling
    await until(server, lambda: len(server.calls("getUpdates")) >= 1)
    server.token = "7000001:a-new-token-after-revoke-0000000"
    server.user_message("wake the poll", chat_id=1, sender_id=1)  # the poll in flight returns; the next is refused
    reason = await asyncio.wait_for(channel.failure(), 30)
    assert "401" in reason and TOKEN not in reason


@pytest.mark.asyncio
async def test_updates_without_a_message_to_answer_are_skipped(polling: Any) -> None:
    _, inbox, server = polling
    server.push_update({"update_id": 1, "edited_channel_post": {"message_id": 1}})
    server.push_update({"update_id": 2, "message": {"message_id": "x", "chat": {}}})  # malformed
    service = server.user_message("", chat_id=8, sender_id=8)  # no text, no media: a service message
    server.user_message("real one", chat_id=8, sender_id=8)
    (message,) = await inbox.wait_for(1)
    assert message.text == "real one"
    await until(server, lambda: server.confirmed > service["update_id"])


@pytest.mark.asyncio
async def test_an_update_delivered_again_after_a_restart_carries_the_same_message_id(telegram: TelegramServer) -> None:
    update = telegram.user_message("twice", chat_id=12, sender_id=12)
    delivered = []
    for _ in range(2):  # the second channel lost the offset (no state_dir): Telegram gives the update again
        channel = make_channel(telegram)
        inbox = Inbox()
        channel.bind(inbox)
        await channel.start()
        try:
            delivered += await inbox.wait_for(1)
        finally:
            await channel.stop()
        telegram.push_update(update)
    first, second = delivered
    assert first.message_id == second.message_id == f"12:{update['message']['message_id']}"  # the slice drops it
