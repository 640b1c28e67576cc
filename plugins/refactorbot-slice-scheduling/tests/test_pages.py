"""The dashboard pages under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RECORDER, SCHEDULING, Recorder, echo, quiet
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

    with running_server(tmp_path, [SCHEDULING, RECORDER], config=quiet(failure_alert_after=1)) as server:
        yield server, Client(server.url, server.token)


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_scheduling import pages

    getattr(pages, st.session_state["page"])(st.session_state["api"])


def page(name: str, client: Client) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["page"] = name
    at.session_state["api"] = client
    return at.run()


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def call(server: Any, op: str, **payload: Any) -> Any:
    response = server.run(server.host.call(op, **payload))
    assert response.success, response.error_message
    return response.data


def test_jobs_page_lists_next_runs_and_runs_pauses_and_resumes(served: Any) -> None:
    server, client = served
    at = page("render_jobs", client)
    assert not at.exception, at.exception
    assert texts(at, "info")[0].startswith("No jobs yet")

    call(server, "scheduling.add", name="backup", cron="30 2 * * *", tz="America/New_York", target=echo("b"))
    call(server, "scheduling.add", name="flaky", cron="0 3 * * *", target=echo("f", fail=True))
    at = page("render_jobs", client)
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["job"]) == ["backup", "flaky"]
    assert list(table["zone"]) == ["America/New_York", "Europe/Berlin"]
    assert table["next run (zone)"][0].endswith(("T02:30:00-05:00", "T02:30:00-04:00"))
    assert table["next run (Europe/Berlin)"][0].endswith(("T08:30:00+01:00", "T08:30:00+02:00"))
    assert list(table["state"]) == ["active", "active"]

    at.selectbox(key="sched.job").set_value("flaky").run()
    at = at.button(key="sched.run_now").click().run()
    assert not at.exception, at.exception
    assert texts(at, "error") == ["flaky: failed: recorder.echo failed: echo of f failed as asked"]
    row = at.dataframe[0].value.set_index("job").loc["flaky"]
    assert (row["last"], row["failures in a row"]) == ("failed", 1)

    at.selectbox(key="sched.job").set_value("backup").run()
    at = at.button(key="sched.run_now").click().run()
    assert texts(at, "success") == ['backup: succeeded: {"echo": "b", "n": 2}']
    at = at.button(key="sched.pause").click().run()
    assert texts(at, "success") == ["Pause: backup done."]
    row = at.dataframe[0].value.set_index("job").loc["backup"]
    assert row["state"] == "paused" and row["next run (zone)"] == "-"
    at = at.button(key="sched.resume").click().run()
    assert at.dataframe[0].value.set_index("job").loc["backup"]["state"] == "active"
    assert [text for text, _ in Recorder.calls] == ["f", "b"]


def test_history_page_shows_runs_and_workflow_steps(served: Any) -> None:
    server, client = served
    steps = [
        {"name": "first", "operation": "recorder.echo", "payload": {"text": "alpha"}},
        {"name": "second", "operation": "recorder.echo", "payload": {"text": "$prev", "fail": True}},
    ]
    call(server, "scheduling.add", name="flow", cron="0 4 * * *", target={"type": "workflow", "steps": steps})
    at = page("render_history", client)
    assert texts(at, "info") == ["flow has not run yet."]
    call(server, "scheduling.run_now", name="flow")
    call(server, "scheduling.run_now", name="flow")
    at = page("render_history", client)
    assert not at.exception, at.exception
    runs = at.dataframe[0].value
    assert list(runs["status"]) == ["failed", "failed"] and list(runs["trigger"]) == ["manual", "manual"]
    assert runs["output / error"][0].startswith("step second failed: ")
    assert len(at.expander) == 2 and at.expander[0].label.endswith(": 2 step(s)")
    step_table = at.dataframe[1].value
    assert list(step_table["name"]) == ["first", "second"] and list(step_table["status"]) == ["succeeded", "failed"]


async def _until_runs(host: Any, name: str, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            runs = (await host.call("scheduling.history", name=name, status="succeeded")).data["runs"]
            if len(runs) >= count:
                return
            await asyncio.sleep(0.01)


def test_timeline_page_shows_the_last_runs_and_the_fires_due(served: Any) -> None:
    server, client = served
    at = page("render_timeline", client)
    assert texts(at, "info") == ["Nothing ran in the last 24 hours and nothing is due in the next 24."]
    call(server, "scheduling.add", name="often", every="1", target=echo("o"))
    call(server, "scheduling.add", name="nightly", cron="0 2 * * *", target=echo("n"))
    server.run(_until_runs(server.host, "often", 2))
    at = page("render_timeline", client)
    assert not at.exception, at.exception
    rows = at.dataframe[0].value
    kinds = rows.groupby("job")["kind"].apply(set).to_dict()
    assert "succeeded" in kinds["often"] and "due" in kinds["often"]
    assert kinds["nightly"] == {"due"}
    assert (rows[rows["job"] == "nightly"]["time (UTC)"].str.endswith(("01:00:00", "00:00:00"))).all()
    assert list(rows["time (UTC)"]) == sorted(rows["time (UTC)"])
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart"), "the timeline chart is drawn"


def test_alert_panel_checks_now_and_shows_firing_then_resolved(served: Any) -> None:
    server, client = served
    at = page("render_alerts", client)
    assert not at.exception, at.exception
    assert texts(at, "success") == ["No alert is firing."]

    call(server, "scheduling.add", name="broken", cron="0 5 * * *", target=echo("x", fail=True))
    call(server, "scheduling.run_now", name="broken")
    at = at.button(key="sched.alerts.check").click().run()
    assert not at.exception, at.exception
    firing = texts(at, "error")
    assert len(firing) == 1 and firing[0].startswith("**job_failing** broken: job broken failed 1 time(s) in a row")

    call(server, "scheduling.remove", name="broken")
    at = at.button(key="sched.alerts.check").click().run()
    assert texts(at, "success") == ["No alert is firing."]
    resolved = at.dataframe[0].value
    assert list(resolved["kind"]) == ["job_failing"] and list(resolved["subject"]) == ["broken"]
