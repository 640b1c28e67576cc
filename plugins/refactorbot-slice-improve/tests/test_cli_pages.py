"""``refactorbot improve`` (a real subprocess) and the dashboard page (Streamlit's AppTest), both
against a running server and control API over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import IMPROVE, plan
from refactorbot.testing import ModelServer, loopback_config, plugin_of
from streamlit.testing.v1 import AppTest
from test_policies import Writer, prompt_action


class Client:
    """The dashboard's client shape: ``post`` returning JSON."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    def post(self, path: str, json: Any = None) -> Any:
        response = self.http.post(path, json=json)
        response.raise_for_status()
        return response.json()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), "improve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Client]]:
    from refactorbot_api.testing import running_server

    Writer.versions = ["Hello {name}, answer at length."]
    with ModelServer() as model:
        model.script(plan(prompt_action("Hello {name}, answer briefly."), notes="replies are cut"))
        config = {"slices": {"improve": {"min_calls": 3, "eval_window": 3600}}, **loopback_config(model)}
        plugins = [IMPROVE, "refactorbot.testing.loopback", plugin_of(slices=[Writer], name="writer")]
        with running_server(tmp_path / "home", plugins, config=config) as server:
            client = Client(server.url, server.token)
            for _ in range(3):
                assert client.post("/slices/writer/operations/reply", {"name": "ann"})["success"] is False
            yield tmp_path / "home", client


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_improve import pages

    pages.render_improve(st.session_state["api"])


def page(client: Client) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["api"] = client
    return at.run()


def test_cli_and_page_run_a_cycle_approve_and_show_the_trail(served: tuple[Path, Client]) -> None:
    home, client = served
    empty = page(client)
    assert [str(i.value) for i in empty.info] == ["No cycles yet: refactorbot improve run SLICE"]

    ran = cli(home, "run", "writer", "--feedback", "replies get cut")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Cycle 1 for writer: planned. replies are cut")
    assert "prompt  reply" in ran.stdout and "pending" in ran.stdout

    listed = cli(home, "list")
    assert listed.returncode == 0 and "Hello {name}, answer briefly." in listed.stdout

    at = page(client)
    assert [str(s.value) for s in at.subheader] == ["Waiting for approval", "Cycles", "Audit trail"]
    at.text_input(key="improve.reason").input("shorter is better")
    at.button(key="improve.approve").click().run()
    assert [str(s.value) for s in at.success] == ["Change 1: evaluating (shorter is better)"]
    assert [str(c.value) for c in at.caption][0] == "Nothing waits for approval."
    assert any("+Hello {name}, answer briefly." in str(c.value) for c in at.code)

    for _ in range(3):
        assert client.post("/slices/writer/operations/reply", {"name": "ann"})["success"] is True
    evaluated = cli(home, "evaluate")
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.startswith("Change 1: better, kept (error rate 100.0% → 0.0%")

    shown = cli(home, "show", "1")
    assert shown.returncode == 0, shown.stderr
    trail = shown.stdout.split("Audit trail:\n", 1)[1]
    assert [line.split()[1] for line in trail.splitlines()] == [
        "cycle",
        "plan",
        "plan",
        "approval",
        "candidate",
        "deploy",
        "evaluation",
        "keep",
    ]
    assert "approval change 1 by dashboard: shorter is better" in trail

    final = page(client)
    assert "kept" in " ".join(str(m.value) for m in final.markdown)

    missing = cli(home, "approve", "99")
    assert missing.returncode == 1 and missing.stderr.strip().endswith("no change 99")
    assert cli(home, "list").stdout.strip() == "No changes."
