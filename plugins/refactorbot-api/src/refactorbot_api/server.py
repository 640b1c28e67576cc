"""Run the API with uvicorn inside the orchestrator's event loop; advertise it in ``server.json``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from refactorbot import SERVER_FILE, ConfigError

from refactorbot_api.app import create_app
from refactorbot_api.auth import ensure_token
from refactorbot_api.config import ApiConfig
from refactorbot_api.hooks import HookPath
from refactorbot_api.limits import DeclaredBodyLimit

log = logging.getLogger("refactorbot.api")


def _bind(host: str, port: int) -> socket.socket:
    """Return a listening socket; raise ``ConfigError`` with the reason when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it a
    # keep-alive client waits on delayed ACKs (~40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"API: port {port} on {host} is already in use (set [plugins.api] port or RB_API_PORT)"
            ) from None
        raise ConfigError(
            f"API: cannot listen on {host}:{port}: {exc.strerror or exc}"
            " (set [plugins.api] host and port, or RB_API_HOST and RB_API_PORT)"
        ) from None
    sock.setblocking(False)
    return sock


class ApiServer:
    """The control API of one ``MasterCore``: a uvicorn server running as a task of its loop."""

    def __init__(self, host: Any, config: ApiConfig | None = None) -> None:
        self.host = host
        self.config = config or ApiConfig.model_validate({})
        self.token = ""
        self.url = ""
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """Return the port the server listens on (0 before ``start``)."""
        return 0 if self._socket is None else int(self._socket.getsockname()[1])

    async def start(self) -> None:
        """Bind, start serving, and write ``server.json`` once the server accepts connections."""
        home = self.host.home
        self.token = ensure_token(home)
        self._socket = _bind(self.config.host, self.config.port)
        address = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"http://{address}:{self.port}"
        app = create_app(self.host, token=self.token, config=self.config)
        # log_config=None: the host owns logging configuration; uvicorn only sets its loggers to WARNING.
        config = uvicorn.Config(
            DeclaredBodyLimit(
                HookPath(app, app.state.webhooks.routes, self.config.max_body_bytes), self.config.max_body_bytes
            ),
            host=self.config.host,
            port=self.port,
            log_level="warning",
            log_config=None,
            lifespan="off",
            access_log=False,
        )
        self._server = EmbeddedServer(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._socket]), name="api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surfaces why the server stopped
                raise ConfigError("[plugins.api]: the API server stopped while starting")
            await asyncio.sleep(0.005)
        self._write_server_file()
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]  # uvloop or asyncio
        log.info("control API listening on %s (%s event loop)", self.url, loop)

    def _write_server_file(self) -> None:
        path = self.host.home / SERVER_FILE
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # owner-only like everything in the home, whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"url": self.url, "pid": os.getpid()}))
        os.replace(tmp, path)

    async def stop(self) -> None:
        """Stop accepting requests, let open ones finish, remove ``server.json``."""
        path = self.host.home / SERVER_FILE
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            if json.loads(path.read_text(encoding="utf-8")).get("url") == self.url:
                path.unlink()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the orchestrator."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handlers: ``MasterCore.serve_forever`` owns SIGINT/SIGTERM."""
        yield
