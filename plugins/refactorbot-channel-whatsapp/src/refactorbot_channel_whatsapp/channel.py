"""The ``whatsapp`` channel: the official WhatsApp Cloud API (Meta's Graph API), nothing unofficial.

In: Meta calls ``/hooks/whatsapp`` on the control API.

- ``GET`` is the subscription check: ``hub.mode=subscribe`` with ``hub.verify_token`` equal to
  ``WHATSAPP_VERIFY_TOKEN`` (compared in constant time) is answered with ``hub.challenge`` as
  plain text; anything else gets 403.
- ``POST`` carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app
  secret>``. Nothing is parsed before it is checked: missing or malformed 401, not matching 403.
  The body is the ``whatsapp_business_account`` object: ``entry[].changes[].value`` holds
  ``messages`` (handed to the host), ``contacts`` (the senders' names) and ``statuses`` (sent,
  delivered, read, failed — they update the outgoing message's record). The answer is 200 at
  once; when the host cannot take a message now (``busy``, ``unavailable``) it is 503, and Meta
  delivers the whole batch again later (messages already taken are then duplicates).

Out: ``POST {api_base}/{phone_number_id}/messages`` with the access token. A free-form message
reaches a user only within 24 hours of their last message; outside that window WhatsApp answers
with error 131047 (at once, or later as a ``failed`` status), and the channel sends the
configured template instead, or records a clear failure.

Replays: Meta's signature has no timestamp, so a captured delivery stays valid; a replayed
message is dropped by the communication slice's durable de-duplication of the message id, and a
replayed status only repeats what was already recorded.
"""

from __future__ import annotations

import asyncio
import collections
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
    Delivery,
    DeliveryStatus,
    EnvVarName,
    IncomingMessage,
    MediaRef,
    OutgoingMessage,
    SendFailed,
    WebhookRequest,
    WebhookResponse,
    hmac_sha256_hex,
    one_line,
    parse_retry_after,
    signatures_match,
)

from refactorbot_channel_whatsapp import formatting

log = logging.getLogger(__name__)

#: The Graph API version the channel speaks unless ``api_base`` says otherwise.
GRAPH_API = "https://graph.facebook.com/v24.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
#: A chat id naming a WhatsApp group (Groups API) rather than a user: ``group:<group id>``.
GROUP_PREFIX = "group:"

#: Graph error codes of rate limits: retried with backoff (or as long as ``Retry-After`` says).
RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131056})
#: Graph error codes of passing trouble on Meta's side: retried.
TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 133004})
#: Outside the 24-hour customer-service window: only a template message reaches the user.
WINDOW_CODE = 131047
#: The access token expired or was revoked.
TOKEN_CODE = 190

_STATUSES = {"sent", "delivered", "read", "failed"}
_MEDIA_KINDS: dict[str, Literal["image", "video", "audio", "file", "sticker"]] = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "document": "file",
    "sticker": "sticker",
}
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_RECENT = 2000  # sent messages remembered for a template fallback announced by a status
_CHATS = 10_000  # chats whose last incoming message id is remembered (typing indicator)


