"""A loopback Discord: the REST API (v10) and the Gateway websocket, as Discord's developer docs describe them.

``DiscordServer`` serves, on 127.0.0.1:

- **REST** under ``/api/v10`` (point the adapter's ``api_base`` at ``server.api_base``): every
  route but the interaction webhooks checks ``Authorization: Bot <token>`` (401
  ``{"message": "401: Unauthorized", "code": 0}`` otherwise). ``GET /gateway/bot``,
  ``GET /users/@me``, ``POST /channels/{id}/messages`` (``content`` of 1 to 2,000 characters,
  ``message_reference`` that must name a message of the channel unless ``fail_if_not_exists`` is
  false, ``allowed_mentions``), ``PATCH /channels/{id}/messages/{id}``,
  ``POST /channels/{id}/typing``, and the interaction webhooks
  ``PATCH /webhooks/{app}/{token}/messages/@original`` and ``POST /webhooks/{app}/{token}``.
  Errors carry Discord's JSON error body ``{"message", "code"}``: 10003 Unknown Channel, 10008
  Unknown Message, 50007 Cannot send messages to this user, 50035 Invalid Form Body. A 429 is
  ``{"message", "retry_after", "global"}`` with ``Retry-After`` and ``X-RateLimit-*`` headers
  (``rate_limit``).
- **the Gateway**, a websocket server in a thread (``gateway_url``, given by ``/gateway/bot``):
  HELLO (op 10) with ``heartbeat_interval``; IDENTIFY (op 2) is checked for the token (close 4004)
  and the intents (4013 for a value that is not an intent set, 4014 for privileged intents the
  application is not allowed — ``privileged_intents``); READY with the bot user, a
  ``session_id`` and ``resume_gateway_url``; HEARTBEAT (op 1) answered by HEARTBEAT_ACK (op 11)
  unless ``acking`` is off; dispatches carry increasing sequence numbers; RESUME (op 6) replays
  the events after the client's sequence, then RESUMED — or INVALID_SESSION (op 9, ``d: false``)
  for an unknown session. A test pushes messages (``push_message``), drops the connection
  (``drop``), sends RECONNECT (op 7) or INVALID_SESSION (``invalidate_session``), and waits on
  what arrived (``wait_until``).

Standard library and ``websockets`` (imported when the gateway starts).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from refactorbot.testing.platforms import PlatformRequest, PlatformResponse, PlatformServer

log = logging.getLogger("refactorbot.testing.discord")

__all__ = ["DISCORD_EPOCH_MS", "DiscordServer", "GatewayConnection", "Intents", "snowflake"]

#: Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds: snowflakes count from it.
DISCORD_EPOCH_MS = 1_420_070_400_000
_counter = itertools.count()


def snowflake() -> str:
    """Return a new snowflake id (milliseconds since Discord's epoch << 22, plus a counter)."""
    return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF))


