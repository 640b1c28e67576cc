"""The memories page under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.client import ApiClient
from streamlit.testing.v1 import AppTest

PLUGIN = "refactorbot_slice_memory.plugin"
CONFIG = {"core": {"health_interval": 3600}}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, ApiClient]]:
    with running_server(tmp_path, [PLUGIN], config=CONFIG) as server:
        client = ApiClient(server.url, server.token)
        try:
            yield server, client
        finally:
            client.close()


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_memory import pages

    pages.render_memories(st.session_state["api"])


def page(client: ApiClient) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["api"] = client
    return at.run()


def call(server: RunningServer, op: str, **payload: Any) -> Any:
    response = server.run(server.host.call(op, **payload))
    assert response.success, response.error_message
    return response.data


def test_memories_page_browses_searches_edits_and_forgets(served: tuple[RunningServer, ApiClient]) -> None:
    server, client = served
    at = page(client)
    assert not at.exception, at.exception
    assert [i.value for i in at.info] == ["No memories yet."]

    tea = call(server, "memory.remember", user_id="alice", content="Alice likes green tea", tags=["drinks"])
    call(server, "memory.remember", user_id="alice", content="Alice lives in Lyon", tags=["home"])
    call(server, "memory.remember", user_id="bob", content="Bob rides a bike")
    at = page(client)
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Users"] == "2"
    assert at.selectbox(key="memory.user").options == ["bob (1)", "alice (2)"]
    assert list(at.dataframe[0].value["content"]) == ["Bob rides a bike"]

    at.selectbox(key="memory.user").set_value("alice").run()
    assert list(at.dataframe[0].value["content"]) == ["Alice lives in Lyon", "Alice likes green tea"]
    at.text_input(key="memory.query").input("tea").run()
    assert list(at.dataframe[0].value["content"]) == ["Alice likes green tea"]
    assert list(at.dataframe[0].value["recalled"]) == [0]  # browsing is not a recall
    at.text_input(key="memory.query").input("").run()
    at.text_input(key="memory.tags").input("home").run()
    assert list(at.dataframe[0].value["content"]) == ["Alice lives in Lyon"]
    at.text_input(key="memory.tags").input("").run()

    at.selectbox(key="memory.chosen").set_value(tea["id"]).run()
    at.text_area(key=f"memory.content.{tea['id']}").input("Alice prefers coffee")
    at.text_input(key=f"memory.tagset.{tea['id']}").input("drinks, Morning")
    at = at.button[[b.label for b in at.button].index("Save")].click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [f"Saved memory #{tea['id']}."]
    stored = call(server, "memory.find", user_id="alice", query="coffee")["memories"]
    assert [(m["id"], m["tags"]) for m in stored] == [(tea["id"], ["drinks", "morning"])]

    at.text_area(key=f"memory.content.{tea['id']}").input("x" * 4001)
    at = at.button[[b.label for b in at.button].index("Save")].click().run()
    assert [e.value for e in at.error] == ["memory has 4001 characters; the limit is 4000"]

    at.selectbox(key="memory.chosen").set_value(tea["id"]).run()
    at = at.button(key="memory.forget").click().run()
    assert [s.value for s in at.success] == ["Forgot 1 memory."]
    assert list(at.dataframe[0].value["content"]) == ["Alice lives in Lyon"]

    assert at.button(key="memory.forget_all").disabled
    at.checkbox(key="memory.sure").check().run()
    at = at.button(key="memory.forget_all").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Forgot 1 memories of alice."]
    assert [u["user_id"] for u in call(server, "memory.users")] == ["bob"]
