"""A real ``redis-server`` on loopback for tests: started in a folder of its own, stopped, restarted.

    with RedisServer(tmp_path) as server:
        url = server.url           # redis://127.0.0.1:<port>/0
        server.restart()           # same port, same data (append-only file, fsync always by default)

The binary is ``$RB_TEST_REDIS_SERVER`` or ``redis-server`` on the ``PATH`` (Debian:
``apt-get install redis-server``). Without one, ``RedisServer`` raises ``RedisServerMissing``
with that hint: a test fails, it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

INSTALL_HINT = (
    "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server)"
    " or set RB_TEST_REDIS_SERVER to a redis-server binary"
)
_READY = b"Ready to accept connections"


class RedisServerMissing(RuntimeError):
    """No redis-server binary on this machine."""


def find_redis_server() -> str:
    """Return the redis-server binary to run; raise ``RedisServerMissing`` with the install hint."""
    given = os.environ.get("RB_TEST_REDIS_SERVER")
    found = given if given and Path(given).is_file() else shutil.which("redis-server")
    if not found:
        raise RedisServerMissing(INSTALL_HINT)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process with its data in ``folder``; ``url`` reaches it on loopback."""

    def __init__(
        self, folder: Path, port: int | None = None, ready_timeout: float = 30.0, appendfsync: str = "always"
    ) -> None:
        self.binary = find_redis_server()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.ready_timeout = ready_timeout
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it accepts connections (it says so in its log)."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--logfile",
            str(self.folder / "redis.log"),
            "--daemonize",
            "no",
        ]
        log = self.folder / "redis.log"
        seen = log.stat().st_size if log.exists() else 0
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603  argv list (redis-server found on PATH, options the fixture sets), no shell
        deadline = time.monotonic() + self.ready_timeout
        while True:  # the server writes one line once it accepts connections
            text = log.read_bytes()[seen:] if log.exists() else b""
            if _READY in text:
                return
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise RuntimeError(f"redis-server exited with {code}: {text[-1000:].decode(errors='replace')}")
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"redis-server did not start within {self.ready_timeout}s: {text[-500:]!r}")
            time.sleep(0.01)

    def stop(self, kill: bool = False) -> None:
        """Stop the server (``SIGKILL`` with ``kill``) and wait for it to exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        """Kill the server and start it again on the same port with the same data."""
        self.stop(kill=True)
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
