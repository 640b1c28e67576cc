"""A loopback WhatsApp Cloud API (standard library only), built from Meta's documented payloads.

``WhatsAppServer`` is the Graph API a WhatsApp channel talks to, on 127.0.0.1:

- ``GET /v<N>/<phone_number_id>``: the business phone number (``display_phone_number``,
  ``verified_name``) — what a client reads to check its token;
- ``POST /v<N>/<phone_number_id>/messages``: ``type=text`` (body 1 to 4,096 characters,
  ``context.message_id`` for a reply), ``type=template`` (a name from ``templates``), and
  ``status=read`` (with or without ``typing_indicator``). Answers
  ``{"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}``; errors in the Graph shape
  ``{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}``.

Every call needs ``Authorization: Bearer <access_token>`` (else 401, code 190). The 24-hour
customer-service window is modelled: free-form text reaches a user only within 24 hours of their
last message (``inbound`` or ``open_window``); otherwise WhatsApp answers 131047 — at once
(``window_errors="sync"``), or, as the Cloud API does, by accepting the message and then reporting
it ``failed`` in a status callback (``window_errors="status"``). Groups (``recipient_type=group``)
have no window.

The server also plays Meta's side of the webhooks: ``message_update``/``status_update`` build the
documented ``whatsapp_business_account`` payloads, ``signed`` signs a body with the app secret
(``X-Hub-Signature-256``), and with ``webhook_url`` set it POSTs status callbacks (``sent``, then
``delivered``; ``failed`` with ``errors[]`` when scripted or outside the window) for every message
it accepted, in order, from a worker thread. ``deliveries`` keeps each signed status delivery it
made (with or without a URL), so a test can feed them to an adapter itself::

    with WhatsAppServer(access_token="t", app_secret="s") as wa:
        config = {"api_base": wa.api_base, "phone_number_id": wa.phone_number_id}
        body, headers = wa.inbound("16505551234", "hello")   # opens the window too
        ...  # POST body with headers to /hooks/whatsapp
        wa.wait_for_messages(1)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from refactorbot.testing.platforms import PlatformRequest, PlatformResponse, PlatformServer

__all__ = ["WhatsAppServer", "graph_error", "message_update", "sign", "status_update"]

WINDOW = 24 * 3600
TEXT_LIMIT = 4096


def sign(app_secret: str, body: bytes) -> dict[str, str]:
    """Return the headers Meta sends with a webhook ``body``: JSON and ``X-Hub-Signature-256``."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def new_wamid() -> str:
    """Return a fresh WhatsApp message id (``wamid.`` + base64, as the API gives them)."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + os.urandom(18)).decode()


def graph_error(
    code: int,
    message: str,
    *,
    status: int = 400,
    subcode: int | None = None,
    details: str | None = None,
    error_type: str = "OAuthException",
    headers: dict[str, str] | None = None,
) -> PlatformResponse:
    """Return a Graph API error answer (``{"error": {...}}``), for ``script`` or a route."""
    error: dict[str, Any] = {
        "message": message,
        "type": error_type,
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or message},
        "fbtrace_id": "A" + base64.b32encode(os.urandom(10)).decode().rstrip("="),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return PlatformResponse.json({"error": error}, status, headers)


def _envelope(phone_number_id: str, display: str, waba_id: str, value: dict[str, Any]) -> dict[str, Any]:
    metadata = {"display_phone_number": display, "phone_number_id": phone_number_id}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "changes": [
                    {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}, "field": "messages"}
                ],
            }
        ],
    }


def message_update(
    *,
    phone_number_id: str,
    display_phone_number: str,
    sender: str,
    text: str | None = None,
    message_id: str | None = None,
    name: str = "Sheena Nelson",
    group_id: str | None = None,
    reply_to: str | None = None,
    waba_id: str = "102290129340398",
    timestamp: int | None = None,
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the documented ``messages`` webhook payload of one user message.

    ``text`` makes a ``type=text`` message; ``content`` gives another type instead
    (``{"type": "image", "image": {"id": ..., "mime_type": ...}}``).
    """
    message: dict[str, Any] = {
        "from": sender,
        "id": message_id or new_wamid(),
        "timestamp": str(int(time.time()) if timestamp is None else timestamp),
    }
    if group_id is not None:
        message["group_id"] = group_id
    if reply_to is not None:
        message["context"] = {"from": display_phone_number, "id": reply_to}
    if content is not None:
        message.update(content)
    else:
        message.update({"type": "text", "text": {"body": text or ""}})
    value = {"contacts": [{"profile": {"name": name}, "wa_id": sender}], "messages": [message]}
    return _envelope(phone_number_id, display_phone_number, waba_id, value)


