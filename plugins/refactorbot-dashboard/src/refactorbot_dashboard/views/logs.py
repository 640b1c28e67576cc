"""Logs: the unified log of every slice, filterable, refreshed live."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from refactorbot_dashboard.tables import table

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
WINDOWS = {"15 minutes": 900, "1 hour": 3600, "24 hours": 86_400, "everything": None}
REFRESH_SECONDS = 2.0


def log_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return log items as table rows with readable times."""
    return [
        {
            "id": item["id"],
            "time": datetime.fromtimestamp(item["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "level": item["level_name"],
            "slice": item.get("slice_id") or "-",
            "logger": item["logger"],
            "message": item["message"],
        }
        for item in items
    ]


def render(api: Any) -> None:
    """Draw the logs page; the table refreshes itself while 'Live' is on."""
    import streamlit as st

    st.title("Logs")
    slices = ["(all)"] + [r["slice_id"] for r in api.get("/slices")]
    cols = st.columns([2, 2, 2, 1, 1])
    slice_id = cols[0].selectbox("Slice", slices, key="logs.slice")
    level = cols[1].selectbox("Minimum level", LEVELS, index=1, key="logs.level")
    window = cols[2].selectbox("Since", list(WINDOWS), index=1, key="logs.window")
    limit = cols[3].selectbox("Rows", [50, 100, 200, 500], index=1, key="logs.limit")
    live = cols[4].toggle("Live", value=True, key="logs.live")
    filters = {"slice_id": None if slice_id == "(all)" else slice_id, "level": level, "limit": limit}
    signature = repr(sorted(filters.items())) + window
    if st.session_state.get("logs.signature") != signature:
        st.session_state["logs.signature"] = signature
        st.session_state["logs.pages"] = []  # before_id of each older page visited

    @st.fragment(run_every=REFRESH_SECONDS if live and not st.session_state["logs.pages"] else None)
    def log_table() -> None:
        pages: list[int] = st.session_state["logs.pages"]
        seconds = WINDOWS[window]
        params = {**filters, "since": None if seconds is None else time.time() - seconds}
        if pages:
            params["before_id"] = pages[-1]
        page = api.get("/logs", params=params)
        rows = log_rows(page["items"])
        if rows:
            table(rows, key="logs.rows", column_order=["time", "level", "slice", "logger", "message"])
        else:
            st.info("No log rows match these filters.")
        newer, older, status = st.columns([1, 1, 6])
        if newer.button("Newer", disabled=not pages, key="logs.newer"):
            pages.pop()
            st.rerun()
        if older.button("Older", disabled=page["next_before_id"] is None, key="logs.older"):
            pages.append(page["next_before_id"])
            st.rerun()
        where = f"page {len(pages) + 1}" if pages else ("live" if live else "newest")
        status.caption(f"{len(rows)} rows · {where} · updated {datetime.now(UTC).strftime('%H:%M:%S')} UTC")

    log_table()
