"""Entry point of the notes example: registers the slice and its dashboard page."""

from __future__ import annotations

from typing import Any

from refactorbot import DashboardPage, hookimpl

from refactorbot_example_notes.pages import render_notes_page
from refactorbot_example_notes.slice import NotesSlice

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the notes slice."""
    register(NotesSlice)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the notes page of the dashboard."""
    register(DashboardPage(group="notes", title="Notes", kind="dashboard", render=render_notes_page))
