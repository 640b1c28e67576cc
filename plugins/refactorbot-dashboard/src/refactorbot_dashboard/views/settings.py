"""Settings: ``refactorbot.toml`` viewed and edited section by section, validated by the server."""

from __future__ import annotations

import tomllib
from typing import Any

from refactorbot_dashboard.client import ApiError

SINGLE = ("core", "llm", "resources")
NAMED = ("slices", "gateways", "tools", "channels", "plugins")


def sections_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the editable sections of a configuration document: ``core``, ``slices.<id>``, ..."""
    found: dict[str, dict[str, Any]] = {}
    for kind in SINGLE:
        if isinstance(document.get(kind), dict):
            found[kind] = document[kind]
    for kind in NAMED:
        for name, table in sorted((document.get(kind) or {}).items()):
            if isinstance(table, dict):
                found[f"{kind}.{name}"] = table
    return found


def parse_section(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Return the TOML table in ``text``, or a one-line error."""
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        return None, f"not valid TOML: {exc}"


def render(api: Any) -> None:
    """Draw the settings page."""
    import streamlit as st
    import tomli_w

    st.title("Settings")
    view = api.get("/settings")
    st.caption(
        f"File: `{view['config_file']}`"
        + ("" if view["exists"] else " (not created yet)")
        + " · secrets are shown as `***`; leave `***` to keep a secret · changes take effect at restart"
    )
    sections = sections_of(view["sections"])
    if not sections:
        st.info("No configuration yet: every setting has its default. Add a section below.")
    for section, values in sections.items():
        with st.expander(f"[{section}]", expanded=False):
            _editor(api, st, section, tomli_w.dumps(values), key=f"settings.{section}")
    st.subheader("Add or replace a section")
    with st.form("settings.new"):
        section = st.text_input("Section", placeholder="slices.memory", key="settings.new.section")
        text = st.text_area("Values (TOML)", placeholder="max_items = 1000", key="settings.new.text", height=120)
        if st.form_submit_button("Save section"):
            _save(api, st, section.strip(), text)


def _editor(api: Any, st: Any, section: str, text: str, key: str) -> None:
    with st.form(key):
        edited = st.text_area("Values (TOML)", value=text, height=160, key=f"{key}.text")
        if st.form_submit_button("Save", type="primary"):
            _save(api, st, section, edited)


def _save(api: Any, st: Any, section: str, text: str) -> None:
    if not section:
        st.error("Name the section, e.g. `slices.memory` or `core`.")
        return
    values, problem = parse_section(text)
    if problem is not None or values is None:
        st.error(problem)
        return
    try:
        api.put(f"/settings/{section}", json=values)
    except ApiError as exc:
        st.error(exc.detail)
        return
    st.success(f"Saved [{section}]. Restart `refactorbot serve` to apply it.")
