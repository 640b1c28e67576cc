"""Analytics: latency percentiles, operations over time per slice, LLM tokens and cost."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from refactorbot_dashboard.tables import table

WINDOWS = {"15 minutes": 15, "1 hour": 60, "6 hours": 360, "24 hours": 1440, "7 days": 10_080}


def latency_rows(operations: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per operation with counts and latency percentiles."""
    return [
        {
            "operation": name,
            "count": s["count"],
            "errors": s["errors"],
            "p50_ms": round(s["p50_ms"], 2),
            "p95_ms": round(s["p95_ms"], 2),
            "p99_ms": round(s["p99_ms"], 2),
            "mean_ms": round(s["mean_ms"], 2),
        }
        for name, s in operations.items()
    ]


def pivot(buckets: list[dict[str, Any]], value: str) -> Any:
    """Return a DataFrame indexed by minute (UTC) with one column per slice."""
    import pandas as pd

    frame = pd.DataFrame(buckets)
    frame["time"] = [datetime.fromtimestamp(m, UTC) for m in frame["minute"]]
    return frame.pivot_table(index="time", columns="slice_id", values=value, aggfunc="sum", fill_value=0)


def render(api: Any) -> None:
    """Draw the analytics page."""
    import streamlit as st

    st.title("Analytics")
    window = st.selectbox("Window", list(WINDOWS), index=1)
    metrics = api.get("/metrics")
    process = metrics["process"]
    cols = st.columns(4)
    cols[0].metric("Memory (RSS)", f"{process['rss_mb']:.0f} MB")
    cols[1].metric("CPU", f"{process['cpu_percent']:.0f} %")
    cols[2].metric("CPU time", f"{process['cpu_seconds']:.1f} s")
    cols[3].metric("Threads", f"{process['threads']:.0f}")

    st.subheader("Latency percentiles")
    rows = latency_rows(metrics["operations"])
    if rows:
        st.bar_chart(rows, x="operation", y=["p50_ms", "p95_ms", "p99_ms"], stack=False, y_label="ms")
        table(rows, key="analytics.latency")
    else:
        st.info("No operations have run since the server started.")

    st.subheader("Operations over time")
    buckets = api.get("/metrics/operations", params={"minutes": WINDOWS[window]})
    if buckets:
        left, right = st.columns(2)
        with left:
            st.caption("Operations per minute")
            st.line_chart(pivot(buckets, "count"))
        with right:
            st.caption("Errors per minute")
            st.bar_chart(pivot(buckets, "errors"))
        st.caption("Mean latency per minute (ms)")
        st.line_chart(pivot(buckets, "mean_ms"))
    else:
        st.info("No operations in this window.")

    st.subheader("LLM tokens and cost")
    render_spend(api, st)


def render_spend(api: Any, st: Any) -> None:
    """Chart LLM tokens and cost by slice and model, through the providers slice when it runs."""
    slices = {r["slice_id"]: r["status"] for r in api.get("/slices")}
    if slices.get("providers") not in ("running", "degraded"):
        st.caption("Install and run the providers slice (refactorbot-slice-providers) to see LLM spend here.")
        return
    response = api.post("/slices/providers/operations/spend", json={"group_by": ["slice", "model"]})
    if not response.get("success"):
        st.warning(f"providers.spend failed: {response.get('error_message')}")
        return
    rows = (response.get("data") or {}).get("rows") or []
    if not rows:
        st.info("No LLM calls recorded yet.")
        return
    rows = [
        {
            "slice_id": r.get("slice_id") or "-",
            "model": r.get("model") or "-",
            "calls": r.get("calls", 0),
            "tokens": r.get("prompt_tokens", 0) + r.get("completion_tokens", 0),
            "cost_usd": round(r.get("cost_usd") or 0.0, 6),
        }
        for r in rows
    ]
    left, right = st.columns(2)
    with left:
        st.caption("Tokens by slice and model")
        st.bar_chart(rows, x="slice_id", y="tokens", color="model")
    with right:
        st.caption("Cost (USD) by slice and model")
        st.bar_chart(rows, x="slice_id", y="cost_usd", color="model")
    table(rows, key="analytics.llm_spend")
