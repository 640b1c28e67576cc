"""Dashboard pages: the skills with availability and usage, one skill's detail, and the upload form.

Streamlit is imported inside each ``render_*`` function; pages go through the API client they get.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

OPS = "/slices/skills/operations/"


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``skills.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"skills.{operation} failed"
    return answer.get("data"), None


def when(seconds: float | None) -> str:
    """Return a Unix time as ``YYYY-MM-DD HH:MM`` UTC, or ``-``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M") if seconds else "-"


def skill_rows(skills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the list table's rows."""
    return [
        {
            "skill": s["name"],
            "status": s["status"],
            "why not available": s["reason"] or "",
            "source": s["source"],
            "version": s["version"] or "-",
            "activations": s["activations"],
            "turns ok": s["successes"],
            "turns failed": s["failures"],
            "last used (UTC)": when(s["last_used"]),
            "description": s["description"][:200],
        }
        for s in skills
    ]


def render_list(api: Any) -> None:
    """Draw every skill with its availability (and why not) and usage."""
    import streamlit as st

    st.title("Skills")
    listed, error = call(api, "list")
    if error:
        st.error(error)
        return
    skills = listed["skills"]
    if not skills:
        st.info("No skills yet: add a folder with SKILL.md to <home>/skills, or upload a zip on 'Add a skill'.")
        return
    counts: dict[str, int] = {}
    for s in skills:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    st.caption(", ".join(f"{n} {status}" for status, n in counts.items()))
    table(skill_rows(skills), key="skills.list")


def render_detail(api: Any) -> None:
    """Draw one skill: status, requirements, warnings, files, versions, instructions; enable or disable it."""
    import streamlit as st

    st.title("Skill")
    listed, error = call(api, "list")
    if error:
        st.error(error)
        return
    names = [s["name"] for s in listed["skills"] if s["status"] not in ("invalid", "shadowed")]
    if not names:
        st.info("No skills yet.")
        return
    chosen = st.selectbox("Skill", names, key="skills.detail.name")
    skill, error = call(api, "show", {"name": chosen})
    if error:
        st.error(error)
        return
    st.subheader(f"{skill['name']} — {skill['status']}")
    if skill["reason"]:
        st.warning(skill["reason"])
    st.write(skill["description"])
    st.caption(
        f"{skill['source']}: {skill['location']} · version {skill['version']} · {(skill['content_hash'] or '')[:12]}"
    )
    st.caption(f"activations {skill['activations']} · turns ok {skill['successes']} · failed {skill['failures']}")
    for key, values in skill["requires"].items():
        st.write(f"requires {key}: {', '.join(values)}")
    for warning in skill["warnings"]:
        st.caption(f"warning: {warning}")
    if skill["versions"]:
        table(
            [
                {
                    "version": v["version"],
                    "hash": v["content_hash"][:12],
                    "when (UTC)": when(v["created_at"]),
                    "note": v["note"],
                }
                for v in skill["versions"]
            ],
            key="skills.versions",
        )
    action = "disable" if skill["status"] != "disabled" else "enable"
    if st.button(action.capitalize(), key="skills.detail.toggle"):
        _, error = call(api, action, {"name": chosen})
        if error:
            st.error(error)
        else:
            st.rerun()
    st.markdown("---")
    st.code(skill["body"], language="markdown")


def render_upload(api: Any) -> None:
    """Draw the upload form: a zip of one skill folder, checked, with the errors shown inline."""
    import streamlit as st

    st.title("Add a skill")
    st.write("Upload a zip holding one skill folder (`my-skill/SKILL.md`, and any scripts/, references/, assets/).")
    upload = st.file_uploader("Skill archive (.zip)", type=["zip"], key="skills.upload.file")
    replace = st.checkbox("Replace an installed skill of the same name", key="skills.upload.replace")
    check_only = st.checkbox("Only check it", key="skills.upload.dry")
    if upload is not None and st.button("Check and install" if not check_only else "Check", key="skills.upload.go"):
        payload = {
            "filename": upload.name,
            "content_base64": base64.b64encode(upload.getvalue()).decode(),
            "replace": replace,
            "dry_run": check_only,
        }
        show_result(st, *call(api, "upload", payload), check_only)


def show_result(st: Any, result: dict[str, Any] | None, error: str | None, check_only: bool) -> None:
    """Show an upload's outcome: the one-line refusal, or the skill's name, warnings and availability."""
    if error or result is None:
        st.error(error or "the upload failed")
        return
    if not result["ok"]:
        st.error(result["error"])
        return
    st.success(f"{result['name']}: " + ("valid" if check_only else "installed"))
    for warning in result["warnings"]:
        st.warning(warning)
    if result["unavailable_reason"]:
        st.info(f"not available here: {result['unavailable_reason']}")


def table(rows: Any, *, key: str, **options: Any) -> Any:
    """Draw ``rows`` as the dashboard draws every table: with an "Export CSV" button."""
    from refactorbot_dashboard.tables import table as draw

    return draw(rows, key=key, **options)
