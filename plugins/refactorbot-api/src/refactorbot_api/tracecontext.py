"""``TraceContext``: with tracing on, each request runs in a server span, child of its ``traceparent``.

A valid W3C ``traceparent`` header makes the caller's span the parent, so an operation or a chat
turn asked for over HTTP joins the caller's trace; an invalid one is ignored (a new trace), as the
W3C specification requires. With no tracer installed the middleware passes requests straight on.
"""

from __future__ import annotations

from typing import Any

from refactorbot import tracing

from refactorbot_api.auth import PUBLIC_PATHS, SCRAPE_PATH

#: Paths polled by monitors: no span (they would fill the store with nothing to follow).
UNTRACED = PUBLIC_PATHS | {SCRAPE_PATH}


class TraceContext:
    """ASGI middleware opening the request's ``<METHOD> <path>`` server span."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the request inside its span (when tracing is on)."""
        if scope["type"] != "http" or tracing.tracer() is None or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
        parent = header.decode("latin-1") if header is not None else None
        if tracing.parse_traceparent(parent) is None:
            parent = None
        method = scope["method"]
        path = scope["path"][:200]
        attributes: dict[str, tracing.AttributeValue] = {"http.request.method": method, "url.path": path}
        status: list[int] = []

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        with tracing.span(f"{method} {path}", kind="server", attributes=attributes, parent=parent) as span:
            await self.app(scope, receive, sending)
            if status:
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set_error(str(status[0]))
