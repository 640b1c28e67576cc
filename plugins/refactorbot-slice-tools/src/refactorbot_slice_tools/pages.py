"""Dashboard page of the tools slice: the registry with enable/disable, per-tool stats and rate limits.

Streamlit and the dashboard's table helper are imported inside ``render_tools``; the page goes
through the API client it is given (the tools slice's operations).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

OPS = "/slices/tools/operations/"
WINDOWS = {"1 hour": 3600, "24 hours": 86_400, "7 days": 604_800, "everything": None}


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``tools.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"tools.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def registry_rows(tools: list[dict[str, Any]], limits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per installed tool: registry data and its limits."""
    rows = []
    for t in tools:
        limit = limits.get(t["name"], {})
        rows.append(
            {
                "tool": t["name"],
                "enabled": t["enabled"],
                "category": t["category"],
                "plugin": t.get("plugin") or "",
                "version": t.get("version") or "",
                "timeout (s)": limit.get("timeout_s"),
                "rate limit (/min)": limit.get("per_minute"),
                "available now": limit.get("available"),
                "refused": limit.get("refused", 0),
                "description": t["description"],
            }
        )
    return rows


def usage_rows(usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the per-tool statistics rows."""
    return [
        {
            "tool": u["tool"],
            "calls": u["calls"],
            "errors": u["errors"],
            "error rate": u["error_rate"],
            "avg ms": u["avg_ms"],
            "p95 ms": u["p95_ms"],
            "last used (UTC)": when(u["last_used"]),
        }
        for u in usage
    ]


def render_tools(api: Any) -> None:
    """Draw the registry (enable or disable a tool), rate limits, usage statistics and recent failures."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Tools")
    listed, error = call(api, "list", {"include_disabled": True})
    if error:
        st.error(error)
        return
    limits, error = call(api, "limits")
    if error:
        st.error(error)
        return
    tools = listed["tools"]
    if not tools:
        st.info("No tools installed: pip install refactorbot-tools-files (or -exec, -web, -code), then restart.")
        return
    by_tool = {limit["tool"]: limit for limit in limits["tools"]}
    enabled = sum(1 for t in tools if t["enabled"])
    cols = st.columns(3)
    cols[0].metric("Tools", len(tools))
    cols[1].metric("Enabled", enabled)
    cols[2].metric("Refused by rate limits", sum(limit["refused"] for limit in limits["tools"]))
    table(
        registry_rows(tools, by_tool),
        key="tools.registry",
        column_config={"enabled": st.column_config.CheckboxColumn("enabled", disabled=True)},
    )
    names = [t["name"] for t in tools]
    pick = st.columns([3, 1, 1])
    chosen = pick[0].selectbox("Tool", names, key="tools.chosen")
    state = next(t["enabled"] for t in tools if t["name"] == chosen)
    if pick[1].button("Enable", key="tools.enable", disabled=state):
        _, error = call(api, "enable", {"name": chosen})
        st.session_state["tools.result"] = (not error, error or f"Enabled {chosen}.")
        st.rerun()
    if pick[2].button("Disable", key="tools.disable", disabled=not state):
        _, error = call(api, "disable", {"name": chosen})
        st.session_state["tools.result"] = (not error, error or f"Disabled {chosen}: models are no longer offered it.")
        st.rerun()
    result = st.session_state.pop("tools.result", None)
    if result:
        good, text = result
        (st.success if good else st.error)(text)

    limited = [limit for limit in limits["tools"] if limit["per_minute"]]
    if limited:
        st.subheader("Rate limits")
        for limit in limited:
            share = min(1.0, (limit["available"] or 0.0) / max(1.0, limit["per_minute"]))
            st.progress(
                share,
                text=f"{limit['tool']}: {limit['available']:.1f} of {limit['per_minute']:g} calls a minute available"
                f" · {limit['refused']} refused",
            )

    st.subheader("Usage")
    window = st.selectbox("Over the last", list(WINDOWS), index=1, key="tools.window")
    seconds = WINDOWS[window]
    stats, error = call(api, "stats", {"since": None if seconds is None else time.time() - seconds})
    if error:
        st.error(error)
    elif stats["tools"]:
        rows = usage_rows(stats["tools"])
        st.bar_chart(rows, x="tool", y=["calls", "errors"], stack=False)
        table(
            rows,
            key="tools.usage",
            column_config={"error rate": st.column_config.ProgressColumn("error rate", min_value=0.0, max_value=1.0)},
        )
    else:
        st.info("No tool calls in this window.")

    st.subheader("Recent failures")
    failures, error = call(api, "history", {"failures_only": True, "limit": 50})
    if error:
        st.error(error)
    elif failures["executions"]:
        table(
            [
                {
                    "time (UTC)": when(e["timestamp"]),
                    "tool": e["tool"],
                    "error": e.get("error") or "",
                    "ms": round(e["duration_ms"], 1),
                    "session": e.get("session_id") or "",
                }
                for e in failures["executions"]
            ],
            key="tools.failures",
        )
    else:
        st.caption("No failed tool calls recorded.")
