"""REST out: what a message carries, the reply reference, rendering, edits, typing, and Discord's errors."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ALICE, DM, GUILD, GUILD_CHANNEL, make_channel
from refactorbot.channels import SendFailed
from refactorbot.models import OutgoingMessage
from refactorbot.testing import Inbox, PlatformResponse
from refactorbot.testing.discord import DiscordServer
from refactorbot_channel_discord.channel import DiscordChannel


def out(text: str, chat_id: str = DM, reply_to: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(channel="discord", chat_id=chat_id, text=text, reply_to=reply_to, text_format="platform")


def posted(server: DiscordServer) -> list[dict[str, Any]]:
    return [r.json() for r in server.requests if r.method == "POST" and r.path.endswith("/messages")]


@pytest.mark.asyncio
async def test_a_reply_refers_to_its_message_and_pings_nobody(running: Any) -> None:
    adapter, _, server = running
    asked = server.push_message(GUILD_CHANNEL, "ping @everyone", author_id=ALICE, guild_id=GUILD)
    (first,) = await adapter.send(out("@everyone look", GUILD_CHANNEL, reply_to=asked["id"]))
    (second,) = await adapter.send(out("part two", GUILD_CHANNEL))
    bodies = posted(server)
    assert bodies[0] == {
        "content": "@everyone look",
        "allowed_mentions": {"parse": [], "replied_user": False},
        "message_reference": {"message_id": asked["id"], "channel_id": GUILD_CHANNEL, "fail_if_not_exists": False},
    }
    assert "message_reference" not in bodies[1]
    messages = server.bot_messages()
    assert [m["id"] for m in messages] == [first, second]
    assert messages[0]["message_reference"]["message_id"] == asked["id"] and messages[0]["type"] == 19
    request = next(r for r in server.requests if r.path.endswith("/messages"))
    assert request.headers["authorization"].startswith("Bot ")


@pytest.mark.asyncio
async def test_edit_and_typing(running: Any) -> None:
    adapter, _, server = running
    assert adapter.supports_edit
    (message_id,) = await adapter.send(out("draft"))
    await adapter.edit(DM, message_id, "final **text**")
    assert server.edits == [(DM, message_id, "final **text**")]
    assert server.texts(DM) == ["final **text**"]
    await adapter.typing(DM)
    assert server.typing == [DM]
    server.unknown_channels.add("1999")
    await adapter.typing("1999")  # best effort: a failure is not raised
    with pytest.raises(SendFailed, match="Unknown Message") as caught:
        await adapter.edit(DM, "1234", "nope")
    assert caught.value.permanent


@pytest.mark.asyncio
async def test_429_gives_retry_after_from_the_json_body(running: Any) -> None:
    adapter, _, server = running
    server.rate_limit(1.5)
    with pytest.raises(SendFailed, match="rate limit") as caught:
        await adapter.send(out("hi"))
    assert caught.value.retry_after == 1.5 and not caught.value.permanent
    server.rate_limit(0.25, is_global=True)
    with pytest.raises(SendFailed, match=r"rate limit \(global\)") as caught:
        await adapter.send(out("hi"))
    assert caught.value.retry_after == 0.25
    server.script(PlatformResponse(429, b"", {"Retry-After": "3"}))  # no JSON: the header
    with pytest.raises(SendFailed) as caught:
        await adapter.send(out("hi"))
    assert caught.value.retry_after == 3.0
    assert await adapter.send(out("hi"))  # and then it goes through


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retryable(running: Any, status: int) -> None:
    adapter, _, server = running
    server.script(PlatformResponse.json({"message": "upstream trouble", "code": 0}, status))
    with pytest.raises(SendFailed, match=f"Discord answered {status}") as caught:
        await adapter.send(out("hi"))
    assert not caught.value.permanent and caught.value.retry_after is None


@pytest.mark.asyncio
async def test_permanent_errors_are_not_retried(running: Any) -> None:
    adapter, _, server = running
    server.unknown_channels.add("1999")
    server.closed_dms.add("1998")
    cases = [
        ("1999", "x", "Unknown Channel (code 10003): unknown channel"),
        ("1998", "x", "(code 50007): cannot send messages to this user"),
        (DM, "y" * 2001, "(code 50035): invalid form body (content: Must be 2000 or fewer in length.)"),
        (DM, "reply", "Unknown message"),
    ]
    for chat, text, fragment in cases:
        reply_to = "1234567" if text == "reply" else None
        if reply_to:  # a reference to an unknown message: refused unless fail_if_not_exists is false
            server.script(
                PlatformResponse.json(
                    {
                        "message": "Invalid Form Body",
                        "code": 50035,
                        "errors": {
                            "message_reference": {
                                "_errors": [{"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}]
                            }
                        },
                    },
                    400,
                )
            )
        with pytest.raises(SendFailed) as caught:
            await adapter.send(out(text, chat, reply_to=reply_to))
        assert caught.value.permanent, caught.value.reason
        assert fragment in caught.value.reason, caught.value.reason
    with pytest.raises(SendFailed, match="not a Discord channel id") as bad:
        await adapter.send(out("x", "../../users/@me"))
    assert bad.value.permanent


@pytest.mark.asyncio
async def test_a_revoked_token_fails_sends_permanently_without_showing_it(running: Any) -> None:
    adapter, _, server = running
    server.token = "rotated"
    with pytest.raises(SendFailed, match="the bot token was refused") as caught:
        await adapter.send(out("hi"))
    assert caught.value.permanent
    assert "loopback.bot-token" not in caught.value.reason


@pytest.mark.asyncio
async def test_an_unreachable_discord_is_a_retryable_failure(discord: DiscordServer) -> None:
    adapter = make_channel(discord, timeout=1)
    adapter.bind(Inbox())
    await adapter.start()
    try:
        discord.script(PlatformResponse.json({}, delay=30))  # released when the server stops
        with pytest.raises(SendFailed, match="did not answer") as caught:
            await adapter.send(out("slow"))
        assert not caught.value.permanent
    finally:
        await adapter.stop()


def test_render_keeps_discord_markdown_and_adapts_the_rest() -> None:
    adapter = DiscordChannel(env={})
    text = (
        "# Title\n\n#### Small heading\n\n**bold** _it_ ~~gone~~ `code` [docs](https://x.dev) ![chart](https://x.dev/c.png)\n\n"
        "```md\n#### not a heading here\n![kept](https://x.dev/i.png)\n```\n"
    )
    assert adapter.render(text) == (
        "# Title\n\n**Small heading**\n\n**bold** _it_ ~~gone~~ `code` [docs](https://x.dev) [chart](https://x.dev/c.png)\n\n"
        "```md\n#### not a heading here\n![kept](https://x.dev/i.png)\n```\n"
    )
    assert adapter.text_limit == 2000


def test_configuration_is_validated() -> None:
    from refactorbot.errors import ConfigError

    with pytest.raises(ConfigError, match="text_limit"):
        DiscordChannel({"text_limit": 2001}, env={})
    with pytest.raises(ConfigError, match="token_env"):
        DiscordChannel({"token_env": "MTIzNDU2Nzg5MDEyMzQ1Njc4.real.looking-token-value"}, env={})
    assert DiscordChannel.enabled_by_default(DiscordChannel.Config(), {"DISCORD_BOT_TOKEN": "x"})
    assert not DiscordChannel.enabled_by_default(DiscordChannel.Config(), {})


@pytest.mark.asyncio
async def test_a_missing_token_names_the_variable() -> None:
    from refactorbot.channels import ChannelError

    adapter = DiscordChannel({"api_base": "http://127.0.0.1:9/api/v10"}, env={})
    with pytest.raises(ChannelError, match="environment variable DISCORD_BOT_TOKEN is not set"):
        await adapter.start()
