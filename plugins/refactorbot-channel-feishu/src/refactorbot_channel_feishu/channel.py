"""The ``feishu`` channel: Feishu / Lark bots, by long connection (default) or by event webhook.

**Events in.** ``mode = "websocket"``: the long connection Feishu's SDKs use — ``POST
{api_base}/callback/ws/endpoint`` with the app's id and secret returns a websocket URL and the
client's settings; the websocket carries protobuf ``pbbp2.Frame`` messages (``frames.py``): pings
from us, pongs and events from Feishu, and our acknowledgement of each event. No public URL is
needed. ``mode = "webhook"``: Feishu POSTs to ``/hooks/feishu`` on the control API. With an
encrypt key, bodies are ``{"encrypt": ...}`` (AES-256-CBC) and requests carry ``X-Lark-Signature``,
checked in constant time before anything is parsed, within ``tolerance`` seconds, replays refused;
without one, the verification token inside the body is the only proof (checked in constant time).
The URL-verification challenge is answered only when its token matches.

**Replies out.** ``tenant_access_token`` (cached, renewed ``token_refresh`` seconds before it
expires, and once when Feishu says it is invalid); the first part of a reply through
``/open-apis/im/v1/messages/{id}/reply``, the others through ``/open-apis/im/v1/messages``, as a
rich-text ``post`` rendered from the Markdown (``post.py``), plain ``text`` when the post is refused.
``edit`` uses ``PUT /open-apis/im/v1/messages/{id}`` (text and post messages, 20 edits at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field
from refactorbot import (
    ChannelAdapter,
    ChannelConfig,
    ChannelError,
    Delivery,
    EnvVarName,
    FormattingRejected,
    IncomingMessage,
    MediaRef,
    OutgoingMessage,
    ReplayCacheFull,
    ReplayGuard,
    SendFailed,
    WebhookRequest,
    WebhookResponse,
    parse_retry_after,
    signatures_match,
)

from refactorbot_channel_feishu import frames
from refactorbot_channel_feishu.crypto import DecryptError, decrypt, signature
from refactorbot_channel_feishu.post import content_text, dumps, markdown_to_post

log = logging.getLogger("refactorbot.channel.feishu")

FEISHU = "https://open.feishu.cn"
SIGNATURE_HEADER = "X-Lark-Signature"
TIMESTAMP_HEADER = "X-Lark-Request-Timestamp"
NONCE_HEADER = "X-Lark-Request-Nonce"
MESSAGE_EVENT = "im.message.receive_v1"

#: Feishu's answer codes the channel acts on.
RATE_LIMITED = {99991400, 230020}  # the app's rate limit; the chat's message rate limit
TOKEN_INVALID = {99991661, 99991663}  # token missing or malformed; token invalid or expired
CONTENT_REFUSED = {230001, 230025}  # invalid content; content too long
#: Request bodies Feishu accepts: 150 KB for a text message, 30 KB for a post.
TEXT_BODY_LIMIT = 150 * 1024
POST_BODY_LIMIT = 30 * 1024
#: Media kinds an incoming message may carry, and the content key holding each one's reference.
MEDIA_KEYS = {
    "image": ("image", "image_key"),
    "file": ("file", "file_key"),
    "audio": ("audio", "file_key"),
    "media": ("video", "file_key"),
    "sticker": ("sticker", "file_key"),
}


class FeishuConfig(ChannelConfig):
    """``[channels.feishu]`` (every field also ``RB_FEISHU_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["websocket", "webhook"] = Field(
        "websocket", description="how events arrive: the long connection (no public URL) or /hooks/feishu"
    )
    app_id_env: EnvVarName = Field("FEISHU_APP_ID", description="environment variable holding the App ID")
    app_secret_env: EnvVarName = Field("FEISHU_APP_SECRET", description="environment variable holding the App Secret")
    encrypt_key_env: EnvVarName = Field(
        "FEISHU_ENCRYPT_KEY", description="environment variable holding the event Encrypt Key (webhook mode)"
    )
    verification_token_env: EnvVarName = Field(
        "FEISHU_VERIFICATION_TOKEN", description="environment variable holding the Verification Token (webhook mode)"
    )
    text_limit: int = Field(4000, ge=64, le=20_000, description="characters per reply message")
    tolerance: float = Field(300.0, gt=0, le=3600, description="seconds a signed request's timestamp may be off")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds an API call may take")
    token_refresh: float = Field(300.0, ge=0, le=3600, description="renew the access token this long before expiry")
    reconnect_backoff: float = Field(1.0, gt=0, le=600, description="seconds before the first reconnect, doubled")
    reconnect_backoff_max: float = Field(60.0, gt=0, le=3600, description="the longest wait between reconnects")
    reconnect_attempts: int = Field(
        10, ge=1, le=1000, description="reconnects in a row before the channel is reported failed"
    )
    replay_cache: int = Field(100_000, ge=100, le=10_000_000, description="signatures remembered against replays")


class _ApiError(Exception):
    """A Feishu API call that did not succeed; ``send`` turns it into ``SendFailed``."""

    def __init__(
        self, reason: str, *, status: int = 0, code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return (
            self.status in (0, 408, 429)
            or self.status >= 500
            or self.code in RATE_LIMITED
            or self.retry_after is not None
        )


class FeishuChannel(ChannelAdapter):
    """Feishu / Lark: a bot of a custom app, in direct chats and groups."""

    name = "feishu"
    Config = FeishuConfig
    webhook = True
    max_body = 256 * 1024

    @classmethod
    def runs_once(cls, settings: Any) -> bool:
        """The long connection runs on one host of a deployment at a time; webhooks anywhere."""
        return bool(settings.mode == "websocket")

    def __init__(self, config: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config, env=env)
        self.settings: FeishuConfig
        self.text_limit = self.settings.text_limit
        self.api_base = str(self.settings.api_base or FEISHU).rstrip("/")
        self.bot_open_id: str | None = None
        self._app_id = ""
        self._app_secret = ""
        self._encrypt_key: str | None = None
        self._verification_token: str | None = None
        self._client: Any = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._running = False
        self._replays = ReplayGuard(self.settings.replay_cache)
        self._connection: _LongConnection | None = None

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Run when the App ID and App Secret variables are set (or ``enabled = true`` says so)."""
        app_id = getattr(settings, "app_id_env", "FEISHU_APP_ID")
        secret = getattr(settings, "app_secret_env", "FEISHU_APP_SECRET")
        return bool(env.get(app_id)) and bool(env.get(secret))

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the credentials (token, bot info), then open the long connection or take webhooks."""
        settings = self.settings
        self._app_id = self.secret(settings.app_id_env)
        self._app_secret = self.secret(settings.app_secret_env)
        self._encrypt_key = self.env.get(settings.encrypt_key_env) or None
        self._verification_token = self.env.get(settings.verification_token_env) or None
        if settings.mode == "webhook" and not self._verification_token:
            raise ChannelError(
                f"channel feishu: environment variable {settings.verification_token_env} is not set"
                " (webhook mode checks every event's verification token)"
            )
        import httpx

        self._client = httpx.AsyncClient(base_url=self.api_base, timeout=settings.timeout, trust_env=False)
        try:
            await self._refresh_token()
            info = await self._api("GET", "/open-apis/bot/v3/info")
            bot = info.get("bot")
            open_id = bot.get("open_id") if isinstance(bot, dict) else None
            if not isinstance(open_id, str) or not open_id:
                raise ChannelError("channel feishu: the bot info has no open_id (is the app's bot ability enabled?)")
            self.bot_open_id = open_id
            if settings.mode == "websocket":
                self._connection = _LongConnection(self)
                await self._connection.open()
        except _ApiError as exc:
            await self.stop()
            raise ChannelError(f"channel feishu: {exc.reason}") from None
        except BaseException:
            await self.stop()
            raise
        self._running = True

    async def stop(self) -> None:
        """Close the long connection and the HTTP client; webhooks are refused until the next start."""
        self._running = False
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        self._token = None
        self._token_expires = 0.0

    # -- the API ----------------------------------------------------------------------------------

    async def _refresh_token(self) -> str:
        """Get a fresh ``tenant_access_token``; raise ``_ApiError`` when Feishu refuses the app."""
        body = await self._request(
            "POST",
            "/open-apis/auth/v3/tenant_access_token/internal",
            {"app_id": self._app_id, "app_secret": self._app_secret},
            token=None,
        )
        token = body.get("tenant_access_token")
        expire = body.get("expire")
        if not isinstance(token, str) or not token or not isinstance(expire, int) or isinstance(expire, bool):
            raise _ApiError("the token endpoint answered without tenant_access_token and expire")
        self._token = token
        self._token_expires = time.monotonic() + expire
        return token

    async def _access_token(self) -> str:
        """Return the cached token, renewed when it has less than ``token_refresh`` seconds left."""
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_expires - self.settings.token_refresh:
                return self._token
            return await self._refresh_token()

    async def _api(self, method: str, path: str, payload: Any = None, params: dict[str, str] | None = None) -> Any:
        """Call an API with the access token; renew the token once if Feishu says it is invalid."""
        token = await self._access_token()
        try:
            return await self._request(method, path, payload, token=token, params=params)
        except _ApiError as exc:
            if exc.code not in TOKEN_INVALID:
                raise
        async with self._token_lock:
            if self._token == token:
                self._token = None
        token = await self._access_token()
        return await self._request(method, path, payload, token=token, params=params)

    async def _request(
        self, method: str, path: str, payload: Any, *, token: str | None, params: dict[str, str] | None = None
    ) -> Any:
        """Make one call; return the decoded body when its ``code`` is 0, else raise ``_ApiError``."""
        import httpx

        client = self._client
        if client is None:
            raise _ApiError("the channel is not running")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            response = await client.request(method, path, content=content, headers=headers, params=params)
        except httpx.TimeoutException:
            raise _ApiError(f"{method} {path}: Feishu did not answer within {self.settings.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise _ApiError(f"{method} {path}: Feishu unreachable ({type(exc).__name__})") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        if response.status_code == 200 and code == 0:
            return body
        msg = body.get("msg") if isinstance(body, dict) else None
        detail = f"code {code}: {_one_line(msg)}" if code is not None else f"HTTP {response.status_code}"
        retry_after = None
        if response.status_code == 429 or code in RATE_LIMITED:
            retry_after = parse_retry_after(response.headers.get("x-ogw-ratelimit-reset"))
            if retry_after is None:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None:
                retry_after = 1.0
        raise _ApiError(
            f"{method} {path} answered {response.status_code} ({detail})",
            status=response.status_code,
            code=code if isinstance(code, int) else None,
            retry_after=retry_after,
        )

    # -- out ----------------------------------------------------------------------------------------

    def render(self, markdown: str) -> str:
        """Return the reply as it is split: Markdown, turned into a post part by part in ``send``."""
        return markdown

    async def send(self, message: OutgoingMessage) -> list[str]:
        """Send one part as a post (or plain text); the first part of a reply answers its message."""
        if message.text_format == "plain":
            msg_type, content = "text", dumps({"text": message.text})
        else:
            msg_type, content = "post", dumps(markdown_to_post(message.text))
            if len(content.encode("utf-8")) + 512 > POST_BODY_LIMIT:
                raise FormattingRejected(f"the post would exceed Feishu's {POST_BODY_LIMIT // 1024} KB limit")
        if len(content.encode("utf-8")) + 512 > TEXT_BODY_LIMIT:
            raise SendFailed(f"the message exceeds Feishu's {TEXT_BODY_LIMIT // 1024} KB limit", permanent=True)
        # Feishu sends at most one message per uuid within an hour: a retry of this part after a
        # lost answer cannot post it twice. The slice retries with the same OutgoingMessage.
        request_id = message.metadata.setdefault("feishu_uuid", uuid.uuid4().hex)
        body: dict[str, Any] = {"msg_type": msg_type, "content": content, "uuid": request_id}
        try:
            if message.reply_to:
                answer = await self._api("POST", f"/open-apis/im/v1/messages/{_path_id(message.reply_to)}/reply", body)
            else:
                body["receive_id"] = message.chat_id
                answer = await self._api("POST", "/open-apis/im/v1/messages", body, {"receive_id_type": "chat_id"})
        except _ApiError as exc:
            if msg_type == "post" and exc.code in CONTENT_REFUSED:
                raise FormattingRejected(exc.reason) from None
            raise SendFailed(exc.reason, retry_after=exc.retry_after, permanent=not exc.retryable) from None
        data = answer.get("data")
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise SendFailed("Feishu answered without a message_id", permanent=True)
        return [message_id]

    async def edit(
        self, chat_id: str, message_id: str, text: str, *, text_format: Literal["platform", "plain"] = "platform"
    ) -> None:
        """Replace a sent message's content: a post of ``text`` (rendered Markdown), or plain text."""
        if text_format == "plain":
            body = {"msg_type": "text", "content": dumps({"text": text})}
        else:
            body = {"msg_type": "post", "content": dumps(markdown_to_post(text))}
        try:
            await self._api("PUT", f"/open-apis/im/v1/messages/{_path_id(message_id)}", body)
        except _ApiError as exc:
            if text_format != "plain" and exc.code in CONTENT_REFUSED:
                raise FormattingRejected(exc.reason) from None
            raise SendFailed(exc.reason, retry_after=exc.retry_after, permanent=not exc.retryable) from None

    # -- in -----------------------------------------------------------------------------------------

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Verify one event request, answer the URL-verification challenge or deliver the message."""
        if request.method != "POST":
            return WebhookResponse.error(405, "POST Feishu events here")
        if not self._running or self.settings.mode != "webhook" or self._verification_token is None:
            return WebhookResponse.error(503, "the feishu channel is not taking webhooks")
        outcome = self._open_encrypted(request) if self._encrypt_key is not None else self._open_plain(request)
        if isinstance(outcome, WebhookResponse):
            return outcome
        event, signed = outcome
        if event.get("type") == "url_verification":
            challenge = event.get("challenge")
            if not isinstance(challenge, str):
                return WebhookResponse.error(400, "url_verification without a challenge")
            return WebhookResponse.json({"challenge": challenge})
        if not signed and self._encrypt_key is not None:
            return WebhookResponse.error(401, f"missing {SIGNATURE_HEADER}")
        delivery = await self.on_event(event)
        if delivery is None:
            return WebhookResponse.json({"msg": "ignored"})
        return WebhookResponse.for_delivery(delivery, {"msg": delivery.value})

    def _open_encrypted(self, request: WebhookRequest) -> WebhookResponse | tuple[dict[str, Any], bool]:
        """Verify the signature, then decrypt; an unsigned body may only be the URL-verification challenge."""
        assert self._encrypt_key is not None
        given = request.header(SIGNATURE_HEADER)
        stamp = request.header(TIMESTAMP_HEADER)
        nonce = request.header(NONCE_HEADER)
        signed = given is not None or stamp is not None or nonce is not None
        if signed:
            if not given or not stamp or nonce is None:
                return WebhookResponse.error(401, f"missing {SIGNATURE_HEADER}, {TIMESTAMP_HEADER} or {NONCE_HEADER}")
            if len(given) != 64 or not given.isascii():
                return WebhookResponse.error(401, f"malformed {SIGNATURE_HEADER}: expected 64 hex digits")
            if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
                return WebhookResponse.error(401, f"malformed {TIMESTAMP_HEADER}: expected Unix seconds")
            if not signatures_match(signature(stamp, nonce, self._encrypt_key, request.body), given.lower()):
                return WebhookResponse.error(403, "signature does not match")
            if abs(time.time() - int(stamp)) > self.settings.tolerance:
                return WebhookResponse.error(
                    403, f"timestamp more than {self.settings.tolerance:g}s away from this server's clock"
                )
            try:
                fresh = self._replays.check(bytes.fromhex(given), int(stamp) + self.settings.tolerance)
            except ReplayCacheFull as exc:
                return WebhookResponse.error(503, str(exc), {"Retry-After": "5"})
            if not fresh:
                return WebhookResponse.error(409, "this request was already received (replay)")
        # Unsigned: only a URL-verification challenge carrying the right token is answered, and
        # every other outcome is the same 401, so the answer tells nothing about the decryption.
        refusal = WebhookResponse.error(401, f"missing {SIGNATURE_HEADER}")
        try:
            envelope = json.loads(request.body.decode("utf-8"))
            encrypted = envelope.get("encrypt") if isinstance(envelope, dict) else None
            if not isinstance(encrypted, str):
                raise ValueError("no encrypt field")
            event = json.loads(decrypt(encrypted, self._encrypt_key))
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError, DecryptError):
            if not signed:
                return refusal
            return WebhookResponse.error(400, 'the body is not {"encrypt": ...} decrypting to a JSON object')
        token_refusal = self._check_token(event)
        if token_refusal is not None:
            return token_refusal if signed else refusal
        if not signed and event.get("type") != "url_verification":
            return refusal
        return event, signed

    def _open_plain(self, request: WebhookRequest) -> WebhookResponse | tuple[dict[str, Any], bool]:
        """Parse a body sent without an encrypt key and check its verification token."""
        try:
            event = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return WebhookResponse.error(400, "the body is not UTF-8 JSON")
        if not isinstance(event, dict):
            return WebhookResponse.error(400, "the body is not a JSON object")
        if "encrypt" in event:
            return WebhookResponse.error(
                401, f"the body is encrypted but {self.settings.encrypt_key_env} is not set on this server"
            )
        refusal = self._check_token(event)
        if refusal is not None:
            return refusal
        return event, False

    def _check_token(self, event: dict[str, Any]) -> WebhookResponse | None:
        """Compare the event's verification token (v2 ``header.token``, v1 ``token``) in constant time."""
        assert self._verification_token is not None
        header = event.get("header")
        token = header.get("token") if isinstance(header, dict) else event.get("token")
        if not isinstance(token, str) or not token:
            return WebhookResponse.error(401, "missing verification token")
        if not signatures_match(self._verification_token.encode("utf-8"), token.encode("utf-8")):
            return WebhookResponse.error(403, "verification token does not match")
        return None

    async def on_event(self, event: Mapping[str, Any]) -> Delivery | None:
        """Deliver one authentic event (webhook or long connection); None when it is not a message for the agent."""
        message = self.normalize(event)
        if message is None:
            return None
        return await self.deliver(message)

    def normalize(self, event: Mapping[str, Any]) -> IncomingMessage | None:
        """Return an ``im.message.receive_v1`` event as an ``IncomingMessage`` (None for other events)."""
        header = event.get("header")
        if not isinstance(header, dict) or header.get("event_type") != MESSAGE_EVENT:
            return None
        body = event.get("event")
        if not isinstance(body, dict):
            return None
        message = body.get("message")
        sender = body.get("sender")
        if not isinstance(message, dict) or not isinstance(sender, dict):
            return None
        sender_ids = sender.get("sender_id")
        open_id = sender_ids.get("open_id") if isinstance(sender_ids, dict) else None
        message_id = message.get("message_id")
        chat_id = message.get("chat_id")
        if not all(isinstance(v, str) and v for v in (open_id, message_id, chat_id)):
            return None
        message_type = str(message.get("message_type") or "")
        try:
            content = json.loads(message.get("content") or "{}")
        except (TypeError, ValueError):
            content = {}
        text = content_text(message_type, content)
        media: list[MediaRef] = []
        if message_type in MEDIA_KEYS and isinstance(content, dict):
            kind, key = MEDIA_KEYS[message_type]
            ref = content.get(key)
            if isinstance(ref, str) and ref:
                name = content.get("file_name")
                media.append(MediaRef(kind=kind, ref=ref, name=name if isinstance(name, str) else None))  # type: ignore[arg-type]
                text = text or f"[{kind}]"
        mentions_bot = False
        mentions = message.get("mentions")
        for mention in mentions if isinstance(mentions, list) else []:
            if not isinstance(mention, dict) or not isinstance(mention.get("key"), str):
                continue
            ids = mention.get("id")
            mentioned = ids.get("open_id") if isinstance(ids, dict) else None
            if self.bot_open_id is not None and mentioned == self.bot_open_id:
                mentions_bot = True
                text = text.replace(mention["key"], "")
            else:
                name = mention.get("name")
                text = text.replace(mention["key"], f"@{name}" if isinstance(name, str) and name else "")
        text = " ".join(text.split(" ")).strip()
        if not text:
            return None
        parent = message.get("parent_id")
        return IncomingMessage(
            channel=self.name,
            chat_id=str(chat_id),
            sender_id=str(open_id),
            text=text,
            message_id=str(message_id),
            is_group=message.get("chat_type") != "p2p",
            mentions_bot=mentions_bot,
            reply_to=parent if isinstance(parent, str) and parent else None,
            media=media,
            metadata={"message_type": message_type, "chat_type": str(message.get("chat_type") or "")},
            raw=dict(event),
        )


class _LongConnection:
    """The long connection: endpoint, websocket, pings, events and acknowledgements, reconnects."""

    def __init__(self, channel: FeishuChannel) -> None:
        self.channel = channel
        self.settings = channel.settings
        self.ping_interval = 120.0
        self.websocket: Any = None
        self.service_id = 0
        self.connection_id = ""
        self._task: asyncio.Task[None] | None = None
        self._parts: dict[str, list[bytes | None]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self._closing = False

    async def open(self) -> None:
        """Connect once (raising ``_ApiError``/``ChannelError`` when it cannot), then keep the connection."""
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="feishu-long-connection")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for handler in list(self._handlers):
            handler.cancel()
        await self._disconnect()

    async def _disconnect(self) -> None:
        websocket, self.websocket = self.websocket, None
        if websocket is not None:
            with contextlib.suppress(Exception):
                await websocket.close()

    async def _connect(self) -> None:
        """Ask for an endpoint and open its websocket."""
        from urllib.parse import parse_qs, urlsplit

        import websockets

        channel = self.channel
        body = await channel._request(
            "POST",
            "/callback/ws/endpoint",
            {"AppID": channel._app_id, "AppSecret": channel._app_secret},
            token=None,
        )
        data = body.get("data")
        url = data.get("URL") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise _ApiError("the long-connection endpoint answered without a websocket URL")
        assert isinstance(data, dict)
        self._configure(data.get("ClientConfig"))
        query = parse_qs(urlsplit(url).query)
        try:
            self.service_id = int(query.get("service_id", ["0"])[0])
        except ValueError:
            self.service_id = 0
        self.connection_id = query.get("device_id", [""])[0]
        try:
            self.websocket = await websockets.connect(url, max_size=4 * 1024 * 1024, open_timeout=self.settings.timeout)
        except websockets.InvalidStatus as exc:
            headers = exc.response.headers
            status = headers.get("handshake-status") or str(exc.response.status_code)
            message = headers.get("handshake-msg") or "refused"
            raise _ApiError(f"the long connection was refused ({status}: {_one_line(message)})") from None
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise _ApiError(f"the long connection could not be opened ({type(exc).__name__})") from None
        log.info("feishu: long connection open")

    def _configure(self, config: Any) -> None:
        if not isinstance(config, dict):
            return
        ping = config.get("PingInterval")
        if isinstance(ping, int | float) and not isinstance(ping, bool) and ping > 0:
            self.ping_interval = float(ping)

    async def _run(self) -> None:
        """Read frames and ping until stopped; reconnect with backoff; report failure when it cannot."""
        while not self._closing:
            reason = await self._serve()
            await self._disconnect()
            if self._closing:
                return
            log.warning("feishu: long connection dropped (%s); reconnecting", reason)
            attempt = 0
            while self.websocket is None:
                attempt += 1
                delay = min(self.settings.reconnect_backoff * 2 ** (attempt - 1), self.settings.reconnect_backoff_max)
                await asyncio.sleep(delay * (0.75 + random.random() / 2))  # noqa: S311  reconnect jitter, not a secret
                try:
                    await self._connect()
                except (_ApiError, ChannelError) as exc:
                    why = exc.reason if isinstance(exc, _ApiError) else str(exc)
                    log.warning("feishu: reconnect %d failed: %s", attempt, why)
                    if attempt >= self.settings.reconnect_attempts:
                        self.channel.fail(f"long connection lost and {attempt} reconnects failed: {why}")
                        return

    async def _serve(self) -> str:
        """Serve the open websocket until it closes; return why it ended."""
        import websockets

        pinger = asyncio.create_task(self._ping_loop())
        try:
            while True:
                data = await self.websocket.recv()
                if isinstance(data, str):
                    continue  # the protocol is binary frames
                try:
                    frame = frames.Frame.decode(data)
                except frames.FrameError as exc:
                    log.warning("feishu: dropped a malformed frame (%s)", exc)
                    continue
                await self._on_frame(frame)
        except websockets.ConnectionClosed as exc:
            return f"closed with code {exc.rcvd.code if exc.rcvd else 'none'}"
        except (OSError, websockets.WebSocketException) as exc:
            return type(exc).__name__
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _ping_loop(self) -> None:
        while True:
            await self._write(frames.Frame(service=self.service_id, method=frames.CONTROL, headers=[("type", "ping")]))
            await asyncio.sleep(self.ping_interval)

    async def _write(self, frame: frames.Frame) -> None:
        websocket = self.websocket
        if websocket is None:
            return
        async with self._send_lock:
            with contextlib.suppress(Exception):  # a dead socket is noticed by the reader
                await websocket.send(frame.encode())

    async def _on_frame(self, frame: frames.Frame) -> None:
        kind = frame.header("type")
        if frame.method == frames.CONTROL:
            if kind == "pong" and frame.payload:
                with contextlib.suppress(ValueError):
                    self._configure(json.loads(frame.payload))
            return
        if frame.method != frames.DATA:
            return
        payload = self._assemble(frame)
        if payload is None:
            return
        task = asyncio.create_task(self._on_data(frame, kind, payload))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _assemble(self, frame: frames.Frame) -> bytes | None:
        """Return the whole payload of a data frame, or None while parts of it are missing."""
        payload = frame.payload or b""
        try:
            total = int(frame.header("sum") or "1")
            index = int(frame.header("seq") or "0")
        except ValueError:
            return None
        if total <= 1:
            return payload
        if not 0 <= index < total <= 1000:
            return None
        key = frame.header("message_id") or ""
        parts = self._parts.setdefault(key, [None] * total)
        if len(parts) != total:
            del self._parts[key]
            return None
        parts[index] = payload
        if any(part is None for part in parts):
            if len(self._parts) > 100:  # forget the oldest incomplete payload
                self._parts.pop(next(iter(self._parts)))
            return None
        del self._parts[key]
        return b"".join(part or b"" for part in parts)

    async def _on_data(self, frame: frames.Frame, kind: str | None, payload: bytes) -> None:
        """Deliver an event and acknowledge it with ``{"code": ...}`` in a response frame."""
        started = time.monotonic()
        code = 200
        if kind == "event":
            try:
                event = json.loads(payload.decode("utf-8"))
                delivery = await self.channel.on_event(event) if isinstance(event, dict) else None
            except (UnicodeDecodeError, ValueError):
                delivery = None
            except Exception:
                log.exception("feishu: an event could not be handed over")
                delivery = Delivery.UNAVAILABLE
            if delivery is not None:
                code = 200 if delivery.taken else 500
        elapsed = str(int((time.monotonic() - started) * 1000))
        answer = frames.Frame(
            seq_id=frame.seq_id,
            log_id=frame.log_id,
            service=frame.service,
            method=frame.method,
            headers=[*frame.headers, ("biz_rt", elapsed)],
            payload=json.dumps({"code": code}).encode(),
        )
        await self._write(answer)


def _path_id(value: str) -> str:
    """Return a message id fit for a URL path (Feishu ids are ``om_`` + letters and digits)."""
    from urllib.parse import quote

    return quote(value, safe="")


def _one_line(value: Any) -> str:
    return " ".join(str(value or "").split())[:200]
