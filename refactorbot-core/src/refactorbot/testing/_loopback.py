"""What the testing kit's loopback servers share: an HTTP server on 127.0.0.1 in a daemon thread."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up (a timed-out or closed connection); report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackHTTPServer:
    """Serve ``handler_class()`` on a free port of 127.0.0.1 in a daemon thread, between ``start`` and ``stop``.

    ``_closing`` is set while stopping, so handlers holding a request (a scripted delay) let go.
    """

    def __init__(self) -> None:
        self._closing = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """Return the request handler class, bound to this server."""
        raise NotImplementedError

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread; return ``self``."""
        if self._httpd is None:
            self._closing.clear()
            httpd = _Server(("127.0.0.1", 0), self.handler_class())
            self._httpd = httpd
            self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.name = f"{type(self).__name__}-{self.port}"
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests still held by a scripted delay are released."""
        self._closing.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """Return the bound port."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])
