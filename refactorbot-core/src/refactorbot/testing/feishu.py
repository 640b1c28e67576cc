"""A loopback Feishu / Lark Open Platform for channel tests (standard library and ``websockets`` only).

``FeishuServer`` speaks the documented APIs the ``feishu`` channel uses, on 127.0.0.1:

- ``POST /open-apis/auth/v3/tenant_access_token/internal``: tokens that expire after
  ``token_ttl`` seconds (``expire_tokens()`` ends them early; ``token_requests`` counts issues);
- ``GET /open-apis/bot/v3/info``: the bot and its ``open_id``;
- ``POST /open-apis/im/v1/messages?receive_id_type=chat_id``, ``POST .../messages/{id}/reply``,
  ``PUT .../messages/{id}``: ``text`` and ``post`` messages kept per chat, the ``uuid``
  de-duplication, content checked as Feishu checks it (``230001`` for an invalid post);
- errors in Feishu's ``{"code", "msg"}`` shape (``feishu_error``), scripted with ``script``;
- the long connection: ``POST /callback/ws/endpoint`` and a websocket speaking ``pbbp2.Frame``
  (pongs to pings, events pushed with ``push_event``, acknowledgements recorded, ``drop()`` to
  cut the connection, ``refuse_connections`` to keep it down).

Events are built with ``message_event`` (``im.message.receive_v1``, schema 2.0), encrypted with
``encrypt_body`` (AES-256-CBC, written here in pure Python so the channel's decryption is
checked against an independent implementation) and signed with ``sign_headers``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from refactorbot.testing._http import send
from refactorbot.testing.platforms import PlatformRequest, PlatformResponse, PlatformServer

log = logging.getLogger("refactorbot.testing.feishu")

__all__ = [
    "FeishuServer",
    "encrypt_body",
    "feishu_error",
    "mention",
    "message_event",
    "post_event",
    "sign_headers",
    "url_verification",
]


# -- AES-256-CBC encryption (FIPS-197), for building encrypted event bodies -----------------------

_SBOX = bytearray(256)


def _init_sbox() -> None:
    p = q = 1
    while True:  # multiplicative inverse through the generator 3, then the affine map
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ _rotl8(q, 1) ^ _rotl8(q, 2) ^ _rotl8(q, 3) ^ _rotl8(q, 4)
        _SBOX[p] = x ^ 0x63
        if p == 1:
            break
    _SBOX[0] = 0x63


def _rotl8(x: int, shift: int) -> int:
    return ((x << shift) | (x >> (8 - shift))) & 0xFF


_init_sbox()


def _xtime(a: int) -> int:
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


def _expand_key(key: bytes) -> list[list[int]]:
    """Return the 15 round keys of AES-256 (16 bytes each)."""
    words = [list(key[i : i + 4]) for i in range(0, 32, 4)]
    rcon = 1
    for i in range(8, 60):
        word = list(words[i - 1])
        if i % 8 == 0:
            word = word[1:] + word[:1]
            word = [_SBOX[b] for b in word]
            word[0] ^= rcon
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            word = [_SBOX[b] for b in word]
        words.append([a ^ b for a, b in zip(words[i - 8], word, strict=True)])
    return [[b for word in words[r * 4 : r * 4 + 4] for b in word] for r in range(15)]


def _encrypt_block(block: bytes, round_keys: list[list[int]]) -> bytes:
    state = [b ^ k for b, k in zip(block, round_keys[0], strict=True)]
    for rnd in range(1, 15):
        state = [_SBOX[b] for b in state]
        state = [state[(i + 4 * (i % 4)) % 16] for i in range(16)]  # shift rows (column-major state)
        if rnd != 14:
            mixed = []
            for c in range(4):
                a = state[4 * c : 4 * c + 4]
                total = a[0] ^ a[1] ^ a[2] ^ a[3]
                mixed += [a[i] ^ total ^ _xtime(a[i] ^ a[(i + 1) % 4]) for i in range(4)]
            state = mixed
        state = [b ^ k for b, k in zip(state, round_keys[rnd], strict=True)]
    return bytes(state)


def aes256_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Return AES-256-CBC of ``plaintext`` with PKCS#7 padding (no IV prefix)."""
    if len(key) != 32 or len(iv) != 16:
        raise ValueError("AES-256-CBC needs a 32-byte key and a 16-byte IV")
    pad = 16 - len(plaintext) % 16
    data = plaintext + bytes([pad]) * pad
    round_keys = _expand_key(key)
    out = bytearray()
    previous = iv
    for i in range(0, len(data), 16):
        previous = _encrypt_block(bytes(a ^ b for a, b in zip(data[i : i + 16], previous, strict=True)), round_keys)
        out += previous
    return bytes(out)


