"""The testing kit's loopback Telegram Bot API, called over HTTP the way a bot does
(https://core.telegram.org/bots/api): the envelope, tokens, long polling with offsets, webhooks,
HTML parsing, edits, chat actions and scripted errors."""

from __future__ import annotations

import json
import threading
import urllib.parse
from typing import Any

import pytest
from refactorbot.testing._http import send
from refactorbot.testing.telegram import TelegramServer, parse_telegram_html

TOKEN = "4242:test-token"


def call(
    server: TelegramServer, method: str, token: str = TOKEN, form: bool = False, **params: Any
) -> tuple[int, dict[str, Any]]:
    url = f"{server.url}/bot{token}/{method}"
    if form:
        body = urllib.parse.urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = json.dumps(params).encode()
        headers = {"Content-Type": "application/json"}
    status, answer, _ = send(url, body=body, headers=headers)
    return status, json.loads(answer)


@pytest.fixture
def telegram() -> Any:
    with TelegramServer(token=TOKEN, username="memo_bot") as server:
        yield server


def test_envelope_tokens_and_get_me(telegram: TelegramServer) -> None:
    assert call(telegram, "getMe") == (
        200,
        {
            "ok": True,
            "result": {
                "id": 4242,
                "is_bot": True,
                "first_name": "Refactorbot Test",
                "username": "memo_bot",
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            },
        },
    )
    assert call(telegram, "getMe", token="4242:other") == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert call(telegram, "noSuchMethod")[0] == 404
    telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    assert call(telegram, "sendMessage", chat_id=1, text="x") == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        },
    )


def test_get_updates_confirms_by_offset_and_conflicts_with_a_webhook(telegram: TelegramServer) -> None:
    first = telegram.user_message("hello", chat_id=77)
    second = telegram.user_message("hi @memo_bot", chat_id=-100, chat_type="group")
    status, body = call(telegram, "getUpdates", timeout=0)
    assert status == 200 and [u["update_id"] for u in body["result"]] == [first["update_id"], second["update_id"]]
    assert body["result"][1]["message"]["entities"] == [{"type": "mention", "offset": 3, "length": 9}]
    again = call(telegram, "getUpdates", offset=first["update_id"])[1]["result"]
    assert [u["update_id"] for u in again] == [first["update_id"], second["update_id"]]  # not confirmed yet
    rest = call(telegram, "getUpdates", offset=second["update_id"], form=True)[1]["result"]
    assert [u["update_id"] for u in rest] == [second["update_id"]]
    assert telegram.confirmed > first["update_id"]
    assert call(telegram, "getUpdates", offset=second["update_id"] + 1, timeout=0)[1]["result"] == []
    assert call(telegram, "getUpdates", offset="x")[0] == 400

    # a long poll waits for the next update
    answers: list[Any] = []
    poller = threading.Thread(
        target=lambda: answers.append(call(telegram, "getUpdates", offset=second["update_id"] + 1, timeout=20))
    )
    poller.start()
    telegram.wait_until(lambda: telegram._polls_in_flight == 1, 10)
    third = telegram.user_message("are you there?", chat_id=77)
    poller.join(30)
    assert [u["update_id"] for u in answers[0][1]["result"]] == [third["update_id"]]

    bad = call(telegram, "setWebhook", url="http://example.test/hook")
    assert bad[1]["description"] == "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    assert call(telegram, "setWebhook", url="https://example.test/hook", secret_token="no spaces!")[0] == 400
    assert call(telegram, "setWebhook", url="https://example.test/hook", secret_token="s3cret_-")[1] == {
        "ok": True,
        "result": True,
        "description": "Webhook was set",
    }
    assert call(telegram, "getWebhookInfo")[1]["result"]["url"] == "https://example.test/hook"
    conflict = call(telegram, "getUpdates")
    assert conflict[0] == 409 and conflict[1]["description"].startswith(
        "Conflict: can't use getUpdates method while webhook is active"
    )
    assert call(telegram, "deleteWebhook")[1]["description"] == "Webhook was deleted"
    assert call(telegram, "deleteWebhook")[1]["description"] == "Webhook is already deleted"


def test_send_edit_and_chat_actions(telegram: TelegramServer) -> None:
    assert call(telegram, "sendMessage", chat_id=5, text="x")[1]["description"] == "Bad Request: chat not found"
    telegram.add_chat(5)
    sent = call(
        telegram,
        "sendMessage",
        chat_id=5,
        text='<b>bold</b> &amp; <a href="https://x.test">link</a>',
        parse_mode="HTML",
    )
    assert sent[0] == 200
    message = sent[1]["result"]
    assert message["text"] == "bold & link"
    assert [(e["type"], e["offset"], e["length"]) for e in message["entities"]] == [("bold", 0, 4), ("text_link", 7, 4)]
    refused = call(telegram, "sendMessage", chat_id=5, text="<b>open", parse_mode="HTML")
    assert refused[0] == 400 and refused[1]["description"].startswith("Bad Request: can't parse entities:")
    assert call(telegram, "sendMessage", chat_id=5, text="x", parse_mode="Klingon")[1]["description"] == (
        "Bad Request: unsupported parse_mode"
    )
    assert call(telegram, "sendMessage", chat_id=5, text="")[1]["description"] == "Bad Request: message text is empty"
    assert (
        call(telegram, "sendMessage", chat_id=5, text="x" * 4097)[1]["description"]
        == "Bad Request: message is too long"
    )
    assert call(telegram, "sendMessage", chat_id=5, text="re", reply_to_message_id=999)[1]["description"] == (
        "Bad Request: message to be replied not found"
    )
    replied = call(telegram, "sendMessage", chat_id=5, text="re", reply_to_message_id=message["message_id"])[1][
        "result"
    ]
    assert replied["reply_to_message"]["message_id"] == message["message_id"]
    assert [m["text"] for m in telegram.wait_for_messages(5, 2)] == ["bold & link", "re"]

    edited = call(telegram, "editMessageText", chat_id=5, message_id=message["message_id"], text="better")
    assert edited[0] == 200 and edited[1]["result"]["text"] == "better"
    same = call(telegram, "editMessageText", chat_id=5, message_id=message["message_id"], text="better")
    assert same[0] == 400 and "message is not modified" in same[1]["description"]
    assert call(telegram, "editMessageText", chat_id=5, message_id=12345, text="x")[1]["description"] == (
        "Bad Request: message to edit not found"
    )
    assert [e["text"] for e in telegram.edits] == ["better"]

    assert call(telegram, "sendChatAction", chat_id=5, action="typing") == (200, {"ok": True, "result": True})
    assert call(telegram, "sendChatAction", chat_id=5, action="dancing")[1]["description"] == (
        "Bad Request: wrong parameter action in request"
    )
    assert telegram.actions == [("5", "typing")]
    assert [r.path for r in telegram.calls("sendChatAction")] == [f"/bot{TOKEN}/sendChatAction"] * 2


def test_html_parsing_as_telegram_does_it() -> None:
    text, entities = parse_telegram_html('<i>a</i> <code>b &lt; c</code> <pre><code class="language-py">x</code></pre>')
    assert text == "a b < c x"
    assert [e["type"] for e in entities] == ["italic", "code", "pre"]
    assert entities[2].get("language") == "py"
    refused = {
        "<b>x": 'Can\'t find end tag corresponding to start tag "b"',
        "<blink>x</blink>": 'Unsupported start tag "blink" at byte offset 0',
        "<b>x</i>": 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
    }
    for html, reason in refused.items():
        with pytest.raises(ValueError) as caught:
            parse_telegram_html(html)
        assert str(caught.value) == reason
