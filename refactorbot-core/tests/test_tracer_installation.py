"""The process's tracer while several hosts run in it: each host takes out its own, in any order."""

from __future__ import annotations

from typing import Any

from refactorbot import tracing


def test_hosts_stopping_out_of_order_leave_no_stale_tracer() -> None:
    first: Any = object()
    second: Any = object()
    assert tracing.tracer() is None
    tracing.push(first)
    tracing.push(second)
    assert tracing.tracer() is second
    tracing.remove(first)  # the first host stops while the second still runs
    assert tracing.tracer() is second
    tracing.remove(second)
    assert tracing.tracer() is None
    tracing.remove(second)  # removing twice is harmless
    assert tracing.install(first) is None and tracing.tracer() is first
    assert tracing.install(None) is first and tracing.tracer() is None
