"""The ``webhook`` channel: any system that can POST signed JSON talks to the agent.

In: ``POST /hooks/webhook`` on the control API with a JSON message, signed
``X-Refactorbot-Signature: sha256=<hex HMAC-SHA256>`` over ``<X-Refactorbot-Timestamp>.<raw body>``
with the shared secret. Refused before the body is parsed: a missing or malformed signature or
timestamp (401), a signature that does not match (403), a timestamp more than ``tolerance``
seconds away (403), a request already received (409). Replies: POSTed to ``callback_url``,
signed the same way.

Replays are remembered in memory, bounded (``replay_cache`` signatures, each for as long as its
timestamp is acceptable); after a restart, a replay of a message already received is still
dropped by the communication slice's durable de-duplication by message id.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, ValidationError
from refactorbot import (
    ChannelAdapter,
    ChannelConfig,
    ChannelError,
    EnvVarName,
    HttpUrl,
    IncomingMessage,
    MediaRef,
    Model,
    OutgoingMessage,
    ReplayCacheFull,
    ReplayGuard,
    SendFailed,
    WebhookRequest,
    WebhookResponse,
    describe_validation_error,
    parse_retry_after,
    signatures_match,
)

SIGNATURE_HEADER = "X-Refactorbot-Signature"
TIMESTAMP_HEADER = "X-Refactorbot-Timestamp"
#: Shortest secret accepted: a short one can be guessed.
MIN_SECRET = 16


def signature(secret: str | bytes | Signer, timestamp: str, body: bytes) -> str:
    """Return the ``X-Refactorbot-Signature`` value of ``body`` sent at ``timestamp``."""
    signer = secret if isinstance(secret, Signer) else Signer(secret)
    return "sha256=" + signer.hex(timestamp.encode("ascii") + b"." + body)


def signed_headers(secret: str | bytes | Signer, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Return the headers of a signed request carrying ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signature(secret, stamp, body),
    }


class Signer:
    """HMAC-SHA256 with one key, keyed once: each signature copies the keyed state.

    Cheaper than keying a new HMAC per message, and a short message is hashed without releasing
    the GIL (``hmac.digest`` releases it, and the event loop then waits to get it back from the
    database threads).
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret: str | bytes) -> None:
        self._keyed = hmac.new(secret.encode() if isinstance(secret, str) else secret, digestmod=hashlib.sha256)

    def hex(self, message: bytes) -> str:
        """Return the hex HMAC-SHA256 of ``message``."""
        mac = self._keyed.copy()
        mac.update(message)
        return mac.hexdigest()


class WebhookConfig(ChannelConfig):
    """``[channels.webhook]`` (every field also ``RB_WEBHOOK_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    secret_env: EnvVarName = Field(
        "REFACTORBOT_WEBHOOK_SECRET", description="environment variable holding the shared secret"
    )
    callback_url: HttpUrl | None = Field(None, description="where replies are POSTed")
    tolerance: float = Field(300.0, gt=0, le=3600, description="seconds a timestamp may be off, either way")
    text_limit: int = Field(4096, ge=64, le=1_000_000, description="characters per reply message")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds a callback POST may take")
    replay_cache: int = Field(100_000, ge=100, le=10_000_000, description="signatures remembered against replays")


class InboundMessage(Model):
    """The JSON body of ``POST /hooks/webhook``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    id: str = Field(min_length=1, max_length=200, description="the sender's message id (redeliveries reuse it)")
    chat_id: str = Field(min_length=1, max_length=200)
    sender_id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=32_000)
    sender_name: str | None = Field(None, max_length=200)
    is_group: bool = False
    mentions_bot: bool = False
    reply_to: str | None = Field(None, min_length=1, max_length=200)
    media: list[MediaRef] = Field(default_factory=list, max_length=20)


