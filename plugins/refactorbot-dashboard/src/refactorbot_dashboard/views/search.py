"""Search: one query across sessions, memories, the unified log and the operations every slice offers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

LIVE = ("running", "degraded")
LIMIT = 50


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


def run(api: Any, target: str, payload: dict[str, Any]) -> tuple[Any, str | None]:
    """Run ``slice.operation`` through the API; return ``(data, None)`` or ``(None, reason)``."""
    slice_id, operation = target.split(".", 1)
    answer = api.post(f"/slices/{slice_id}/operations/{operation}", json=payload)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"{target} failed"
    return answer.get("data"), None


def operation_rows(details: list[dict[str, Any]], stats: dict[str, dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Return the operations whose ``slice.name`` or description contains ``query`` (any case), with their use."""
    needle = query.lower()
    rows = []
    for detail in details:
        for op in detail["capabilities"]["operations"]:
            name = f"{detail['slice_id']}.{op['name']}"
            if needle in name.lower() or needle in (op.get("description") or "").lower():
                used = stats.get(name, {})
                rows.append(
                    {
                        "operation": name,
                        "description": (op.get("description") or "").split("\n")[0],
                        "calls": used.get("count", 0),
                        "errors": used.get("errors", 0),
                        "p95 ms": round(used.get("p95_ms", 0.0), 2),
                    }
                )
    return rows


def render(api: Any) -> None:
    """Draw the search box and one section per source, each a table with CSV export."""
    import streamlit as st

    from refactorbot_dashboard.tables import table

    st.title("Search")
    query = st.text_input("Search sessions, memories, logs and operations", key="search.query", max_chars=200).strip()
    if not query:
        st.info("Type a word: a user, a chat, a phrase from a conversation or a log line, an operation's name.")
        return
    slices = api.get("/slices")
    live = {r["slice_id"] for r in slices if r["status"] in LIVE}

    st.subheader("Sessions")
    if "session" in live:
        found, error = run(api, "session.search", {"query": query, "limit": LIMIT})
        if error:
            st.error(error)
        elif found:
            rows = [
                {
                    "session": s["session_id"],
                    "channel": s["channel"],
                    "chat": s["chat_id"],
                    "user": s["user_id"],
                    "status": s["status"],
                    "title": s.get("title") or "",
                    "matched": s["matched"],
                    "snippet": s.get("snippet") or "",
                    "last active (UTC)": when(s["updated_at"]),
                }
                for s in found
            ]
            table(rows, key="search.sessions")
        else:
            st.caption("No session matches.")
    else:
        st.caption("The session slice is not running.")

    st.subheader("Memories")
    if "memory" in live:
        found, error = run(api, "memory.find", {"query": query, "limit": LIMIT})
        if error:
            st.error(error)
        elif found["memories"]:
            rows = [
                {
                    "user": m["user_id"],
                    "id": m["id"],
                    "content": m["content"],
                    "kind": m["kind"],
                    "tags": ", ".join(m.get("tags") or []),
                    "created (UTC)": when(m["created_at"]),
                }
                for m in found["memories"]
            ]
            table(rows, key="search.memories")
        else:
            st.caption("No memory matches.")
    else:
        st.caption("The memory slice is not running.")

    st.subheader("Logs")
    page = api.get("/logs", params={"contains": query, "limit": LIMIT})
    if page["items"]:
        rows = [
            {
                "time (UTC)": when(item["ts"]),
                "level": item["level_name"],
                "slice": item.get("slice_id") or "-",
                "logger": item["logger"],
                "message": item["message"],
            }
            for item in page["items"]
        ]
        table(rows, key="search.logs")
        if page["next_before_id"] is not None:
            st.caption(f"The newest {LIMIT} matching log rows; narrow the search or use the Logs page for more.")
    else:
        st.caption("No log row matches.")

    st.subheader("Operations")
    details = [api.get(f"/slices/{r['slice_id']}") for r in slices if r["status"] in LIVE]
    rows = operation_rows(details, api.get("/metrics")["operations"], query)
    if rows:
        table(rows, key="search.operations")
        st.caption("Run one from the Control page.")
    else:
        st.caption("No operation matches.")
