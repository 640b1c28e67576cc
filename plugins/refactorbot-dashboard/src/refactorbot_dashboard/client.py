"""The API client the dashboard and its pages use: ``get(path)`` / ``post(path, json)`` / ``put(path, json)``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from refactorbot import SERVER_FILE, TOKEN_FILE

URL_ENV = "RB_DASHBOARD_API_URL"
TOKEN_ENV = "RB_DASHBOARD_API_TOKEN"  # noqa: S105  the variable's name, not a token


class ApiError(Exception):
    """Raise when the API answers with an error; ``detail`` is its one-line reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ServerNotFound(Exception):
    """Raise when no running server is known (neither environment variables nor ``server.json``)."""


def server_from_environment(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return the API's (url, token) from ``RB_DASHBOARD_API_URL``/``_TOKEN``, else from the home's files."""
    env = dict(os.environ if env is None else env)
    url, token = env.get(URL_ENV), env.get(TOKEN_ENV)
    if url and token:
        return url, token
    from refactorbot import default_home

    home = default_home(env)
    try:
        info = json.loads((home / SERVER_FILE).read_text(encoding="utf-8"))
        token = (home / TOKEN_FILE).read_text(encoding="utf-8").strip()
        return str(info["url"]), token
    except (OSError, ValueError, KeyError, TypeError):
        raise ServerNotFound(f"no refactorbot server found for {home}; start one with `refactorbot serve`") from None


class ApiClient:
    """A synchronous client of the control API (httpx, one pooled connection)."""

    def __init__(self, url: str, token: str, timeout: float = 15.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, trust_env=False
        )

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ApiClient:
        """Return a client from ``RB_DASHBOARD_API_URL``/``_TOKEN``, else from the home's ``server.json``."""
        return cls(*server_from_environment(env))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; return the decoded JSON or raise ``ApiError`` with the server's reason."""
        response = self._http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ApiError(response.status_code, str(detail or response.text[:200] or response.reason_phrase))
        return body

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` (with query ``params``) and return the JSON body."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self.request("GET", path, params=clean)

    def post(self, path: str, json: Any = None) -> Any:
        """POST ``json`` to ``path`` and return the JSON body."""
        return self.request("POST", path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        """PUT ``json`` to ``path`` and return the JSON body."""
        return self.request("PUT", path, json=json)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