def signature(app_secret: str, body: bytes) -> str:
    """Return the ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac_sha256_hex(app_secret, body)


class WhatsAppConfig(ChannelConfig):
    """``[channels.whatsapp]`` (every field also ``RB_WHATSAPP_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    phone_number_id: str | None = Field(
        None, pattern=r"^[0-9]{1,32}$", description="the business phone number's id (WhatsApp Manager → API Setup)"
    )
    access_token_env: EnvVarName = Field(
        "WHATSAPP_ACCESS_TOKEN", description="environment variable holding the Graph API access token"
    )
    app_secret_env: EnvVarName = Field(
        "WHATSAPP_APP_SECRET", description="environment variable holding the Meta app secret (webhook signatures)"
    )
    verify_token_env: EnvVarName = Field(
        "WHATSAPP_VERIFY_TOKEN", description="environment variable holding the webhook verify token"
    )
    template_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]{1,512}$",
        description="approved template sent outside the 24-hour window (unset: such a send fails)",
    )
    template_language: str = Field(
        "en_US", pattern=r"^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$", description="the template's language code"
    )
    template_text: Literal["parameter", "none"] = Field(
        "parameter",
        description="parameter: the text fills the template body's one variable; none: the template is sent"
        " as it is (a notice asking the user to write back) and the text is recorded as not delivered",
    )
    template_parameter_name: str | None = Field(
        None, pattern=r"^[a-z0-9_]{1,64}$", description="the variable's name, for a template with named parameters"
    )
    template_max_chars: int = Field(
        1024, ge=16, le=32_768, description="the most characters the template variable takes"
    )
    mention_names: list[str] = Field(
        default_factory=list, description="words that address the bot in a group besides @<its number>"
    )
    typing_indicator: bool = Field(
        True, description="while a turn runs, mark the user's message read and show 'typing…'"
    )
    timeout: float = Field(15.0, gt=0, le=300, description="seconds a Graph API call may take")

    @field_validator("mention_names", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class WhatsAppChannel(ChannelAdapter):
    """WhatsApp through the Cloud API: webhooks in, Graph API messages out."""

    name = "whatsapp"
    Config = WhatsAppConfig
    text_limit = 4096
    webhook = True
    max_body = 3 * 1024 * 1024  # Meta batches up to 1,000 updates into one delivery

    def __init__(self, config: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config, env=env)
        self.settings: WhatsAppConfig
        self._client: Any = None
        self._token: str | None = None
        self._app_secret: str | None = None
        self._verify_token: str | None = None
        self._display_digits: str | None = None
        self._last_inbound: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._recent: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def api_base(self) -> str:
        """Return the Graph API base URL (with its version), without a trailing slash."""
        return (self.settings.api_base or GRAPH_API).rstrip("/")

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Run when the access token and the app secret are set (or ``enabled = true`` says so)."""
        token = getattr(settings, "access_token_env", "WHATSAPP_ACCESS_TOKEN")
        secret = getattr(settings, "app_secret_env", "WHATSAPP_APP_SECRET")
        return bool(env.get(token)) and bool(env.get(secret))

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the secrets, open the HTTP client and check the token against the phone number."""
        if not self.settings.phone_number_id:
            raise ChannelError(
                "channel whatsapp: set phone_number_id in [channels.whatsapp]"
                " (WhatsApp Manager → API Setup → Phone number ID)"
            )
        token = self.secret(self.settings.access_token_env)
        app_secret = self.secret(self.settings.app_secret_env)
        verify_token = self.secret(self.settings.verify_token_env)
        import httpx

        client = httpx.AsyncClient(
            timeout=self.settings.timeout, trust_env=False, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            answer = await client.get(
                f"{self.api_base}/{self.settings.phone_number_id}",
                params={"fields": "display_phone_number,verified_name"},
            )
        except httpx.HTTPError as exc:
            await client.aclose()
            raise ChannelError(f"channel whatsapp: cannot reach {self.api_base}: {type(exc).__name__}") from None
        if answer.status_code >= 400:
            await client.aclose()
            failure = _graph_failure(answer, self.settings.access_token_env)
            raise ChannelError(f"channel whatsapp: {failure.reason}")
        info = _json(answer)
        display = info.get("display_phone_number") if isinstance(info, dict) else None
        self._display_digits = re.sub(r"\D", "", display) if isinstance(display, str) else None
        self._client = client
        self._token, self._app_secret, self._verify_token = token, app_secret, verify_token

    async def stop(self) -> None:
        """Close the HTTP client; webhooks are refused until the next start."""
        self._token = self._app_secret = self._verify_token = None
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- in -------------------------------------------------------------------------------------------

    async def handle_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Answer Meta's subscription check (GET) or verify and take one signed delivery (POST)."""
        if request.method == "GET":
            return self.verify_subscription(request)
        if request.method != "POST":
            return WebhookResponse.error(405, "GET (subscription check) or POST (signed delivery) only")
        refusal = self.verify_signature(request)
        if refusal is not None:
            return refusal
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return WebhookResponse.error(400, "the body is not UTF-8 JSON")
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            return WebhookResponse.json({"status": "ignored", "detail": "not a whatsapp_business_account update"})
        return await self._take(payload)

    def verify_subscription(self, request: WebhookRequest) -> WebhookResponse:
        """Answer ``GET /hooks/whatsapp``: echo ``hub.challenge`` when the verify token matches, else 403."""
        expected = self._verify_token
        if expected is None:
            return WebhookResponse.error(503, "the whatsapp channel is not running")
        mode = request.query.get("hub.mode")
        given = request.query.get("hub.verify_token")
        challenge = request.query.get("hub.challenge", "")
        if mode != "subscribe" or not signatures_match(expected, given):
            return WebhookResponse.error(403, "hub.mode must be subscribe and hub.verify_token must match")
        if not challenge or len(challenge) > 256 or not challenge.isascii() or not challenge.isprintable():
            return WebhookResponse.error(400, "hub.challenge must be 1 to 256 printable ASCII characters")
        return WebhookResponse.text(challenge)

    def verify_signature(self, request: WebhookRequest) -> WebhookResponse | None:
        """Return the refusal of a POST whose ``X-Hub-Signature-256`` is missing or wrong, None if authentic."""
        secret = self._app_secret
        if secret is None:
            return WebhookResponse.error(503, "the whatsapp channel is not running")
        given = request.header(SIGNATURE_HEADER)
        if not given:
            return WebhookResponse.error(401, f"missing {SIGNATURE_HEADER}")
        if not given.startswith("sha256=") or not _HEX.match(given[7:]):
            return WebhookResponse.error(401, f"malformed {SIGNATURE_HEADER}: expected sha256=<64 hex digits>")
        if not signatures_match(signature(secret, request.body), given.lower()):
            return WebhookResponse.error(403, f"{SIGNATURE_HEADER} does not match the body")
        return None

    async def _take(self, payload: dict[str, Any]) -> WebhookResponse:
        deliveries: list[Delivery] = []
        statuses = 0
        for value in _values(payload):
            metadata = value.get("metadata")
            phone_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if phone_id != self.settings.phone_number_id:
                continue  # another number of the same business account
            display = metadata.get("display_phone_number") if isinstance(metadata, dict) else None
            if isinstance(display, str) and not self._display_digits:
                self._display_digits = re.sub(r"\D", "", display)
            names = _contact_names(value.get("contacts"))
            for raw in _list(value.get("messages")):
                message = self.normalize(raw, names)
                if message is not None:
                    delivery = await self.deliver(message)
                    deliveries.append(delivery)
                    if delivery is Delivery.ACCEPTED and not message.is_group:
                        self._remember_inbound(message.chat_id, message.message_id)
            for raw in _list(value.get("statuses")):
                if await self._status(raw):
                    statuses += 1
        answer = {"status": "ok", "messages": [d.value for d in deliveries], "statuses": statuses}
        if not all(delivery.taken for delivery in deliveries):  # Meta redelivers on any non-2xx
            answer["status"] = "retry later"
            return WebhookResponse.json(answer, 503, {"Retry-After": "5"})
        return WebhookResponse.json(answer)

    def normalize(self, raw: Any, names: Mapping[str, str]) -> IncomingMessage | None:
        """Return one webhook ``messages[]`` item as an ``IncomingMessage``, None for what is not a message."""
        if not isinstance(raw, dict):
            return None
        sender = raw.get("from")
        message_id = raw.get("id")
        kind = raw.get("type")
        if not (isinstance(sender, str) and sender and isinstance(message_id, str) and message_id):
            return None
        if not isinstance(kind, str) or len(message_id) > 512 or len(sender) > 128:
            return None
        sender = sender.removeprefix("+")
        text, media, extra = _content(kind, raw)
        if text is None:
            return None  # reactions, system notices, unsupported content: nothing to answer
        group = raw.get("group_id")
        is_group = isinstance(group, str) and bool(group)
        context = _dict(raw.get("context"))
        reply_to = context.get("id") if isinstance(context.get("id"), str) and context.get("id") else None
        if context.get("forwarded") or context.get("frequently_forwarded"):
            extra["forwarded"] = True
        return IncomingMessage(
            channel=self.name,
            chat_id=f"{GROUP_PREFIX}{group}" if is_group else sender,
            sender_id=sender,
            sender_name=names.get(sender),
            text=text,
            message_id=message_id,
            is_group=is_group,
            mentions_bot=is_group and self._mentions_bot(text, context),
            reply_to=reply_to,
            media=media,
            metadata=extra,
            raw=raw,
        )

    def _mentions_bot(self, text: str, context: Mapping[str, Any]) -> bool:
        digits = self._display_digits
        if digits and re.search(rf"@\+?{digits}(?!\d)", text):
            return True
        mentioned = context.get("mentions")
        if digits and isinstance(mentioned, list) and any(re.sub(r"\D", "", str(m)) == digits for m in mentioned):
            return True
        lowered = text.casefold()
        return any(re.search(rf"(?<!\w){re.escape(n.casefold())}(?!\w)", lowered) for n in self.settings.mention_names)

    def _remember_inbound(self, chat_id: str, message_id: str) -> None:
        self._last_inbound[chat_id] = message_id
        self._last_inbound.move_to_end(chat_id)
        while len(self._last_inbound) > _CHATS:
            self._last_inbound.popitem(last=False)

    async def _status(self, raw: Any) -> bool:
        """Report one ``statuses[]`` item to the host; return whether it was one."""
        if not isinstance(raw, dict):
            return False
        message_id, status = raw.get("id"), raw.get("status")
        if not isinstance(message_id, str) or not message_id or status not in _STATUSES:
            return False  # "played" (a voice message) and unknown values are not delivery states
        reason = _status_reason(raw) if status == "failed" else None
        if status == "failed" and _error_code(raw) == WINDOW_CODE:
            recent = self._recent.pop(message_id, None)
            if recent is not None and self.settings.template_name:
                self._background(self._template_after_status(message_id, *recent))
                return True
            reason = self._window_reason(str(raw.get("recipient_id") or "the user"))
        await self._report(message_id, status, reason)
        return True

    async def _template_after_status(self, message_id: str, chat_id: str, text: str) -> None:
        try:
            ids = await self._send_template(chat_id, text)
        except SendFailed as exc:
            await self._report(
                message_id, "failed", f"outside WhatsApp's 24-hour window (131047); the template failed: {exc.reason}"
            )
            return
        await self._report(
            message_id,
            "failed",
            f"outside WhatsApp's 24-hour window (131047); sent again as template {self.settings.template_name}"
            f" (message {', '.join(ids)})",
        )

    def _background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, message_id: str, status: str, reason: str | None) -> None:
        try:
            recorded = await self.report_delivery(message_id, DeliveryStatus(status), reason)
        except ChannelError as exc:  # an id the host cannot take: skipped, or Meta would redeliver it forever
            log.warning("whatsapp status %s of a message not recorded: %s", status, exc)
            return
        if not recorded:
            log.debug("whatsapp status %s of %s matched no message sent on this channel", status, message_id)

    # -- out ------------------------------------------------------------------------------------------

    def render(self, markdown: str) -> str:
        """Return Markdown with WhatsApp's own markers (``*bold*``, ``_italic_``, ``~strike~``, fences)."""
        return formatting.render(markdown)

    def plain(self, text: str) -> str:
        """Return WhatsApp-formatted text without its markers."""
        return formatting.plain(text)

    async def send(self, message: OutgoingMessage) -> list[str]:
        """Send one text message (a template outside the 24-hour window, when one is set); return its id."""
        body: dict[str, Any] = {
            **_recipient(message.chat_id),
            "type": "text",
            "text": {"body": message.text, "preview_url": False},
        }
        if message.reply_to:
            body["context"] = {"message_id": message.reply_to}
        try:
            ids = await self._post(body)
        except _GraphRefusal as refusal:
            if refusal.code != WINDOW_CODE:
                raise refusal.failure from None
            if not self.settings.template_name:
                raise SendFailed(self._window_reason(message.chat_id), permanent=True) from None
            return await self._send_template(message.chat_id, message.text)
        if self.settings.template_name:
            self._recent[ids[0]] = (message.chat_id, message.text)
            while len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return ids

    async def typing(self, chat_id: str) -> None:
        """Mark the chat's last message read and show the typing indicator (best effort; users only)."""
        message_id = self._last_inbound.get(chat_id)
        if not self.settings.typing_indicator or message_id is None or self._client is None:
            return
        body = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": {"type": "text"},
        }
        try:
            await self._post(body, expect_ids=False)
        except (_GraphRefusal, SendFailed) as exc:
            log.debug("whatsapp typing indicator for %s not shown: %s", chat_id, exc)

    def _window_reason(self, chat_id: str) -> str:
        return (
            f"outside WhatsApp's 24-hour window (131047): {chat_id} has not written in the last 24 hours, so only"
            " an approved template message can reach them; set template_name in [channels.whatsapp], or wait"
            " until they write again"
        )

    async def _send_template(self, chat_id: str, text: str) -> list[str]:
        name = self.settings.template_name
        template: dict[str, Any] = {"name": name, "language": {"code": self.settings.template_language}}
        if self.settings.template_text == "parameter":
            flat = " ".join(formatting.plain(text).split())
            if len(flat) > self.settings.template_max_chars:
                raise SendFailed(
                    f"outside WhatsApp's 24-hour window (131047): the text ({len(flat)} characters) is longer than"
                    f" template {name}'s variable takes (template_max_chars = {self.settings.template_max_chars})",
                    permanent=True,
                )
            parameter: dict[str, Any] = {"type": "text", "text": flat}
            if self.settings.template_parameter_name:
                parameter["parameter_name"] = self.settings.template_parameter_name
            template["components"] = [{"type": "body", "parameters": [parameter]}]
        body = {**_recipient(chat_id), "type": "template", "template": template}
        try:
            ids = await self._post(body)
        except _GraphRefusal as refusal:
            raise SendFailed(f"template {name}: {refusal.failure.reason}", permanent=True) from None
        if self.settings.template_text == "none":
            raise SendFailed(
                f"outside WhatsApp's 24-hour window (131047): sent template {name} asking them to write back"
                f" (message {', '.join(ids)}); the text itself was not delivered",
                permanent=True,
            )
        return ids

    async def _post(self, body: dict[str, Any], *, expect_ids: bool = True) -> list[str]:
        """POST to ``/{phone_number_id}/messages``; return the message ids, raise ``_GraphRefusal``/``SendFailed``."""
        import httpx

        client = self._client
        if client is None:
            raise SendFailed("the whatsapp channel is not running")
        url = f"{self.api_base}/{self.settings.phone_number_id}/messages"
        try:
            response = await client.post(url, json=body)
        except httpx.TimeoutException:
            raise SendFailed(f"WhatsApp did not answer within {self.settings.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise SendFailed(f"cannot reach {self.api_base}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            failure = _graph_failure(response, self.settings.access_token_env)
            error = _graph_error(response)
            code = error.get("code") if isinstance(error.get("code"), int) else None
            raise _GraphRefusal(code, failure)
        if not expect_ids:
            return []
        answer = _json(response)
        messages = answer.get("messages") if isinstance(answer, dict) else None
        ids = [m["id"] for m in messages or [] if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]
        if not ids:
            raise SendFailed(f"WhatsApp answered {response.status_code} without a message id", permanent=True)
        return ids[:1]


class _GraphRefusal(Exception):
    """The Graph API answered an error: its code and what it means for the send."""

    def __init__(self, code: int | None, failure: SendFailed) -> None:
        super().__init__(failure.reason)
        self.code = code
        self.failure = failure


# -- helpers ---------------------------------------------------------------------------------------


def _recipient(chat_id: str) -> dict[str, Any]:
    if chat_id.startswith(GROUP_PREFIX):
        return {"messaging_product": "whatsapp", "recipient_type": "group", "to": chat_id[len(GROUP_PREFIX) :]}
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": chat_id}


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _graph_error(response: Any) -> dict[str, Any]:
    answer = _json(response)
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, dict) else {}


