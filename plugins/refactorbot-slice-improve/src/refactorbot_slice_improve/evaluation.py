"""Comparing a slice's metrics before and after a change: better, equal, worse or inconclusive."""

from __future__ import annotations

from refactorbot import WindowMetrics

from refactorbot_slice_improve.models import ImproveConfig, Verdict


def compare(before: WindowMetrics, after: WindowMetrics, config: ImproveConfig) -> tuple[Verdict, str]:
    """Return the verdict on a change and one line saying why.

    Worse: the error rate rose by more than ``error_rate_margin``, or p95 latency by more than
    ``latency_margin`` (relative) and ``latency_floor_ms``. Better: the same margins the other
    way. Inconclusive: fewer than ``min_calls`` calls on either side.
    """
    figures = (
        f"error rate {before.error_rate:.1%} → {after.error_rate:.1%}, p95 {before.p95_ms:.1f} → {after.p95_ms:.1f} ms"
        f" ({before.calls} → {after.calls} calls)"
    )
    if before.calls < config.min_calls or after.calls < config.min_calls:
        return "inconclusive", f"too few calls to compare (need {config.min_calls} on each side): {figures}"
    errors = after.error_rate - before.error_rate
    latency = after.p95_ms - before.p95_ms
    slower = latency > config.latency_floor_ms and latency > before.p95_ms * config.latency_margin
    faster = -latency > config.latency_floor_ms and -latency > before.p95_ms * config.latency_margin / (
        1 + config.latency_margin
    )
    if errors > config.error_rate_margin or (slower and errors >= 0):
        return "worse", figures
    if -errors > config.error_rate_margin or (faster and errors <= 0):
        return "better", figures
    return "equal", figures
