"""``DurableEventBus``: every event stored in SQLite before ``publish`` returns, delivered at least once.

The log
    ``publish`` gives the event the next offset and queues its row; one writer task commits the
    queued rows together (group commit: rows that arrive while a batch commits go in the next
    one) and only then answers the publishers and lets subscribers see the events. Recent events
    stay in a bounded in-memory window; a subscriber that fell behind it reads the log in pages,
    so memory does not grow with a subscriber's lag.

Subscribers
    Each subscriber has a name (``subscription_options``) and a stored ``acked_offset``: every
    event up to it is done for that subscriber (acknowledged, dead-lettered, dropped, or expired).
    One task per subscriber delivers its matching events in offset order, one at a time. A
    handler that returns acknowledges; one that raises or runs past ``handler_timeout`` is retried
    after ``retry_backoff`` seconds, doubling, and dead-lettered after ``max_attempts``. Offsets
    are written every 100 ms and at stop, so after a crash a subscriber sees again at most what it
    acknowledged in its last 100 ms (at least once).

Overflow
    ``pending`` counts the matching events a subscriber has not acknowledged yet. When it reaches
    ``max_in_flight``, a publish of a matching event ``block``s until there is room (at most
    ``block_timeout``, then it is rejected), makes the subscriber skip its oldest undelivered event
    (``drop_oldest``), or raises ``EventRejected`` without storing the event (``reject``). Each
    outcome is counted per subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import re
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import translate
from pathlib import Path
from typing import Any

from refactorbot import (
    Event,
    EventBus,
    EventRejected,
    RefactorbotError,
    SliceDatabase,
    delivery_span,
    one_line,
    subscription_options,
    tracing,
)

from refactorbot_slice_eventbus.config import EventBusConfig

log = logging.getLogger("refactorbot.slice.eventbus")

Handler = Callable[[Event], Awaitable[None]]

#: Events kept in memory after their commit, for subscribers that keep up.
WINDOW = 4096
#: Events read from the log per page by a subscriber behind the window.
PAGE = 256
#: Rows committed per transaction at most.
MAX_BATCH = 2000
#: Seconds between two writes of subscriber offsets and counters.
ACK_INTERVAL = 0.1
#: Longest topic accepted.
MAX_TOPIC = 200
_TOPIC = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_INSERT = 'INSERT INTO events ("offset", topic, payload, source, published_at, traceparent) VALUES (?, ?, ?, ?, ?, ?)'
_COUNTERS = (
    "delivered",
    "failures",
    "retries",
    "dead",
    "dropped",
    "rejected",
    "blocked",
    "blocked_seconds",
    "block_timeouts",
    "expired",
)

#: The subscriber whose handler runs in the current task (a publish from it never blocks on itself).
_DELIVERING: contextvars.ContextVar[Subscriber | None] = contextvars.ContextVar("rb_eventbus_delivering", default=None)


def glob_of(pattern: str) -> str:
    """Return ``pattern`` (``fnmatch`` syntax) as an SQLite ``GLOB`` pattern."""
    return pattern.replace("[!", "[^")


class BusLocked(RefactorbotError):
    """Raise when another process runs the durable bus of the same home."""


@dataclass(eq=False)
class Subscriber:
    """One subscription: its handler, position, limits and counters."""

    name: str
    pattern: str
    handler: Handler
    start: str | int
    max_in_flight: int
    overflow: str
    max_attempts: int
    match: Callable[[str], Any]
    acked: int = 0
    pending: int = 0
    to_drop: int = 0
    ready: bool = False
    loaded: bool = False
    closing: bool = False
    #: Bumped by a rewind: a page fetched before it is not delivered.
    epoch: int = 0
    requeued: bool = True
    current: int | None = None
    last_error: str | None = None
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    space: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: Offset of the last committed event when it subscribed: a new subscriber starting at
    #: "latest" begins after it, and its pending count is read from the log up to it.
    snapshot: int = 0

    def has_room(self) -> bool:
        return self.pending < self.max_in_flight

    def count(self, name: str, amount: float = 1) -> None:
        self.counters[name] += amount


def _failure(exc: BaseException, timeout: float) -> str:
    """Return why a handler failed, in one line (a timeout says after how long)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    return one_line(f"{type(exc).__name__}: {exc}", 500)


