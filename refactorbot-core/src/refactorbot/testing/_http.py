"""One HTTP request to a loopback server, as the kit's helpers and its tests send them.

Never through ``HTTP_PROXY`` (the server is on this machine), and an HTTP error status is an
answer like any other: ``send`` returns it with its body instead of raising.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import Message


def send(
    url: str,
    *,
    method: str = "POST",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes, Message]:
    """Send one request to ``url``; return the status, the body and the headers of the answer."""
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)  # noqa: S310  the test's own loopback URL
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read()), answer.headers
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read()), exc.headers