def status_update(
    *,
    phone_number_id: str,
    display_phone_number: str,
    message_id: str,
    status: str,
    recipient: str,
    errors: list[dict[str, Any]] | None = None,
    waba_id: str = "102290129340398",
) -> dict[str, Any]:
    """Return the documented ``statuses`` webhook payload of one message (``errors`` for ``failed``)."""
    item: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
    }
    if status in ("sent", "delivered"):
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "service"}
    if errors:
        item["errors"] = errors
    return _envelope(phone_number_id, display_phone_number, waba_id, {"statuses": [item]})


def status_error(code: int, title: str, details: str | None = None) -> dict[str, Any]:
    """Return one ``errors[]`` item of a ``failed`` status."""
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or title},
        "href": "/documentation/business-messaging/whatsapp/support/error-codes",
    }


class WhatsAppServer(PlatformServer):
    """The WhatsApp Cloud API on loopback (see the module's docstring)."""

    def __init__(
        self,
        *,
        access_token: str = "loopback-whatsapp-token",  # noqa: S107  the loopback server's fake credential
        app_secret: str = "loopback-app-secret",  # noqa: S107  the loopback server's fake credential
        phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550783881",
        version: str = "v24.0",
        window_errors: str = "sync",
        templates: dict[str, int] | None = None,
        webhook_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.version = version
        if window_errors not in ("sync", "status"):
            raise ValueError("window_errors is 'sync' or 'status'")
        self.window_errors = window_errors
        #: Approved templates: name → how many body variables it has.
        self.templates: dict[str, int] = dict(templates or {})
        #: Where status callbacks are POSTed (``None``: only kept in ``deliveries``).
        self.webhook_url = webhook_url
        self.clock = clock
        #: Every message accepted, in order: ``{"id", "to", "recipient_type", "type", "text", "template", "context"}``.
        self.messages: list[dict[str, Any]] = []
        #: ``status=read`` calls: ``{"message_id", "typing": bool}``.
        self.read_marks: list[dict[str, Any]] = []
        #: Signed status deliveries made: ``(body, headers)``, and what the webhook answered (status or error).
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        self.delivery_answers: list[int | str] = []
        self._windows: dict[str, float] = {}
        self._fail_next: list[dict[str, Any]] = []
        self._outbox: queue.Queue[tuple[bytes, dict[str, str]] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    # -- where a client points ----------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """Return the Graph API base URL with its version: ``http://127.0.0.1:PORT/v24.0``."""
        return f"{self.url}/{self.version}"

    # -- the window ---------------------------------------------------------------------------------------

    def open_window(self, wa_id: str, at: float | None = None) -> None:
        """Record that ``wa_id`` wrote at ``at`` (default: now): free-form text reaches them for 24 hours."""
        with self._changed:
            self._windows[wa_id] = self.clock() if at is None else at

    def window_open(self, wa_id: str) -> bool:
        """Return whether free-form text reaches ``wa_id`` now."""
        with self._changed:
            since = self._windows.get(wa_id)
        return since is not None and self.clock() - since < WINDOW

    def fail_next_delivery(self, code: int, title: str, details: str | None = None) -> None:
        """Make the next accepted message's status callback ``failed`` with this error (instead of ``delivered``)."""
        with self._changed:
            self._fail_next.append(status_error(code, title, details))

    # -- Meta's side of the webhooks -------------------------------------------------------------------

    def signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Return ``payload`` serialized as Meta sends it, with its signature headers."""
        body = json.dumps(payload).encode()
        return body, sign(self.app_secret, body)

    def inbound(self, sender: str, text: str | None = None, **fields: Any) -> tuple[bytes, dict[str, str]]:
        """Return a signed ``messages`` delivery from ``sender`` (see ``message_update``); open their window."""
        if fields.get("group_id") is None:
            self.open_window(sender)
        payload = message_update(
            phone_number_id=self.phone_number_id,
            display_phone_number=self.display_phone_number,
            sender=sender,
            text=text,
            **fields,
        )
        return self.signed(payload)

    def status(
        self, message_id: str, status: str, recipient: str, errors: list[dict[str, Any]] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Return a signed ``statuses`` delivery for one message."""
        payload = status_update(
            phone_number_id=self.phone_number_id,
            display_phone_number=self.display_phone_number,
            message_id=message_id,
            status=status,
            recipient=recipient,
            errors=errors,
        )
        return self.signed(payload)

    @staticmethod
    def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 30.0) -> tuple[int, bytes]:
        """POST a delivery to ``url`` as Meta would; return the answer's status and body."""
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  the test's own loopback URL
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310  the test's own loopback URL
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as refused:
            return int(refused.code), refused.read()

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until ``count`` messages were accepted; return them all."""
        self.wait_until(lambda: len(self.messages) >= count, timeout)
        with self._changed:
            return list(self.messages)

    def wait_for_deliveries(self, count: int, timeout: float = 30.0) -> list[int | str]:
        """Block until ``count`` status callbacks were POSTed to ``webhook_url``; return their answers."""
        self.wait_until(lambda: len(self.delivery_answers) >= count, timeout)
        with self._changed:
            return list(self.delivery_answers)

    def texts(self, chat: str | None = None) -> list[str]:
        """Return the text of each accepted text message (to one user or group id), in order."""
        with self._changed:
            return [m["text"] for m in self.messages if m["type"] == "text" and (chat is None or m["to"] == chat)]

    def stop(self) -> None:
        """Stop serving and the status worker."""
        super().stop()
        worker, self._worker = self._worker, None
        if worker is not None:
            self._outbox.put(None)
            worker.join(timeout=10)

    # -- the Graph API -------------------------------------------------------------------------------------

    def handle(self, request: PlatformRequest) -> PlatformResponse:
        """Answer one Graph API call."""
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return graph_error(190, "Invalid OAuth access token - Cannot parse access token", status=401)
        parts = [p for p in request.path.split("/") if p]
        if len(parts) < 2 or not parts[0].startswith("v") or parts[1] != self.phone_number_id:
            return graph_error(
                100, f"Unsupported {request.method} request. Object with ID '{'/'.join(parts[1:2])}' does not exist"
            )
        if len(parts) == 2 and request.method == "GET":
            return PlatformResponse.json(
                {
                    "verified_name": "Loopback Business",
                    "display_phone_number": self.display_phone_number,
                    "id": self.phone_number_id,
                    "quality_rating": "GREEN",
                }
            )
        if len(parts) == 3 and parts[2] == "messages" and request.method == "POST":
            return self._messages(request)
        return graph_error(100, f"Unknown path components: /{'/'.join(parts[2:])}")

    def _messages(self, request: PlatformRequest) -> PlatformResponse:
        try:
            body = request.json()
        except ValueError:
            return graph_error(100, "(#100) The parameter messaging_product is required.")
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return graph_error(100, "(#100) The parameter messaging_product is required.")
        if body.get("status") == "read":
            message_id = body.get("message_id")
            if not isinstance(message_id, str) or not message_id:
                return graph_error(100, "(#100) The parameter message_id is required.")
            with self._changed:
                self.read_marks.append({"message_id": message_id, "typing": "typing_indicator" in body})
            return PlatformResponse.json({"success": True})
        to = body.get("to")
        if not isinstance(to, str) or not to:
            return graph_error(100, "(#100) The parameter to is required.")
        group = body.get("recipient_type") == "group"
        kind = body.get("type")
        record: dict[str, Any] = {"to": to, "recipient_type": "group" if group else "individual", "type": kind}
        if kind == "text":
            text = body.get("text", {}).get("body") if isinstance(body.get("text"), dict) else None
            if not isinstance(text, str) or not text:
                return graph_error(100, "(#100) The parameter text['body'] is required.")
            if len(text) > TEXT_LIMIT:
                return graph_error(100, f"(#100) Param text['body'] must be at most {TEXT_LIMIT} characters long.")
            record["text"] = text
        elif kind == "template":
            problem = self._template_problem(body.get("template"))
            if problem is not None:
                return problem
            record["template"] = body["template"]
            record["text"] = None
        else:
            return graph_error(100, f"(#100) Param type must be one of text, template, not {kind!r}")
        context = body.get("context")
        if context is not None:
            if not isinstance(context, dict) or not isinstance(context.get("message_id"), str):
                return graph_error(100, "(#100) Param context['message_id'] must be a valid message id")
            record["context"] = context["message_id"]
        closed = kind == "text" and not group and not self.window_open(to)
        if closed and self.window_errors == "sync":
            return graph_error(
                131047,
                "(#131047) Re-engagement message",
                details="Message failed to send because more than 24 hours have passed since the customer last"
                " replied to this number.",
            )
        record["id"] = new_wamid()
        with self._changed:
            self.messages.append(record)
            failure = [status_error(131047, "Re-engagement message")] if closed else None
            if failure is None and self._fail_next:
                failure = [self._fail_next.pop(0)]
        self._statuses(record["id"], to, failure)
        return PlatformResponse.json(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": record["id"], "message_status": "accepted"}],
            }
        )

    def _template_problem(self, template: Any) -> PlatformResponse | None:
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            return graph_error(100, "(#100) The parameter template['name'] is required.")
        language = template.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return graph_error(100, "(#100) The parameter template['language']['code'] is required.")
        wanted = self.templates.get(template["name"])
        if wanted is None:
            return graph_error(132001, "(#132001) Template name does not exist in the translation")
        given = 0
        for component in template.get("components") or []:
            if isinstance(component, dict) and component.get("type") == "body":
                for parameter in component.get("parameters") or []:
                    text = parameter.get("text") if isinstance(parameter, dict) else None
                    if not isinstance(text, str) or "\n" in text or "\t" in text or "     " in text:
                        return graph_error(132018, "(#132018) There was an issue with the parameters in your template.")
                    given += 1
        if given != wanted:
            return graph_error(
                132000, f"(#132000) Number of parameters does not match the expected number of params ({wanted})"
            )
        return None

    def _statuses(self, message_id: str, recipient: str, errors: list[dict[str, Any]] | None) -> None:
        sequence = [("failed", errors)] if errors else [("sent", None), ("delivered", None)]
        for status, errs in sequence:
            delivery = self.status(message_id, status, recipient, errs)
            with self._changed:
                self.deliveries.append(delivery)
            if self.webhook_url is not None:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._deliver_loop, daemon=True, name="whatsapp-statuses")
                    self._worker.start()
                self._outbox.put(delivery)

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            url = self.webhook_url
            answer: int | str
            try:
                answer = self.post(url, *item)[0] if url else "no webhook_url"
            except OSError as exc:
                answer = f"{type(exc).__name__}: {exc}"
            with self._changed:
                self.delivery_answers.append(answer)
                self._changed.notify_all()
