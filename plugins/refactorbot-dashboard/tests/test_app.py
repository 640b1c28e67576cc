"""Every master page and a contributed page under Streamlit's AppTest, against a real API server."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import dashboard_sample
import httpx
import pytest
from conftest import LOGIN_TOKEN
from dashboard_sample import APP
from refactorbot import hookimpl
from refactorbot_api.testing import RunningServer, running_server
from refactorbot_dashboard.testing import log_in
from streamlit.testing.v1 import AppTest

MASTER = {
    "overview": "Overview",
    "analytics": "Analytics",
    "control": "Control",
    "logs": "Logs",
    "search": "Search",
    "settings": "Settings",
}


def _new() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30)


def _app() -> AppTest:
    """The dashboard, run and logged in through its own login form."""
    return log_in(_new(), LOGIN_TOKEN)


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [str(e.value) for e in at.error]
    parts += [str(e.value) for e in at.info] + [str(e.value) for e in at.success] + [str(e.value) for e in at.warning]
    return "\n".join(str(p) for p in parts)


def _only_the_login(at: AppTest) -> None:
    assert not at.exception
    assert [t.value for t in at.title] == ["Log in"]
    assert [b.label for b in at.button] == ["Log in"]
    assert [t.key for t in at.text_input] == ["login.token"]
    assert not at.dataframe and not at.metric and not at.json and not at.selectbox and not at.text_area
    assert not at.warning and not at.success and not at.info


def test_before_logging_in_only_the_login_form_renders(dashboard_env: RunningServer) -> None:
    at = _new().run()
    _only_the_login(at)
    for page in ("control", "settings", "logs"):  # asking for a page directly changes nothing
        at.switch_page(f"master_pages/{page}.py").run()
        _only_the_login(at)
    at.text_input(key="login.token").input(LOGIN_TOKEN[:-1])
    at.button[0].click().run()
    _only_the_login(at)
    assert [e.value for e in at.error] == ["That token is not valid."]
    assert LOGIN_TOKEN not in _texts(at) and dashboard_env.token not in _texts(at)


def test_the_login_form_takes_the_login_or_the_api_token(dashboard_env: RunningServer) -> None:
    for token in (LOGIN_TOKEN, dashboard_env.token):
        at = log_in(_new(), token)
        assert not at.exception
        assert at.title[0].value == "Overview"
        assert not any(t.key == "login.token" for t in at.text_input)
        assert token not in _texts(at)


def test_overview_is_the_default_page(dashboard_env: RunningServer) -> None:
    at = _app()
    assert not at.exception
    assert at.title[0].value == "Overview"
    table = at.dataframe[0].value
    assert list(table["slice"]) == ["sample"]
    assert "running" in table["status"][0]
    assert at.metric[0].value == "1 / 1"


@pytest.mark.parametrize("path", list(MASTER))
def test_every_master_page_renders(dashboard_env: RunningServer, path: str) -> None:
    httpx.post(
        f"{dashboard_env.url}/slices/sample/operations/add", json={"title": "seen"}, headers=dashboard_env.headers
    )
    at = _app()
    at.switch_page(f"master_pages/{path}.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == MASTER[path]
    assert not at.error, [e.value for e in at.error]


def test_analytics_shows_percentiles_and_charts(dashboard_env: RunningServer) -> None:
    for i in range(3):
        httpx.post(
            f"{dashboard_env.url}/slices/sample/operations/add", json={"title": f"a{i}"}, headers=dashboard_env.headers
        )
    at = _app()
    at.switch_page("master_pages/analytics.py").run()
    assert not at.exception
    operations = list(at.dataframe[0].value["operation"])
    assert "sample.add" in operations
    charts = at.get("vega_lite_chart") + at.get("arrow_vega_lite_chart")
    assert len(charts) >= 3, "latency and over-time charts are drawn"
    assert "providers slice" in _texts(at)


def test_control_runs_an_operation_and_shows_validation_errors_inline(dashboard_env: RunningServer) -> None:
    at = _app()
    at.switch_page("master_pages/control.py").run()
    assert not at.exception
    assert at.selectbox(key="control.slice").value == "sample"
    at.selectbox(key="control.sample.op").set_value("add").run()
    at.text_input(key="control.sample.add.title").input("")
    at.button[[b.label for b in at.button].index("Run sample.add")].click().run()
    assert not at.exception
    assert any("title: String should have at least 1 character" in e.value for e in at.error), _texts(at)

    at.text_input(key="control.sample.add.title").input("from the dashboard")
    at.number_input(key="control.sample.add.priority").set_value(3)
    at.text_area(key="control.sample.add.tags").input('["x", "y"]')
    at.button[[b.label for b in at.button].index("Run sample.add")].click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("sample.add succeeded" in s.value for s in at.success)
    assert any("from the dashboard" in j.value for j in at.json)

    at.text_area(key="control.sample.add.tags").input("[not json")
    at.button[[b.label for b in at.button].index("Run sample.add")].click().run()
    assert any("tags: not valid JSON" in e.value for e in at.error)


def test_control_lifecycle_and_diagnostics(dashboard_env: RunningServer) -> None:
    at = _app()
    at.switch_page("master_pages/control.py").run()
    at.button(key="control.stop").click().run()
    assert any("stop → stopped" in s.value for s in at.success)
    at.button(key="control.sample.diag").click().run()
    assert any("is stopped" in w.value for w in at.warning)
    at.button(key="control.start").click().run()
    assert any("start → running" in s.value for s in at.success)
    at.button(key="control.sample.diag").click().run()
    assert any("All checks passed" in s.value for s in at.success)
    labels = [b.label for b in at.button]
    at.text_area(key="control.sample.feedback").input("make it faster")
    at.button[labels.index("Propose improvements")].click().run()
    assert "make it faster" in _texts(at)


def test_logs_page_filters(dashboard_env: RunningServer) -> None:
    async def log() -> None:
        logging.getLogger("refactorbot.slice.sample").error("the disk is full")
        await dashboard_env.host.master_db()

    dashboard_env.run(log())
    at = _app()
    at.switch_page("master_pages/logs.py").run()
    assert not at.exception
    messages = list(at.dataframe[0].value["message"])
    assert "the disk is full" in messages
    at.selectbox(key="logs.level").set_value("CRITICAL").run()
    assert not at.dataframe and any("No log rows" in i.value for i in at.info)


def test_settings_page_validates_and_saves(dashboard_env: RunningServer) -> None:
    at = _app()
    at.switch_page("master_pages/settings.py").run()
    assert not at.exception
    at.text_input(key="settings.new.section").input("core")
    at.text_area(key="settings.new.text").input("health_interval = -5")
    at.button[[b.label for b in at.button].index("Save section")].click().run()
    assert any("health_interval" in e.value for e in at.error), _texts(at)
    at.text_area(key="settings.new.text").input("health_interval = [")
    at.button[[b.label for b in at.button].index("Save section")].click().run()
    assert any("not valid TOML" in e.value for e in at.error)
    at.text_input(key="settings.new.section").input("gateways.openrouter")
    # A literal secret is refused (secret-named keys hold environment-variable names) and never shown.
    at.text_area(key="settings.new.text").input('api_key = "sk-very-secret"\nbase_url = "http://127.0.0.1:1"')
    at.button[[b.label for b in at.button].index("Save section")].click().run()
    assert any("api_key: must be the NAME of an environment variable" in e.value for e in at.error), _texts(at)
    assert "sk-very-secret" not in _texts(at)
    at.text_area(key="settings.new.text").input('api_key = "OPENROUTER_KEY"\nbase_url = "http://127.0.0.1:1"')
    at.button[[b.label for b in at.button].index("Save section")].click().run()
    assert any("Saved [gateways.openrouter]" in s.value for s in at.success), _texts(at)
    at = _app()
    at.switch_page("master_pages/settings.py").run()
    editors = {ta.key: ta.value for ta in at.text_area}
    assert 'api_key = "***"' in editors["settings.gateways.openrouter.text"]
    assert "sk-very-secret" not in "".join(str(v) for v in editors.values())


def test_contributed_pages_are_grouped_and_render(
    dashboard_env: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpx.post(
        f"{dashboard_env.url}/slices/sample/operations/add",
        json={"title": "contributed"},
        headers=dashboard_env.headers,
    )
    monkeypatch.setenv("RB_DASHBOARD_START_PAGE", "sample-dashboard")
    at = _app()
    assert not at.exception
    assert at.header[0].value == "Sample notes"
    assert "contributed" in _texts(at)
    monkeypatch.setenv("RB_DASHBOARD_START_PAGE", "sample-analytics")
    at = _app()
    assert not at.exception
    assert at.header[0].value == "Sample analytics"
    assert at.metric[0].value != "0"


def test_a_failing_contributed_page_is_reported_not_raised(
    dashboard_env: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RB_DASHBOARD_START_PAGE", "sample-other")
    at = _app()
    assert not at.exception
    assert any(
        "The page 'Broken' of sample failed: RuntimeError: this page is broken on purpose" in e.value for e in at.error
    )


def test_unreachable_server_is_one_line(dashboard_env: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_DASHBOARD_API_URL", "http://127.0.0.1:9")
    at = _app()
    assert not at.exception
    assert any("The API is unreachable" in e.value for e in at.error)


def test_wrong_token_is_reported(dashboard_env: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", "wrong")
    at = _app()
    assert not at.exception
    assert any("HTTP 401" in e.value and "api-token" in e.value for e in at.error)


def test_extra_plugins_are_named_like_entry_points() -> None:
    from refactorbot_dashboard.navigation import PLUGINS_ENV, installed_pages

    names = "dashboard_sample:SAMPLE, dashboard_sample:MISSING, no_such_module_here, not a name"
    pages, problems = installed_pages({"RB_LOAD_PLUGINS": "", PLUGINS_ENV: names})
    assert [(p.group, p.title) for p in pages] == [("sample", "Notes"), ("sample", "Note stats"), ("sample", "Broken")]
    assert problems == [
        "dashboard_sample:MISSING: cannot import: module 'dashboard_sample' has no attribute 'MISSING'",
        "no_such_module_here: cannot import: No module named 'no_such_module_here'",
        "not a name: cannot import: invalid format: 'not a name'",
    ]


class HangingPlugin:
    """A plugin whose registration never returns (until the test ends): reported ``hung``."""

    REFACTORBOT_API = 1

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    @hookimpl
    def register_slices(self, register: Any) -> None:
        self.release.wait()


def test_overview_counts_a_hung_plugin_as_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dashboard_env: RunningServer
) -> None:
    release = threading.Event()
    try:
        env = {"RB_PLUGIN_LOAD_TIMEOUT": "0.2"}
        with running_server(tmp_path, [dashboard_sample.SAMPLE, HangingPlugin(release)], env=env) as srv:
            monkeypatch.setenv("RB_DASHBOARD_API_URL", srv.url)
            monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", srv.token)
            at = _app()
            assert not at.exception
            warnings = [str(w.value) for w in at.warning]
            assert any(
                w.startswith("Plugin **HangingPlugin** hung: register_slices did not return within 0.2s")
                for w in warnings
            ), warnings
            assert any(c.value.endswith("1 with problems.") for c in at.caption), [c.value for c in at.caption]
    finally:
        release.set()
