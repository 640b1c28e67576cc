"""The WhatsApp channel end to end through a real `refactorbot serve`: Meta's signed deliveries in at
/hooks/whatsapp, the agent's reply out to a loopback WhatsApp Cloud API, split at WhatsApp's 4,096 characters with
the reply reference on the first part only, status callbacks turning the message log's delivery, the subscription
check and the forgery corpus over HTTP, redelivery and group mentions.

The model is the loopback `ModelServer` behind the LiteLLM gateway; every other part is real.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from refactorbot.testing import ModelServer
from refactorbot.testing.whatsapp import WhatsAppServer
from refactorbot_channel_whatsapp.channel import WhatsAppChannel
from serving import QUICK_SENDS, Served, clean_env, echo_model, serve, wait_for_channels, wait_until, write_config

TOKEN = "e2e-whatsapp-access-token-0123456789"
APP_SECRET = "e2e-whatsapp-app-secret-abcdef012345"
VERIFY = "e2e-verify-token-31415"
USER = "16505551234"
OTHER = "447700900123"
GROUP = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
LONG = (
    "Here is the migration plan.\n\n"
    + "\n\n".join(
        f"Step {i}: " + " ".join(f"move table_{i}_{j} to the new cluster" for j in range(12)) for i in range(14)
    )
    + "\n\n```sql\n"
    + "\n".join(f"ALTER TABLE t{i} SET TABLESPACE fast; -- step {i}" for i in range(60))
    + "\n```\n\nRun it in a maintenance window."
)


responder = echo_model({"plan the migration": LONG})


@dataclass
class WhatsAppServed(Served):
    """The server with the loopback WhatsApp Cloud API it talks to."""

    wa: WhatsAppServer

    def hook(self, body: bytes, headers: dict[str, str], method: str = "POST") -> httpx.Response:
        return httpx.request(
            method, f"{self.url}/hooks/whatsapp", content=body, headers=headers, trust_env=False, timeout=30
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhatsAppServed]:
    home = tmp_path_factory.mktemp("whatsapp-home")
    with ModelServer(responder=responder) as model, WhatsAppServer(access_token=TOKEN, app_secret=APP_SECRET) as wa:
        write_config(
            home,
            QUICK_SENDS + f'[channels.whatsapp]\napi_base = "{wa.api_base}"\nphone_number_id = "{wa.phone_number_id}"\n'
            f'dm_policy = "allowlist"\nallow_senders = ["{USER}", "{OTHER}"]\n',
            model=model,
        )
        env = clean_env(
            "WHATSAPP_", WHATSAPP_ACCESS_TOKEN=TOKEN, WHATSAPP_APP_SECRET=APP_SECRET, WHATSAPP_VERIFY_TOKEN=VERIFY
        )
        with serve(home, env=env, kind=WhatsAppServed, model=model, wa=wa) as running:
            wa.webhook_url = f"{running.url}/hooks/whatsapp"
            wait_for_channels(running, "whatsapp")
            yield running


def outgoing(served: WhatsAppServed, chat: str) -> list[dict[str, Any]]:
    return list(served.call("communication.messages", chat_id=chat, direction="out")["items"])


def test_a_message_gets_the_agents_reply_split_at_4096_with_the_reference_on_the_first_part(
    served: WhatsAppServed,
) -> None:
    body, headers = served.wa.inbound(USER, "plan the migration", message_id="wamid.e2e-1")
    answer = served.hook(body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["messages"] == ["accepted"]
    adapter = WhatsAppChannel(env={})
    expected = adapter.split(adapter.render(LONG))
    assert len(expected) >= 3 and any(p.startswith("```\n") for p in expected[1:])
    wait_until(lambda: len(served.wa.texts(USER)) == len(expected))
    sent = [m for m in served.wa.messages if m["to"] == USER]
    assert [m["text"] for m in sent] == expected
    assert all(len(m["text"]) <= 4096 and m["text"].count("```") % 2 == 0 for m in sent)
    assert [m.get("context") for m in sent] == ["wamid.e2e-1"] + [None] * (len(expected) - 1)
    assert {m["recipient_type"] for m in sent} == {"individual"}
    # Meta's status callbacks (sent, delivered for every part) reach /hooks/whatsapp and the message log
    wait_until(lambda: (outgoing(served, USER) or [{}])[0].get("delivery") == "delivered")
    (row,) = outgoing(served, USER)
    assert row["status"] == "sent" and row["platform_ids"] == [m["id"] for m in sent]
    assert all(answer == 200 for answer in served.wa.delivery_answers)


def test_a_status_reporting_failure_turns_the_record_failed_with_the_reason(served: WhatsAppServed) -> None:
    served.wa.fail_next_delivery(131026, "Message undeliverable", "The recipient's phone is off")
    body, headers = served.wa.inbound(OTHER, "are you there?", message_id="wamid.e2e-fail")
    assert served.hook(body, headers).status_code == 200
    wait_until(lambda: (outgoing(served, OTHER) or [{}])[0].get("status") == "failed")
    (row,) = outgoing(served, OTHER)
    assert row["delivery"] == "failed"
    assert "Message undeliverable" in row["detail"] and "131026" in row["detail"]
    assert served.wa.texts(OTHER) == ["echo: are you there?"], "WhatsApp took it, then reported it failed"


def test_the_subscription_check_over_http(served: WhatsAppServed) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "987654321"}
    good = httpx.get(f"{served.url}/hooks/whatsapp", params=query, trust_env=False, timeout=30)
    assert (good.status_code, good.text) == (200, "987654321")
    assert good.headers["content-type"].startswith("text/plain")
    bad = httpx.get(
        f"{served.url}/hooks/whatsapp", params={**query, "hub.verify_token": "guess"}, trust_env=False, timeout=30
    )
    assert bad.status_code == 403 and "987654321" not in bad.text


def test_a_redelivered_message_runs_one_turn(served: WhatsAppServed) -> None:
    body, headers = served.wa.inbound(USER, "only once please", message_id="wamid.e2e-dup")
    assert served.hook(body, headers).json()["messages"] == ["accepted"]
    again = served.hook(body, headers)  # Meta redelivers the very same signed body
    assert (again.status_code, again.json()["messages"]) == (200, ["duplicate"])
    wait_until(lambda: "echo: only once please" in served.wa.texts(USER))
    assert served.turns().count("only once please") == 1


def test_forged_deliveries_are_refused_and_run_nothing(served: WhatsAppServed) -> None:
    body, good = served.wa.inbound(USER, "forged order", message_id="wamid.e2e-forged")
    digest = good["X-Hub-Signature-256"][7:]
    flipped = bytearray(body)
    flipped[40] ^= 0x01

    def sig(value: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Hub-Signature-256": value}

    def keyed(key: bytes, data: bytes = body) -> dict[str, str]:
        return sig("sha256=" + hmac.new(key, data, hashlib.sha256).hexdigest())

    corpus = [
        (body, {"Content-Type": "application/json"}, "POST"),
        (body, sig(""), "POST"),
        (body, sig("sha256="), "POST"),
        (body, sig(digest), "POST"),
        (body, sig("sha1=" + digest[:40]), "POST"),
        (body, sig("sha256=" + digest[:-1]), "POST"),
        (body, sig("sha256=" + digest + "a"), "POST"),
        (body, sig("sha256=" + "z" * 64), "POST"),
        (body, keyed(b"other-secret"), "POST"),
        (body, keyed(b""), "POST"),
        (body, keyed(TOKEN.encode()), "POST"),
        (body, keyed(VERIFY.encode()), "POST"),
        (body, sig("sha256=" + hashlib.sha256(body).hexdigest()), "POST"),
        (bytes(flipped), good, "POST"),
        (body + b"\n", good, "POST"),
        (body[:-1], good, "POST"),
        (json.dumps(json.loads(body), separators=(",", ":")).encode(), good, "POST"),
        (json.dumps(json.loads(body), indent=1).encode(), good, "POST"),
        (body, good, "PUT"),
        (body, good, "DELETE"),
    ]
    before = len(served.model.requests)
    for data, headers, method in corpus:
        answer = served.hook(data, headers, method)
        assert answer.status_code in (401, 403, 405), (headers, method, answer.status_code, answer.text)
    assert len(served.model.requests) == before, "no turn ran"
    assert not [
        m
        for m in served.call("communication.messages", direction="in", limit=200)["items"]
        if m["text"] == "forged order"
    ]
    assert "forged order" not in served.turns()


def test_in_a_group_the_agent_answers_only_when_mentioned(served: WhatsAppServed) -> None:
    quiet, headers = served.wa.inbound(USER, "lunch anyone?", group_id=GROUP, message_id="wamid.g-1")
    assert served.hook(quiet, headers).json()["messages"] == ["refused"]
    asked, headers = served.wa.inbound(
        USER, f"@{served.wa.display_phone_number} status?", group_id=GROUP, message_id="wamid.g-2"
    )
    assert served.hook(asked, headers).json()["messages"] == ["accepted"]
    wait_until(lambda: served.wa.texts(GROUP) == [f"echo: @{served.wa.display_phone_number} status?"])
    (reply,) = [m for m in served.wa.messages if m["to"] == GROUP]
    assert (reply["recipient_type"], reply["context"]) == ("group", "wamid.g-2")
    assert "lunch anyone?" not in served.turns()
