"""OTLP/HTTP export: batches of recorded spans become SDK ``ReadableSpan``s for the SDK's exporter.

Runs on the tracer's exporting thread only; the OpenTelemetry SDK is imported when this module is,
which ``build_tracer`` does only when an OTLP endpoint is configured. The exporter itself reads the
standard ``OTEL_EXPORTER_OTLP_*`` variables (timeout, compression, certificates) and retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.re import parse_env_headers

if TYPE_CHECKING:
    from refactorbot_otel.tracer import SpanBase

_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class OtlpExportError(RuntimeError):
    """The collector did not accept a batch (the exporter logged the HTTP status and retried)."""


class OtlpSink:
    """Send batches of spans to ``endpoint`` (OTLP/HTTP, protobuf) with the SDK's exporter."""

    def __init__(self, endpoint: str, env: Mapping[str, str], resource: Mapping[str, str]) -> None:
        raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
        headers = parse_env_headers(raw, liberal=True) if raw else None
        self.endpoint = endpoint
        self.exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
        self.resource = Resource.create(dict(resource))
        from refactorbot_otel import __name__ as package

        self.scope = InstrumentationScope(package, "0.1.0")

    def readable(self, span: SpanBase) -> ReadableSpan:
        """Return ``span`` as the SDK's finished span."""
        trace_id = int(span.trace_id, 16)
        parent = (
            SpanContext(trace_id, int(span.parent_id, 16), is_remote=span.remote_parent, trace_flags=_SAMPLED)
            if span.parent_id is not None
            else None
        )
        status = Status(StatusCode.ERROR, span.status_message) if span.status == "error" else _UNSET
        return ReadableSpan(
            name=span.name,
            context=SpanContext(trace_id, int(span.span_id, 16), is_remote=False, trace_flags=_SAMPLED),
            parent=parent,
            resource=self.resource,
            attributes=span.attributes,
            kind=_KINDS[span.kind],
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self.scope,
        )

    def export(self, spans: Sequence[SpanBase]) -> None:
        """Send ``spans``; raise ``OtlpExportError`` when the collector did not take them."""
        result = self.exporter.export([self.readable(s) for s in spans])
        if result is not SpanExportResult.SUCCESS:
            raise OtlpExportError(f"the collector at {self.endpoint} did not accept the batch")

    def shutdown(self) -> None:
        """Close the exporter's HTTP session."""
        self.exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
