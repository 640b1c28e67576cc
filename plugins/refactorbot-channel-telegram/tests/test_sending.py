"""Sending: HTML with the reply reference, the Bot API's errors as typed send failures, edits, typing, start errors."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from conftest import ENV, TOKEN, make_channel
from refactorbot.channels import ChannelError, FormattingRejected, SendFailed
from refactorbot.models import OutgoingMessage
from refactorbot.testing.telegram import TelegramServer


def out(text: str, chat_id: str = "42", reply_to: str | None = None, text_format: str = "platform") -> OutgoingMessage:
    return OutgoingMessage(channel="telegram", chat_id=chat_id, text=text, reply_to=reply_to, text_format=text_format)


@pytest.mark.asyncio
async def test_a_reply_is_html_with_the_reply_reference(polling: Any) -> None:
    channel, _, server = polling
    asked = server.user_message("question", chat_id=42, sender_id=42)["message"]
    ids = await channel.send(out(channel.render("**Answer** for a < b"), reply_to=f"42:{asked['message_id']}"))
    (sent,) = server.sent(42)
    assert ids == [f"42:{sent['message_id']}"]
    assert sent["text"] == "Answer for a < b" and sent["entities"] == [{"type": "bold", "offset": 0, "length": 6}]
    assert sent["reply_to_message"]["message_id"] == asked["message_id"]
    call = server.calls("sendMessage")[-1].json()
    assert call["parse_mode"] == "HTML"
    assert call["reply_parameters"] == {"message_id": asked["message_id"], "allow_sending_without_reply": True}


@pytest.mark.asyncio
async def test_plain_text_goes_without_parse_mode(polling: Any) -> None:
    channel, _, server = polling
    server.add_chat(42)
    await channel.send(out("<b> stays as typed", text_format="plain"))
    assert "parse_mode" not in server.calls("sendMessage")[-1].json()
    assert server.sent(42)[-1]["text"] == "<b> stays as typed"


@pytest.mark.asyncio
async def test_a_reply_to_a_deleted_message_is_still_sent(polling: Any) -> None:
    channel, _, server = polling
    server.add_chat(42)
    await channel.send(out("still here", reply_to="42:999999"))
    assert server.sent(42)[-1]["text"] == "still here" and "reply_to_message" not in server.sent(42)[-1]


@pytest.mark.asyncio
async def test_platform_errors_become_typed_send_failures(polling: Any) -> None:
    channel, _, server = polling
    server.add_chat(42)
    server.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(SendFailed) as limited:
        await channel.send(out("x"))
    assert (limited.value.retry_after, limited.value.permanent) == (3.0, False)
    server.fail_next("sendMessage", 500, "Internal Server Error")
    with pytest.raises(SendFailed) as broken:
        await channel.send(out("x"))
    assert not broken.value.permanent and broken.value.retry_after is None
    server.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    with pytest.raises(SendFailed, match="blocked by the user") as blocked:
        await channel.send(out("x"))
    assert blocked.value.permanent
    with pytest.raises(SendFailed, match="chat not found") as unknown:
        await channel.send(out("x", chat_id="31337"))
    assert unknown.value.permanent and not isinstance(unknown.value, FormattingRejected)
    server.fail_next("sendMessage", 400, "Bad Request: group chat was upgraded to a supergroup chat", retry_after=None)
    with pytest.raises(SendFailed, match="upgraded") as moved:
        await channel.send(out("x"))
    assert moved.value.permanent
    assert server.sent(42) == [], "nothing reported sent was sent"


@pytest.mark.asyncio
async def test_refused_html_is_formatting_rejected_with_telegrams_reason(polling: Any) -> None:
    channel, _, server = polling
    server.add_chat(42)
    with pytest.raises(FormattingRejected, match="can't parse entities: Unsupported start tag"):
        await channel.send(out("<div>not telegram html</div>"))
    plain = channel.plain("<b>fine</b> &amp; <i>well</i>")
    await channel.send(out(plain, text_format="plain"))
    assert server.sent(42)[-1]["text"] == "fine & well"


@pytest.mark.asyncio
async def test_an_api_gone_away_is_a_retryable_failure(polling: Any) -> None:
    channel, _, server = polling
    server.stop()  # Telegram unreachable from now on
    with pytest.raises(SendFailed, match="cannot reach Telegram") as failed:
        await channel.send(out("x"))
    assert not failed.value.permanent and TOKEN not in failed.value.reason


@pytest.mark.asyncio
async def test_edit_replaces_the_text_and_an_unchanged_text_is_fine(polling: Any) -> None:
    channel, _, server = polling
    server.add_chat(42)
    (message_id,) = await channel.send(out("draft"))
    await channel.edit("42", message_id, "<b>final</b>")
    await channel.edit("42", message_id, "<b>final</b>")  # "message is not modified": not an error
    assert server.sent(42)[-1]["text"] == "final" and [e["text"] for e in server.edits] == ["final"]
    await channel.edit("42", message_id, "<x>", text_format="plain")
    assert server.sent(42)[-1]["text"] == "<x>"
    with pytest.raises(FormattingRejected):
        await channel.edit("42", message_id, "<b>broken")
    with pytest.raises(SendFailed, match="message to edit not found"):
        await channel.edit("42", "42:987654", "gone")
    assert channel.supports_edit


@pytest.mark.asyncio
async def test_typing_sends_the_chat_action(polling: Any) -> None:
    channel, _, server = polling
    server.add_chat(-1001)
    await channel.typing("-1001")
    assert server.actions == [("-1001", "typing")]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "TELEGRAM_BOT_TOKEN is not set"),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "does not look like a bot token"),
        ({"TELEGRAM_BOT_TOKEN": "7000001:a-revoked-or-mistyped-token-0000"}, "refused the token .*401"),
    ],
)
async def test_start_fails_with_one_line_and_never_the_token(
    telegram: TelegramServer, env: dict[str, str], reason: str
) -> None:
    channel = make_channel(telegram, env=env)
    with pytest.raises(ChannelError, match=reason) as failed:
        await channel.start()
    message = str(failed.value)
    assert "\n" not in message and "not-a-token" not in message and "mistyped" not in message
    await channel.stop()


@pytest.mark.asyncio
async def test_an_unreachable_api_fails_start_with_its_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = make_channel_for(f"http://127.0.0.1:{port}")
    with pytest.raises(ChannelError, match=f"cannot reach Telegram at http://127.0.0.1:{port}") as failed:
        await channel.start()
    assert TOKEN not in str(failed.value)


def make_channel_for(api_base: str) -> Any:
    from refactorbot_channel_telegram.channel import TelegramChannel

    return TelegramChannel({"api_base": api_base, "request_timeout": 5}, env=ENV)


@pytest.mark.asyncio
async def test_the_token_stays_out_of_http_client_logs(polling: Any, caplog: pytest.LogCaptureFixture) -> None:
    channel, _, server = polling
    caplog.set_level(logging.DEBUG)
    server.add_chat(42)
    await channel.send(out("logged?"))
    requests = [r for r in caplog.records if r.name == "httpx" and "sendMessage" in r.getMessage()]
    assert requests, "httpx logged the request"
    assert TOKEN not in caplog.text and "bot<token>/sendMessage" in caplog.text


def test_enabled_by_default_only_when_the_token_is_set() -> None:
    from refactorbot_channel_telegram.channel import TelegramChannel

    settings = TelegramChannel.Config()
    assert TelegramChannel.enabled_by_default(settings, ENV)
    assert not TelegramChannel.enabled_by_default(settings, {})
    assert TelegramChannel.enabled_by_default(TelegramChannel.Config(token_env="MY_BOT"), {"MY_BOT": TOKEN})
