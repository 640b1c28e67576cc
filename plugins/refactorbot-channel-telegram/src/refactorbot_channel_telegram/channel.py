"""The ``telegram`` channel: a Telegram bot, by long polling or by webhook, answering in HTML.

Start checks the token with ``getMe`` and remembers who the bot is. **Polling** (the default):
``deleteWebhook``, then ``getUpdates`` long polls; the offset moves past an update only once it was
handed to the host, and is kept in ``state_dir``. A 409 Conflict (another process polls this bot,
or a webhook is set) is logged and waited out with a growing backoff, like any other failed poll.
**Webhook**: ``setWebhook`` with a secret token; ``POST /hooks/telegram`` accepts a request only
when ``X-Telegram-Bot-Api-Secret-Token`` matches (compared in constant time), and answers at once.
Replies: ``sendMessage`` with ``parse_mode=HTML``, cut so that every part is well-formed HTML.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator
from refactorbot import (
    ChannelAdapter,
    ChannelConfig,
    ChannelError,
    EnvVarName,
    FormattingRejected,
    HttpUrl,
    OutgoingMessage,
    SendFailed,
    WebhookRequest,
    WebhookResponse,
    signatures_match,
)

from refactorbot_channel_telegram.api import BotApi, TelegramApiError
from refactorbot_channel_telegram.html import html_to_plain, render_html, split_html
from refactorbot_channel_telegram.offsets import OffsetStore
from refactorbot_channel_telegram.updates import (
    ALLOWED_UPDATES,
    BotIdentity,
    MalformedUpdate,
    message_key,
    message_number,
    to_incoming,
)

log = logging.getLogger("refactorbot.channels.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  the header's name, not its value
DEFAULT_API_BASE = "https://api.telegram.org"
_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{10,200}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_CONFLICT = "another process is polling this bot, or a webhook is set"


class TelegramConfig(ChannelConfig):
    """``[channels.telegram]`` (every field also ``RB_TELEGRAM_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["polling", "webhook"] = Field("polling", description="how updates arrive")
    token_env: EnvVarName = Field("TELEGRAM_BOT_TOKEN", description="environment variable holding the bot token")
    webhook_secret_env: EnvVarName = Field(
        "TELEGRAM_WEBHOOK_SECRET", description="environment variable holding the webhook secret token (webhook mode)"
    )
    webhook_url: HttpUrl | None = Field(
        None, description="public https URL of /hooks/telegram, given to Telegram by setWebhook (webhook mode)"
    )
    poll_timeout: int = Field(30, ge=1, le=50, description="seconds one getUpdates long poll waits for updates")
    request_timeout: float = Field(15.0, gt=0, le=300, description="seconds any other Bot API call may take")
    backoff: float = Field(1.0, gt=0, le=300, description="seconds before polling again after a failure, doubled")
    backoff_max: float = Field(60.0, gt=0, le=3600, description="the longest wait between failed polls")
    busy_wait: float = Field(
        1.0, gt=0, le=60, description="seconds before handing over again an update refused as busy"
    )
    drop_pending_updates: bool = Field(False, description="on start, drop updates that arrived while the bot was off")
    proxy: HttpUrl | None = Field(None, description="HTTP(S) proxy for the Bot API")

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("Telegram delivers webhooks to https:// URLs only")
        return value


class TelegramChannel(ChannelAdapter):
    """A Telegram bot through the Bot API."""

    name = "telegram"
    Config = TelegramConfig
    webhook = True
    #: Telegram's limit, in UTF-16 code units (``split`` counts them so).
    text_limit = 4096
    max_body = 1_048_576

    @classmethod
    def runs_once(cls, settings: Any) -> bool:
        """Polling runs on one host of a deployment at a time (two pollers get 409s); webhooks anywhere."""
        return bool(settings.mode == "polling")

    def __init__(self, config: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config, env=env)
        self.settings: TelegramConfig
        self.bot: BotIdentity | None = None
        self._api: BotApi | None = None
        self._poller: asyncio.Task[None] | None = None
        self._secret: str | None = None
        self._store: OffsetStore | None = None
        self._offset: int | None = None

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Run when the token's variable is set (or ``enabled = true`` says so)."""
        return bool(env.get(getattr(settings, "token_env", "TELEGRAM_BOT_TOKEN")))

    @property
    def api_base(self) -> str:
        """Return the Bot API base URL in use."""
        return self.settings.api_base or DEFAULT_API_BASE

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token with ``getMe``, then start polling or set the webhook."""
        settings = self.settings
        token = self.secret(settings.token_env)
        if not _TOKEN.match(token):
            raise ChannelError(
                f"channel telegram: {settings.token_env} does not look like a bot token"
                " (<digits>:<letters>, as @BotFather gives it)"
            )
        secret = None
        if settings.mode == "webhook":
            secret = self.secret(settings.webhook_secret_env)
            if not _SECRET.match(secret):
                raise ChannelError(
                    f"channel telegram: {settings.webhook_secret_env} must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
                )
            if settings.webhook_url is None:
                raise ChannelError(
                    "channel telegram: set webhook_url in [channels.telegram] (the public https URL of /hooks/telegram)"
                )
        self._api = BotApi(self.api_base, token, timeout=settings.request_timeout, proxy=settings.proxy)
        try:
            await self._connect(secret)
        except BaseException:
            await self.stop()
            raise

    async def _connect(self, secret: str | None) -> None:
        assert self._api is not None
        me = await self._startup_call("getMe")
        if not isinstance(me, dict) or not isinstance(me.get("id"), int) or not me.get("username"):
            raise ChannelError("channel telegram: getMe did not return a bot")
        self.bot = BotIdentity(me["id"], str(me["username"]))
        drop = self.settings.drop_pending_updates
        if secret is not None:
            await self._startup_call(
                "setWebhook",
                {
                    "url": self.settings.webhook_url,
                    "secret_token": secret,
                    "allowed_updates": ALLOWED_UPDATES,
                    "drop_pending_updates": drop,
                },
            )
            self._secret = secret
            log.info("channel telegram: @%s receives updates at %s", self.bot.username, self.settings.webhook_url)
            return
        await self._startup_call("deleteWebhook", {"drop_pending_updates": drop})
        self._store = OffsetStore(self.state_dir, self.bot.id)
        self._offset = await asyncio.to_thread(self._store.load)
        self._poller = asyncio.create_task(self._poll(), name="telegram-poller")
        log.info("channel telegram: @%s polls for updates", self.bot.username)

    async def _startup_call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert self._api is not None
        try:
            return await self._api.call(method, params)
        except TelegramApiError as exc:
            if exc.error_code == 401:
                raise ChannelError(
                    f"channel telegram: Telegram refused the token in {self.settings.token_env}"
                    " (401 Unauthorized); check it with @BotFather"
                ) from None
            if exc.error_code == 404 and method == "getMe":
                raise ChannelError(
                    f"channel telegram: {self.api_base} has no bot for the token in {self.settings.token_env}"
                    " (404 Not Found); check the token and api_base"
                ) from None
            raise ChannelError(f"channel telegram: {method} failed: {exc.description}") from None

    async def stop(self) -> None:
        """Stop polling and close connections; in webhook mode the webhook stays set (see the docs)."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        self._secret = None
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    # -- polling ----------------------------------------------------------------------------------

    async def _poll(self) -> None:
        """Long-poll ``getUpdates`` until cancelled; report a death through ``fail``."""
        try:
            await self._poll_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected answer: the runtime restarts the channel
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.error("channel telegram: the poller stopped: %s", reason)
            self.fail(f"the poller stopped: {reason}")

    async def _poll_forever(self) -> None:
        settings = self.settings
        failures = 0
        while True:
            assert self._api is not None
            params: dict[str, Any] = {"timeout": settings.poll_timeout, "allowed_updates": ALLOWED_UPDATES}
            if self._offset is not None:
                params["offset"] = self._offset
            try:
                updates = await self._api.call(
                    "getUpdates", params, timeout=settings.poll_timeout + settings.request_timeout
                )
            except TelegramApiError as exc:
                if exc.error_code == 401:
                    self.fail(f"Telegram refused the token in {settings.token_env} (401 Unauthorized)")
                    return
                delay = min(settings.backoff * 2**failures, settings.backoff_max)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                failures += 1
                if exc.error_code == 409:
                    log.warning(
                        "channel telegram: %s (409 %s); polling again in %.1fs", _CONFLICT, exc.description, delay
                    )
                else:
                    log.warning(
                        "channel telegram: getUpdates failed: %s; polling again in %.1fs", exc.description, delay
                    )
                await asyncio.sleep(delay)
                continue
            failures = 0
            if not isinstance(updates, list):
                raise ValueError(f"getUpdates returned {type(updates).__name__}, not a list of updates")
            for update in updates:
                await self._handle_polled(update)

    async def _handle_polled(self, update: Any) -> None:
        """Hand one polled update to the host (again while its chat is busy), then move the offset past it."""
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if not isinstance(update_id, int):
            log.warning("channel telegram: skipped an update without an integer update_id")
            return
        if self._offset is not None and update_id < self._offset:
            return  # already handled
        try:
            message = to_incoming(update, self._bot())
        except (MalformedUpdate, ValueError) as exc:
            log.warning("channel telegram: skipped update %d: %s", update_id, " ".join(str(exc).split())[:200])
            message = None
        while message is not None:
            delivery = await self.deliver(message)
            if delivery.taken:
                break
            await asyncio.sleep(self.settings.busy_wait)  # its chat's queue is full: the update waits its turn
        self._offset = update_id + 1
        assert self._store is not None
        await asyncio.to_thread(self._store.save, self._offset)

    def _bot(self) -> BotIdentity:
        if self.bot is None:
            raise ChannelError("the telegram channel is not running")
        return self.bot

    # -- webhook ----------------------------------------------------------------------------------

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Accept one update from Telegram: the secret token first, then the update, answered at once."""
        if request.method != "POST":
            return WebhookResponse.error(405, "Telegram POSTs updates here")
        secret = self._secret
        if secret is None or self.bot is None:
            return WebhookResponse.error(503, "the telegram channel is not running in webhook mode")
        given = request.header(SECRET_HEADER)
        if not given:
            return WebhookResponse.error(401, f"missing {SECRET_HEADER}")
        if not signatures_match(secret, given):
            return WebhookResponse.error(403, f"{SECRET_HEADER} does not match")
        try:
            update = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return WebhookResponse.error(400, "invalid update: the body is not UTF-8 JSON")
        try:
            message = to_incoming(update, self.bot)
        except ValueError as exc:  # MalformedUpdate, or a field out of bounds
            reason = str(exc) if isinstance(exc, MalformedUpdate) else "a field is out of bounds"
            return WebhookResponse.error(400, f"invalid update: {reason}")
        if message is None:
            return WebhookResponse.json({"ok": True, "status": "ignored"})
        delivery = await self.deliver(message)
        return WebhookResponse.for_delivery(delivery, {"ok": True, "status": delivery.value})

    # -- sending ----------------------------------------------------------------------------------

    def render(self, markdown: str) -> str:
        """Return Markdown as Telegram HTML."""
        return render_html(markdown)

    def plain(self, text: str) -> str:
        """Return Telegram HTML as plain text."""
        return html_to_plain(text)

    def split(self, text: str) -> list[str]:
        """Return ``text`` in well-formed parts of at most 4096 UTF-16 code units."""
        return split_html(text, self.text_limit)

    async def send(self, message: OutgoingMessage) -> list[str]:
        """Send one part with ``sendMessage``; return ``<chat id>:<message id>``."""
        text = message.text
        payload: dict[str, Any] = {"chat_id": _chat(message.chat_id), "text": text}
        if message.text_format == "markdown":
            payload["text"], payload["parse_mode"] = render_html(text), "HTML"
        elif message.text_format == "platform":
            payload["parse_mode"] = "HTML"
        number = message_number(message.reply_to) if message.reply_to else None
        if number is not None:
            payload["reply_parameters"] = {"message_id": number, "allow_sending_without_reply": True}
        result = await self._send_call("sendMessage", payload)
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise SendFailed("sendMessage answered without a message id")
        chat = result.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) and chat.get("id") is not None else message.chat_id
        return [message_key(chat_id, result["message_id"])]

    async def edit(
        self, chat_id: str, message_id: str, text: str, *, text_format: Literal["platform", "plain"] = "platform"
    ) -> None:
        """Replace a sent message's text with ``editMessageText``; an unchanged text is not an error."""
        number = message_number(message_id)
        if number is None:
            raise SendFailed(f"not a Telegram message id: {message_id[:60]!r}", permanent=True)
        payload: dict[str, Any] = {"chat_id": _chat(chat_id), "message_id": number, "text": text}
        if text_format == "platform":
            payload["parse_mode"] = "HTML"
        try:
            await self._send_call("editMessageText", payload)
        except SendFailed as exc:
            if "message is not modified" not in exc.reason:
                raise

    async def typing(self, chat_id: str) -> None:
        """Show "typing…" in the chat (Telegram shows it for 5 seconds or until a message arrives)."""
        await self._send_call("sendChatAction", {"chat_id": _chat(chat_id), "action": "typing"})

    async def _send_call(self, method: str, payload: dict[str, Any]) -> Any:
        api = self._api
        if api is None:
            raise SendFailed("the telegram channel is not running")
        try:
            return await api.call(method, payload)
        except TelegramApiError as exc:
            raise _send_error(exc) from None


def _chat(chat_id: str) -> int | str:
    """Return a chat id as the Bot API takes it: an integer, or ``@channelusername``."""
    return int(chat_id) if re.fullmatch(r"-?[0-9]{1,20}", chat_id) else chat_id


def _send_error(exc: TelegramApiError) -> SendFailed:
    """Return the ``SendFailed`` a Bot API error means."""
    code, description = exc.error_code, exc.description
    where = f"{exc.method}: {description}"
    if code is None or code >= 500:
        return SendFailed(where)
    if code == 429:
        return SendFailed(where, retry_after=exc.retry_after if exc.retry_after is not None else 1.0)
    if code == 400 and "can't parse entities" in description.lower():
        return FormattingRejected(where)
    if exc.migrate_to_chat_id is not None:
        return SendFailed(f"{where} (the group is now chat {exc.migrate_to_chat_id})", permanent=True)
    # 400 (chat not found, message too long), 403 (blocked by the user, kicked), 401 (token revoked):
    # sending the same request again cannot succeed.
    return SendFailed(where, permanent=code in (400, 401, 403, 404))
