"""A slice and the dashboard pages it contributes, as a third-party plugin would (``SAMPLE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, DashboardPage, operation
from refactorbot.testing import plugin_of

#: The dashboard's Streamlit script.
APP = Path(__file__).parents[1] / "src" / "refactorbot_dashboard" / "app.py"


class AddParams(BaseModel):
    model_config = {"extra": "forbid"}
    title: str = Field(min_length=1, max_length=200, description="title of the note")
    priority: int = Field(1, ge=1, le=5)
    tags: list[str] = Field(default_factory=list)


class Note(BaseModel):
    id: int
    title: str
    priority: int
    tags: list[str]


class SampleSlice(AtomicSlice):
    """Keep notes in memory."""

    slice_id = "sample"
    uses_database = False

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.notes: list[Note] = []

    @operation
    async def add(self, params: AddParams) -> Note:
        """Add a note."""
        note = Note(id=len(self.notes) + 1, **params.model_dump())
        self.notes.append(note)
        return note

    @operation(name="list")
    async def list_notes(self) -> list[Note]:
        """List every note."""
        return self.notes


def render_notes(api: Any) -> None:
    import streamlit as st

    st.header("Sample notes")
    response = api.post("/slices/sample/operations/list", json={})
    notes = response["data"] or []
    st.metric("Notes", len(notes))
    for note in notes:
        st.write(f"{note['id']}. {note['title']}")


def render_stats(api: Any) -> None:
    import streamlit as st

    st.header("Sample analytics")
    stats = api.get("/metrics")["operations"]
    st.metric("sample.add calls", stats.get("sample.add", {}).get("count", 0))


def render_broken(api: Any) -> None:
    raise RuntimeError("this page is broken on purpose")


#: The plugin: the server registers it, and the dashboard loads it as ``dashboard_sample:SAMPLE``.
SAMPLE = plugin_of(
    slices=[SampleSlice],
    pages=[
        DashboardPage(group="sample", title="Notes", render=render_notes, kind="dashboard"),
        DashboardPage(group="sample", title="Note stats", render=render_stats, kind="analytics"),
        DashboardPage(group="sample", title="Broken", render=render_broken, kind="other"),
    ],
    name="dashboard_sample",
)
