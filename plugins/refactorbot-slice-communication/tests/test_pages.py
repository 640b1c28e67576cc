"""The dashboard pages under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PLUGINS, host_config, running_adapter
from loop_channel import LoopPlatform
from refactorbot.testing import ModelServer
from streamlit.testing.v1 import AppTest


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.detail = detail


class Client:
    """The dashboard's client shape: ``get``/``post`` returning JSON, raising with the API's detail."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    def _answer(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json().get("detail", response.text))
        return response.json()

    def get(self, path: str) -> Any:
        return self._answer(self.http.get(path))

    def post(self, path: str, json: Any = None) -> Any:
        return self._answer(self.http.post(path, json=json))


@pytest.fixture
def served(tmp_path: Path, model: ModelServer, platform: LoopPlatform) -> Iterator[tuple[Any, Client]]:
    from refactorbot_api.testing import running_server

    # A failed channel waits a minute before its restart, so a page shows it failed, not restarting.
    with running_server(tmp_path, PLUGINS, config=host_config(model, platform, channel_backoff=60)) as server:
        server.run(running_adapter(server.host))
        yield server, Client(server.url, server.token)


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_communication import pages

    getattr(pages, st.session_state["page"])(st.session_state["api"])


def page(name: str, client: Client) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["page"] = name
    at.session_state["api"] = client
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [str(e.value) for e in at.error]
    parts += [str(e.value) for e in at.info] + [str(e.value) for e in at.success] + [str(e.value) for e in at.warning]
    return "\n".join(parts)


def test_channels_page_shows_status_errors_and_traffic(served: Any, platform: LoopPlatform) -> None:
    server, client = served
    for i in range(3):
        server.run(server.host.call("communication.send", channel="loop", chat_id="c", text=f"n{i}"))
    at = page("render_channels", client)
    assert not at.exception, at.exception
    assert at.title[0].value == "Channels"
    table = at.dataframe[0].value
    assert list(table["channel"]) == ["loop"]
    assert list(table["status"]) == ["running"] and list(table["out"]) == [3]
    charts = at.get("vega_lite_chart") + at.get("arrow_vega_lite_chart")
    assert charts, "the traffic chart is drawn"

    runner = server.host.instance("communication").runners["loop"]
    runner.adapter.fail("connection reset")
    server.run(_until(lambda: runner.status == "failed"))
    at = page("render_channels", client)
    assert "failed (retry in" in at.dataframe[0].value["status"][0]
    assert "loop: connection reset" in texts(at)  # the reason it failed


async def _until(predicate: Any) -> None:
    from conftest import until

    await until(predicate)


def test_messages_page_filters_and_pages(served: Any) -> None:
    server, client = served
    for i in range(55):
        server.run(server.host.call("communication.send", channel="loop", chat_id=f"c{i % 2}", text=f"n{i}"))
    at = page("render_messages", client)
    assert not at.exception, at.exception
    first = at.dataframe[0].value
    assert len(first) == 50 and first["text"][0] == "n54"
    older = next(b for b in at.button if b.label == "Older")
    at = older.click().run()
    assert list(at.dataframe[0].value["text"]) == ["n4", "n3", "n2", "n1", "n0"]
    at = next(b for b in at.button if b.label == "Newest").click().run()
    at.text_input(key="comm.log.chat").input("c1").run()
    assert set(at.dataframe[0].value["chat"]) == {"c1"}
    at.selectbox(key="comm.log.direction").set_value("in").run()
    assert [i.value for i in at.info] == ["No messages match."]


def test_pairing_page_approves_a_request(served: Any, platform: LoopPlatform) -> None:
    server, client = served
    adapter = server.host.instance("communication").runners["loop"].adapter
    server.run(adapter.inject("hi", sender_id="eve", chat_id="dm-eve", message_id="e1"))
    server.run(platform.wait_sent(1))
    at = page("render_pairing", client)
    assert not at.exception, at.exception
    assert "sender `eve`" in texts(at)
    at = next(b for b in at.button if b.label == "Approve").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Approved eve."]
    assert [i.value for i in at.info] == ["No pending pairing requests."]
    listed = server.run(server.host.call("communication.pairing_list", status="all"))
    assert listed.data["requests"][0]["status"] == "approved"


def test_templates_page_saves_shows_errors_and_deletes(served: Any) -> None:
    server, client = served
    at = page("render_templates", client)
    assert [i.value for i in at.info] == ["No templates yet."]
    at.text_input(key="comm.template.name").input("deploy")
    at.text_area(key="comm.template.body").input("Deployed $service")
    at = at.button[0].click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Saved deploy (variables: service)."]
    assert list(at.dataframe[0].value["name"]) == ["deploy"]
    at.text_input(key="comm.template.name").input("Bad Name")
    at = at.button[0].click().run()
    assert any("name" in e.value for e in at.error), texts(at)
    at = next(b for b in at.button if b.label == "Delete").click().run()
    assert [i.value for i in at.info] == ["No templates yet."]
