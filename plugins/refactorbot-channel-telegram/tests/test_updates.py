"""Updates normalized: group chats, mentions of the bot (@username, text_mention, /cmd@bot, a reply to it), media, edits."""

from __future__ import annotations

from typing import Any

import pytest
from refactorbot.testing.telegram import TelegramServer
from refactorbot_channel_telegram.updates import BotIdentity, MalformedUpdate, message_number, to_incoming

GROUP = -1001234567890


@pytest.fixture
def server() -> TelegramServer:
    return TelegramServer("7000001:loopback-token-AbCdEfGhIjKlMnOpQrStUvWx", username="helper_bot")  # not started


@pytest.fixture
def bot(server: TelegramServer) -> BotIdentity:
    return BotIdentity(server.bot["id"], server.bot["username"])


def test_a_direct_message(server: TelegramServer, bot: BotIdentity) -> None:
    update = server.user_message("hi", chat_id=42, sender_id=42, sender_name="Alice")
    message = to_incoming(update, bot)
    assert message is not None
    assert (message.chat_id, message.sender_id, message.sender_name) == ("42", "42", "Alice")
    assert (message.is_group, message.mentions_bot, message.reply_to) == (False, False, None)
    assert message.message_id == f"42:{update['message']['message_id']}"
    assert message.metadata == {"update_id": update["update_id"], "edited": False}


def test_a_group_message_without_a_mention_does_not_address_the_bot(server: TelegramServer, bot: BotIdentity) -> None:
    message = to_incoming(server.user_message("lunch?", chat_id=GROUP, chat_type="supergroup"), bot)
    assert message is not None and message.is_group and not message.mentions_bot


def test_an_at_mention_addresses_the_bot_and_is_taken_off_the_text(server: TelegramServer, bot: BotIdentity) -> None:
    update = server.user_message("what is 2+2?", chat_id=GROUP, chat_type="supergroup", mention=True)
    assert update["message"]["text"] == "@helper_bot what is 2+2?"
    message = to_incoming(update, bot)
    assert message is not None and message.mentions_bot and message.text == "what is 2+2?"


def test_a_mention_later_in_the_text_counts_in_utf16_offsets(server: TelegramServer, bot: BotIdentity) -> None:
    update = server.user_message("😀😀 ask @Helper_Bot please", chat_id=GROUP, chat_type="group")
    message = to_incoming(update, bot)
    assert message is not None and message.mentions_bot
    assert message.text == "😀😀 ask @Helper_Bot please"


def test_another_bots_mention_does_not_address_this_one(server: TelegramServer, bot: BotIdentity) -> None:
    message = to_incoming(server.user_message("@other_bot do it", chat_id=GROUP, chat_type="supergroup"), bot)
    assert message is not None and not message.mentions_bot


def test_a_text_mention_of_the_bot(server: TelegramServer, bot: BotIdentity) -> None:
    update = server.user_message("help", chat_id=GROUP, chat_type="supergroup", text_mention=True)
    message = to_incoming(update, bot)
    assert message is not None and message.mentions_bot


def test_a_command_for_this_bot(server: TelegramServer, bot: BotIdentity) -> None:
    mine = to_incoming(server.user_message("/status@helper_bot", chat_id=GROUP, chat_type="supergroup"), bot)
    theirs = to_incoming(server.user_message("/status@other_bot", chat_id=GROUP, chat_type="supergroup"), bot)
    assert mine is not None and mine.mentions_bot
    assert theirs is not None and not theirs.mentions_bot


def test_a_reply_to_the_bots_message_addresses_it(server: TelegramServer, bot: BotIdentity) -> None:
    server.add_chat(GROUP, chat_type="supergroup")
    server.start()
    try:
        import httpx

        answer = httpx.post(
            f"{server.url}/bot{server.token}/sendMessage", json={"chat_id": GROUP, "text": "I am the bot"}
        )
        bot_message = answer.json()["result"]["message_id"]
    finally:
        server.stop()
    user = server.user_message("thanks", chat_id=GROUP, chat_type="supergroup", sender_id=5)["message"]["message_id"]
    to_bot = to_incoming(
        server.user_message("and more", chat_id=GROUP, chat_type="supergroup", reply_to=bot_message), bot
    )
    to_user = to_incoming(server.user_message("+1", chat_id=GROUP, chat_type="supergroup", reply_to=user), bot)
    assert to_bot is not None and to_bot.mentions_bot and to_bot.reply_to == f"{GROUP}:{bot_message}"
    assert to_user is not None and not to_user.mentions_bot and to_user.reply_to == f"{GROUP}:{user}"


def test_an_edit_is_a_message_of_its_own(server: TelegramServer, bot: BotIdentity) -> None:
    first = server.user_message("teh answer?", chat_id=42, sender_id=42)["message"]
    edited = to_incoming(
        server.user_message("the answer?", chat_id=42, sender_id=42, edited=True, message_id=first["message_id"]), bot
    )
    assert edited is not None and edited.text == "the answer?" and edited.metadata["edited"]
    assert edited.message_id.startswith(f"42:{first['message_id']}:edit:")
    assert message_number(edited.message_id) == first["message_id"]


def test_media_with_a_caption_and_without(bot: BotIdentity) -> None:
    chat = {"id": 42, "type": "private", "first_name": "Alice"}
    sender = {"id": 42, "is_bot": False, "first_name": "Alice"}
    photo = {
        "update_id": 1,
        "message": {
            "message_id": 3,
            "from": sender,
            "chat": chat,
            "date": 0,
            "caption": "look",
            "photo": [
                {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
                {"file_id": "big", "file_unique_id": "b", "width": 900, "height": 900, "file_size": 12345},
            ],
        },
    }
    message = to_incoming(photo, bot)
    assert message is not None and message.text == "look"
    assert [(m.kind, m.ref, m.size) for m in message.media] == [("image", "big", 12345)]
    voice = {
        "update_id": 2,
        "message": {
            "message_id": 4,
            "from": sender,
            "chat": chat,
            "date": 0,
            "voice": {"file_id": "v1", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg"},
        },
    }
    message = to_incoming(voice, bot)
    assert message is not None and message.text == "" and message.media[0].kind == "voice"


def test_nothing_to_answer_and_malformed_updates(server: TelegramServer, bot: BotIdentity) -> None:
    chat = {"id": 42, "type": "private"}
    joined = {
        "update_id": 3,
        "message": {
            "message_id": 5,
            "chat": chat,
            "from": {"id": 1},
            "date": 0,
            "new_chat_members": [{"id": 9, "is_bot": False, "first_name": "B"}],
        },
    }
    own = {"update_id": 4, "message": {"message_id": 6, "chat": chat, "from": dict(server.bot), "text": "me"}}
    assert to_incoming(joined, bot) is None and to_incoming(own, bot) is None
    assert to_incoming({"update_id": 5, "callback_query": {}}, bot) is None
    bad: list[Any] = [
        [],
        {"update_id": "1"},
        {"update_id": 1, "message": {"chat": chat}},
        {"update_id": 1, "message": {"message_id": 1, "chat": {"id": "x"}}},
    ]
    for update in bad:
        with pytest.raises(MalformedUpdate):
            to_incoming(update, bot)
