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
        await self.app(scope, receive, CommittedSend(scope, receive, send))


class CommittedSend:
    """The ``send`` of one request behind the barrier: each answer message waits for the rows queued before it.

    ``one_piece``: set by a caller that knows the answer's body follows its start with nothing of
    the request running in between (a plain ``Response``); the body then goes out without a second
    wait (rows queued meanwhile are other requests' rows, and their answers wait for them).
    """

    __slots__ = ("_receive", "_replaced", "_scope", "_send", "one_piece", "started")

    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        self._scope, self._receive, self._send = scope, receive, send
        self.started = self._replaced = self.one_piece = False

    async def __call__(self, message: Any) -> None:
        if self._replaced:
            return
        kind = message["type"]
        if kind == "http.response.start" or (kind == "http.response.body" and not self.one_piece):
            try:
                await committed()
            except BatchWriteFailed as exc:
                if self.started:
                    raise  # part of the answer is out: end it broken rather than complete
                scope = self._scope
                log.error("API %s %s: not acknowledged: %s", scope.get("method"), scope.get("path"), exc)
                self._replaced = True
                detail = f"internal error: the request ran, but its audit-log rows were not written: {exc}"
                await JSONResponse({"detail": detail}, status_code=500)(scope, self._receive, self._send)
                return
            if kind == "http.response.start":
                self.started = True
        await self._send(message)
