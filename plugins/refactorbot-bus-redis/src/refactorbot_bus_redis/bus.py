"""``RedisEventBus``: the event bus on one Redis stream, shared by every host of a deployment.

The stream
    Every event is one entry of ``rb:{<namespace>}:events`` whose ID is ``<offset>-0``: the
    publish script gives it the next offset of the deployment, so ``Event.offset`` is the same
    number on every host and on every redelivery. ``publish`` returns once Redis has the entry.

Subscribers
    A subscriber's name (``subscription_options``) is a consumer group. Every host that runs the
    same slice joins that group with its own consumer (``<node>:<pid>:<random>``), so each event
    goes to one host of the group: two hosts with the same slices share its events, and every
    group gets every event. Each subscriber reads in batches (``XREADGROUP``), acknowledges the
    entries its pattern does not match without calling the handler, and delivers the others one
    at a time, in stream order. A handler that returns acknowledges (``XACK``, sent with the next
    batch); one that raises or runs past ``handler_timeout`` is retried after ``retry_backoff``
    seconds, doubling. Each retry re-claims the entry, so Redis counts the delivery; after
    ``max_attempts`` deliveries — counting those to consumers that crashed — the entry is copied
    to the dead-letter stream and acknowledged.

Dead consumers
    An entry stays pending on the consumer that read it until acknowledged. While a handler runs
    or waits to retry, its consumer re-claims the entries it holds every ``claim_idle / 3``
    seconds, so they never look idle. A consumer that died stops doing so: once an entry of it
    has been idle ``claim_idle`` seconds, any consumer of the group takes it (``XAUTOCLAIM``) and
    delivers it. A consumer that stops cleanly marks what it still holds idle, so that the next
    one takes it at once.

Trimming
    See ``scripts``: ``MAXLEN ~`` sized from the oldest entry some group still needs, so nothing
    unacknowledged is trimmed; past ``max_unacked`` such entries, ``publish`` is refused instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any

from refactorbot import (
    Event,
    EventBus,
    EventRejected,
    RefactorbotError,
    delivery_span,
    one_line,
    subscription_options,
    tracing,
)

from refactorbot_bus_redis import scripts
from refactorbot_bus_redis.config import Keys, RedisConfig, client_of

log = logging.getLogger("refactorbot.bus.redis")

Handler = Callable[[Event], Awaitable[None]]

#: Longest topic accepted (as the durable SQLite bus).
MAX_TOPIC = 200
_TOPIC = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
#: Oldest Redis that has everything used here (XAUTOCLAIM's deleted IDs, XINFO's fields).
MIN_REDIS = (7, 0)
_COUNTERS = ("delivered", "skipped", "failures", "retries", "dead", "claimed", "claim_passes", "lost")


def _failure(exc: BaseException, timeout: float) -> str:
    """Return why a handler failed, in one line (a timeout says after how long)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    return one_line(f"{type(exc).__name__}: {exc}", 500)


class Stopped(Exception):
    """The subscriber is closing: what it holds is left pending for the next consumer."""


@dataclass(eq=False)
class Entry:
    """A stream entry this consumer holds: read or claimed, not acknowledged yet."""

    id: bytes
    fields: dict[bytes, bytes]
    #: Deliveries so far, as Redis counts them (this one included).
    deliveries: int
    #: Set when the entry is to be dead-lettered (kept if writing the dead letter must be retried).
    dead_reason: str | None = None

    @property
    def offset(self) -> int:
        return int(self.id.split(b"-", 1)[0])


@dataclass(eq=False)
class Subscriber:
    """One subscription: a consumer group of its own name, its handler and counters."""

    name: str
    pattern: str
    handler: Handler
    start: str | int
    max_attempts: int
    match: Callable[[str], Any]
    backlog: deque[Entry] = field(default_factory=deque)
    acks: list[bytes] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    last_error: str | None = None
    #: Offset of the last entry acknowledged here (where to recreate a group Redis lost).
    last_offset: int = 0
    closing: bool = False
    reading: bool = False
    group_ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount


