"""Publish/subscribe between slices: a bounded in-memory bus, replaceable by a plugin."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import Field

from refactorbot.models import Model

log = logging.getLogger(__name__)

Handler = Callable[["Event"], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])


class Event(Model):
    """One published event: a dotted topic (``session.message_added``) and a JSON payload."""

    topic: str
    payload: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    published_at: float = Field(default_factory=time.time)


def subscribe(pattern: str) -> Callable[[F], F]:
    """Mark an ``async def handler(self, event)`` of a slice to receive events matching ``pattern``.

    Patterns are shell-style (``session.*``); the host subscribes the handler while the slice runs.
    """

    def mark(func: F) -> F:
        patterns = list(getattr(func, "__rb_subscribe__", ()))
        patterns.append(pattern)
        func.__rb_subscribe__ = patterns  # type: ignore[attr-defined]
        return func

    return mark


class EventBus(abc.ABC):
    """What the host needs of an event bus; ``provide_event_bus`` may return another one."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin delivering events."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Deliver what is queued, then stop."""

    @abc.abstractmethod
    async def publish(self, event: Event) -> None:
        """Queue ``event`` for every matching subscriber."""

    @abc.abstractmethod
    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Deliver events matching ``pattern`` to ``handler``; return a function that unsubscribes."""


class InMemoryEventBus(EventBus):
    """A bounded queue and one dispatcher task: publishers wait when the queue is full."""

    def __init__(self, maxsize: int = 10_000, handler_timeout: float = 30.0) -> None:
        self.maxsize = maxsize
        self.handler_timeout = handler_timeout
        self._queue: asyncio.Queue[Event] | None = None
        self._subs: list[tuple[str, Handler]] = []
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    async def start(self) -> None:
        """Start the dispatcher task."""
        self._queue = asyncio.Queue(self.maxsize)
        self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="event-bus")

    async def stop(self) -> None:
        """Drain queued events, then stop the dispatcher."""
        if self._task is None or self._queue is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def publish(self, event: Event) -> None:
        """Queue ``event``; waits while the queue is full (back-pressure, nothing dropped)."""
        if self._queue is None:
            raise RuntimeError("event bus is not started")
        await self._queue.put(event)

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Add a subscriber; return its unsubscribe function."""
        entry = (pattern, handler)
        self._subs.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subs.remove(entry)

        return unsubscribe

    @property
    def queued(self) -> int:
        """Return how many events wait for delivery."""
        return 0 if self._queue is None else self._queue.qsize()

    async def _dispatch(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                for pattern, handler in list(self._subs):
                    if fnmatch.fnmatchcase(event.topic, pattern):
                        await self._deliver(handler, event)
            finally:
                self._queue.task_done()

    async def _deliver(self, handler: Handler, event: Event) -> None:
        try:
            await asyncio.wait_for(handler(event), timeout=self.handler_timeout)
            self.delivered += 1
        except Exception:  # a subscriber's bug must not stop delivery to others
            self.failed += 1
            log.exception("event handler %r failed on %s", handler, event.topic)
