"""``/hooks/<channel>`` on the control API: the raw request, size-capped, handed to the running adapter.

No bearer token: each adapter verifies its platform's signature over the raw body itself, in
constant time, before parsing anything. FastAPI is imported here, and only the API loads this.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route's annotations, and
# ``Request`` is imported inside ``add_webhook_route`` (FastAPI loads only with the API).
from collections.abc import Mapping
from typing import Any

from refactorbot import CHANNEL_NAME, WebhookRequest


class BodyTooLarge(Exception):
    """The request body is larger than the channel accepts."""


def webhook_request(scope: Mapping[str, Any], body: bytes) -> WebhookRequest:
    """Return the ``WebhookRequest`` of an ASGI HTTP request (read from its scope: no URL or header objects).

    Header names lower-case, values as latin-1 (a repeated header: its last value), the query
    parsed keeping blank values (a repeated parameter: its last value) — what Starlette's
    ``request.headers`` and ``request.query_params`` give.
    """
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    raw_query: bytes = scope.get("query_string", b"")
    query: dict[str, str] = {}
    if raw_query:
        from urllib.parse import parse_qsl

        query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True))
    client = scope.get("client")
    return WebhookRequest(
        method=scope["method"],
        path=scope["path"],
        headers=headers,
        query=query,
        body=body,
        client=client[0] if client else None,
    )


def _answer_class() -> Any:
    """Return the answer's class: a Starlette ``Response`` whose headers are built once, directly."""
    from starlette.responses import Response

    class Answer(Response):
        def __init__(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> None:
            self.status_code = status
            self.background = None
            self.body = body
            self.media_type = content_type
            raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
            names = {name for name, _ in raw}
            if b"content-length" not in names and not (status < 200 or status in (204, 304)):
                raw.append((b"content-length", str(len(body)).encode("latin-1")))
            if b"content-type" not in names:
                if content_type.startswith("text/") and "charset=" not in content_type.lower():
                    content_type += "; charset=utf-8"  # as Starlette does
                raw.append((b"content-type", content_type.encode("latin-1")))
            self.raw_headers = raw

    return Answer


def add_webhook_route(router: Any) -> None:
    """Add ``GET``/``POST /hooks/{channel}`` to ``router.webhooks`` (the API's unauthenticated router)."""
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse, Response

    _Answer = _answer_class()

    webhooks: APIRouter | None = getattr(router, "webhooks", None)
    if webhooks is None:  # an API without webhook ingress
        return

    async def read_body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge
        return bytes(body)

    async def channel_webhook(channel: str, request: Request) -> Response:
        host = request.app.state.host
        communication = host.instance("communication")
        if communication is None:
            return JSONResponse({"detail": "the communication slice is not running"}, status_code=503)
        adapter = communication.webhook_adapter(channel) if CHANNEL_NAME.match(channel) else None
        if adapter is None:
            return JSONResponse({"detail": f"no running channel {channel!r} takes webhooks here"}, status_code=404)
        try:
            body = await read_body(request, adapter.max_body)
        except BodyTooLarge:
            return JSONResponse({"detail": f"body larger than {adapter.max_body} bytes"}, status_code=413)
        answer = await adapter.handle_webhook(webhook_request(request.scope, body))
        response: Response = _Answer(answer.status, answer.body, answer.content_type, answer.headers)
        return response

    responses: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing signature"},
        403: {"description": "Forged or stale signature"},
        404: {"description": "No running channel of that name takes webhooks"},
        413: {"description": "Body larger than the channel accepts"},
    }
    summary = "A chat platform's webhook (signature checked by the channel, no token)"
    for method in ("GET", "POST"):  # one route each, so each has its own operation id
        webhooks.add_api_route(
            "/{channel}",
            channel_webhook,
            methods=[method],
            tags=["channels"],
            summary=summary,
            responses=responses,
            operation_id=f"channel_webhook_{method.lower()}",
        )
