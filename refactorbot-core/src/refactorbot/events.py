"""Publish/subscribe between slices: a bounded in-memory bus, replaceable by a plugin.

A handler acknowledges an event by returning normally; raising (or running past the bus's handler
timeout) is a failed delivery. The in-memory bus logs a failure and moves on; a durable bus
(``provide_event_bus``, e.g. ``refactorbot-slice-eventbus``) retries it, dead-letters it after its
last attempt, and redelivers what was not acknowledged before a crash (at least once), so a
handler of a durable bus should be idempotent: ``event.offset`` identifies a stored event.
"""

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

from refactorbot import tracing
from refactorbot.errors import RefactorbotError
from refactorbot.models import Model
from refactorbot.tracing import SpanScope

log = logging.getLogger(__name__)

Handler = Callable[["Event"], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])


class Event(Model):
    """One published event: a dotted topic (``session.message_added``) and a JSON payload."""

    topic: str
    payload: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    published_at: float = Field(default_factory=time.time)
    #: Position in a durable bus's log (``None`` on the in-memory bus): the same event redelivered
    #: after a crash or a retry has the same offset, so a handler can skip what it already did.
    offset: int | None = None
    #: W3C ``traceparent`` of the span that published it (set by the host's ``publish`` when tracing
    #: is on): its delivery's span is that span's child. A durable bus stores it with the event.
    traceparent: str | None = Field(None, max_length=512)


class EventRejected(RefactorbotError):
    """Raise from ``publish`` when a bus refuses an event: a full subscriber, a payload it cannot store."""


#: Where a new subscriber of a durable bus begins: ``"latest"`` (events published from now on),
#: ``"earliest"`` (every event still retained), or an offset (that event and the ones after it).
Start = str | int


class SubscriptionOptions(Model):
    """How a durable bus names a subscriber and where a new one begins (``@subscribe`` options)."""

    name: str
    start: Start = "latest"


def subscribe(pattern: str, *, name: str | None = None, start: Start = "latest") -> Callable[[F], F]:
    """Mark an ``async def handler(self, event)`` of a slice to receive events matching ``pattern``.

    Patterns are shell-style (``session.*``); the host subscribes the handler while the slice runs.
    ``name`` and ``start`` matter to a durable bus only (the in-memory one keeps nothing): ``name``
    is the subscriber's identity, which its stored offset belongs to (default
    ``<slice_id>.<method>``, see ``subscription_options``), and ``start`` is where a subscriber the
    bus has never seen begins: ``"latest"``, ``"earliest"``, or an offset to replay from.
    """
    if not isinstance(start, int) and start not in ("latest", "earliest"):
        raise ValueError(f"start must be 'latest', 'earliest' or an offset, not {start!r}")
    if isinstance(start, int) and (isinstance(start, bool) or start < 1):
        raise ValueError(f"a start offset is 1 or more, not {start!r}")

    def mark(func: F) -> F:
        patterns = list(getattr(func, "__rb_subscribe__", ()))
        patterns.append(pattern)
        func.__rb_subscribe__ = patterns  # type: ignore[attr-defined]
        options = dict(getattr(func, "__rb_subscribe_options__", {}))
        options[pattern] = {"name": name, "start": start}
        func.__rb_subscribe_options__ = options  # type: ignore[attr-defined]
        return func

    return mark


def subscription_options(handler: Handler, pattern: str) -> SubscriptionOptions:
    """Return the subscriber name and start position of ``handler`` subscribed to ``pattern``.

    Given by ``@subscribe(..., name=, start=)``, else derived so that it stays the same across
    restarts: ``<slice_id>.<method>`` for a slice's method (``<slice_id>.<method>[<pattern>]`` when
    the method subscribes to several patterns), ``<module>.<qualname>`` for another callable.
    """
    func = getattr(handler, "__func__", handler)
    given = getattr(func, "__rb_subscribe_options__", {}).get(pattern, {})
    name = given.get("name")
    if not name:
        owner = getattr(getattr(handler, "__self__", None), "slice_id", None)
        method = getattr(func, "__name__", type(handler).__name__)
        if isinstance(owner, str):
            name = f"{owner}.{method}"
        else:
            name = f"{getattr(func, '__module__', None) or 'handler'}.{getattr(func, '__qualname__', method)}"
        if len(getattr(func, "__rb_subscribe__", ())) > 1:
            name += f"[{pattern}]"
    return SubscriptionOptions(name=name, start=given.get("start", "latest"))


class EventBus(abc.ABC):
    """What the host needs of an event bus; ``provide_event_bus`` may return another one.

    A handler acknowledges by returning; the host subscribes each ``@subscribe`` method of a
    running slice with ``subscribe(pattern, handler)``, and a bus that keeps per-subscriber state
    names the subscriber with ``subscription_options(handler, pattern)``.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin delivering events."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Deliver what is queued, then stop."""

    @abc.abstractmethod
    async def publish(self, event: Event) -> None:
        """Queue ``event`` for every matching subscriber; raise ``EventRejected`` when refused.

        A durable bus returns once the event is stored: an event whose ``publish`` returned is
        delivered to every matching subscriber even if the process is killed right after.
        """

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
        with delivery_span(event, handler) as span:
            try:
                await asyncio.wait_for(handler(event), timeout=self.handler_timeout)
                self.delivered += 1
            except Exception as exc:  # a subscriber's bug must not stop delivery to others
                self.failed += 1
                span.set_error(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
                log.exception("event handler %r failed on %s", handler, event.topic)


def delivery_span(event: Event, handler: Handler) -> SpanScope:
    """Return the span of one delivery of ``event`` to ``handler`` (a no-op when tracing is off).

    A ``process <topic>`` consumer span, child of the publisher's span (``event.traceparent``). A
    bus from ``provide_event_bus`` opens it around each handler call, like the in-memory bus.
    """
    if tracing.tracer() is None:
        return tracing.NOOP_SPAN
    return tracing.span(
        f"process {event.topic}",
        kind="consumer",
        attributes={
            "messaging.system": "refactorbot",
            "messaging.operation.type": "process",
            "messaging.destination.name": event.topic,
            "refactorbot.handler": getattr(handler, "__qualname__", type(handler).__name__),
        },
        parent=event.traceparent,
    )
