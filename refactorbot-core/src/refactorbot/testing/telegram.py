"""A loopback Telegram Bot API for channel tests (standard library only).

``TelegramServer`` answers ``/bot<token>/<method>`` as https://core.telegram.org/bots/api
describes it: JSON or form bodies, the ``{"ok": ..., "result" | "error_code", "description",
"parameters"}`` envelope, 401 for another token, ``getUpdates`` long polling with offsets that
confirm updates (an update comes back until an offset beyond it is passed), 409 while a webhook
is set or when a newer ``getUpdates`` takes over, ``setWebhook``/``deleteWebhook``,
``sendMessage`` parsing HTML the way Telegram does (unknown or unbalanced tags refused with
"Bad Request: can't parse entities: ..."), the 4096-unit limit, per-chat message stores,
``editMessageText`` and ``sendChatAction``::

    with TelegramServer(token="123:abc") as telegram:
        telegram.user_message("hello", chat_id=42)       # queued for getUpdates
        ...                                              # api_base = telegram.url
        (reply,) = telegram.wait_for_messages(42, 1)
        assert reply["text"] == "echo: hello"

Errors are scripted per method (``fail_next("sendMessage", 429, "Too Many Requests: retry after
3", retry_after=3)``), so a poller's requests never take a failure meant for a send.
"""

from __future__ import annotations

import collections
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from refactorbot.testing._http import send
from refactorbot.testing.platforms import PlatformRequest, PlatformResponse, PlatformServer

__all__ = ["TelegramHtmlError", "TelegramServer", "parse_telegram_html", "post_webhook"]

#: Telegram's limit for a message's text, in UTF-16 code units after entity parsing.
TEXT_LIMIT = 4096
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  the header's name, not its value
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_PATH = re.compile(r"^/bot([^/]+)/([A-Za-z]+)$")
_CONFLICT_POLLING = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
_CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"
    " as a current content and reply markup of the message"
)


