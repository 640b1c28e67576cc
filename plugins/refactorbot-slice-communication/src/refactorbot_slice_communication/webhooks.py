"""``/hooks/<channel>`` on the control API: the raw request, size-capped, handed to the running adapter.

No bearer token: each adapter verifies its platform's signature over the raw body itself, in
constant time, before parsing anything. FastAPI is imported here, and only the API loads this.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route's annotations, and
# ``Request`` is imported inside ``add_webhook_route`` (FastAPI loads only with the API).
from typing import Any

from refactorbot import CHANNEL_NAME, WebhookRequest


class BodyTooLarge(Exception):
    """The request body is larger than the channel accepts."""


def add_webhook_route(router: Any) -> None:
    """Add ``GET``/``POST /hooks/{channel}`` to ``router.webhooks`` (the API's unauthenticated router)."""
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse, Response

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
        answer = await adapter.handle_webhook(
            WebhookRequest(
                method=request.method,
                path=request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                query=dict(request.query_params),
                body=body,
                client=request.client.host if request.client else None,
            )
        )
        return Response(
            content=answer.body, status_code=answer.status, media_type=answer.content_type, headers=dict(answer.headers)
        )

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
