"""Dashboard pages: the bus (throughput, lag per subscriber) and dead letters (with requeue).

Streamlit is imported inside each ``render_*`` function: the dashboard process is the only one that
draws pages, and loading the plugin stays cheap. Pages go through the API client they are given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

OPS = "/slices/eventbus/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``eventbus.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"eventbus.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def throughput_rows(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per second: ``{"time": "HH:MM:SS", "published": n, "delivered": n, "failed": n}``."""
    return [
        {
            "time": datetime.fromtimestamp(b["second"], UTC).strftime("%H:%M:%S"),
            "published": b["published"],
            "delivered": b["delivered"],
            "failed": b["failed"],
        }
        for b in buckets
    ]


def subscriber_rows(subscribers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the subscribers table rows (lag first)."""
    return [
        {
            "subscriber": s["name"],
            "pattern": s["pattern"],
            "active": s["active"],
            "lag": s["lag"],
            "acked offset": s["acked_offset"],
            "overflow": f"{s['overflow']} / {s['max_in_flight']}",
            "delivered": s["delivered"],
            "retries": s["retries"],
            "dead letters": s["dead_letters"],
            "dropped": s["dropped"],
            "rejected": s["rejected"],
            "blocked": s["blocked"],
            "expired": s["expired"],
            "last error": s.get("last_error") or "",
        }
        for s in subscribers
    ]


def render_overview(api: Any) -> None:
    """Draw the bus: the log's size, throughput per second, and each subscriber's lag and counters."""
    import streamlit as st

    st.title("Event bus")
    seconds = st.select_slider("Throughput over the last", options=[60, 300, 900, 3600], value=300, key="bus.seconds")
    stats, error = call(api, "stats", {"seconds": seconds})
    if error:
        st.error(error)
        return
    if not stats["running"]:
        st.warning("The durable bus does not run in the server process; figures are the last ones stored.")
    first = stats["first_offset"] if stats["first_offset"] is not None else "-"
    columns = st.columns(4)
    columns[0].metric("Published/s (10 s)", f"{stats['published_per_second']:.0f}")
    columns[1].metric("Delivered/s (10 s)", f"{stats['delivered_per_second']:.0f}")
    columns[2].metric("Events stored", stats["stored"])
    columns[3].metric("Dead letters", stats["dead_letters"])
    st.caption(f"Log offsets {first} to {stats['last_offset']}; started {when(stats['started_at'])} UTC")
    if stats["throughput"]:
        st.line_chart(throughput_rows(stats["throughput"]), x="time", use_container_width=True)
    else:
        st.info("No events in that time.")
    st.subheader("Subscribers")
    if not stats["subscribers"]:
        st.info("No subscribers yet: slices subscribe with @subscribe while they run.")
        return
    table(subscriber_rows(stats["subscribers"]), key="eventbus.subscribers")
    for s in stats["subscribers"]:
        if s["active"] and s["lag"] >= s["max_in_flight"]:
            st.warning(f"{s['name']} is full: {s['lag']} unacknowledged (max_in_flight {s['max_in_flight']}).")


def letter_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the dead letters table rows."""
    return [
        {
            "id": d["id"],
            "subscriber": d["subscriber"],
            "offset": d["offset"],
            "topic": d["topic"],
            "attempts": d["attempts"],
            "status": d["status"],
            "dead at": when(d["dead_at"]),
            "error": d["error"],
        }
        for d in items
    ]


def render_dead_letters(api: Any) -> None:
    """Draw the dead letters with requeue and discard, per letter, per subscriber or all."""
    import streamlit as st

    st.title("Dead letters")
    st.caption("Events a subscriber failed on at every attempt. Requeue delivers one again with fresh attempts.")
    stats, _ = call(api, "stats", {"seconds": 10})
    names = [s["name"] for s in (stats or {}).get("subscribers", [])]
    columns = st.columns(2)
    subscriber = columns[0].selectbox("Subscriber", ["all", *names], key="bus.dead.subscriber")
    status = columns[1].selectbox("Status", ["dead", "requeued", "redelivered", "all"], key="bus.dead.status")
    query: dict[str, Any] = {"status": status, "limit": 100}
    if subscriber != "all":
        query["subscriber"] = subscriber
    page, error = call(api, "dead_letters", query)
    if error:
        st.error(error)
        return
    result = st.session_state.pop("bus.dead.result", None)
    if result:
        (st.error if result.startswith("Error") else st.success)(result)
    items = page["items"]
    if not items:
        st.info("No dead letters.")
        return
    table(letter_rows(items), key="eventbus.dead_letters")
    dead = [d["id"] for d in items if d["status"] == "dead"]
    if not dead:
        return
    chosen = st.multiselect("Dead letters", dead, key="bus.dead.ids")
    buttons = st.columns(3)
    selection: dict[str, Any] | None = None
    action = None
    if buttons[0].button("Requeue selected", key="bus.dead.requeue", disabled=not chosen):
        selection, action = {"ids": chosen}, "requeue"
    label = "Requeue all shown" if subscriber == "all" else f"Requeue all of {subscriber}"
    if buttons[1].button(label, key="bus.dead.requeue_all"):
        selection, action = ({"all": True} if subscriber == "all" else {"subscriber": subscriber}), "requeue"
    if buttons[2].button("Discard selected", key="bus.dead.discard", disabled=not chosen):
        selection, action = {"ids": chosen}, "discard"
    if selection is not None and action is not None:
        changed, error = call(api, action, selection)
        verb = "Requeued" if action == "requeue" else "Discarded"
        st.session_state["bus.dead.result"] = (
            f"Error: {error}" if error else f"{verb} {changed['count']} dead letter(s)."
        )
        st.rerun()


def table(rows: Any, *, key: str, **options: Any) -> Any:
    """Draw ``rows`` as the dashboard draws every table: with an "Export CSV" button."""
    from refactorbot_dashboard.tables import table as draw

    return draw(rows, key=key, **options)
