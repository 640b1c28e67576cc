"""The testing kit's loopback WhatsApp Cloud API, called over HTTP as a client does: the Graph error
shape, the 24-hour window (refused at once or reported ``failed``), templates, read marks, and the
signed status callbacks it POSTs to a webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from refactorbot.testing._http import send
from refactorbot.testing.whatsapp import WhatsAppServer

TOKEN, SECRET = "wa-token", "wa-app-secret"


def graph(wa: WhatsAppServer, method: str, path: str, body: Any = None, token: str = TOKEN) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    status, answer, _ = send(
        f"{wa.api_base}{path}",
        method=method,
        body=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return status, json.loads(answer)


def text(to: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}, **extra}


class Receiver:
    """A webhook endpoint on loopback that keeps each POST's body and whether its signature held."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, Any], bool]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(expected, self.headers.get("X-Hub-Signature-256", ""))
                outer.posts.append((json.loads(body), valid))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/whatsapp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_phone_number_tokens_and_request_errors() -> None:
    with WhatsAppServer(access_token=TOKEN, app_secret=SECRET) as wa:
        status, number = graph(wa, "GET", f"/{wa.phone_number_id}")
        assert status == 200 and number["display_phone_number"] == wa.display_phone_number
        status, refused = graph(wa, "GET", f"/{wa.phone_number_id}", token="other")
        assert status == 401 and refused["error"]["code"] == 190
        assert (
            graph(wa, "GET", "/999")[1]["error"]["message"]
            == "Unsupported GET request. Object with ID '999' does not exist"
        )
        assert (
            graph(wa, "GET", f"/{wa.phone_number_id}/media")[1]["error"]["message"] == "Unknown path components: /media"
        )
        messages = f"/{wa.phone_number_id}/messages"
        for body, message in [
            (b"not json", "(#100) The parameter messaging_product is required."),
            ({"to": "1"}, "(#100) The parameter messaging_product is required."),
            ({"messaging_product": "whatsapp", "status": "read"}, "(#100) The parameter message_id is required."),
            ({"messaging_product": "whatsapp", "type": "text"}, "(#100) The parameter to is required."),
            (text("1", ""), "(#100) The parameter text['body'] is required."),
            (text("1", "x" * 4097), "(#100) Param text['body'] must be at most 4096 characters long."),
            (
                {"messaging_product": "whatsapp", "to": "1", "type": "image"},
                "(#100) Param type must be one of text, template, not 'image'",
            ),
            (
                text("1", "x", context={"message_id": 5}),
                "(#100) Param context['message_id'] must be a valid message id",
            ),
        ]:
            status, answer = graph(wa, "POST", messages, body)
            assert (status, answer["error"]["message"]) == (400, message), body
        with pytest.raises(ValueError, match="window_errors is 'sync' or 'status'"):
            WhatsAppServer(window_errors="later")


def test_the_window_templates_read_marks_and_signed_status_callbacks(receiver: Receiver) -> None:
    templates = {"follow_up": 1}
    with WhatsAppServer(access_token=TOKEN, app_secret=SECRET, templates=templates, webhook_url=receiver.url) as wa:
        messages = f"/{wa.phone_number_id}/messages"
        closed = graph(wa, "POST", messages, text("16505551234", "hello?"))
        assert closed[0] == 400 and closed[1]["error"]["code"] == 131047

        body, headers = wa.inbound("16505551234", "hi there")  # the user writes: the window opens
        inbound = json.loads(body)
        change = inbound["entry"][0]["changes"][0]["value"]
        assert change["messages"][0]["text"]["body"] == "hi there" and "X-Hub-Signature-256" in headers
        status, sent = graph(wa, "POST", messages, text("16505551234", "hello!", context={"message_id": "wamid.in"}))
        assert status == 200 and sent["contacts"] == [{"input": "16505551234", "wa_id": "16505551234"}]
        wamid = sent["messages"][0]["id"]

        for template, code in [
            ({}, 100),
            ({"name": "follow_up"}, 100),
            ({"name": "missing", "language": {"code": "en"}}, 132001),
            ({"name": "follow_up", "language": {"code": "en"}}, 132000),
            (
                {
                    "name": "follow_up",
                    "language": {"code": "en"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "a\tb"}]}],
                },
                132018,
            ),
        ]:
            answer = graph(
                wa,
                "POST",
                messages,
                {"messaging_product": "whatsapp", "to": "1", "type": "template", "template": template},
            )
            assert answer[1]["error"]["code"] == code, template
        good = {
            "name": "follow_up",
            "language": {"code": "en"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}],
        }
        wa.fail_next_delivery(131026, "Message undeliverable")
        assert (
            graph(
                wa,
                "POST",
                messages,
                {"messaging_product": "whatsapp", "to": "447700900123", "type": "template", "template": good},
            )[0]
            == 200
        )
        assert graph(
            wa,
            "POST",
            messages,
            {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.in",
                "typing_indicator": {"type": "text"},
            },
        ) == (200, {"success": True})
        assert wa.read_marks == [{"message_id": "wamid.in", "typing": True}]
        assert [m["text"] for m in wa.wait_for_messages(2)] == ["hello!", None]

        assert wa.wait_for_deliveries(3) == [200, 200, 200]
        statuses = [(p["entry"][0]["changes"][0]["value"]["statuses"][0], valid) for p, valid in receiver.posts]
        assert all(valid for _, valid in statuses)
        assert [(s["id"] == wamid, s["status"]) for s, _ in statuses] == [
            (True, "sent"),
            (True, "delivered"),
            (False, "failed"),
        ]
        assert statuses[2][0]["errors"][0]["code"] == 131026


def test_status_mode_accepts_then_reports_the_closed_window_failed() -> None:
    with WhatsAppServer(access_token=TOKEN, app_secret=SECRET, window_errors="status") as wa:
        status, sent = graph(wa, "POST", f"/{wa.phone_number_id}/messages", text("16505550000", "late reply"))
        assert status == 200
        [(body, _)] = wa.deliveries
        [reported] = json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"]
        assert (reported["id"], reported["status"], reported["errors"][0]["code"]) == (
            sent["messages"][0]["id"],
            "failed",
            131047,
        )
        group = {**text("120363000000000000", "to the group"), "recipient_type": "group"}
        assert graph(wa, "POST", f"/{wa.phone_number_id}/messages", group)[0] == 200  # groups have no window
        assert wa.texts() == ["late reply", "to the group"]
