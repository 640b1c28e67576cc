"""The sessions page under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.client import ApiClient
from streamlit.testing.v1 import AppTest

PLUGIN = "refactorbot_slice_session.plugin"
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
    from refactorbot_slice_session import pages

    pages.render_sessions(st.session_state["api"])


def page(client: ApiClient) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["api"] = client
    return at.run()


def call(server: RunningServer, op: str, **payload: Any) -> Any:
    response = server.run(server.host.call(op, **payload))
    assert response.success, response.error_message
    return response.data


def test_sessions_page_lists_searches_shows_messages_and_archives(served: tuple[RunningServer, ApiClient]) -> None:
    server, client = served
    at = page(client)
    assert not at.exception, at.exception
    assert at.title[0].value == "Sessions"
    assert [i.value for i in at.info] == ["No conversations yet."]

    alice = call(server, "session.get_or_create", channel="telegram", chat_id="42", user_id="alice", title="Trip")
    bob = call(server, "session.get_or_create", channel="cli", chat_id="c2", user_id="bob")
    call(server, "session.append", session_id=alice["session_id"], role="user", content="Book a train to Lyon")
    call(server, "session.append", session_id=alice["session_id"], role="assistant", content="Booked for 9:00.")
    call(server, "session.append", session_id=bob["session_id"], role="user", content="=SUM(A1:A9) please")

    at = page(client)
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric} == {
        "Sessions": "2",
        "Active": "2",
        "Archived": "0",
        "Messages": "3",
        "Tokens": at.metric[4].value,
    }
    table = at.dataframe[0].value
    assert list(table["user"]) == ["bob", "alice"] and list(table["messages"]) == [1, 2]
    csv = at.get("download_button")[0]
    assert csv.proto.label == "Export CSV"

    at.text_input(key="session.query").input("lyon").run()
    assert not at.exception, at.exception
    found = at.dataframe[0].value
    assert list(found["user"]) == ["alice"] and list(found["matched"]) == ["message"]
    assert "train to Lyon" in found["snippet"][0]
    messages = at.dataframe[1].value
    assert list(messages["role"]) == ["user", "assistant"]
    assert list(messages["content"]) == ["Book a train to Lyon", "Booked for 9:00."]

    at.text_input(key="session.query").input("").run()
    at.selectbox(key="session.chosen").set_value(bob["session_id"]).run()
    assert list(at.dataframe[1].value["content"]) == ["=SUM(A1:A9) please"]
    at = at.button(key="session.archive").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [f"Archived {bob['session_id']}; its chat starts anew."]
    assert call(server, "session.get", session_id=bob["session_id"])["status"] == "archived"
    assert not any(b.key == "session.archive" for b in at.button)  # archived: no button
    at.selectbox(key="session.status").set_value("active").run()
    assert list(at.dataframe[0].value["user"]) == ["alice"]
    at.text_input(key="session.query").input("nobody").run()
    assert [i.value for i in at.info] == ["No session matches."]


def test_sessions_page_shows_an_unreachable_api_as_one_line(tmp_path: Path) -> None:
    with running_server(tmp_path, [PLUGIN], config=CONFIG) as server:
        url = server.url
    client = ApiClient(url, "whatever", timeout=2)
    at = page(client)
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "connect" in at.error[0].value.lower()
