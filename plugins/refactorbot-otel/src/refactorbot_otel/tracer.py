"""The tracer the host gets from ``provide_tracer``: spans recorded cheaply, exported by a thread.

Imported only when tracing is on (``plugin.provide_tracer``). On the request path a span is one
small object: random ids, ``time.time_ns()`` at both ends, its name, kind, parent and attributes.
Its end appends it to a bounded queue (``collections.deque``); when the queue is full the span is
counted as dropped and the request goes on: the request path never waits for an exporter.

A background thread drains the queue in batches, every ``FLUSH_INTERVAL`` seconds or as soon as
``WAKE_AT`` spans wait, and hands each batch to the sinks: the SQLite span store (``store.SpanStore``) and,
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, the OpenTelemetry SDK's OTLP/HTTP exporter, which the
batch reaches as SDK ``ReadableSpan``s (``otlp.OtlpSink``). The SDK is imported only in that case.

The current span is ``refactorbot.tracing.TRACEPARENT``. A span's parent is the live span when its
``traceparent`` is the current one (the common case, no parsing), else the parsed ``traceparent``
as a remote parent (a request from another process, an event from another task).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from refactorbot import tracing

if TYPE_CHECKING:
    from refactorbot import SliceRequest, SliceResponse

from refactorbot_otel.config import OtelConfig, otlp_endpoint

TRACEPARENT = tracing.TRACEPARENT
AttributeValue = tracing.AttributeValue
parse_traceparent = tracing.parse_traceparent

log = logging.getLogger("refactorbot.otel")

#: Seconds between two drains of the queue when it does not fill a batch first.
FLUSH_INTERVAL = 1.0
#: Queued spans that wake the exporting thread before the interval is up.
WAKE_AT = 1024
#: At most this many spans are handed to the sinks at a time (one transaction, one OTLP request).
MAX_BATCH = 16384
#: Operations of the span store itself are not traced (reading traces would fill the store).
UNTRACED_SLICES = frozenset({"traces"})

_rng = random.Random()  # noqa: S311  seeded from os.urandom; trace and span ids need to be unique, not secret
_bits = _rng.getrandbits
_time_ns = time.time_ns
_MASK_64 = (1 << 64) - 1
#: Trace context of traces that are not recorded: the trace id is a random prefix per process and a
#: counter, the span id one per process (nothing records the span, so nothing tells it apart). A
#: flood of unrecorded operations, which makes one each, pays no random draw, no formatting and no
#: joining: the ``traceparent`` strings are made 256 at a time (a block: the prefix, the block's
#: number, the last two digits, the span id and the flags) and handed out by the block's iterator.
#: Blocks are numbered by a counter, so threads that start a block at once still get distinct ids.
_unrecorded_prefix = ""
_unrecorded_suffixes: tuple[str, ...] = ()
_unrecorded_block = itertools.count(1).__next__
_unrecorded_next: Callable[[], str] = iter(()).__next__


def _unrecorded_refill() -> str:
    """Start the next block of unrecorded ``traceparent`` values and return its first."""
    global _unrecorded_next
    head = f"{_unrecorded_prefix}{_unrecorded_block():014x}"
    _unrecorded_next = iter([head + suffix for suffix in _unrecorded_suffixes]).__next__
    return _unrecorded_next()


def _reseed() -> None:
    """Draw this process's unrecorded trace context (again in a forked child: other ids than its parent)."""
    global _unrecorded_prefix, _unrecorded_suffixes, _unrecorded_block, _unrecorded_next
    _rng.seed()
    _unrecorded_prefix = f"00-{_bits(64) or 1:016x}"
    suffix = f"-{_bits(64) or 1:016x}-00"
    _unrecorded_suffixes = tuple(f"{low:02x}{suffix}" for low in range(256))
    _unrecorded_block = itertools.count(1).__next__
    _unrecorded_next = iter(()).__next__


_reseed()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)

#: What receives a batch of finished spans (on the exporting thread).
Sink = Callable[[Sequence["SpanBase"]], None]


