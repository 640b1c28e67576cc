"""Search, the alert panel and the limits display under AppTest, against a host running built-in slices."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import dashboard_sample
import pytest
from conftest import LOGIN_TOKEN
from dashboard_sample import APP
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.testing import log_in
from streamlit.testing.v1 import AppTest

BUILT_IN = [
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_memory.plugin",
    "refactorbot_slice_scheduling.plugin",
]
CONFIG = {
    "slices": {"sample": {"resources": {"max_concurrency": 3}}, "scheduling": {"failure_alert_after": 1}},
}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("full"), [*BUILT_IN, dashboard_sample.SAMPLE], config=CONFIG) as srv:
        yield srv


@pytest.fixture
def app(full: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("RB_DASHBOARD_API_URL", full.url)
    monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", full.token)
    monkeypatch.setenv("RB_DASHBOARD_LOGIN_TOKEN", LOGIN_TOKEN)
    monkeypatch.setenv("RB_DASHBOARD_PLUGINS", "dashboard_sample:SAMPLE")
    monkeypatch.setenv("RB_LOAD_PLUGINS", "")
    monkeypatch.delenv("RB_DASHBOARD_START_PAGE", raising=False)
    return full


def call(server: RunningServer, op: str, **payload: Any) -> Any:
    response = server.run(server.host.call(op, **payload))
    assert response.success, response.error_message
    return response.data


def subheaders(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader]


def test_search_finds_sessions_memories_logs_and_operations(app: RunningServer) -> None:
    chat = call(app, "session.get_or_create", channel="cli", chat_id="zebra-chat", user_id="alice")
    call(app, "session.append", session_id=chat["session_id"], role="user", content="The Zebra crossing is closed")
    call(app, "memory.remember", user_id="bob", content="Bob has a zebra mug")
    logging.getLogger("refactorbot.slice.sample").warning("zebra stampede at %d", 3)
    at = log_in(AppTest.from_file(str(APP), default_timeout=30), LOGIN_TOKEN)
    at.switch_page("master_pages/search.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Search" and len(at.info) == 1
    at.text_input(key="search.query").input("zebra").run()
    assert not at.exception, at.exception
    assert subheaders(at) == ["Sessions", "Memories", "Logs", "Operations"]
    sessions, memories, logs = (at.dataframe[i].value for i in range(3))
    assert list(sessions["chat"]) == ["zebra-chat"] and list(sessions["matched"]) == ["session"]
    assert list(memories["content"]) == ["Bob has a zebra mug"] and list(memories["user"]) == ["bob"]
    assert "zebra stampede at 3" in list(logs["message"])
    assert "No operation matches." in [c.value for c in at.caption]
    assert len(at.get("download_button")) == 3

    at.text_input(key="search.query").input("archive").run()
    operations = at.dataframe[-1].value
    assert {"session.archive", "session.archive_idle"} <= set(operations["operation"])


def test_overview_shows_alerts_and_limits(app: RunningServer) -> None:
    at = log_in(AppTest.from_file(str(APP), default_timeout=30), LOGIN_TOKEN)
    assert not at.exception, at.exception
    assert "Alerts" in subheaders(at) and "Limits and concurrency" in subheaders(at)
    assert "No alert is firing." in [s.value for s in at.success]

    failing = {"type": "operation", "operation": "sample.add", "payload": {"title": ""}}
    call(app, "scheduling.add", name="nightly-notes", cron="0 3 * * *", target=failing)
    call(app, "scheduling.run_now", name="nightly-notes")
    call(app, "scheduling.check_alerts")
    call(app, "sample.add", title="counted")
    at = log_in(AppTest.from_file(str(APP), default_timeout=30), LOGIN_TOKEN)
    assert not at.exception, at.exception
    firing = [e.value for e in at.error if e.value.startswith("**job_failing**")]
    assert len(firing) == 1 and firing[0].startswith("**job_failing** nightly-notes: job nightly-notes failed")
    limits = at.dataframe[-1].value.set_index("slice")
    assert limits.loc["sample"]["max concurrency"] == 3 and limits.loc["sample"]["in flight"] == 0
    assert limits.loc["session"]["max concurrency"] == 32
    assert {m.label: m.value for m in at.metric}["Refused (rate limit or busy)"] == "0"
    assert "Export CSV" in [b.proto.label for b in at.get("download_button")]
    call(app, "scheduling.remove", name="nightly-notes")
    call(app, "scheduling.check_alerts")
