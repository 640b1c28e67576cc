"""Control: start, stop and restart slices; run any operation; diagnostics and self-improvement."""

from __future__ import annotations

import json
from typing import Any

from refactorbot_dashboard.client import ApiError
from refactorbot_dashboard.forms import schema_form
from refactorbot_dashboard.tables import table


def render(api: Any) -> None:
    """Draw the control page."""
    import streamlit as st

    st.title("Control")
    rows = api.get("/slices")
    if not rows:
        st.info("No slices are installed.")
        return
    by_id = {r["slice_id"]: r for r in rows}
    slice_id = st.selectbox(
        "Slice", list(by_id), format_func=lambda sid: f"{sid} ({by_id[sid]['status']})", key="control.slice"
    )
    _lifecycle(api, st, slice_id)
    detail = api.get(f"/slices/{slice_id}")
    st.caption(
        f"{detail['capabilities']['description'] or 'No description.'} · status **{detail['status']}**"
        f" · health {detail.get('health') or '-'} · restarts {detail['restarts']}"
        + (f" · error: {detail['error']}" if detail.get("error") else "")
    )
    run_tab, diag_tab, improve_tab = st.tabs(["Run an operation", "Diagnostics", "Self-improvement"])
    with run_tab:
        _run_operation(api, st, slice_id, detail["capabilities"]["operations"])
    with diag_tab:
        _diagnostics(api, st, slice_id)
    with improve_tab:
        _self_improve(api, st, slice_id)


def _lifecycle(api: Any, st: Any, slice_id: str) -> None:
    cols = st.columns([1, 1, 1, 5])
    for col, action in zip(cols, ("start", "stop", "restart"), strict=False):
        if col.button(action.capitalize(), key=f"control.{action}", width="stretch"):
            row = api.post(f"/slices/{slice_id}/{action}")
            message = f"{slice_id}: {action} → {row['status']}" + (f" ({row['error']})" if row.get("error") else "")
            (st.success if row["status"] in ("running", "stopped") else st.warning)(message)


def _run_operation(api: Any, st: Any, slice_id: str, operations: list[dict[str, Any]]) -> None:
    if not operations:
        st.info("This slice offers no operations.")
        return
    ops = {op["name"]: op for op in operations}
    name = st.selectbox("Operation", list(ops), key=f"control.{slice_id}.op")
    op = ops[name]
    st.caption(op["description"])
    raw = st.toggle("Edit the payload as JSON", key=f"control.{slice_id}.{name}.raw")
    with st.form(f"control.{slice_id}.{name}.form"):
        if raw:
            text = st.text_area("Payload (JSON object)", value="{}", height=160, key=f"control.{slice_id}.{name}.json")
            payload, problems = _parse_object(text)
        else:
            payload, problems = schema_form(st, op["input_schema"], key=f"control.{slice_id}.{name}")
        submitted = st.form_submit_button(f"Run {slice_id}.{name}", type="primary")
    with st.expander("Input schema"):
        st.json(op["input_schema"], expanded=False)
    if not submitted:
        return
    if problems:
        for problem in problems:
            st.error(problem)
        return
    try:
        response = api.post(f"/slices/{slice_id}/operations/{name}", json=payload)
    except ApiError as exc:
        if exc.status == 422:
            st.error(exc.detail, icon=":material/error:")
            return
        raise
    if response["success"]:
        st.success(f"{slice_id}.{name} succeeded in {response['duration_ms']:.1f} ms")
        st.json(response["data"])
    else:
        st.error(f"{response['error_type']}: {response['error_message']}")


def _parse_object(text: str) -> tuple[dict[str, Any], list[str]]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return {}, [f"payload: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]
    if not isinstance(value, dict):
        return {}, ["payload: must be a JSON object"]
    return value, []


def _diagnostics(api: Any, st: Any, slice_id: str) -> None:
    if not st.button("Run diagnostics", key=f"control.{slice_id}.diag"):
        return
    try:
        report = api.post(f"/slices/{slice_id}/diagnostics")
    except ApiError as exc:
        st.warning(exc.detail)
        return
    (st.success if report["passed"] else st.error)("All checks passed." if report["passed"] else "Some checks failed.")
    table(
        [
            {"check": c["name"], "passed": "✅" if c["passed"] else "❌", "detail": c["detail"]}
            for c in report["checks"]
        ],
        key=f"control.{slice_id}.diagnostics",
    )


def _self_improve(api: Any, st: Any, slice_id: str) -> None:
    with st.form(f"control.{slice_id}.improve"):
        summary = st.text_area("Feedback (optional)", key=f"control.{slice_id}.feedback")
        asked = st.form_submit_button("Propose improvements")
    if not asked:
        return
    try:
        plan = api.post(f"/slices/{slice_id}/self-improve", json={"source": "dashboard", "summary": summary})
    except ApiError as exc:
        st.warning(exc.detail)
        return
    st.write(plan["notes"] or "")
    if not plan["proposals"]:
        st.info("No proposals.")
    for proposal in plan["proposals"]:
        with st.container(border=True):
            st.markdown(f"**{proposal['title']}** · _{proposal['kind']}_")
            st.write(proposal["rationale"])
            if proposal.get("changes"):
                st.json(proposal["changes"])
