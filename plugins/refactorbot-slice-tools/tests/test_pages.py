"""The tools page under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.client import ApiClient
from streamlit.testing.v1 import AppTest
from tools_slice_samples import SAMPLE_TOOLS

SLICE = "refactorbot_slice_tools.plugin"
CONFIG = {"core": {"health_interval": 3600}, "slices": {"tools": {"rate_limits": {"echo": 2}, "timeout": 5}}}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, ApiClient]]:
    with running_server(tmp_path, [SLICE, SAMPLE_TOOLS], config=CONFIG) as server:
        client = ApiClient(server.url, server.token)
        try:
            yield server, client
        finally:
            client.close()


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_tools import pages

    pages.render_tools(st.session_state["api"])


def page(client: ApiClient) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["api"] = client
    return at.run()


def execute(server: RunningServer, tool: str, **arguments: Any) -> dict[str, Any]:
    response = server.run(server.host.call("tools.execute", tool=tool, arguments=arguments))
    assert response.success, response.error_message
    data: dict[str, Any] = response.data
    return data


def test_tools_page_shows_registry_limits_stats_and_toggles(served: tuple[RunningServer, ApiClient]) -> None:
    server, client = served
    at = page(client)
    assert not at.exception, at.exception
    registry = at.dataframe[0].value
    assert list(registry["tool"]) == ["boom", "echo", "nap", "picky"]
    assert list(registry["enabled"]) == [True] * 4
    assert registry.set_index("tool").loc["echo"]["rate limit (/min)"] == 2.0
    assert [i.value for i in at.info] == ["No tool calls in this window."]

    for _ in range(3):
        execute(server, "echo", text="hi")
    execute(server, "boom", seconds=2)
    at = page(client)
    assert not at.exception, at.exception
    echo = at.dataframe[0].value.set_index("tool").loc["echo"]
    assert echo["refused"] == 1 and echo["available now"] < 1
    assert {m.label: m.value for m in at.metric}["Refused by rate limits"] == "1"
    bars = [p.proto.text for p in at.get("progress")]
    assert (
        len(bars) == 1
        and bars[0].startswith("echo: 0.")
        and bars[0].endswith("of 2 calls a minute available · 1 refused")
    )
    usage = at.dataframe[1].value.set_index("tool")
    assert usage.loc["echo"]["calls"] == 3 and usage.loc["echo"]["errors"] == 1
    assert usage.loc["boom"]["error rate"] == 1.0
    failures = at.dataframe[2].value
    assert set(failures["tool"]) == {"echo", "boom"}
    assert set(failures["error"]) == {
        "echo rate limit of 2 calls per minute exceeded; retry later",
        "refused on purpose",
    }
    assert [b.proto.label for b in at.get("download_button")] == ["Export CSV"] * 3

    at.selectbox(key="tools.chosen").set_value("nap").run()
    assert at.button(key="tools.enable").disabled
    at = at.button(key="tools.disable").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Disabled nap: models are no longer offered it."]
    assert at.dataframe[0].value.set_index("tool").loc["nap"]["enabled"] == False  # noqa: E712 (numpy bool)
    listed = server.run(server.host.call("tools.list")).data
    assert "nap" not in [s["function"]["name"] for s in listed["schemas"]]
    at = at.button(key="tools.enable").click().run()
    assert [s.value for s in at.success] == ["Enabled nap."]
    assert execute(server, "nap")["ok"]
