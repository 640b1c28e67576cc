"""The testing kit's loopback Feishu Open Platform, used as an app does: tenant tokens, the bot's
info, text and post messages with replies, edits and ``uuid`` de-duplication, Feishu's error codes,
signed event requests, and the long connection's pbbp2 frames (ping/pong, events, acknowledgements)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from refactorbot.testing._http import send
from refactorbot.testing.feishu import FeishuServer, WireFrame, encrypt_body, message_event, sign_headers

CHAT = "oc_loopbackchat0001"


def api(feishu: FeishuServer, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, answer, _ = send(f"{feishu.url}{path}", method=method, body=data, headers=headers)
    return status, json.loads(answer)


@pytest.fixture
def feishu() -> Iterator[FeishuServer]:
    with FeishuServer() as server:
        yield server


def token_of(feishu: FeishuServer) -> str:
    status, answer = api(
        feishu,
        "POST",
        "/open-apis/auth/v3/tenant_access_token/internal",
        {"app_id": feishu.app_id, "app_secret": feishu.app_secret},
    )
    assert status == 200 and answer["code"] == 0 and answer["expire"] == 7200
    return str(answer["tenant_access_token"])


def text(content: str, **extra: Any) -> dict[str, Any]:
    return {"receive_id": CHAT, "msg_type": "text", "content": json.dumps({"text": content}), **extra}


def test_tokens_messages_replies_edits_and_errors(feishu: FeishuServer) -> None:
    refused = api(feishu, "POST", "/open-apis/auth/v3/tenant_access_token/internal", {"app_id": "x", "app_secret": "y"})
    assert (refused[1]["code"], refused[1]["msg"]) == (10014, "app secret invalid")
    assert api(feishu, "GET", "/open-apis/bot/v3/info")[1]["code"] == 99991661
    assert api(feishu, "GET", "/open-apis/bot/v3/info", token="t-forged")[1]["code"] == 99991663
    token = token_of(feishu)
    info = api(feishu, "GET", "/open-apis/bot/v3/info", token=token)[1]
    assert info["bot"]["open_id"] == feishu.bot_open_id
    assert api(feishu, "GET", "/elsewhere")[0] == 404

    send = "/open-apis/im/v1/messages?receive_id_type=chat_id"
    status, created = api(feishu, "POST", send, text("hello", uuid="req-1"), token=token)
    assert status == 200 and created["code"] == 0
    first = created["data"]["message_id"]
    again = api(feishu, "POST", send, text("hello", uuid="req-1"), token=token)[1]
    assert again["data"]["message_id"] == first  # the same uuid: the same message, sent once
    post = {
        "zh_cn": {
            "title": "Report",
            "content": [
                [
                    {"tag": "text", "text": "all ", "style": ["bold"]},
                    {"tag": "a", "text": "green", "href": "https://x.test"},
                ]
            ],
        }
    }
    posted = api(
        feishu, "POST", send, {"receive_id": CHAT, "msg_type": "post", "content": json.dumps(post)}, token=token
    )
    assert posted[1]["code"] == 0
    assert feishu.texts(CHAT) == ["hello", "Report\nall green"]

    for body, code in [
        ({"receive_id": CHAT, "msg_type": "image", "content": "{}"}, 230001),
        ({"receive_id": CHAT, "msg_type": "text", "content": "not json"}, 230001),
        ({"receive_id": CHAT, "msg_type": "text", "content": json.dumps({"text": ""})}, 230001),
        (
            {
                "receive_id": CHAT,
                "msg_type": "post",
                "content": json.dumps({"zh_cn": {"content": [[{"tag": "blink"}]]}}),
            },
            230001,
        ),
        (
            {
                "receive_id": CHAT,
                "msg_type": "post",
                "content": json.dumps({"zh_cn": {"content": [[{"tag": "a", "href": "ftp://x"}]]}}),
            },
            230001,
        ),
        ({"receive_id": CHAT, "msg_type": "text", "content": json.dumps({"text": "x" * 160_000})}, 230025),
        ({"msg_type": "text", "content": "{}"}, 99992402),
    ]:
        assert api(feishu, "POST", send, body, token=token)[1]["code"] == code, body
    assert api(feishu, "POST", "/open-apis/im/v1/messages", text("x"), token=token)[1]["code"] == 99992402

    inbound = message_event(chat_id=CHAT, sender_open_id="ou_alice000000000000000000000001", text="hi")
    feishu.record_inbound(inbound)
    user_message = inbound["event"]["message"]["message_id"]
    replied = api(feishu, "POST", f"/open-apis/im/v1/messages/{user_message}/reply", text("hi back"), token=token)[1]
    assert replied["data"]["parent_id"] == user_message
    assert api(feishu, "POST", "/open-apis/im/v1/messages/om_gone/reply", text("x"), token=token)[1]["code"] == 230011

    edited = api(
        feishu,
        "PUT",
        f"/open-apis/im/v1/messages/{first}",
        {"msg_type": "text", "content": json.dumps({"text": "hello!"})},
        token=token,
    )[1]
    assert edited["code"] == 0 and edited["data"]["updated"] is True
    assert feishu.edits == [{"message_id": first, "text": "hello!"}]
    assert api(feishu, "PUT", f"/open-apis/im/v1/messages/{user_message}", text("x"), token=token)[1]["code"] == 230011

    feishu.expire_tokens()
    assert api(feishu, "GET", "/open-apis/bot/v3/info", token=token)[1]["code"] == 99991663
    assert feishu.token_requests == 1


def test_signed_and_encrypted_event_requests() -> None:
    body = b'{"schema": "2.0"}'
    headers = sign_headers(body, "encrypt-key", timestamp=1700000000, nonce="n0nce")
    expected = hashlib.sha256(b"1700000000" + b"n0nce" + b"encrypt-key" + body).hexdigest()
    assert headers["X-Lark-Signature"] == expected and headers["X-Lark-Request-Timestamp"] == "1700000000"
    sealed = json.loads(encrypt_body({"hello": "world"}, "encrypt-key", iv=bytes(16)))
    import base64

    raw = base64.b64decode(sealed["encrypt"])
    assert raw[:16] == bytes(16) and len(raw) == 16 + 32  # IV, then two padded AES blocks of '{"hello": "world"}'


def test_the_long_connection_pongs_pushes_events_and_records_acknowledgements(feishu: FeishuServer) -> None:
    from websockets.sync.client import connect

    refused = api(feishu, "POST", "/callback/ws/endpoint", {"AppID": feishu.app_id, "AppSecret": "wrong"})
    assert refused[1]["code"] == 1000040343
    status, endpoint = api(
        feishu, "POST", "/callback/ws/endpoint", {"AppID": feishu.app_id, "AppSecret": feishu.app_secret}
    )
    assert status == 200 and endpoint["data"]["ClientConfig"]["PingInterval"] == 120
    with connect(endpoint["data"]["URL"]) as ws:
        ws.send(WireFrame(1, 0, 7, 0, [("type", "ping")]).encode())
        pong = WireFrame.decode(ws.recv(timeout=30))
        assert (pong.method, pong.header("type"), json.loads(pong.payload or b"{}")) == (
            0,
            "pong",
            {"PingInterval": 120},
        )
        event = message_event(chat_id=CHAT, sender_open_id="ou_alice000000000000000000000001", text="long " * 40)
        key = feishu.push_event(event, parts=2)
        frames = [WireFrame.decode(ws.recv(timeout=30)) for _ in range(2)]
        assert [(f.header("message_id"), f.header("sum"), f.header("seq")) for f in frames] == [
            (key, "2", "0"),
            (key, "2", "1"),
        ]
        assert json.loads(b"".join(f.payload or b"" for f in frames)) == event
        ack = WireFrame(
            frames[0].seq_id, 0, 7, 1, [("type", "event"), ("message_id", key)], json.dumps({"code": 200}).encode()
        )
        ws.send(ack.encode())
        assert feishu.wait_for_ack(key)["code"] == 200
        assert feishu.pings == 1 and feishu.connected == 1
    feishu.refuse_connections = True
    assert api(feishu, "POST", "/callback/ws/endpoint", {"AppID": feishu.app_id, "AppSecret": feishu.app_secret})[
        1
    ] == {"code": 1, "msg": "system busy"}
