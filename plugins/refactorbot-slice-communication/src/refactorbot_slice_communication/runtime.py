"""Run one channel adapter: start it, restart it with exponential backoff when it fails, stop it.

A channel whose adapter polls or holds a long connection (``ChannelAdapter.runs_once``) runs on
one host of a deployment at a time: the runner contends for the lease ``channel.<name>`` and
starts the adapter only while it holds it; until then the channel is ``standby``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from refactorbot import ChannelAdapter, ChannelConfig, ChannelError, Inbound, SingletonLease, singleton

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
        #: The lease ``channel.<name>`` of a channel that runs on one host at a time (else ``None``).
        self.lease: SingletonLease | None = None
        self._contending: asyncio.Task[None] | None = None

    @property
    def held_by(self) -> str | None:
        """Return who holds this channel's lease while it is on standby here, when known."""
        return self.lease.holder if self.lease is not None and self.status == "standby" else None

    @property
    def summary(self) -> str:
        """Return the status, with the holder of a channel on standby: ``standby (held by web-2:4121:9f3c2a)``."""
        holder = self.held_by
        return f"{self.status} (held by {holder})" if holder else self.status

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
        ctx: Any = None,
    ) -> None:
        """Begin running the channel in a task: start, watch, restart with backoff.

        With ``ctx`` (the slice's context) and an adapter that ``runs_once`` with these settings,
        the channel is ``standby`` until this host holds the lease ``channel.<name>``; it runs
        while it holds it and goes back to ``standby`` when it loses it.
        """
        if self._task is not None or self._contending is not None or not self.enabled or self.settings is None:
            return
        loop = asyncio.get_running_loop()

        def supervise() -> None:
            self._task = loop.create_task(
                self._supervise(inbound, changed, timeout, backoff, backoff_max), name=f"channel {self.name}"
            )

        if ctx is None or not self.cls.runs_once(self.settings):
            supervise()
            return

        async def acquired(token: int) -> None:
            log.info("channel %s: this host holds channel.%s (token %d); starting it", self.name, self.name, token)
            supervise()

        async def lost() -> None:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.adapter, self.status, self.next_retry_at = None, "standby", None
            with contextlib.suppress(Exception):
                await changed(self)

        async def contend() -> None:
            self.status = "standby"
            await changed(self)
            self.lease = await singleton(ctx, f"channel.{self.name}", acquired, lost)
            if self.status == "standby":
                await changed(self)  # now with who holds it, if known

        self._contending = loop.create_task(contend(), name=f"channel {self.name} lease")

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
        """Stop the adapter and its supervision; let go of the channel's lease."""
        contending, self._contending = self._contending, None
        if contending is not None:
            contending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await contending
        lease, self.lease = self.lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                await lease.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.adapter = None
        if self.status in ("starting", "running", "failed", "standby"):
            self.status, self.next_retry_at = "stopped", None
