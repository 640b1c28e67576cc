"""The Gateway: identify, heartbeats, zombied connections, resume with replay, reconnect, invalid sessions,
close codes, and incoming messages normalized (DMs, guilds, mentions, replies, bots skipped)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import ALICE, BOB, DM, GUILD, GUILD_CHANNEL, TOKEN, make_channel, wait_for
from refactorbot.channels import ChannelError
from refactorbot.testing import Inbox
from refactorbot.testing.discord import DiscordServer, Intents


@pytest.mark.asyncio
async def test_identify_carries_the_token_the_intents_and_properties(running: Any) -> None:
    adapter, _, server = running
    (identify,) = server.identifies
    assert identify["token"] == TOKEN
    assert identify["intents"] == (
        Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.DIRECT_MESSAGES | Intents.MESSAGE_CONTENT
    )
    assert set(identify["properties"]) == {"os", "browser", "device"}
    assert adapter.bot_id == server.bot_id
    query = server.connections[0].connection.request.path
    assert query.endswith("/?v=10&encoding=json")


@pytest.mark.asyncio
async def test_a_dm_is_delivered_normalized(running: Any) -> None:
    adapter, inbox, server = running
    attachment = {
        "id": "1",
        "filename": "plan.png",
        "size": 1234,
        "url": "https://cdn.discordapp.com/attachments/1/2/plan.png",
        "content_type": "image/png",
    }
    sent = server.push_message(DM, "hello bot", author_id=ALICE, attachments=[attachment])
    (message,) = await inbox.wait_for(1)
    assert (message.chat_id, message.sender_id, message.text, message.message_id) == (
        DM,
        ALICE,
        "hello bot",
        sent["id"],
    )
    assert not message.is_group and not message.mentions_bot and message.reply_to is None
    assert message.sender_name == "Alice"
    assert [(m.kind, m.ref, m.mime_type, m.name, m.size) for m in message.media] == [
        ("image", attachment["url"], "image/png", "plan.png", 1234)
    ]
    assert "raw" not in message.model_dump()


@pytest.mark.asyncio
async def test_guild_messages_carry_mentions_and_replies(running: Any) -> None:
    adapter, inbox, server = running
    first = server.push_message(GUILD_CHANNEL, "lunch?", author_id=ALICE, guild_id=GUILD)
    server.push_message(
        GUILD_CHANNEL, f"<@{server.bot_id}> status?", author_id=BOB, guild_id=GUILD, mentions=[server.bot_id]
    )
    server.push_message(GUILD_CHANNEL, "<@555> hi", author_id=BOB, guild_id=GUILD, mentions=["555"])
    server.push_message(GUILD_CHANNEL, "same here", author_id=BOB, guild_id=GUILD, reply_to=first["id"])
    plain, mentioned, other, reply = await inbox.wait_for(4)
    assert plain.is_group and not plain.mentions_bot
    assert mentioned.mentions_bot and mentioned.text == f"@{server.bot_name} status?"
    assert not other.mentions_bot and other.text == "<@555> hi"
    assert reply.reply_to == first["id"] and not reply.mentions_bot


@pytest.mark.asyncio
async def test_bots_webhooks_empty_and_system_messages_are_skipped(running: Any) -> None:
    adapter, inbox, server = running
    server.push_message(DM, "my own words", author_id=server.bot_id)
    server.push_message(GUILD_CHANNEL, "beep", author_id="999", bot=True, guild_id=GUILD)
    hook = server.message(GUILD_CHANNEL, "from a webhook", author_id="998", guild_id=GUILD)
    server.dispatch("MESSAGE_CREATE", {**hook, "webhook_id": "998"})
    server.push_message(GUILD_CHANNEL, "", author_id=ALICE, guild_id=GUILD)  # no Message Content intent
    pin = server.message(GUILD_CHANNEL, "", author_id=ALICE, guild_id=GUILD)
    server.dispatch("MESSAGE_CREATE", {**pin, "type": 6})
    server.push_message(DM, "the one that counts", author_id=ALICE)
    (message,) = await inbox.wait_for(1)
    assert message.text == "the one that counts"
    await asyncio.sleep(0)  # the dispatches are handled in order: nothing before it was delivered
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_heartbeats_carry_the_sequence_and_answer_a_heartbeat_request(discord: DiscordServer) -> None:
    discord.heartbeat_interval = 50
    adapter = make_channel(discord)
    adapter.bind(Inbox())
    await adapter.start()
    try:
        discord.push_message(DM, "one", author_id=ALICE)

        def beats() -> list[Any]:
            return [d for conn in discord.connections for op, d in conn.received if op == 1]

        await wait_for(discord, lambda: 2 in beats())  # READY was event 1, the message 2
        await wait_for(discord, lambda: discord.heartbeats >= 4)
        assert all(d in (1, 2) for d in beats()), "each beat carries the last sequence number seen"
        discord.heartbeat_interval = 41_250
        before = len(discord.connections)
        discord.drop(4000)  # a new connection with the real interval: beats now only when asked
        await wait_for(discord, lambda: len(discord.connections) > before and discord.ready())
        count = discord.heartbeats
        discord.request_heartbeat()
        await wait_for(discord, lambda: discord.heartbeats > count)
    finally:
        await adapter.stop()


@pytest.mark.asyncio
async def test_a_zombied_connection_is_closed_and_resumed(discord: DiscordServer) -> None:
    discord.heartbeat_interval = 30
    adapter = make_channel(discord)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        discord.acking = False
        await wait_for(discord, lambda: len(discord.resumes) == 1)
        first = discord.connections[0]
        await wait_for(discord, lambda: first.closed)
        assert first.close_code == 4000, "closed with a code that keeps the session resumable"
        discord.acking = True
        await wait_for(discord, discord.ready)
        (resume,) = discord.resumes
        assert resume == {"token": TOKEN, "session_id": first.session_id, "seq": 1}
        assert len(discord.identifies) == 1
        discord.push_message(DM, "after the resume", author_id=ALICE)
        (message,) = await inbox.wait_for(1)
        assert message.text == "after the resume"
    finally:
        await adapter.stop()


@pytest.mark.asyncio
async def test_events_missed_during_a_drop_are_replayed_on_resume_once(running: Any) -> None:
    adapter, inbox, server = running
    server.push_message(DM, "before", author_id=ALICE)
    await inbox.wait_for(1)
    server.hold_connections()
    server.drop()  # TCP reset, no close frame
    await wait_for(server, lambda: len(server.connections) == 2)  # the client is back, held before HELLO
    server.push_message(DM, "while away 1", author_id=ALICE)
    server.push_message(DM, "while away 2", author_id=BOB)
    server.release_connections()
    messages = await inbox.wait_for(3)
    assert [m.text for m in messages] == ["before", "while away 1", "while away 2"]
    assert server.resumes[-1]["seq"] == 2 and len(server.identifies) == 1
    server.push_message(DM, "live again", author_id=ALICE)
    assert [m.text for m in await inbox.wait_for(4)][-1] == "live again"


@pytest.mark.asyncio
async def test_reconnect_opcode_resumes_on_a_new_connection(running: Any) -> None:
    adapter, inbox, server = running
    server.reconnect()
    await wait_for(server, lambda: len(server.resumes) == 1 and server.ready())
    assert len(server.identifies) == 1
    server.push_message(DM, "still here", author_id=ALICE)
    assert (await inbox.wait_for(1))[0].text == "still here"


@pytest.mark.asyncio
async def test_a_resumable_invalid_session_resumes(running: Any) -> None:
    adapter, inbox, server = running
    server.invalidate_session(resumable=True)
    await wait_for(server, lambda: len(server.resumes) == 1)
    assert len(server.identifies) == 1


@pytest.mark.asyncio
async def test_an_invalid_session_identifies_again_after_waiting(running: Any) -> None:
    adapter, inbox, server = running
    adapter.invalid_session_wait = (0.2, 0.3)
    server.invalidate_session(resumable=False)
    await wait_for(server, lambda: len(server.identifies) == 2 and server.ready())
    invalidated = server.connections[0]
    assert not server.resumes
    new = server.connections[-1]
    assert new.at - invalidated.at >= 0.2, "waited before identifying again"
    server.push_message(DM, "new session", author_id=ALICE)
    assert (await inbox.wait_for(1))[0].text == "new session"


@pytest.mark.asyncio
async def test_a_resume_refused_by_the_gateway_falls_back_to_identify(running: Any) -> None:
    adapter, inbox, server = running
    adapter.invalid_session_wait = (0.01, 0.02)
    for session in server._sessions.values():
        session.valid = False  # the session expired while the client was away
    server.drop(4000)
    await wait_for(server, lambda: len(server.identifies) == 2 and server.ready())
    assert len(server.resumes) == 1
    server.push_message(DM, "fresh", author_id=ALICE)
    assert (await inbox.wait_for(1))[0].text == "fresh"


@pytest.mark.asyncio
async def test_a_refused_token_fails_start_with_a_clear_reason(discord: DiscordServer) -> None:
    adapter = make_channel(discord, env={"DISCORD_BOT_TOKEN": "not-the-token"})
    adapter.bind(Inbox())
    with pytest.raises(ChannelError, match="refused the bot token .*DISCORD_BOT_TOKEN") as caught:
        await adapter.start()
    assert "not-the-token" not in str(caught.value)
    assert discord.connections == [], "no gateway connection with a refused token"


@pytest.mark.asyncio
async def test_gateway_close_4004_fails_start_and_says_token(discord: DiscordServer) -> None:
    discord.refuse_identify(4004)
    adapter = make_channel(discord)
    adapter.bind(Inbox())
    with pytest.raises(ChannelError, match="4004.*DISCORD_BOT_TOKEN"):
        await adapter.start()
    assert len(discord.connections) == 1, "not retried tightly: the runtime restarts the channel with backoff"


@pytest.mark.asyncio
async def test_disallowed_message_content_intent_tells_what_to_enable(discord: DiscordServer) -> None:
    discord.privileged_intents = 0
    adapter = make_channel(discord)
    adapter.bind(Inbox())
    with pytest.raises(ChannelError, match="Message Content Intent.*developer portal"):
        await adapter.start()
    await wait_for(discord, lambda: discord.connections[0].closed)
    assert discord.connections[0].close_code == 4014
    without = make_channel(discord, message_content_intent=False)
    without.bind(Inbox())
    await without.start()
    try:
        assert discord.identifies[-1]["intents"] & Intents.MESSAGE_CONTENT == 0
    finally:
        await without.stop()


@pytest.mark.asyncio
async def test_a_fatal_close_while_running_fails_the_channel(running: Any) -> None:
    adapter, _, server = running
    server.drop(4004)
    reason = await asyncio.wait_for(adapter.failure(), 30)
    assert "4004" in reason and "DISCORD_BOT_TOKEN" in reason


@pytest.mark.asyncio
async def test_reconnects_back_off_and_give_up_with_a_reason(discord: DiscordServer) -> None:
    adapter = make_channel(discord, reconnect_attempts=3, reconnect_backoff=0.2)
    adapter.bind(Inbox())
    await adapter.start()
    try:
        discord.reject_connections = 4000
        discord.drop()
        reason = await asyncio.wait_for(adapter.failure(), 30)
        assert reason.startswith("the gateway connection could not be restored after 3 attempts")
        retries = [c.at for c in discord.connections[1:]]
        assert len(retries) == 3
        assert retries[1] - retries[0] >= 0.2 * 0.8  # backoff (with jitter) ...
        assert retries[2] - retries[1] >= 0.4 * 0.8  # ... doubling
    finally:
        await adapter.stop()


@pytest.mark.asyncio
async def test_a_gateway_that_is_down_fails_start(discord: DiscordServer) -> None:
    discord.reject_connections = 1011
    adapter = make_channel(discord)
    adapter.bind(Inbox())
    with pytest.raises(ChannelError, match="closed by the gateway with code 1011"):
        await adapter.start()


@pytest.mark.asyncio
async def test_no_session_starts_left_is_reported(discord: DiscordServer) -> None:
    discord.session_starts_remaining = 0
    adapter = make_channel(discord)
    adapter.bind(Inbox())
    with pytest.raises(ChannelError, match="no gateway session starts left"):
        await adapter.start()


@pytest.mark.asyncio
async def test_interactions_only_mode_opens_no_gateway(discord: DiscordServer) -> None:
    adapter = make_channel(discord, gateway=False)
    adapter.bind(Inbox())
    await adapter.start()
    await adapter.stop()
    assert discord.connections == []
