"""Find and call a running ``refactorbot serve`` (its control API), so the CLI stays warm-fast.

The API plugin writes ``<home>/server.json`` (``{"url": ..., "pid": ...}``) and the bearer token
to ``<home>/api-token`` (mode 0600) when it starts, and removes ``server.json`` when it stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SERVER_FILE = "server.json"
TOKEN_FILE = "api-token"


class ServerClient:
    """A small synchronous client of the control API (stdlib only, for fast CLI start-up)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def discover(cls, home: Path) -> ServerClient | None:
        """Return a client of the server running for ``home``, or None when none answers."""
        try:
            info = json.loads((home / SERVER_FILE).read_text())
            token = (home / TOKEN_FILE).read_text().strip()
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        client = cls(str(info["url"]), token)
        try:
            client.request("GET", "/health", timeout=1.0)
        except OSError:
            return None
        return client

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """Send one request and return the decoded JSON body (HTTP errors included)."""
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return json.loads(payload)
            except ValueError:
                raise OSError(f"HTTP {exc.code}: {payload[:200]!r}") from None

    def stream(self, path: str, body: Any) -> Iterator[Any]:
        """POST ``body`` and yield each JSON line of an NDJSON response as it arrives.

        Raise ``OSError`` when the server cannot be reached or answers with an HTTP error.
        """
        import urllib.error
        import urllib.request

        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                for line in resp:
                    if line.strip():
                        yield json.loads(line)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                detail = json.loads(payload).get("detail")
            except (ValueError, AttributeError):
                detail = payload[:200]
            raise OSError(f"HTTP {exc.code}: {detail}") from None

    def call(self, slice_id: str, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run an operation on the server; return the ``SliceResponse`` as a dict."""
        result: dict[str, Any] = self.request("POST", f"/slices/{slice_id}/operations/{operation}", payload)
        return result
