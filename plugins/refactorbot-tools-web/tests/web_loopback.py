"""A loopback HTTP server scripted per test, and a transport that maps fake public addresses to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest


class Route:
    def __init__(
        self, status: int = 200, body: bytes | str = b"", headers: dict[str, str] | None = None, delay: float = 0
    ):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers or {"Content-Type": "text/plain; charset=utf-8"}
        self.delay = delay


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.hits.append({"path": self.path, "host": self.headers.get("Host"), "headers": dict(self.headers)})
                route = server.routes.get(self.path.split("?")[0], Route(404, "not found"))
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                for key, value in route.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def paths(self) -> list[str]:
        return [hit["path"] for hit in self.hits]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


PUBLIC_IP = "93.184.216.34"


class MapToLoopback(httpx.AsyncBaseTransport):
    """Send requests addressed to ``PUBLIC_IP`` to the loopback server; refuse anything else."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str | None]] = []  # (host connected to, Host header)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.host, request.headers.get("host")))
        if request.url.host not in (PUBLIC_IP, "127.0.0.1"):
            raise AssertionError(f"test traffic must stay on this machine, not go to {request.url.host}")
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def fake_resolver(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown test host {host}")
        return table[host]

    return resolve
