"""Dashboard page of the session slice: browse, search and archive conversations.

Streamlit and the dashboard's table helper are imported inside ``render_sessions``: only the
dashboard process draws pages, and loading the plugin stays cheap. The page goes through the API
client it is given (the session slice's operations), never through the slice's database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

OPS = "/slices/session/operations/"
STATUSES = ["all", "active", "archived"]
#: A history budget no session reaches: the page shows messages, not a model's context.
SHOW_ALL_TOKENS = 1_000_000_000


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``session.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"session.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def session_rows(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the sessions table rows (a search adds where it matched)."""
    rows = []
    for s in sessions:
        row = {
            "session": s["session_id"],
            "channel": s["channel"],
            "chat": s["chat_id"],
            "user": s["user_id"],
            "status": s["status"],
            "title": s.get("title") or "",
            "messages": s["message_count"],
            "tokens": s["token_count"],
            "last active (UTC)": when(s["updated_at"]),
            "created (UTC)": when(s["created_at"]),
        }
        if "matched" in s:
            row["matched"] = s["matched"]
            row["snippet"] = s.get("snippet") or ""
        rows.append(row)
    return rows


def message_rows(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return a session's messages as table rows (tool calls named, not dumped)."""
    return [
        {
            "#": i + 1,
            "role": m["role"],
            "content": m.get("content") or "",
            "tool calls": ", ".join(c.get("function", {}).get("name", "?") for c in m.get("tool_calls") or []),
            "tool call id": m.get("tool_call_id") or "",
        }
        for i, m in enumerate(messages)
    ]


def render_sessions(api: Any) -> None:
    """Draw the conversations: totals, a filtered or searched list, one session's messages, archive."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Sessions")
    stats, error = call(api, "stats")
    if error:
        st.error(error)
        return
    cols = st.columns(5)
    cols[0].metric("Sessions", f"{stats['sessions']:,}")
    cols[1].metric("Active", f"{stats['active']:,}")
    cols[2].metric("Archived", f"{stats['archived']:,}")
    cols[3].metric("Messages", f"{stats['messages']:,}")
    cols[4].metric("Tokens", f"{stats['tokens']:,}")

    filters = st.columns([3, 1, 1])
    query = filters[0].text_input(
        "Search", key="session.query", max_chars=200, placeholder="id, title, chat, user or message text"
    )
    status = filters[1].selectbox("Status", STATUSES, key="session.status")
    limit = filters[2].selectbox("Rows", [50, 100, 200, 500], key="session.limit")
    payload: dict[str, Any] = {"limit": limit}
    if status != "all":
        payload["status"] = status
    if query.strip():
        found, error = call(api, "search", {**payload, "query": query.strip()})
    else:
        found, error = call(api, "list", payload)
    if error:
        st.error(error)
        return
    if not found:
        st.info("No session matches." if query.strip() else "No conversations yet.")
        return
    table(session_rows(found), key="session.sessions")

    ids = [s["session_id"] for s in found]
    labels = {s["session_id"]: f"{s['channel']}/{s['chat_id']} · {s['user_id']} · {s['status']}" for s in found}
    chosen = st.selectbox("Session", ids, format_func=lambda i: f"{i[:12]} — {labels[i]}", key="session.chosen")
    session = next(s for s in found if s["session_id"] == chosen)
    st.subheader(session.get("title") or f"{session['channel']}/{session['chat_id']}")
    st.caption(
        f"{session['message_count']} messages, {session['token_count']} tokens · created {when(session['created_at'])}"
        f" · last active {when(session['updated_at'])} UTC"
        + (f" · archived {when(session['archived_at'])} UTC" if session.get("archived_at") else "")
    )
    history, error = call(api, "history", {"session_id": chosen, "max_tokens": SHOW_ALL_TOKENS, "limit": 500})
    if error:
        st.error(error)
    elif history["messages"]:
        table(message_rows(history["messages"]), key=f"session.messages.{chosen}")
        if history["dropped"]:
            st.caption(f"The newest 500 messages are shown; {history['dropped']} older ones are not.")
    else:
        st.info("This session has no messages.")
    if session["status"] == "active" and st.button("Archive this session", key="session.archive"):
        archived, error = call(api, "archive", {"session_id": chosen})
        st.session_state["session.result"] = error or f"Archived {archived['session_id']}; its chat starts anew."
        st.rerun()
    result = st.session_state.pop("session.result", None)
    if result:
        (st.success if result.startswith("Archived") else st.error)(result)
