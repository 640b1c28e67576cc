"""Slice requests over Redis Streams: a request stream per slice, a reply stream per process.

The caller (``RequestClient``) appends a request to ``rb:{ns}:req:<slice_id>`` with its
correlation id (the request's ``request_id``, which is also its idempotency key), the reply
stream to answer on (``rb:{ns}:reply:<node>:<pid>:<random>``) and a deadline, then waits for
the answer with that id on its reply stream.

A worker (``SliceWorker``) reads each slice's stream in the consumer group ``workers``, runs the
request through its host's routing, and in one step (a Lua script) records the response under
``rb:{ns}:done:<request_id>``, appends it to the reply stream and acknowledges the request. A
request whose id is already recorded is answered from the record and not run again, so a
request handed to another worker after the first died — or sent again by its caller with the
same id — never runs twice once it has finished. Entries held by a worker that stopped answering
are taken by another with ``XAUTOCLAIM`` after ``claim_idle`` seconds; a live worker re-claims
what it is still running so it keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from refactorbot import ErrorType, SliceRequest, SliceResponse

from refactorbot_bus_redis.config import Keys, RedisConfig, client_of

log = logging.getLogger("refactorbot.redis.transport")

#: The consumer group of every request stream.
GROUP = "workers"
#: Requests kept in a request stream once acknowledged (``XADD MAXLEN ~``); unacknowledged ones are never trimmed
#: before they are read: a worker group reads them long before this many newer ones arrive.
REQUEST_MAX_LEN = 100_000
#: Replies kept in a reply stream; the stream expires an hour after its last reply.
REPLY_MAX_LEN = 10_000
REPLY_TTL_MS = 3_600_000
#: Seconds a finished request's response is kept for redeliveries and retries with the same id.
DONE_TTL = 86_400
#: Connections a client sends requests on at once.
SEND_CONNECTIONS = 32
#: Entries a worker reads at once, at most (never more than it has free slots).
READ_BATCH = 100

# KEYS: done, reply, requests; ARGV: response JSON, request id, group, entry id, done ttl, reply max len, reply ttl
_FINISH = """
local first = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[5]))
if first then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[6]), '*', 'i', ARGV[2], 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[7]))
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
if first then return 1 end
return 0
"""

# KEYS: done, reply, requests; ARGV: request id, group, entry id, reply max len, reply ttl
_ANSWER_RECORDED = """
local done = redis.call('GET', KEYS[1])
if not done then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[4]), '*', 'i', ARGV[1], 'd', done)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]))
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
return 1
"""


# KEYS: requests; ARGV: group, consumer, count, done key prefix, reply key prefix, reply max len, reply ttl.
# Reads up to ``count`` new entries without blocking. One already answered (a request sent again with a
# finished id) is answered from its record and acknowledged here; the others are returned to be run.
# The done and reply keys are built here, not passed in KEYS: they share the requests' hash tag (one
# Cluster slot), and a reply stream outside the namespace is left to the worker, which drops it.
_TAKE = """
local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]), 'STREAMS', KEYS[1], '>')
local fresh = {}
if not got then return fresh end
for _, entry in ipairs(got[1][2]) do
  local fields = entry[2]
  local rid, reply = nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'i' then rid = fields[i + 1] elseif fields[i] == 'r' then reply = fields[i + 1] end
  end
  local done = false
  if rid and rid ~= '' and reply and string.sub(reply, 1, #ARGV[5]) == ARGV[5] then
    done = redis.call('GET', ARGV[4] .. rid)
  end
  if done then
    redis.call('XADD', reply, 'MAXLEN', '~', tonumber(ARGV[6]), '*', 'i', rid, 'd', done)
    redis.call('PEXPIRE', reply, tonumber(ARGV[7]))
    redis.call('XACK', KEYS[1], ARGV[1], entry[1])
  else
    table.insert(fresh, entry)
  end
end
return fresh
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RequestClient:
    """Send slice requests to the workers of a deployment and wait for their answers.

    ``execute(request)`` never raises: no worker answering within the timeout is a ``timeout``
    failure, Redis unreachable a ``slice_unavailable`` one, each with one line saying so.
    """

    def __init__(self, config: RedisConfig, *, timeout: float = 30.0) -> None:
        if config.url is None:
            raise ValueError("[plugins.redis] url is not set")
        self.config = config
        self.keys = Keys(config.namespace)
        self.timeout = timeout
        self.consumer = config.consumer_name()
        self.reply_key = self.keys.key("reply", self.consumer)
        self._client: Any = None
        self._reader_client: Any = None
        self._waiting: dict[str, asyncio.Future[SliceResponse]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        #: Sends at once; more wait for a connection rather than fail on the pool's limit.
        self._sends = asyncio.Semaphore(SEND_CONNECTIONS)

    async def start(self) -> None:
        """Open the connections and start reading replies."""
        self._client = client_of(self.config, max_connections=SEND_CONNECTIONS + 2)
        # The reader blocks up to a second per read: its socket waits longer than that.
        self._reader_client = client_of(self.config, socket_timeout=self.config.command_timeout + 2)
        await self._client.ping()
        self._stop.clear()
        self._reader = asyncio.get_running_loop().create_task(self._read_replies(), name="redis reply reader")

    async def stop(self) -> None:
        """Stop reading; requests still waiting end as ``slice_unavailable``."""
        self._stop.set()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, self.config.command_timeout + 3)
            self._reader = None
        for request_id, future in list(self._waiting.items()):
            if not future.done():
                future.set_exception(ConnectionError("the request client stopped"))
            self._waiting.pop(request_id, None)
        for client in (self._client, self._reader_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.delete(self.reply_key)
                await client.aclose()
        self._client = self._reader_client = None

    async def execute(self, request: SliceRequest, timeout: float | None = None) -> SliceResponse:
        """Send ``request`` to a worker of its slice and return the answer (at most one per id)."""
        if self._client is None:
            return SliceResponse.failure(
                request, ErrorType.SLICE_UNAVAILABLE, "the Redis request client is not started"
            )
        wait = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SliceResponse] = loop.create_future()
        if request.request_id in self._waiting:
            return SliceResponse.failure(
                request, ErrorType.INVALID_PAYLOAD, f"request {request.request_id} is already waiting for an answer"
            )
        self._waiting[request.request_id] = future
        try:
            fields = {
                "i": request.request_id,
                "r": self.reply_key,
                "dl": repr(time.time() + wait),
                "q": request.model_dump_json(),
            }
            try:
                async with self._sends:
                    await self._client.xadd(
                        self.keys.key("req", request.slice_id), fields, maxlen=REQUEST_MAX_LEN, approximate=True
                    )
            except Exception as exc:
                why = f"Redis at {self.config.where()} unreachable: {type(exc).__name__}: {exc}"
                return SliceResponse.failure(request, ErrorType.SLICE_UNAVAILABLE, why)
            try:
                return await asyncio.wait_for(future, wait)
            except TimeoutError:
                why = f"no worker of slice '{request.slice_id}' answered {request.target} within {wait:g}s"
                return SliceResponse.failure(request, ErrorType.TIMEOUT, why)
            except ConnectionError as exc:
                return SliceResponse.failure(request, ErrorType.SLICE_UNAVAILABLE, str(exc))
        finally:
            self._waiting.pop(request.request_id, None)

    async def _read_replies(self) -> None:
        last = "0-0"  # the stream is this process's own: every entry in it is for this client
        failing = False
        while not self._stop.is_set():
            try:
                batches = await self._reader_client.xread({self.reply_key: last}, count=500, block=1000)
            except Exception as exc:
                await self._backoff(exc, failing)
                failing = True
                continue
            if failing:
                log.warning("Redis at %s reachable again; reading replies", self.config.where())
                failing = False
            for _stream, entries in batches or ():
                for entry_id, fields in entries:
                    last = _text(entry_id)
                    self._resolve(fields)

    def _resolve(self, fields: dict[Any, Any]) -> None:
        request_id = _text(fields.get(b"i", b""))
        future = self._waiting.get(request_id)
        if future is None or future.done():  # a late or second answer: the caller has one already
            return
        try:
            future.set_result(SliceResponse.model_validate_json(fields[b"d"]))
        except Exception as exc:  # a reply that is not a response: the caller learns why
            future.set_exception(ConnectionError(f"unreadable reply for {request_id}: {exc}"))

    async def _backoff(self, exc: Exception, reported: bool) -> None:
        if not reported:
            log.warning("Redis at %s unreachable (%s); retrying", self.config.where(), type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), 0.5)


