"""The self-improvement dashboard page: changes waiting for approval, cycles, diffs, metrics, audit trail.

Streamlit is imported inside ``render_improve``; the page goes through the API client it gets.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

OPS = "/slices/improve/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``improve.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"improve.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` UTC, or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def change_rows(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one table row per change."""
    return [
        {
            "id": c["id"],
            "cycle": c["cycle_id"],
            "slice": c["slice_id"],
            "kind": c["kind"],
            "target": c["target"],
            "change": c["change"] if isinstance(c["change"], str) else json.dumps(c["change"]),
            "risk": c["risk"],
            "status": c["status"],
            "verdict": c["verdict"] or "",
            "why": c["rationale"],
        }
        for c in changes
    ]


def metrics_rows(change: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the before/after figures of a change, one row per side, for the chart."""
    rows = []
    for side in ("before", "after"):
        m = change.get(f"{side}_metrics")
        if m:
            rows.append({"window": side, "error rate %": round(100 * m["error_rate"], 2), "p95 ms": m["p95_ms"]})
    return rows


def render_improve(api: Any) -> None:
    """Draw the changes waiting for approval (approve, reject), then one cycle in full."""
    import streamlit as st

    st.title("Self-improvement")
    _pending(api, st)
    cycles, error = call(api, "cycles", {"limit": 100})
    if error:
        st.error(error)
        return
    if not cycles:
        st.info("No cycles yet: refactorbot improve run SLICE")
        return
    st.subheader("Cycles")
    table(
        [
            {
                "id": c["id"],
                "slice": c["slice_id"],
                "trigger": c["trigger"],
                "status": c["status"],
                "changes": len(c["changes"]),
                "when (UTC)": when(c["created_at"]),
                "notes": c["notes"] or c["error"] or "",
            }
            for c in cycles
        ],
        key="improve.cycles",
    )
    chosen = st.selectbox("Cycle", [c["id"] for c in cycles], key="improve.cycle")
    cycle, error = call(api, "show", {"id": chosen})
    if error:
        st.error(error)
        return
    _cycle(cycle, st)


def _pending(api: Any, st: Any) -> None:
    pending, error = call(api, "changes", {"status": "pending"})
    if error:
        st.error(error)
        return
    st.subheader("Waiting for approval")
    result = st.session_state.pop("improve.result", None)
    if result:
        good, text = result
        (st.success if good else st.error)(text)
    if not pending:
        st.caption("Nothing waits for approval.")
        return
    table(change_rows(pending), key="improve.pending")
    chosen = st.selectbox("Change", [c["id"] for c in pending], key="improve.change")
    reason = st.text_input("Reason (kept in the audit trail)", key="improve.reason")
    approve, reject = st.columns(2)
    for column, label, operation in ((approve, "Approve", "approve"), (reject, "Reject", "reject")):
        if column.button(label, key=f"improve.{operation}"):
            data, error = call(api, operation, {"id": chosen, "by": "dashboard", "reason": reason})
            if error:
                st.session_state["improve.result"] = (False, error)
            else:
                text = f"Change {data['id']}: {data['status']}" + (f" ({data['reason']})" if data["reason"] else "")
                st.session_state["improve.result"] = (data["status"] != "failed", text)
            st.rerun()


def _cycle(cycle: dict[str, Any], st: Any) -> None:
    st.markdown(f"**Plan** for `{cycle['slice_id']}`: {cycle['notes'] or cycle['error'] or '-'}")
    for change in cycle["changes"]:
        with st.container(border=True):
            st.markdown(
                f"**Change {change['id']}** · {change['kind']} `{change['target']}` · risk {change['risk']}"
                f" · **{change['status']}**" + (f" · verdict {change['verdict']}" if change["verdict"] else "")
            )
            st.write(change["rationale"])
            st.caption(f"Expected: {change['expected_effect']}")
            if change["diff"]:
                st.code(change["diff"], language="diff")
            rows = metrics_rows(change)
            if rows:
                table(rows, key=f"improve.metrics.{change['id']}")
                st.bar_chart(rows, x="window", y=["error rate %", "p95 ms"], stack=False)
            if change["reason"]:
                st.caption(change["reason"])
    st.subheader("Audit trail")
    table(
        [
            {
                "when (UTC)": when(e["ts"]),
                "step": e["step"],
                "change": str(e["change_id"] or ""),
                "by": e["actor"],
                "detail": e["detail"],
            }
            for e in cycle["audit"]
        ],
        key=f"improve.audit.{cycle['id']}",
    )


def table(rows: Any, *, key: str, **options: Any) -> Any:
    """Draw ``rows`` as the dashboard draws every table: with an "Export CSV" button."""
    from refactorbot_dashboard.tables import table as draw

    return draw(rows, key=key, **options)
