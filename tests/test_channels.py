"""Channels end to end through a real `refactorbot serve`: the webhook channel (signed JSON in, signed replies
out to a loopback receiver), its forgery corpus over HTTP, redelivery, 429 and failing sends, group rules, the
console channel on the server's own stdin/stdout, and a channel that cannot start shown by `refactorbot slices`.

The model is the loopback `ModelServer` behind the LiteLLM gateway; every other part is real.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from refactorbot.channels import split_text
from refactorbot.testing import ModelServer, PlatformResponse, WebhookReceiver, sign_webhook
from serving import QUICK_SENDS, Served, clean_env, cli, echo_model, serve, wait_for_channels, wait_until, write_config

SECRET = "integration-webhook-secret-0123456789"
LIMIT = 120
ANSWER = (
    "Here is the script you asked for.\n\n```python\n"
    + "\n".join(f"print('line {i}')" for i in range(12))
    + "\n```\n\nRun it with python3."
)


responder = echo_model({"write me a script": ANSWER})


@dataclass
class WebhookServed(Served):
    """The server with the loopback webhook receiver its replies go to."""

    receiver: WebhookReceiver

    def hook(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/hooks/webhook", content=body, headers=headers, trust_env=False, timeout=30)

    def send(self, **message: Any) -> httpx.Response:
        body = json.dumps(message).encode()
        return self.hook(body, sign_webhook(SECRET, body))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServed]:
    home = tmp_path_factory.mktemp("channels-home")
    with ModelServer(responder=responder) as model, WebhookReceiver(SECRET) as receiver:
        write_config(
            home,
            QUICK_SENDS + f'[channels.webhook]\ncallback_url = "{receiver.url}/replies"\ntext_limit = {LIMIT}\n'
            f'dm_policy = "allowlist"\nallow_senders = ["alice", "bob"]\n',
            model=model,
        )
        env = clean_env(REFACTORBOT_WEBHOOK_SECRET=SECRET, RB_CONSOLE_ENABLED="1")
        with serve(
            home, env=env, stdin=subprocess.PIPE, read_stdout=True, kind=WebhookServed, model=model, receiver=receiver
        ) as running:
            wait_for_channels(running)
            yield running


# -- the webhook channel ------------------------------------------------------------------------------


def test_a_signed_webhook_gets_the_agents_reply_on_its_chat_split_at_the_limit(served: WebhookServed) -> None:
    answer = served.send(id="e2e-1", chat_id="room-e2e", sender_id="alice", text="write me a script")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted", "id": "e2e-1"}
    expected = split_text(ANSWER, LIMIT)
    assert len(expected) >= 3 and any(p.startswith("```python\n") for p in expected[1:])
    wait_until(lambda: len([m for m in served.receiver.messages if m["chat_id"] == "room-e2e"]) == len(expected))
    replies = [m for m in served.receiver.messages if m["chat_id"] == "room-e2e"]
    assert [m["text"] for m in replies] == expected
    assert all(len(m["text"]) <= LIMIT and m["text"].count("```") % 2 == 0 for m in replies)
    assert [m["reply_to"] for m in replies] == ["e2e-1"] + [None] * (len(expected) - 1)
    assert served.receiver.rejected == [], "every reply was signed as the protocol says"
    sessions = served.call("session.list", channel="webhook")
    assert [s["chat_id"] for s in sessions] == ["room-e2e"]


def test_a_redelivered_message_runs_one_turn_and_a_replay_is_refused(served: WebhookServed) -> None:
    body = json.dumps({"id": "e2e-dup", "chat_id": "room-dup", "sender_id": "bob", "text": "only once"}).encode()
    headers = sign_webhook(SECRET, body)
    first = served.hook(body, headers)
    assert first.json()["status"] == "accepted"
    replay = served.hook(body, headers)
    assert replay.status_code == 409
    redelivered = served.hook(body, sign_webhook(SECRET, body, int(time.time()) + 1))
    assert (redelivered.status_code, redelivered.json()["status"]) == (200, "duplicate")
    wait_until(lambda: served.receiver.texts("room-dup") == ["echo: only once"])
    assert served.turns().count("only once") == 1


def _forgeries() -> list[tuple[str, bytes, dict[str, str], str]]:
    body = json.dumps({"id": "forged-1", "chat_id": "forged-room", "sender_id": "alice", "text": "run rm -rf"}).encode()
    now = int(time.time())
    good = sign_webhook(SECRET, body, now)
    sig, stamp = good["X-Refactorbot-Signature"], good["X-Refactorbot-Timestamp"]
    digest = sig.removeprefix("sha256=")

    def with_(sig_value: str | None = sig, ts_value: str | None = stamp) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if sig_value is not None:
            headers["X-Refactorbot-Signature"] = sig_value
        if ts_value is not None:
            headers["X-Refactorbot-Timestamp"] = ts_value
        return headers

    flipped = bytearray(body)
    flipped[-3] ^= 0x20
    reserialized = json.dumps(json.loads(body), separators=(",", ":")).encode()
    naive = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return [
        ("no signature or timestamp", body, with_(None, None), "POST"),
        ("no signature", body, with_(sig_value=None), "POST"),
        ("no timestamp", body, with_(ts_value=None), "POST"),
        ("empty signature", body, with_(sig_value=""), "POST"),
        ("prefix only", body, with_(sig_value="sha256="), "POST"),
        ("hex without prefix", body, with_(sig_value=digest), "POST"),
        ("wrong algorithm", body, with_(sig_value="sha512=" + digest), "POST"),
        ("truncated", body, with_(sig_value=sig[:-2]), "POST"),
        ("too long", body, with_(sig_value=sig + "ab"), "POST"),
        ("not hex", body, with_(sig_value="sha256=" + "g" * 64), "POST"),
        ("other secret", body, with_(sig_value=sign_webhook("x" * 32, body, now)["X-Refactorbot-Signature"]), "POST"),
        ("body changed by one byte", bytes(flipped), with_(), "POST"),
        ("byte appended", body + b"\n", with_(), "POST"),
        ("JSON re-serialized", reserialized, with_(), "POST"),
        ("signature of the body alone", body, with_(sig_value=naive), "POST"),
        ("timestamp moved, signature kept", body, with_(ts_value=str(now - 1)), "POST"),
        ("stale, correctly signed", body, sign_webhook(SECRET, body, now - 400), "POST"),
        ("future, correctly signed", body, sign_webhook(SECRET, body, now + 400), "POST"),
        ("timestamp not a number", body, with_(ts_value="now"), "POST"),
        ("timestamp in milliseconds", body, sign_webhook(SECRET, body, now * 1000), "POST"),
        ("GET", body, with_(), "GET"),
        ("PUT", body, with_(), "PUT"),
    ]


def test_the_forgery_corpus_is_refused_and_runs_nothing(served: WebhookServed) -> None:
    before = len(served.model.requests)
    corpus = _forgeries()
    assert len(corpus) >= 20
    for case, body, headers, method in corpus:
        response = httpx.request(
            method, f"{served.url}/hooks/webhook", content=body, headers=headers, trust_env=False, timeout=30
        )
        assert response.status_code in (401, 403, 405), (case, response.status_code, response.text)
    assert len(served.model.requests) == before, "no turn ran"
    assert served.call("communication.messages", chat_id="forged-room")["items"] == [], "nothing was recorded"
    assert [s for s in served.call("session.list", channel="webhook") if s["chat_id"] == "forged-room"] == []
    assert not any(m["chat_id"] == "forged-room" for m in served.receiver.messages)


def test_retry_after_from_the_callback_is_honoured(served: WebhookServed) -> None:
    served.receiver.script(PlatformResponse.error(429, "slow down", {"Retry-After": "1"}))
    assert served.send(id="e2e-429", chat_id="room-429", sender_id="alice", text="patience").status_code == 200
    wait_until(lambda: served.receiver.texts("room-429") == ["echo: patience"])
    limited = next(r for r in served.receiver.requests if b'"room-429"' in r.body)
    delivered = [r for r in served.receiver.requests if b'"room-429"' in r.body][-1]
    assert delivered.at - limited.at >= 1.0
    (row,) = served.call("communication.messages", chat_id="room-429", direction="out")["items"]
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_a_send_that_finally_fails_is_recorded_failed(served: WebhookServed) -> None:
    served.receiver.script(*[PlatformResponse.error(500, "receiver broken")] * 3)
    assert served.send(id="e2e-500", chat_id="room-500", sender_id="alice", text="anyone?").status_code == 200

    def out_row() -> dict[str, Any] | None:
        rows = served.call("communication.messages", chat_id="room-500", direction="out")["items"]
        return rows[0] if rows and rows[0]["status"] != "pending" else None

    wait_until(lambda: out_row() is not None)
    row = out_row()
    assert row is not None and row["status"] == "failed"
    assert row["detail"].endswith("/replies answered 500 (after 3 attempts)")
    assert served.receiver.texts("room-500") == []


def test_group_messages_need_a_mention(served: WebhookServed) -> None:
    quiet = served.send(id="g-1", chat_id="team", sender_id="alice", text="lunch?", is_group=True)
    assert quiet.json()["status"] == "refused"
    asked = served.send(
        id="g-2", chat_id="team", sender_id="alice", text="@bot status?", is_group=True, mentions_bot=True
    )
    assert asked.json()["status"] == "accepted"
    wait_until(lambda: served.receiver.texts("team") == ["echo: @bot status?"])
    assert "lunch?" not in served.turns()
    stranger = served.send(id="dm-1", chat_id="dm-mallory", sender_id="mallory", text="hi")
    assert stranger.json()["status"] == "refused"  # dm_policy = allowlist
    assert "hi" not in served.turns()


# -- the console channel, on the server's own terminal ------------------------------------------------


def test_lines_typed_into_serve_are_answered_on_its_stdout(served: WebhookServed) -> None:
    assert served.proc.stdin is not None
    served.proc.stdin.write("hello from the terminal\n")
    served.proc.stdin.flush()
    wait_until(lambda: "echo: hello from the terminal" in served.stdout)
    sessions = served.call("session.list", channel="console")
    assert [s["chat_id"] for s in sessions] == ["console"]


# -- a channel that cannot start ------------------------------------------------------------------------


def test_a_channel_that_cannot_start_is_shown_with_its_reason_and_the_rest_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_config(
        home,
        "[core]\nhealth_interval = 0.2\n[channels.webhook]\nenabled = true\n"
        'callback_url = "http://127.0.0.1:9/replies"\n',
    )
    with serve(home) as served:
        url, token = served.url, served.token
        reason = "environment variable REFACTORBOT_WEBHOOK_SECRET is not set"

        def row() -> dict[str, Any]:
            rows = httpx.get(f"{url}/slices", headers={"Authorization": f"Bearer {token}"}, trust_env=False).json()
            return next(r for r in rows if r["slice_id"] == "communication")

        wait_until(lambda: row()["status"] == "degraded")
        assert row()["error"].startswith(f"channel webhook: {reason} (retry in")
        shown = cli(home, "slices")
        assert shown.returncode == 0, shown.stderr
        line = next(x for x in shown.stdout.splitlines() if x.startswith("communication"))
        assert "degraded" in line and f"channel webhook: {reason}" in line
        channels = cli(home, "channels")
        assert channels.returncode == 0, channels.stderr
        webhook = next(x for x in channels.stdout.splitlines() if x.startswith("webhook"))
        assert "failed (retry in" in webhook and reason in webhook
        assert any(
            r["status"] == "running"
            for r in httpx.get(f"{url}/slices", headers={"Authorization": f"Bearer {token}"}, trust_env=False).json()
            if r["slice_id"] == "session"
        )