def _units(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


# -- Telegram's HTML parse mode ------------------------------------------------------------------


class TelegramHtmlError(ValueError):
    """Telegram refused the HTML: the message is the text after "can't parse entities: "."""


_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG = re.compile(r"<(/?)([^\s>/]*)([^>]*)>")
_ATTRIBUTE = re.compile(r'\s*([a-z-]+)(?:\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|([^\s"\'>]+)))?')


def parse_telegram_html(html: str) -> tuple[str, list[dict[str, Any]]]:
    """Return ``(text, entities)`` of a ``parse_mode=HTML`` message; raise ``TelegramHtmlError`` as Telegram would.

    Supported: the tags of https://core.telegram.org/bots/api#html-style; ``&lt;``, ``&gt;``,
    ``&amp;``, ``&quot;`` and numeric entities (another ``&`` stays as it is). Entity offsets and
    lengths are in UTF-16 code units.
    """
    text: list[str] = []
    units = 0
    stack: list[tuple[str, int, dict[str, Any]]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(html):
        c = html[i]
        if c == "<":
            match = _TAG.match(html, i)
            offset = len(html[:i].encode())
            if match is None:
                raise TelegramHtmlError(f"Can't find end of the tag starting at byte offset {offset}")
            closing, name = match.group(1), match.group(2).lower()
            if closing:
                if not stack:
                    raise TelegramHtmlError(f"Unexpected end tag at byte offset {offset}")
                open_name, start, extra = stack.pop()
                if open_name != name:
                    raise TelegramHtmlError(
                        f'Unmatched end tag at byte offset {offset}, expected "</{open_name}>", found "</{name}>"'
                    )
                if units > start and not extra.get("_inner"):
                    entities.append(
                        {
                            "type": _ENTITY_TYPES.get(open_name, open_name),
                            "offset": start,
                            "length": units - start,
                            **extra,
                        }
                    )
            else:
                extra = _tag_attributes(name, match.group(3), offset, stack)
                stack.append((name, units, extra))
            i = match.end()
            continue
        if c == "&":
            end = html.find(";", i + 1, i + 12)
            name = html[i + 1 : end] if end != -1 else ""
            decoded = _decode_entity(name)
            if decoded is not None:
                text.append(decoded)
                units += _units(decoded)
                i = end + 1
                continue
        text.append(c)
        units += 2 if ord(c) > 0xFFFF else 1
        i += 1
    if stack:
        raise TelegramHtmlError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(text), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def _decode_entity(name: str) -> str | None:
    if name in _NAMED:
        return _NAMED[name]
    try:
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#") and name[1:].isdigit():
            return chr(int(name[1:]))
    except (ValueError, OverflowError):
        return None
    return None


def _tag_attributes(name: str, raw: str, offset: int, stack: list[tuple[str, int, dict[str, Any]]]) -> dict[str, Any]:
    attributes = {m.group(1): m.group(2) or m.group(3) or m.group(4) or "" for m in _ATTRIBUTE.finditer(raw)}
    if name == "span":
        if attributes.get("class") != "tg-spoiler":
            raise TelegramHtmlError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        return {"type": "spoiler"}
    if name not in _ENTITY_TYPES:
        raise TelegramHtmlError(f'Unsupported start tag "{name}" at byte offset {offset}')
    if name == "a":
        return {"url": attributes.get("href", "")}
    if name == "code" and stack and stack[-1][0] == "pre":
        language = attributes.get("class", "")
        if language.startswith("language-"):
            stack[-1][2]["language"] = language.removeprefix("language-")
        return {"_inner": True}
    return {}


# -- the server ----------------------------------------------------------------------------------


class TelegramServer(PlatformServer):
    """The Bot API on 127.0.0.1 for one bot; ``url`` is its ``api_base`` (``https://api.telegram.org`` in life)."""

    def __init__(
        self,
        token: str = "123456789:loopback-token-AAAAAAAAAAAAAAAAAAAA",  # noqa: S107  the loopback server's fake bot token
        *,
        bot_id: int | None = None,
        username: str = "refactorbot_test_bot",
        max_poll_timeout: float = 50.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.bot: dict[str, Any] = {
            "id": bot_id if bot_id is not None else int(token.split(":", 1)[0]) if token.split(":")[0].isdigit() else 1,
            "is_bot": True,
            "first_name": "Refactorbot Test",
            "username": username,
        }
        self.max_poll_timeout = max_poll_timeout
        self.updates: list[dict[str, Any]] = []  # not yet confirmed
        self.delivered_updates: list[int] = []  # update ids handed out by getUpdates, in order
        self.confirmed = 0  # updates below this id were confirmed by an offset
        self.webhook: dict[str, Any] | None = None
        self.chats: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.actions: list[tuple[str, str]] = []
        self.edits: list[dict[str, Any]] = []
        self._failures: dict[str, collections.deque[PlatformResponse]] = {}
        self._next_update = 100_000
        self._next_user_message = 1
        self._poll_generation = 0
        self._polls_in_flight = 0

    # -- what a test does ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving; long polls waiting for updates return at once."""
        self._closing.set()
        self.notify()
        super().stop()

    @property
    def api_base(self) -> str:
        """Return the base URL to configure (``api_base``)."""
        return self.url

    def fail_next(
        self, method: str, error_code: int, description: str, *, retry_after: int | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with a Bot API error (``retry_after`` as Telegram sends it)."""
        response = self.error(error_code, description, retry_after=retry_after)
        with self._changed:
            self._failures.setdefault(method, collections.deque()).extend([response] * times)

    @staticmethod
    def error(error_code: int, description: str, *, retry_after: int | None = None) -> PlatformResponse:
        """Return a Bot API error answer."""
        body: dict[str, Any] = {"ok": False, "error_code": error_code, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return PlatformResponse.json(body, error_code)

    def add_chat(
        self, chat_id: int | str, *, chat_type: str = "private", title: str | None = None, username: str | None = None
    ) -> dict[str, Any]:
        """Make a chat known (sending to an unknown chat is "Bad Request: chat not found"); return it."""
        key = str(chat_id)
        with self._changed:
            if key not in self.chats:
                chat: dict[str, Any] = {"id": int(key) if _is_int(key) else key, "type": chat_type}
                if chat_type == "private":
                    chat["first_name"] = title or "Test"
                else:
                    chat["title"] = title or f"Group {key}"
                if username:
                    chat["username"] = username
                self.chats[key] = chat
                self.messages.setdefault(key, [])
            return self.chats[key]

    def user_message(
        self,
        text: str,
        *,
        chat_id: int | str = 1001,
        sender_id: int = 1001,
        sender_name: str = "Alice",
        chat_type: str = "private",
        mention: bool = False,
        text_mention: bool = False,
        reply_to: int | None = None,
        edited: bool = False,
        message_id: int | None = None,
        queue: bool = True,
    ) -> dict[str, Any]:
        """Build the ``Update`` a user's message makes (and queue it for ``getUpdates`` unless ``queue=False``).

        ``mention`` puts ``@<bot username>`` first (a ``mention`` entity, as Telegram's own parsing
        marks it); ``text_mention`` marks the start as a ``text_mention`` of the bot; ``reply_to``
        is the id of a message in the chat (the bot's, say). ``edited`` makes it an
        ``edited_message`` of ``message_id``.
        """
        chat = self.add_chat(chat_id, chat_type=chat_type, title=sender_name if chat_type == "private" else None)
        if mention:
            text = f"@{self.bot['username']} {text}"
        sender = {"id": sender_id, "is_bot": False, "first_name": sender_name, "username": sender_name.lower()}
        with self._changed:
            key = str(chat_id)
            if message_id is None:
                message_id = self._next_user_message
                self._next_user_message += 1
            message: dict[str, Any] = {
                "message_id": message_id,
                "from": sender,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            entities = _auto_entities(text)
            if text_mention:
                name = str(self.bot["first_name"])
                message["text"] = text = f"{name} {text}"
                entities = [{"type": "text_mention", "offset": 0, "length": _units(name), "user": dict(self.bot)}] + [
                    {**e, "offset": e["offset"] + _units(name) + 1} for e in entities
                ]
            if entities:
                message["entities"] = entities
            if reply_to is not None:
                original = self._find(key, reply_to)
                if original is None:
                    raise ValueError(f"no message {reply_to} in chat {key}")
                message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
            if edited:
                message["edit_date"] = int(time.time())
            else:
                self.messages[key].append(message)
            update = {"update_id": self._next_update, "edited_message" if edited else "message": message}
            self._next_update += 1
            if queue:
                self.updates.append(update)
            self._changed.notify_all()
        return update

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update as it is (for ``getUpdates``), again or for the first time."""
        with self._changed:
            self.updates.append(update)
            self.updates.sort(key=lambda u: u["update_id"])
            self._changed.notify_all()

    def set_webhook(self, url: str, secret_token: str | None = None) -> None:
        """Set a webhook from outside (another process did): ``getUpdates`` then answers 409."""
        with self._changed:
            self.webhook = {"url": url, "secret_token": secret_token, "allowed_updates": None}
            self._changed.notify_all()

    def delete_webhook(self) -> None:
        """Remove the webhook from outside."""
        with self._changed:
            self.webhook = None
            self._changed.notify_all()

    def sent(self, chat_id: int | str) -> list[dict[str, Any]]:
        """Return the messages the bot sent to a chat, in order (``text`` parsed, ``html`` as sent)."""
        with self._changed:
            return [m for m in self.messages.get(str(chat_id), []) if m["from"]["id"] == self.bot["id"]]

    def all_sent(self) -> list[dict[str, Any]]:
        """Return every message the bot sent, in the order sent."""
        with self._changed:
            found = [m for chat in self.messages.values() for m in chat if m["from"]["id"] == self.bot["id"]]
        return sorted(found, key=lambda m: m["_order"])

    def wait_for_messages(self, chat_id: int | str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until the bot sent ``count`` messages to the chat; return them."""
        self.wait_until(lambda: len(self.sent(chat_id)) >= count, timeout)
        return self.sent(chat_id)

    def wait_for_confirmed(self, update_id: int, timeout: float = 30.0) -> None:
        """Block until an offset beyond ``update_id`` was passed to ``getUpdates``."""
        self.wait_until(lambda: self.confirmed > update_id, timeout)

    def calls(self, method: str) -> list[PlatformRequest]:
        """Return the requests made to ``method``."""
        with self._changed:
            return [r for r in self.requests if r.path.endswith(f"/{method}")]

    # -- the API -------------------------------------------------------------------------------------

    def handle(self, request: PlatformRequest) -> PlatformResponse:
        """Answer one Bot API call."""
        match = _PATH.match(request.path)
        if match is None:
            return self.error(404, "Not Found")
        token, method = match.group(1), match.group(2)
        if token != self.token:
            return self.error(401, "Unauthorized")
        with self._changed:
            queue = self._failures.get(method)
            scripted = queue.popleft() if queue else None
        if scripted is not None:
            return scripted
        try:
            params = _params(request)
        except ValueError as exc:
            return self.error(400, f"Bad Request: {exc}")
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self.error(404, "Not Found")
        result: PlatformResponse = handler(params)
        return result

    @staticmethod
    def _ok(result: Any, description: str | None = None) -> PlatformResponse:
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return PlatformResponse.json(body)

    def _api_getMe(self, params: dict[str, Any]) -> PlatformResponse:
        return self._ok(
            {
                **self.bot,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    def _api_getUpdates(self, params: dict[str, Any]) -> PlatformResponse:
        try:
            offset = int(params.get("offset") or 0)
            limit = min(max(int(params.get("limit") or 100), 1), 100)
            timeout = min(max(float(params.get("timeout") or 0), 0.0), self.max_poll_timeout)
        except (TypeError, ValueError):
            return self.error(400, "Bad Request: wrong parameter value")
        allowed = params.get("allowed_updates")
        deadline = time.monotonic() + timeout
        with self._changed:
            if self.webhook is not None:
                return self.error(409, _CONFLICT_WEBHOOK)
            self._poll_generation += 1
            mine = self._poll_generation
            self._changed.notify_all()  # a long poll in flight is terminated by this one
            self._confirm(offset)
            self._polls_in_flight += 1
            try:
                while True:
                    if self._poll_generation != mine:
                        return self.error(409, _CONFLICT_POLLING)
                    if self.webhook is not None:
                        return self.error(409, _CONFLICT_WEBHOOK)
                    batch = [u for u in self.updates if _allowed(u, allowed)][:limit]
                    left = deadline - time.monotonic()
                    if batch or left <= 0 or self._closing.is_set():
                        self.delivered_updates.extend(u["update_id"] for u in batch)
                        return self._ok(batch)
                    self._changed.wait(left)
            finally:
                self._polls_in_flight -= 1

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self.confirmed = max(self.confirmed, offset)
        elif offset < 0:
            self.updates = self.updates[offset:]

    def _api_setWebhook(self, params: dict[str, Any]) -> PlatformResponse:
        url = str(params.get("url") or "")
        if not url:
            return self._api_deleteWebhook(params)
        if not url.startswith("https://"):
            return self.error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.match(str(secret)):
            return self.error(400, "Bad Request: secret token contains unallowed characters")
        with self._changed:
            if params.get("drop_pending_updates") in (True, "true", "True"):
                self.updates.clear()
            self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
            self._changed.notify_all()
        return self._ok(True, "Webhook was set")

    def _api_deleteWebhook(self, params: dict[str, Any]) -> PlatformResponse:
        with self._changed:
            had = self.webhook is not None
            self.webhook = None
            if params.get("drop_pending_updates") in (True, "true", "True"):
                self.updates.clear()
        return self._ok(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _api_getWebhookInfo(self, params: dict[str, Any]) -> PlatformResponse:
        with self._changed:
            info: dict[str, Any] = {
                "url": self.webhook["url"] if self.webhook else "",
                "has_custom_certificate": False,
                "pending_update_count": len(self.updates),
            }
            if self.webhook and self.webhook.get("allowed_updates") is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return self._ok(info)

    def _resolve_chat(self, value: Any) -> str | None:
        key = str(value if value is not None else "")
        if key.startswith("@"):
            for chat_key, chat in self.chats.items():
                if chat.get("username") == key[1:]:
                    return chat_key
            return None
        return key if key in self.chats else None

    def _formatted(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | PlatformResponse:
        raw = params.get("text")
        if not isinstance(raw, str) or not raw.strip():
            return self.error(400, "Bad Request: message text is empty")
        mode = params.get("parse_mode")
        entities: list[dict[str, Any]] = []
        if mode in (None, ""):
            text = raw
        elif str(mode).lower() == "html":
            try:
                text, entities = parse_telegram_html(raw)
            except TelegramHtmlError as exc:
                return self.error(400, f"Bad Request: can't parse entities: {exc}")
        else:
            return self.error(400, "Bad Request: unsupported parse_mode")
        if not text.strip():
            return self.error(400, "Bad Request: message text is empty")
        if _units(text) > TEXT_LIMIT:
            return self.error(400, "Bad Request: message is too long")
        return text, entities

    def _api_sendMessage(self, params: dict[str, Any]) -> PlatformResponse:
        with self._changed:
            key = self._resolve_chat(params.get("chat_id"))
        if key is None:
            return self.error(400, "Bad Request: chat not found")
        formatted = self._formatted(params)
        if isinstance(formatted, PlatformResponse):
            return formatted
        text, entities = formatted
        reply = params.get("reply_parameters")
        reply_id = reply.get("message_id") if isinstance(reply, dict) else params.get("reply_to_message_id")
        lenient = isinstance(reply, dict) and reply.get("allow_sending_without_reply") in (True, "true")
        with self._changed:
            original = self._find(key, int(reply_id)) if reply_id not in (None, "") else None
            if reply_id not in (None, "") and original is None and not lenient:
                return self.error(400, "Bad Request: message to be replied not found")
            chat_messages = self.messages[key]
            number = max([m["message_id"] for m in chat_messages] + [self._next_user_message]) + 1
            self._next_user_message = number + 1
            message: dict[str, Any] = {
                "message_id": number,
                "from": dict(self.bot),
                "chat": self.chats[key],
                "date": int(time.time()),
                "text": text,
                "html": params.get("text") if params.get("parse_mode") else None,
                "parse_mode": params.get("parse_mode"),
                "_order": sum(len(m) for m in self.messages.values()),
            }
            if entities:
                message["entities"] = entities
            if original is not None:
                message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
            chat_messages.append(message)
            self._changed.notify_all()
        return self._ok({k: v for k, v in message.items() if k not in ("html", "parse_mode", "_order")})

    def _api_editMessageText(self, params: dict[str, Any]) -> PlatformResponse:
        with self._changed:
            key = self._resolve_chat(params.get("chat_id"))
        if key is None:
            return self.error(400, "Bad Request: chat not found")
        formatted = self._formatted(params)
        if isinstance(formatted, PlatformResponse):
            return formatted
        text, entities = formatted
        with self._changed:
            try:
                message = self._find(key, int(params.get("message_id") or 0))
            except ValueError:
                message = None
            if message is None:
                return self.error(400, "Bad Request: message to edit not found")
            if message["from"]["id"] != self.bot["id"]:
                return self.error(400, "Bad Request: message can't be edited")
            if message["text"] == text and message.get("entities", []) == entities:
                return self.error(400, _NOT_MODIFIED)
            message["text"] = text
            message["html"] = params.get("text") if params.get("parse_mode") else None
            message["edit_date"] = int(time.time())
            if entities:
                message["entities"] = entities
            else:
                message.pop("entities", None)
            self.edits.append({"chat_id": key, "message_id": message["message_id"], "text": text})
            self._changed.notify_all()
        return self._ok({k: v for k, v in message.items() if k not in ("html", "parse_mode", "_order")})

    def _api_sendChatAction(self, params: dict[str, Any]) -> PlatformResponse:
        with self._changed:
            key = self._resolve_chat(params.get("chat_id"))
            if key is None:
                return self.error(400, "Bad Request: chat not found")
            action = str(params.get("action") or "")
            if action not in {
                "typing",
                "upload_photo",
                "record_video",
                "upload_video",
                "record_voice",
                "upload_voice",
                "upload_document",
                "choose_sticker",
                "find_location",
                "record_video_note",
                "upload_video_note",
            }:
                return self.error(400, "Bad Request: wrong parameter action in request")
            self.actions.append((key, action))
            self._changed.notify_all()
        return self._ok(True)

    def _find(self, key: str, message_id: int) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(key, []) if m["message_id"] == message_id), None)


# -- helpers -------------------------------------------------------------------------------------


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"-?[0-9]+", text))


def _params(request: PlatformRequest) -> dict[str, Any]:
    """Return a call's parameters: query string, then a JSON or form body (JSON-valued fields decoded)."""
    params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.body:
        if content_type == "application/json":
            try:
                body = json.loads(request.body)
            except ValueError:
                raise ValueError("can't parse JSON body") from None
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            params.update(body)
        elif content_type == "application/x-www-form-urlencoded":
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[-1] for k, v in form.items()})
        else:
            raise ValueError(f"unsupported content type {content_type or 'none'}")
    for key, value in list(params.items()):
        if isinstance(value, str) and value[:1] in ("{", "[") and key != "text":
            try:
                params[key] = json.loads(value)
            except ValueError:
                pass
    return params


def _allowed(update: Mapping[str, Any], allowed: Any) -> bool:
    if not allowed:
        return True
    return any(kind in update for kind in allowed)


def _auto_entities(text: str) -> list[dict[str, Any]]:
    """Return the entities Telegram marks in a user's plain text: @mentions and a leading /command."""
    entities: list[dict[str, Any]] = []
    command = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{5,32})?", text)
    if command is not None:
        entities.append({"type": "bot_command", "offset": 0, "length": _units(command.group(0))})
    for match in re.finditer(r"(?<![\w@/])@[A-Za-z][A-Za-z0-9_]{4,31}\b", text):
        if command is not None and match.start() < command.end():
            continue
        entities.append({"type": "mention", "offset": _units(text[: match.start()]), "length": _units(match.group(0))})
    return entities


def post_webhook(
    url: str, update: Mapping[str, Any] | bytes, secret: str | None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """POST an update to a bot's webhook as Telegram does (``X-Telegram-Bot-Api-Secret-Token``); return status and body."""
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    status, answer, _ = send(url, body=body, headers=headers, timeout=timeout)
    return status, answer
