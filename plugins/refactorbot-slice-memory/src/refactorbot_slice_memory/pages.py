"""Dashboard page of the memory slice: a per-user browser with search, edit and forget.

Streamlit and the dashboard's table helper are imported inside ``render_memories``; the page goes
through the API client it is given (the memory slice's operations), never through its database.
Browsing does not count as a recall: searches run with ``touch=false``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

OPS = "/slices/memory/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``memory.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"memory.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def memory_rows(memories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the memories table rows."""
    return [
        {
            "id": m["id"],
            "content": m["content"],
            "kind": m["kind"],
            "importance": m["importance"],
            "tags": ", ".join(m.get("tags") or []),
            "recalled": m["access_count"],
            "last recalled (UTC)": when(m.get("last_accessed")),
            "created (UTC)": when(m["created_at"]),
            "session": m.get("session_id") or "",
        }
        for m in memories
    ]


def parse_tags(text: str) -> list[str]:
    """Return the comma-separated tags of ``text`` (blank entries dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def render_memories(api: Any) -> None:
    """Draw the memory browser: pick a user, search their memories, edit or forget one (or all)."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Memories")
    stats, error = call(api, "stats")
    if error:
        st.error(error)
        return
    cols = st.columns(4)
    cols[0].metric("Memories", f"{stats['memories']:,}")
    cols[1].metric("Users", f"{stats['users']:,}")
    cols[2].metric("Summaries", f"{stats['summaries']:,}")
    cols[3].metric("Recalls", f"{stats['accesses']:,}")

    who = st.text_input("Find a user", key="memory.user_filter", max_chars=200)
    users, error = call(api, "users", {"query": who.strip() or None, "limit": 1000})
    if error:
        st.error(error)
        return
    if not users:
        st.info("No user matches." if who.strip() else "No memories yet.")
        return
    counts = {u["user_id"]: u["memories"] for u in users}
    user = st.selectbox("User", list(counts), format_func=lambda u: f"{u} ({counts[u]})", key="memory.user")
    search = st.columns([3, 2, 1])
    query = search[0].text_input("Search this user's memories", key="memory.query", max_chars=2000)
    tags = search[1].text_input("Tags (all of)", key="memory.tags", max_chars=500)
    limit = search[2].selectbox("Rows", [25, 50, 100], key="memory.limit")
    found, error = call(
        api,
        "search",
        {
            "user_id": user,
            "query": query,
            "tags": parse_tags(tags),
            "limit": limit,
            "include_consolidated": True,
            "touch": False,
        },
    )
    if error:
        st.error(error)
        return
    memories = found["memories"]
    if not memories:
        st.info("No memory of this user matches.")
    else:
        table(memory_rows(memories), key=f"memory.memories.{user}")
        by_id = {m["id"]: m for m in memories}
        chosen = st.selectbox(
            "Memory",
            list(by_id),
            format_func=lambda i: f"#{i}: {by_id[i]['content'][:80]}",
            key="memory.chosen",
        )
        memory = by_id[chosen]
        with st.form(f"memory.edit.{chosen}"):
            content = st.text_area("Text", memory["content"], max_chars=20_000, key=f"memory.content.{chosen}")
            row = st.columns(3)
            kind = row[0].text_input("Kind", memory["kind"], max_chars=32, key=f"memory.kind.{chosen}")
            importance = row[1].slider(
                "Importance", 0.0, 1.0, float(memory["importance"]), 0.05, key=f"memory.imp.{chosen}"
            )
            tag_text = row[2].text_input(
                "Tags", ", ".join(memory["tags"]), max_chars=1500, key=f"memory.tagset.{chosen}"
            )
            if st.form_submit_button("Save"):
                _, error = call(
                    api,
                    "update",
                    {
                        "user_id": user,
                        "memory_id": chosen,
                        "content": content,
                        "kind": kind,
                        "importance": importance,
                        "tags": parse_tags(tag_text),
                    },
                )
                st.session_state["memory.result"] = (not error, error or f"Saved memory #{chosen}.")
                st.rerun()
        if st.button(f"Forget memory #{chosen}", key="memory.forget"):
            gone, error = call(api, "forget", {"user_id": user, "memory_id": chosen})
            st.session_state["memory.result"] = (not error, error or f"Forgot {gone['forgotten']} memory.")
            st.rerun()
    with st.expander(f"Forget everything about {user}"):
        sure = st.checkbox(f"Yes, delete all {counts[user]} memories of {user}", key="memory.sure")
        if st.button("Forget everything", key="memory.forget_all", disabled=not sure, type="primary"):
            gone, error = call(api, "forget", {"user_id": user, "everything": True})
            st.session_state["memory.result"] = (not error, error or f"Forgot {gone['forgotten']} memories of {user}.")
            st.rerun()
    result = st.session_state.pop("memory.result", None)
    if result:
        good, text = result
        (st.success if good else st.error)(text)
