"""Webhook mode: setWebhook on start, the secret-token header checked in constant time, a forgery corpus refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import SECRET, TOKEN, WEBHOOK_ENV, make_channel
from refactorbot.channels import Delivery, WebhookRequest
from refactorbot.errors import ConfigError
from refactorbot.testing.telegram import TelegramServer
from refactorbot_channel_telegram.channel import TelegramChannel

HEADER = "X-Telegram-Bot-Api-Secret-Token"
OTHER_SECRET = "another-secret_9876543210-zyxwvuABC"


def request(body: bytes, headers: dict[str, str], method: str = "POST", query: dict[str, str] | None = None) -> Any:
    return WebhookRequest(method, "/hooks/telegram", {k.lower(): v for k, v in headers.items()}, query or {}, body)


def update_body(server: TelegramServer, text: str = "hello") -> bytes:
    return json.dumps(server.user_message(text, chat_id=55, sender_id=55, queue=False)).encode()


@pytest.mark.asyncio
async def test_start_sets_the_webhook_with_the_secret_and_does_not_poll(hooked: Any) -> None:
    channel, _, server = hooked
    (call,) = server.calls("setWebhook")
    assert call.json() == {
        "url": "https://bot.example.com/hooks/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "edited_message"],
        "drop_pending_updates": False,
    }
    assert server.calls("getUpdates") == [] and server.calls("deleteWebhook") == []


@pytest.mark.asyncio
async def test_an_update_with_the_secret_is_delivered_and_answered_at_once(hooked: Any) -> None:
    channel, inbox, server = hooked
    body = update_body(server, "hi bot")
    answer = await channel.handle_webhook(request(body, {"Content-Type": "application/json", HEADER: SECRET}))
    assert (answer.status, json.loads(answer.body)) == (200, {"ok": True, "status": "accepted"})
    (message,) = inbox.messages
    assert (message.chat_id, message.sender_id, message.text, message.is_group) == ("55", "55", "hi bot", False)


@pytest.mark.asyncio
async def test_a_busy_chat_gets_429_so_telegram_delivers_again(hooked: Any) -> None:
    channel, inbox, server = hooked
    inbox.answer = Delivery.BUSY
    answer = await channel.handle_webhook(request(update_body(server), {HEADER: SECRET}))
    assert answer.status == 429
    inbox.answer = Delivery.DUPLICATE
    answer = await channel.handle_webhook(request(update_body(server), {HEADER: SECRET}))
    assert (answer.status, json.loads(answer.body)["status"]) == (200, "duplicate")


@pytest.mark.asyncio
async def test_stop_leaves_the_webhook_set_and_refuses_requests(hooked: Any) -> None:
    channel, inbox, server = hooked
    await channel.stop()
    assert server.webhook is not None and server.webhook["secret_token"] == SECRET
    answer = await channel.handle_webhook(request(update_body(server), {HEADER: SECRET}))
    assert answer.status == 503 and inbox.messages == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1]", "update_id"),
        (b'{"update_id": 1, "message": {"chat": {"id": 1}}}', "message_id"),
    ],
)
async def test_authentic_but_malformed_updates_get_400(hooked: Any, body: bytes, fragment: str) -> None:
    channel, inbox, _ = hooked
    answer = await channel.handle_webhook(request(body, {HEADER: SECRET}))
    assert answer.status == 400 and fragment in json.loads(answer.body)["detail"]
    assert inbox.messages == []


def _forgeries(body: bytes) -> list[tuple[str, bytes, dict[str, str], str, dict[str, str]]]:
    """Return (case, body, headers, method, query): requests that must be refused, none delivered.

    Telegram signs nothing: the secret token header is the only proof a request comes from it, so
    a forged body with the right token cannot be told apart (Telegram reaches the URL over TLS).
    """
    good = {"Content-Type": "application/json", HEADER: SECRET}

    def with_(value: str | None, name: str = HEADER) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if value is not None:
            headers[name] = value
        return headers

    flipped = SECRET[:5] + ("A" if SECRET[5] != "A" else "B") + SECRET[6:]
    return [
        ("no header", body, with_(None), "POST", {}),
        ("empty header", body, with_(""), "POST", {}),
        ("whitespace only", body, with_("   "), "POST", {}),
        ("wrong secret", body, with_("wrong"), "POST", {}),
        ("another bot's secret", body, with_(OTHER_SECRET), "POST", {}),
        ("truncated by one character", body, with_(SECRET[:-1]), "POST", {}),
        ("one character appended", body, with_(SECRET + "x"), "POST", {}),
        ("one character changed", body, with_(flipped), "POST", {}),
        ("first half only", body, with_(SECRET[: len(SECRET) // 2]), "POST", {}),
        ("upper-cased", body, with_(SECRET.upper()), "POST", {}),
        ("lower-cased", body, with_(SECRET.lower()), "POST", {}),
        ("Bearer prefix", body, with_(f"Bearer {SECRET}"), "POST", {}),
        ("trailing space", body, with_(SECRET + " "), "POST", {}),
        ("doubled", body, with_(SECRET + SECRET), "POST", {}),
        ("non-ASCII lookalike", body, with_(SECRET.replace("e", "е")), "POST", {}),  # Cyrillic e
        ("very long", body, with_("x" * 10_000), "POST", {}),
        ("the bot token instead", body, with_(TOKEN), "POST", {}),
        ("secret under another header", body, with_(SECRET, "X-Telegram-Bot-Api-Secret"), "POST", {}),
        ("secret as Authorization", body, with_(f"Bearer {SECRET}", "Authorization"), "POST", {}),
        ("secret in the query string", body, with_(None), "POST", {"secret_token": SECRET}),
        (
            "secret in the body only",
            json.dumps({**json.loads(body), "secret_token": SECRET}).encode(),
            with_(None),
            "POST",
            {},
        ),
        ("empty body, no header", b"", with_(None), "POST", {}),
        ("GET with the right header", body, good, "GET", {}),
        ("PUT with the right header", body, good, "PUT", {}),
    ]


CASES = [case for case, *_ in _forgeries(b"{}")]


def test_the_forgery_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20 and len(set(CASES)) == len(CASES)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES)
async def test_forged_requests_are_refused_and_deliver_nothing(hooked: Any, case: str) -> None:
    channel, inbox, server = hooked
    body, headers, method, query = next((b, h, m, q) for n, b, h, m, q in _forgeries(update_body(server)) if n == case)
    answer = await channel.handle_webhook(request(body, headers, method, query))
    assert answer.status in (401, 403, 405), (case, answer.status, answer.body)
    assert inbox.messages == []
    detail = json.loads(answer.body)["detail"]
    assert SECRET not in detail and TOKEN not in detail and "\n" not in detail


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("settings", "env", "reason"),
    [
        (
            {"webhook_url": "https://b.example.com/hooks/telegram"},
            {"TELEGRAM_BOT_TOKEN": TOKEN},
            "TELEGRAM_WEBHOOK_SECRET is not set",
        ),
        (
            {"webhook_url": "https://b.example.com/hooks/telegram"},
            {**WEBHOOK_ENV, "TELEGRAM_WEBHOOK_SECRET": "no spaces!"},
            "1-256 characters",
        ),
        ({}, WEBHOOK_ENV, "set webhook_url"),
    ],
)
async def test_webhook_mode_start_names_what_is_missing(
    telegram: TelegramServer, settings: dict[str, Any], env: dict[str, str], reason: str
) -> None:
    channel = make_channel(telegram, None, env, mode="webhook", **settings)
    with pytest.raises(Exception, match=reason) as failed:
        await channel.start()
    assert "\n" not in str(failed.value) and "no spaces!" not in str(failed.value)
    assert telegram.calls("setWebhook") == []


def test_an_http_webhook_url_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match="https"):
        TelegramChannel({"mode": "webhook", "webhook_url": "http://b.example.com/hooks/telegram"})


@pytest.mark.asyncio
async def test_telegram_refusing_the_webhook_fails_start_with_its_reason(telegram: TelegramServer) -> None:
    telegram.fail_next("setWebhook", 400, "Bad Request: bad webhook: Failed to resolve host: Name or service not known")
    channel = make_channel(telegram, None, WEBHOOK_ENV, mode="webhook", webhook_url="https://nowhere.invalid/hooks")
    with pytest.raises(Exception, match="setWebhook failed: Bad Request: bad webhook: Failed to resolve host"):
        await channel.start()
