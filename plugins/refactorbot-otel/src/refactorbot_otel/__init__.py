"""refactorbot-otel: OpenTelemetry tracing for refactorbot (see docs/observability.md)."""
