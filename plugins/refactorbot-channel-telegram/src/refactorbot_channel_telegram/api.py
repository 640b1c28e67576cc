"""A small Bot API client: one ``call(method, params)`` over httpx, errors as ``TelegramApiError``.

The token is part of every URL (``/bot<token>/<method>``), so it is kept out of what this module
raises, and a logging filter takes it out of httpx's own request log lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: What a token looks like in a URL or a message.
_TOKEN_IN_TEXT = re.compile(r"bot[0-9]+:[A-Za-z0-9_-]+")


class TelegramApiError(Exception):
    """A Bot API call failed: ``error_code`` is Telegram's (None when Telegram was not reached)."""

    def __init__(
        self,
        method: str,
        error_code: int | None,
        description: str,
        *,
        retry_after: float | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(f"{method}: {description}")
        self.method = method
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


def redact(text: str) -> str:
    """Return ``text`` with any bot token in it replaced by ``bot<token>``."""
    return _TOKEN_IN_TEXT.sub("bot<token>", text)


class _RedactToken(logging.Filter):
    """Rewrite log records of the HTTP client so that request URLs do not carry the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            record.msg, record.args = redact(message), ()
        return True


_FILTER = _RedactToken()


def redact_http_logs() -> None:
    """Install the token filter on httpx's and httpcore's loggers (once)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class BotApi:
    """Calls ``{api_base}/bot<token>/<method>`` with JSON bodies and unwraps ``{"ok": ..., "result": ...}``."""

    def __init__(self, api_base: str, token: str, *, timeout: float, proxy: str | None = None) -> None:
        import httpx

        redact_http_logs()
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=f"{self.api_base}/bot{token}/", timeout=timeout, trust_env=False, proxy=proxy
        )

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Call ``method`` and return its ``result``; raise ``TelegramApiError`` for anything else."""
        import httpx

        wait = self.timeout if timeout is None else timeout
        try:
            response = await self._client.post(method, json=params or {}, timeout=wait)
        except httpx.TimeoutException:
            raise TelegramApiError(method, None, f"Telegram did not answer within {wait:g}s") from None
        except httpx.HTTPError as exc:
            detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise TelegramApiError(
                method, None, f"cannot reach Telegram at {self.api_base}: {type(exc).__name__} {detail}".rstrip()
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TelegramApiError(method, response.status_code, f"HTTP {response.status_code}, not a Bot API answer")
        if body.get("ok") is True:
            return body.get("result")
        found = body.get("parameters")
        parameters: dict[str, Any] = found if isinstance(found, dict) else {}
        code = body.get("error_code")
        retry_after = parameters.get("retry_after")
        migrate = parameters.get("migrate_to_chat_id")
        description = redact(" ".join(str(body.get("description") or f"HTTP {response.status_code}").split()))
        raise TelegramApiError(
            method,
            code if isinstance(code, int) and not isinstance(code, bool) else response.status_code,
            description[:300],
            retry_after=float(retry_after) if isinstance(retry_after, int | float) and retry_after >= 0 else None,
            migrate_to_chat_id=migrate if isinstance(migrate, int) else None,
        )
