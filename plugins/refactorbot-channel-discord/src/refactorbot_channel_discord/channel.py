"""The ``discord`` channel: a Discord bot, through the Gateway (in) and the REST API (out).

In: the Gateway websocket (``GET /gateway/bot`` for its URL, HELLO, IDENTIFY with the
message-content intent, heartbeats with ACK tracking, RESUME after a drop, RECONNECT and
INVALID_SESSION handled as Discord documents them); ``MESSAGE_CREATE`` becomes an
``IncomingMessage``. Optionally, the interactions endpoint ``POST /hooks/discord`` (when
``DISCORD_PUBLIC_KEY`` is set): Ed25519 over ``X-Signature-Timestamp + raw body``; PING is answered
with PONG, a slash command is answered with a deferred response and the reply goes to the
interaction's webhook.

Out: ``POST /channels/{id}/messages`` (2,000 characters; the reply reference on the first part only;
``allowed_mentions`` so model output never pings anyone), ``PATCH`` for edits, ``POST .../typing``.

Protocol spoken directly with httpx and websockets: discord.py's REST base is a class attribute
(``Route.BASE``) and its client retries 429s itself, so it cannot be pointed at another server
without patching module globals, nor leave retries to the communication slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field
from refactorbot import (
    ChannelAdapter,
    ChannelConfig,
    ChannelError,
    Delivery,
    EnvVarName,
    IncomingMessage,
    MediaRef,
    OutgoingMessage,
    ReplayCacheFull,
    ReplayGuard,
    SendFailed,
    WebhookRequest,
    WebhookResponse,
    parse_retry_after,
)

log = logging.getLogger("refactorbot.channel.discord")

DEFAULT_API_BASE = "https://discord.com/api/v10"
SIGNATURE_HEADER = "X-Signature-Ed25519"
TIMESTAMP_HEADER = "X-Signature-Timestamp"

# Gateway intents (https://discord.com/developers/docs/events/gateway#gateway-intents)
GUILDS = 1 << 0
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15

# Gateway opcodes
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 7, 9, 10, 11

#: Close codes after which reconnecting cannot help: the reason shown to the operator.
FATAL_CLOSE_CODES = {
    4004: "Discord refused the bot token (gateway close 4004: authentication failed); check DISCORD_BOT_TOKEN",
    4010: "Discord refused the shard (gateway close 4010: invalid shard)",
    4011: "Discord requires sharding for this bot (gateway close 4011), which this channel does not do",
    4012: "Discord refused the gateway API version (gateway close 4012)",
    4013: "Discord refused the gateway intents (close 4013: invalid intents)",
    4014: (
        "Discord refused the Message Content intent (gateway close 4014: disallowed intents): enable"
        " 'Message Content Intent' under Bot > Privileged Gateway Intents in the Discord developer portal,"
        " or set message_content_intent = false in [channels.discord]"
    ),
}
#: Close codes after which the session cannot be resumed (identify again).
NEW_SESSION_CLOSE_CODES = {4007, 4009}
#: Errors a retry cannot fix: Discord's JSON error codes.
PERMANENT_CODES = {
    10003: "unknown channel",
    10008: "unknown message",
    10015: "unknown webhook (the interaction expired)",
    50001: "missing access to the channel",
    50006: "empty message",
    50007: "cannot send messages to this user",
    50013: "missing permissions in the channel",
    50035: "invalid form body",
}
#: How long an interaction token may be used for its replies (Discord: 15 minutes).
INTERACTION_TTL = 15 * 60
_SNOWFLAKE = re.compile(r"^[0-9]{1,20}$")
_HEADING = re.compile(r"^ {0,3}(#{4,6})[ \t]+(.*?)[ \t#]*$")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


_WEBHOOK_TOKEN = re.compile(r"(/webhooks/[0-9]+/)[A-Za-z0-9_.-]+")


def redact(text: str) -> str:
    """Return ``text`` with interaction tokens in webhook URLs replaced by ``<token>``."""
    return _WEBHOOK_TOKEN.sub(r"\1<token>", text)


class _RedactInteractionTokens(logging.Filter):
    """Keep interaction tokens (credentials for 15 minutes) out of the HTTP client's request log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/webhooks/" in message:
            record.msg, record.args = redact(message), ()
        return True