class Intents:
    """Gateway intent bits (``IDENTIFY.d.intents``)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1  # privileged
    GUILD_MESSAGES = 1 << 9
    GUILD_PRESENCES = 1 << 8  # privileged
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15  # privileged
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
    ALL = (1 << 26) - 1


_API = re.compile(r"^/api/v10(/.*)$")
_CHANNEL_MESSAGES = re.compile(r"^/channels/(\d+)/messages$")
_CHANNEL_MESSAGE = re.compile(r"^/channels/(\d+)/messages/(\d+)$")
_TYPING = re.compile(r"^/channels/(\d+)/typing$")
_ORIGINAL = re.compile(r"^/webhooks/(\d+)/([A-Za-z0-9_.-]+)/messages/@original$")
_FOLLOWUP = re.compile(r"^/webhooks/(\d+)/([A-Za-z0-9_.-]+)$")


def _error(status: int, message: str, code: int, **extra: Any) -> PlatformResponse:
    return PlatformResponse.json({"message": message, "code": code, **extra}, status)


def _form_error(field: str, code: str, message: str) -> PlatformResponse:
    errors = {field: {"_errors": [{"code": code, "message": message}]}}
    return _error(400, "Invalid Form Body", 50035, errors=errors)


@dataclasses.dataclass
class GatewayConnection:
    """One websocket connection to the loopback Gateway, as the server sees it."""

    number: int
    connection: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    session_id: str | None = None
    identified: bool = False
    closed: bool = False
    #: ``(op, d)`` of every payload the client sent on this connection.
    received: list[tuple[int, Any]] = dataclasses.field(default_factory=list)
    close_code: int | None = None
    #: ``time.monotonic()`` when the client connected.
    at: float = dataclasses.field(default_factory=time.monotonic)

    def send(self, payload: dict[str, Any]) -> None:
        """Send one JSON payload (thread-safe); a closed connection drops it."""
        with self.lock:
            try:
                self.connection.send(json.dumps(payload))
            except Exception:
                self.closed = True


@dataclasses.dataclass
class _Session:
    session_id: str
    seq: int = 0
    #: every dispatch of the session: (seq, payload), for RESUME replays.
    events: list[tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    valid: bool = True


class DiscordServer(PlatformServer):
    """Discord's REST API and Gateway on loopback, for one bot ``token``."""

    def __init__(
        self,
        token: str,
        *,
        bot_id: str | None = None,
        application_id: str | None = None,
        bot_name: str = "refactorbot",
        heartbeat_interval: int = 41_250,
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_id = bot_id or snowflake()
        self.application_id = application_id or self.bot_id
        self.bot_name = bot_name
        #: Milliseconds sent in HELLO.
        self.heartbeat_interval = heartbeat_interval
        #: Privileged intents the application may use (the developer portal's switches).
        self.privileged_intents = Intents.MESSAGE_CONTENT
        #: Whether heartbeats are acknowledged (off: the client must see a zombied connection).
        self.acking = True
        #: ``session_start_limit.remaining`` of ``/gateway/bot``.
        self.session_starts_remaining = 1000
        #: Messages per channel id: the JSON message objects, in order (sent by the bot or pushed).
        self.channels: dict[str, list[dict[str, Any]]] = {}
        #: Channels that do not exist (10003) and DM channels whose user refuses DMs (50007).
        self.unknown_channels: set[str] = set()
        self.closed_dms: set[str] = set()
        #: Edits: ``(channel_id, message_id, content)``; typing: channel ids, in order.
        self.edits: list[tuple[str, str, str]] = []
        self.typing: list[str] = []
        #: Interactions created by ``interaction``: token -> the interaction; their replies.
        self.interactions: dict[str, dict[str, Any]] = {}
        self.interaction_replies: list[dict[str, Any]] = []
        #: Gateway state.
        self.connections: list[GatewayConnection] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self._sessions: dict[str, _Session] = {}
        self._gateway: Any = None
        self._gateway_thread: threading.Thread | None = None
        self._gateway_port = 0
        self._close_on_identify: int | None = None
        #: A close code every new connection gets right after connecting (the gateway refusing everyone).
        self.reject_connections: int | None = None
        self._gate = threading.Event()
        self._gate.set()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> DiscordServer:
        """Start REST and the Gateway."""
        super().start()
        if self._gateway is None:
            from websockets.sync.server import serve

            self._gateway = serve(
                self._serve_gateway, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=2**20
            )
            self._gateway_port = self._gateway.socket.getsockname()[1]
            self._gateway_thread = threading.Thread(
                target=self._gateway.serve_forever, name=f"DiscordGateway-{self._gateway_port}", daemon=True
            )
            self._gateway_thread.start()
        return self

    def stop(self) -> None:
        """Stop the Gateway (closing its connections) and REST."""
        gateway, self._gateway = self._gateway, None
        self._closing.set()
        self._gate.set()
        if gateway is not None:
            for conn in list(self.connections):
                self._abort(conn)
            gateway.shutdown()
            if self._gateway_thread is not None:
                self._gateway_thread.join(timeout=5)
                self._gateway_thread = None
        super().stop()

    @property
    def api_base(self) -> str:
        """Return the REST base URL (what ``https://discord.com/api/v10`` is on Discord)."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Return the Gateway's ``ws://`` URL (what ``/gateway/bot`` gives)."""
        return f"ws://127.0.0.1:{self._gateway_port}"

    # -- what a test does ---------------------------------------------------------------------------

    def rate_limit(self, retry_after: float, *, is_global: bool = False) -> None:
        """Answer the next REST request with 429 as Discord does (JSON body and headers)."""
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": "loopback-bucket",
            "X-RateLimit-Scope": "global" if is_global else "user",
            "Via": "1.1 google",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        self.script(PlatformResponse.json(body, 429, headers))

    def hold_connections(self) -> None:
        """Keep new connections waiting before HELLO until ``release_connections`` (to push events meanwhile)."""
        self._gate.clear()

    def release_connections(self) -> None:
        """Let held connections go on."""
        self._gate.set()

    def refuse_identify(self, code: int) -> None:
        """Close the next connection that identifies with ``code`` (4004, 4014, ...)."""
        self._close_on_identify = code

    def message(
        self,
        channel_id: str,
        content: str,
        *,
        author_id: str = "100000000000000001",
        author_name: str = "alice",
        bot: bool = False,
        guild_id: str | None = None,
        mentions: list[str] | None = None,
        reply_to: str | None = None,
        message_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Return a message object as MESSAGE_CREATE carries it (recorded in its channel)."""
        message: dict[str, Any] = {
            "id": message_id or snowflake(),
            "channel_id": channel_id,
            "author": {
                "id": author_id,
                "username": author_name,
                "global_name": author_name.title(),
                "discriminator": "0",
                "avatar": None,
                **({"bot": True} if bot else {}),
            },
            "content": content,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [
                {
                    "id": uid,
                    "username": self.bot_name if uid == self.bot_id else f"user{uid[-4:]}",
                    "bot": uid == self.bot_id,
                }
                for uid in (mentions or [])
            ],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 19 if reply_to else 0,
        }
        if guild_id is not None:
            message["guild_id"] = guild_id
            message["member"] = {"roles": [], "joined_at": message["timestamp"], "deaf": False, "mute": False}
        if reply_to is not None:
            message["message_reference"] = {"type": 0, "message_id": reply_to, "channel_id": channel_id}
            if guild_id is not None:
                message["message_reference"]["guild_id"] = guild_id
        with self._changed:
            self.channels.setdefault(channel_id, []).append(message)
        return message

    def push_message(self, channel_id: str, content: str, **fields: Any) -> dict[str, Any]:
        """Dispatch MESSAGE_CREATE for a new message (to the live session; kept for a RESUME); return it."""
        message = self.message(channel_id, content, **fields)
        self.dispatch("MESSAGE_CREATE", message)
        return message

    def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send a dispatch (op 0) on the newest session; return its sequence number."""
        with self._changed:
            session = self._live_session()
            if session is None:
                raise RuntimeError("no gateway session: the client has not identified")
            session.seq += 1
            payload = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.events.append((session.seq, payload))
            conn = self._connection_of(session.session_id)
        if conn is not None:
            conn.send(payload)
        return session.seq

    def drop(self, code: int | None = None) -> None:
        """Drop the live connection: abort the TCP connection, or close it with ``code`` (4000, say)."""
        conn = self.live_connection()
        if conn is None:
            raise RuntimeError("no live gateway connection")
        if code is None:
            self._abort(conn)
        else:  # the closing handshake waits for the client: not on the caller's thread (maybe its event loop)
            threading.Thread(target=conn.connection.close, args=(code, "loopback close"), daemon=True).start()

    def reconnect(self) -> None:
        """Send RECONNECT (op 7) on the live connection."""
        conn = self.live_connection()
        assert conn is not None, "no live gateway connection"
        conn.send({"op": 7, "d": None})

    def invalidate_session(self, resumable: bool) -> None:
        """Send INVALID_SESSION (op 9); ``resumable=False`` also forgets the session."""
        conn = self.live_connection()
        assert conn is not None, "no live gateway connection"
        if not resumable and conn.session_id in self._sessions:
            self._sessions[conn.session_id].valid = False
        conn.send({"op": 9, "d": resumable})

    def request_heartbeat(self) -> None:
        """Send HEARTBEAT (op 1): the client must beat at once."""
        conn = self.live_connection()
        assert conn is not None, "no live gateway connection"
        conn.send({"op": 1, "d": None})

    def live_connection(self) -> GatewayConnection | None:
        """Return the newest connection still open, if any."""
        with self._changed:
            for conn in reversed(self.connections):
                if not conn.closed:
                    return conn
        return None

    def interaction(
        self,
        channel_id: str,
        command: str,
        options: dict[str, str] | None = None,
        *,
        user_id: str = "100000000000000001",
        guild_id: str | None = None,
        interaction_type: int = 2,
    ) -> dict[str, Any]:
        """Return an APPLICATION_COMMAND interaction (what Discord POSTs to the endpoint), remembered by token."""
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
        user = {"id": user_id, "username": "alice", "global_name": "Alice", "discriminator": "0", "avatar": None}
        interaction: dict[str, Any] = {
            "id": snowflake(),
            "application_id": self.application_id,
            "type": interaction_type,
            "token": token,
            "version": 1,
            "channel_id": channel_id,
            "channel": {"id": channel_id, "type": 0 if guild_id else 1},
            "app_permissions": "0",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id or "0"},
            "context": 0 if guild_id else 1,
            "data": {
                "id": snowflake(),
                "name": command,
                "type": 1,
                "options": [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()],
            },
        }
        if guild_id is not None:
            interaction["guild_id"] = guild_id
            interaction["member"] = {"user": user, "roles": [], "permissions": "0", "nick": None}
        else:
            interaction["user"] = user
        with self._changed:
            self.interactions[token] = interaction
        return interaction

    def texts(self, channel_id: str, *, from_bot: bool = True) -> list[str]:
        """Return the content of the messages in a channel (by default: only the bot's)."""
        with self._changed:
            return [
                m["content"]
                for m in self.channels.get(channel_id, [])
                if not from_bot or m["author"]["id"] == self.bot_id
            ]

    def bot_messages(self) -> list[dict[str, Any]]:
        """Return every message the bot sent, in order, over all channels."""
        with self._changed:
            found = [m for msgs in self.channels.values() for m in msgs if m["author"]["id"] == self.bot_id]
        return sorted(found, key=lambda m: int(m["id"]))

    # -- REST ------------------------------------------------------------------------------------------

    def handle(self, request: PlatformRequest) -> PlatformResponse:
        """Route one REST request."""
        match = _API.match(request.path)
        if match is None:
            return _error(404, "404: Not Found", 0)
        path = match.group(1)
        routes: tuple[tuple[re.Pattern[str], str, Callable[..., PlatformResponse]], ...] = (
            (_ORIGINAL, "PATCH", self._edit_original),
            (_FOLLOWUP, "POST", self._followup),
        )
        for pattern, method, handler in routes:
            found = pattern.match(path)
            if found is not None and request.method == method:
                return handler(request, *found.groups())
        if request.headers.get("authorization") != f"Bot {self.token}":
            return _error(401, "401: Unauthorized", 0)
        if request.method == "GET" and path == "/gateway/bot":
            return PlatformResponse.json(
                {
                    "url": self.gateway_url,
                    "shards": 1,
                    "session_start_limit": {
                        "total": 1000,
                        "remaining": self.session_starts_remaining,
                        "reset_after": 14_400_000,
                        "max_concurrency": 1,
                    },
                }
            )
        if request.method == "GET" and path == "/users/@me":
            return PlatformResponse.json(self._bot_user())
        routes = (
            (_CHANNEL_MESSAGES, "POST", self._create_message),
            (_CHANNEL_MESSAGE, "PATCH", self._edit_message),
            (_TYPING, "POST", self._typing),
        )
        for pattern, method, handler in routes:
            found = pattern.match(path)
            if found is not None and request.method == method:
                return handler(request, *found.groups())
        return _error(404, "404: Not Found", 0)

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "username": self.bot_name,
            "global_name": None,
            "discriminator": "0",
            "avatar": None,
            "bot": True,
            "verified": True,
            "flags": 0,
        }

    def _body(self, request: PlatformRequest) -> dict[str, Any] | PlatformResponse:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(400, "Cannot send an empty message", 50006)
        try:
            body = request.json()
        except ValueError:
            return _error(400, "400: Bad Request", 50109)
        if not isinstance(body, dict):
            return _form_error("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return body

    def _content(self, body: dict[str, Any], required: bool = True) -> str | PlatformResponse:
        content = body.get("content")
        if content is None or content == "":
            if required:
                return _error(400, "Cannot send an empty message", 50006)
            return ""
        if not isinstance(content, str):
            return _form_error("content", "BASE_TYPE_STRING", "Must be a string.")
        if len(content) > 2000:
            return _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        return content

    def _check_channel(self, channel_id: str) -> PlatformResponse | None:
        if channel_id in self.unknown_channels:
            return _error(404, "Unknown Channel", 10003)
        if channel_id in self.closed_dms:
            return _error(403, "Cannot send messages to this user", 50007)
        return None

    def _create_message(self, request: PlatformRequest, channel_id: str) -> PlatformResponse:
        refusal = self._check_channel(channel_id)
        if refusal is not None:
            return refusal
        body = self._body(request)
        if isinstance(body, PlatformResponse):
            return body
        content = self._content(body)
        if isinstance(content, PlatformResponse):
            return content
        reference = body.get("message_reference")
        with self._changed:
            known = {m["id"] for m in self.channels.get(channel_id, [])}
        if reference is not None:
            if not isinstance(reference, dict) or not isinstance(reference.get("message_id"), str | int):
                return _form_error("message_reference", "MODEL_TYPE_CONVERT", "Invalid message reference")
            if str(reference["message_id"]) not in known and reference.get("fail_if_not_exists", True):
                return _form_error("message_reference", "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
        message = self._bot_message(channel_id, content, body)
        if reference is not None and str(reference["message_id"]) in known:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reference["message_id"]),
                "channel_id": channel_id,
            }
        with self._changed:
            self.channels.setdefault(channel_id, []).append(message)
        return PlatformResponse.json(message)

    def _bot_message(self, channel_id: str, content: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": snowflake(),
            "channel_id": channel_id,
            "author": self._bot_user(),
            "content": content,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            #: Kept so a test can check what the client asked (Discord does not echo it).
            "allowed_mentions": body.get("allowed_mentions"),
        }

    def _edit_message(self, request: PlatformRequest, channel_id: str, message_id: str) -> PlatformResponse:
        refusal = self._check_channel(channel_id)
        if refusal is not None:
            return refusal
        body = self._body(request)
        if isinstance(body, PlatformResponse):
            return body
        content = self._content(body)
        if isinstance(content, PlatformResponse):
            return content
        with self._changed:
            message = next((m for m in self.channels.get(channel_id, []) if m["id"] == message_id), None)
            if message is None:
                return _error(404, "Unknown Message", 10008)
            if message["author"]["id"] != self.bot_id:
                return _error(403, "Cannot edit a message authored by another user", 50005)
            message["content"] = content
            message["edited_timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
            self.edits.append((channel_id, message_id, content))
            return PlatformResponse.json(dict(message))

    def _typing(self, request: PlatformRequest, channel_id: str) -> PlatformResponse:
        refusal = self._check_channel(channel_id)
        if refusal is not None:
            return refusal
        with self._changed:
            self.typing.append(channel_id)
        return PlatformResponse(204)

    def _interaction_reply(
        self, request: PlatformRequest, application_id: str, token: str, kind: str
    ) -> PlatformResponse:
        interaction = self.interactions.get(token)
        if interaction is None or application_id != self.application_id:
            return _error(404, "Unknown Webhook", 10015)
        body = self._body(request)
        if isinstance(body, PlatformResponse):
            return body
        content = self._content(body)
        if isinstance(content, PlatformResponse):
            return content
        message = self._bot_message(interaction["channel_id"], content, body)
        message["interaction_id"] = interaction["id"]
        message["webhook_id"] = application_id
        with self._changed:
            self.interaction_replies.append({"kind": kind, "interaction": interaction["id"], **message})
            self.channels.setdefault(interaction["channel_id"], []).append(message)
        return PlatformResponse.json(message)

    def _edit_original(self, request: PlatformRequest, application_id: str, token: str) -> PlatformResponse:
        return self._interaction_reply(request, application_id, token, "original")

    def _followup(self, request: PlatformRequest, application_id: str, token: str) -> PlatformResponse:
        return self._interaction_reply(request, application_id, token, "followup")

    # -- the Gateway ------------------------------------------------------------------------------

    def _live_session(self) -> _Session | None:
        for conn in reversed(self.connections):
            session = self._sessions.get(conn.session_id or "")
            if session is not None and session.valid:
                return session
        return None

    def ready(self) -> bool:
        """Return whether the newest connection has identified or resumed (its READY or RESUMED sent)."""
        conn = self.live_connection()
        return conn is not None and conn.identified

    def _connection_of(self, session_id: str) -> GatewayConnection | None:
        for conn in reversed(self.connections):
            if conn.session_id == session_id and not conn.closed:
                return conn
        return None

    def _abort(self, conn: GatewayConnection) -> None:
        conn.closed = True
        sock = conn.connection.socket
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.notify()

    def _serve_gateway(self, connection: Any) -> None:
        with self._changed:
            conn = GatewayConnection(len(self.connections) + 1, connection)
            self.connections.append(conn)
            self._changed.notify_all()
        while not self._gate.wait(0.05):
            if self._closing.is_set():
                return
        if self.reject_connections is not None:
            connection.close(self.reject_connections, "loopback refuses connections")
            conn.closed = True
            self.notify()
            return
        query = connection.request.path.partition("?")[2] if connection.request is not None else ""
        if "v=10" not in query.split("&") or "encoding=json" not in query.split("&"):
            connection.close(4012, "Invalid API version")
            conn.closed = True
            self.notify()
            return
        conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval}, "s": None, "t": None})
        try:
            for raw in connection:
                try:
                    payload = json.loads(raw)
                    op, data = int(payload["op"]), payload.get("d")
                except (ValueError, KeyError, TypeError):
                    connection.close(4002, "Error while decoding payload.")
                    break
                with self._changed:
                    conn.received.append((op, data))
                    self._changed.notify_all()
                if not self._on_payload(conn, op, data):
                    break
        except Exception:  # the client went away mid-frame; the close code below records how
            log.debug("discord loopback: gateway connection ended", exc_info=True)
        finally:
            conn.close_code = connection.close_code
            conn.closed = True
            self.notify()

    def _on_payload(self, conn: GatewayConnection, op: int, data: Any) -> bool:
        """Answer one client payload; return False once the connection is closed."""
        connection = conn.connection
        if op == 1:
            with self._changed:
                self.heartbeats += 1
            if self.acking:
                conn.send({"op": 11, "d": None})
            return True
        if op == 2:
            return self._identify(conn, data)
        if op == 6:
            return self._resume(conn, data)
        if op in (3, 4, 8):  # presence, voice state, request guild members: accepted, nothing to do here
            return True
        connection.close(4001, "Unknown opcode.")
        return False

    def _identify(self, conn: GatewayConnection, data: Any) -> bool:
        connection = conn.connection
        with self._changed:
            self.identifies.append(data if isinstance(data, dict) else {})
        if conn.identified:
            connection.close(4005, "Already authenticated.")
            return False
        if not isinstance(data, dict) or not isinstance(data.get("properties"), dict):
            connection.close(4002, "Error while decoding payload.")
            return False
        if data.get("token") != self.token:
            connection.close(4004, "Authentication failed.")
            return False
        scripted, self._close_on_identify = self._close_on_identify, None
        if scripted is not None:
            connection.close(scripted, "scripted close")
            return False
        intents = data.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0 or intents & ~Intents.ALL:
            connection.close(4013, "Invalid intent(s).")
            return False
        if intents & Intents.PRIVILEGED & ~self.privileged_intents:
            connection.close(4014, "Disallowed intent(s).")
            return False
        session = _Session(secrets.token_hex(16))
        with self._changed:  # READY is the session's first event: nothing a test pushes can come before it
            self._sessions[session.session_id] = session
            conn.session_id = session.session_id
            self.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": self._bot_user(),
                    "guilds": [],
                    "session_id": session.session_id,
                    "resume_gateway_url": self.gateway_url,
                    "shard": [0, 1],
                    "application": {"id": self.application_id, "flags": 0},
                },
            )
            conn.identified = True
            self._changed.notify_all()
        return True

    def _resume(self, conn: GatewayConnection, data: Any) -> bool:
        with self._changed:
            self.resumes.append(data if isinstance(data, dict) else {})
        if not isinstance(data, dict) or data.get("token") != self.token:
            conn.connection.close(4004, "Authentication failed.")
            return False
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not session.valid or not isinstance(seq, int):
            conn.send({"op": 9, "d": False})
            return True
        with self._changed:  # the replay and RESUMED before anything a test pushes next
            conn.session_id = session.session_id
            for number, payload in session.events:
                if number > seq:
                    conn.send(payload)
            self.dispatch("RESUMED", {})
            conn.identified = True
            self._changed.notify_all()
        return True