def _graph_failure(response: Any, token_env: str) -> SendFailed:
    """Return what a Graph API error answer means: retried (rate limits, Meta's trouble) or permanent."""
    status = response.status_code
    error = _graph_error(response)
    code = error.get("code") if isinstance(error.get("code"), int) else None
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    text = one_line(str(details or error.get("message") or f"HTTP {status}"))[:300]
    where = f"code {code}" if code is not None else f"HTTP {status}"
    if isinstance(error.get("error_subcode"), int):
        where += f", subcode {error['error_subcode']}"
    if isinstance(error.get("fbtrace_id"), str):
        where += f", fbtrace_id {error['fbtrace_id'][:64]}"
    if code == TOKEN_CODE or status == 401:
        return SendFailed(
            f"WhatsApp refused the access token in {token_env} (expired or revoked; {where}): create a new one"
            " (a System User token does not expire) and restart",
            permanent=True,
        )
    if code in RATE_LIMIT_CODES or status == 429:
        return SendFailed(f"WhatsApp rate limit: {text} ({where})", retry_after=retry_after)
    if code in TRANSIENT_CODES or status >= 500:
        return SendFailed(f"WhatsApp is having trouble: {text} ({where})", retry_after=retry_after)
    if code == 10 or (code is not None and 200 <= code <= 299):
        return SendFailed(
            f"the token in {token_env} lacks the whatsapp_business_messaging permission: {text} ({where})",
            permanent=True,
        )
    return SendFailed(f"WhatsApp refused the message: {text} ({where})", permanent=True)


