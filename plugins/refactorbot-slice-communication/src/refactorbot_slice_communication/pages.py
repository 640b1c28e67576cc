"""Dashboard pages: channels (status, last error, traffic), the message log, pairing requests, templates.

Streamlit is imported inside each ``render_*`` function: the dashboard process is the only one that
draws pages, and loading the plugin stays cheap. Pages go through the API client they are given.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

OPS = "/slices/communication/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``communication.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"communication.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def channel_rows(channels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the channels table rows."""
    now = time.time()
    rows = []
    for c in channels:
        status = c["status"]
        if status == "failed" and c.get("next_retry_at"):
            status += f" (retry in {max(0, c['next_retry_at'] - now):.0f}s)"
        rows.append(
            {
                "channel": c["name"],
                "enabled": c["enabled"],
                "status": status,
                "last error": c.get("last_error") or "",
                "in": c["inbound"],
                "out": c["outbound"],
                "failed": c["failed"],
                "refused": c["refused"],
                "webhook": c.get("webhook") or "",
            }
        )
    return rows


def traffic_table(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per minute, ``{"minute": "HH:MM", "<channel> in": n, "<channel> out": n, ...}``."""
    series = sorted({f"{b['channel']} {b['direction']}" for b in buckets})
    rows: dict[float, dict[str, Any]] = {}
    for b in buckets:
        row = rows.setdefault(
            b["minute"],
            {"minute": datetime.fromtimestamp(b["minute"], UTC).strftime("%H:%M"), **dict.fromkeys(series, 0)},
        )
        row[f"{b['channel']} {b['direction']}"] = b["count"]
    return [rows[minute] for minute in sorted(rows)]


def render_channels(api: Any) -> None:
    """Draw the channels page: status and last error of each channel, traffic over the last hour."""
    import streamlit as st

    st.title("Channels")
    listed, error = call(api, "channels")
    if error:
        st.error(error)
        return
    if not listed["channels"]:
        st.info("No channels installed: pip install refactorbot-channel-<name>, then restart refactorbot serve.")
        return
    if not listed["serving"]:
        st.warning("This host does not run channels; the status shown is the last one recorded.")
    table(channel_rows(listed["channels"]), key="communication.channels")
    for c in listed["channels"]:
        if c["enabled"] and c["status"] in ("failed", "invalid"):
            st.error(f"{c['name']}: {c.get('last_error') or c['status']}")
    minutes = st.select_slider("Traffic over the last", options=[15, 60, 360, 1440], value=60, key="comm.minutes")
    traffic, error = call(api, "traffic", {"minutes": minutes})
    if error:
        st.error(error)
    elif traffic["buckets"]:
        st.caption("Messages per minute (UTC)")
        st.line_chart(traffic_table(traffic["buckets"]), x="minute", use_container_width=True)
    else:
        st.info("No messages in that time.")


def message_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the message log table rows."""
    return [
        {
            "id": m["id"],
            "time": when(m["created_at"]),
            "dir": m["direction"],
            "channel": m["channel"],
            "chat": m["chat_id"],
            "sender": m.get("sender_id") or "",
            "status": m["status"],
            "delivery": _delivery(m),
            "text": m["text"][:200],
            "detail": m.get("detail") or "",
        }
        for m in items
    ]


def _delivery(message: dict[str, Any]) -> str:
    """Return an outgoing message's delivery as the platform reported it: ``read 12:00:03``, ``failed``, ``-``."""
    delivery = message.get("delivery")
    if not delivery:
        return "-" if message["direction"] == "out" else ""
    at = message.get("read_at") if delivery == "read" else message.get("delivered_at")
    return f"{delivery} {when(at)[11:]}" if delivery in ("delivered", "read") and at else delivery


def render_messages(api: Any) -> None:
    """Draw the message log with filters, newest first, a page at a time."""
    import streamlit as st

    st.title("Messages")
    listed, _ = call(api, "channels")
    names = [c["name"] for c in (listed or {}).get("channels", [])]
    columns = st.columns(3)
    channel = columns[0].selectbox("Channel", ["all", *names], key="comm.log.channel")
    direction = columns[1].selectbox("Direction", ["all", "in", "out"], key="comm.log.direction")
    status = columns[2].selectbox(
        "Status",
        ["all", "queued", "running", "answered", "refused", "interrupted", "pending", "sent", "failed"],
        key="comm.log.status",
    )
    chat = st.text_input("Chat id", key="comm.log.chat", max_chars=200)
    query: dict[str, Any] = {"limit": 50}
    for name, value in (("channel", channel), ("direction", direction), ("status", status)):
        if value != "all":
            query[name] = value
    if chat.strip():
        query["chat_id"] = chat.strip()
    cursor = st.session_state.get("comm.log.before")
    if cursor:
        query["before_id"] = cursor
    page, error = call(api, "messages", query)
    if error:
        st.error(error)
        return
    if not page["items"]:
        st.info("No messages match." if not cursor else "No older messages.")
    else:
        table(message_rows(page["items"]), key="communication.messages")
    buttons = st.columns(2)
    if cursor and buttons[0].button("Newest", key="comm.log.newest"):
        st.session_state["comm.log.before"] = None
        st.rerun()
    if page.get("next_before_id") and buttons[1].button("Older", key="comm.log.older"):
        st.session_state["comm.log.before"] = page["next_before_id"]
        st.rerun()


def render_pairing(api: Any) -> None:
    """Draw pending pairing requests with approve and deny buttons."""
    import streamlit as st

    st.title("Pairing")
    st.caption("Unknown senders in direct chats get a one-time code; approve it to let them talk to the agent.")
    listed, error = call(api, "pairing_list", {"status": "pending"})
    if error:
        st.error(error)
        return
    requests = listed["requests"]
    if not requests:
        st.info("No pending pairing requests.")
    now = time.time()
    for request in requests:
        code = request["code"]
        columns = st.columns([3, 1, 1])
        name = f" ({request['sender_name']})" if request.get("sender_name") else ""
        left = max(0, request["expires_at"] - now) / 60
        columns[0].markdown(
            f"**{code}** — {request['channel']}: sender `{request['sender_id']}`{name}, expires in {left:.0f} min"
        )
        if columns[1].button("Approve", key=f"comm.pair.approve.{code}"):
            _, error = call(api, "pairing_approve", {"code": code})
            st.session_state["comm.pair.result"] = error or f"Approved {request['sender_id']}."
            st.rerun()
        if columns[2].button("Deny", key=f"comm.pair.deny.{code}"):
            _, error = call(api, "pairing_deny", {"code": code})
            st.session_state["comm.pair.result"] = error or f"Denied {request['sender_id']}."
            st.rerun()
    result = st.session_state.pop("comm.pair.result", None)
    if result:
        (st.success if result.startswith(("Approved", "Denied")) else st.error)(result)


def render_templates(api: Any) -> None:
    """Draw the templates: a table, a form to add or replace one, and deletion."""
    import streamlit as st

    st.title("Templates")
    st.caption("Named messages with $variables, used by `refactorbot send --template` and by alerts.")
    listed, error = call(api, "template_list")
    if error:
        st.error(error)
        return
    templates = listed["templates"]
    if templates:
        table(
            [
                {"name": t["name"], "variables": ", ".join(t["variables"]), "description": t["description"]}
                for t in templates
            ],
            key="communication.templates",
        )
    else:
        st.info("No templates yet.")
    with st.form("comm.template.form", clear_on_submit=False):
        name = st.text_input("Name", max_chars=64, key="comm.template.name")
        body = st.text_area("Body (Markdown, $variables)", max_chars=20_000, key="comm.template.body")
        description = st.text_input("Description", max_chars=500, key="comm.template.description")
        if st.form_submit_button("Save template"):
            saved, error = call(api, "template_set", {"name": name, "body": body, "description": description})
            if error:
                st.error(error)
            else:
                variables = ", ".join(saved["variables"]) or "none"
                st.session_state["comm.template.result"] = f"Saved {saved['name']} (variables: {variables})."
                st.rerun()
    result = st.session_state.pop("comm.template.result", None)
    if result:
        st.success(result)
    if templates:
        doomed = st.selectbox("Delete a template", [t["name"] for t in templates], key="comm.template.delete")
        if st.button("Delete", key="comm.template.delete.button"):
            _, error = call(api, "template_delete", {"name": doomed})
            if error:
                st.error(error)
            else:
                st.rerun()


def table(rows: Any, *, key: str, **options: Any) -> Any:
    """Draw ``rows`` as the dashboard draws every table: with an "Export CSV" button."""
    from refactorbot_dashboard.tables import table as draw

    return draw(rows, key=key, **options)
