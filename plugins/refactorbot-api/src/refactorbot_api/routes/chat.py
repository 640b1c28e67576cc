"""Chat with the host through ``MasterChat``: ``/chat`` answers at once, ``/chat/stream`` as NDJSON."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse
from refactorbot import IncomingMessage, OutgoingMessage

from refactorbot_api.routes.responses import R400, R422, R500, R503
from refactorbot_api.schemas import ChatRequest

log = logging.getLogger("refactorbot.api")


def _incoming(message: ChatRequest) -> IncomingMessage:
    return IncomingMessage(
        channel="api",
        chat_id=message.chat_id,
        sender_id=message.sender_id,
        sender_name=message.sender_name,
        text=message.text,
    )


def _log_failure(path: str, message: ChatRequest, reply: OutgoingMessage | None) -> None:
    """Log a turn the agent could not answer (the reply says so; the server's log says why)."""
    if reply is None or reply.metadata.get("ok", True):
        return
    why = reply.metadata.get("error") or "; ".join(reply.metadata.get("degraded") or []) or "a limit was hit"
    log.warning("POST %s: the turn of chat %r failed: %s", path, message.chat_id, why)


def router(host: Any) -> APIRouter:
    """Return the routes of ``/chat`` and ``/chat/stream``."""
    api = APIRouter()

    def master_chat() -> Any:
        try:
            from refactorbot import MasterChat
        except ImportError:
            raise HTTPException(503, "chat is unavailable: this refactorbot-core has no MasterChat") from None
        if not host.has_slice("agent"):
            raise HTTPException(
                503, "chat is unavailable: the agent slice is not running (install refactorbot-slice-agent)"
            )
        return MasterChat(host)

    @api.post("/chat", response_model=OutgoingMessage, tags=["chat"], responses=R400 | R422 | R500 | R503)
    async def chat(message: ChatRequest) -> OutgoingMessage:
        """Send a message through ``MasterChat`` (session, memory, agent) and return the reply."""
        reply: OutgoingMessage = await master_chat().process_message(_incoming(message))
        _log_failure("/chat", message, reply)
        return reply

    @api.post(
        "/chat/stream",
        tags=["chat"],
        responses=R400
        | R422
        | R500
        | R503
        | {
            200: {
                "description": 'One JSON object a line: {"delta": text} as the answer arrives, then {"reply": ...}',
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            }
        },
        response_class=StreamingResponse,
    )
    async def chat_stream(message: ChatRequest) -> StreamingResponse:
        """Like ``/chat``, streamed as NDJSON: ``{"delta": text}`` lines as the answer arrives, then ``{"reply": ...}``."""
        chatter = master_chat()

        async def lines() -> AsyncIterator[bytes]:
            async for delta in chatter.stream_message(_incoming(message)):
                yield (json.dumps({"delta": delta}) + "\n").encode()
            reply = chatter.last_reply
            _log_failure("/chat/stream", message, reply)
            yield (json.dumps({"reply": reply.model_dump(mode="json") if reply else None}) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return api