def _values(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return every ``entry[].changes[].value`` of the ``messages`` field."""
    values: list[dict[str, Any]] = []
    for entry in _list(payload.get("entry")):
        if not isinstance(entry, dict):
            continue
        for change in _list(entry.get("changes")):
            if isinstance(change, dict) and change.get("field") == "messages" and isinstance(change.get("value"), dict):
                values.append(change["value"])
    return values


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _contact_names(contacts: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in _list(contacts):
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        wa_id = contact.get("wa_id")
        if isinstance(wa_id, str) and isinstance(name, str) and name:
            names[wa_id.removeprefix("+")] = name[:200]
    return names


def _content(kind: str, raw: Mapping[str, Any]) -> tuple[str | None, list[MediaRef], dict[str, Any]]:
    """Return the text, media and extra metadata of one message by its ``type`` (text None: nothing to answer)."""
    body = _dict(raw.get(kind))
    if kind == "text":
        text = body.get("body")
        return (text if isinstance(text, str) and text else None), [], {}
    if kind in _MEDIA_KINDS:
        media_id = body.get("id")
        if not isinstance(media_id, str) or not media_id:
            return None, [], {}
        media_kind: Literal["image", "video", "audio", "voice", "file", "sticker"] = _MEDIA_KINDS[kind]
        if kind == "audio" and body.get("voice") is True:
            media_kind = "voice"
        mime = body.get("mime_type") if isinstance(body.get("mime_type"), str) else None
        filename = body.get("filename") if isinstance(body.get("filename"), str) else None
        ref = MediaRef(
            kind=media_kind, ref=media_id[:2048], mime_type=mime and mime[:255], name=filename and filename[:1024]
        )
        caption = body.get("caption")
        label = f"[{'voice message' if media_kind == 'voice' else kind}{': ' + filename if filename else ''}]"
        return (caption if isinstance(caption, str) and caption else label), [ref], {}
    if kind == "location":
        lat, lon = body.get("latitude"), body.get("longitude")
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            return None, [], {}
        place = " ".join(str(body[k]) for k in ("name", "address") if isinstance(body.get(k), str) and body[k])
        ref = MediaRef(kind="location", ref=f"geo:{lat},{lon}", name=place[:1024] or None)
        return f"[location: {place + ' ' if place else ''}{lat}, {lon}]", [ref], {}
    if kind == "interactive":
        for reply_kind in ("button_reply", "list_reply"):
            reply = body.get(reply_kind)
            if isinstance(reply, dict) and isinstance(reply.get("title"), str) and reply["title"]:
                reply_id = reply.get("id")
                return reply["title"], [], {"reply_id": reply_id} if isinstance(reply_id, str) else {}
        flow = body.get("nfm_reply")
        if isinstance(flow, dict):
            answer = flow.get("response_json")
            return ("[form reply] " + answer if isinstance(answer, str) else "[form reply]"), [], {}
        return None, [], {}
    if kind == "button":  # a template's quick-reply button
        text = body.get("text")
        payload = body.get("payload")
        if not isinstance(text, str) or not text:
            return None, [], {}
        return text, [], {"reply_id": payload} if isinstance(payload, str) else {}
    if kind == "contacts":
        people = [c.get("name", {}).get("formatted_name") for c in _list(raw.get("contacts")) if isinstance(c, dict)]
        shown = ", ".join(p for p in people if isinstance(p, str) and p)
        return f"[contact card{': ' + shown if shown else ''}]", [], {}
    return None, [], {}


def _error_code(raw: Mapping[str, Any]) -> int | None:
    errors = raw.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    code = first.get("code") if isinstance(first, dict) else None
    return code if isinstance(code, int) else None


def _status_reason(raw: Mapping[str, Any]) -> str:
    errors = raw.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    title = first.get("title") or first.get("message")
    data = first.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    parts = [p for p in (title, details) if isinstance(p, str) and p]
    text = one_line(": ".join(dict.fromkeys(parts)) or "no reason given")[:300]
    return f"WhatsApp could not deliver it: {text}" + (f" (code {code})" if isinstance(code, int) else "")