class WebhookChannel(ChannelAdapter):
    """Generic JSON over signed webhooks, both ways."""

    name = "webhook"
    Config = WebhookConfig
    webhook = True
    max_body = 256 * 1024

    def __init__(self, config: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config, env=env)
        self.settings: WebhookConfig
        self.text_limit = self.settings.text_limit
        self._secret: Signer | None = None
        self._client: Any = None
        #: Ids of replies the receiver gives none for: a random prefix per start and a counter.
        self._ids: Any = None
        self._url: Any = None
        self._replays = ReplayGuard(self.settings.replay_cache)

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Run when the secret's variable is set (or ``enabled = true`` says so)."""
        return bool(env.get(getattr(settings, "secret_env", "REFACTORBOT_WEBHOOK_SECRET")))

    async def start(self) -> None:
        """Check the secret and the callback URL, open the HTTP client."""
        secret = self.secret(self.settings.secret_env)
        if len(secret) < MIN_SECRET:
            raise ChannelError(
                f"channel webhook: {self.settings.secret_env} must hold at least {MIN_SECRET} characters"
            )
        if self.settings.callback_url is None:
            raise ChannelError("channel webhook: set callback_url in [channels.webhook] (where replies are POSTed)")
        # aiohttp, not httpx: a callback POST costs about a third of the CPU (the channel's largest cost).
        import aiohttp
        from yarl import URL

        self._secret = Signer(secret)
        self._url = URL(self.settings.callback_url)  # parsed once, not at every reply
        prefix = os.urandom(8).hex()
        self._ids = (f"{prefix}{n:08x}" for n in itertools.count(1))
        if self._client is None:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30.0),
                trust_env=False,
                auto_decompress=False,
            )

    async def stop(self) -> None:
        """Close the HTTP client; webhooks are refused until the next start."""
        self._secret = None
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- in -------------------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, now: float | None = None) -> WebhookResponse | None:
        """Return the refusal for a request that is not authentic and fresh, or None to accept it."""
        secret = self._secret
        if secret is None:
            return WebhookResponse.error(503, "the webhook channel is not running")
        given = request.header(SIGNATURE_HEADER)
        stamp = request.header(TIMESTAMP_HEADER)
        if not given or not stamp:
            return WebhookResponse.error(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        if not given.startswith("sha256=") or len(given) != 71:
            return WebhookResponse.error(401, f"malformed {SIGNATURE_HEADER}: expected sha256=<64 hex digits>")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            return WebhookResponse.error(401, f"malformed {TIMESTAMP_HEADER}: expected Unix seconds")
        if not signatures_match(signature(secret, stamp, request.body), given.lower()):
            return WebhookResponse.error(403, "signature does not match")
        now = time.time() if now is None else now
        if abs(now - int(stamp)) > self.settings.tolerance:
            return WebhookResponse.error(
                403, f"timestamp more than {self.settings.tolerance:g}s away from this server's clock"
            )
        try:
            fresh = self._replays.check(bytes.fromhex(given[7:]), int(stamp) + self.settings.tolerance)
        except ReplayCacheFull as exc:
            return WebhookResponse.error(503, str(exc), {"Retry-After": "5"})
        if not fresh:
            return WebhookResponse.error(409, "this request was already received (replay)")
        return None

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Verify, parse and deliver one message."""
        if request.method != "POST":
            return WebhookResponse.error(405, "POST a signed JSON message")
        refusal = self.verify(request)
        if refusal is not None:
            return refusal
        try:
            payload = json.loads(request.body.decode("utf-8"))
            body = InboundMessage.model_validate(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                return WebhookResponse.error(422, f"invalid message: {describe_validation_error(exc)}")
            return WebhookResponse.error(400, "the body is not UTF-8 JSON")
        message = IncomingMessage(
            channel=self.name,
            chat_id=body.chat_id,
            sender_id=body.sender_id,
            sender_name=body.sender_name,
            text=body.text,
            message_id=body.id,
            is_group=body.is_group,
            mentions_bot=body.mentions_bot,
            reply_to=body.reply_to,
            media=body.media,
            raw=payload,
        )
        delivery = await self.deliver(message)
        return WebhookResponse.for_delivery(delivery, {"status": delivery.value, "id": body.id})

    # -- out ------------------------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> list[str]:
        """POST one signed reply to ``callback_url``; return the receiver's id for it (or ours)."""
        import aiohttp

        if self._secret is None or self._client is None or self.settings.callback_url is None:
            raise SendFailed("the webhook channel is not running")
        message_id = next(self._ids)
        body = json.dumps(
            {
                "id": message_id,
                "channel": self.name,
                "chat_id": message.chat_id,
                "text": message.text,
                "format": "plain" if message.text_format == "plain" else "markdown",
                "reply_to": message.reply_to,
            }
        ).encode()
        url = self.settings.callback_url
        headers = signed_headers(self._secret, body)
        try:
            async with self._client.post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                retry_header = response.headers.get("retry-after")
                content = await response.content.read(MAX_ANSWER + 1)
        except TimeoutError:
            raise SendFailed(f"callback {url} did not answer within {self.settings.timeout:g}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise SendFailed(f"callback {url} unreachable: {type(exc).__name__}: {exc}".strip()) from None
        if status == 429:
            raise SendFailed(
                f"callback {url} answered 429 Too Many Requests", retry_after=parse_retry_after(retry_header)
            )
        if status >= 500 or status == 408:
            raise SendFailed(f"callback {url} answered {status}")
        if status >= 300:
            raise SendFailed(f"callback {url} refused the reply: {status} {_detail(content)}", permanent=True)
        try:
            answered = json.loads(content) if len(content) <= MAX_ANSWER else None
        except ValueError:
            answered = None
        given = answered.get("id") if isinstance(answered, dict) else None
        return [given if isinstance(given, str) and 0 < len(given) <= 200 else message_id]


#: The largest callback answer read (its ``id``); a longer one is not parsed.
MAX_ANSWER = 65_536


def _detail(content: bytes) -> str:
    text = content[:400].decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:200]
