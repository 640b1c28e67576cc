"""Dashboard pages: jobs (next runs, status), run history, a 24-hour timeline and the alert panel.

Streamlit is imported inside each ``render_*`` function; pages go through the API client they get.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

OPS = "/slices/scheduling/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``scheduling.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"scheduling.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` UTC, or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the jobs table rows."""
    return [
        {
            "job": j["name"],
            "schedule": j["schedule"],
            "zone": j["tz"],
            "next run (zone)": j["next_run"] or "-",
            f"next run ({j['local_tz']})": j["next_run_local"] or "-",
            "state": j["state"],
            "last": j["last_status"] or "-",
            "failures in a row": j["consecutive_failures"],
            "running": j["running"],
        }
        for j in jobs
    ]


def run_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return history table rows."""
    return [
        {
            "run": r["id"],
            "job": r["job"],
            "scheduled (UTC)": when(r["scheduled_for"]),
            "started (UTC)": when(r["started_at"]),
            "trigger": r["trigger"],
            "status": r["status"],
            "ms": r["duration_ms"],
            "output / error": (r.get("error") or r.get("output") or "")[:300],
            "delivery": r.get("delivery") or "",
        }
        for r in runs
    ]


def render_jobs(api: Any) -> None:
    """Draw the jobs with their next runs and status; pause, resume or run one now."""
    import streamlit as st

    st.title("Scheduled jobs")
    listed, error = call(api, "list", {"include_system": True})
    if error:
        st.error(error)
        return
    if not listed["jobs"]:
        st.info("No jobs yet: refactorbot schedule add NAME --cron '0 9 * * *' --prompt '...'")
        return
    table(job_rows(listed["jobs"]), key="scheduling.jobs")
    names = [j["name"] for j in listed["jobs"]]
    chosen = st.selectbox("Job", names, key="sched.job")
    columns = st.columns(3)
    for column, (label, operation) in zip(
        columns, (("Run now", "run_now"), ("Pause", "pause"), ("Resume", "resume")), strict=True
    ):
        if column.button(label, key=f"sched.{operation}"):
            data, error = call(api, operation, {"name": chosen})
            st.session_state["sched.result"] = (False, error) if error else outcome(label, chosen, data)
            st.rerun()
    result = st.session_state.pop("sched.result", None)
    if result:
        good, text = result
        (st.success if good else st.error)(text)


def outcome(label: str, name: str, data: dict[str, Any]) -> tuple[bool, str]:
    """Return whether a button's operation went well and what to say: a run's status and error, or done."""
    run = data.get("run") if isinstance(data, dict) else None
    if run is None:
        return True, f"{label}: {name} done."
    said = run.get("error") or run.get("output") or ""
    text = f"{name}: {run['status']}" + (f": {said[:300]}" if said else "")
    return run["status"] == "succeeded", text


def render_history(api: Any) -> None:
    """Draw one job's runs, newest first, with each workflow step."""
    import streamlit as st

    st.title("Run history")
    listed, error = call(api, "list", {"include_system": True})
    if error:
        st.error(error)
        return
    names = [j["name"] for j in listed["jobs"]]
    if not names:
        st.info("No jobs yet.")
        return
    chosen = st.selectbox("Job", names, key="sched.history.job")
    history, error = call(api, "history", {"name": chosen, "limit": 100})
    if error:
        st.error(error)
    elif not history["runs"]:
        st.info(f"{chosen} has not run yet.")
    else:
        table(run_rows(history["runs"]), key="scheduling.history")
        for run in history["runs"]:
            if run.get("steps"):
                with st.expander(f"run {run['id']}: {len(run['steps'])} step(s)"):
                    table(run["steps"], key=f"scheduling.steps.{run['id']}")


def timeline_rows(timeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per run or upcoming fire: job, time, what it is."""
    rows = [{"job": r["job"], "time (UTC)": when(r["scheduled_for"]), "kind": r["status"]} for r in timeline["runs"]]
    rows += [{"job": u["job"], "time (UTC)": when(u["at"]), "kind": "due"} for u in timeline["upcoming"]]
    return sorted(rows, key=lambda r: r["time (UTC)"])


def render_timeline(api: Any) -> None:
    """Draw the last and next 24 hours: each run and each fire due, by job."""
    import streamlit as st

    st.title("Timeline")
    timeline, error = call(api, "timeline", {"hours": 24})
    if error:
        st.error(error)
        return
    rows = timeline_rows(timeline)
    if not rows:
        st.info("Nothing ran in the last 24 hours and nothing is due in the next 24.")
        return
    st.caption(f"Now: {when(timeline['now'])} UTC. Runs of the last 24 hours and fires due in the next 24.")
    st.scatter_chart(rows, x="time (UTC)", y="job", color="kind", use_container_width=True)
    table(rows, key="scheduling.timeline")


def render_alerts(api: Any) -> None:
    """Draw the alert panel: firing alerts first, then resolved ones; check the rules now."""
    import streamlit as st

    st.title("Alerts")
    if st.button("Check now", key="sched.alerts.check"):
        _, error = call(api, "check_alerts")
        if error:
            st.error(error)
    listed, error = call(api, "alerts", {"state": "all", "limit": 200})
    if error:
        st.error(error)
        return
    firing = [a for a in listed["alerts"] if a["state"] == "firing"]
    if firing:
        for alert in firing:
            st.error(
                f"**{alert['kind']}** {alert['subject']}: {alert['message']} (since {when(alert['first_at'])} UTC)"
            )
    else:
        st.success("No alert is firing.")
    resolved = [a for a in listed["alerts"] if a["state"] == "resolved"]
    if resolved:
        st.subheader("Resolved")
        table(
            [
                {
                    "kind": a["kind"],
                    "subject": a["subject"],
                    "message": a["message"],
                    "resolved (UTC)": when(a["resolved_at"]),
                }
                for a in resolved
            ],
            key="scheduling.resolved_alerts",
        )


def table(rows: Any, *, key: str, **options: Any) -> Any:
    """Draw ``rows`` as the dashboard draws every table: with an "Export CSV" button."""
    from refactorbot_dashboard.tables import table as draw

    return draw(rows, key=key, **options)
