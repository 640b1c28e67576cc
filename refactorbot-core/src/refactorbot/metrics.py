"""In-process operation metrics: counts, errors and latency percentiles per operation."""

from __future__ import annotations

import bisect
import collections
import time
from typing import Any

#: Upper bounds (ms) of the latency histogram kept per operation (Prometheus-style, cumulative on export).
BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0)


def percentile(sorted_values: list[float], q: float) -> float:
    """Return the ``q`` (0–100) percentile of already sorted values (nearest rank)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class OperationStats:
    """Counters and a window of recent latencies for one ``slice.operation``."""

    __slots__ = ("buckets", "count", "errors", "recent", "total_ms")

    def __init__(self, window: int) -> None:
        self.count = 0
        self.errors = 0
        self.total_ms = 0.0
        self.recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        #: Operations per latency bucket since start (``BUCKETS_MS``, then one past the last bound).
        self.buckets = [0] * (len(BUCKETS_MS) + 1)

    def snapshot(self, now: float, rate_window: float) -> dict[str, Any]:
        """Return counts, error rate, ops/s over ``rate_window`` and latency percentiles."""
        durations = sorted(d for _, d in self.recent)
        in_window = sum(1 for ts, _ in self.recent if now - ts <= rate_window)
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": self.errors / self.count if self.count else 0.0,
            "ops_per_s": in_window / rate_window,
            "mean_ms": self.total_ms / self.count if self.count else 0.0,
            "p50_ms": percentile(durations, 50),
            "p95_ms": percentile(durations, 95),
            "p99_ms": percentile(durations, 99),
        }


class Metrics:
    """Metrics for every operation the orchestrator routed."""

    def __init__(self, window: int = 2048, rate_window: float = 60.0) -> None:
        self.window = window
        self.rate_window = rate_window
        self._ops: dict[tuple[str, str], OperationStats] = {}

    def record(self, slice_id: str, operation: str, duration_ms: float, success: bool) -> None:
        """Count one finished operation."""
        key = (slice_id, operation)
        stats = self._ops.get(key)
        if stats is None:
            stats = self._ops[key] = OperationStats(self.window)
        stats.count += 1
        stats.total_ms += duration_ms
        if not success:
            stats.errors += 1
        stats.recent.append((time.time(), duration_ms))
        stats.buckets[bisect.bisect_left(BUCKETS_MS, duration_ms)] += 1

    def histograms(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Return per ``(slice_id, operation)`` every operation since start, Prometheus-style.

        ``buckets``: ``(upper bound in ms, operations at most that long)`` pairs, cumulative, the
        last bound ``inf``; ``sum_ms``, ``count`` and ``errors``.
        """
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for key, st in sorted(self._ops.items()):
            cumulative, running = [], 0
            for bound, n in zip((*BUCKETS_MS, float("inf")), st.buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            out[key] = {"buckets": cumulative, "sum_ms": st.total_ms, "count": st.count, "errors": st.errors}
        return out

    def snapshot(self, slice_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Return stats keyed by ``slice.operation`` (only ``slice_id``'s when given)."""
        now = time.time()
        return {
            f"{s}.{o}": st.snapshot(now, self.rate_window)
            for (s, o), st in sorted(self._ops.items())
            if slice_id is None or s == slice_id
        }

    def slice_summary(self, slice_id: str) -> dict[str, Any]:
        """Return totals for one slice: count, errors, error rate, ops/s."""
        stats = [st for (s, _), st in self._ops.items() if s == slice_id]
        now = time.time()
        count = sum(st.count for st in stats)
        errors = sum(st.errors for st in stats)
        recent = sum(1 for st in stats for ts, _ in st.recent if now - ts <= self.rate_window)
        return {
            "count": count,
            "errors": errors,
            "error_rate": errors / count if count else 0.0,
            "ops_per_s": recent / self.rate_window,
        }
