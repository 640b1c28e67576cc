"""Entry point of refactorbot-otel: the tracer (``provide_tracer``), the ``traces`` slice, its pages.

Importing this module imports no OpenTelemetry code: the SDK is imported by ``provide_tracer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def provide_tracer(config: Any, env: Mapping[str, str]) -> Any:
    """Return the OpenTelemetry tracer ``[plugins.otel]`` and the ``OTEL_*`` variables describe, or ``None``."""
    from refactorbot_otel.config import OtelConfig

    settings = config.section("plugins", "otel", OtelConfig, env)
    if not settings.enabled:
        return None
    from refactorbot_otel.tracer import build_tracer

    return build_tracer(settings, env, config.data_dir)


@hookimpl
def register_slices(register: Any) -> None:
    """Register the ``traces`` slice (the span store's reader and retention)."""
    from refactorbot_otel.slice import TracesSlice

    register(TracesSlice)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the traces pages: recent traces, and a waterfall of one trace."""
    from refactorbot import DashboardPage

    from refactorbot_otel import pages

    register(
        DashboardPage(
            group="traces",
            title="Traces",
            render=pages.render_traces,
            kind="dashboard",
            url_path="traces-recent",
            icon=":material/timeline:",
        )
    )
