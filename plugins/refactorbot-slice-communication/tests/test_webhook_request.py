"""``webhook_request`` reads the ASGI scope directly: the same request Starlette's objects would give."""

from __future__ import annotations

from typing import Any

import pytest
from refactorbot_slice_communication.webhooks import webhook_request
from starlette.requests import Request

SCOPES: list[dict[str, Any]] = [
    {
        "type": "http",
        "method": "POST",
        "path": "/hooks/webhook",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-refactorbot-signature", b"sha256=ab")],
        "client": ("127.0.0.1", 5123),
    },
    {  # repeated header and parameter (the last one counts), blank values, latin-1 bytes, no client
        "type": "http",
        "method": "GET",
        "path": "/hooks/whatsapp",
        "query_string": b"hub.mode=subscribe&hub.challenge=&hub.verify_token=a%20b&x=1&x=2&caf%C3%A9=%E9",
        "headers": [(b"x-a", b"1"), (b"X-A", b"2"), (b"x-latin", "café".encode("latin-1"))],
        "client": None,
    },
]


@pytest.mark.parametrize("scope", SCOPES)
def test_the_request_matches_what_starlette_reads(scope: dict[str, Any]) -> None:
    made = webhook_request(scope, b"{}")
    starlette = Request(dict(scope))
    assert made.method == starlette.method and made.path == starlette.url.path
    assert made.headers == {k.lower(): v for k, v in starlette.headers.items()}
    assert made.query == dict(starlette.query_params)
    assert made.client == (starlette.client.host if starlette.client else None)
    assert made.body == b"{}"
    assert made.header("X-Refactorbot-Signature") == starlette.headers.get("x-refactorbot-signature")
