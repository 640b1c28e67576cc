"""The tracer the host gets from ``provide_tracer``: refactorbot's span protocol on the OpenTelemetry SDK.

Imported only when tracing is on (``plugin.provide_tracer``): the SDK is never imported otherwise.

The current span is ``refactorbot.tracing.TRACEPARENT``; the SDK's own context is not attached (that
costs a context copy per span). A span's parent is the live span when its ``traceparent`` is the
current one (the common case, no parsing), else the parsed ``traceparent`` as a remote parent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar, Token
from pathlib import Path
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from refactorbot import tracing

from refactorbot_otel.config import OtelConfig, otlp_endpoint

TRACEPARENT = tracing.TRACEPARENT
AttributeValue = tracing.AttributeValue
parse_traceparent = tracing.parse_traceparent

log = logging.getLogger("refactorbot.otel")

_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
_NEW_TRACE = Context()  # no parent: the span starts a trace
#: The span whose ``traceparent`` is in ``TRACEPARENT``, to parent children without parsing.
_LIVE: ContextVar[OtelSpan | None] = ContextVar("refactorbot_otel_live", default=None)
#: Operations of the span store itself are not traced (reading traces would fill the store).
UNTRACED_SLICES = frozenset({"traces"})


class OtelSpan:
    """One open span: refactorbot's ``Span`` protocol over an SDK span."""

    __slots__ = ("context", "span", "traceparent")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        ids = span.get_span_context()
        flags = "01" if ids.trace_flags & 1 else "00"
        self.traceparent = f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{flags}"
        self.context: Context | None = None  # built when a first child needs it

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute."""
        self.span.set_attribute(key, value)

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Mark the span failed: ``error.type`` and an ERROR status with ``message``."""
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, (message or error_type)[:1000]))

    def as_parent(self) -> Context:
        """Return a context whose current span is this one."""
        if self.context is None:
            self.context = trace.set_span_in_context(self.span, _NEW_TRACE)
        return self.context


class Scope:
    """Entering opens the span and makes it current; leaving ends it and restores the previous one."""

    __slots__ = ("_attributes", "_kind", "_live", "_name", "_parent", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue] | None,
        parent: str | None,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._parent = parent
        self._span: OtelSpan | None = None
        self._token: Token[str | None] | None = None
        self._live: Token[OtelSpan | None] | None = None

    def _parent_context(self) -> Context:
        wanted = self._parent if parse_traceparent(self._parent) is not None else None
        if wanted is None:
            wanted = TRACEPARENT.get()
            if wanted is None:
                return _NEW_TRACE
        live = _LIVE.get()
        if live is not None and live.traceparent == wanted:
            return live.as_parent()
        parsed = parse_traceparent(wanted)
        if parsed is None:
            return _NEW_TRACE
        remote = SpanContext(
            trace_id=int(parsed.trace_id, 16),
            span_id=int(parsed.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(parsed[2] & 1),
        )
        return trace.set_span_in_context(NonRecordingSpan(remote), _NEW_TRACE)

    def __enter__(self) -> OtelSpan:
        raw = self._tracer.start_span(
            self._name, context=self._parent_context(), kind=self._kind, attributes=self._attributes
        )
        span = self._span = OtelSpan(raw)
        self._token = TRACEPARENT.set(span.traceparent)
        self._live = _LIVE.set(span)
        return span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        if span is None:
            return
        if exc is not None and not isinstance(exc, GeneratorExit):
            span.set_error(type(exc).__qualname__, f"{type(exc).__name__}: {exc}")
        span.span.end()
        try:  # a scope left in another context (a generator finalized elsewhere) restores nothing
            if self._live is not None:
                _LIVE.reset(self._live)
            if self._token is not None:
                TRACEPARENT.reset(self._token)
        except ValueError:
            pass


class OtelTracer:
    """refactorbot's ``Tracer`` on an SDK ``TracerProvider`` (its own: the global one is left alone)."""

    def __init__(self, provider: TracerProvider, *, store: Path | None = None, otlp: str | None = None) -> None:
        self.provider = provider
        self.store = store
        self.otlp = otlp
        from refactorbot_otel import __name__ as package

        self._tracer = provider.get_tracer(package, "0.1.0")

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
        return Scope(self._tracer, name, _KINDS[kind], attributes, parent)

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Export every finished span now; return whether it completed in time."""
        return bool(self.provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporters."""
        self.provider.shutdown()


def build_tracer(config: OtelConfig, env: Mapping[str, str], data_dir: Path) -> OtelTracer | None:
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
    exporters: list[SpanExporter] = []
    store: Path | None = None
    if mode in ("otlp", "both"):
        if endpoint is None:
            log.warning("[plugins.otel] exporter = %r but OTEL_EXPORTER_OTLP_ENDPOINT is not set", config.exporter)
        else:
            exporters.append(_otlp_exporter(endpoint, env))
    if mode in ("sqlite", "both"):
        from refactorbot_otel.store import SQLiteSpanExporter

        store = data_dir / "traces.db"
        exporters.append(SQLiteSpanExporter(store))
    if not exporters:
        return None
    attributes: dict[str, Any] = {}
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    attributes["service.name"] = env.get("OTEL_SERVICE_NAME", "").strip() or config.service_name
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=ParentBased(TraceIdRatioBased(config.sample_ratio))
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=config.max_queue))
    return OtelTracer(provider, store=store, otlp=endpoint if mode in ("otlp", "both") else None)


def _otlp_exporter(endpoint: str, env: Mapping[str, str]) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.util.re import parse_env_headers

    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    headers = parse_env_headers(raw, liberal=True) if raw else None
    return OTLPSpanExporter(endpoint=endpoint, headers=headers)
