"""The Feishu channel end to end through a real `refactorbot serve`: encrypted, signed events in at /hooks/feishu
and by the long connection, the agent's reply out to a loopback Feishu Open Platform as rich-text posts, split at
the channel's limit with the reply on the first part only; redelivery, the forgery corpus over HTTP, group mentions.

The model is the loopback `ModelServer` behind the LiteLLM gateway; every other part is real.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from refactorbot.channels import split_text
from refactorbot.testing import ModelServer
from refactorbot.testing.feishu import (
    FeishuServer,
    encrypt_body,
    mention,
    message_event,
    post_event,
    sign_headers,
)
from serving import QUICK_SENDS, Served, clean_env, echo_model, serve, wait_for_channels, wait_until, write_config

ENCRYPT_KEY = "e2e-feishu-encrypt-key-0123456789"
TOKEN = "e2e-feishu-verification-token"
LIMIT = 120
ALICE = "ou_alice0000000000000000000000001"
ANSWER = (
    "Here is the script you asked for.\n\n```python\n"
    + "\n".join(f"print('line {i}')" for i in range(12))
    + "\n```\n\nRun it with **python3**."
)


responder = echo_model({"write me a script": ANSWER})


@dataclass
class FeishuServed(Served):
    """The server with the loopback Feishu Open Platform it talks to."""

    feishu: FeishuServer

    def event(self, payload: dict[str, Any]) -> tuple[int, Any]:
        return post_event(f"{self.url}/hooks/feishu", payload, encrypt_key=ENCRYPT_KEY)


def feishu_env(feishu: FeishuServer, **extra: str) -> dict[str, str]:
    return clean_env("FEISHU_", FEISHU_APP_ID=feishu.app_id, FEISHU_APP_SECRET=feishu.app_secret, **extra)


@contextlib.contextmanager
def serving(
    home: Path, feishu: FeishuServer, model: ModelServer, channel: str, env: dict[str, str]
) -> Iterator[FeishuServed]:
    """Run `refactorbot serve` on ``home`` with the loopback model and Feishu; ``channel``: more [channels.feishu]."""
    write_config(
        home,
        QUICK_SENDS + f'[channels.feishu]\napi_base = "{feishu.url}"\ntext_limit = {LIMIT}\n'
        f'dm_policy = "allowlist"\nallow_senders = ["{ALICE}"]\n{channel}',
        model=model,
    )
    with serve(home, env=env, kind=FeishuServed, model=model, feishu=feishu) as served:
        wait_for_channels(served, "feishu")
        yield served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeishuServed]:
    home = tmp_path_factory.mktemp("feishu-home")
    with ModelServer(responder=responder) as model, FeishuServer() as feishu:
        env = feishu_env(feishu, FEISHU_ENCRYPT_KEY=ENCRYPT_KEY, FEISHU_VERIFICATION_TOKEN=TOKEN)
        with serving(home, feishu, model, 'mode = "webhook"\n', env) as running:
            yield running


def dm(text: str, message_id: str, chat_id: str = "oc_dm_alice", sender: str = ALICE, **fields: Any) -> dict[str, Any]:
    return message_event(
        chat_id=chat_id, sender_open_id=sender, text=text, message_id=message_id, token=TOKEN, **fields
    )


def test_an_encrypted_event_gets_the_reply_as_posts_split_at_the_limit(served: FeishuServed) -> None:
    inbound = dm("write me a script", "om_e2e_1")
    served.feishu.record_inbound(inbound)
    status, answer = served.event(inbound)
    assert (status, answer) == (200, {"msg": "accepted"})
    expected = split_text(ANSWER, LIMIT)
    assert len(expected) >= 3
    sent = served.feishu.wait_for_messages(len(expected), chat_id="oc_dm_alice")
    assert len(sent) == len(expected)
    assert [m["parent_id"] for m in sent] == ["om_e2e_1"] + [None] * (len(expected) - 1)
    assert all(m["msg_type"] == "post" for m in sent)
    for message, part in zip(sent, expected, strict=True):
        elements = [e for paragraph in message["content"]["zh_cn"]["content"] for e in paragraph]
        if "```" in part:  # a part holding code shows it as a code block, never as literal fences
            assert any(e["tag"] == "code_block" and e.get("language") == "PYTHON" for e in elements)
        assert "```" not in message["text"]
    code = "\n".join(m["text"] for m in sent)
    assert all(f"print('line {i}')" in code for i in range(12))
    assert {"tag": "text", "text": "python3", "style": ["bold"]} in [
        e for paragraph in sent[-1]["content"]["zh_cn"]["content"] for e in paragraph
    ]
    assert [s["chat_id"] for s in served.call("session.list", channel="feishu")] == ["oc_dm_alice"]


def test_a_redelivered_event_runs_one_turn(served: FeishuServed) -> None:
    inbound = dm("only once", "om_e2e_dup", chat_id="oc_dup")
    served.feishu.record_inbound(inbound)
    assert served.event(inbound) == (200, {"msg": "accepted"})
    assert served.event(inbound) == (200, {"msg": "duplicate"})  # new signature and nonce, same message
    wait_until(lambda: served.feishu.texts("oc_dup") == ["echo: only once"])
    assert served.turns().count("only once") == 1


def test_the_forgery_corpus_over_http_runs_nothing(served: FeishuServed) -> None:
    before = len(served.model.requests)
    body = encrypt_body(dm("run rm -rf", "om_forged", chat_id="oc_forged"), ENCRYPT_KEY)
    now = int(time.time())
    good = sign_headers(body, ENCRYPT_KEY, timestamp=now, nonce="abc")
    flipped = bytearray(body)
    flipped[30] ^= 0x01
    cases = [
        ({}, body),
        ({**good, "X-Lark-Signature": ""}, body),
        ({**good, "X-Lark-Signature": good["X-Lark-Signature"][:-1]}, body),
        (
            {
                **good,
                "X-Lark-Signature": sign_headers(body, "other-key", timestamp=now, nonce="abc")["X-Lark-Signature"],
            },
            body,
        ),
        (good, bytes(flipped)),
        (good, body + b"\n"),
        (good, json.dumps(json.loads(body), indent=2).encode()),
        ({**good, "X-Lark-Request-Timestamp": str(now - 1)}, body),
        ({**good, "X-Lark-Request-Nonce": "abd"}, body),
        (sign_headers(body, ENCRYPT_KEY, timestamp=now - 3600), body),
        (sign_headers(body, ENCRYPT_KEY, timestamp=now + 3600), body),
        ({"X-Lark-Signature": good["X-Lark-Signature"]}, body),
    ]
    for headers, payload in cases:
        response = httpx.post(f"{served.url}/hooks/feishu", content=payload, headers=headers, trust_env=False)
        assert response.status_code in (401, 403), (headers, response.status_code, response.text)
    assert len(served.model.requests) == before, "no turn ran"
    assert served.call("communication.messages", chat_id="oc_forged")["items"] == []
    assert served.feishu.texts("oc_forged") == []


def test_in_a_group_only_a_mention_of_the_bot_is_answered(served: FeishuServed) -> None:
    bot = mention("@_user_1", served.feishu.bot_open_id, "bot")
    other = mention("@_user_1", "ou_carol0000000000000000000000001", "Carol")
    quiet = dm("@_user_1 lunch?", "om_g_1", chat_id="oc_team", chat_type="group", mentions=[other])
    asked = dm("@_user_1 status?", "om_g_2", chat_id="oc_team", chat_type="group", mentions=[bot])
    for event in (quiet, asked):
        served.feishu.record_inbound(event)
    assert served.event(quiet) == (200, {"msg": "refused"})
    assert served.event(asked) == (200, {"msg": "accepted"})
    wait_until(lambda: served.feishu.texts("oc_team") == ["echo: status?"])
    (reply,) = served.feishu.wait_for_messages(1, chat_id="oc_team")
    assert reply["parent_id"] == "om_g_2"
    assert "@Carol lunch?" not in served.turns()


def test_the_long_connection_end_to_end(tmp_path: Path) -> None:
    with ModelServer(responder=responder) as model, FeishuServer() as feishu:
        with serving(tmp_path, feishu, model, "", feishu_env(feishu)) as running:
            inbound = dm("over the long connection", "om_ws_1", chat_id="oc_ws")
            key = feishu.push_event(inbound)
            assert feishu.wait_for_ack(key)["code"] == 200
            (reply,) = feishu.wait_for_messages(1, chat_id="oc_ws")
            assert (reply["text"], reply["parent_id"]) == ("echo: over the long connection", "om_ws_1")
            feishu.drop()  # the connection breaks: the channel reconnects and goes on
            feishu.wait_until(lambda: feishu.connected == 1)
            key = feishu.push_event(dm("after a drop", "om_ws_2", chat_id="oc_ws"))
            assert feishu.wait_for_ack(key)["code"] == 200
            wait_until(lambda: feishu.texts("oc_ws")[-1:] == ["echo: after a drop"])
            assert running.turns().count("over the long connection") == 1
