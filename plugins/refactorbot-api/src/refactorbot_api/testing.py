"""Run a host with its control API in a background thread, for synchronous tests (Streamlit, fuzzers)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from refactorbot import SERVER_FILE, TOKEN_FILE

T = TypeVar("T")


@dataclasses.dataclass
class RunningServer:
    """A host serving the API on loopback from its own thread and event loop."""

    host: Any
    loop: asyncio.AbstractEventLoop
    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Return the ``Authorization`` header of this server."""
        return {"Authorization": f"Bearer {self.token}"}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the host's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def running_server(
    home: Path,
    plugins: Iterable[Any] = (),
    *,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Start a ``MasterCore`` with ``plugins`` plus the API (on a random port) in a thread; stop it after."""
    from refactorbot.testing import build_host

    import refactorbot_api.plugin

    tables = {"core": {"health_interval": 3600}, **dict(config or {})}
    tables["plugins"] = {**tables.get("plugins", {}), "api": {"port": 0, **tables.get("plugins", {}).get("api", {})}}
    host = build_host(home, [*plugins, refactorbot_api.plugin], config=tables, env=env)
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[None] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            await host.start()
        except BaseException as exc:
            started.set_exception(exc)
            raise
        started.set_result(None)
        try:
            await stop.wait()
        finally:
            await host.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="rb-host", daemon=True)
    thread.start()
    try:
        started.result(60)
        info = json.loads((home / SERVER_FILE).read_text(encoding="utf-8"))
        token = (home / TOKEN_FILE).read_text(encoding="utf-8").strip()
        yield RunningServer(host, loop, info["url"], token)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
