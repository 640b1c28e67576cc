from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from refactorbot.testing import build_host

EVENTBUS = "refactorbot_slice_eventbus.plugin"
SINK = "sink_plugin"


def bus_config(**eventbus: Any) -> dict[str, Any]:
    return {
        "core": {"health_interval": 3600},
        "slices": {"eventbus": {"retry_backoff": 0.01, "retry_backoff_max": 0.05, "stop_timeout": 0.1, **eventbus}},
    }


@contextlib.asynccontextmanager
async def running(home: Path, plugins: list[Any] | None = None, **eventbus: Any) -> AsyncIterator[Any]:
    """Start a host with the durable bus and the sink slice; stop it after."""
    host = build_host(home, plugins if plugins is not None else [EVENTBUS, SINK], config=bus_config(**eventbus))
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    """Wait for ``predicate()`` to hold, checking as the loop turns (a generous deadline, no fixed sleeps)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


def rows(home: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the bus database directly with sqlite3 (a second, independent connection)."""
    with contextlib.closing(sqlite3.connect(home / "slices" / "eventbus.db")) as conn:
        return conn.execute(sql, args).fetchall()
