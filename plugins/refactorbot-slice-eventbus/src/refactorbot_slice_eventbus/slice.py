"""The ``eventbus`` slice: the durable bus's log, subscribers and dead letters as operations.

The bus itself comes from ``provide_event_bus`` (``plugin.py``) before any slice starts; this slice
shares its database. When another process runs the bus of the same home, the slice opens the
database itself and answers what reads it; what changes the bus (publish, requeue, replay)
is refused with the process to ask instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from refactorbot import AtomicSlice, Event, RefactorbotError, operation

from refactorbot_slice_eventbus.bus import DurableEventBus, Subscriber, glob_of
from refactorbot_slice_eventbus.config import EventBusConfig
from refactorbot_slice_eventbus.models import (
    Bucket,
    Changed,
    DeadLetter,
    DeadLetterPage,
    DeadLettersParams,
    EventPage,
    EventsParams,
    ForgetParams,
    Published,
    PublishParams,
    Replayed,
    ReplayParams,
    RetentionResult,
    SelectLetters,
    Stats,
    StatsParams,
    StoredEvent,
    SubscriberRow,
)

_COUNTS = ("delivered", "failures", "retries", "dead", "dropped", "rejected", "blocked", "block_timeouts", "expired")


class EventBusSlice(AtomicSlice):
    """The durable event bus: its log, throughput, subscribers (lag, counters) and dead letters."""

    slice_id = "eventbus"
    description = "Durable event bus: log, subscribers, lag, dead letters, requeue, replay"
    Config = EventBusConfig
    config: EventBusConfig

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.bus: DurableEventBus | None = None

    async def initialize(self) -> None:
        """Share the running bus's database, or open it when another process runs the bus."""
        # ``bus`` is a public member of the running host (``MasterCore.bus``).
        bus = getattr(self.ctx.host, "bus", None)
        self.bus = bus if isinstance(bus, DurableEventBus) else None
        if self.bus is not None:
            self.db = self.bus.db
        else:
            await super().initialize()

    async def shutdown(self) -> None:
        """Close the database if this slice opened it (the bus closes its own)."""
        if self.bus is not None:
            self.db, self.bus = None, None
            return
        await super().shutdown()

    def _running_bus(self) -> DurableEventBus:
        if self.bus is None:
            holder = self._holder()
            raise RefactorbotError(
                f"the durable event bus of this home runs in {holder}; run this against its server"
                if holder
                else "the durable event bus is not running in this process (another bus plugin replaced it)"
            )
        return self.bus

    def _holder(self) -> str | None:
        lock = self.ctx.data_dir / "eventbus.lock"
        try:
            pid = lock.read_text(encoding="ascii").strip()
        except OSError:
            return None
        return f"process {pid}" if pid.isdigit() else None

    def _database(self) -> Any:
        assert self.db is not None  # opened by initialize
        return self.db

    # -- publishing --------------------------------------------------------------------------

    @operation
    async def publish(self, params: PublishParams) -> Published:
        """Store an event on the bus and return its offset (stored before this returns)."""
        bus = self._running_bus()
        event = Event(topic=params.topic, payload=params.payload, source=params.source or "eventbus")
        offset = await bus.append(event)
        return Published(offset=offset, topic=params.topic)

    # -- reading -----------------------------------------------------------------------------

    @operation
    async def stats(self, params: StatsParams) -> Stats:
        """Return the log's bounds, throughput over the last seconds, every subscriber and its lag."""
        db = self._database()
        first = await db.scalar('SELECT min("offset") FROM events')
        last = await db.scalar('SELECT max("offset") FROM events')
        stored = await db.scalar("SELECT count(*) FROM events")
        subscribers = await self._subscriber_rows()
        dead = await db.scalar("SELECT count(*) FROM dead_letters WHERE status = 'dead'")
        bus = self.bus
        buckets = bus.throughput.since(params.seconds) if bus is not None else []
        window = [b for b in buckets if b[0] < int(time.time())][-10:]
        span = max(1, len(window))
        return Stats(
            running=bus is not None,
            first_offset=first,
            last_offset=bus.last_offset if bus is not None else int(last or 0),
            stored=int(stored or 0),
            published=bus.published if bus is not None else 0,
            batches=bus.batches if bus is not None else 0,
            write_errors=bus.write_errors if bus is not None else 0,
            started_at=bus.started_at if bus is not None else None,
            published_per_second=sum(b[1] for b in window) / span,
            delivered_per_second=sum(b[2] for b in window) / span,
            throughput=[Bucket(second=b[0], published=b[1], delivered=b[2], failed=b[3]) for b in buckets],
            subscribers=subscribers,
            dead_letters=int(dead or 0),
        )

    async def _subscriber_rows(self) -> list[SubscriberRow]:
        db = self._database()
        rows = await db.fetchall("SELECT * FROM subscribers ORDER BY name")
        letters = {
            r["subscriber"]: r["n"]
            for r in await db.fetchall(
                "SELECT subscriber, count(*) AS n FROM dead_letters WHERE status = 'dead' GROUP BY subscriber"
            )
        }
        last = (
            self.bus.last_offset
            if self.bus is not None
            else int(await db.scalar('SELECT max("offset") FROM events') or 0)
        )
        found = []
        for r in rows:
            sub: Subscriber | None = self.bus.subscriber(r["name"]) if self.bus is not None else None
            policy = self.config.subscribers.get(r["name"])
            if sub is not None and sub.loaded:
                counts: dict[str, Any] = {name: int(sub.counters[name]) for name in _COUNTS}
                counts["blocked_seconds"] = float(sub.counters["blocked_seconds"])
                acked, lag, error = sub.acked, max(0, sub.pending), sub.last_error
                limits = (sub.max_in_flight, sub.overflow, sub.max_attempts)
            else:
                counts = {name: int(r[name]) for name in _COUNTS}
                counts["blocked_seconds"] = float(r["blocked_seconds"])
                acked, error = int(r["acked_offset"]), r["last_error"]
                lag = int(
                    await db.scalar(
                        'SELECT count(*) FROM events WHERE "offset" > ? AND topic GLOB ?',
                        (acked, glob_of(r["pattern"])),
                    )
                    or 0
                )
                limits = (
                    (policy and policy.max_in_flight) or self.config.max_in_flight,
                    (policy and policy.overflow) or self.config.overflow,
                    (policy and policy.max_attempts) or self.config.max_attempts,
                )
            found.append(
                SubscriberRow(
                    name=r["name"],
                    pattern=sub.pattern if sub is not None else r["pattern"],
                    active=sub is not None,
                    acked_offset=acked,
                    lag=lag,
                    behind=max(0, last - acked),
                    in_delivery=sub.current if sub is not None else None,
                    max_in_flight=limits[0],
                    overflow=limits[1],
                    max_attempts=limits[2],
                    dead_letters=letters.get(r["name"], 0),
                    last_error=error,
                    last_seen_at=time.time() if sub is not None else r["last_seen_at"],
                    **counts,
                )
            )
        return found

    @operation
    async def events(self, params: EventsParams) -> EventPage:
        """Return a page of the log: the newest first, or the oldest after an offset."""
        db = self._database()
        where, args = ['"offset" > ?'], [params.after]
        if params.topic:
            where.append("topic GLOB ?")
            args.append(glob_of(params.topic))  # type: ignore[arg-type]
        order = "DESC" if params.newest else "ASC"
        rows = await db.fetchall(
            f'SELECT "offset", topic, payload, source, published_at FROM events WHERE {" AND ".join(where)}'  # noqa: S608  fixed clauses; values are ? parameters
            f' ORDER BY "offset" {order} LIMIT ?',
            (*args, params.limit),
        )
        return EventPage(
            items=[
                StoredEvent(
                    offset=r["offset"],
                    topic=r["topic"],
                    payload=json.loads(r["payload"]),
                    source=r["source"],
                    published_at=r["published_at"],
                )
                for r in rows
            ]
        )

    @operation
    async def dead_letters(self, params: DeadLettersParams) -> DeadLetterPage:
        """Return dead letters, newest first (filter by subscriber and status)."""
        db = self._database()
        where, args = ["1 = 1"], []
        if params.subscriber:
            where.append("subscriber = ?")
            args.append(params.subscriber)
        if params.status != "all":
            where.append("status = ?")
            args.append(params.status)
        if params.before_id:
            where.append("id < ?")
            args.append(str(params.before_id))
        rows = await db.fetchall(
            f"SELECT * FROM dead_letters WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",  # noqa: S608  fixed clauses; values are ? parameters
            (*args, params.limit + 1),
        )
        items = [DeadLetter(**{**dict(r), "payload": json.loads(r["payload"])}) for r in rows[: params.limit]]
        more = len(rows) > params.limit
        return DeadLetterPage(items=items, next_before_id=items[-1].id if more and items else None)

    # -- changing ----------------------------------------------------------------------------

    def _selection(self, params: SelectLetters, status: str) -> tuple[str, list[Any]]:
        if params.ids is not None:
            marks = ", ".join("?" for _ in params.ids)
            return f"status = ? AND id IN ({marks})", [status, *params.ids]
        if params.subscriber is not None:
            return "status = ? AND subscriber = ?", [status, params.subscriber]
        return "status = ?", [status]

    @operation
    async def requeue(self, params: SelectLetters) -> Changed:
        """Deliver dead letters again (a fresh set of attempts): by ids, of a subscriber, or all."""
        bus = self._running_bus()
        where, args = self._selection(params, "dead")
        async with bus.db.transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE dead_letters SET status = 'requeued', requeued_at = ? WHERE {where}",  # noqa: S608  fixed clauses; values are ? parameters
                (time.time(), *args),
            )
            count = cursor.rowcount
        if count:
            bus.wake_requeued(params.subscriber)
            self.log.info("requeued %d dead letters", count)
        return Changed(count=count)

    @operation
    async def discard(self, params: SelectLetters) -> Changed:
        """Delete dead letters for good: by ids, of a subscriber, or all."""
        bus = self._running_bus()
        where, args = self._selection(params, "dead")
        async with bus.db.transaction() as conn:
            cursor = await conn.execute(f"DELETE FROM dead_letters WHERE {where}", args)  # noqa: S608  fixed clauses; values are ? parameters
            return Changed(count=cursor.rowcount)

    @operation
    async def replay(self, params: ReplayParams) -> Replayed:
        """Deliver a subscriber's events again from an offset (the events retention kept)."""
        bus = self._running_bus()
        acked = await bus.rewind(params.subscriber, params.from_offset)
        first = await bus.db.scalar('SELECT min("offset") FROM events')
        return Replayed(subscriber=params.subscriber, acked_offset=acked, first_offset=first)

    @operation
    async def forget(self, params: ForgetParams) -> Changed:
        """Delete an inactive subscriber's offset and counters (its dead letters stay)."""
        bus = self._running_bus()
        if bus.subscriber(params.subscriber) is not None:
            raise RefactorbotError(f"subscriber {params.subscriber} is active; stop its slice first")
        async with bus.db.transaction() as conn:
            cursor = await conn.execute("DELETE FROM subscribers WHERE name = ?", (params.subscriber,))
            count = cursor.rowcount
        if not count:
            raise RefactorbotError(f"no subscriber named {params.subscriber!r}")
        return Changed(count=count)

    @operation
    async def retention(self) -> RetentionResult:
        """Apply retention now: delete events past the age or count limit, and old dead letters."""
        result = await self._running_bus().apply_retention()
        return RetentionResult(**result)
