"""A loopback OpenAI-compatible model server, scripted per test (standard library only).

It speaks the real chat-completions protocol over real HTTP on 127.0.0.1, so gateways are tested
through their own client code (litellm with ``api_base``, httpx for OpenRouter)::

    from refactorbot.testing.model_server import ModelServer, Reply

    with ModelServer() as server:
        server.script(Reply.text("hi"), Reply.tool_call("files_write", {"path": "a.txt"}), Reply.error(429))
        ...  # point a client at server.base_url ("http://127.0.0.1:PORT/v1")
        assert server.requests[0]["model"] == "gpt-test"

Replies are served in the order scripted; when the script is empty, ``server.responder(body)``
answers, and without a responder the server echoes the last user message (``"echo: ..."``).
"""

from __future__ import annotations

import collections
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from refactorbot.testing._loopback import LoopbackHTTPServer

__all__ = ["ModelServer", "Reply"]

#: Seconds a ``Reply.timeout()`` holds the connection: longer than any client timeout in tests.
HANG_SECONDS = 30.0


class _Constructor:
    """Expose ``Reply.timeout()`` on the class while instances keep a ``timeout`` attribute."""

    def __init__(self, func: Callable[..., Reply]) -> None:
        self.func = func

    def __get__(self, obj: object, owner: type[Reply]) -> Any:
        if obj is None:
            return lambda *args, **kwargs: self.func(owner, *args, **kwargs)
        return obj.__dict__.get("timeout", 0.0)


def _tool_call_parts(call: Any) -> tuple[str | None, str, Any]:
    if isinstance(call, tuple | list):
        name, arguments = call[0], call[1] if len(call) > 1 else {}
        return (call[2] if len(call) > 2 else None), name, arguments
    if isinstance(call, Mapping):
        return call.get("id"), call["name"], call.get("arguments", {})
    return getattr(call, "id", None), call.name, getattr(call, "arguments", {})


