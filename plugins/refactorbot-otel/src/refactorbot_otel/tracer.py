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

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from pathlib import Path
from types import TracebackType

from refactorbot import tracing

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
#: The span whose ``traceparent`` is in ``TRACEPARENT``, to parent children without parsing.
_LIVE: ContextVar[SpanRecord | None] = ContextVar("refactorbot_otel_live", default=None)

_rng = random.Random()  # noqa: S311  seeded from os.urandom; trace and span ids need to be unique, not secret
_bits = _rng.getrandbits
_time_ns = time.time_ns
_MASK_64 = (1 << 64) - 1
if hasattr(os, "register_at_fork"):  # a forked child draws other ids than its parent
    os.register_at_fork(after_in_child=_rng.seed)

#: What receives a batch of finished spans (on the exporting thread).
Sink = Callable[[Sequence["SpanRecord"]], None]


class SpanRecord:
    """One span: refactorbot's ``Span`` and ``SpanScope`` protocols in a single small object.

    Entering gives it ids and a start and makes it current; leaving ends it, restores the previous
    span and queues it for export (when sampled).
    """

    __slots__ = (
        "_live",
        "_parent",
        "_token",
        "_tracer",
        "attributes",
        "end_ns",
        "kind",
        "name",
        "parent_id",
        "remote_parent",
        "sampled",
        "span_id",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
        "traceparent",
    )

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
        self.attributes: dict[str, AttributeValue] = dict(attributes) if attributes else {}
        self.status = "unset"
        self.status_message: str | None = None
        self.trace_id = ""
        self.span_id = ""
        self.parent_id: str | None = None
        self.remote_parent = False
        self.sampled = True
        self.traceparent = ""
        self.start_ns = 0
        self.end_ns = 0
        self._token: Token[str | None] | None = None
        self._live: Token[SpanRecord | None] | None = None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute."""
        self.attributes[key] = value

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Mark the span failed: ``error.type`` and an error status with ``message`` (one line)."""
        self.attributes["error.type"] = error_type
        self.status = "error"
        self.status_message = (message or error_type)[:1000]

    def _adopt(self, wanted: str) -> bool:
        """Take ``wanted`` (a ``traceparent``) as parent; return whether it was valid."""
        live = _LIVE.get()
        if live is not None and live.traceparent == wanted:
            self.trace_id, self.parent_id, self.sampled = live.trace_id, live.span_id, live.sampled
            return True
        parsed = parse_traceparent(wanted)
        if parsed is None:
            return False
        self.trace_id, self.parent_id, self.sampled = parsed[0], parsed[1], bool(parsed[2] & 1)
        self.remote_parent = True
        return True

    def __enter__(self) -> SpanRecord:
        parent = self._parent
        if parent is None or not self._adopt(parent):
            current = TRACEPARENT.get()
            if current is None or not self._adopt(current):
                trace = _bits(128) or 1
                self.trace_id = f"{trace:032x}"
                self.sampled = (trace & _MASK_64) < self._tracer.sample_bound
        self.span_id = span_id = f"{_bits(64) or 1:016x}"
        self.traceparent = traceparent = (
            f"00-{self.trace_id}-{span_id}-01" if self.sampled else f"00-{self.trace_id}-{span_id}-00"
        )
        self._token = TRACEPARENT.set(traceparent)
        self._live = _LIVE.set(self)
        self.start_ns = _time_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end_ns = _time_ns()
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.set_error(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
        try:  # a scope left in another context (a generator finalized elsewhere) restores nothing
            if self._live is not None:
                _LIVE.reset(self._live)
            if self._token is not None:
                TRACEPARENT.reset(self._token)
        except ValueError:
            pass
        self._live = self._token = None
        if self.sampled:
            self._tracer.finished(self)


class RecordingTracer:
    """refactorbot's ``Tracer``: records spans on the request path, exports them on its own thread."""

    def __init__(
        self,
        sinks: Sequence[tuple[str, Sink]],
        *,
        sample_ratio: float = 1.0,
        max_queue: int = 8192,
        store: Path | None = None,
        otlp: str | None = None,
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.store = store
        self.otlp = otlp
        self.sample_bound = round(min(max(sample_ratio, 0.0), 1.0) * (1 << 64))
        self.max_queue = max_queue
        #: Spans dropped because the queue was full (the exporter could not keep up), since start.
        self.dropped = 0
        self._reported_drops = 0
        self._sinks = list(sinks)
        self._closers = list(closers)
        self._queue: deque[SpanRecord] = deque(maxlen=max_queue)
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
        return SpanRecord(self, name, kind, attributes, parent)

    def finished(self, span: SpanRecord) -> None:
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