class SpanBase:
    """What every recorded span shares (what the sinks read): ids, parent, times, making it current and queueing it."""

    __slots__ = (
        "_token",
        "_tracer",
        "end_ns",
        "parent_id",
        "remote_parent",
        "sampled",
        "span_id",
        "start_ns",
        "trace_id",
        "traceparent",
    )

    _token: Token[str | None] | None
    _tracer: RecordingTracer
    trace_id: str
    span_id: str
    parent_id: str | None
    remote_parent: bool
    sampled: bool
    traceparent: str
    start_ns: int
    end_ns: int
    kind: tracing.SpanKind
    name: str
    status: str
    status_message: str | None
    attributes: dict[str, AttributeValue]

    def _adopt(self, wanted: str) -> bool:
        """Take ``wanted`` (a ``traceparent``) as parent; return whether it was valid."""
        live = self._tracer.live.get(wanted)
        if live is not None:
            self.trace_id, self.parent_id, self.sampled = live.trace_id, live.span_id, live.sampled
            self.remote_parent = False
            return True
        parsed = parse_traceparent(wanted)
        if parsed is None:
            return False
        self.trace_id, self.parent_id, self.sampled = parsed[0], parsed[1], bool(parsed[2] & 1)
        self.remote_parent = True
        return True

    def _open(self, parent: str | None) -> str:
        """Give the span its ids under ``parent`` (else the current span, else a new trace); make it current."""
        if parent is None or not self._adopt(parent):
            current = TRACEPARENT.get()
            if current is None or not self._adopt(current):
                self.trace_id = f"{_bits(128) or 1:032x}"  # a new trace, admitted by ``_unrecorded``
                self.parent_id = None
                self.remote_parent = False
                self.sampled = True
        self.span_id = span_id = f"{_bits(64) or 1:016x}"
        self.traceparent = traceparent = f"00-{self.trace_id}-{span_id}-{'01' if self.sampled else '00'}"
        self._token = TRACEPARENT.set(traceparent)
        self._tracer.live[traceparent] = self
        self.start_ns = _time_ns()
        return traceparent

    def _close(self) -> None:
        """End the span, make the previous one current again, queue it for export when sampled."""
        self.end_ns = _time_ns()
        tracer = self._tracer
        tracer.live.pop(self.traceparent, None)
        if self._token is not None:
            try:  # a scope left in another context (a generator finalized elsewhere) restores nothing
                TRACEPARENT.reset(self._token)
            except ValueError:
                pass
            self._token = None
        if self.sampled:
            tracer.finished(self)


class _Unsampled:
    """The scope of a span nothing records: it only makes its ``traceparent`` current (flag ``00``).

    What the host does under it keeps the trace's decision (a child of an unsampled span is not
    recorded either) and carries it to other processes, as W3C Trace Context asks.
    """

    __slots__ = ("_request", "_token", "traceparent")

    def __init__(self, traceparent: str, request: SliceRequest | None = None) -> None:
        self.traceparent = traceparent
        self._request = request
        self._token: Token[str | None] | None = None

    def __enter__(self) -> _Unsampled:
        self._token = TRACEPARENT.set(self.traceparent)
        if self._request is not None:
            self._request.__dict__["traceparent"] = self.traceparent
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            try:
                TRACEPARENT.reset(self._token)
            except ValueError:
                pass
            self._token = None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Ignore the attribute."""

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Ignore the error."""

    def end(self, response: SliceResponse) -> None:
        """Ignore the outcome."""


class _Followed:
    """The scope of a span in a trace that is not recorded, whose ``traceparent`` is already current.

    It follows the current context and changes nothing, so it is shared: what a chat turn's
    operations, LLM and tool calls pay when their trace is not recorded.
    """

    __slots__ = ()

    @property
    def traceparent(self) -> str:
        """Return the ``traceparent`` current in this context (the unrecorded trace's)."""
        return TRACEPARENT.get() or ""

    def __enter__(self) -> _Followed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Ignore the attribute."""

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Ignore the error."""

    def end(self, response: SliceResponse) -> None:
        """Ignore the outcome."""


_FOLLOWED = _Followed()


def _unsampled_root() -> str:
    """Return the ``traceparent`` of a new trace that is not recorded (``operation_span`` inlines it)."""
    try:
        return _unrecorded_next()
    except StopIteration:  # once every 256 traces
        return _unrecorded_refill()


def _unrecorded_current(current: str) -> bool:
    """Return whether ``current`` (``TRACEPARENT``'s value) is a well-formed ``traceparent`` flagged not recorded."""
    if len(current) == 55 and current.endswith("-00"):  # version 00, as this process makes them: no parsing
        return current.startswith("00-")
    parsed = parse_traceparent(current)
    return parsed is not None and not parsed[2] & 1


