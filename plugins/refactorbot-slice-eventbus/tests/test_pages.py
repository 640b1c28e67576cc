"""The dashboard pages under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EVENTBUS, SINK, bus_config
from refactorbot.events import Event
from sink_plugin import SINKS, record_for
from streamlit.testing.v1 import AppTest


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.detail = detail


class Client:
    """The dashboard's client shape: ``post`` returning JSON, raising with the API's detail."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    def post(self, path: str, json: Any = None) -> Any:
        response = self.http.post(path, json=json)
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json().get("detail", response.text))
        return response.json()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, Client]]:
    from refactorbot_api.testing import running_server

    SINKS.clear()
    with running_server(tmp_path, [EVENTBUS, SINK], config=bus_config(max_attempts=1)) as server:
        yield server, Client(server.url, server.token)


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_eventbus import pages

    getattr(pages, st.session_state["page"])(st.session_state["api"])


def page(name: str, client: Client) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["page"] = name
    at.session_state["api"] = client
    return at.run()


async def _publish(host: Any, n: int) -> None:
    await host.publish(Event(topic="work.item", payload={"n": n}))


async def _settled(host: Any, offset: int) -> None:
    import asyncio

    async with asyncio.timeout(30):
        while host.bus.subscriber("sink.on_work") is None or host.bus.subscriber("sink.on_work").acked < offset:
            await asyncio.sleep(0.005)


def test_overview_shows_throughput_and_lag(served: Any, tmp_path: Path) -> None:
    server, client = served
    for n in range(5):
        server.run(_publish(server.host, n))
    server.run(_settled(server.host, 5))
    at = page("render_overview", client)
    assert not at.exception, at.exception
    assert at.title[0].value == "Event bus"
    table = at.dataframe[0].value
    row = table[table["subscriber"] == "sink.on_work"].iloc[0]
    assert row["delivered"] == 5 and row["lag"] == 0 and row["acked offset"] == 5
    assert {m.label: m.value for m in at.metric}["Events stored"] == "5"


def test_dead_letters_page_requeues(served: Any, tmp_path: Path) -> None:
    server, client = served
    record = record_for(tmp_path)
    record.fail = {7: 1}
    server.run(_publish(server.host, 7))
    server.run(_settled(server.host, 1))
    at = page("render_dead_letters", client)
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["topic"]) == ["work.item"] and "refusing n=7" in table["error"].iloc[0]
    at.multiselect(key="bus.dead.ids").select(int(table["id"].iloc[0])).run()
    at.button(key="bus.dead.requeue").click().run()
    assert not at.exception, at.exception
    assert "Requeued 1 dead letter(s)." in [s.value for s in at.success]
    server.run(_until_seen(record))
    assert record.of("on_work") == [7]


async def _until_seen(record: Any) -> None:
    import asyncio

    async with asyncio.timeout(30):
        while not record.of("on_work"):
            await asyncio.sleep(0.005)
