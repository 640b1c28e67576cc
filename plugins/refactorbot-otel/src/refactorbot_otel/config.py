"""Settings of the tracer (``[plugins.otel]``) and of the span store's retention (``[slices.traces]``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import ConfigDict, Field
from refactorbot import Model, SliceConfig

Exporter = Literal["auto", "otlp", "sqlite", "both", "none"]


class OtelConfig(Model):
    """``[plugins.otel]`` (``RB_OTEL_*``): what is traced and where the spans go."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="trace this host (false: the plugin installs no tracer)")
    exporter: Exporter = Field(
        "auto",
        description=(
            "auto: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, else the SQLite"
            " span store; otlp, sqlite, both, none"
        ),
    )
    service_name: str = Field("refactorbot", min_length=1, max_length=200, description="OTEL_SERVICE_NAME wins")
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="share of new traces recorded (parent-based)")
    max_traces_per_second: float = Field(
        100.0,
        ge=0.0,
        description=(
            "new traces recorded per second at most (a token bucket with one second's burst); past it new"
            " traces are not recorded until tokens refill; 0: no limit"
        ),
    )
    max_queue: int = Field(
        8192, ge=64, description="spans waiting for export; past it new spans are dropped (and counted in the log)"
    )


class TracesConfig(SliceConfig):
    """``[slices.traces]`` (``RB_TRACES_*``): retention of the SQLite span store."""

    max_age_hours: float = Field(168.0, gt=0, description="spans older than this are deleted")
    max_spans: int = Field(500_000, ge=1000, description="the store keeps at most this many spans (oldest go)")
    prune_interval: float = Field(300.0, gt=0, description="seconds between retention passes")
    prune_batch: int = Field(5000, ge=100, le=100_000, description="rows deleted per transaction")


def otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """Return the OTLP/HTTP traces URL the standard variables name, or ``None``.

    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is used as given; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a
    base to which ``/v1/traces`` is appended (OpenTelemetry's exporter specification).
    """
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + "/v1/traces"
    return None
