"""``GET /metrics/prometheus``: the host's measurements in the Prometheus text format.

Built at each scrape from what the host already keeps (``host.metrics``: operation counts and
latency buckets; slice states; the bus) plus counters the API plugin's hooks keep (LLM calls,
tokens and cost; tool calls; chat-turn messages per channel). ``prometheus_client`` is imported
only when a scrape arrives.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HookCounters:
    """Counters fed by the ``after_llm_call``, ``after_tool_call``, ``message_received`` and ``message_sent`` hooks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.llm_calls: Counter[tuple[str, str, str]] = Counter()  # (model, gateway, slice)
        self.llm_tokens: Counter[tuple[str, str, str]] = Counter()  # (model, slice, "input"|"output")
        self.llm_cost: dict[tuple[str, str], float] = {}  # (model, slice) -> USD
        self.tool_calls: Counter[tuple[str, str]] = Counter()  # (tool, "ok"|"error")
        self.messages: Counter[tuple[str, str]] = Counter()  # (channel, "in"|"out")

    def llm(self, call: Any, result: Any) -> None:
        """Count one answered model call: its tokens and cost."""
        model = str(result.model or call.model or "")
        payer = str(call.slice_id or "")
        with self.lock:
            self.llm_calls[(model, str(result.gateway or call.gateway or ""), payer)] += 1
            self.llm_tokens[(model, payer, "input")] += int(result.usage.prompt_tokens)
            self.llm_tokens[(model, payer, "output")] += int(result.usage.completion_tokens)
            if result.cost_usd is not None:
                key = (model, payer)
                self.llm_cost[key] = self.llm_cost.get(key, 0.0) + float(result.cost_usd)

    def tool(self, call: Any, result: Any) -> None:
        """Count one tool call by outcome."""
        with self.lock:
            self.tool_calls[(str(call.tool), "ok" if result.ok else "error")] += 1

    def message(self, message: Any, direction: str) -> None:
        """Count one chat-turn message of a channel."""
        with self.lock:
            self.messages[(str(message.channel), direction)] += 1


#: The process's counters (one host serves per process).
COUNTERS = HookCounters()


def render(host: Any) -> bytes:
    """Return the host's metrics in the Prometheus text exposition format (0.0.4)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HostCollector(host))
    return bytes(generate_latest(registry))


class _HostCollector:
    def __init__(self, host: Any) -> None:
        self.host = host

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        host = self.host
        ops_total = CounterMetricFamily(
            "refactorbot_operations", "Routed operations by outcome.", labels=["slice", "operation", "outcome"]
        )
        latency = HistogramMetricFamily(
            "refactorbot_operation_duration_seconds",
            "Time from routing to response, per operation.",
            labels=["slice", "operation"],
        )
        for (slice_id, op), h in host.metrics.histograms().items():
            ops_total.add_metric([slice_id, op, "success"], h["count"] - h["errors"])
            ops_total.add_metric([slice_id, op, "error"], h["errors"])
            buckets = [("+Inf" if le == float("inf") else repr(le / 1000), n) for le, n in h["buckets"]]
            latency.add_metric([slice_id, op], buckets, h["sum_ms"] / 1000)
        yield ops_total
        yield latency

        up = GaugeMetricFamily("refactorbot_slice_up", "1 when the slice is running, 0 otherwise.", labels=["slice"])
        state = GaugeMetricFamily(
            "refactorbot_slice_state", "The slice's state (1 for the current one).", labels=["slice", "state"]
        )
        restarts = CounterMetricFamily("refactorbot_slice_restarts", "Restarts of the slice.", labels=["slice"])
        in_flight = GaugeMetricFamily("refactorbot_slice_in_flight", "Operations running now.", labels=["slice"])
        refused = CounterMetricFamily(
            "refactorbot_slice_refused", "Operations refused by the slice's limits.", labels=["slice"]
        )
        for row in host.slice_status():
            sid = row["slice_id"]
            up.add_metric([sid], 1.0 if row["status"] == "running" else 0.0)
            state.add_metric([sid, str(row["status"])], 1.0)
            restarts.add_metric([sid], float(row.get("restarts") or 0))
        for sid, use in host.resources().items():
            in_flight.add_metric([sid], float(use.get("in_flight") or 0))
            refused.add_metric([sid], float(use.get("refused") or 0))
        yield from (up, state, restarts, in_flight, refused)

        bus = host.bus
        queued = GaugeMetricFamily(
            "refactorbot_bus_queued_events", "Events published and not yet delivered (the bus's lag)."
        )
        lag = getattr(bus, "queued", None)
        if isinstance(lag, int | float):
            queued.add_metric([], float(lag))
            yield queued
        for attr, name, text in (
            ("delivered", "refactorbot_bus_delivered", "Event deliveries that succeeded."),
            ("failed", "refactorbot_bus_failed", "Event deliveries whose handler failed."),
        ):
            value = getattr(bus, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                family = CounterMetricFamily(name, text)
                family.add_metric([], float(value))
                yield family

        counters = COUNTERS
        with counters.lock:
            llm_calls = dict(counters.llm_calls)
            tokens = dict(counters.llm_tokens)
            cost = dict(counters.llm_cost)
            tools = dict(counters.tool_calls)
            messages = dict(counters.messages)
        family = CounterMetricFamily(
            "refactorbot_llm_calls", "Answered LLM calls.", labels=["model", "gateway", "slice"]
        )
        for key, n in sorted(llm_calls.items()):
            family.add_metric(list(key), float(n))
        yield family
        family = CounterMetricFamily(
            "refactorbot_llm_tokens", "LLM tokens by direction (GenAI token type).", labels=["model", "slice", "type"]
        )
        for token_key, n in sorted(tokens.items()):
            family.add_metric(list(token_key), float(n))
        yield family
        family = CounterMetricFamily(
            "refactorbot_llm_cost_usd", "LLM spend in US dollars, as the gateways priced it.", labels=["model", "slice"]
        )
        for cost_key, usd in sorted(cost.items()):
            family.add_metric(list(cost_key), usd)
        yield family
        family = CounterMetricFamily("refactorbot_tool_calls", "Tool calls by outcome.", labels=["tool", "outcome"])
        for tool_key, n in sorted(tools.items()):
            family.add_metric(list(tool_key), float(n))
        yield family
        family = CounterMetricFamily(
            "refactorbot_channel_messages",
            "Chat-turn messages per channel (in: received, out: answered).",
            labels=["channel", "direction"],
        )
        for message_key, n in sorted(messages.items()):
            family.add_metric(list(message_key), float(n))
        yield family
