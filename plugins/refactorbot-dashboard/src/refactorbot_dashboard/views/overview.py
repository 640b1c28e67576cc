"""Overview: every slice with status, health, heartbeat age, ops/s and error rate."""

from __future__ import annotations

from typing import Any

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
        st.dataframe(
            slice_table(rows),
            hide_index=True,
            width="stretch",
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
