"""The Telegram channel end to end through a real `refactorbot serve`: the loopback Bot API, long polling, the
agent's reply split at Telegram's limit in the right chat with the reply reference on the first part only,
redelivery of an update running one turn, and the group mention rule.

The model is the loopback `ModelServer` behind the LiteLLM gateway; every other part is real.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from refactorbot.testing import ModelServer
from refactorbot.testing.telegram import TelegramServer, parse_telegram_html, post_webhook
from refactorbot_channel_telegram.channel import TelegramChannel
from refactorbot_channel_telegram.html import utf16_len
from serving import QUICK_SENDS, Served, clean_env, echo_model, serve, wait_for_channels, wait_until, write_config

TOKEN = "7000002:integration-token-AbCdEfGhIjKlMnOpQrSt"
OWNER = 424242
GROUP = -1009876543210
LONG_ANSWER = (
    "Here is the **plan** for `a < b` & more.\n\n"
    + "\n\n".join(" ".join(f"step{p}-{i} 😀" for i in range(120)) for p in range(6))
    + "\n\n```python\n"
    + "\n".join(f"print('line {i}')  # <{i}> & done" for i in range(120))
    + "\n```\n\nThat is all."
)


responder = echo_model({"the long plan please": LONG_ANSWER})


@dataclass
class TelegramServed(Served):
    """The server with the loopback Bot API it talks to."""

    telegram: TelegramServer


@contextlib.contextmanager
def serving(home: Path, channel: str, extra_env: dict[str, str]) -> Iterator[TelegramServed]:
    """Run `refactorbot serve` on ``home`` with the loopback model and Bot API; ``channel``: more [channels.telegram]."""
    with ModelServer(responder=responder) as model, TelegramServer(TOKEN, username="e2e_helper_bot") as telegram:
        write_config(
            home,
            QUICK_SENDS + f'[channels.telegram]\napi_base = "{telegram.url}"\npoll_timeout = 5\nbackoff = 0.1\n'
            f'dm_policy = "allowlist"\nallow_senders = ["{OWNER}"]\n{channel}',
            model=model,
        )
        env = clean_env("TELEGRAM_", TELEGRAM_BOT_TOKEN=TOKEN, **extra_env)
        with serve(home, env=env, kind=TelegramServed, model=model, telegram=telegram) as served:
            wait_for_channels(served, "telegram")
            yield served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TelegramServed]:
    with serving(tmp_path_factory.mktemp("telegram-home"), "", {}) as found:
        found.telegram.wait_until(lambda: len(found.telegram.calls("getUpdates")) >= 1, timeout=60)
        yield found


def test_the_channel_polls_after_deleting_the_webhook(served: TelegramServed) -> None:
    methods = [r.path.rsplit("/", 1)[-1] for r in served.telegram.requests]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    channels = {c["name"]: c for c in served.call("communication.channels")["channels"]}
    assert channels["telegram"]["status"] == "running"


def test_a_private_message_gets_the_long_reply_split_at_4096_with_the_reference_on_the_first_part(
    served: TelegramServed,
) -> None:
    telegram = served.telegram
    asked = telegram.user_message("the long plan please", chat_id=OWNER, sender_id=OWNER)["message"]
    adapter = TelegramChannel(env={})
    expected = adapter.split(adapter.render(LONG_ANSWER))
    assert len(expected) >= 3
    replies = telegram.wait_for_messages(OWNER, len(expected), timeout=60)
    assert [m["html"] for m in replies] == expected
    assert all(utf16_len(m["html"]) <= 4096 for m in replies)
    assert [m.get("reply_to_message", {}).get("message_id") for m in replies] == [asked["message_id"]] + [None] * (
        len(expected) - 1
    )
    whole, _ = parse_telegram_html(adapter.render(LONG_ANSWER))
    assert "".join(m["text"] for m in replies) == whole, "Telegram shows the whole answer, nothing lost at the cuts"
    code_parts = [m for m in replies if any(e["type"] == "pre" for e in m.get("entities", []))]
    assert len(code_parts) >= 2, "the code block spans parts and is a code block in each"
    assert all(e.get("language") == "python" for m in code_parts for e in m["entities"] if e["type"] == "pre")
    assert ("424242", "typing") in telegram.actions
    assert telegram.sent(GROUP) == []


def test_a_redelivered_update_runs_one_turn(served: TelegramServed) -> None:
    telegram = served.telegram
    update = telegram.user_message("only once", chat_id=OWNER, sender_id=OWNER)
    telegram.wait_until(lambda: telegram.confirmed > update["update_id"], timeout=60)
    telegram.push_update(update)  # Telegram sends it again (a lost confirmation, say)
    telegram.wait_until(lambda: telegram.confirmed > update["update_id"] and not telegram.updates, timeout=60)
    wait_until(lambda: any(m["text"] == "echo: only once" for m in telegram.sent(OWNER)))
    later = telegram.user_message("after that", chat_id=OWNER, sender_id=OWNER)
    telegram.wait_until(lambda: telegram.confirmed > later["update_id"], timeout=60)
    wait_until(lambda: any(m["text"] == "echo: after that" for m in telegram.sent(OWNER)))
    assert served.turns().count("only once") == 1
    assert [m["text"] for m in telegram.sent(OWNER)].count("echo: only once") == 1


def test_in_a_group_the_bot_answers_only_when_mentioned_or_replied_to(served: TelegramServed) -> None:
    telegram = served.telegram
    common = {"chat_id": GROUP, "chat_type": "supergroup", "sender_id": OWNER}
    quiet = telegram.user_message("just chatting", **common)
    asked = telegram.user_message("what time is it?", mention=True, **common)
    replies = telegram.wait_for_messages(GROUP, 1, timeout=60)
    assert replies[0]["text"] == "echo: what time is it?"
    assert replies[0]["reply_to_message"]["message_id"] == asked["message"]["message_id"]
    telegram.user_message("and the date?", reply_to=replies[0]["message_id"], **common)
    replies = telegram.wait_for_messages(GROUP, 2, timeout=60)
    assert replies[1]["text"] == "echo: and the date?"
    assert telegram.confirmed > quiet["update_id"]
    assert "just chatting" not in served.turns()


# -- webhook mode -----------------------------------------------------------------------------------

SECRET = "integration-webhook-secret_0123456789"


def test_webhook_mode_answers_authentic_updates_once_and_refuses_forged_ones(tmp_path: Path) -> None:
    channel = 'mode = "webhook"\nwebhook_url = "https://bot.example.com/hooks/telegram"\n'
    with serving(tmp_path, channel, {"TELEGRAM_WEBHOOK_SECRET": SECRET}) as served:
        telegram = served.telegram
        assert telegram.webhook is not None and telegram.webhook["secret_token"] == SECRET
        hook = f"{served.url}/hooks/telegram"
        update = telegram.user_message("by webhook", chat_id=OWNER, sender_id=OWNER, queue=False)
        forged = [(None, 401), ("", 401), ("wrong-secret", 403), (SECRET[:-1], 403), (SECRET.upper(), 403)]
        for secret, status in forged:
            answer, body = post_webhook(hook, update, secret)
            assert answer == status, (secret, answer, body)
        status, body = post_webhook(hook, update, SECRET)
        assert (status, json.loads(body)["status"]) == (200, "accepted")
        status, body = post_webhook(hook, update, SECRET)  # Telegram redelivers it
        assert (status, json.loads(body)["status"]) == (200, "duplicate")
        (reply,) = telegram.wait_for_messages(OWNER, 1, timeout=60)
        assert reply["text"] == "echo: by webhook"
        assert reply["reply_to_message"]["message_id"] == update["message"]["message_id"]
        assert served.turns() == ["by webhook"], "forged requests ran nothing; the redelivery ran no second turn"
        assert telegram.calls("getUpdates") == []
