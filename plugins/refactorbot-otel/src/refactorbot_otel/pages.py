"""Dashboard page of the span store: recent traces, and the waterfall of the one chosen.

Streamlit and the dashboard's table helper are imported inside ``render_traces``; the page goes
through the API client it is given (the ``traces`` slice's operations).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

OPS = "/slices/traces/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``traces.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"traces.{operation} failed"
    return answer.get("data"), None


def when(ns: int) -> str:
    """Return a time in nanoseconds as ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC)."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def trace_rows(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per trace for the list."""
    return [
        {
            "started (UTC)": when(t["start_ns"]),
            "root": t["root_name"] or "(parent in another process)",
            "duration ms": round(t["duration_ms"], 3),
            "spans": t["spans"],
            "errors": t["errors"],
            "trace id": t["trace_id"],
        }
        for t in traces
    ]


def waterfall_rows(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per span, indented under its parent, with its offset and duration."""
    rows = []
    for s in spans:
        attributes = s["attributes"]
        detail = ", ".join(
            f"{k}={attributes[k]}"
            for k in (
                "gen_ai.request.model",
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
                "refactorbot.llm.cost_usd",
                "gen_ai.tool.name",
                "error.type",
            )
            if k in attributes
        )
        rows.append(
            {
                "span": "· " * s["depth"] + s["name"],
                "kind": s["kind"],
                "start ms": round(s["offset_ms"], 3),
                "duration ms": round(s["duration_ms"], 3),
                "status": s["status"] + (f": {s['status_message']}" if s["status_message"] else ""),
                "detail": detail,
            }
        )
    return rows


def chart_spec(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the Vega-Lite spec of a waterfall: one bar per span from its start to its end, in order."""
    data = [
        {"order": i, "span": r["span"], "start": r["start ms"], "end": r["start ms"] + r["duration ms"]}
        for i, r in enumerate(rows)
    ]
    return {
        "data": {"values": data},
        "mark": {"type": "bar", "cornerRadius": 2},
        "encoding": {
            "y": {"field": "span", "type": "nominal", "sort": {"field": "order"}, "title": None},
            "x": {"field": "start", "type": "quantitative", "title": "ms from the trace's start"},
            "x2": {"field": "end"},
            "tooltip": [{"field": "span"}, {"field": "start"}, {"field": "end"}],
        },
    }


def render_traces(api: Any) -> None:
    """Draw the recent traces (filters, CSV) and the waterfall of the trace chosen."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Traces")
    cols = st.columns([2, 1, 1])
    name = cols[0].text_input("Root span contains", key="traces.name")
    errors_only = cols[1].checkbox("Errors only", key="traces.errors")
    limit = cols[2].number_input("Show", min_value=1, max_value=500, value=50, key="traces.limit")
    listed, error = call(
        api, "recent", {"limit": int(limit), "errors_only": errors_only, "name_contains": name or None}
    )
    if error:
        st.error(error)
        return
    if not listed["stored"]:
        st.info(
            "This host does not write spans to the built-in store (OTLP export is configured, or tracing"
            " is off): see your collector. Traces stored earlier are listed below."
        )
    traces = listed["traces"]
    if not traces:
        st.info("No traces yet: every routed operation, LLM call and chat turn makes one.")
        return
    table(trace_rows(traces), key="traces.recent")
    labels = {f"{when(t['start_ns'])} · {t['root_name'] or '?'} · {t['trace_id']}": t["trace_id"] for t in traces}
    chosen = st.selectbox("Trace", list(labels), key="traces.chosen")
    detail, error = call(api, "trace", {"trace_id": labels[chosen]})
    if error:
        st.error(error)
        return
    st.subheader(f"Waterfall · {detail['duration_ms']:.1f} ms · {len(detail['spans'])} spans")
    rows = waterfall_rows(detail["spans"])
    st.vega_lite_chart(chart_spec(rows), width="stretch")
    table(rows, key="traces.waterfall")
