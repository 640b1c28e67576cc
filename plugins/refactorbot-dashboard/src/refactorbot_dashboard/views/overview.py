"""Overview: every slice with status, health, heartbeat age, ops/s and error rate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from refactorbot_dashboard.tables import table

STATUS_ICON = {
    "running": "🟢",
    "degraded": "🟡",
    "failed": "🔴",
    "stopped": "⚪",
    "initializing": "🔵",
    "pending": "⚪",
}
COLUMNS = ["slice", "status", "health", "heartbeat_age_s", "ops_per_s", "error_rate", "count", "restarts", "error"]


def slice_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the rows shown in the slice table (rates rounded)."""
    return [
        {
            "slice": r["slice_id"],
            "status": r["status"],
            "health": r.get("health") or "-",
            "heartbeat_age_s": r.get("heartbeat_age_s"),
            "ops_per_s": round(r.get("ops_per_s", 0.0), 3),
            "error_rate": round(r.get("error_rate", 0.0), 4),
            "count": r.get("count", 0),
            "restarts": r.get("restarts", 0),
            "error": r.get("error") or "",
        }
        for r in rows
    ]


def limit_rows(resources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per slice the host has routed to: operations in flight, refused, and its limits."""
    return [
        {
            "slice": slice_id,
            "in flight": r.get("in_flight", 0),
            "max concurrency": r.get("max_concurrency"),
            "busy": (r.get("in_flight", 0) / r["max_concurrency"]) if r.get("max_concurrency") else 0.0,
            "refused": r.get("refused", 0),
            "rate limit (/s)": r.get("rate_limit"),
            "burst": r.get("burst"),
            "timeout (s)": r.get("timeout"),
        }
        for slice_id, r in resources.items()
    ]


def render_limits(api: Any) -> None:
    """Draw rate limits and concurrency: per slice, operations in flight, refused, and the configured limits."""
    import streamlit as st

    st.subheader("Limits and concurrency")
    resources = api.get("/metrics")["resources"]
    if not resources:
        st.caption("No operation has been routed yet; slices appear here after their first call.")
        return
    rows = limit_rows(resources)
    refused = sum(r["refused"] for r in rows)
    cols = st.columns(2)
    cols[0].metric("In flight", sum(r["in flight"] for r in rows))
    cols[1].metric("Refused (rate limit or busy)", refused)
    table(
        rows,
        key="overview.limits",
        column_config={"busy": st.column_config.ProgressColumn("busy", min_value=0.0, max_value=1.0, format="percent")},
    )
    st.caption("Limits come from [slices.<id>.resources]; refused counts calls turned away since the server started.")


def render_alerts(api: Any, slices: list[dict[str, Any]]) -> None:
    """Draw the alert panel from the scheduling slice's alerts (when it runs): firing ones first."""
    import streamlit as st

    st.subheader("Alerts")
    status = next((r["status"] for r in slices if r["slice_id"] == "scheduling"), None)
    if status not in ("running", "degraded"):
        st.caption("Install and run the scheduling slice (refactorbot-slice-scheduling) for alerts here.")
        return
    answer = api.post("/slices/scheduling/operations/alerts", json={"state": "all", "limit": 50})
    if not answer.get("success"):
        st.warning(f"scheduling.alerts failed: {answer.get('error_message')}")
        return
    alerts = (answer.get("data") or {}).get("alerts") or []
    firing = [a for a in alerts if a["state"] == "firing"]
    for alert in firing:
        since = datetime.fromtimestamp(alert["first_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        st.error(f"**{alert['kind']}** {alert['subject']}: {alert['message']} (since {since} UTC)")
    if not firing:
        st.success("No alert is firing.")
    resolved = len(alerts) - len(firing)
    if resolved:
        st.caption(f"{resolved} resolved recently; see the scheduling slice's Alerts page.")


def render(api: Any) -> None:
    """Draw the overview."""
    import streamlit as st

    st.title("Overview")
    rows = api.get("/slices")
    plugins = api.get("/plugins")
    running = sum(1 for r in rows if r["status"] in ("running", "degraded"))
    total_ops = sum(r.get("count", 0) for r in rows)
    total_errors = sum(r.get("errors", 0) for r in rows)
    cols = st.columns(4)
    cols[0].metric("Slices running", f"{running} / {len(rows)}")
    cols[1].metric("Operations", f"{total_ops:,}")
    cols[2].metric("Ops/s (last minute)", f"{sum(r.get('ops_per_s', 0.0) for r in rows):.2f}")
    cols[3].metric("Error rate", f"{(total_errors / total_ops if total_ops else 0):.2%}")
    if not rows:
        st.info("No slices are installed. Install one, e.g. `pip install refactorbot-slice-memory`.")
    else:
        table(
            slice_table(rows),
            key="overview.slices",
            column_order=COLUMNS,
            column_config={
                "heartbeat_age_s": st.column_config.NumberColumn("heartbeat age (s)", format="%.1f"),
                "ops_per_s": st.column_config.NumberColumn("ops/s", format="%.3f"),
                "error_rate": st.column_config.ProgressColumn("error rate", min_value=0.0, max_value=1.0),
            },
        )
    for row in rows:
        if row["status"] == "failed":
            st.error(f"Slice **{row['slice_id']}** failed: {row.get('error') or 'unknown reason'}")
    broken = [p for p in plugins if p["status"] in ("failed", "incompatible", "hung")]
    for plugin in broken:
        st.warning(f"Plugin **{plugin['name']}** {plugin['status']}: {plugin.get('error')}")
    st.caption(f"{len(plugins)} plugins loaded, {len(broken)} with problems.")
    render_alerts(api, rows)
    render_limits(api)
