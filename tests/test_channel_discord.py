"""The Discord channel end to end through a real `refactorbot serve`: the loopback Discord (REST and Gateway),
a DM over the Gateway answered with the agent's long reply split at 2,000 characters in the right channel
with the reply reference on the first part only, a redelivered MESSAGE_CREATE running one turn, the group
mention rule, a dropped Gateway connection resumed with the missed message replayed, and the interactions
endpoint /hooks/discord (a signed slash command answered through its webhook; forged ones refused).

The model is the loopback `ModelServer` behind the LiteLLM gateway; every other part is real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from refactorbot.channels import split_text
from refactorbot.testing import ModelServer
from refactorbot.testing.discord import DiscordServer
from refactorbot_channel_discord.channel import DiscordChannel
from serving import QUICK_SENDS, Served, clean_env, echo_model, serve, wait_for_channels, wait_until, write_config

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.integration.discord-bot-token"
OWNER = "100000000000000042"
DM = "1100000000000000042"
GUILD = "1300000000000000042"
CHANNEL = "1200000000000000042"
SIGNING_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
LONG_ANSWER = (
    "Here is the **plan**, @everyone.\n\n"
    + "\n\n".join(" ".join(f"step{p}-{i}" for i in range(150)) for p in range(4))
    + "\n\n```python\n"
    + "\n".join(f"print('line {i}')  # step {i}" for i in range(60))
    + "\n```\n\nThat is all."
)


responder = echo_model({"the long plan please": LONG_ANSWER})


@dataclass
class DiscordServed(Served):
    """The server with the loopback Discord (REST and Gateway) it talks to."""

    discord: DiscordServer

    def hook(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/hooks/discord", content=body, headers=headers, trust_env=False, timeout=30)


def signed(body: bytes, stamp: int | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if stamp is None else stamp)
    return {
        "Content-Type": "application/json",
        "X-Signature-Ed25519": SIGNING_KEY.sign(timestamp.encode() + body).hex(),
        "X-Signature-Timestamp": timestamp,
    }


def flip(signature: str) -> str:
    """Return the signature with the lowest bit of its last byte flipped."""
    raw = bytearray(bytes.fromhex(signature))
    raw[-1] ^= 0x01
    return raw.hex()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscordServed]:
    home = tmp_path_factory.mktemp("discord-home")
    with ModelServer(responder=responder) as model, DiscordServer(TOKEN, bot_name="e2e-bot") as discord:
        write_config(
            home,
            QUICK_SENDS + f'[channels.discord]\napi_base = "{discord.api_base}"\nreconnect_backoff = 0.1\n'
            f'dm_policy = "allowlist"\nallow_senders = ["{OWNER}"]\n',
            model=model,
        )
        env = clean_env("DISCORD_", DISCORD_BOT_TOKEN=TOKEN, DISCORD_PUBLIC_KEY=PUBLIC_KEY)
        with serve(home, env=env, kind=DiscordServed, model=model, discord=discord) as running:
            wait_for_channels(running, "discord")
            discord.wait_until(discord.ready)
            yield running


def test_the_gateway_session_identified_with_the_message_content_intent(served: DiscordServed) -> None:
    identify = served.discord.identifies[0]
    assert identify["token"] == TOKEN and identify["intents"] & (1 << 15)


def test_a_dm_gets_the_long_reply_split_at_2000_with_the_reference_on_the_first_part(served: DiscordServed) -> None:
    asked = served.discord.push_message(DM, "the long plan please", author_id=OWNER)
    expected = split_text(DiscordChannel(env={}).render(LONG_ANSWER), 2000)
    assert len(expected) >= 3 and any(p.startswith("```python\n") for p in expected[1:])
    served.discord.wait_until(lambda: len(served.discord.texts(DM)) == len(expected), timeout=60)
    replies = [m for m in served.discord.bot_messages() if m["channel_id"] == DM]
    assert [m["content"] for m in replies] == expected
    assert all(len(m["content"]) <= 2000 and m["content"].count("```") % 2 == 0 for m in replies)
    references = [m.get("message_reference", {}).get("message_id") for m in replies]
    assert references == [asked["id"]] + [None] * (len(expected) - 1)
    assert all(m["allowed_mentions"] == {"parse": [], "replied_user": False} for m in replies), "nobody pinged"
    assert served.discord.typing and served.discord.typing[0] == DM
    (row,) = served.call("communication.messages", chat_id=DM, direction="out")["items"]
    assert row["status"] == "sent"


def test_a_redelivered_message_runs_one_turn(served: DiscordServed) -> None:
    def duplicates() -> int:
        return int({c["name"]: c for c in served.call("communication.channels")["channels"]}["discord"]["duplicates"])

    before = duplicates()
    message = served.discord.message(DM, "only once", author_id=OWNER)
    served.discord.dispatch("MESSAGE_CREATE", message)
    served.discord.dispatch("MESSAGE_CREATE", message)  # the same message id again
    served.discord.wait_until(lambda: "echo: only once" in served.discord.texts(DM), timeout=60)
    wait_until(lambda: duplicates() == before + 1)
    rows = served.call("communication.messages", chat_id=DM, direction="in")["items"]
    assert [r["text"] for r in rows].count("only once") == 1
    assert served.turns().count("only once") == 1
    assert served.discord.texts(DM).count("echo: only once") == 1


def test_in_a_guild_the_bot_answers_only_when_mentioned_or_replied_to(served: DiscordServed) -> None:
    discord = served.discord
    discord.push_message(CHANNEL, "lunch anyone?", author_id=OWNER, guild_id=GUILD)
    discord.push_message(
        CHANNEL, f"<@{discord.bot_id}> status?", author_id=OWNER, guild_id=GUILD, mentions=[discord.bot_id]
    )
    discord.wait_until(lambda: discord.texts(CHANNEL) == ["echo: @e2e-bot status?"], timeout=60)
    (answer,) = [m for m in discord.bot_messages() if m["channel_id"] == CHANNEL]
    wait_until(  # the reply's id is recorded as the bot's once its send is recorded
        lambda: (
            [r["status"] for r in served.call("communication.messages", chat_id=CHANNEL, direction="out")["items"]]
            == ["sent"]
        )
    )
    discord.push_message(CHANNEL, "and the queue?", author_id=OWNER, guild_id=GUILD, reply_to=answer["id"])
    discord.wait_until(lambda: len(discord.texts(CHANNEL)) == 2, timeout=60)
    assert discord.texts(CHANNEL)[1] == "echo: and the queue?"
    assert "lunch anyone?" not in served.turns()


def test_a_message_sent_while_the_gateway_was_down_is_replayed_after_resume(served: DiscordServed) -> None:
    discord = served.discord
    before = len(discord.connections)
    discord.hold_connections()
    discord.drop()
    discord.wait_until(lambda: len(discord.connections) > before)
    discord.push_message(DM, "are you back?", author_id=OWNER)
    discord.release_connections()
    discord.wait_until(lambda: "echo: are you back?" in discord.texts(DM), timeout=60)
    assert discord.resumes and len(discord.identifies) == 1
    channels = {c["name"]: c for c in served.call("communication.channels")["channels"]}
    assert channels["discord"]["status"] == "running"


def test_a_signed_slash_command_is_answered_and_forgeries_run_nothing(served: DiscordServed) -> None:
    discord = served.discord
    ping = json.dumps({"id": "1", "application_id": discord.application_id, "type": 1, "token": "x", "version": 1})
    pong = served.hook(ping.encode(), signed(ping.encode()))
    assert (pong.status_code, pong.json()) == (200, {"type": 1})
    interaction = discord.interaction(DM, "ask", {"question": "slash hello"}, user_id=OWNER)
    body = json.dumps(interaction).encode()
    first_headers = signed(body)
    answer = served.hook(body, first_headers)
    assert (answer.status_code, answer.json()) == (200, {"type": 5})
    discord.wait_until(lambda: len(discord.interaction_replies) == 1, timeout=60)
    (reply,) = discord.interaction_replies
    assert (reply["kind"], reply["content"], reply["interaction"]) == (
        "original",
        "echo: slash hello",
        interaction["id"],
    )

    forged = discord.interaction(DM, "ask", {"question": "forged command"}, user_id=OWNER)
    forged_body = json.dumps(forged).encode()
    headers = signed(forged_body)
    cases = [
        (forged_body, {"Content-Type": "application/json"}),
        (forged_body, {**headers, "X-Signature-Ed25519": flip(headers["X-Signature-Ed25519"])}),
        (forged_body + b" ", headers),
        (json.dumps(forged, indent=2).encode(), headers),
        (forged_body, signed(forged_body, int(time.time()) - 3600)),
        (forged_body, {**headers, "X-Signature-Ed25519": Ed25519PrivateKey.generate().sign(b"x").hex()}),
    ]
    for case_body, case_headers in cases:
        assert served.hook(case_body, case_headers).status_code == 401
    assert served.hook(body, first_headers).status_code == 401  # the same request again: a replay
    stamp = int(first_headers["X-Signature-Timestamp"]) + 1
    redelivered = served.hook(body, signed(body, stamp))  # signed anew: the slice drops it
    assert redelivered.status_code == 200 and "already received" in redelivered.json()["data"]["content"]
    assert "forged command" not in served.turns()
    assert served.turns().count("slash hello") == 1
