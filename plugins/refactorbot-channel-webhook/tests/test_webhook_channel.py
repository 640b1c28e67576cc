"""The webhook channel: the channel contract, the forgery corpus, replies to the callback and their failures."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio
from refactorbot.channels import Delivery, SendFailed, WebhookRequest
from refactorbot.errors import ConfigError
from refactorbot.models import OutgoingMessage
from refactorbot.testing import ChannelContract, Inbox, PlatformResponse, WebhookReceiver, sign_webhook
from refactorbot_channel_webhook.channel import WebhookChannel, signature

SECRET = "webhook-test-secret-0123456789"
OTHER_SECRET = "another-secret-9876543210abcd"
ENV = {"REFACTORBOT_WEBHOOK_SECRET": SECRET}


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(method, "/hooks/webhook", {k.lower(): v for k, v in headers.items()}, {}, body)


def message_body(**fields: Any) -> bytes:
    data = {"id": "m-1", "chat_id": "room-1", "sender_id": "alice", "text": "hello", **fields}
    return json.dumps(data).encode()


class TestWebhookContract(ChannelContract):
    adapter_class = WebhookChannel
    plugin = "refactorbot_channel_webhook.plugin"

    @pytest.fixture
    def platform(self) -> Iterator[WebhookReceiver]:
        with WebhookReceiver(SECRET) as receiver:
            yield receiver

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return {"callback_url": platform.url}

    def adapter_env(self, platform: Any) -> dict[str, str]:
        return dict(ENV)

    def delivered(self, platform: Any, adapter: Any) -> list[tuple[str, str]]:
        return [(m["chat_id"], m["text"]) for m in platform.messages]

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        body = message_body(id=message_id, chat_id=chat_id, sender_id=sender_id, text=text)
        answer = await adapter.handle_webhook(request(body, sign_webhook(SECRET, body)))
        assert answer.status == 200, answer.body


@pytest_asyncio.fixture
async def channel() -> Any:
    with WebhookReceiver(SECRET) as receiver:
        adapter = WebhookChannel({"callback_url": receiver.url}, env=ENV)
        inbox = Inbox()
        adapter.bind(inbox)
        await adapter.start()
        try:
            yield adapter, inbox, receiver
        finally:
            await adapter.stop()


def _forgeries() -> list[tuple[str, bytes, dict[str, str], str]]:
    """Return (case, body, headers, method): requests that must all be refused, none delivered."""
    body = message_body()
    now = int(time.time())
    good = sign_webhook(SECRET, body, now)
    sig = good["X-Refactorbot-Signature"]
    stamp = good["X-Refactorbot-Timestamp"]
    hex_digest = sig.removeprefix("sha256=")

    def with_(**changes: str | None) -> dict[str, str]:
        headers = dict(good)
        for key, value in changes.items():
            name = {"sig": "X-Refactorbot-Signature", "ts": "X-Refactorbot-Timestamp"}[key]
            if value is None:
                headers.pop(name)
            else:
                headers[name] = value
        return headers

    flipped = bytearray(body)
    flipped[10] ^= 0x01
    reserialized = json.dumps(json.loads(body), indent=1, sort_keys=True).encode()
    body_only = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    other = sign_webhook(OTHER_SECRET, body, now)["X-Refactorbot-Signature"]
    empty_key = "sha256=" + hmac.new(b"", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    other_body = message_body(text="something else")
    other_request = sign_webhook(SECRET, other_body, now)["X-Refactorbot-Signature"]
    stale = sign_webhook(SECRET, body, now - 301)
    future = sign_webhook(SECRET, body, now + 3600)
    epoch = sign_webhook(SECRET, body, 0)
    return [
        ("no headers", body, {"Content-Type": "application/json"}, "POST"),
        ("signature missing", body, with_(sig=None), "POST"),
        ("timestamp missing", body, with_(ts=None), "POST"),
        ("empty signature", body, with_(sig=""), "POST"),
        ("prefix only", body, with_(sig="sha256="), "POST"),
        ("no sha256= prefix", body, with_(sig=hex_digest), "POST"),
        ("sha1 prefix", body, with_(sig="sha1=" + hex_digest[:40]), "POST"),
        ("truncated signature", body, with_(sig=sig[:-1]), "POST"),
        ("signature one digit longer", body, with_(sig=sig + "0"), "POST"),
        ("non-hex signature", body, with_(sig="sha256=" + "z" * 64), "POST"),
        ("non-ASCII signature", body, with_(sig="sha256=" + "é" * 64), "POST"),
        ("signed with another secret", body, with_(sig=other), "POST"),
        ("signed with an empty secret", body, with_(sig=empty_key), "POST"),
        ("body changed by one bit", bytes(flipped), good, "POST"),
        ("body with one byte appended", body + b" ", good, "POST"),
        ("JSON re-serialized", reserialized, good, "POST"),
        ("signature over the body only", body, with_(sig=body_only), "POST"),
        ("signature of another request", body, with_(sig=other_request), "POST"),
        ("timestamp changed, signature kept", body, with_(ts=str(now + 1)), "POST"),
        ("stale timestamp, correctly signed", body, stale, "POST"),
        ("future timestamp, correctly signed", body, future, "POST"),
        ("timestamp 0, correctly signed", body, epoch, "POST"),
        ("non-numeric timestamp", body, with_(ts="yesterday"), "POST"),
        ("negative timestamp", body, with_(ts="-" + stamp), "POST"),
        ("fractional timestamp", body, with_(ts=stamp + ".5"), "POST"),
        ("GET instead of POST", body, good, "GET"),
    ]


CASES = [case for case, *_ in _forgeries()]


def test_the_forgery_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len(set(CASES)) == len(CASES)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES)
async def test_forged_requests_are_refused_and_deliver_nothing(channel: Any, case: str) -> None:
    adapter, inbox, _ = channel
    body, headers, method = next((b, h, m) for name, b, h, m in _forgeries() if name == case)  # signed just now
    answer = await adapter.handle_webhook(request(body, headers, method))
    assert answer.status in (401, 403, 405), (case, answer.status, answer.body)
    assert inbox.messages == []
    detail = json.loads(answer.body)["detail"]
    assert SECRET not in detail and "\n" not in detail


@pytest.mark.asyncio
async def test_a_replayed_request_is_refused(channel: Any) -> None:
    adapter, inbox, _ = channel
    body = message_body()
    headers = sign_webhook(SECRET, body)
    first = await adapter.handle_webhook(request(body, headers))
    assert (first.status, json.loads(first.body)["status"]) == (200, "accepted")
    replay = await adapter.handle_webhook(request(body, headers))
    assert replay.status == 409
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_a_redelivery_signed_again_reaches_the_host_which_decides(channel: Any) -> None:
    adapter, inbox, _ = channel
    body = message_body()
    inbox.answer = Delivery.DUPLICATE  # what the communication slice says the second time
    for stamp in (int(time.time()) - 1, int(time.time())):
        answer = await adapter.handle_webhook(request(body, sign_webhook(SECRET, body, stamp)))
        assert answer.status == 200 and json.loads(answer.body)["status"] == "duplicate"
    assert len(inbox.messages) == 2  # both authentic; de-duplication by id is the slice's


@pytest.mark.asyncio
async def test_uppercase_hex_is_the_same_signature(channel: Any) -> None:
    adapter, inbox, _ = channel
    body = message_body()
    headers = sign_webhook(SECRET, body)
    headers["X-Refactorbot-Signature"] = "sha256=" + headers["X-Refactorbot-Signature"][7:].upper()
    answer = await adapter.handle_webhook(request(body, headers))
    assert answer.status == 200
    assert inbox.messages[0].text == "hello"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"not json", 400, "UTF-8 JSON"),
        (b"\xff\xfe", 400, "UTF-8 JSON"),
        (json.dumps([1, 2]).encode(), 422, "invalid message"),
        (message_body(text=""), 422, "text"),
        (message_body(extra="field"), 422, "extra"),
        (message_body(chat_id=5), 422, "chat_id"),
        (message_body(text="x" * 32_001), 422, "text"),
    ],
)
async def test_authentic_but_invalid_messages_get_a_clear_error(
    channel: Any, body: bytes, status: int, fragment: str
) -> None:
    adapter, inbox, _ = channel
    answer = await adapter.handle_webhook(request(body, sign_webhook(SECRET, body)))
    assert answer.status == status
    detail = json.loads(answer.body)["detail"]
    assert fragment in detail and "\n" not in detail
    assert inbox.messages == []


@pytest.mark.asyncio
async def test_busy_and_unavailable_are_told_to_the_sender(channel: Any) -> None:
    adapter, inbox, _ = channel
    inbox.answer = Delivery.BUSY
    body = message_body(id="m-busy")
    answer = await adapter.handle_webhook(request(body, sign_webhook(SECRET, body)))
    assert answer.status == 429 and answer.headers["Retry-After"] == "5"
    await adapter.stop()
    body = message_body(id="m-late")
    answer = await adapter.handle_webhook(request(body, sign_webhook(SECRET, body)))
    assert answer.status == 503


@pytest.mark.asyncio
async def test_a_reply_is_signed_and_carries_the_chat(channel: Any) -> None:
    adapter, _, receiver = channel
    ids = await adapter.send(
        OutgoingMessage(channel="webhook", chat_id="room-9", text="**hi**", reply_to="m-1", text_format="platform")
    )
    assert ids == ["received-1"]
    (reply,) = receiver.wait_for_messages(1)
    assert {k: reply[k] for k in ("channel", "chat_id", "text", "reply_to", "format")} == {
        "channel": "webhook",
        "chat_id": "room-9",
        "text": "**hi**",
        "reply_to": "m-1",
        "format": "markdown",
    }
    raw = receiver.requests[-1]
    stamp = raw.headers["x-refactorbot-timestamp"]
    assert raw.headers["x-refactorbot-signature"] == signature(SECRET, stamp, raw.body)
    assert receiver.rejected == []


@pytest.mark.asyncio
async def test_callback_failures_become_typed_send_errors(channel: Any) -> None:
    adapter, _, receiver = channel
    out = OutgoingMessage(channel="webhook", chat_id="room-1", text="hi", text_format="platform")
    receiver.script(PlatformResponse.error(429, "slow down", {"Retry-After": "7"}))
    with pytest.raises(SendFailed) as limited:
        await adapter.send(out)
    assert (limited.value.retry_after, limited.value.permanent) == (7.0, False)
    receiver.script(PlatformResponse.error(503))
    with pytest.raises(SendFailed) as unavailable:
        await adapter.send(out)
    assert not unavailable.value.permanent and unavailable.value.retry_after is None
    receiver.script(PlatformResponse.error(404, "no such chat"))
    with pytest.raises(SendFailed, match="404 .*no such chat") as refused:
        await adapter.send(out)
    assert refused.value.permanent
    assert receiver.messages == []


@pytest.mark.asyncio
async def test_an_unreachable_callback_is_a_retryable_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = WebhookChannel({"callback_url": f"http://127.0.0.1:{port}/replies", "timeout": 2}, env=ENV)
    adapter.bind(Inbox())
    await adapter.start()
    try:
        with pytest.raises(SendFailed, match="unreachable") as failed:
            await adapter.send(OutgoingMessage(channel="webhook", chat_id="c", text="hi"))
    finally:
        await adapter.stop()
    assert not failed.value.permanent


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("config", "env", "reason"),
    [
        ({"callback_url": "http://127.0.0.1:9/x"}, {}, "REFACTORBOT_WEBHOOK_SECRET is not set"),
        ({"callback_url": "http://127.0.0.1:9/x"}, {"REFACTORBOT_WEBHOOK_SECRET": "short"}, "at least 16"),
        ({}, ENV, "set callback_url"),
        ({"callback_url": "http://127.0.0.1:9/x", "secret_env": "MY_HOOK_SECRET"}, ENV, "MY_HOOK_SECRET is not set"),
    ],
)
async def test_start_fails_with_one_line_naming_what_is_missing(
    config: dict[str, Any], env: dict[str, str], reason: str
) -> None:
    adapter = WebhookChannel(config, env=env)
    with pytest.raises(Exception, match=reason) as failed:
        await adapter.start()
    assert "\n" not in str(failed.value)
    assert "short" not in str(failed.value)  # a secret's value never appears in an error


def test_enabled_by_default_only_when_the_secret_is_set() -> None:
    settings = WebhookChannel.Config()
    assert WebhookChannel.enabled_by_default(settings, ENV)
    assert not WebhookChannel.enabled_by_default(settings, {})
    named = WebhookChannel.Config(secret_env="OTHER")
    assert WebhookChannel.enabled_by_default(named, {"OTHER": "x"})


def test_a_secret_value_is_refused_as_secret_env() -> None:
    with pytest.raises(ConfigError) as bad:
        WebhookChannel({"secret_env": "s3cret-value-with-dashes!"})
    assert "s3cret" not in str(bad.value)


@pytest.mark.asyncio
async def test_the_replay_memory_is_bounded_and_refuses_rather_than_forget() -> None:
    with WebhookReceiver(SECRET) as receiver:
        adapter = WebhookChannel({"callback_url": receiver.url, "replay_cache": 100}, env=ENV)
        inbox = Inbox()
        adapter.bind(inbox)
        await adapter.start()
        try:
            statuses = []
            for i in range(101):
                body = message_body(id=f"m-{i}")
                statuses.append((await adapter.handle_webhook(request(body, sign_webhook(SECRET, body)))).status)
        finally:
            await adapter.stop()
    assert statuses[:100] == [200] * 100
    assert statuses[100] == 503
    assert len(inbox.messages) == 100


def test_replay_guard_forgets_keys_when_they_expire() -> None:
    from refactorbot.channels import ReplayCacheFull, ReplayGuard

    now = [1000.0]
    guard = ReplayGuard(max_entries=2, clock=lambda: now[0])
    assert guard.check(b"a", 1010) and guard.check(b"b", 1020)
    assert not guard.check(b"a", 1010)
    with pytest.raises(ReplayCacheFull):
        guard.check(b"c", 1030)
    now[0] = 1015.0  # "a" expired: its place is free, and it may be seen again
    assert guard.check(b"c", 1030) and len(guard) == 2
    assert not guard.check(b"b", 1020)