# -- events ------------------------------------------------------------------------------------------


def mention(key: str, open_id: str, name: str) -> dict[str, Any]:
    """Return one entry of ``message.mentions`` (``key`` is the placeholder in the text, ``@_user_1``)."""
    return {
        "key": key,
        "id": {"open_id": open_id, "union_id": "on_" + open_id[3:], "user_id": open_id[3:11]},
        "name": name,
        "tenant_key": "tenant-loopback",
    }


def message_event(
    *,
    chat_id: str,
    sender_open_id: str,
    text: str,
    message_id: str | None = None,
    chat_type: str = "p2p",
    mentions: list[dict[str, Any]] | None = None,
    parent_id: str | None = None,
    token: str = "",
    app_id: str = "cli_loopback",
    message_type: str = "text",
    content: Any = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Return an ``im.message.receive_v1`` event (schema 2.0) as Feishu sends it."""
    now_ms = str(int(time.time() * 1000))
    message: dict[str, Any] = {
        "message_id": message_id or "om_" + secrets.token_hex(16),
        "root_id": parent_id or "",
        "parent_id": parent_id or "",
        "create_time": now_ms,
        "update_time": now_ms,
        "chat_id": chat_id,
        "chat_type": chat_type,
        "message_type": message_type,
        "content": json.dumps({"text": text} if content is None else content, ensure_ascii=False),
        "user_agent": "Mozilla/5.0 Lark/7.0",
    }
    if mentions:
        message["mentions"] = mentions
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or secrets.token_hex(16),
            "event_type": "im.message.receive_v1",
            "create_time": now_ms,
            "token": token,
            "app_id": app_id,
            "tenant_key": "tenant-loopback",
        },
        "event": {
            "sender": {
                "sender_id": {
                    "union_id": "on_" + sender_open_id[3:],
                    "user_id": sender_open_id[3:11],
                    "open_id": sender_open_id,
                },
                "sender_type": "user",
                "tenant_key": "tenant-loopback",
            },
            "message": message,
        },
    }


def url_verification(token: str, challenge: str | None = None) -> dict[str, Any]:
    """Return the URL-verification request Feishu sends when a request URL is saved."""
    return {"challenge": challenge or secrets.token_urlsafe(16), "token": token, "type": "url_verification"}


def encrypt_body(payload: Any, encrypt_key: str, iv: bytes | None = None) -> bytes:
    """Return ``{"encrypt": base64(IV + AES-256-CBC(SHA-256(key), JSON))}`` as Feishu sends it."""
    plaintext = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    vector = iv if iv is not None else os.urandom(16)
    key = hashlib.sha256(encrypt_key.encode("utf-8")).digest()
    sealed = vector + aes256_cbc_encrypt(key, vector, plaintext)
    return json.dumps({"encrypt": base64.b64encode(sealed).decode("ascii")}).encode()


def sign_headers(
    body: bytes, encrypt_key: str, *, timestamp: int | None = None, nonce: str | None = None
) -> dict[str, str]:
    """Return the headers of a signed event request: timestamp, nonce and ``X-Lark-Signature``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = nonce if nonce is not None else secrets.token_hex(8)
    digest = hashlib.sha256((stamp + once + encrypt_key).encode("utf-8") + body).hexdigest()
    return {
        "Content-Type": "application/json; charset=utf-8",
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": once,
        "X-Lark-Signature": digest,
    }


def post_event(
    url: str, event: Any, *, encrypt_key: str | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """POST an event to ``url`` as Feishu does (encrypted and signed when ``encrypt_key`` is given).

    Returns ``(status, decoded JSON body or text)``.
    """
    if encrypt_key:
        body = encrypt_body(event, encrypt_key)
        sent = sign_headers(body, encrypt_key)
    else:
        body = json.dumps(event, ensure_ascii=False).encode("utf-8")
        sent = {"Content-Type": "application/json; charset=utf-8"}
    sent.update(headers or {})
    status, raw, _ = send(url, body=body, headers=sent)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def feishu_error(code: int, msg: str, status: int = 400, headers: Mapping[str, str] | None = None) -> PlatformResponse:
    """Return an error as Feishu answers one: ``{"code": ..., "msg": ...}`` with an HTTP status.

    The rate limit: ``feishu_error(99991400, "request trigger frequency limit", 429,
    {"x-ogw-ratelimit-reset": "2"})``.
    """
    return PlatformResponse.json({"code": code, "msg": msg, "error": {"log_id": secrets.token_hex(8)}}, status, headers)


# -- the long connection's frames (pbbp2.Frame), encoded independently of the channel ---------------


@dataclasses.dataclass
class WireFrame:
    """One ``pbbp2.Frame``: SeqID 1, LogID 2, service 3, method 4, headers 5, payload 8."""

    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = 0
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    payload: bytes | None = None

    def header(self, key: str) -> str | None:
        return next((v for k, v in self.headers if k == key), None)

    def encode(self) -> bytes:
        out = bytearray()
        for number, scalar in ((1, self.seq_id), (2, self.log_id), (3, self.service), (4, self.method)):
            out += _varint(number << 3) + _varint(scalar)
        for key, text in self.headers:
            inner = _length_field(1, key.encode()) + _length_field(2, text.encode())
            out += _length_field(5, inner)
        if self.payload is not None:
            out += _length_field(8, self.payload)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> WireFrame:
        frame = cls()
        for number, value in _read_fields(data):
            if number == 1 and isinstance(value, int):
                frame.seq_id = value
            elif number == 2 and isinstance(value, int):
                frame.log_id = value
            elif number == 3 and isinstance(value, int):
                frame.service = value
            elif number == 4 and isinstance(value, int):
                frame.method = value
            elif number == 5 and isinstance(value, bytes):
                pair = dict(_read_fields(value))
                key, val = pair.get(1, b""), pair.get(2, b"")
                assert isinstance(key, bytes) and isinstance(val, bytes)
                frame.headers.append((key.decode(), val.decode()))
            elif number == 8 and isinstance(value, bytes):
                frame.payload = value
        return frame


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _read_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        result = shift = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        if key & 7 == 0:
            fields.append((key >> 3, varint()))
        elif key & 7 == 2:
            length = varint()
            fields.append((key >> 3, bytes(data[i : i + length])))
            i += length
        else:
            raise ValueError(f"unexpected wire type {key & 7}")
    return fields


# -- the server ---------------------------------------------------------------------------------------


def _post_text(content: Any) -> str:
    """Return what a reader sees of a post: its paragraphs' text, one line each."""
    body: dict[str, Any] = content.get("zh_cn") or content.get("en_us") or next(iter(content.values()), {})
    lines = [body["title"]] if body.get("title") else []
    for paragraph in body.get("content", []):
        lines.append("".join(str(e.get("text", "")) for e in paragraph if e.get("tag") != "hr"))
    return "\n".join(lines)


_TEXT_TAGS = {"text", "a", "at", "img", "media", "emotion", "code_block", "hr", "md"}
_STYLES = {"bold", "italic", "underline", "lineThrough"}


def _post_problem(content: Any) -> str | None:
    """Return why ``content`` is not a valid post, or None."""
    if not isinstance(content, dict) or not content:
        return "post content must be an object keyed by language"
    for body in content.values():
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            return "post content needs a content list"
        for paragraph in body["content"]:
            if not isinstance(paragraph, list):
                return "each post paragraph must be a list"
            for element in paragraph:
                if not isinstance(element, dict) or element.get("tag") not in _TEXT_TAGS:
                    return f"unknown post element {element!r:.60}"
                if element["tag"] in ("text", "code_block", "md") and not isinstance(element.get("text"), str):
                    return f"{element['tag']} element without text"
                if element["tag"] == "a" and not str(element.get("href", "")).startswith(("http", "mailto:")):
                    return "a element without an http(s) href"
                style = element.get("style", [])
                if not isinstance(style, list) or not set(style) <= _STYLES:
                    return f"unknown style {style!r}"
    return None


class FeishuServer(PlatformServer):
    """The loopback Feishu Open Platform (HTTP APIs and the long connection); see the module docstring."""

    def __init__(
        self,
        *,
        app_id: str = "cli_loopback0001",
        app_secret: str = "loopback-app-secret-0123456789",  # noqa: S107  the loopback server's fake credential
        bot_open_id: str = "ou_bot0000000000000000000000000001",
        token_ttl: int = 7200,
        ping_interval: int = 120,
    ) -> None:
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret
        self.bot_open_id = bot_open_id
        self.token_ttl = token_ttl
        self.ping_interval = ping_interval
        #: Tokens issued and when each expires (``time.monotonic()``).
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        #: Every message, inbound (pushed by a test) and outbound (sent by the app), by id.
        self.by_id: dict[str, dict[str, Any]] = {}
        #: Messages the app sent, in order: message_id, chat_id, msg_type, content, text, parent_id, uuid.
        self.messages: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self._by_uuid: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        # the long connection
        self.refuse_connections = False
        self.endpoint_requests = 0
        self.connections = 0
        self.pings = 0
        self.acks: dict[str, dict[str, Any]] = {}
        self._sockets: list[Any] = []
        self._ws_server: Any = None
        self._ws_thread: threading.Thread | None = None
        self._service_id = 7

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FeishuServer:
        """Serve HTTP and the long connection's websocket."""
        super().start()
        if self._ws_server is None:
            from websockets.sync.server import serve

            self._ws_server = serve(self._serve_socket, "127.0.0.1", 0)
            self._ws_thread = threading.Thread(target=self._ws_server.serve_forever, daemon=True, name="feishu-ws")
            self._ws_thread.start()
        return self

    def stop(self) -> None:
        """Stop both servers."""
        server, self._ws_server = self._ws_server, None
        if server is not None:
            self._close_sockets()
            server.shutdown()
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=5)
            self._ws_thread = None
        super().stop()

    @property
    def ws_port(self) -> int:
        """Return the websocket server's port."""
        if self._ws_server is None:
            raise RuntimeError("FeishuServer is not started")
        return int(self._ws_server.socket.getsockname()[1])

    # -- helpers for tests ------------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """End every issued token now (the next call with one gets code 99991663)."""
        with self._changed:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def record_inbound(self, event: Mapping[str, Any]) -> None:
        """Remember a message event's message, so a reply to it finds it."""
        message = event["event"]["message"]
        with self._changed:
            self.by_id[message["message_id"]] = {
                "message_id": message["message_id"],
                "chat_id": message["chat_id"],
                "inbound": True,
            }

    def texts(self, chat_id: str | None = None) -> list[str]:
        """Return the visible text of each message the app sent (to one chat), in order."""
        with self._changed:
            return [m["text"] for m in self.messages if chat_id is None or m["chat_id"] == chat_id]

    def wait_for_messages(self, count: int, chat_id: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until the app sent ``count`` messages (to one chat); return them."""
        self.wait_until(lambda: len(self.texts(chat_id)) >= count, timeout)
        with self._changed:
            return [m for m in self.messages if chat_id is None or m["chat_id"] == chat_id]

    # -- HTTP -----------------------------------------------------------------------------------------

    def handle(self, request: PlatformRequest) -> PlatformResponse:
        """Route one API call."""
        path = request.path
        if request.method == "POST" and path == "/open-apis/auth/v3/tenant_access_token/internal":
            return self._issue_token(request)
        if request.method == "POST" and path == "/callback/ws/endpoint":
            return self._endpoint(request)
        if not path.startswith("/open-apis/"):
            return feishu_error(404, f"no route {request.method} {path}", 404)
        problem = self._auth_problem(request)
        if problem is not None:
            return problem
        if request.method == "GET" and path == "/open-apis/bot/v3/info":
            bot = {
                "activate_status": 2,
                "app_name": "loopback bot",
                "avatar_url": "https://example.com/bot.png",
                "ip_white_list": [],
                "open_id": self.bot_open_id,
            }
            return PlatformResponse.json({"code": 0, "msg": "ok", "bot": bot})
        if request.method == "POST" and path == "/open-apis/im/v1/messages":
            if request.query.get("receive_id_type") != ["chat_id"]:
                return feishu_error(99992402, "field validation failed: receive_id_type")
            body = self._body(request)
            if body is None or not isinstance(body.get("receive_id"), str) or not body["receive_id"]:
                return feishu_error(99992402, "field validation failed: receive_id")
            return self._create(body, body["receive_id"], None)
        parts = path.split("/")
        if len(parts) == 6 and parts[1:5] == ["open-apis", "im", "v1", "messages"] and request.method == "PUT":
            return self._edit(parts[5], self._body(request))
        if len(parts) == 7 and parts[1:5] == ["open-apis", "im", "v1", "messages"] and parts[6] == "reply":
            if request.method != "POST":
                return feishu_error(404, "method not allowed", 405)
            with self._changed:
                parent = self.by_id.get(parts[5])
            if parent is None:
                return feishu_error(230011, "The message was withdrawn or does not exist.")
            body = self._body(request)
            if body is None:
                return feishu_error(99992402, "field validation failed")
            return self._create(body, parent["chat_id"], parent["message_id"])
        return feishu_error(404, f"no route {request.method} {path}", 404)

    def _issue_token(self, request: PlatformRequest) -> PlatformResponse:
        body = self._body(request) or {}
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return feishu_error(10014, "app secret invalid")
        token = "t-" + secrets.token_hex(16)
        with self._changed:
            self.tokens[token] = time.monotonic() + self.token_ttl
            self.token_requests += 1
        return PlatformResponse.json({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": self.token_ttl})

    def _auth_problem(self, request: PlatformRequest) -> PlatformResponse | None:
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not given[7:]:
            return feishu_error(99991661, "Missing access token for authorization.", 400)
        with self._changed:
            expires = self.tokens.get(given[7:])
        if expires is None or expires <= time.monotonic():
            return feishu_error(99991663, "Invalid access token for authorization.", 400)
        return None

    @staticmethod
    def _body(request: PlatformRequest) -> dict[str, Any] | None:
        try:
            body = request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _content(self, body: Mapping[str, Any]) -> tuple[str, Any, str] | PlatformResponse:
        msg_type, raw = body.get("msg_type"), body.get("content")
        if msg_type not in ("text", "post") or not isinstance(raw, str):
            return feishu_error(230001, "invalid msg_type or content")
        size = len(json.dumps(body, ensure_ascii=False).encode("utf-8"))
        if size > (150 if msg_type == "text" else 30) * 1024:
            return feishu_error(230025, "The length of the message content reaches its limit.")
        try:
            content = json.loads(raw)
        except ValueError:
            return feishu_error(230001, "invalid content: not JSON")
        if msg_type == "text":
            if not isinstance(content, dict) or not isinstance(content.get("text"), str) or not content["text"]:
                return feishu_error(230001, "invalid content: text required")
            return msg_type, content, content["text"]
        problem = _post_problem(content)
        if problem is not None:
            return feishu_error(230001, f"invalid content: {problem}")
        return msg_type, content, _post_text(content)

    def _create(self, body: Mapping[str, Any], chat_id: str, parent_id: str | None) -> PlatformResponse:
        checked = self._content(body)
        if isinstance(checked, PlatformResponse):
            return checked
        msg_type, content, text = checked
        request_uuid = body.get("uuid")
        with self._changed:
            if isinstance(request_uuid, str) and request_uuid in self._by_uuid:
                record = self._by_uuid[request_uuid]  # the same request again: the same message
            else:
                record = {
                    "message_id": f"om_loopback{next(self._ids):06d}",
                    "chat_id": chat_id,
                    "msg_type": msg_type,
                    "content": content,
                    "text": text,
                    "parent_id": parent_id,
                    "uuid": request_uuid,
                    "edits": 0,
                }
                self.messages.append(record)
                self.by_id[record["message_id"]] = record
                if isinstance(request_uuid, str):
                    self._by_uuid[request_uuid] = record
        return PlatformResponse.json({"code": 0, "msg": "success", "data": self._message_data(record)})

    def _message_data(self, record: Mapping[str, Any]) -> dict[str, Any]:
        now_ms = str(int(time.time() * 1000))
        return {
            "message_id": record["message_id"],
            "root_id": record.get("parent_id") or "",
            "parent_id": record.get("parent_id") or "",
            "msg_type": record["msg_type"],
            "create_time": now_ms,
            "update_time": now_ms,
            "deleted": False,
            "updated": bool(record.get("edits")),
            "chat_id": record["chat_id"],
            "sender": {"id": self.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": "tenant-loopback"},
            "body": {"content": json.dumps(record["content"], ensure_ascii=False)},
        }

    def _edit(self, message_id: str, body: dict[str, Any] | None) -> PlatformResponse:
        with self._changed:
            record = self.by_id.get(message_id)
        if record is None or record.get("inbound"):
            return feishu_error(230011, "The message was withdrawn or does not exist.")
        if body is None:
            return feishu_error(99992402, "field validation failed")
        checked = self._content(body)
        if isinstance(checked, PlatformResponse):
            return checked
        if record["edits"] >= 20:
            return feishu_error(230072, "The message has reached the number of times it can be edited.")
        msg_type, content, text = checked
        with self._changed:
            record.update(msg_type=msg_type, content=content, text=text, edits=record["edits"] + 1)
            self.edits.append({"message_id": message_id, "text": text})
        return PlatformResponse.json({"code": 0, "msg": "success", "data": self._message_data(record)})

    # -- the long connection ------------------------------------------------------------------------

    def _endpoint(self, request: PlatformRequest) -> PlatformResponse:
        body = self._body(request) or {}
        with self._changed:
            self.endpoint_requests += 1
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return PlatformResponse.json({"code": 1000040343, "msg": "app id or secret invalid"})
        if self.refuse_connections:
            return PlatformResponse.json({"code": 1, "msg": "system busy"})
        device = secrets.token_hex(6)
        url = f"ws://127.0.0.1:{self.ws_port}/ws?device_id={device}&service_id={self._service_id}"
        config = {
            "ReconnectCount": -1,
            "ReconnectInterval": 120,
            "ReconnectNonce": 30,
            "PingInterval": self.ping_interval,
        }
        return PlatformResponse.json({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}})

    def _serve_socket(self, socket: Any) -> None:
        with self._changed:
            self._sockets.append(socket)
            self.connections += 1
            self._changed.notify_all()
        try:
            for data in socket:
                if not isinstance(data, bytes):
                    continue
                frame = WireFrame.decode(data)
                kind = frame.header("type")
                if frame.method == 0 and kind == "ping":
                    with self._changed:
                        self.pings += 1
                        self._changed.notify_all()
                    config = {"PingInterval": self.ping_interval}
                    pong = WireFrame(0, 0, frame.service, 0, [("type", "pong")], json.dumps(config).encode())
                    socket.send(pong.encode())
                elif frame.method == 1:
                    key = frame.header("message_id") or ""
                    answer = json.loads(frame.payload or b"{}")
                    with self._changed:
                        self.acks[key] = {"code": answer.get("code"), "headers": dict(frame.headers)}
                        self._changed.notify_all()
        except Exception:  # the client went away
            log.debug("feishu loopback: long connection ended", exc_info=True)
        finally:
            with self._changed:
                if socket in self._sockets:
                    self._sockets.remove(socket)
                self._changed.notify_all()

    @property
    def connected(self) -> int:
        """Return how many long connections are open."""
        with self._changed:
            return len(self._sockets)

    def push_event(self, event: Mapping[str, Any], *, parts: int = 1) -> str:
        """Send an event on the open long connection (split over ``parts`` frames); return its frame message_id."""
        self.wait_until(lambda: self.connected > 0)
        if event.get("header", {}).get("event_type") == "im.message.receive_v1":
            self.record_inbound(event)
        payload = json.dumps(event, ensure_ascii=False).encode("utf-8")
        key = secrets.token_hex(8)
        size = -(-len(payload) // parts)
        with self._changed:
            socket = self._sockets[-1]
        for seq in range(parts):
            headers = [("type", "event"), ("message_id", key), ("sum", str(parts)), ("seq", str(seq))]
            headers.append(("trace_id", secrets.token_hex(8)))
            frame = WireFrame(next(self._ids), 0, self._service_id, 1, headers, payload[seq * size : (seq + 1) * size])
            socket.send(frame.encode())
        return key

    def wait_for_ack(self, key: str, timeout: float = 30.0) -> dict[str, Any]:
        """Block until the client acknowledged the event ``key``; return ``{"code", "headers"}``."""
        self.wait_until(lambda: key in self.acks, timeout)
        with self._changed:
            return self.acks[key]

    def drop(self) -> None:
        """Close every open long connection (waiting for one to be open first); the client should reconnect."""
        self.wait_until(lambda: self.connected > 0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        with self._changed:
            sockets = list(self._sockets)
        for socket in sockets:
            try:
                socket.close(code=1011, reason="loopback drop")
            except Exception:  # already closing on its own; waited for below either way
                log.debug("feishu loopback: closing a long connection failed", exc_info=True)
        self.wait_until(lambda: not any(socket in self._sockets for socket in sockets))