Route = Callable[[SliceRequest], Awaitable[SliceResponse]]


class SliceWorker:
    """Serve ``slice_ids`` from their request streams, running each request with ``route``.

    ``route`` is the worker host's ``MasterCore.route``, so the worker's own limits
    (``[slices.<id>.resources]`` ``max_concurrency``, timeouts) apply where the slice runs.
    ``stopping`` says when the host no longer takes requests: what arrives then is handed back,
    not answered.

    **Slots.** The worker runs at most ``concurrency`` requests at once, and at most
    ``limits[slice_id]`` of one slice (its ``max_concurrency``). It reads a request only into a
    free slot: as many entries as it has free slots, none while it has none. What it has read it
    starts at once, so it does not hold requests that another worker with free slots could run
    (but for the rare read that returns after another slice took its slots: see ``_read``).
    A slot is free again as soon as the operation has returned; recording the answer follows
    outside it.
    """

    def __init__(
        self,
        config: RedisConfig,
        slice_ids: Iterable[str],
        route: Route,
        *,
        stopping: Callable[[], bool] = lambda: False,
        concurrency: int = 64,
        limits: Mapping[str, int] | None = None,
        claim_idle: float | None = None,
    ) -> None:
        if config.url is None:
            raise ValueError("[plugins.redis] url is not set")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.config = config
        self.keys = Keys(config.namespace)
        self.slice_ids = list(dict.fromkeys(slice_ids))
        if not self.slice_ids:
            raise ValueError("a worker needs at least one slice")
        limits = dict(limits or {})
        for slice_id, limit in limits.items():
            if limit < 1:
                raise ValueError(f"the limit of slice '{slice_id}' must be at least 1, not {limit}")
        self.route = route
        self.stopping = stopping
        self.consumer = config.consumer_name()
        self.claim_idle = config.claim_idle if claim_idle is None else claim_idle
        self._concurrency = concurrency
        #: Requests of each slice run at once here, at most: its own limit, within the worker's.
        self.limits = {sid: min(limits.get(sid, concurrency), concurrency) for sid in self.slice_ids}
        self._free = concurrency
        self._slice_free = dict(self.limits)
        self._freed = asyncio.Event()  # set whenever a slot is given back (and at stop)
        self._stop = asyncio.Event()
        self._client: Any = None
        self._readers: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: dict[str, set[str]] = {sid: set() for sid in self.slice_ids}  # entry ids held per slice
        self._returned: dict[str, set[str]] = {sid: set() for sid in self.slice_ids}  # read, not run: handed back
        #: Entries a blocking read brought beyond the slots free at its return (another slice or a claim took them).
        self._queued: dict[str, deque[tuple[str, dict[Any, Any]]]] = {sid: deque() for sid in self.slice_ids}
        self._loops: list[asyncio.Task[None]] = []
        self._finish: Any = None
        self._answer: Any = None
        self._take_new: Any = None
        #: Requests run to the end by this worker (answered from a record are not counted).
        self.served = 0

    async def start(self) -> None:
        """Create the groups (reading from the start of each stream) and begin serving."""
        # Each slot answers on one connection at a time; answers being recorded, reads and claims use more.
        self._client = client_of(self.config, max_connections=2 * self._concurrency + len(self.slice_ids) + 4)
        self._readers = client_of(
            self.config, socket_timeout=self.config.command_timeout + 2, max_connections=len(self.slice_ids) + 2
        )
        self._finish = self._client.register_script(_FINISH)
        self._answer = self._client.register_script(_ANSWER_RECORDED)
        self._take_new = self._client.register_script(_TAKE)
        for slice_id in self.slice_ids:
            try:
                await self._client.xgroup_create(self.keys.key("req", slice_id), GROUP, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        loop = asyncio.get_running_loop()
        self._stop.clear()
        for slice_id in self.slice_ids:
            self._loops.append(loop.create_task(self._read(slice_id), name=f"worker read {slice_id}"))
        self._loops.append(loop.create_task(self._claims(), name="worker claims"))

    async def stop(self) -> None:
        """Stop reading, let running requests finish, then hand back what is left at once."""
        self._stop.set()
        self._freed.set()
        for task in self._loops:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, self.config.command_timeout + 3)
        self._loops.clear()
        for slice_id, queued in self._queued.items():
            self._returned[slice_id].update(entry_id for entry_id, _fields in queued)
            queued.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.stop_timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._hand_back()
        for client in (self._client, self._readers):
            if client is not None:
                await client.aclose()
        self._client = self._readers = None

    def busy(self) -> dict[str, int]:
        """Return the requests of each slice running here now."""
        return {sid: self.limits[sid] - free for sid, free in self._slice_free.items()}

    def _take(self, slice_id: str, wanted: int) -> int:
        """Take up to ``wanted`` free slots for ``slice_id`` (the worker's and the slice's); return how many."""
        taken = min(wanted, self._free, self._slice_free[slice_id])
        self._free -= taken
        self._slice_free[slice_id] -= taken
        return taken

    def _give(self, slice_id: str, count: int) -> None:
        if count > 0:
            self._free += count
            self._slice_free[slice_id] += count
            self._freed.set()

    async def _hand_back(self) -> None:
        """Mark what this worker read but did not run long idle, so the next worker claims it without waiting."""
        for slice_id, held in self._returned.items():
            if held and self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.xclaim(
                        self.keys.key("req", slice_id),
                        GROUP,
                        self.consumer,
                        0,
                        list(held),
                        idle=int(self.claim_idle * 1000) * 10,
                        justid=True,
                    )

    async def _read(self, slice_id: str) -> None:
        """Read requests into free slots: all the free slots' worth at once, and one at a time when idle.

        After waiting for a slot, or a read that filled every slot it asked for, more requests may be
        waiting: they are read without blocking, as many as there are free slots. Otherwise the stream
        was drained, and the worker waits on it holding one slot, for as many requests as it had free
        slots; what arrives is run in the slots free when the read returns. Only if another slice or a
        claim took those slots meanwhile does an entry wait here, and it runs in the next free slot.
        """
        key = self.keys.key("req", slice_id)
        failing = False
        backlog = True
        while not self._stop.is_set():
            slots = self._take(slice_id, READ_BATCH)
            if not slots:  # every slot busy: read nothing until one is free
                self._freed.clear()
                await self._freed.wait()
                backlog = True
                continue
            queued = self._queued[slice_id]
            if queued:  # read before its slot was free: runs first
                started = 0
                while queued and started < slots:
                    entry_id, fields = queued.popleft()
                    started += self._spawn(slice_id, entry_id, fields)
                self._give(slice_id, slots - started)
                continue
            entries: list[tuple[Any, dict[Any, Any]]] = []
            checked = True
            try:
                if backlog:  # without waiting; entries already answered are answered in the script
                    entries = _entries(await self._take_new(keys=[key], args=self._take_args(slots)))
                    backlog = len(entries) == slots
                if not entries:  # none waiting: wait for the next ones with one slot, leaving the rest free
                    wanted = slots
                    self._give(slice_id, slots - 1)
                    slots = 1
                    checked = False
                    batches = await self._readers.xreadgroup(GROUP, self.consumer, {key: ">"}, count=wanted, block=1000)
                    entries = [(entry_id, fields) for _stream, got in batches or () for entry_id, fields in got]
                    if len(entries) > 1:
                        slots += self._take(slice_id, len(entries) - 1)
            except Exception as exc:
                self._give(slice_id, slots)
                backlog = True
                if "NOGROUP" in str(exc):  # the stream or group was deleted under us: create it again
                    with contextlib.suppress(Exception):
                        await self._client.xgroup_create(key, GROUP, id="0", mkstream=True)
                    continue
                if not failing:
                    log.warning("Redis at %s unreachable (%s); retrying", self.config.where(), type(exc).__name__)
                failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.5)
                continue
            failing = False
            started = 0
            for entry_id, fields in entries:
                if self._stop.is_set():  # read as the worker began stopping: the next worker runs it
                    self._returned[slice_id].add(_text(entry_id))
                elif started < slots:
                    started += self._spawn(slice_id, _text(entry_id), fields, checked=checked)
                else:
                    queued.append((_text(entry_id), fields))
            self._give(slice_id, slots - started)

    def _take_args(self, count: int) -> list[Any]:
        reply_prefix = self.keys.key("reply", "")
        done_prefix = self.keys.key("done", "")
        return [GROUP, self.consumer, count, done_prefix, reply_prefix, REPLY_MAX_LEN, REPLY_TTL_MS]

    def _spawn(self, slice_id: str, entry_id: str, fields: dict[Any, Any], *, checked: bool = False) -> bool:
        """Run one entry in a slot the caller took; return ``False`` (the slot unused) if it runs here already."""
        if entry_id in self._running[slice_id]:
            return False
        self._running[slice_id].add(entry_id)
        task = asyncio.get_running_loop().create_task(self._handle(slice_id, entry_id, fields, checked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _handle(self, slice_id: str, entry_id: str, fields: dict[Any, Any], checked: bool) -> None:
        key = self.keys.key("req", slice_id)
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._give(slice_id, 1)

        answered = True
        try:
            answered = await self._serve(slice_id, key, entry_id, fields, checked, release)
        except Exception:  # Redis failed while answering: the entry stays pending and is claimed again
            log.exception("request %s of slice %s not answered; left for another delivery", entry_id, slice_id)
        finally:
            release()
            if not answered:
                self._returned[slice_id].add(entry_id)
            self._running[slice_id].discard(entry_id)

    async def _serve(
        self,
        slice_id: str,
        key: str,
        entry_id: str,
        fields: dict[Any, Any],
        checked: bool,
        release: Callable[[], None],
    ) -> bool:
        """Run and answer one entry; return ``False`` if it was left unanswered for another worker."""
        request_id = _text(fields.get(b"i", b""))
        reply_key = _text(fields.get(b"r", b""))
        if not request_id or not reply_key.startswith(self.keys.key("reply", "")):
            log.error("request %s on %s has no id or no reply stream of this namespace; dropped", entry_id, key)
            await self._client.xack(key, GROUP, entry_id)
            return True
        done_key = self.keys.key("done", request_id)
        if not checked:
            answered = await self._answer(
                keys=[done_key, reply_key, key], args=[request_id, GROUP, entry_id, REPLY_MAX_LEN, REPLY_TTL_MS]
            )
            if answered:  # it ran already (a redelivery, or sent again with the same id): answered from the record
                return True
        try:
            request = SliceRequest.model_validate_json(fields[b"q"])
            if request.request_id != request_id or request.slice_id != slice_id:
                raise ValueError("its id or slice does not match its stream entry")
        except Exception as exc:
            failure = SliceResponse(
                request_id=request_id,
                success=False,
                error_type=ErrorType.INVALID_PAYLOAD,
                error_message=f"unreadable request on {key}: {str(exc).splitlines()[0]}",
            )
            release()
            await self._record(key, done_key, reply_key, entry_id, failure)
            return True
        deadline = float(_text(fields.get(b"dl", b"0")) or 0)
        if deadline and time.time() > deadline:  # the caller stopped waiting: do not run it for nobody
            late = SliceResponse.failure(
                request, ErrorType.TIMEOUT, f"{request.target} reached a worker after its caller's deadline"
            )
            release()
            await self._record(key, done_key, reply_key, entry_id, late)
            return True
        if self.stopping():
            return False  # handed back at stop
        response = await self.route(request)
        release()  # the operation is over: its slot takes the next request while this answer is recorded
        if response.error_type is ErrorType.SLICE_UNAVAILABLE and self.stopping():
            return False  # the host began stopping under it: another worker runs it
        self.served += 1  # counted before the answer goes out, so a caller holding it sees the count
        await self._record(key, done_key, reply_key, entry_id, response)
        return True

    async def _record(self, key: str, done_key: str, reply_key: str, entry_id: str, response: SliceResponse) -> None:
        await self._finish(
            keys=[done_key, reply_key, key],
            args=[
                response.model_dump_json(),
                response.request_id,
                GROUP,
                entry_id,
                DONE_TTL,
                REPLY_MAX_LEN,
                REPLY_TTL_MS,
            ],
        )

    async def _claims(self) -> None:
        """Keep what this worker runs (re-claim it every ``claim_idle / 3``); take what dead workers held."""
        refresh = self.claim_idle / 3
        next_scan = 0.0
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), refresh)
            if self._stop.is_set():
                return
            try:
                for slice_id, held in self._running.items():
                    if held:
                        await self._client.xclaim(
                            self.keys.key("req", slice_id), GROUP, self.consumer, 0, list(held), justid=True
                        )
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + min(self.claim_idle / 2, 5.0)
                    await self._take_over()
            except Exception as exc:
                log.warning("claiming requests on Redis at %s failed: %s", self.config.where(), type(exc).__name__)

    async def _take_over(self) -> None:
        """Claim, into free slots, requests that have waited ``claim_idle`` in a silent consumer's hands."""
        idle_ms = int(self.claim_idle * 1000)
        for slice_id in self.slice_ids:
            key = self.keys.key("req", slice_id)
            cursor = "0-0"
            while not self._stop.is_set():
                slots = self._take(slice_id, READ_BATCH)
                if not slots:
                    break
                started = 0
                try:
                    result = await self._client.xautoclaim(key, GROUP, self.consumer, idle_ms, cursor, count=slots)
                    cursor, entries = _text(result[0]), result[1]
                    for entry_id, fields in entries:
                        if fields is None:  # deleted from the stream (trimmed): nothing left to run
                            await self._client.xack(key, GROUP, entry_id)
                        elif self._spawn(slice_id, _text(entry_id), fields):
                            started += 1
                finally:
                    self._give(slice_id, slots - started)
                if cursor == "0-0":
                    break


def _entries(result: Any) -> list[tuple[Any, dict[Any, Any]]]:
    """Return ``[(entry id, fields)]`` from ``_TAKE``'s flat field lists."""
    return [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))) for entry_id, flat in result or ()]
