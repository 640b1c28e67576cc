"""The notes dashboard page: a table of notes and a form to add one.

Streamlit is imported inside ``render_notes_page`` so that loading the plugin stays cheap; the
dashboard process is the only one that ever draws the page.
"""

from __future__ import annotations

from typing import Any

from refactorbot_example_notes.models import BODY_MAX, TITLE_MAX

LIST_PATH = "/slices/notes/operations/list"
ADD_PATH = "/slices/notes/operations/add"


def note_rows(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the table rows the page shows for notes as ``notes.list`` returns them."""
    return [
        {
            "id": n["id"],
            "done": n["done"],
            "title": n["title"],
            "list": n["list_name"],
            "tags": ", ".join(n["tags"]),
            "updated": n["updated_at"],
        }
        for n in notes
    ]


def parse_tags(text: str) -> list[str]:
    """Return the tags typed into the form's comma-separated field."""
    return [t.strip() for t in text.split(",") if t.strip()]


def render_notes_page(api: Any) -> None:
    """Draw the notes page with ``api``, a client of the running server (``get``/``post``)."""
    import streamlit as st

    st.title("Notes")
    show_done = st.toggle("Show completed notes", value=False)
    query: dict[str, Any] = {"limit": 200} if show_done else {"done": False, "limit": 200}
    listed = api.post(LIST_PATH, query)
    if not listed.get("success"):
        st.error(listed.get("error_message") or "the notes slice is unavailable")
    elif listed["data"]["notes"]:
        st.caption(f"{len(listed['data']['notes'])} of {listed['data']['total']} notes")
        st.dataframe(note_rows(listed["data"]["notes"]), hide_index=True, use_container_width=True)
    else:
        st.info("No notes yet.")

    with st.form("add-note", clear_on_submit=True):
        title = st.text_input("Title", max_chars=TITLE_MAX)
        body = st.text_area("Body", max_chars=BODY_MAX)
        tags = st.text_input("Tags (comma-separated)")
        if st.form_submit_button("Add note"):
            added = api.post(ADD_PATH, {"title": title, "body": body, "tags": parse_tags(tags)})
            if added.get("success"):
                st.success(f"Added note {added['data']['id']}.")
                st.rerun()
            else:
                st.error(added.get("error_message") or "could not add the note")