@dataclass(eq=False)
class _Queued:
    offset: int
    row: tuple[int, str, str, str | None, float, str | None]
    event: Event
    future: asyncio.Future[None]
    matched: list[Subscriber]


class Throughput:
    """Per-second counts over the last hour (published, delivered, failed), in memory."""

    def __init__(self, seconds: int = 3600) -> None:
        self.buckets: deque[list[int]] = deque(maxlen=seconds)  # [second, published, delivered, failed]

    def add(self, column: int, amount: int = 1) -> None:
        now = int(time.time())
        if not self.buckets or self.buckets[-1][0] != now:
            self.buckets.append([now, 0, 0, 0])
        self.buckets[-1][column] += amount

    def since(self, seconds: float) -> list[list[int]]:
        cutoff = int(time.time() - seconds)
        return [list(b) for b in self.buckets if b[0] > cutoff]


class DurableEventBus(EventBus):
    """The event log in ``<home>/slices/eventbus.db``; see the module docstring for the guarantees."""

    def __init__(self, home: Path, config: EventBusConfig, migrations: Any = None) -> None:
        self.home = Path(home)
        self.config = config
        self.path = self.home / "slices" / "eventbus.db"
        self.db = SliceDatabase(self.path, migrations)
        self._lock_fd: int | None = None
        self._subs: dict[str, Subscriber] = {}
        self._queue: list[_Queued] = []
        self._queue_wake = asyncio.Event()
        self._next = 1
        #: Every offset up to here is committed (or failed to be, and will never exist).
        self._committed = 0
        self._window: dict[int, Event] = {}
        self._window_floor = 1
        self._writer: asyncio.Task[None] | None = None
        #: The writer's own connection and thread: a batch is one trip (BEGIN, the rows, COMMIT).
        self._write_conn: sqlite3.Connection | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        self._acks: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._dirty: dict[str, Subscriber] = {}
        #: Unsubscribed subscribers whose last delivery may still run (a new one of that name waits).
        self._retiring: dict[str, Subscriber] = {}
        self._dirty_wake = asyncio.Event()
        self._closing = False
        self.started_at: float | None = None
        self.throughput = Throughput()
        self.published = 0
        self.batches = 0
        self.write_errors = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the home's bus lock (``slices/eventbus.lock``); raise ``BusLocked`` when held."""
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / "eventbus.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BusLocked(f"the event bus of {self.home} is run by process {holder}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
        """Release the bus lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def start(self) -> None:
        """Open the log, resume offsets after the last stored event, start the writer."""
        if self._lock_fd is None:
            self.acquire()
        await self.db.open()
        last = await self.db.scalar('SELECT max("offset") FROM events')
        self._next = int(last or 0) + 1
        self._committed = self._next - 1
        self._window_floor = self._next
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="eventbus-writer")
        self._write_conn = await asyncio.get_running_loop().run_in_executor(self._write_thread, self._connect)
        self._closing = False
        self.started_at = time.time()
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name="eventbus-writer")
        self._acks = loop.create_task(self._ack_loop(), name="eventbus-acks")
        self._retention = loop.create_task(self._retention_loop(), name="eventbus-retention")

    async def stop(self) -> None:
        """Commit queued events, stop deliveries (what is unacknowledged is redelivered next start)."""
        if self._writer is None:
            return
        self._closing = True
        for sub in list(self._subs.values()):
            self._unsubscribe(sub)
        everyone = [*self._subs.values(), *self._retiring.values()]
        tasks = [s.task for s in everyone if s.task is not None and not s.task.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.config.stop_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self._queue_wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if self._write_conn is not None and self._write_thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._write_thread, self._write_conn.close)
            self._write_thread.shutdown(wait=True)
            self._write_conn, self._write_thread = None, None
        for background in (self._acks, self._retention):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        await self._write_acks(list({s.name: s for s in [*self._dirty.values(), *everyone]}.values()))
        self._subs.clear()
        self._retiring.clear()
        self._dirty.clear()
        self._writer = self._acks = self._retention = None
        await self.db.close()
        self.release()

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Store ``event``, then return; raise ``EventRejected`` when it is refused (see the module)."""
        await self.append(event)

    async def append(self, event: Event) -> int:
        """Like ``publish``; return the event's offset."""
        if self._writer is None or self._closing:
            raise RuntimeError("event bus is not started")
        topic = event.topic
        if not topic or len(topic) > MAX_TOPIC or not _TOPIC.match(topic):
            raise EventRejected(f"invalid topic {topic[:60]!r}: 1-{MAX_TOPIC} printable characters, no spaces")
        try:
            payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise EventRejected(f"payload of {topic} cannot be stored as JSON: {one_line(exc, 200)}") from None
        await self._make_room(topic)
        offset = self._next
        self._next += 1
        matched = [s for s in self._subs.values() if s.match(topic)]
        for sub in matched:
            sub.pending += 1
        # Only a valid traceparent is kept: a delivery's span names it as its parent.
        traceparent = event.traceparent if tracing.parse_traceparent(event.traceparent) is not None else None
        stored = Event.model_construct(
            topic=topic,
            payload=event.payload,
            source=event.source,
            published_at=event.published_at,
            offset=offset,
            traceparent=traceparent,
        )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = (offset, topic, payload, event.source, event.published_at, traceparent)
        self._queue.append(_Queued(offset, row, stored, future, matched))
        self._queue_wake.set()
        await future
        return offset

    async def _make_room(self, topic: str) -> None:
        """Apply each full matching subscriber's overflow policy; return once every one has room."""
        delivering = _DELIVERING.get()
        deadline: float | None = None
        while True:
            full = next(
                (
                    s
                    for s in self._subs.values()
                    if s.ready and not s.has_room() and s is not delivering and s.match(topic)
                ),
                None,
            )
            if full is None:
                return
            if full.overflow == "reject":
                full.count("rejected")
                raise EventRejected(
                    f"subscriber {full.name} has {full.pending} unacknowledged events"
                    f" (max_in_flight {full.max_in_flight}, overflow reject); {topic} not stored"
                )
            if full.overflow == "drop_oldest":
                full.to_drop += 1
                full.pending -= 1
                continue
            if deadline is None:
                deadline = time.monotonic() + self.config.block_timeout
                full.count("blocked")
            began = time.monotonic()
            full.space.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - began)):
                    await full.space.wait()
            except TimeoutError:
                full.count("block_timeouts")
                raise EventRejected(
                    f"subscriber {full.name} stayed full ({full.pending} unacknowledged, max_in_flight"
                    f" {full.max_in_flight}) for {self.config.block_timeout:g}s; {topic} not stored"
                ) from None
            finally:
                full.count("blocked_seconds", time.monotonic() - began)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _commit_rows(self, rows: list[tuple[int, str, str, str | None, float, str | None]]) -> None:
        """Insert ``rows`` in one transaction (on the writer thread)."""
        conn = self._write_conn
        assert conn is not None
        if self.db.file_problem() is not None:
            raise RefactorbotError(f"{self.db.file_problem()}; write refused")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, rows)
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._queue_wake.clear()
                await self._queue_wake.wait()
                # One more turn of the loop: publishers that are ready join this batch.
                await asyncio.sleep(0)
                continue
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._write_thread, self._commit_rows, [q.row for q in batch]
                )
            except Exception as exc:  # the publishers get the reason; the offsets stay unused
                self.write_errors += len(batch)
                reason = f"{len(batch)} events not stored: {one_line(exc, 200)}"
                log.error("event log write failed: %s", reason)
                for q in batch:
                    for sub in q.matched:
                        sub.pending -= 1
                        sub.space.set()
                    if not q.future.done():
                        q.future.set_exception(EventRejected(reason))
                self._committed = batch[-1].offset
                continue
            self.batches += 1
            self.published += len(batch)
            self.throughput.add(1, len(batch))
            for q in batch:
                self._window[q.offset] = q.event
                if not q.future.done():
                    q.future.set_result(None)
            self._committed = batch[-1].offset
            while len(self._window) > WINDOW:
                self._window.pop(self._window_floor, None)
                self._window_floor += 1
            for sub in self._subs.values():
                sub.wake.set()

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Deliver events matching ``pattern`` to ``handler`` from its stored offset; return the unsubscriber."""
        if self._writer is None:
            raise RuntimeError("event bus is not started")
        options = subscription_options(handler, pattern)
        if options.name in self._subs:
            raise ValueError(f"subscriber {options.name} is already subscribed")
        policy = self.config.subscribers.get(options.name)
        sub = Subscriber(
            name=options.name,
            pattern=pattern,
            handler=handler,
            start=options.start,
            max_in_flight=(policy and policy.max_in_flight) or self.config.max_in_flight,
            overflow=(policy and policy.overflow) or self.config.overflow,
            max_attempts=(policy and policy.max_attempts) or self.config.max_attempts,
            match=re.compile(translate(pattern)).match,
            snapshot=self._next - 1,
        )
        self._subs[sub.name] = sub
        sub.task = asyncio.get_running_loop().create_task(self._run(sub), name=f"eventbus:{sub.name}")

        def unsubscribe() -> None:
            if self._subs.get(sub.name) is sub:
                self._unsubscribe(sub)
                del self._subs[sub.name]
                if sub.task is not None and not sub.task.done():
                    self._retiring[sub.name] = sub
                    sub.task.add_done_callback(lambda _: self._retired(sub))

        return unsubscribe

    def _unsubscribe(self, sub: Subscriber) -> None:
        """Let the subscriber's current delivery finish, then stop its task; its offset is kept."""
        sub.closing = True
        sub.wake.set()
        sub.stopped.set()
        sub.space.set()  # publishers blocked on it go on
        self._mark(sub)

    def _retired(self, sub: Subscriber) -> None:
        if self._retiring.get(sub.name) is sub:
            del self._retiring[sub.name]

    def subscriber(self, name: str) -> Subscriber | None:
        """Return the active subscriber ``name``, or ``None``."""
        return self._subs.get(name)

    def subscribers(self) -> list[Subscriber]:
        """Return the active subscribers."""
        return list(self._subs.values())

    @property
    def last_offset(self) -> int:
        """Return the offset of the last committed event (0: none yet)."""
        return self._committed

    def wake_requeued(self, name: str | None) -> None:
        """Tell active subscribers (``name``, or all) that some of their dead letters were requeued."""
        for sub in self._subs.values():
            if name is None or sub.name == name:
                sub.requeued = True
                sub.wake.set()

    async def rewind(self, name: str, offset: int) -> int:
        """Set subscriber ``name`` to deliver again from ``offset`` (events still retained); return its new acked offset."""
        acked = max(0, offset - 1)
        sub = self._subs.get(name)
        if sub is not None:
            # The running task drops the page it holds and reads from the new position.
            sub.acked = acked
            sub.epoch += 1
            sub.to_drop = 0
            sub.pending = await self._count(sub.pattern, acked, self._committed)
            sub.wake.set()
            self._mark(sub)
            await self._write_acks([sub])
            return acked
        if await self.db.scalar("SELECT 1 FROM subscribers WHERE name = ?", (name,)) is None:
            raise RefactorbotError(f"no subscriber named {name!r}")
        await self.db.execute_alone("UPDATE subscribers SET acked_offset = ? WHERE name = ?", (acked, name))
        return acked

    # -- delivering --------------------------------------------------------------------------

    async def _count(self, pattern: str, after: int, upto: int) -> int:
        if upto <= after:
            return 0
        value = await self.db.scalar(
            'SELECT count(*) FROM events WHERE "offset" > ? AND "offset" <= ? AND topic GLOB ?',
            (after, upto, glob_of(pattern)),
        )
        return int(value or 0)

    async def _load(self, sub: Subscriber) -> None:
        """Read (or create) the subscriber's row; count what it has not acknowledged."""
        old = self._retiring.get(sub.name)
        if old is not None and old.task is not None:  # its last delivery ends first, and its offset is written
            await asyncio.wait([old.task], timeout=self.config.handler_timeout)
            await self._write_acks([old])
        now = time.time()
        row = await self.db.fetchone(
            "SELECT acked_offset, " + ", ".join(_COUNTERS) + ", last_error FROM subscribers WHERE name = ?",  # noqa: S608  names from _COUNTERS; values are ? parameters
            (sub.name,),
        )
        if row is None:
            if sub.start == "latest":
                acked = sub.snapshot
            elif sub.start == "earliest":
                acked = 0
            else:
                acked = max(0, int(sub.start) - 1)
            await self.db.execute_alone(
                "INSERT INTO subscribers (name, pattern, acked_offset, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
                (sub.name, sub.pattern, acked, now, now),
            )
            log.info("new subscriber %s (%s) starts after offset %d", sub.name, sub.pattern, acked)
        else:
            acked = int(row["acked_offset"])
            for name in _COUNTERS:
                sub.counters[name] = row[name]
            sub.last_error = row["last_error"]
            await self.db.execute_alone(
                "UPDATE subscribers SET pattern = ?, last_seen_at = ? WHERE name = ?", (sub.pattern, now, sub.name)
            )
        sub.acked = acked
        sub.loaded = True
        sub.pending += await self._count(sub.pattern, acked, sub.snapshot)
        sub.ready = True

    async def _run(self, sub: Subscriber) -> None:
        try:
            await self._load(sub)
            while not sub.closing:
                if sub.requeued:
                    await self._redeliver(sub)
                    continue
                epoch = sub.epoch
                events, scanned = await self._fetch(sub)
                for event in events:
                    if sub.closing or sub.epoch != epoch:
                        break
                    assert event.offset is not None
                    if event.offset <= sub.acked:  # expired meanwhile
                        continue
                    if sub.to_drop > 0:
                        sub.to_drop -= 1
                        sub.count("dropped")
                    else:
                        sub.current = event.offset
                        outcome = await self._deliver(sub, event)
                        sub.current = None
                        if outcome == "stopped" or sub.epoch != epoch:
                            break
                        sub.pending -= 1
                    sub.acked = max(sub.acked, event.offset)
                    self._mark(sub)
                    if sub.has_room():
                        sub.space.set()
                else:
                    if scanned > sub.acked and sub.epoch == epoch:
                        sub.acked = scanned
                        self._mark(sub)
                    if not events and sub.acked >= self._committed and not sub.requeued:
                        sub.wake.clear()
                        if sub.acked >= self._committed and not sub.closing:
                            await sub.wake.wait()
        except Exception:  # a broken log read: the subscriber stops; its offset is kept for the next start
            log.exception("subscriber %s stopped", sub.name)
        finally:
            sub.ready = False
            sub.space.set()

    async def _fetch(self, sub: Subscriber) -> tuple[list[Event], int]:
        """Return up to ``PAGE`` matching events after the subscriber's offset, and how far it looked."""
        after, upto = sub.acked, self._committed
        if after >= upto:
            return [], after
        if after + 1 >= self._window_floor:
            found: list[Event] = []
            offset = after
            window = self._window
            limit = min(upto, after + 8 * PAGE)
            while offset < limit and len(found) < PAGE:
                offset += 1
                event = window.get(offset)
                if event is not None and sub.match(event.topic):
                    found.append(event)
            return found, offset
        rows = await self.db.fetchall(
            'SELECT "offset", topic, payload, source, published_at, traceparent FROM events'
            ' WHERE "offset" > ? AND "offset" <= ? AND topic GLOB ? ORDER BY "offset" LIMIT ?',
            (after, upto, glob_of(sub.pattern), PAGE),
        )
        events = [
            Event.model_construct(
                topic=r["topic"],
                payload=json.loads(r["payload"]),
                source=r["source"],
                published_at=r["published_at"],
                offset=r["offset"],
                traceparent=r["traceparent"],
            )
            for r in rows
            if sub.match(r["topic"])
        ]
        scanned = rows[-1]["offset"] if len(rows) == PAGE else upto
        return events, scanned

    async def _deliver(self, sub: Subscriber, event: Event) -> str:
        """Deliver ``event`` until acknowledged or ``max_attempts`` failures (then dead-lettered).

        Return ``"acked"``, ``"dead"``, or ``"stopped"``: unsubscribed while waiting to retry, the
        event stays unacknowledged and is delivered again at the next subscription.
        """
        attempt = 0
        limit = sub.max_attempts
        while True:
            attempt += 1
            token = _DELIVERING.set(sub)
            try:
                with delivery_span(event, sub.handler) as span:
                    span.set_attribute("messaging.consumer.group.name", sub.name)
                    span.set_attribute("refactorbot.delivery.attempt", attempt)
                    if event.offset is not None:
                        span.set_attribute("refactorbot.event.offset", event.offset)
                    try:
                        async with asyncio.timeout(self.config.handler_timeout):
                            await sub.handler(event)
                    except Exception as exc:
                        span.set_error(type(exc).__qualname__, _failure(exc, self.config.handler_timeout))
                        raise
            except Exception as exc:
                reason = _failure(exc, self.config.handler_timeout)
                sub.count("failures")
                sub.last_error = reason
                self.throughput.add(3)
                if attempt >= limit:
                    await self._dead_letter(sub, event, attempt, reason)
                    return "dead"
                sub.count("retries")
                delay = min(self.config.retry_backoff * 2 ** (attempt - 1), self.config.retry_backoff_max)
                log.warning(
                    "subscriber %s failed on %s #%s (attempt %d of %d): %s; retrying in %gs",
                    sub.name,
                    event.topic,
                    event.offset,
                    attempt,
                    limit,
                    reason,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await sub.stopped.wait()
                if sub.closing:
                    return "stopped"
            else:
                sub.count("delivered")
                self.throughput.add(2)
                return "acked"
            finally:
                _DELIVERING.reset(token)

    async def _dead_letter(self, sub: Subscriber, event: Event, attempts: int, reason: str) -> None:
        await self.db.execute_alone(
            'INSERT INTO dead_letters (subscriber, "offset", topic, payload, source, published_at, attempts, error,'
            " dead_at, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sub.name,
                event.offset,
                event.topic,
                json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")),
                event.source,
                event.published_at,
                attempts,
                reason,
                time.time(),
                event.traceparent,
            ),
        )
        sub.count("dead")
        log.error(
            "subscriber %s: %s #%s dead-lettered after %d attempts: %s",
            sub.name,
            event.topic,
            event.offset,
            attempts,
            reason,
        )

    async def _redeliver(self, sub: Subscriber) -> None:
        """Deliver the subscriber's requeued dead letters (a fresh set of attempts each)."""
        sub.requeued = False
        while not sub.closing:
            rows = await self.db.fetchall(
                'SELECT id, "offset", topic, payload, source, published_at, traceparent FROM dead_letters'
                " WHERE subscriber = ? AND status = 'requeued' ORDER BY id LIMIT 100",
                (sub.name,),
            )
            if not rows:
                return
            for r in rows:
                if sub.closing:
                    return
                event = Event.model_construct(
                    topic=r["topic"],
                    payload=json.loads(r["payload"]),
                    source=r["source"],
                    published_at=r["published_at"],
                    offset=r["offset"],
                    traceparent=r["traceparent"],
                )
                # Failing again, it gets a new dead letter row and this one goes.
                outcome = await self._deliver(sub, event)
                if outcome == "stopped":
                    return
                if outcome == "acked":
                    await self.db.execute_alone(
                        "UPDATE dead_letters SET status = 'redelivered', redelivered_at = ? WHERE id = ?",
                        (time.time(), r["id"]),
                    )
                else:
                    await self.db.execute_alone("DELETE FROM dead_letters WHERE id = ?", (r["id"],))
                self._mark(sub)

    # -- offsets and counters ----------------------------------------------------------------

    def _mark(self, sub: Subscriber) -> None:
        self._dirty[sub.name] = sub
        self._dirty_wake.set()

    async def _ack_loop(self) -> None:
        while True:
            await self._dirty_wake.wait()
            await asyncio.sleep(ACK_INTERVAL)
            self._dirty_wake.clear()
            dirty, self._dirty = self._dirty, {}
            try:
                await self._write_acks(list(dirty.values()))
            except Exception:  # kept in memory; written with the next change or at stop
                self._dirty = {**dirty, **self._dirty}
                log.exception("writing subscriber offsets failed")

    async def _write_acks(self, subs: list[Subscriber]) -> None:
        if not subs or not self.db.is_open:
            return
        now = time.time()
        rows = [(s.acked, now, *(s.counters[c] for c in _COUNTERS), s.last_error, s.name) for s in subs if s.loaded]
        if not rows:
            return
        sets = ", ".join(f"{c} = ?" for c in _COUNTERS)
        async with self.db.transaction() as conn:
            await conn.executemany(
                f"UPDATE subscribers SET acked_offset = ?, last_seen_at = ?, {sets}, last_error = ? WHERE name = ?",  # noqa: S608  names from _COUNTERS; values are ? parameters
                rows,
            )

    # -- retention ---------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.apply_retention()
            except Exception:  # retried at the next pass
                log.exception("event retention failed")
            await asyncio.sleep(self.config.retention_interval)

    async def apply_retention(self, now: float | None = None) -> dict[str, int]:
        """Delete events past ``retention_max_age`` or beyond ``retention_max_events``, read or not.

        Subscribers that had not acknowledged deleted events skip them, counted as ``expired``
        (and logged). Dead letters past ``dead_letter_max_age`` are deleted too. Return counts.
        """
        now = time.time() if now is None else now
        cut = max(0, self._committed - self.config.retention_max_events)
        cutoff = now - self.config.retention_max_age
        while True:  # the oldest events are the first ones: look at them a page at a time
            oldest = await self.db.fetchall(
                'SELECT "offset", published_at FROM events WHERE "offset" > ? ORDER BY "offset" LIMIT 1000', (cut,)
            )
            old = [r["offset"] for r in oldest if r["published_at"] < cutoff]
            if not old:
                break
            cut = max(cut, old[-1])
            if len(old) < len(oldest) or len(oldest) < 1000:
                break
        deleted = 0
        if cut > 0 and await self.db.scalar('SELECT 1 FROM events WHERE "offset" <= ? LIMIT 1', (cut,)):
            await self._expire(cut)
            while True:
                async with self.db.transaction() as conn:
                    cursor = await conn.execute(
                        'DELETE FROM events WHERE "offset" IN'
                        ' (SELECT "offset" FROM events WHERE "offset" <= ? ORDER BY "offset" LIMIT 5000)',
                        (cut,),
                    )
                    count = cursor.rowcount
                deleted += count
                if count < 5000:
                    break
                await asyncio.sleep(0)
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM dead_letters WHERE dead_at < ?", (now - self.config.dead_letter_max_age,)
            )
            letters = cursor.rowcount
        if deleted:
            log.info("retention deleted %d events (up to offset %d)", deleted, cut)
        return {"events": deleted, "dead_letters": letters, "cut": cut}

    async def _expire(self, cut: int) -> None:
        """Move every subscriber still behind ``cut`` past it, counting what it loses."""
        rows = await self.db.fetchall(
            "SELECT name, pattern, acked_offset FROM subscribers WHERE acked_offset < ?", (cut,)
        )
        for r in rows:
            sub = self._subs.get(r["name"])
            after = r["acked_offset"] if sub is None else sub.acked
            if sub is not None and sub.current is not None and sub.current <= cut:
                after = max(after, sub.current)
            lost = await self._count(r["pattern"], after, cut)
            if sub is not None:
                if sub.acked < cut:
                    sub.acked = cut
                sub.pending = max(0, sub.pending - lost)
                sub.count("expired", lost)
                sub.space.set()
                self._mark(sub)
            else:
                await self.db.execute_alone(
                    "UPDATE subscribers SET acked_offset = ?, expired = expired + ? WHERE name = ?",
                    (cut, lost, r["name"]),
                )
            if lost:
                log.warning(
                    "retention deleted %d events subscriber %s had not acknowledged (up to offset %d)",
                    lost,
                    r["name"],
                    cut,
                )
