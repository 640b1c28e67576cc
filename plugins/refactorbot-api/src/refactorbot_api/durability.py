"""Answer only after the rows a request caused are on disk: the acknowledgement barrier."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse
from refactorbot import BatchWriteFailed, committed

log = logging.getLogger("refactorbot.api")


class CommitBeforeAnswer:
    """ASGI middleware: before any part of an answer is sent, every batched row queued so far is committed.

    Routed operations log to ``operation_log`` (and tools, slices, ... to their own batched
    writers) off the request's path; this waits for those rows (one group commit shared by the
    requests answering at the same moment, nothing when no row waits), so an operation the API
    acknowledged is in the audit trail even after ``kill -9``. If a row could not be written the
    answer is a 500 saying so, not a success.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass the request on; hold each answer message until the rows queued before it are committed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = replaced = False

        async def send_committed(message: Any) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] in ("http.response.start", "http.response.body"):
                try:
                    await committed()
                except BatchWriteFailed as exc:
                    if started:
                        raise  # part of the answer is out: end it broken rather than complete
                    log.error("API %s %s: not acknowledged: %s", scope.get("method"), scope.get("path"), exc)
                    replaced = True
                    detail = f"internal error: the request ran, but its audit-log rows were not written: {exc}"
                    await JSONResponse({"detail": detail}, status_code=500)(scope, receive, send)
                    return
                started = True
            await send(message)

        await self.app(scope, receive, send_committed)
