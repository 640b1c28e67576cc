"""The testing kit's loopback Discord, used as a bot does: REST v10 over HTTP (auth, messages,
replies, edits, typing, rate limits, Discord's error bodies) and the Gateway over a websocket
(HELLO, IDENTIFY checks, READY, heartbeats, dispatches, RESUME with replay)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from refactorbot.testing._http import send
from refactorbot.testing.discord import DiscordServer, Intents

TOKEN = "bot-token-loopback"
CHANNEL = "200000000000000001"


def rest(discord: DiscordServer, method: str, path: str, body: Any = None, token: str = TOKEN) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bot {token}", "Content-Type": "application/json"}
    status, raw, answered = send(f"{discord.api_base}{path}", method=method, body=data, headers=headers)
    return status, json.loads(raw) if raw else None, answered


@pytest.fixture
def discord() -> Iterator[DiscordServer]:
    with DiscordServer(TOKEN, bot_name="memo") as server:
        yield server


def test_rest_messages_edits_typing_and_errors(discord: DiscordServer) -> None:
    status, me, _ = rest(discord, "GET", "/users/@me")
    assert status == 200 and (me["id"], me["username"], me["bot"]) == (discord.bot_id, "memo", True)
    assert rest(discord, "GET", "/users/@me", token="wrong")[:2] == (401, {"message": "401: Unauthorized", "code": 0})
    gateway = rest(discord, "GET", "/gateway/bot")[1]
    assert gateway["url"] == discord.gateway_url and gateway["session_start_limit"]["remaining"] == 1000
    assert rest(discord, "GET", "/nowhere")[0] == 404

    user = discord.message(CHANNEL, "hi bot")
    status, sent, _ = rest(
        discord,
        "POST",
        f"/channels/{CHANNEL}/messages",
        {"content": "hello", "message_reference": {"message_id": user["id"]}, "allowed_mentions": {"parse": []}},
    )
    assert status == 200 and sent["content"] == "hello" and sent["author"]["id"] == discord.bot_id
    assert discord.texts(CHANNEL) == ["hello"] and discord.texts(CHANNEL, from_bot=False) == ["hi bot", "hello"]
    for body, code in [
        ({"content": ""}, 50006),
        ({"content": "x" * 2001}, 50035),
        ({"content": 5}, 50035),
        ({"content": "re", "message_reference": {"message_id": "999"}}, 50035),
    ]:
        answer = rest(discord, "POST", f"/channels/{CHANNEL}/messages", body)
        assert (answer[0], answer[1]["code"]) == (400, code), body
    loose = {"content": "re", "message_reference": {"message_id": "999", "fail_if_not_exists": False}}
    assert rest(discord, "POST", f"/channels/{CHANNEL}/messages", loose)[0] == 200
    discord.unknown_channels.add("300")
    discord.closed_dms.add("301")
    assert rest(discord, "POST", "/channels/300/messages", {"content": "x"})[1] == {
        "message": "Unknown Channel",
        "code": 10003,
    }
    assert rest(discord, "POST", "/channels/301/messages", {"content": "x"})[1]["code"] == 50007

    edited = rest(discord, "PATCH", f"/channels/{CHANNEL}/messages/{sent['id']}", {"content": "hello again"})
    assert edited[0] == 200 and edited[1]["content"] == "hello again"
    assert discord.edits == [(CHANNEL, sent["id"], "hello again")]
    assert rest(discord, "PATCH", f"/channels/{CHANNEL}/messages/{user['id']}", {"content": "x"})[1]["code"] == 50005
    assert rest(discord, "PATCH", f"/channels/{CHANNEL}/messages/123", {"content": "x"})[1]["code"] == 10008
    assert rest(discord, "POST", f"/channels/{CHANNEL}/typing")[0] == 204
    assert discord.typing == [CHANNEL]

    discord.rate_limit(1.5, is_global=True)
    status, body, headers = rest(discord, "POST", f"/channels/{CHANNEL}/messages", {"content": "x"})
    assert (status, body) == (429, {"message": "You are being rate limited.", "retry_after": 1.5, "global": True})
    assert (headers["Retry-After"], headers["X-RateLimit-Global"], headers["X-RateLimit-Scope"]) == (
        "2",
        "true",
        "global",
    )

    interaction = discord.interaction(CHANNEL, "ask", {"question": "why?"})
    hook = f"/webhooks/{discord.application_id}/{interaction['token']}"
    assert rest(discord, "PATCH", f"{hook}/messages/@original", {"content": "because"}, token="")[0] == 200
    assert rest(discord, "POST", hook, {"content": "and more"}, token="")[0] == 200
    assert [r["content"] for r in discord.interaction_replies] == ["because", "and more"]
    assert (
        rest(discord, "POST", f"/webhooks/{discord.application_id}/unknown-token", {"content": "x"}, token="")[1][
            "code"
        ]
        == 10015
    )


def receive(ws: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(ws.recv(timeout=30))
    return payload


def identify(intents: int = Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT, token: str = TOKEN) -> str:
    return json.dumps(
        {
            "op": 2,
            "d": {"token": token, "intents": intents, "properties": {"os": "linux", "browser": "rb", "device": "rb"}},
        }
    )


def test_gateway_identify_heartbeat_dispatch_and_resume(discord: DiscordServer) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"{discord.gateway_url}/?v=10&encoding=json"
    with connect(url) as ws:
        hello = receive(ws)
        assert hello == {"op": 10, "d": {"heartbeat_interval": 41_250}, "s": None, "t": None}
        ws.send(identify())
        ready = receive(ws)
        assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
        session = ready["d"]["session_id"]
        assert ready["d"]["user"]["id"] == discord.bot_id
        ws.send(json.dumps({"op": 1, "d": 1}))
        assert receive(ws) == {"op": 11, "d": None}
        pushed = discord.push_message(CHANNEL, "first")
        event = receive(ws)
        assert (event["t"], event["s"], event["d"]["id"]) == ("MESSAGE_CREATE", 2, pushed["id"])
        discord.request_heartbeat()
        assert receive(ws)["op"] == 1
        ws.send(identify())  # a second IDENTIFY on the same connection
        with pytest.raises(ConnectionClosed) as closed:
            receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4005

    missed = discord.push_message(CHANNEL, "while away")
    with connect(url) as ws:
        receive(ws)
        ws.send(json.dumps({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}}))
        replayed = receive(ws)
        assert (replayed["t"], replayed["d"]["id"]) == ("MESSAGE_CREATE", missed["id"])
        assert receive(ws)["t"] == "RESUMED"
        discord.invalidate_session(resumable=False)
        assert receive(ws) == {"op": 9, "d": False}
    with connect(url) as ws:
        receive(ws)
        ws.send(json.dumps({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}}))
        assert receive(ws) == {"op": 9, "d": False}  # the session was invalidated: identify anew


@pytest.mark.parametrize(
    ("query", "first", "code"),
    [
        ("?v=9&encoding=json", None, 4012),
        ("?v=10&encoding=json", identify(token="wrong"), 4004),
        ("?v=10&encoding=json", identify(intents=-1), 4013),
        ("?v=10&encoding=json", identify(intents=Intents.GUILD_MEMBERS), 4014),
        ("?v=10&encoding=json", "not json", 4002),
        ("?v=10&encoding=json", json.dumps({"op": 99, "d": None}), 4001),
    ],
)
def test_gateway_closes_with_discords_codes(discord: DiscordServer, query: str, first: str | None, code: int) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(f"{discord.gateway_url}/{query}") as ws, pytest.raises(ConnectionClosed) as closed:
        if first is not None:
            receive(ws)  # HELLO
            ws.send(first)
        receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
