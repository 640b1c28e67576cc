"""Dashboard pages: the plan board (tasks by state), a task (diff, tests, review), the merge queue."""

from __future__ import annotations

from typing import Any

from refactorbot_slice_refactory.models import STATES

OPS = "/slices/refactory/operations/"


def _data(api: Any, operation: str, payload: dict[str, Any]) -> Any:
    import streamlit as st

    answer = api.post(OPS + operation, payload)
    if not answer.get("success"):
        st.error(answer.get("error_message") or "the refactory slice is unavailable")
        return None
    return answer["data"]


def _plan_id(api: Any) -> int | None:
    import streamlit as st

    listed = _data(api, "list_tasks", {"limit": 1000})
    plans = sorted({t["plan_id"] for t in (listed or {}).get("tasks", [])}, reverse=True)
    if not plans:
        st.info("No plans yet: `refactorbot refactory request create`, then `plan create`.")
        return None
    return int(st.selectbox("Plan", plans))


def render_board(api: Any) -> None:
    """Draw the plan board: one column per task state."""
    import streamlit as st

    st.title("Refactory — plan board")
    plan_id = _plan_id(api)
    if plan_id is None:
        return
    plan = _data(api, "get_plan", {"id": plan_id})
    if plan is None:
        return
    st.caption(f"plan {plan['id']} · {plan['planner']} planner · base {plan['base_commit'][:12]}")
    if plan.get("planner_fallback"):
        st.error(f"Planned without a model (templated planner): {plan['planner_fallback']}")
    for warning in plan["warnings"]:
        st.warning(warning)
    unreviewed = [t for t in plan["tasks"] if t.get("review_fallback")]
    if unreviewed:
        st.warning("Reviewed without a model: " + "; ".join(f"#{t['id']} ({t['review_fallback']})" for t in unreviewed))
    with st.expander("Design"):
        st.markdown(plan["design"])
    shown = [s for s in STATES if plan["board"].get(s)]
    for column, state in zip(st.columns(max(1, len(shown))), shown, strict=False):
        column.subheader(state)
        for task in (t for t in plan["tasks"] if t["state"] == state):
            column.markdown(f"**#{task['id']}** {task['title']}  \n{task['agent'] or ''} · attempts {task['attempts']}")


def render_task(api: Any) -> None:
    """Draw one task: state, diff, acceptance and test output, review and risks."""
    import streamlit as st

    st.title("Refactory — task")
    task_id = st.number_input("Task id", min_value=1, step=1, value=1)
    task = _data(api, "get_task", {"id": int(task_id)})
    if task is None:
        return
    st.subheader(f"#{task['id']} {task['title']} — {task['state']}")
    st.write(task["detail"])
    st.caption(f"branch {task['branch']} · agent {task['agent']} · attempts {task['attempts']}")
    if task["failure"]:
        st.error(task["failure"])
    for risk in task["risks"]:
        st.warning(risk)
    st.markdown("**Review**")
    if task.get("review_fallback"):
        st.warning(f"Reviewed without a model: {task['review_fallback']}")
    st.write(task["review"] or "not reviewed yet")
    st.markdown("**Diff**")
    st.code(task["diff"] or "", language="diff")
    st.markdown(f"**Acceptance** ({'pass' if task['acceptance_ok'] else 'fail or not run'})")
    st.code(task["acceptance_output"] or "")
    st.markdown(f"**Tests** ({'pass' if task['test_ok'] else 'fail or not run'})")
    st.code(task["test_output"] or "")


def render_queue(api: Any) -> None:
    """Draw the merge queue of the latest orchestration of a plan: waiting tasks and every attempt."""
    import streamlit as st

    st.title("Refactory — merge queue")
    plan_id = _plan_id(api)
    if plan_id is None:
        return
    orchestration = _data(api, "plan_orchestration", {"plan_id": plan_id})
    if orchestration is None:
        return
    st.caption(f"orchestration {orchestration['id']} · {orchestration['status']} · {orchestration['integration']}")
    st.write("Waiting to merge, in order: " + (", ".join(f"#{t}" for t in orchestration["queue"]) or "none"))
    table(
        [
            {"task": a["task_id"], "attempt": a["attempt"], "outcome": a["outcome"], "detail": a["detail"][:200]}
            for a in orchestration["attempts"]
        ],
        key="refactory.merge_attempts",
    )
    report = orchestration["report"]
    if report:
        if report.get("planner_fallback"):
            st.error(f"Planned without a model (templated planner): {report['planner_fallback']}")
        for unreviewed in report.get("reviewed_without_model", []):
            st.warning(f"Task #{unreviewed['task']} reviewed without a model: {unreviewed['reason']}")
        st.json(report)


def table(rows: Any, *, key: str, **options: Any) -> Any:
    """Draw ``rows`` as the dashboard draws every table: with an "Export CSV" button."""
    from refactorbot_dashboard.tables import table as draw

    return draw(rows, key=key, **options)
