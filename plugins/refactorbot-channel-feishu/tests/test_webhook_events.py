"""Event webhooks: the forgery corpus, replays, the URL-verification challenge, token-only mode, message parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from feishu_fixtures import ENCRYPT_KEY, VERIFICATION_TOKEN, env_for
from refactorbot.channels import Delivery, WebhookRequest
from refactorbot.testing import Inbox
from refactorbot.testing.feishu import (
    FeishuServer,
    encrypt_body,
    mention,
    message_event,
    sign_headers,
    url_verification,
)
from refactorbot_channel_feishu.channel import FeishuChannel

OTHER_KEY = "another-encrypt-key-9876543210"


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(method, "/hooks/feishu", {k.lower(): v for k, v in headers.items()}, {}, body)


def event(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "chat_id": "oc_forged",
        "sender_open_id": "ou_mallory0000000000000000000001",
        "text": "run rm -rf",
        "message_id": "om_forged0001",
        "token": VERIFICATION_TOKEN,
        **fields,
    }
    return message_event(**values)


def _forgeries() -> list[tuple[str, bytes, dict[str, str], str]]:
    """Return (case, body, headers, method): requests that must be refused with nothing delivered."""
    body = encrypt_body(event(), ENCRYPT_KEY)
    now = int(time.time())
    good = sign_headers(body, ENCRYPT_KEY, timestamp=now, nonce="n0nce")
    sig = good["X-Lark-Signature"]

    def with_(**changes: str | None) -> dict[str, str]:
        names = {"sig": "X-Lark-Signature", "ts": "X-Lark-Request-Timestamp", "nonce": "X-Lark-Request-Nonce"}
        headers = dict(good)
        for key, value in changes.items():
            if value is None:
                headers.pop(names[key])
            else:
                headers[names[key]] = value
        return headers

    flipped = bytearray(body)
    flipped[20] ^= 0x01
    reserialized = json.dumps(json.loads(body), indent=1).encode()
    body_only = hashlib.sha256(body).hexdigest()
    as_hmac = hmac.new(ENCRYPT_KEY.encode(), f"{now}n0nce".encode() + body, hashlib.sha256).hexdigest()
    other_key = sign_headers(body, OTHER_KEY, timestamp=now, nonce="n0nce")["X-Lark-Signature"]
    empty_key = sign_headers(body, "", timestamp=now, nonce="n0nce")["X-Lark-Signature"]
    other_body = encrypt_body(event(text="something else"), ENCRYPT_KEY)
    other_request = sign_headers(other_body, ENCRYPT_KEY, timestamp=now, nonce="n0nce")["X-Lark-Signature"]
    wrong_token = encrypt_body(event(token="not-the-token"), ENCRYPT_KEY)
    no_token = encrypt_body(event(token=""), ENCRYPT_KEY)
    foreign = encrypt_body(event(), OTHER_KEY)
    unsigned_challenge_wrong_token = encrypt_body(url_verification("not-the-token"), ENCRYPT_KEY)
    plain = json.dumps(event()).encode()
    return [
        ("no headers", body, {"Content-Type": "application/json"}, "POST"),
        ("signature missing", body, with_(sig=None), "POST"),
        ("timestamp missing", body, with_(ts=None), "POST"),
        ("nonce missing", body, with_(nonce=None), "POST"),
        ("empty signature", body, with_(sig=""), "POST"),
        ("truncated signature", body, with_(sig=sig[:-1]), "POST"),
        ("signature one digit longer", body, with_(sig=sig + "0"), "POST"),
        ("sha256= prefix added", body, with_(sig="sha256=" + sig[:57]), "POST"),
        ("non-hex signature", body, with_(sig="z" * 64), "POST"),
        ("non-ASCII signature", body, with_(sig="é" * 64), "POST"),
        ("signed with another encrypt key", body, with_(sig=other_key), "POST"),
        ("signed with an empty key", body, with_(sig=empty_key), "POST"),
        ("body changed by one bit", bytes(flipped), good, "POST"),
        ("body with one byte appended", body + b" ", good, "POST"),
        ("JSON re-serialized", reserialized, good, "POST"),
        ("signature over the body only", body, with_(sig=body_only), "POST"),
        ("HMAC instead of the documented digest", body, with_(sig=as_hmac), "POST"),
        ("signature of another request", body, with_(sig=other_request), "POST"),
        ("timestamp changed, signature kept", body, with_(ts=str(now + 1)), "POST"),
        ("nonce changed, signature kept", body, with_(nonce="n0nce2"), "POST"),
        ("stale timestamp, correctly signed", body, sign_headers(body, ENCRYPT_KEY, timestamp=now - 301), "POST"),
        ("future timestamp, correctly signed", body, sign_headers(body, ENCRYPT_KEY, timestamp=now + 3600), "POST"),
        ("timestamp in milliseconds", body, sign_headers(body, ENCRYPT_KEY, timestamp=now * 1000), "POST"),
        ("non-numeric timestamp", body, with_(ts="yesterday"), "POST"),
        ("signed, but the token inside is wrong", wrong_token, sign_headers(wrong_token, ENCRYPT_KEY), "POST"),
        ("signed, but no token inside", no_token, sign_headers(no_token, ENCRYPT_KEY), "POST"),
        ("unsigned event encrypted with another key", foreign, {}, "POST"),
        ("unsigned event encrypted with our key", body, {}, "POST"),
        ("unsigned plain JSON event", plain, {}, "POST"),
        ("unsigned challenge with a wrong token", unsigned_challenge_wrong_token, {}, "POST"),
        ("GET instead of POST", body, good, "GET"),
    ]


CASES = [case for case, *_ in _forgeries()]


def test_the_forgery_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20 and len(set(CASES)) == len(CASES)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES)
async def test_forged_requests_are_refused_and_deliver_nothing(webhook_channel: Any, case: str) -> None:
    adapter, inbox, _ = webhook_channel
    body, headers, method = next((b, h, m) for name, b, h, m in _forgeries() if name == case)
    answer = await adapter.handle_webhook(request(body, headers, method))
    assert answer.status in (401, 403, 405), (case, answer.status, answer.body)
    assert inbox.messages == []
    detail = json.loads(answer.body)["detail"]
    assert ENCRYPT_KEY not in detail and VERIFICATION_TOKEN not in detail and "\n" not in detail
    assert "challenge" not in json.loads(answer.body)


@pytest.mark.asyncio
async def test_an_authentic_event_is_delivered_and_its_replay_refused(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    body = encrypt_body(event(message_id="om_real1", text="hello"), ENCRYPT_KEY)
    headers = sign_headers(body, ENCRYPT_KEY)
    first = await adapter.handle_webhook(request(body, headers))
    assert (first.status, json.loads(first.body)) == (200, {"msg": "accepted"})
    replay = await adapter.handle_webhook(request(body, headers))
    assert replay.status == 409
    assert [m.text for m in inbox.messages] == ["hello"]


@pytest.mark.asyncio
async def test_a_redelivery_reaches_the_host_which_drops_it(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    inbox.answer = Delivery.DUPLICATE  # what the communication slice says for a message id seen before
    same = event(message_id="om_again")
    for _ in range(2):  # Feishu redelivers with a new timestamp, nonce and signature
        body = encrypt_body(same, ENCRYPT_KEY)
        answer = await adapter.handle_webhook(request(body, sign_headers(body, ENCRYPT_KEY)))
        assert answer.status == 200 and json.loads(answer.body) == {"msg": "duplicate"}
    assert [m.message_id for m in inbox.messages] == ["om_again", "om_again"]


@pytest.mark.asyncio
async def test_uppercase_signature_hex_is_the_same_signature(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    body = encrypt_body(event(message_id="om_upper"), ENCRYPT_KEY)
    headers = sign_headers(body, ENCRYPT_KEY)
    headers["X-Lark-Signature"] = headers["X-Lark-Signature"].upper()
    assert (await adapter.handle_webhook(request(body, headers))).status == 200
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_the_url_verification_challenge_is_answered_only_with_the_token(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    unsigned = encrypt_body(url_verification(VERIFICATION_TOKEN, "chal-123"), ENCRYPT_KEY)
    answer = await adapter.handle_webhook(request(unsigned, {}))
    assert (answer.status, json.loads(answer.body)) == (200, {"challenge": "chal-123"})
    signed = encrypt_body(url_verification(VERIFICATION_TOKEN, "chal-456"), ENCRYPT_KEY)
    answer = await adapter.handle_webhook(request(signed, sign_headers(signed, ENCRYPT_KEY)))
    assert json.loads(answer.body) == {"challenge": "chal-456"}
    assert inbox.messages == []


@pytest.mark.asyncio
async def test_busy_and_stopped_are_told_to_feishu_so_it_redelivers(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    inbox.answer = Delivery.BUSY
    body = encrypt_body(event(message_id="om_busy"), ENCRYPT_KEY)
    answer = await adapter.handle_webhook(request(body, sign_headers(body, ENCRYPT_KEY)))
    assert answer.status == 429 and answer.headers["Retry-After"] == "5"
    await adapter.stop()
    body = encrypt_body(event(message_id="om_late"), ENCRYPT_KEY)
    assert (await adapter.handle_webhook(request(body, sign_headers(body, ENCRYPT_KEY)))).status == 503


# -- without an encrypt key: the verification token is the proof ------------------------------------


@pytest.mark.asyncio
async def test_token_only_mode_checks_the_token_and_answers_the_challenge(feishu: FeishuServer) -> None:
    env = env_for(feishu, FEISHU_VERIFICATION_TOKEN=VERIFICATION_TOKEN)
    adapter = FeishuChannel({"api_base": feishu.url, "mode": "webhook"}, env=env)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        refused = [
            json.dumps(event(token="wrong")).encode(),
            json.dumps(event(token="")).encode(),
            json.dumps(event(token=VERIFICATION_TOKEN[:-1])).encode(),
            json.dumps(event(token=VERIFICATION_TOKEN + "x")).encode(),
            json.dumps(url_verification("wrong", "c")).encode(),
            json.dumps({"challenge": "c", "type": "url_verification"}).encode(),
            encrypt_body(event(), ENCRYPT_KEY),
        ]
        for body in refused:
            answer = await adapter.handle_webhook(request(body, {}))
            assert answer.status in (401, 403), (body, answer.status)
        bad = await adapter.handle_webhook(request(b"not json", {}))
        assert bad.status == 400
        challenge = json.dumps(url_verification(VERIFICATION_TOKEN, "abc")).encode()
        assert json.loads((await adapter.handle_webhook(request(challenge, {}))).body) == {"challenge": "abc"}
        ok = json.dumps(event(message_id="om_plain", text="hi")).encode()
        assert (await adapter.handle_webhook(request(ok, {}))).status == 200
    finally:
        await adapter.stop()
    assert [m.text for m in inbox.messages] == ["hi"]


@pytest.mark.asyncio
async def test_webhook_mode_needs_the_verification_token(feishu: FeishuServer) -> None:
    adapter = FeishuChannel({"api_base": feishu.url, "mode": "webhook"}, env=env_for(feishu))
    with pytest.raises(Exception, match="FEISHU_VERIFICATION_TOKEN is not set") as failed:
        await adapter.start()
    assert "\n" not in str(failed.value)


# -- what a message event becomes ---------------------------------------------------------------------


async def deliver(adapter: FeishuChannel, payload: dict[str, Any]) -> None:
    body = encrypt_body(payload, ENCRYPT_KEY)
    answer = await adapter.handle_webhook(request(body, sign_headers(body, ENCRYPT_KEY)))
    assert answer.status == 200, answer.body


@pytest.mark.asyncio
async def test_group_mentions_of_the_bot_are_detected_and_stripped(webhook_channel: Any) -> None:
    adapter, inbox, feishu = webhook_channel
    bot = mention("@_user_1", feishu.bot_open_id, "loopback bot")
    alice = mention("@_user_2", "ou_alice000000000000000000000001", "Alice")
    await deliver(
        adapter,
        event(
            message_id="om_g1",
            chat_type="group",
            text="@_user_1 ask @_user_2 about the deploy",
            mentions=[bot, alice],
        ),
    )
    only_alice = mention("@_user_1", "ou_alice000000000000000000000001", "Alice")
    await deliver(adapter, event(message_id="om_g2", chat_type="group", text="@_user_1 hi", mentions=[only_alice]))
    await deliver(adapter, event(message_id="om_g3", chat_type="group", text="lunch?"))
    first, second, third = inbox.messages
    assert (first.is_group, first.mentions_bot, first.text) == (True, True, "ask @Alice about the deploy")
    assert (second.mentions_bot, second.text) == (False, "@Alice hi")  # another user mentioned, not the bot
    assert (third.is_group, third.mentions_bot) == (True, False)


@pytest.mark.asyncio
async def test_a_direct_message_replying_and_a_post_message(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    await deliver(adapter, event(message_id="om_d1", chat_type="p2p", text="again", parent_id="om_bot9"))
    post = {"title": "Report", "content": [[{"tag": "text", "text": "line one"}], [{"tag": "a", "text": "a link"}]]}
    await deliver(adapter, event(message_id="om_d2", message_type="post", content=post, text=""))
    image = {"image_key": "img_v2_abc"}
    await deliver(adapter, event(message_id="om_d3", message_type="image", content=image, text=""))
    reply, posted, picture = inbox.messages
    assert (reply.is_group, reply.reply_to, reply.sender_id) == (False, "om_bot9", "ou_mallory0000000000000000000001")
    assert posted.text == "Report\nline one\na link"
    assert picture.text == "[image]" and picture.media[0].ref == "img_v2_abc"
    assert "raw" not in reply.model_dump(mode="json")


@pytest.mark.asyncio
async def test_other_events_are_acknowledged_and_not_delivered(webhook_channel: Any) -> None:
    adapter, inbox, _ = webhook_channel
    other = event()
    other["header"]["event_type"] = "im.chat.member.bot.added_v1"
    body = encrypt_body(other, ENCRYPT_KEY)
    answer = await adapter.handle_webhook(request(body, sign_headers(body, ENCRYPT_KEY)))
    assert (answer.status, json.loads(answer.body)) == (200, {"msg": "ignored"})
    assert inbox.messages == []
