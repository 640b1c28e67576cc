"""The dashboard pages under Streamlit's AppTest, against a real host and control API over HTTP, after a
real orchestration of the demo repository: the plan board, a task with its diff, tests and review,
the merge queue; and a plan made without a model, which the board says loudly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from refactorbot.testing import ModelServer, Reply
from refactorbot_slice_refactory import script
from refactory_fixtures import PLUGINS, config, finished
from streamlit.testing.v1 import AppTest


class Client:
    """The dashboard's client shape: ``get``/``post`` returning JSON."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    def get(self, path: str) -> Any:
        return self.http.get(path).json()

    def post(self, path: str, json: Any = None) -> Any:
        return self.http.post(path, json=json, timeout=60).json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, dict[str, Any]]]:
    from refactorbot_api.testing import running_server

    root = tmp_path_factory.mktemp("pages")
    repo = script.build_repo(root / "repo")
    with (
        ModelServer(responder=script.responder) as model,
        running_server(root / "home", PLUGINS, config=config(model)) as server,
    ):
        host = server.host
        request = server.run(
            host.call("refactory.create_request", title="Calc", repo=str(repo), test_command=script.test_command())
        )
        plan = server.run(host.call("refactory.create_plan", request_id=request.data["id"]))
        started = server.run(host.call("refactory.orchestrate", plan_id=plan.data["id"], agents=2))
        orch = server.run(finished(host, started.data["id"]), timeout=240)
        # A second plan while the model is down: the templated planner steps in, and says so.
        model.responder = lambda body: Reply.error(503, "model down")
        fallback = server.run(host.call("refactory.create_plan", request_id=request.data["id"]), timeout=120)
        assert fallback.success and fallback.data["planner_fallback"], fallback
        yield Client(server.url, server.token), {"plan": plan.data, "orch": orch, "fallback": fallback.data}


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_refactory import pages

    getattr(pages, st.session_state["page"])(st.session_state["api"])


def page(name: str, client: Client) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["page"] = name
    at.session_state["api"] = client
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [str(e.value) for e in at.error]
    parts += [str(e.value) for e in at.info] + [str(e.value) for e in at.warning] + [e.value for e in at.subheader]
    return "\n".join(parts)


def test_plan_board_shows_tasks_by_state_and_a_plan_made_without_a_model(served: Any) -> None:
    client, run = served
    at = page("render_board", client)
    assert not at.exception, at.exception
    assert at.title[0].value == "Refactory — plan board"
    # The newest plan is shown first: planned without a model, which the board says as an error.
    assert at.selectbox[0].value == run["fallback"]["id"]
    errors = [str(e.value) for e in at.error]
    assert errors and errors[0].startswith(
        "Planned without a model (templated planner): the model planner was unavailable"
    )
    assert "templated planner" in texts(at) and "planned" in [s.value for s in at.subheader]
    at = at.selectbox[0].set_value(run["plan"]["id"]).run()
    assert not at.exception, at.exception
    assert not at.error
    assert [s.value for s in at.subheader] == ["merged"]
    shown = texts(at)
    for task in run["plan"]["tasks"]:
        assert f"**#{task['id']}** {task['title']}" in shown
    assert any("share scope: calc.py" in str(w.value) for w in at.warning)  # the plan's overlap warning


def test_task_page_shows_diff_tests_and_review(served: Any) -> None:
    client, run = served
    conflicted = next(a["task_id"] for a in run["orch"]["attempts"] if a["outcome"] == "conflict")
    at = page("render_task", client)
    at = at.number_input[0].set_value(conflicted).run()
    assert not at.exception, at.exception
    title = next(t["title"] for t in run["plan"]["tasks"] if t["id"] == conflicted)
    assert at.subheader[0].value == f"#{conflicted} {title} — merged"
    codes = [c.value for c in at.code]
    assert codes[0].startswith("diff --git a/calc.py b/calc.py")
    assert "Ran 1 test" in codes[1] and codes[1].rstrip().endswith("OK")  # the acceptance output
    assert "Ran 3 tests" in codes[2]  # the repository's tests in the worktree
    shown = texts(at)
    assert "attempts 2" in shown and "**Acceptance** (pass)" in shown
    assert "The diff does what" in shown  # the review


def test_merge_queue_shows_every_attempt_and_the_report(served: Any) -> None:
    client, run = served
    at = page("render_queue", client)
    at = at.selectbox[0].set_value(run["plan"]["id"]).run()
    assert not at.exception, at.exception
    assert f"orchestration {run['orch']['id']} · done · refactory/{run['plan']['id']}/integration" in texts(at)
    attempts = at.dataframe[0].value
    assert sorted(attempts["outcome"]) == ["conflict", "merged", "merged", "merged"]
    assert "Waiting to merge, in order: none" in texts(at)
    assert at.json[0].value and '"tests_green": true' in at.json[0].value