class Reply:
    """One scripted answer: text, tool calls, an HTTP error, latency or a hang."""

    def __init__(
        self,
        content: str = "",
        tool_calls: Iterable[Any] = (),
        *,
        status: int = 200,
        error_message: str | None = None,
        delay: float = 0.0,
        timeout: float | bool = 0.0,
        usage: tuple[int, int] | Mapping[str, int] | None = None,
        cost: float | None = None,
        model: str | None = None,
        finish_reason: str | None = None,
        chunk_delay: float = 0.0,
        chunks: int = 3,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        #: Text of the answer.
        self.content = content
        #: ``(id, name, arguments)`` per call; arguments are a dict, or a raw string sent verbatim.
        self.tool_calls: list[tuple[str | None, str, Any]] = [_tool_call_parts(c) for c in tool_calls]
        #: HTTP status; anything but 200 sends an OpenAI-style error body.
        self.status = status
        self.error_message = error_message
        #: Seconds to wait before answering (latency).
        self.delay = delay
        #: Seconds to hold the connection without answering (``True``: ``HANG_SECONDS``).
        self.timeout = HANG_SECONDS if timeout is True else float(timeout or 0.0)
        #: ``(prompt_tokens, completion_tokens)``; default: estimated from lengths.
        self.usage = usage
        #: When set, ``usage.cost`` is included as OpenRouter does.
        self.cost = cost
        #: Model name to report; default: the one requested.
        self.model = model
        self.finish_reason = finish_reason
        #: Streaming: seconds between chunks, and how many pieces the content is split into.
        self.chunk_delay = chunk_delay
        self.chunks = max(1, chunks)
        #: Extra response headers.
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        defaults = vars(Reply())
        fields = {k: v for k, v in vars(self).items() if v != defaults[k]}
        return "Reply(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    @classmethod
    def text(cls, content: str, **kwargs: Any) -> Reply:
        """Return a plain text answer."""
        return cls(content, **kwargs)

    @classmethod
    def tool_call(cls, name: str, arguments: Mapping[str, Any] | str | None = None, **kwargs: Any) -> Reply:
        """Return an answer asking for one tool call (``arguments`` as a string are sent verbatim)."""
        content = kwargs.pop("content", "")
        return cls(content, [(name, {} if arguments is None else arguments, kwargs.pop("id", None))], **kwargs)

    @classmethod
    def tool_calls_of(cls, *calls: Any, **kwargs: Any) -> Reply:
        """Return an answer asking for several tool calls, each ``(name, arguments)``."""
        content = kwargs.pop("content", "")
        return cls(content, calls, **kwargs)

    @classmethod
    def error(cls, status: int = 500, message: str | None = None, **kwargs: Any) -> Reply:
        """Return an HTTP error with an OpenAI-style error body."""
        return cls(status=status, error_message=message, **kwargs)

    def _timeout(cls: type[Reply], seconds: float = HANG_SECONDS) -> Reply:  # type: ignore[misc]
        """Return a reply that holds the connection for ``seconds`` without answering."""
        return cls(timeout=seconds)

    # ``Reply.timeout()`` builds a hanging reply; ``reply.timeout`` is its seconds (0: none)
    timeout = _Constructor(_timeout)
    del _timeout

    # -- wire format --------------------------------------------------------------------------

    def resolved_finish_reason(self) -> str:
        """Return the finish reason: explicit, ``tool_calls`` when calls are present, or ``stop``."""
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def wire_tool_calls(self, ids: Iterator[int]) -> list[dict[str, Any]]:
        """Return the tool calls in OpenAI format, with ids filled in."""
        out = []
        for call_id, name, arguments in self.tool_calls:
            args = arguments if isinstance(arguments, str) else json.dumps(arguments)
            out.append(
                {
                    "id": call_id or f"call_{next(ids)}",
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
            )
        return out

    def usage_for(self, body: Mapping[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the ``usage`` object: scripted figures or a rough estimate (4 characters a token)."""
        if self.usage is None:
            prompt_chars = sum(len(json.dumps(m.get("content") or "")) for m in body.get("messages") or [])
            answer_chars = len(self.content) + sum(len(json.dumps(c["function"])) for c in calls)
            prompt, completion = max(1, prompt_chars // 4), max(1, answer_chars // 4)
        elif isinstance(self.usage, Mapping):
            prompt, completion = int(self.usage.get("prompt_tokens", 0)), int(self.usage.get("completion_tokens", 0))
        else:
            prompt, completion = int(self.usage[0]), int(self.usage[1])
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.cost is not None:
            usage["cost"] = self.cost
        return usage


Responder = Callable[[dict[str, Any]], "Reply | str"]


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
            return str(content or "")
    return ""


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class ModelServer(LoopbackHTTPServer):
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (random port), in a daemon thread.

    ``requests`` and ``headers`` record each chat-completions request body and its headers
    (names lower-cased). With ``api_key`` set, requests without ``Authorization: Bearer <key>``
    get HTTP 401.
    """

    def __init__(
        self,
        models: Iterable[str] = ("scripted-model",),
        *,
        api_key: str | None = None,
        responder: Responder | None = None,
    ) -> None:
        self.models = list(models)
        self.api_key = api_key
        self.responder: Responder | None = responder
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        super().__init__()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Return the request handler, bound to this server."""
        return type("Handler", (_Handler,), {"model_server": self})

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Return the OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- scripting ----------------------------------------------------------------------------

    def script(self, *replies: Reply | str) -> ModelServer:
        """Queue replies, served one per request in order (a string is ``Reply.text``)."""
        with self._lock:
            self._script.extend(Reply.text(r) if isinstance(r, str) else r for r in replies)
        return self

    @property
    def pending(self) -> int:
        """Return how many scripted replies are still queued."""
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        """Forget the script and every recorded request."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.headers.clear()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        if self.responder is not None:
            answer = self.responder(body)
            return Reply.text(answer) if isinstance(answer, str) else answer
        return Reply.text(f"echo: {_last_user_text(body)}")

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)


class _Handler(BaseHTTPRequestHandler):
    """Serve ``POST .../chat/completions`` and ``GET .../models``."""

    model_server: ModelServer
    protocol_version = "HTTP/1.1"
    server_version = "refactorbot-model-server/1"
    # Buffer each response and send it in one write, without Nagle's delay: otherwise headers and
    # body leave in two segments and a client's delayed ACK adds ~40 ms to every call.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read ``server.requests`` instead."""

    # -- plumbing -----------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, extra: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error_body(self, status: int, message: str, extra: Mapping[str, str] | None = None) -> None:
        kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
        kinds |= {429: "rate_limit_error"}
        kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self._send_json(
            status, {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}, extra
        )

    def _chunk(self, payload: Any) -> None:
        data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        """List the server's models."""
        if self.path.rstrip("/").endswith("/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "refactorbot"} for m in self.model_server.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error_body(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        """Answer a chat-completions request with the next reply."""
        server = self.model_server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_error_body(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._send_error_body(400, f"request body is not JSON: {exc}")
            return
        if not isinstance(body, dict):
            self._send_error_body(400, "request body must be a JSON object")
            return
        server._record(body, {k.lower(): v for k, v in self.headers.items()})
        if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
            self._send_error_body(401, "invalid or missing API key")
            return
        reply = server._next_reply(body)
        if reply.timeout:
            server._closing.wait(reply.timeout)
            self.close_connection = True
            return
        if reply.delay:
            server._closing.wait(reply.delay)
        if reply.status != 200:
            message = reply.error_message or f"scripted error {reply.status}"
            self._send_error_body(reply.status, message, reply.headers)
            return
        if body.get("stream"):
            self._stream(body, reply)
        else:
            self._complete(body, reply)

    def _complete(self, body: dict[str, Any], reply: Reply) -> None:
        calls = reply.wire_tool_calls(self.model_server._ids)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        payload = {
            "id": f"chatcmpl-{next(self.model_server._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "scripted-model",
            "choices": [{"index": 0, "message": message, "finish_reason": reply.resolved_finish_reason()}],
            "usage": reply.usage_for(body, calls),
        }
        self._send_json(200, payload, reply.headers)

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        closing = self.model_server._closing
        calls = reply.wire_tool_calls(self.model_server._ids)
        base = {
            "id": f"chatcmpl-{next(self.model_server._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "scripted-model",
        }

        def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

        try:
            self._chunk(delta({"role": "assistant", "content": ""}))
            for piece in _split(reply.content, reply.chunks):
                if reply.chunk_delay:
                    closing.wait(reply.chunk_delay)
                self._chunk(delta({"content": piece}))
            for index, call in enumerate(calls):
                head = {"index": index, "id": call["id"], "type": "function"}
                head["function"] = {"name": call["function"]["name"], "arguments": ""}
                self._chunk(delta({"tool_calls": [head]}))
                for piece in _split(call["function"]["arguments"], reply.chunks):
                    self._chunk(delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
            self._chunk(delta({}, reply.resolved_finish_reason()))
            options = body.get("stream_options") or {}
            wants_usage = isinstance(options, dict) and options.get("include_usage")
            usage_option = body.get("usage")
            if wants_usage or (isinstance(usage_option, dict) and usage_option.get("include")):
                self._chunk({**base, "choices": [], "usage": reply.usage_for(body, calls)})
            self._chunk(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client went away mid-stream
            self.close_connection = True
