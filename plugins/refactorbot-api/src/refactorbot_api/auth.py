"""The bearer token: generated once per home directory, stored owner-only, compared in constant time."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from refactorbot import TOKEN_FILE

#: Paths served without a token. ``/hooks/...`` routes must verify their own signatures.
PUBLIC_PATHS = frozenset({"/health"})
PUBLIC_PREFIXES = ("/hooks/",)
#: The one path the scrape token (``[plugins.api] scrape_token_env``) opens.
SCRAPE_PATH = "/metrics/prometheus"
UNAUTHORIZED = "missing or wrong bearer token (the token is in <home>/api-token)"


def ensure_token(home: Path) -> str:
    """Return the token stored in ``<home>/api-token``, creating it (mode 0600) on first use."""
    path = home / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)  # an existing empty file may have had wider permissions
    return token


def token_matches(expected: str, authorization: str | None) -> bool:
    """Return whether an ``Authorization`` header carries ``Bearer <expected>``."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return secrets.compare_digest(given.strip().encode(), expected.encode())


class BearerGuard:
    """ASGI middleware: refuse every non-public path without the bearer token, before any parsing."""

    def __init__(self, app: Any, token: str, scrape_token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.scrape_token = scrape_token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass public paths and authorized requests on; answer 401 (or close a websocket) otherwise."""
        if scope["type"] in ("http", "websocket") and not self._allowed(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                return
            response = JSONResponse({"detail": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Any) -> bool:
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return True
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        given = header.decode("latin-1") if header is not None else None
        if token_matches(self.token, given):
            return True
        return path == SCRAPE_PATH and self.scrape_token is not None and token_matches(self.scrape_token, given)
