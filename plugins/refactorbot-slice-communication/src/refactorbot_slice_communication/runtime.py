"""Run one channel adapter: start it, restart it with exponential backoff when it fails, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from refactorbot import ChannelAdapter, ChannelConfig, ChannelError, Inbound

log = logging.getLogger("refactorbot.slice.communication")

#: Seconds a channel must stay up before its backoff starts again from the first delay.
STABLE_AFTER = 60.0


def one_line(exc: BaseException) -> str:
    """Return an exception as one line: the message of a ``ChannelError``, else ``Type: message``."""
    if isinstance(exc, TimeoutError):
        text = "did not start in time"
    elif isinstance(exc, ChannelError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:500]


class ChannelRunner:
    """One registered channel: its settings, its running adapter (if any) and its state."""

    def __init__(
        self,
        name: str,
        cls: type[ChannelAdapter],
        plugin: str | None,
        settings: ChannelConfig | None,
        enabled: bool,
        env: Any,
        *,
        invalid: str | None = None,
    ) -> None:
        self.name = name
        self.cls = cls
        self.plugin = plugin
        self.settings = settings
        self.enabled = enabled
        self.env = env
        self.adapter: ChannelAdapter | None = None
        self.status = "invalid" if invalid else ("stopped" if enabled else "disabled")
        self.error: str | None = invalid
        self.error_at: float | None = time.time() if invalid else None
        self.started_at: float | None = None
        self.next_retry_at: float | None = None
        self.restarts = 0
        #: Given to each adapter it starts as ``adapter.state_dir`` (created 0700 first).
        self.state_dir: Path | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Return whether the adapter is up and may send."""
        return self.status == "running" and self.adapter is not None

    def start(
        self,
        inbound: Inbound,
        changed: Callable[[ChannelRunner], Awaitable[None]],
        *,
        timeout: float,
        backoff: float,
        backoff_max: float,
    ) -> None:
        """Begin running the channel in a task: start, watch, restart with backoff."""
        if self._task is None and self.enabled and self.settings is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(inbound, changed, timeout, backoff, backoff_max), name=f"channel {self.name}"
            )

    async def _supervise(
        self,
        inbound: Inbound,
        changed: Callable[[ChannelRunner], Awaitable[None]],
        timeout: float,
        backoff: float,
        backoff_max: float,
    ) -> None:
        failures = 0
        while True:
            adapter = self.cls(self.settings, env=self.env)
            adapter.bind(inbound)
            if self.state_dir is not None:
                self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                adapter.state_dir = self.state_dir
            self.status, self.next_retry_at = "starting", None
            await changed(self)
            try:
                await asyncio.wait_for(adapter.start(), timeout)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(adapter.stop(), timeout)
                raise
            except Exception as exc:  # the platform refused, a token is missing, ...: retry later
                reason = one_line(exc).removeprefix(f"channel {self.name}: ")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(adapter.stop(), timeout)
            else:
                up_since = time.monotonic()
                self.adapter, self.status, self.error = adapter, "running", None
                self.started_at = time.time()
                log.info("channel %s running", self.name)
                await changed(self)
                try:
                    reason = (await adapter.failure()).removeprefix(f"channel {self.name}: ")
                finally:
                    self.adapter = None
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(adapter.stop(), timeout)
                if time.monotonic() - up_since >= STABLE_AFTER:
                    failures = 0
            delay = min(backoff * 2**failures, backoff_max)
            failures += 1
            self.restarts += 1
            self.status, self.error, self.error_at = "failed", reason, time.time()
            self.next_retry_at = time.time() + delay
            log.warning("channel %s cannot run: %s (retrying in %.0fs)", self.name, reason, delay)
            await changed(self)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop the adapter and its supervision."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.adapter = None
        if self.status in ("starting", "running", "failed"):
            self.status, self.next_retry_at = "stopped", None
