"""The interactions endpoint /hooks/discord: Ed25519 verification (the forgery corpus), PING, slash commands
answered with a deferred response and replied to through the interaction's webhook."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import ALICE, DM, GUILD, GUILD_CHANNEL, make_channel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from refactorbot.channels import ChannelError, Delivery, WebhookRequest
from refactorbot.models import OutgoingMessage
from refactorbot.testing import Inbox
from refactorbot.testing.discord import DiscordServer
from refactorbot_channel_discord.channel import DiscordChannel

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def sign(body: bytes, stamp: int | str | None = None, key: Ed25519PrivateKey = KEY) -> dict[str, str]:
    """Return the headers Discord sends: Ed25519 over timestamp + raw body."""
    timestamp = str(int(time.time()) if stamp is None else stamp)
    return {
        "Content-Type": "application/json",
        "X-Signature-Ed25519": key.sign(timestamp.encode() + body).hex(),
        "X-Signature-Timestamp": timestamp,
    }


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(method, "/hooks/discord", {k.lower(): v for k, v in headers.items()}, {}, body)


@pytest_asyncio.fixture
async def endpoint(discord: DiscordServer) -> AsyncIterator[tuple[DiscordChannel, Inbox, DiscordServer]]:
    adapter = make_channel(discord, env={"DISCORD_PUBLIC_KEY": PUBLIC_KEY})
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        yield adapter, inbox, discord
    finally:
        await adapter.stop()


def _forgeries(server: DiscordServer) -> list[tuple[str, bytes, dict[str, str], str]]:
    """Return (case, body, headers, method): requests that must all be refused, none delivered."""
    body = json.dumps(server.interaction(DM, "ask", {"question": "run rm -rf /"})).encode()
    now = int(time.time())
    good = sign(body, now)
    sig, stamp = good["X-Signature-Ed25519"], good["X-Signature-Timestamp"]

    def with_(sig_value: str | None = sig, ts_value: str | None = stamp) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if sig_value is not None:
            headers["X-Signature-Ed25519"] = sig_value
        if ts_value is not None:
            headers["X-Signature-Timestamp"] = ts_value
        return headers

    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01
    reserialized = json.dumps(json.loads(body), indent=1).encode()
    other_body = json.dumps(server.interaction(DM, "ask", {"question": "hello"})).encode()
    bit_flipped_sig = bytes.fromhex(sig)
    bit_flipped_sig = bytes([bit_flipped_sig[0] ^ 0x01]) + bit_flipped_sig[1:]
    return [
        ("no headers", body, {"Content-Type": "application/json"}, "POST"),
        ("signature missing", body, with_(sig_value=None), "POST"),
        ("timestamp missing", body, with_(ts_value=None), "POST"),
        ("empty signature", body, with_(sig_value=""), "POST"),
        ("empty timestamp", body, with_(ts_value=""), "POST"),
        ("truncated signature", body, with_(sig_value=sig[:-2]), "POST"),
        ("signature one byte longer", body, with_(sig_value=sig + "00"), "POST"),
        ("signature not hex", body, with_(sig_value="z" * 128), "POST"),
        ("signature non-ASCII", body, with_(sig_value="é" * 128), "POST"),
        ("signature with a prefix", body, with_(sig_value="ed25519=" + sig[8:]), "POST"),
        ("signature all zeros", body, with_(sig_value="0" * 128), "POST"),
        ("signature with one bit flipped", body, with_(sig_value=bit_flipped_sig.hex()), "POST"),
        ("signed with another key", body, sign(body, now, OTHER_KEY), "POST"),
        ("body changed by one bit", bytes(flipped), good, "POST"),
        ("body with one byte appended", body + b" ", good, "POST"),
        ("JSON re-serialized", reserialized, good, "POST"),
        ("empty body", b"", good, "POST"),
        ("signature over the body alone", body, with_(sig_value=KEY.sign(body).hex()), "POST"),
        (
            "signature of another interaction",
            body,
            with_(sig_value=sign(other_body, now)["X-Signature-Ed25519"]),
            "POST",
        ),
        ("timestamp moved, signature kept", body, with_(ts_value=str(now + 1)), "POST"),
        ("stale timestamp, correctly signed", body, sign(body, now - 301), "POST"),
        ("future timestamp, correctly signed", body, sign(body, now + 3600), "POST"),
        ("timestamp 0, correctly signed", body, sign(body, 0), "POST"),
        ("timestamp in milliseconds, correctly signed", body, sign(body, now * 1000), "POST"),
        ("timestamp not a number", body, with_(ts_value="yesterday"), "POST"),
        ("negative timestamp", body, with_(ts_value=f"-{now}"), "POST"),
        ("GET", body, good, "GET"),
    ]


@pytest.mark.asyncio
async def test_the_forgery_corpus_is_refused_and_delivers_nothing(endpoint: Any) -> None:
    adapter, inbox, server = endpoint
    corpus = _forgeries(server)
    assert len(corpus) >= 20 and len({case for case, *_ in corpus}) == len(corpus)
    for case, body, headers, method in corpus:
        answer = await adapter.handle_webhook(request(body, headers, method))
        assert answer.status in (401, 405), (case, answer.status, answer.body)
        detail = json.loads(answer.body)["detail"]
        assert "\n" not in detail and PUBLIC_KEY not in detail
    assert inbox.messages == [], "no forged interaction reached the host"
    assert server.interaction_replies == [] and server.bot_messages() == []


@pytest.mark.asyncio
async def test_a_replayed_interaction_is_refused(endpoint: Any) -> None:
    adapter, inbox, server = endpoint
    body = json.dumps(server.interaction(DM, "ask", {"question": "once"})).encode()
    headers = sign(body)
    first = await adapter.handle_webhook(request(body, headers))
    assert (first.status, json.loads(first.body)) == (200, {"type": 5})
    replay = await adapter.handle_webhook(request(body, headers))
    assert replay.status == 401 and "replay" in json.loads(replay.body)["detail"]
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_ping_is_answered_with_pong(endpoint: Any) -> None:
    adapter, inbox, _ = endpoint
    body = json.dumps({"id": "1", "application_id": "2", "type": 1, "token": "t", "version": 1}).encode()
    answer = await adapter.handle_webhook(request(body, sign(body)))
    assert (answer.status, json.loads(answer.body)) == (200, {"type": 1})
    assert inbox.messages == []


@pytest.mark.asyncio
async def test_a_slash_command_is_deferred_and_answered_through_its_webhook(endpoint: Any) -> None:
    adapter, inbox, server = endpoint
    interaction = server.interaction(GUILD_CHANNEL, "ask", {"question": "what is up?"}, user_id=ALICE, guild_id=GUILD)
    body = json.dumps(interaction).encode()
    answer = await adapter.handle_webhook(request(body, sign(body)))
    assert (answer.status, json.loads(answer.body)) == (200, {"type": 5})
    (message,) = inbox.messages
    assert (message.chat_id, message.sender_id, message.text, message.message_id) == (
        GUILD_CHANNEL,
        ALICE,
        "what is up?",
        interaction["id"],
    )
    assert message.is_group and message.mentions_bot
    reply = OutgoingMessage(
        channel="discord", chat_id=GUILD_CHANNEL, text="part one", reply_to=interaction["id"], text_format="platform"
    )
    (first,) = await adapter.send(reply)
    (second,) = await adapter.send(reply.model_copy(update={"text": "part two", "reply_to": None}))
    assert [(r["kind"], r["content"], r["id"]) for r in server.interaction_replies] == [
        ("original", "part one", first),
        ("followup", "part two", second),
    ]
    webhook_requests = [r for r in server.requests if "/webhooks/" in r.path]
    assert all("authorization" not in r.headers for r in webhook_requests), "the interaction token is the credential"
    assert all(r.json()["allowed_mentions"] == {"parse": [], "replied_user": False} for r in webhook_requests)
    other = server.push_message(GUILD_CHANNEL, "later", author_id=ALICE, guild_id=GUILD)
    await adapter.send(reply.model_copy(update={"text": "to the channel", "reply_to": other["id"]}))
    assert server.texts(GUILD_CHANNEL)[-1] == "to the channel" and len(server.interaction_replies) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("delivery", "content"),
    [
        (Delivery.REFUSED, "cannot answer you here"),
        (Delivery.BUSY, "try again in a moment"),
        (Delivery.DUPLICATE, "already received"),
        (Delivery.UNAVAILABLE, "not available"),
    ],
)
async def test_commands_not_taken_get_an_ephemeral_answer(endpoint: Any, delivery: Delivery, content: str) -> None:
    adapter, inbox, server = endpoint
    inbox.answer = delivery
    body = json.dumps(server.interaction(DM, "ask", {"question": "hi"})).encode()
    answer = await adapter.handle_webhook(request(body, sign(body)))
    data = json.loads(answer.body)
    assert answer.status == 200 and data["type"] == 4 and data["data"]["flags"] == 64
    assert content in data["data"]["content"]


@pytest.mark.asyncio
async def test_authentic_but_unusable_bodies_get_a_clear_error(endpoint: Any) -> None:
    adapter, inbox, server = endpoint
    for body, status, fragment in [
        (b"not json", 400, "UTF-8 JSON"),
        (b"[1, 2]", 400, "not an interaction"),
        (json.dumps({"type": 2, "id": "1"}).encode(), 400, "application command"),
    ]:
        answer = await adapter.handle_webhook(request(body, sign(body)))
        assert answer.status == status and fragment in json.loads(answer.body)["detail"]
    component = json.dumps(server.interaction(DM, "ask", interaction_type=3)).encode()
    answer = await adapter.handle_webhook(request(component, sign(component)))
    assert json.loads(answer.body)["data"]["flags"] == 64
    assert inbox.messages == []


@pytest.mark.asyncio
async def test_without_a_public_key_the_endpoint_is_off(running: Any) -> None:
    adapter, inbox, server = running
    body = json.dumps({"type": 1}).encode()
    answer = await adapter.handle_webhook(request(body, sign(body)))
    assert answer.status == 404 and "DISCORD_PUBLIC_KEY" in json.loads(answer.body)["detail"]


@pytest.mark.asyncio
async def test_a_malformed_public_key_fails_start_without_repeating_it(discord: DiscordServer) -> None:
    adapter = make_channel(discord, env={"DISCORD_PUBLIC_KEY": "not-a-key-secretvalue"})
    with pytest.raises(ChannelError, match="64 hex digits") as caught:
        await adapter.start()
    assert "secretvalue" not in str(caught.value)


@pytest.mark.asyncio
async def test_interaction_tokens_stay_out_of_the_http_log(endpoint: Any, caplog: pytest.LogCaptureFixture) -> None:
    adapter, inbox, server = endpoint
    interaction = server.interaction(DM, "ask", {"question": "quiet"})
    body = json.dumps(interaction).encode()
    await adapter.handle_webhook(request(body, sign(body)))
    reply = OutgoingMessage(
        channel="discord", chat_id=DM, text="ok", reply_to=interaction["id"], text_format="platform"
    )
    with caplog.at_level(logging.DEBUG):
        await adapter.send(reply)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    assert any("/webhooks/" in line and "<token>" in line for line in lines), lines
    assert not any(interaction["token"] in line for line in lines)
