"""The models and spend page under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from providers_setup import KEY_ENV, LOOPBACK, PLUGIN, home_with, providers_config
from refactorbot.testing import ModelServer
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.client import ApiClient
from streamlit.testing.v1 import AppTest

BUDGETS = {"overall": {"daily_usd": 1.0}, "slices": {"agent": {"monthly_usd": 0.5}}}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningServer, ApiClient]]:
    monkeypatch.setenv(KEY_ENV, "sk-providers-page-test")  # the gateway reads its key from the process
    with ModelServer() as model:
        # The configuration (arrays of tables) is a TOML file named by RB_CONFIG, as `refactorbot serve` reads it.
        config = {**providers_config(model, budgets=BUDGETS), "plugins": {"api": {"port": 0}}}
        path = home_with(tmp_path / "config", config) / "refactorbot.toml"
        env = {"RB_CONFIG": str(path)}
        with running_server(tmp_path / "home", [PLUGIN, LOOPBACK], env=env) as server:
            client = ApiClient(server.url, server.token)
            try:
                yield server, client
            finally:
                client.close()


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_providers import pages

    pages.render_providers(st.session_state["api"])


def page(client: ApiClient) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["api"] = client
    return at.run()


def record(server: RunningServer, **payload: Any) -> None:
    response = server.run(server.host.call("providers.record_call", **payload))
    assert response.success, response.error_message


def test_page_shows_models_budgets_and_spend(served: tuple[RunningServer, ApiClient]) -> None:
    server, client = served
    at = page(client)
    assert not at.exception, at.exception
    models = at.dataframe[0].value.set_index("model")
    assert list(models.index) == ["loop/cheap", "loop/strong"]
    assert models.loc["loop/strong"]["output $/Mtok"] == 30.0 and models.loc["loop/cheap"]["routes"] == "simple"
    assert models.loc["loop/cheap"]["key"] == f"{KEY_ENV} set"
    bars = [(p.proto.value, p.proto.text) for p in at.get("progress")]
    assert bars == [(0, "overall, today: $0.0000 of $1.00 (0%)"), (0, "agent, this month: $0.0000 of $0.50 (0%)")]
    assert [i.value for i in at.info] == ["No LLM calls in this window."]

    now = time.time()
    record(server, model="loop/strong", slice_id="agent", cost_usd=0.25, prompt_tokens=1000, completion_tokens=10)
    record(server, model="loop/cheap", slice_id="memory", cost_usd=0.05, prompt_tokens=500, completion_tokens=5)
    record(server, model="loop/cheap", slice_id="memory", cost_usd=0.5, timestamp=now - 3 * 86_400)
    at = page(client)
    assert not at.exception, at.exception
    bars = [(p.proto.value, p.proto.text) for p in at.get("progress")]
    assert bars[0] == (30, "overall, today: $0.3000 of $1.00 (30%)")
    assert bars[1] == (50, "agent, this month: $0.2500 of $0.50 (50%)")
    assert {m.label: m.value for m in at.metric} == {"Cost": "$0.8000", "LLM calls": "3"}
    by_slice = at.dataframe[1].value
    rows = {(r["slice_id"], r["model"]): r["cost (USD)"] for _, r in by_slice.iterrows()}
    assert rows == {("agent", "loop/strong"): 0.25, ("memory", "loop/cheap"): 0.55}
    at.selectbox(key="providers.window").set_value("today").run()
    assert {m.label: m.value for m in at.metric} == {"Cost": "$0.3000", "LLM calls": "2"}

    record(server, model="loop/strong", slice_id="agent", cost_usd=0.3)
    at = page(client)
    assert [e.value for e in at.error] == ["Budget spent, LLM calls refused: agent"]
