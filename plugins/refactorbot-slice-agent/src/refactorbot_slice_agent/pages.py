"""Dashboard pages of the agent slice: its executions, and a prompt editor with versions, diff and rollback.

Streamlit and the dashboard's table helper are imported inside each ``render_*`` function; the
pages go through the API client they are given (the agent slice's operations).
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

OPS = "/slices/agent/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``agent.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"agent.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def execution_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the executions table rows."""
    return [
        {
            "run": r["id"],
            "time (UTC)": when(r["created_at"]),
            "ok": r["success"],
            "mode": r["mode"],
            "model": r.get("model") or "",
            "steps": r["steps"],
            "tools": ", ".join(c["tool"] + ("" if c.get("ok") else " ✗") for c in r["tool_calls"]),
            "prompt tokens": r["prompt_tokens"],
            "completion tokens": r["completion_tokens"],
            "ms": round(r["duration_ms"], 1),
            "limit hit": r.get("limit_hit") or "",
            "request": r["request"][:200],
            "answer / error": (r.get("error") or r["response"])[:200],
            "session": r.get("session_id") or "",
            "user": r.get("user_id") or "",
        }
        for r in runs
    ]


def prompt_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Return a unified diff from one prompt version to another ("" when the texts are equal)."""
    lines = difflib.unified_diff(
        old["content"].splitlines(),
        new["content"].splitlines(),
        fromfile=f"{old['name']} v{old['version']}",
        tofile=f"{new['name']} v{new['version']}",
        lineterm="",
    )
    return "\n".join(lines)


def render_executions(api: Any) -> None:
    """Draw recent agent runs: totals, a filtered table, and one run in full."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Agent executions")
    filters = st.columns([2, 2, 1])
    session = filters[0].text_input("Session id", key="agent.exec.session", max_chars=200)
    user = filters[1].text_input("User id", key="agent.exec.user", max_chars=200)
    limit = filters[2].selectbox("Rows", [20, 50, 100, 500], key="agent.exec.limit")
    payload = {"limit": limit, "session_id": session.strip() or None, "user_id": user.strip() or None}
    runs, error = call(api, "executions", {k: v for k, v in payload.items() if v is not None})
    if error:
        st.error(error)
        return
    if not runs:
        st.info("No agent runs match." if session.strip() or user.strip() else "The agent has not run yet.")
        return
    ok = sum(1 for r in runs if r["success"])
    cols = st.columns(4)
    cols[0].metric("Runs shown", len(runs))
    cols[1].metric("Succeeded", f"{ok / len(runs):.0%}")
    cols[2].metric("Mean duration", f"{sum(r['duration_ms'] for r in runs) / len(runs):.0f} ms")
    cols[3].metric("Tokens", f"{sum(r['prompt_tokens'] + r['completion_tokens'] for r in runs):,}")
    table(execution_rows(runs), key="agent.executions")
    by_id = {r["id"]: r for r in runs}
    chosen = st.selectbox(
        "Run", list(by_id), format_func=lambda i: f"{when(by_id[i]['created_at'])} · {i[:12]}", key="agent.exec.run"
    )
    run = by_id[chosen]
    st.markdown(f"**Request**\n\n{run['request']}")
    if run.get("plan"):
        st.markdown(f"**Plan**\n\n{run['plan']}")
    if run.get("error"):
        st.error(run["error"])
    st.markdown(f"**Answer**\n\n{run['response'] or '(none)'}")
    if run["tool_calls"]:
        table(run["tool_calls"], key=f"agent.exec.tools.{chosen}")


def render_prompts(api: Any) -> None:
    """Draw the prompt editor: the current text, its versions, a diff of any two, save and rollback."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Prompts")
    st.caption("Runs use the newest version of each template. Placeholders: {date} {rules} {memories} {tools} {plan}.")
    listed, error = call(api, "list_prompts")
    if error:
        st.error(error)
        return
    names = [p["name"] for p in listed]
    name = st.selectbox("Template", names, key="agent.prompt.name")
    versions, error = call(api, "prompt_versions", {"name": name})
    if error:
        st.error(error)
        return
    current = versions[0]
    table(
        [
            {
                "version": v["version"],
                "saved (UTC)": when(v["created_at"]),
                "note": v.get("note") or "",
                "characters": len(v["content"]),
            }
            for v in versions
        ],
        key=f"agent.prompt.versions.{name}",
    )
    with st.form(f"agent.prompt.edit.{name}.{current['version']}"):
        content = st.text_area(
            f"{name} (version {current['version']}, current)", current["content"], height=240, max_chars=50_000
        )
        note = st.text_input("Note", max_chars=500, placeholder="what changed and why")
        if st.form_submit_button("Save as a new version"):
            if content == current["content"]:
                st.session_state["agent.prompt.result"] = (False, "Nothing changed: the text is the current version's.")
            else:
                saved, error = call(api, "set_prompt", {"name": name, "content": content, "note": note or None})
                st.session_state["agent.prompt.result"] = (
                    (False, error) if error else (True, f"Saved {name} version {saved['version']}; runs use it now.")
                )
            st.rerun()
    result = st.session_state.pop("agent.prompt.result", None)
    if result:
        good, text = result
        (st.success if good else st.error)(text)

    if len(versions) > 1:
        st.subheader("Compare versions")
        numbers = [v["version"] for v in versions]
        by_number = {v["version"]: v for v in versions}
        pick = st.columns(2)
        old = pick[0].selectbox("From", numbers, index=1, key=f"agent.prompt.from.{name}")
        new = pick[1].selectbox("To", numbers, index=0, key=f"agent.prompt.to.{name}")
        diff = prompt_diff(by_number[old], by_number[new])
        if diff:
            st.code(diff, language="diff")
        else:
            st.info(f"Versions {old} and {new} have the same text.")
        st.subheader("Roll back")
        back = st.selectbox("Make this version current again", numbers[1:], key=f"agent.prompt.back.{name}")
        if st.button(f"Roll back to version {back}", key="agent.prompt.rollback"):
            saved, error = call(api, "rollback_prompt", {"name": name, "version": back})
            st.session_state["agent.prompt.result"] = (
                (False, error)
                if error
                else (True, f"{name} is version {back}'s text again (saved as {saved['version']}).")
            )
            st.rerun()
