"""The request-body limit: FastAPI's ``max_body_size`` counts what is read; a declared size is refused at once."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def too_large_detail(max_bytes: int) -> str:
    """Return the one-line ``detail`` of a 413 answer."""
    return f"request body larger than {max_bytes} bytes ([plugins.api] max_body_bytes)"


def too_large_response(max_bytes: int) -> JSONResponse:
    """Return the 413 answer; ``Connection: close`` so the server never reads the rest of the body."""
    return JSONResponse({"detail": too_large_detail(max_bytes)}, status_code=413, headers={"Connection": "close"})


class DeclaredBodyLimit:
    """ASGI wrapper of the whole application: a ``Content-Length`` over the limit is answered 413 at once.

    Nothing of the body is read and nothing behind this wrapper runs. Bodies sent without a
    length (chunked) are counted by FastAPI's ``max_body_size`` as they are read, and answered
    the same way.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Refuse an over-long declared body; pass everything else on."""
        if scope["type"] == "http":
            declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                await too_large_response(self.max_bytes)(scope, receive, send)
                return
        await self.app(scope, receive, send)
