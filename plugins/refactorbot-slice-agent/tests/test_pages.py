"""The executions and prompts pages under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot.testing import loopback_config
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.client import ApiClient
from streamlit.testing.v1 import AppTest

AGENT = "refactorbot_slice_agent.plugin"
LOOPBACK = "refactorbot.testing.loopback"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, ApiClient, ModelServer]]:
    with ModelServer() as model:
        model.responder = lambda body: Reply.text("Paris.")
        config = {"core": {"health_interval": 3600}, **loopback_config(model)}
        with running_server(tmp_path, [AGENT, LOOPBACK], config=config) as server:
            client = ApiClient(server.url, server.token)
            try:
                yield server, client, model
            finally:
                client.close()


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_agent import pages

    getattr(pages, st.session_state["page"])(st.session_state["api"])


def page(name: str, client: ApiClient) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["page"] = name
    at.session_state["api"] = client
    return at.run()


def call(server: RunningServer, op: str, **payload: Any) -> Any:
    response = server.run(server.host.call(op, **payload))
    assert response.success, response.error_message
    return response.data


def test_executions_page_lists_runs_and_shows_one(served: tuple[RunningServer, ApiClient, ModelServer]) -> None:
    server, client, _ = served
    at = page("render_executions", client)
    assert not at.exception, at.exception
    assert [i.value for i in at.info] == ["The agent has not run yet."]
    call(server, "agent.run", message="Capital of France?", mode="single", user_id="alice")
    call(server, "agent.run", message="And of Italy?", mode="single", user_id="bob")
    at = page("render_executions", client)
    assert not at.exception, at.exception
    runs = at.dataframe[0].value
    assert list(runs["request"]) == ["And of Italy?", "Capital of France?"]
    assert list(runs["ok"]) == [True, True] and list(runs["answer / error"]) == ["Paris.", "Paris."]
    assert {m.label: m.value for m in at.metric}["Runs shown"] == "2"
    assert "**Request**\n\nAnd of Italy?" in [m.value for m in at.markdown]
    at.text_input(key="agent.exec.user").input("alice").run()
    assert list(at.dataframe[0].value["user"]) == ["alice"]
    at.text_input(key="agent.exec.user").input("nobody").run()
    assert [i.value for i in at.info] == ["No agent runs match."]


def test_prompts_page_saves_diffs_and_rolls_back(served: tuple[RunningServer, ApiClient, ModelServer]) -> None:
    server, client, model = served
    at = page("render_prompts", client)
    assert not at.exception, at.exception
    assert at.selectbox(key="agent.prompt.name").value == "planner"
    at.selectbox(key="agent.prompt.name").set_value("system").run()
    assert list(at.dataframe[0].value["version"]) == [1]
    assert not at.get("code")  # one version: nothing to compare

    at.text_area[0].input("You are brief.\nToday is {date}.")
    at.text_input[0].input("shorter")
    at = at.button[[b.label for b in at.button].index("Save as a new version")].click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Saved system version 2; runs use it now."]
    versions = at.dataframe[0].value
    assert list(versions["version"]) == [2, 1] and list(versions["note"]) == ["shorter", "default"]
    diff = at.code[0].value
    assert diff.startswith("--- system v1\n+++ system v2") and "+You are brief." in diff
    call(server, "agent.run", message="hi", mode="single")
    assert model.requests[-1]["messages"][0]["content"].startswith("You are brief.\nToday is 20")

    at = at.button[[b.label for b in at.button].index("Save as a new version")].click().run()
    assert [e.value for e in at.error] == ["Nothing changed: the text is the current version's."]

    at.selectbox(key="agent.prompt.back.system").set_value(1).run()
    at = at.button(key="agent.prompt.rollback").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["system is version 1's text again (saved as 3)."]
    assert list(at.dataframe[0].value["note"]) == ["rollback to version 1", "shorter", "default"]
    at.selectbox(key="agent.prompt.from.system").set_value(1).run()
    at.selectbox(key="agent.prompt.to.system").set_value(3).run()
    assert [i.value for i in at.info] == ["Versions 1 and 3 have the same text."]
    call(server, "agent.run", message="hi", mode="single")
    assert model.requests[-1]["messages"][0]["content"].startswith("You are refactorbot")