class SpanRecord(SpanBase):
    """One span: refactorbot's ``Span`` and ``SpanScope`` protocols in a single small object.

    Entering gives it ids and a start and makes it current; leaving ends it, restores the previous
    span and queues it for export (when sampled).
    """

    __slots__ = ("_parent", "attributes", "kind", "name", "status", "status_message")

    def __init__(
        self,
        tracer: RecordingTracer,
        name: str,
        kind: tracing.SpanKind,
        attributes: Mapping[str, AttributeValue] | None,
        parent: str | None,
    ) -> None:
        self._tracer = tracer
        self._parent = parent
        self.name = name
        self.kind = kind
        self.attributes = dict(attributes) if attributes else {}
        self.status = "unset"
        self.status_message = None
        self.traceparent = ""
        self._token: Token[str | None] | None = None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute."""
        self.attributes[key] = value

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Mark the span failed: ``error.type`` and an error status with ``message`` (one line)."""
        self.attributes["error.type"] = error_type
        self.status = "error"
        self.status_message = (message or error_type)[:1000]

    def __enter__(self) -> SpanRecord:
        self._open(self._parent)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.set_error(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
        self._close()


class OperationRecord(SpanBase):
    """The span of one routed operation (``Tracer.operation_span``), recorded with the least work.

    The request path keeps references to the request and its response; the span's name and
    attributes are built from them on the exporting thread. Both are done with by then: the host
    changes neither after the operation's span ends.
    """

    __slots__ = ("_extra", "error", "request", "response")

    kind: tracing.SpanKind = "internal"

    def __init__(self, tracer: RecordingTracer, request: SliceRequest) -> None:
        self._tracer = tracer
        self.request = request
        self.response: SliceResponse | None = None
        self.error: tuple[str, str] | None = None
        self._extra: dict[str, AttributeValue] | None = None
        self.traceparent = ""
        self._token = None

    def __enter__(self) -> OperationRecord:
        request = self.request
        # Set without pydantic's validation: the value is a well-formed traceparent made here.
        request.__dict__["traceparent"] = self._open(request.traceparent)
        request.__pydantic_fields_set__.add("traceparent")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.error = (type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
        self._close()

    def end(self, response: SliceResponse) -> None:
        """Record the operation's outcome."""
        self.response = response

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one more attribute."""
        if self._extra is None:
            self._extra = {}
        self._extra[key] = value

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Mark the span failed."""
        self.error = (error_type, (message or error_type)[:1000])

    @property
    def name(self) -> str:  # type: ignore[override]
        """Return ``<slice>.<operation>``."""
        return self.request.target

    @property
    def attributes(self) -> dict[str, AttributeValue]:  # type: ignore[override]
        """Return the operation's attributes, built from its request and response."""
        request, response = self.request, self.response
        attributes: dict[str, AttributeValue] = {
            "refactorbot.slice": request.slice_id,
            "refactorbot.operation": request.operation,
            "refactorbot.request_id": request.request_id,
        }
        if request.caller is not None:
            attributes["refactorbot.caller"] = request.caller
        if response is not None:
            attributes["refactorbot.success"] = response.success
        error = self._failure()
        if error is not None:
            attributes["error.type"] = error[0]
        if self._extra:
            attributes.update(self._extra)
        return attributes

    def _failure(self) -> tuple[str, str] | None:
        response = self.response
        if response is not None and not response.success:
            error_type = response.error_type.value if response.error_type else "operation_error"
            return error_type, (response.error_message or error_type)[:1000]
        return self.error

    @property
    def status(self) -> str:  # type: ignore[override]
        """Return ``error`` when the operation failed, else ``unset``."""
        return "unset" if self._failure() is None else "error"

    @property
    def status_message(self) -> str | None:  # type: ignore[override]
        """Return the failure's one line, or ``None``."""
        error = self._failure()
        return None if error is None else error[1]


class RecordingTracer:
    """refactorbot's ``Tracer``: records spans on the request path, exports them on its own thread."""

    def __init__(
        self,
        sinks: Sequence[tuple[str, Sink]],
        *,
        sample_ratio: float = 1.0,
        max_traces_per_second: float = 0.0,
        max_queue: int = 8192,
        store: Path | None = None,
        otlp: str | None = None,
        closers: Sequence[Callable[[], None]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._clock = clock
        self.otlp = otlp
        self.sample_bound = round(min(max(sample_ratio, 0.0), 1.0) * (1 << 64))
        self._everything = self.sample_bound >= 1 << 64
        #: New traces a second past which new traces are not recorded (a token bucket; 0: no limit).
        self.max_traces_per_second = rate = max(max_traces_per_second, 0.0)
        # The bucket as one number (the generic cell rate algorithm), in units of 1 / rate seconds:
        # a new trace may be recorded once ``clock() * rate`` reaches ``_admit_at``; each one recorded
        # moves it on by one, at most ``_burst`` (a second's worth of traces, less one) behind the
        # clock. A trace past the limit costs one clock read, a product and a comparison.
        self._burst = max(rate - 1.0, 0.0)
        self._admit_at = clock() * rate - self._burst if rate else -math.inf
        #: Only ``max_traces_per_second`` decides (``sample_ratio`` is 1): the flood's check, inlined.
        self._rate_only = self._everything and rate > 0
        #: New traces not recorded because ``max_traces_per_second`` was reached, since start.
        self.over_limit = 0
        #: Recorded spans that are open, by ``traceparent``: a child finds its parent without parsing.
        self.live: dict[str, SpanBase] = {}
        self.max_queue = max_queue
        #: Spans dropped because the queue was full (the exporter could not keep up), since start.
        self.dropped = 0
        self._reported_drops = 0
        self._sinks = list(sinks)
        self._closers = list(closers)
        self._queue: deque[SpanBase] = deque(maxlen=max_queue)
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="refactorbot-otel export", daemon=True)
        self._thread.start()

    def span(
        self,
        name: str,
        *,
        kind: tracing.SpanKind = "internal",
        attributes: Mapping[str, AttributeValue] | None = None,
        parent: str | None = None,
    ) -> tracing.SpanScope:
        """Return the scope of a new span (see ``refactorbot.tracing.Tracer.span``)."""
        if attributes is not None and attributes.get("refactorbot.slice") in UNTRACED_SLICES:
            return tracing.NOOP_SPAN
        return self._unrecorded(parent) or SpanRecord(self, name, kind, attributes, parent)

    def operation_span(self, request: SliceRequest) -> tracing.OperationScope:
        """Return the scope of ``request``'s operation span (see ``refactorbot.tracing.operation_span``).

        An operation whose trace is not recorded gets a shared scope: ``UNRECORDED_TRACE`` when it
        starts the trace (its ``traceparent`` in ``request.traceparent``, which the host makes
        current), ``NOOP_SPAN`` when it follows the unrecorded trace already current (nothing to change).
        """
        # The fields from the model's __dict__: a pydantic model's own attribute reads go through its
        # __getattr__ hook, which the interpreter cannot specialize (three times the cost of a dict read).
        fields = request.__dict__
        if fields["slice_id"] in UNTRACED_SLICES:
            return tracing.NOOP_SPAN
        parent = fields["traceparent"]
        current = TRACEPARENT.get()
        if parent is None:
            if current is None:  # a new trace: the common case, inlined
                if self._rate_only and self._clock() * self.max_traces_per_second < self._admit_at:
                    self.over_limit += 1  # past max_traces_per_second (sample_root's check, inlined)
                elif self.sample_root():
                    return OperationRecord(self, request)
                try:  # _unsampled_root, inlined
                    traceparent = _unrecorded_next()
                except StopIteration:  # once every 256 traces
                    traceparent = _unrecorded_refill()
                # Well-formed: set without validation. The host makes it current for the operation.
                fields["traceparent"] = traceparent
                return tracing.UNRECORDED_TRACE
            if current not in self.live and _unrecorded_current(current):  # a callee of an unrecorded trace
                fields["traceparent"] = current
                return tracing.NOOP_SPAN
        unrecorded = self._unrecorded(parent, request)
        if unrecorded is None:
            return OperationRecord(self, request)
        return tracing.NOOP_SPAN if unrecorded is _FOLLOWED else unrecorded

    def _unrecorded(self, parent: str | None, request: SliceRequest | None = None) -> _Unsampled | _Followed | None:
        """Return the scope of a span that is not recorded, or ``None`` when the span is to be recorded.

        The parent is ``parent`` when valid, else the current span, else none: a new trace, recorded
        when ``sample_ratio`` and ``max_traces_per_second`` admit it. A child follows its parent's
        decision; an unrecorded span only carries its trace's ``traceparent`` (flag ``00``).
        """
        current = TRACEPARENT.get()
        if parent is not None and parent != current:
            if parent in self.live:
                return None
            parsed = parse_traceparent(parent)
            if parsed is not None:
                return None if parsed[2] & 1 else _Unsampled(parent, request)
        if current is not None:
            if current in self.live:
                return None
            if _unrecorded_current(current):  # the unrecorded trace's context is current: nothing to change
                if request is not None:
                    request.__dict__["traceparent"] = current
                return _FOLLOWED
            if parse_traceparent(current) is not None:  # a recorded span of another process
                return None
        return None if self.sample_root() else _Unsampled(_unsampled_root(), request)

    def sample_root(self) -> bool:
        """Return whether a new trace is recorded: ``sample_ratio``, then ``max_traces_per_second``."""
        if not self._everything and _bits(64) >= self.sample_bound:
            return False
        rate = self.max_traces_per_second
        if not rate:
            return True
        now = self._clock() * rate
        admit_at = self._admit_at
        if now < admit_at:
            self.over_limit += 1
            return False
        earliest = now - self._burst
        self._admit_at = (admit_at if admit_at > earliest else earliest) + 1.0
        return True

    def finished(self, span: SpanBase) -> None:
        """Queue an ended span; count it as dropped when the queue is full (never wait)."""
        queue = self._queue
        size = len(queue)
        if size >= self.max_queue:
            self.dropped += 1
            return
        queue.append(span)
        if size + 1 == WAKE_AT:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            with self._export_lock:
                self._drain()

    def _drain(self) -> None:
        """Hand everything queued to the sinks, a batch at a time (the export lock is held)."""
        queue = self._queue
        popleft = queue.popleft
        while queue:
            batch = [popleft() for _ in range(min(len(queue), MAX_BATCH))]
            for name, sink in self._sinks:
                try:
                    sink(batch)
                except Exception as exc:  # a sink that breaks loses this batch, not the next ones
                    log.error("%d span(s) not exported to %s: %s: %s", len(batch), name, type(exc).__name__, exc)
        dropped = self.dropped
        if dropped != self._reported_drops:
            log.warning(
                "%d span(s) dropped: the export queue (max_queue = %d) was full",
                dropped - self._reported_drops,
                self.max_queue,
            )
            self._reported_drops = dropped

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Export every span ended so far now; return whether it completed in time."""
        if not self._export_lock.acquire(timeout=timeout_millis / 1000):
            return False
        try:
            self._drain()
        finally:
            self._export_lock.release()
        return True

    def shutdown(self) -> None:
        """Export what is queued, stop the thread and close the sinks."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        with self._export_lock:
            self._drain()
            for close in self._closers:
                try:
                    close()
                except Exception as exc:
                    log.error("closing a span exporter failed: %s: %s", type(exc).__name__, exc)


def build_tracer(config: OtelConfig, env: Mapping[str, str], data_dir: Path) -> RecordingTracer | None:
    """Return a tracer exporting where ``config`` and the standard variables say, or ``None`` (off).

    ``OTEL_SDK_DISABLED=true`` turns tracing off; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` name the service; ``OTEL_EXPORTER_OTLP_HEADERS`` (or
    ``..._TRACES_HEADERS``) apply to the OTLP exporter, which reads its other variables itself.
    """
    if not config.enabled or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    endpoint = otlp_endpoint(env)
    mode = config.exporter
    if mode == "auto":
        mode = "otlp" if endpoint else "sqlite"
    if mode == "none":
        return None
    sinks: list[tuple[str, Sink]] = []
    closers: list[Callable[[], None]] = []
    store: Path | None = None
    otlp: str | None = None
    if mode in ("otlp", "both"):
        if endpoint is None:
            log.warning("[plugins.otel] exporter = %r but OTEL_EXPORTER_OTLP_ENDPOINT is not set", config.exporter)
        else:
            from refactorbot_otel.otlp import OtlpSink

            exporter = OtlpSink(endpoint, env, _resource_attributes(config, env))
            sinks.append((endpoint, exporter.export))
            closers.append(exporter.shutdown)
            otlp = endpoint
    if mode in ("sqlite", "both"):
        from refactorbot_otel.store import SpanStore

        store = data_dir / "traces.db"
        writer = SpanStore(store)
        sinks.append((str(store), writer.write))
        closers.append(writer.close)
    if not sinks:
        return None
    return RecordingTracer(
        sinks,
        sample_ratio=config.sample_ratio,
        max_traces_per_second=config.max_traces_per_second,
        max_queue=config.max_queue,
        store=store,
        otlp=otlp,
        closers=closers,
    )


def _resource_attributes(config: OtelConfig, env: Mapping[str, str]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    attributes["service.name"] = env.get("OTEL_SERVICE_NAME", "").strip() or config.service_name
    return attributes
