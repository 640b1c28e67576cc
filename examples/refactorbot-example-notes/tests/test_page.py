"""Draw the notes page with Streamlit's test runner against a real host."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot.testing import build_host

PLUGIN = "refactorbot_example_notes.plugin"


class HostAPI:
    """The dashboard's client shape (``get``/``post`` returning decoded JSON) over a host on its own loop."""

    def __init__(self, host: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.host = host
        self.loop = loop
        self.posted: list[tuple[str, dict[str, Any]]] = []

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def get(self, path: str) -> Any:
        if path == "/slices":
            return self.host.slice_status()
        raise LookupError(path)

    def post(self, path: str, json: dict[str, Any]) -> Any:
        self.posted.append((path, json))
        _, slices, slice_id, operations, op = path.split("/")
        assert (slices, operations) == ("slices", "operations"), path
        return self._run(self.host.call(f"{slice_id}.{op}", **json)).model_dump(mode="json")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[HostAPI]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = build_host(tmp_path / "home", [PLUGIN], config={"core": {"health_interval": 3600}})
    client = HostAPI(host, loop)
    client._run(host.start())
    try:
        yield client
    finally:
        client._run(host.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def _app() -> None:
    import streamlit as st
    from refactorbot_example_notes.pages import render_notes_page

    render_notes_page(st.session_state["api"])


def test_page_lists_open_notes_and_adds_one(api: HostAPI) -> None:
    testing = pytest.importorskip("streamlit.testing.v1")
    api.post("/slices/notes/operations/add", {"title": "Buy milk", "tags": ["home"]})
    done = api.post("/slices/notes/operations/add", {"title": "Old chore"})
    api.post("/slices/notes/operations/complete", {"id": done["data"]["id"]})

    app = testing.AppTest.from_function(_app, default_timeout=30)
    app.session_state["api"] = api
    app.run()
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["title"]) == ["Buy milk"]
    assert list(table["tags"]) == ["home"]

    app.text_input[0].input("Water plants")
    app.text_input[1].input("garden, Weekly")
    app.button[0].click()
    app.run()
    assert not app.exception
    assert ("/slices/notes/operations/add", {"title": "Water plants", "body": "", "tags": ["garden", "Weekly"]}) in (
        api.posted
    )
    assert list(app.dataframe[0].value["title"]) == ["Water plants", "Buy milk"]
    stored = api.post("/slices/notes/operations/search", {"query": "water"})
    assert stored["data"]["notes"][0]["tags"] == ["garden", "weekly"]


def test_page_shows_the_error_when_the_slice_refuses(api: HostAPI) -> None:
    testing = pytest.importorskip("streamlit.testing.v1")
    app = testing.AppTest.from_function(_app, default_timeout=30)
    app.session_state["api"] = api
    app.run()
    assert [i.value for i in app.info] == ["No notes yet."]
    app.button[0].click()  # empty title
    app.run()
    assert any("title" in e.value for e in app.error), [e.value for e in app.error]
