"""Loopback chat-platform servers for channel tests (standard library only).

Each server speaks one platform's real HTTP protocol on 127.0.0.1, built from the protocol's
documentation rather than from the adapter's code, so an adapter is tested through its own client
against an independent peer — the way ``ModelServer`` serves gateways. ``PlatformServer`` is the
base: it records every request, can be scripted to fail (``script(PlatformResponse.json(...,
status=429, headers={"Retry-After": "2"}))``) and lets a test wait on what arrived::

    with WebhookReceiver(secret="s3cret") as receiver:
        ...  # point the webhook channel's callback_url at receiver.url
        (message,) = receiver.wait_for_messages(1)
        assert message["chat_id"] == "room-1"

A server for another platform subclasses ``PlatformServer`` and implements ``handle(request)``.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from refactorbot.testing._loopback import LoopbackHTTPServer

__all__ = ["PlatformRequest", "PlatformResponse", "PlatformServer", "WebhookReceiver", "sign_webhook"]


@dataclasses.dataclass(frozen=True)
class PlatformRequest:
    """One request the platform server received: ``headers`` with lower-case names, the raw ``body``.

    ``at`` is ``time.monotonic()`` when it arrived (to check that a client waited as told).
    """

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    at: float = dataclasses.field(default_factory=time.monotonic)

    def json(self) -> Any:
        """Return the body decoded as JSON."""
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True)
class PlatformResponse:
    """What the platform server answers."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Seconds to wait before answering.
    delay: float = 0.0

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None, delay: float = 0.0
    ) -> PlatformResponse:
        """Return a JSON answer."""
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}, delay)

    @classmethod
    def error(cls, status: int, message: str = "", headers: Mapping[str, str] | None = None) -> PlatformResponse:
        """Return ``{"error": message}`` with ``status`` (429 with ``headers={"Retry-After": "2"}``, say)."""
        return cls.json({"error": message or f"scripted error {status}"}, status, headers)


class PlatformServer(LoopbackHTTPServer):
    """A loopback HTTP server on 127.0.0.1 (random port) in a daemon thread; subclass and implement ``handle``.

    ``requests`` records every request in arrival order (scripted ones included). Scripted
    responses are served first, one per request, before ``handle`` sees anything.
    """

    def __init__(self) -> None:
        self.requests: list[PlatformRequest] = []
        self._script: collections.deque[PlatformResponse] = collections.deque()
        self._changed = threading.Condition()
        super().__init__()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Return the request handler, bound to this server."""
        return type("Handler", (_Handler,), {"platform": self})

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting and waiting --------------------------------------------------------------------

    def script(self, *responses: PlatformResponse) -> PlatformServer:
        """Queue responses served one per request, in order, before ``handle``."""
        with self._changed:
            self._script.extend(responses)
        return self

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate()`` holds (checked whenever a request arrives); AssertionError at ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}: condition not met within {timeout:g}s")
                self._changed.wait(left)

    def notify(self) -> None:
        """Wake ``wait_until`` callers (a subclass calls it after recording something)."""
        with self._changed:
            self._changed.notify_all()

    def handle(self, request: PlatformRequest) -> PlatformResponse:
        """Answer a request (override); the base knows no route."""
        return PlatformResponse.error(404, f"no route {request.method} {request.path}")

    def _dispatch(self, request: PlatformRequest) -> PlatformResponse:
        with self._changed:
            self.requests.append(request)
            scripted = self._script.popleft() if self._script else None
            self._changed.notify_all()
        response = scripted if scripted is not None else self.handle(request)
        self.notify()
        return response


class _Handler(BaseHTTPRequestHandler):
    platform: PlatformServer
    protocol_version = "HTTP/1.1"
    server_version = "refactorbot-platform/1"
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read ``server.requests``."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = PlatformRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.platform._dispatch(request)
        if response.delay:
            self.platform._closing.wait(response.delay)
        self.send_response(response.status)
        headers = dict(response.headers)
        headers.setdefault("Content-Type", "application/octet-stream")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# -- refactorbot's generic webhook protocol ----------------------------------------------------------


def _signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Return the headers of a request signed as the webhook channel's protocol says.

    ``X-Refactorbot-Timestamp`` is Unix seconds; ``X-Refactorbot-Signature`` is
    ``sha256=`` + hex HMAC-SHA256 with the shared secret over ``<timestamp>.`` + the raw body.
    """
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Refactorbot-Timestamp": stamp,
        "X-Refactorbot-Signature": "sha256=" + _signature(secret, stamp, body),
    }


class WebhookReceiver(PlatformServer):
    """The far end of the webhook channel: receives its signed reply POSTs (its ``callback_url``).

    Checks each request as a careful receiver would — signature over the raw body, timestamp
    within ``tolerance`` seconds — and answers 401 otherwise. ``messages`` holds the JSON bodies it
    accepted; ``rejected`` the requests it refused and why.
    """

    def __init__(self, secret: str, *, tolerance: float = 300.0) -> None:
        super().__init__()
        self.secret = secret
        self.tolerance = tolerance
        self.messages: list[dict[str, Any]] = []
        self.rejected: list[tuple[str, PlatformRequest]] = []

    def handle(self, request: PlatformRequest) -> PlatformResponse:
        """Verify and record one reply."""
        if request.method != "POST":
            return PlatformResponse.error(405, "POST only")
        problem = self._problem(request)
        if problem is not None:
            self.rejected.append((problem, request))
            return PlatformResponse.error(401, problem)
        try:
            message = request.json()
        except ValueError:
            self.rejected.append(("body is not JSON", request))
            return PlatformResponse.error(400, "body is not JSON")
        with self._changed:
            self.messages.append(message)
            number = len(self.messages)
        return PlatformResponse.json({"id": f"received-{number}"})

    def _problem(self, request: PlatformRequest) -> str | None:
        stamp = request.headers.get("x-refactorbot-timestamp")
        given = request.headers.get("x-refactorbot-signature", "")
        if not stamp or not stamp.isdigit():
            return "missing or malformed X-Refactorbot-Timestamp"
        if abs(time.time() - int(stamp)) > self.tolerance:
            return "timestamp outside the tolerance"
        expected = "sha256=" + _signature(self.secret, stamp, request.body)
        if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")):
            return "signature does not match"
        return None

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until ``count`` replies arrived; return them all."""
        self.wait_until(lambda: len(self.messages) >= count, timeout)
        with self._changed:
            return list(self.messages)

    def texts(self, chat_id: str | None = None) -> list[str]:
        """Return the text of each accepted reply (of one chat), in arrival order."""
        with self._changed:
            return [m.get("text", "") for m in self.messages if chat_id is None or m.get("chat_id") == chat_id]
