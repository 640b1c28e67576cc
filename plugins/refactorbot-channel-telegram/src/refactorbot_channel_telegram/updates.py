"""Telegram ``Update`` objects turned into ``IncomingMessage``: ids, group chats, mentions of the bot, media.

Telegram numbers messages per chat, so a message's id here is ``<chat id>:<message id>`` (the
communication slice de-duplicates by it); an edit is ``<chat id>:<message id>:edit:<edit date>``,
a message of its own. Entity offsets are in UTF-16 code units, as Telegram counts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from refactorbot import IncomingMessage, MediaRef

#: The updates asked for (``allowed_updates``): new and edited messages.
ALLOWED_UPDATES = ["message", "edited_message"]


@dataclasses.dataclass(frozen=True)
class BotIdentity:
    """Who the bot is (from ``getMe``): mentions and replies are recognized by these."""

    id: int
    username: str


class MalformedUpdate(ValueError):
    """An update that does not have the documented shape."""


def message_key(chat_id: Any, message_id: Any) -> str:
    """Return the platform id of a message: ``<chat id>:<message id>``."""
    return f"{chat_id}:{message_id}"


def message_number(platform_id: str) -> int | None:
    """Return Telegram's message id from ``<chat id>:<message id>`` (or a bare number), None if there is none."""
    tail = platform_id.split(":edit:", 1)[0].rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _utf16_slice(text: str, offset: int, length: int) -> str:
    data = text.encode("utf-16-le")
    return data[2 * offset : 2 * (offset + length)].decode("utf-16-le", "replace")


def _display_name(user: dict[str, Any]) -> str | None:
    name = " ".join(str(user[k]) for k in ("first_name", "last_name") if user.get(k)).strip()
    return name or user.get("username") or user.get("title") or None


def addresses_bot(text: str, entities: list[Any], bot: BotIdentity) -> bool:
    """Return whether ``entities`` mention the bot: ``@username``, a ``text_mention`` of it, or ``/cmd@username``."""
    handle = "@" + bot.username.lower()
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        kind = entity.get("type")
        if kind == "text_mention" and isinstance(entity.get("user"), dict) and entity["user"].get("id") == bot.id:
            return True
        if kind not in ("mention", "bot_command"):
            continue
        offset, length = entity.get("offset"), entity.get("length")
        if not isinstance(offset, int) or not isinstance(length, int):
            continue
        marked = _utf16_slice(text, offset, length).lower()
        if (kind == "mention" and marked == handle) or (kind == "bot_command" and marked.endswith(handle)):
            return True
    return False


def _without_leading_mention(text: str, bot: BotIdentity) -> str:
    """Return ``text`` without the bot's ``@username`` in front (``@bot hello`` reads ``hello``)."""
    handle = "@" + bot.username
    if text[: len(handle)].lower() == handle.lower() and text[len(handle) : len(handle) + 1] in ("", " ", "\n", ","):
        stripped = text[len(handle) :].lstrip(" ,\n")
        return stripped or text
    return text


def _media(message: dict[str, Any]) -> list[MediaRef]:
    found: list[MediaRef] = []
    photos = message.get("photo")
    if isinstance(photos, list) and photos and isinstance(photos[-1], dict) and photos[-1].get("file_id"):
        found.append(MediaRef(kind="image", ref=str(photos[-1]["file_id"]), size=photos[-1].get("file_size")))
    kinds = {"document": "file", "audio": "audio", "voice": "voice", "video": "video", "sticker": "sticker"}
    for field, kind in kinds.items():
        item = message.get(field)
        if isinstance(item, dict) and item.get("file_id"):
            size = item.get("file_size")
            found.append(
                MediaRef(
                    kind=kind,  # type: ignore[arg-type]
                    ref=str(item["file_id"]),
                    mime_type=item.get("mime_type") if isinstance(item.get("mime_type"), str) else None,
                    name=item.get("file_name") if isinstance(item.get("file_name"), str) else None,
                    size=size if isinstance(size, int) and size >= 0 else None,
                )
            )
    location = message.get("location")
    if isinstance(location, dict) and "latitude" in location and "longitude" in location:
        found.append(MediaRef(kind="location", ref=f"{location['latitude']},{location['longitude']}"))
    return found


def to_incoming(update: Any, bot: BotIdentity, channel: str = "telegram") -> IncomingMessage | None:
    """Return the message an update carries, normalized; None for updates that carry nothing to answer.

    Raises ``MalformedUpdate`` when the update is not shaped as the Bot API documents it.
    """
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise MalformedUpdate("an update needs an integer update_id")
    edited = "message" not in update and "edited_message" in update
    message = update.get("edited_message" if edited else "message")
    if message is None:
        return None  # another kind of update: nothing to answer
    chat = message.get("chat") if isinstance(message, dict) else None
    if not isinstance(message, dict) or not isinstance(chat, dict) or not isinstance(message.get("message_id"), int):
        raise MalformedUpdate("a message needs a message_id and a chat")
    if not isinstance(chat.get("id"), int):
        raise MalformedUpdate("a chat needs an integer id")
    sender = message.get("from") or message.get("sender_chat") or {}
    if not isinstance(sender, dict) or sender.get("id") == bot.id:
        return None  # the bot's own message
    text = message.get("text") if isinstance(message.get("text"), str) else message.get("caption")
    text = text if isinstance(text, str) else ""
    entities = message.get("entities") if "text" in message else message.get("caption_entities")
    entities = entities if isinstance(entities, list) else []
    media = _media(message)
    if not text.strip() and not media:
        return None  # a service message (someone joined, a pin): nothing to answer
    chat_id = chat["id"]
    reply = message.get("reply_to_message")
    reply_to = None
    replied_to_bot = False
    if isinstance(reply, dict) and isinstance(reply.get("message_id"), int):
        reply_to = message_key(chat_id, reply["message_id"])
        author = reply.get("from")
        replied_to_bot = isinstance(author, dict) and author.get("id") == bot.id
    mentioned = addresses_bot(text, entities, bot)
    message_id = message_key(chat_id, message["message_id"])
    if edited:
        message_id += f":edit:{message.get('edit_date', 0)}"
    return IncomingMessage(
        channel=channel,
        chat_id=str(chat_id),
        sender_id=str(sender.get("id", chat_id)),
        sender_name=_display_name(sender),
        text=_without_leading_mention(text, bot) if mentioned else text,
        message_id=message_id,
        is_group=chat.get("type") in ("group", "supergroup"),
        mentions_bot=mentioned or replied_to_bot,
        reply_to=reply_to,
        media=media,
        metadata={"update_id": update["update_id"], "edited": edited},
        raw=update,
    )