_FILTER = _RedactInteractionTokens()


def redact_http_logs() -> None:
    """Install the interaction-token filter on httpx's and httpcore's loggers (once)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class DiscordConfig(ChannelConfig):
    """``[channels.discord]`` (every field also ``RB_DISCORD_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    token_env: EnvVarName = Field("DISCORD_BOT_TOKEN", description="environment variable holding the bot token")
    public_key_env: EnvVarName = Field(
        "DISCORD_PUBLIC_KEY",
        description="environment variable holding the application's public key (turns /hooks/discord on)",
    )
    gateway: bool = Field(True, description="receive messages over the Gateway (false: interactions only)")
    message_content_intent: bool = Field(
        True, description="ask for the privileged Message Content intent (enable it in the developer portal)"
    )
    text_limit: int = Field(2000, ge=64, le=2000, description="characters per message (Discord: 2,000)")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds a REST request or a gateway handshake may take")
    reconnect_backoff: float = Field(1.0, gt=0, le=300, description="seconds before the second reconnect, doubled")
    reconnect_backoff_max: float = Field(60.0, gt=0, le=3600, description="longest wait between reconnects")
    reconnect_attempts: int = Field(
        8, ge=1, le=1000, description="reconnects in a row before the channel is reported failed"
    )
    tolerance: float = Field(300.0, gt=0, le=3600, description="seconds an interaction timestamp may be off")

    @property
    def intents(self) -> int:
        """Return the Gateway intents to identify with."""
        return GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | (MESSAGE_CONTENT if self.message_content_intent else 0)


class _Fatal(Exception):
    """The gateway refused the bot in a way reconnecting cannot fix."""


def parse_public_key(text: str) -> Any:
    """Return the Ed25519 public key given as 64 hex digits; ChannelError otherwise (the key not repeated)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    cleaned = text.strip()
    if len(cleaned) != 64 or not all(c in "0123456789abcdefABCDEF" for c in cleaned):
        raise ChannelError("channel discord: the public key must be 64 hex digits (the developer portal's PUBLIC KEY)")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(cleaned))


class DiscordChannel(ChannelAdapter):
    """A Discord bot: the Gateway in, REST out, and the optional interactions endpoint."""

    name = "discord"
    Config = DiscordConfig
    webhook = True
    max_body = 256 * 1024
    text_limit = 2000
    #: The Gateway connection runs on one host of a deployment at a time.
    singleton = True

    def __init__(self, config: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config, env=env)
        self.settings: DiscordConfig
        self.text_limit = self.settings.text_limit
        #: Seconds to wait before identifying again after INVALID_SESSION (Discord: 1 to 5).
        self.invalid_session_wait: tuple[float, float] = (1.0, 5.0)
        self._client: Any = None
        self._auth: dict[str, str] = {}
        self._token: str | None = None
        self._public_key: Any = None
        self._replays = ReplayGuard(100_000)
        self.bot_id: str | None = None
        self.bot_name: str | None = None
        self.application_id: str | None = None
        self._reset_gateway_state()

    def _reset_gateway_state(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None
        self._ready: asyncio.Future[None] | None = None
        self._stopping = False
        self._gateway_url: str | None = None
        self._session_id: str | None = None
        self._resume_url: str | None = None
        self._seq: int | None = None
        self._acked = True
        self._closing_reason: str | None = None
        self._healthy = False
        self._identify_after_wait = False
        #: interaction id -> (application id, token, expires at); chat id -> interaction id for follow-ups.
        self._interactions: dict[str, tuple[str, str, float]] = {}
        self._followups: dict[str, str] = {}

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Run when the bot token's variable is set (or ``enabled = true`` says so)."""
        return bool(env.get(getattr(settings, "token_env", "DISCORD_BOT_TOKEN")))

    @property
    def api_base(self) -> str:
        """Return the REST base URL."""
        return str(self.settings.api_base or DEFAULT_API_BASE).rstrip("/")

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token, load the public key, connect the Gateway and wait for READY."""
        token = self.secret(self.settings.token_env)
        public_key = self.env.get(self.settings.public_key_env, "")
        self._public_key = parse_public_key(public_key) if public_key else None
        import httpx

        redact_http_logs()
        self._reset_gateway_state()
        self._token = token
        self._auth = {"Authorization": f"Bot {token}"}
        self._client = httpx.AsyncClient(
            base_url=self.api_base,
            timeout=self.settings.timeout,
            trust_env=False,
            headers={"User-Agent": "DiscordBot (https://github.com/refactorbot, 0.1)"},
        )
        try:
            await self._connect()
        except BaseException:
            await self.stop()  # nothing left open by a start that failed
            raise

    async def _connect(self) -> None:
        """Check the token (``/users/@me``), find the Gateway and wait for its READY."""
        me = await self._startup_get("/users/@me")
        self.bot_id, self.bot_name = str(me.get("id", "")), str(me.get("username", ""))
        if not _SNOWFLAKE.match(self.bot_id):
            raise ChannelError("channel discord: /users/@me did not answer a bot user")
        if not self.settings.gateway:
            return
        gateway = await self._startup_get("/gateway/bot")
        url = gateway.get("url")
        if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
            raise ChannelError("channel discord: /gateway/bot did not give a websocket URL")
        limit = gateway.get("session_start_limit") or {}
        if limit.get("remaining") == 0:
            wait = float(limit.get("reset_after", 0)) / 1000
            raise ChannelError(
                f"channel discord: no gateway session starts left today; Discord resets them in {wait:.0f}s"
            )
        self._gateway_url = url
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._gateway_main(), name="discord-gateway")
        await self._ready

    async def _startup_get(self, path: str) -> dict[str, Any]:
        import httpx

        try:
            response = await self._client.get(path, headers=self._auth)
        except httpx.HTTPError as exc:
            raise ChannelError(f"channel discord: cannot reach {self.api_base}: {type(exc).__name__}") from None
        if response.status_code == 401:
            raise ChannelError(
                f"channel discord: Discord refused the bot token (401 Unauthorized); check {self.settings.token_env}"
            )
        if response.status_code != 200:
            raise ChannelError(f"channel discord: GET {path} answered {response.status_code} {_detail(response)}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ChannelError(f"channel discord: GET {path} did not answer a JSON object")
        return data

    async def stop(self) -> None:
        """Close the Gateway (ending the session) and the HTTP client. Safe twice and without start."""
        self._stopping = True
        ws, task = self._ws, self._task
        self._task = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "shutting down"), 5)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._ws = None
        self._token = None
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- the Gateway -----------------------------------------------------------------------------------

    async def _gateway_main(self) -> None:
        """Keep one Gateway connection, resuming or identifying again with backoff until stopped."""
        import websockets

        failures = 0
        while not self._stopping:
            if self._identify_after_wait:
                self._identify_after_wait = False
                await asyncio.sleep(random.uniform(*self.invalid_session_wait))  # noqa: S311  reconnect and heartbeat jitter, not a secret
            resume = self._session_id is not None and self._seq is not None
            url = (self._resume_url or self._gateway_url) if resume else self._gateway_url
            assert url is not None
            self._healthy = False
            try:
                outcome = await self._connection(url, resume)
            except _Fatal as exc:
                reason = str(exc)
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(ChannelError(f"channel discord: {reason}"))
                else:
                    log.error("discord: %s", reason)
                    self.fail(reason)
                return
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                outcome = f"cannot connect to the gateway: {type(exc).__name__}: {exc}".rstrip(": ")
            except Exception as exc:  # a payload that is not what Discord documents
                outcome = f"gateway protocol error: {type(exc).__name__}: {exc}".rstrip(": ")
            if self._stopping:
                return
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(ChannelError(f"channel discord: {outcome}"))
                return
            failures = 0 if self._healthy else failures + 1
            if failures >= self.settings.reconnect_attempts:
                reason = f"the gateway connection could not be restored after {failures} attempts: {outcome}"
                log.error("discord: %s", reason)
                self.fail(reason)
                return
            delay = 0.0 if failures == 0 else self.settings.reconnect_backoff * 2 ** (failures - 1)
            delay = min(delay, self.settings.reconnect_backoff_max)
            log.warning("discord: gateway connection ended (%s); reconnecting in %.2fs", outcome, delay)
            if delay:
                await asyncio.sleep(delay * random.uniform(0.8, 1.0))  # noqa: S311  reconnect and heartbeat jitter, not a secret

    async def _connection(self, url: str, resume: bool) -> str:
        """Run one Gateway connection until it ends; return why it ended, raise _Fatal when it must not be retried."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        target = url.rstrip("/") + "/?v=10&encoding=json"
        self._closing_reason = None
        async with connect(
            target,
            open_timeout=self.settings.timeout,
            close_timeout=5,
            max_size=32 * 2**20,
            compression=None,
            user_agent_header="DiscordBot (https://github.com/refactorbot, 0.1)",
        ) as ws:
            self._ws = ws
            heartbeat: asyncio.Task[None] | None = None
            try:
                async with asyncio.timeout(self.settings.timeout):
                    hello = json.loads(await ws.recv())
                if not isinstance(hello, dict) or hello.get("op") != HELLO:
                    raise ValueError("the gateway did not start with HELLO")
                interval = float(hello["d"]["heartbeat_interval"]) / 1000
                if not interval > 0:
                    raise ValueError("HELLO gave no heartbeat interval")
                self._acked = True
                heartbeat = asyncio.create_task(self._heartbeat(ws, interval), name="discord-heartbeat")
                await ws.send(json.dumps(self._resume_payload() if resume else self._identify_payload()))
                async for raw in ws:
                    payload = json.loads(raw)
                    if isinstance(payload, dict):
                        await self._on_payload(ws, payload)
            except ConnectionClosed:
                pass
            finally:
                if heartbeat is not None:
                    heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):  # a beat on a closed socket
                        await heartbeat
                self._ws = None
        code = ws.close_code
        if self._closing_reason is not None:
            return self._closing_reason
        if code in FATAL_CLOSE_CODES:
            raise _Fatal(FATAL_CLOSE_CODES[code])
        if code in NEW_SESSION_CLOSE_CODES:
            self._session_id = self._seq = None
        reason = ws.close_reason or ""
        return f"closed by the gateway with code {code}" + (f" ({reason})" if reason else "")

    def _identify_payload(self) -> dict[str, Any]:
        return {
            "op": IDENTIFY,
            "d": {
                "token": self._token,
                "intents": self.settings.intents,
                "properties": {"os": "linux", "browser": "refactorbot", "device": "refactorbot"},
            },
        }

    def _resume_payload(self) -> dict[str, Any]:
        return {"op": RESUME, "d": {"token": self._token, "session_id": self._session_id, "seq": self._seq}}

    async def _heartbeat(self, ws: Any, interval: float) -> None:
        """Beat every ``interval`` seconds (the first after ``interval * jitter``); close a zombied connection."""
        await asyncio.sleep(interval * random.random())  # noqa: S311  reconnect and heartbeat jitter, not a secret
        while True:
            if not self._acked:
                self._closing_reason = "no heartbeat ACK before the next beat (zombied connection)"
                log.warning("discord: %s; reconnecting", self._closing_reason)
                await ws.close(4000, "zombied connection")  # not 1000/1001: the session stays resumable
                return
            self._acked = False
            await ws.send(json.dumps({"op": HEARTBEAT, "d": self._seq}))
            await asyncio.sleep(interval)

    async def _on_payload(self, ws: Any, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        if op == DISPATCH:
            seq = payload.get("s")
            if isinstance(seq, int):
                self._seq = seq
            await self._on_dispatch(payload.get("t"), payload.get("d"))
        elif op == HEARTBEAT_ACK:
            self._acked = True
        elif op == HEARTBEAT:
            await ws.send(json.dumps({"op": HEARTBEAT, "d": self._seq}))
        elif op == RECONNECT:
            self._closing_reason = "the gateway asked to reconnect (op 7)"
            await ws.close(4000, "reconnect requested")
        elif op == INVALID_SESSION:
            if payload.get("d") is True:
                self._closing_reason = "the gateway invalidated the session (resumable)"
            else:
                self._closing_reason = "the gateway invalidated the session; identifying again"
                self._session_id = self._seq = None
                self._identify_after_wait = True
            await ws.close(4000, "invalid session")

    async def _on_dispatch(self, event: Any, data: Any) -> None:
        if event == "READY" and isinstance(data, dict):
            self._session_id = str(data.get("session_id") or "") or None
            resume_url = data.get("resume_gateway_url")
            self._resume_url = (
                resume_url if isinstance(resume_url, str) and resume_url.startswith(("ws", "wss")) else None
            )
            user = data.get("user") or {}
            if isinstance(user, dict) and user.get("id"):
                self.bot_id = str(user["id"])
            application = data.get("application") or {}
            if isinstance(application, dict) and application.get("id"):
                self.application_id = str(application["id"])
            self._healthy = True
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            log.info("discord: gateway ready as %s", self.bot_name or self.bot_id)
        elif event == "RESUMED":
            self._healthy = True
            log.info("discord: gateway session resumed")
        elif event == "MESSAGE_CREATE" and isinstance(data, dict):
            message = self.incoming(data)
            if message is not None:
                delivery = await self.deliver(message)
                if not delivery.taken:
                    log.warning(
                        "discord: message %s in chat %s not taken (%s)", message.message_id, message.chat_id, delivery
                    )

    def incoming(self, data: dict[str, Any]) -> IncomingMessage | None:
        """Return a MESSAGE_CREATE message object as an ``IncomingMessage``; None for what is not for the agent.

        Skipped: the bot's own messages, other bots' and webhooks', system messages, and messages
        with neither text nor attachments (with the Message Content intent off, guild messages that
        do not mention the bot arrive empty).
        """
        author = data.get("author")
        message_id, channel_id = data.get("id"), data.get("channel_id")
        if not isinstance(author, dict) or not isinstance(message_id, str) or not isinstance(channel_id, str):
            return None
        author_id = str(author.get("id", ""))
        if not author_id or author_id == self.bot_id or author.get("bot") or data.get("webhook_id"):
            return None
        if data.get("type", 0) not in (0, 19):
            return None
        raw_content = data.get("content")
        content = raw_content if isinstance(raw_content, str) else ""
        media = [m for m in (_media(a) for a in data.get("attachments") or [] if isinstance(a, dict)) if m is not None]
        if not content.strip() and not media:
            return None
        mentions = {str(m.get("id")) for m in data.get("mentions") or [] if isinstance(m, dict)}
        mentions_bot = self.bot_id is not None and self.bot_id in mentions
        if self.bot_id:
            content = re.sub(rf"<@!?{self.bot_id}>", f"@{self.bot_name or 'bot'}", content)
        reference = data.get("message_reference")
        reply_to = None
        if isinstance(reference, dict) and reference.get("type", 0) == 0 and reference.get("message_id"):
            reply_to = str(reference["message_id"])
        return IncomingMessage(
            channel=self.name,
            chat_id=channel_id,
            sender_id=author_id,
            sender_name=str(author.get("global_name") or author.get("username") or "") or None,
            text=content,
            message_id=message_id,
            is_group=data.get("guild_id") is not None,
            mentions_bot=mentions_bot,
            reply_to=reply_to,
            media=media,
            raw=data,
        )

    # -- the interactions endpoint ---------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float | None = None) -> WebhookResponse | None:
        """Return the refusal for a request Discord did not sign (or that is stale or replayed), None to accept it."""
        from cryptography.exceptions import InvalidSignature

        if self._public_key is None:
            return WebhookResponse.error(
                404, f"the interactions endpoint is off: set {self.settings.public_key_env} to turn it on"
            )
        given = request.header(SIGNATURE_HEADER)
        stamp = request.header(TIMESTAMP_HEADER)
        if not given or not stamp:
            return WebhookResponse.error(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        if len(given) != 128 or not all(c in "0123456789abcdefABCDEF" for c in given):
            return WebhookResponse.error(401, f"malformed {SIGNATURE_HEADER}: expected 128 hex digits")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            return WebhookResponse.error(401, f"malformed {TIMESTAMP_HEADER}: expected Unix seconds")
        signature = bytes.fromhex(given)
        try:
            self._public_key.verify(signature, stamp.encode("ascii") + request.body)
        except InvalidSignature:
            return WebhookResponse.error(401, "invalid request signature")
        now = time.time() if now is None else now
        if abs(now - int(stamp)) > self.settings.tolerance:
            return WebhookResponse.error(
                401, f"timestamp more than {self.settings.tolerance:g}s from this server's clock"
            )
        try:
            fresh = self._replays.check(signature, int(stamp) + self.settings.tolerance)
        except ReplayCacheFull as exc:
            return WebhookResponse.error(503, str(exc), {"Retry-After": "5"})
        if not fresh:
            return WebhookResponse.error(401, "this request was already received (replay)")
        return None

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Verify an interaction, answer PING, defer a slash command and hand it over."""
        if request.method != "POST":
            return WebhookResponse.error(405, "POST interactions here")
        if self._client is None:
            return WebhookResponse.error(503, "the discord channel is not running")
        refusal = self.verify(request)
        if refusal is not None:
            return refusal
        try:
            interaction = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return WebhookResponse.error(400, "the body is not UTF-8 JSON")
        if not isinstance(interaction, dict) or not isinstance(interaction.get("type"), int):
            return WebhookResponse.error(400, "not an interaction: no type")
        kind = interaction["type"]
        if kind == 1:  # PING
            return WebhookResponse.json({"type": 1})
        if kind == 4:  # APPLICATION_COMMAND_AUTOCOMPLETE
            return WebhookResponse.json({"type": 8, "data": {"choices": []}})
        if kind != 2:
            return _ephemeral("This kind of interaction is not supported; use a slash command or write to the bot.")
        message = self._interaction_message(interaction)
        if message is None:
            return WebhookResponse.error(400, "not an application command interaction: id, token or channel missing")
        application_id = str(interaction.get("application_id") or self.application_id or "")
        token = str(interaction["token"])
        delivery = await self.deliver(message)
        if delivery is Delivery.ACCEPTED:
            self._remember_interaction(message.message_id, application_id, token)
            return WebhookResponse.json({"type": 5})  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        if delivery is Delivery.DUPLICATE:
            return _ephemeral("This command was already received.")
        if delivery is Delivery.REFUSED:
            return _ephemeral("Sorry, I cannot answer you here.")
        if delivery is Delivery.BUSY:
            return _ephemeral("I am still answering earlier messages in this chat; try again in a moment.")
        return _ephemeral("I am not available right now; try again later.")

    def _interaction_message(self, interaction: dict[str, Any]) -> IncomingMessage | None:
        interaction_id, token = interaction.get("id"), interaction.get("token")
        channel_id = interaction.get("channel_id") or (interaction.get("channel") or {}).get("id")
        member = interaction.get("member")
        user = (member.get("user") if isinstance(member, dict) else None) or interaction.get("user")
        data = interaction.get("data")
        if not all(isinstance(v, str) and v for v in (interaction_id, token, channel_id)):
            return None
        if not isinstance(user, dict) or not user.get("id") or not isinstance(data, dict):
            return None
        values = [
            str(o.get("value"))
            for o in data.get("options") or []
            if isinstance(o, dict) and o.get("type") == 3 and isinstance(o.get("value"), str)
        ]
        text = " ".join(values).strip() or f"/{data.get('name', '')}"
        return IncomingMessage(
            channel=self.name,
            chat_id=str(channel_id),
            sender_id=str(user["id"]),
            sender_name=str(user.get("global_name") or user.get("username") or "") or None,
            text=text,
            message_id=str(interaction_id),
            is_group=interaction.get("guild_id") is not None,
            mentions_bot=True,  # a slash command is addressed to the bot
            metadata={"interaction": True, "command": str(data.get("name", ""))},
            raw=interaction,
        )

    def _remember_interaction(self, interaction_id: str, application_id: str, token: str) -> None:
        now = time.time()
        for key in [k for k, (_, _, expires) in self._interactions.items() if expires <= now]:
            del self._interactions[key]
        if len(self._interactions) >= 10_000:
            self._interactions.pop(next(iter(self._interactions)))
        self._interactions[interaction_id] = (application_id, token, now + INTERACTION_TTL)

    def _live_interaction(self, interaction_id: str | None) -> tuple[str, str] | None:
        if interaction_id is None:
            return None
        found = self._interactions.get(interaction_id)
        if found is None or found[2] <= time.time():
            return None
        return found[0], found[1]

    # -- out -------------------------------------------------------------------------------------------

    def render(self, markdown: str) -> str:
        """Return Markdown as Discord shows it: headings below ``###`` as bold, images as masked links."""
        out: list[str] = []
        fence: str | None = None
        for line in markdown.splitlines(keepends=True):
            marker = _FENCE.match(line)
            if fence is not None:
                if marker is not None and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                    fence = None
                out.append(line)
                continue
            if marker is not None:
                fence = marker.group(1)
                out.append(line)
                continue
            ending = line[len(line.rstrip("\r\n")) :]
            body = line[: len(line) - len(ending)]
            heading = _HEADING.match(body)
            if heading is not None:
                body = f"**{heading.group(2)}**"
            out.append(_IMAGE.sub(r"[\1](\2)", body) + ending)
        return "".join(out)

    async def send(self, message: OutgoingMessage) -> list[str]:
        """Send one part: to the interaction's webhook when it answers a slash command, else to the channel."""
        if self._client is None:
            raise SendFailed("the discord channel is not running")
        chat_id = message.chat_id
        if not _SNOWFLAKE.match(chat_id):
            raise SendFailed(f"chat id {chat_id[:40]!r} is not a Discord channel id", permanent=True)
        body: dict[str, Any] = {"content": message.text, "allowed_mentions": {"parse": [], "replied_user": False}}
        interaction = self._live_interaction(message.reply_to)
        if interaction is not None:
            assert message.reply_to is not None
            self._followups[chat_id] = message.reply_to
            app, token = interaction
            data = await self._request("PATCH", f"/webhooks/{app}/{token}/messages/@original", body, auth=False)
            return [str(data.get("id", ""))] if data.get("id") else []
        if message.reply_to is None:
            pending = self._live_interaction(self._followups.get(chat_id))
            if pending is not None:
                app, token = pending
                data = await self._request("POST", f"/webhooks/{app}/{token}", body, auth=False)
                return [str(data["id"])]
        else:
            self._followups.pop(chat_id, None)
            if _SNOWFLAKE.match(message.reply_to):
                body["message_reference"] = {
                    "message_id": message.reply_to,
                    "channel_id": chat_id,
                    "fail_if_not_exists": False,
                }
        data = await self._request("POST", f"/channels/{chat_id}/messages", body)
        message_id = data.get("id")
        if not isinstance(message_id, str) or not message_id:
            raise SendFailed("Discord answered without a message id")
        return [message_id]

    async def edit(
        self, chat_id: str, message_id: str, text: str, *, text_format: Literal["platform", "plain"] = "platform"
    ) -> None:
        """Replace a sent message's text (``PATCH /channels/{id}/messages/{id}``); Discord takes both formats."""
        if self._client is None:
            raise SendFailed("the discord channel is not running")
        if not _SNOWFLAKE.match(chat_id) or not _SNOWFLAKE.match(message_id):
            raise SendFailed("edit needs Discord channel and message ids", permanent=True)
        body = {"content": text, "allowed_mentions": {"parse": [], "replied_user": False}}
        await self._request("PATCH", f"/channels/{chat_id}/messages/{message_id}", body)

    async def typing(self, chat_id: str) -> None:
        """Show the typing indicator in a channel (best effort: failures are logged, not raised)."""
        if self._client is None or not _SNOWFLAKE.match(chat_id):
            return
        try:
            await self._request("POST", f"/channels/{chat_id}/typing", None)
        except SendFailed as exc:
            log.debug("discord: typing in %s failed: %s", chat_id, exc.reason)

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, auth: bool = True
    ) -> dict[str, Any]:
        """Make one REST request; return its JSON object, or raise ``SendFailed`` saying what Discord answered."""
        import httpx

        client = self._client
        if client is None:
            raise SendFailed("the discord channel is not running")
        where = path.split("/webhooks/")[0] + "/webhooks/…" if "/webhooks/" in path else path  # no token in errors
        try:
            response = await client.request(method, path, json=body, headers=self._auth if auth else None)
        except httpx.TimeoutException:
            raise SendFailed(f"Discord did not answer {method} {where} within {self.settings.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise SendFailed(f"Discord unreachable: {type(exc).__name__}") from None
        status = response.status_code
        if status == 204:
            return {}
        try:
            data = response.json()
        except ValueError:
            data = None
        if 200 <= status < 300:
            return data if isinstance(data, dict) else {}
        payload = data if isinstance(data, dict) else {}
        code = payload.get("code") if isinstance(payload.get("code"), int) else None
        text = str(payload.get("message") or "").replace("\n", " ")[:120]
        described = f"Discord answered {status}" + (f" {text}" if text else "") + (f" (code {code})" if code else "")
        if status == 429:
            retry_after = _retry_after(payload, response.headers)
            scope = " (global)" if payload.get("global") else ""
            raise SendFailed(f"Discord rate limit{scope}: {method} {where} answered 429", retry_after=retry_after)
        if status == 401:
            raise SendFailed(f"{described}: the bot token was refused", permanent=True)
        if code in PERMANENT_CODES:
            detail = _form_errors(payload) if code == 50035 else ""
            raise SendFailed(f"{described}: {PERMANENT_CODES[code]}{detail}", permanent=True)
        if status >= 500 or status == 408:
            raise SendFailed(described)
        raise SendFailed(described, permanent=True)


def _retry_after(payload: Mapping[str, Any], headers: Any) -> float | None:
    """Return the seconds a 429 asks to wait: the JSON ``retry_after``, else ``Retry-After``, else the bucket reset."""
    value = payload.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e7:
        return float(value)
    found = parse_retry_after(headers.get("retry-after"))
    if found is not None:
        return found
    return parse_retry_after(headers.get("x-ratelimit-reset-after"))


def _form_errors(payload: Mapping[str, Any]) -> str:
    """Return the first field error of a 50035 answer as ``: field: message``."""

    def walk(node: Any, path: list[str]) -> str | None:
        if isinstance(node, dict):
            errors = node.get("_errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                return f"{'.'.join(path) or 'body'}: {str(errors[0].get('message', ''))[:120]}"
            for key, value in node.items():
                found = walk(value, [*path, str(key)])
                if found:
                    return found
        return None

    found = walk(payload.get("errors"), [])
    return f" ({found})" if found else ""


def _media(attachment: dict[str, Any]) -> MediaRef | None:
    url = attachment.get("url")
    if not isinstance(url, str) or not url or len(url) > 2048:
        return None
    mime = attachment.get("content_type") if isinstance(attachment.get("content_type"), str) else None
    top = (mime or "").split("/")[0]
    kind = {"image": "image", "audio": "audio", "video": "video"}.get(top, "file")
    size = attachment.get("size")
    return MediaRef(
        kind=kind,  # type: ignore[arg-type]
        ref=url,
        mime_type=mime[:255] if mime else None,
        name=str(attachment.get("filename"))[:1024] if attachment.get("filename") else None,
        size=size if isinstance(size, int) and size >= 0 else None,
    )


def _ephemeral(text: str) -> WebhookResponse:
    """Return an interaction answer only the user who asked sees (flag 64)."""
    return WebhookResponse.json({"type": 4, "data": {"content": text, "flags": 64}})


def _detail(response: Any) -> str:
    return str(response.text).strip().replace("\n", " ")[:200]