class _Backoff:
    """Growing, jittered waits between attempts to reach Redis again."""

    def __init__(self, first: float = 0.05, cap: float = 2.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        wait = self.current * (0.5 + random.random() / 2)  # noqa: S311  reconnect jitter, not a secret
        self.current = min(self.cap, self.current * 2)
        return wait

    def reset(self) -> None:
        self.current = self.first


def _unreachable(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | OSError)


class RedisEventBus(EventBus):
    """The event bus on Redis Streams; see the module docstring for how it delivers."""

    def __init__(self, config: RedisConfig) -> None:
        if config.url is None:
            raise ValueError("[plugins.redis] url is not set")
        self.config = config
        self.keys = Keys(config.namespace)
        self.where = config.where()
        self.consumer = config.consumer_name()
        self._client: Any = None
        self._publish_script: Any = None
        self._trim_script: Any = None
        self._subs: dict[str, Subscriber] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closing = False
        self._stopping = asyncio.Event()
        self.published = 0
        self.publish_retries = 0
        self.rejected = 0
        #: The last trim pass: {"floor", "group", "trimmed", "last"}.
        self.floor: dict[str, Any] = {}
        claim_idle = config.claim_idle
        self._claim_idle_ms = max(1, int(claim_idle * 1000))
        self._claim_interval = max(0.01, min(claim_idle / 2, 5.0))
        self._touch_interval = max(0.01, claim_idle / 3)
        self._block_ms = max(1, int(min(self._claim_interval, config.command_timeout / 2) * 1000))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the server, start the trim and keep-alive tasks and queued subscribers."""
        self._client = client_of(self.config)
        try:
            info = await self._client.info("server")
        except Exception as exc:
            await self._client.aclose()
            self._client = None
            raise RefactorbotError(f"Redis at {self.where} unreachable: {one_line(exc, 200)}") from None
        version = tuple(int(p) for p in re.findall(r"\d+", str(info.get("redis_version", "0")))[:2])
        if version < MIN_REDIS:
            await self._client.aclose()
            self._client = None
            raise RefactorbotError(
                f"Redis at {self.where} is version {info.get('redis_version')}; the event bus needs 7.0 or later"
            )
        self._publish_script = self._client.register_script(scripts.PUBLISH)
        self._trim_script = self._client.register_script(scripts.TRIM)
        self._closing = False
        self._stopping = asyncio.Event()
        self._started = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._trim_loop(), name="redis-bus-trim"),
            loop.create_task(self._touch_loop(), name="redis-bus-keepalive"),
        ]
        for sub in self._subs.values():
            if sub.task is None:
                sub.task = loop.create_task(self._run(sub), name=f"redis-bus:{sub.name}")
        log.info(
            "event bus on Redis at %s, namespace %s, consumer %s", self.where, self.config.namespace, self.consumer
        )

    async def stop(self) -> None:
        """Let running handlers finish (``stop_timeout``), acknowledge what is done, hand back the rest."""
        if not self._started:
            return
        self._closing = True
        self._stopping.set()
        subs = list(self._subs.values())
        for sub in subs:
            self._close(sub)
        running = [s.task for s in subs if s.task is not None and not s.task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=self.config.stop_timeout)
            for task in late:
                task.cancel()
            if late:  # each hands back what it holds: one command, bounded by the command timeout
                await asyncio.wait(late, timeout=self.config.command_timeout + 1)
        # The background loops end at their next turn; a command they are in is bounded too.
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.config.command_timeout + 1)
            for task in late:
                task.cancel()
        self._tasks = []
        self._subs.clear()
        self._started = False
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Append ``event`` to the stream, then return; raise ``EventRejected`` when refused."""
        await self.append(event)

    async def append(self, event: Event) -> int:
        """Like ``publish``; return the event's offset."""
        if not self._started or self._closing:
            raise RuntimeError("event bus is not started")
        topic = event.topic
        if not topic or len(topic) > MAX_TOPIC or not _TOPIC.match(topic):
            raise EventRejected(f"invalid topic {topic[:60]!r}: 1-{MAX_TOPIC} printable characters, no spaces")
        try:
            payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise EventRejected(f"payload of {topic} cannot be stored as JSON: {one_line(exc, 200)}") from None
        encoded = payload.encode()
        if len(encoded) > self.config.max_payload_bytes:
            raise EventRejected(
                f"payload of {topic} is {len(encoded)} bytes, over max_payload_bytes {self.config.max_payload_bytes}"
            )
        # A subscriber of this process that is still creating its group sees this event.
        for sub in list(self._subs.values()):
            if not sub.group_ready.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.publish_timeout):
                        await sub.group_ready.wait()
        publish_id = secrets.token_hex(8)
        args = [
            self.config.max_len,
            self.config.max_unacked,
            0,
            publish_id,
            topic,
            encoded,
            event.source or "",
            repr(float(event.published_at)),
            # Only a valid traceparent is stored: each delivery's span names it as its parent.
            event.traceparent if tracing.parse_traceparent(event.traceparent) is not None else "",
        ]
        result = await self._run_publish(args, topic)
        if result[0] == -1:  # the floor may be stale: look again before refusing
            await self.trim()
            result = await self._run_publish(args, topic)
        if result[0] == -1:
            self.rejected += 1
            group = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
            raise EventRejected(
                f"subscriber {group or '?'} has {result[2]} unacknowledged events"
                f" (max_unacked {self.config.max_unacked}); {topic} not stored"
            )
        self.published += 1
        return int(result[1].split(b"-", 1)[0])

    async def _run_publish(self, args: list[Any], topic: str) -> list[Any]:
        from redis.exceptions import ResponseError

        deadline = time.monotonic() + self.config.publish_timeout
        backoff = _Backoff()
        while True:
            try:
                result: list[Any] = await self._publish_script(keys=self._stream_keys, args=args)
                return result
            except ResponseError as exc:
                raise EventRejected(f"Redis at {self.where} refused {topic}: {one_line(exc, 200)}") from None
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                if time.monotonic() >= deadline or self._closing:
                    raise EventRejected(
                        f"Redis at {self.where} unreachable ({one_line(exc, 120)}); {topic} not stored"
                    ) from None
                self.publish_retries += 1
                args[2] = 1  # the lost reply may have followed a stored entry: look for it first
                await asyncio.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))

    @property
    def _stream_keys(self) -> list[str]:
        return [self.keys.events, self.keys.seq, self.keys.floor]

    async def trim(self) -> dict[str, Any]:
        """Compute the floor and trim the stream now; return ``{floor, group, trimmed, last}``."""
        floor, group, trimmed, last = await self._trim_script(
            keys=self._stream_keys, args=[self.config.max_len, repr(time.time())]
        )
        self.floor = {
            "floor": int(floor),
            "group": group.decode() if isinstance(group, bytes) else str(group),
            "trimmed": int(trimmed),
            "last": int(last),
        }
        return self.floor

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the bus stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _trim_loop(self) -> None:
        while not self._closing:
            try:
                result = await self.trim()
                if result["trimmed"]:
                    log.debug("trimmed %d entries (floor %d)", result["trimmed"], result["floor"])
            except Exception as exc:  # the next pass tries again; an outage is reported by the subscribers
                log.debug("trim pass failed: %s", one_line(exc, 200))
            await self._idle(self.config.trim_interval)

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Join the consumer group of the handler's subscriber name; return the unsubscriber."""
        if self._closing:
            raise RuntimeError("event bus is stopping")
        options = subscription_options(handler, pattern)
        if options.name in self._subs:
            raise ValueError(f"subscriber {options.name} is already subscribed")
        policy = self.config.subscribers.get(options.name)
        sub = Subscriber(
            name=options.name,
            pattern=pattern,
            handler=handler,
            start=options.start,
            max_attempts=(policy and policy.max_attempts) or self.config.max_attempts,
            match=re.compile(translate(pattern)).match,
        )
        self._subs[sub.name] = sub
        if self._started:
            sub.task = asyncio.get_running_loop().create_task(self._run(sub), name=f"redis-bus:{sub.name}")

        def unsubscribe() -> None:
            if self._subs.get(sub.name) is sub:
                del self._subs[sub.name]
                self._close(sub)

        return unsubscribe

    def _close(self, sub: Subscriber) -> None:
        """Stop the subscriber after its running delivery; a blocking read is cut short."""
        sub.closing = True
        sub.stopped.set()
        sub.group_ready.set()
        if sub.reading and sub.task is not None:
            sub.task.cancel()

    def subscribers(self) -> list[Subscriber]:
        """Return the active subscribers."""
        return list(self._subs.values())

    def stats(self) -> dict[str, Any]:
        """Return the bus's counters and each subscriber's."""
        return {
            "redis": self.where,
            "namespace": self.config.namespace,
            "consumer": self.consumer,
            "published": self.published,
            "publish_retries": self.publish_retries,
            "rejected": self.rejected,
            "floor": dict(self.floor),
            "subscribers": {
                s.name: {"pattern": s.pattern, "held": len(s.backlog), **s.counters, "last_error": s.last_error}
                for s in self._subs.values()
            },
        }

    # -- delivering --------------------------------------------------------------------------

    async def _ensure_group(self, sub: Subscriber, recreate: bool = False) -> None:
        """Create the subscriber's group where its ``start`` says (kept if it exists)."""
        from redis.exceptions import ResponseError

        if recreate:
            begin = f"{sub.last_offset}-0"
        elif sub.start == "latest":
            begin = "$"
        elif sub.start == "earliest":
            begin = "0"
        else:
            begin = f"{int(sub.start) - 1}-0"
        try:
            await self._client.xgroup_create(self.keys.events, sub.name, id=begin, mkstream=True)
            where = "from now on" if begin == "$" else f"after offset {begin.split('-')[0]}"
            log.info("new subscriber %s (%s) reads %s", sub.name, sub.pattern, where)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        sub.group_ready.set()

    async def _run(self, sub: Subscriber) -> None:
        from redis.exceptions import ResponseError

        backoff = _Backoff()
        outage: str | None = None
        next_claim = 0.0
        group_known = False
        try:
            while not sub.closing:
                try:
                    if not group_known:
                        await self._ensure_group(sub, recreate=sub.last_offset > 0)
                        group_known = True
                    if not sub.backlog and time.monotonic() >= next_claim:
                        more = await self._claim(sub)
                        next_claim = 0.0 if more else time.monotonic() + self._claim_interval
                    if not sub.backlog:
                        await self._read(sub)
                    while sub.backlog and not sub.closing:
                        await self._handle(sub, sub.backlog[0])
                        sub.backlog.popleft()
                    await self._flush_acks(sub)
                    if outage is not None:
                        log.warning("subscriber %s: Redis at %s reachable again", sub.name, self.where)
                        outage = None
                        backoff.reset()
                except Stopped:
                    break
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        log.warning(
                            "subscriber %s: its group is gone from Redis; created again after offset %d",
                            sub.name,
                            sub.last_offset,
                        )
                        group_known = False
                        continue
                    log.error("subscriber %s: Redis refused: %s", sub.name, one_line(exc, 200))
                    await self._pause(sub, backoff.next())
                except Exception as exc:
                    if not _unreachable(exc):
                        raise
                    if outage is None:
                        outage = one_line(exc, 200)
                        log.warning(
                            "subscriber %s: Redis at %s unreachable (%s); retrying", sub.name, self.where, outage
                        )
                    await self._pause(sub, backoff.next())
        except asyncio.CancelledError:
            if not sub.closing:
                raise
        except Exception:  # a bug here must not pass silently; what it holds is claimed by another consumer
            log.exception("subscriber %s stopped", sub.name)
        finally:
            sub.reading = False
            sub.group_ready.set()
            await self._hand_back(sub)

    async def _pause(self, sub: Subscriber, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await sub.stopped.wait()

    async def _read(self, sub: Subscriber) -> None:
        sub.reading = True
        try:
            found = await self._client.xreadgroup(
                sub.name, self.consumer, {self.keys.events: ">"}, count=self.config.batch, block=self._block_ms
            )
        finally:
            sub.reading = False
        for _, entries in found or ():
            for entry_id, fields in entries:
                if fields is None:  # trimmed meanwhile (cannot be new, but be safe)
                    continue
                sub.backlog.append(Entry(entry_id, fields, 1))

    async def _claim(self, sub: Subscriber) -> bool:
        """Take entries idle for ``claim_idle`` from any consumer of the group; return if more wait."""
        key = self.keys.events
        sub.count("claim_passes")
        next_id, claimed, deleted = await self._client.xautoclaim(
            key, sub.name, self.consumer, self._claim_idle_ms, "0-0", count=self.config.batch
        )
        if deleted:
            sub.count("lost", len(deleted))
            log.warning(
                "subscriber %s: %d entries held by a stopped consumer were trimmed before they could be claimed",
                sub.name,
                len(deleted),
            )
        claimed = [(i, f) for i, f in claimed if f is not None]
        if not claimed:
            return False
        rows = await self._client.xpending_range(
            key, sub.name, claimed[0][0], claimed[-1][0], len(claimed) + len(sub.backlog), self.consumer
        )
        counts = {row["message_id"]: int(row["times_delivered"]) for row in rows}
        for entry_id, fields in claimed:
            sub.backlog.append(Entry(entry_id, fields, counts.get(entry_id, 1)))
        sub.count("claimed", len(claimed))
        log.info(
            "subscriber %s: claimed %d entries idle for %gs (a consumer stopped or died)",
            sub.name,
            len(claimed),
            self.config.claim_idle,
        )
        return next_id not in (b"0-0", "0-0")

    async def _handle(self, sub: Subscriber, entry: Entry) -> None:
        """Deliver ``entry`` until acknowledged or dead-lettered; raise ``Stopped`` when closing."""
        if entry.dead_reason is not None:
            await self._dead_letter(sub, entry, entry.dead_reason)
            return
        topic = entry.fields.get(b"t", b"").decode(errors="replace")
        if not sub.match(topic):
            sub.acks.append(entry.id)
            sub.count("skipped")
            return
        try:
            event = Event.model_construct(
                topic=topic,
                payload=json.loads(entry.fields[b"d"]),
                source=entry.fields[b"s"].decode() if b"s" in entry.fields else None,
                published_at=float(entry.fields.get(b"at", b"0")),
                offset=entry.offset,
                traceparent=entry.fields[b"tp"].decode() if b"tp" in entry.fields else None,
            )
        except (KeyError, ValueError) as exc:
            await self._dead_letter(sub, entry, f"unreadable entry: {one_line(exc, 200)}")
            return
        if entry.deliveries > sub.max_attempts:
            reason = (
                f"delivered {entry.deliveries - 1} times without an acknowledgement"
                " (the consumers holding it stopped or crashed)"
            )
            await self._dead_letter(sub, entry, reason)
            return
        while True:
            try:
                with delivery_span(event, sub.handler) as span:
                    span.set_attribute("messaging.consumer.group.name", sub.name)
                    span.set_attribute("refactorbot.delivery.attempt", entry.deliveries)
                    span.set_attribute("refactorbot.event.offset", entry.offset)
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
                if entry.deliveries >= sub.max_attempts:
                    await self._dead_letter(sub, entry, reason)
                    return
                sub.count("retries")
                delay = min(self.config.retry_backoff * 2 ** (entry.deliveries - 1), self.config.retry_backoff_max)
                log.warning(
                    "subscriber %s failed on %s #%d (delivery %d of %d): %s; retrying in %gs",
                    sub.name,
                    topic,
                    entry.offset,
                    entry.deliveries,
                    sub.max_attempts,
                    reason,
                    delay,
                )
                await self._pause(sub, delay)
                if sub.closing:
                    raise Stopped from None
                # Claimed again: Redis counts this delivery, so a crash does not reset the count.
                again = await self._client.xclaim(self.keys.events, sub.name, self.consumer, 0, [entry.id])
                if not again or again[0][1] is None:
                    sub.count("lost")
                    log.warning("subscriber %s: %s #%d left the stream before its retry", sub.name, topic, entry.offset)
                    return
                entry.deliveries += 1
            else:
                sub.acks.append(entry.id)
                sub.last_offset = max(sub.last_offset, entry.offset)
                sub.count("delivered")
                return

    async def _dead_letter(self, sub: Subscriber, entry: Entry, reason: str) -> None:
        entry.dead_reason = reason
        letter = {
            b"subscriber": sub.name.encode(),
            b"offset": str(entry.offset).encode(),
            b"topic": entry.fields.get(b"t", b""),
            b"payload": entry.fields.get(b"d", b""),
            b"published_at": entry.fields.get(b"at", b""),
            b"attempts": str(entry.deliveries).encode(),
            b"error": reason.encode(),
            b"consumer": self.consumer.encode(),
            b"dead_at": repr(time.time()).encode(),
        }
        if b"s" in entry.fields:
            letter[b"source"] = entry.fields[b"s"]
        if b"tp" in entry.fields:
            letter[b"traceparent"] = entry.fields[b"tp"]
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.dead, letter, maxlen=self.config.dead_letter_max_len, approximate=True)
            pipe.xack(self.keys.events, sub.name, entry.id)
            await pipe.execute()
        sub.last_offset = max(sub.last_offset, entry.offset)
        sub.count("dead")
        log.error(
            "subscriber %s: %s #%d dead-lettered after %d deliveries: %s",
            sub.name,
            entry.fields.get(b"t", b"").decode(errors="replace"),
            entry.offset,
            entry.deliveries,
            reason,
        )

    async def _flush_acks(self, sub: Subscriber) -> None:
        if sub.acks:
            acks = list(sub.acks)
            await self._client.xack(self.keys.events, sub.name, *acks)
            del sub.acks[: len(acks)]
            sub.last_offset = max(sub.last_offset, max(int(a.split(b"-", 1)[0]) for a in acks))

    async def _hand_back(self, sub: Subscriber) -> None:
        """Acknowledge what was done; mark what is still held idle so another consumer takes it now."""
        if self._client is None:
            return
        try:
            await self._flush_acks(sub)
            held = [e.id for e in sub.backlog]
            if held:
                await self._client.xclaim(
                    self.keys.events, sub.name, self.consumer, 0, held, idle=self._claim_idle_ms, justid=True
                )
                log.info("subscriber %s: handed back %d entries it had not delivered", sub.name, len(held))
        except Exception as exc:  # they are claimed after claim_idle instead
            log.warning("subscriber %s: could not hand back its entries: %s", sub.name, one_line(exc, 200))
        sub.backlog.clear()

    async def _touch_loop(self) -> None:
        """Re-claim the entries every subscriber holds, so they do not look idle to other consumers."""
        while not self._closing:
            await self._idle(self._touch_interval)
            if self._closing:
                return
            for sub in list(self._subs.values()):
                held = [e.id for e in sub.backlog]
                if not held:
                    continue
                try:
                    await self._client.xclaim(self.keys.events, sub.name, self.consumer, 0, held, justid=True)
                except Exception as exc:  # reported by the subscriber's own loop when Redis is gone
                    log.debug("keep-alive of %s failed: %s", sub.name, one_line(exc, 200))
