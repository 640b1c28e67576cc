"""The API and dashboard with the installed distributions: `refactorbot serve` in a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from refactorbot.client import ServerClient
from serving import clean_env, serve, write_config

PLUGINS = "refactorbot-api,refactorbot-dashboard,refactorbot-example-notes"
CLI = [sys.executable, "-c", "from refactorbot.cli import main; main()"]


def _env(home: Path) -> dict[str, str]:
    return clean_env(RB_HOME=str(home), RB_LOAD_PLUGINS=PLUGINS, RB_API_PORT="0")


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Run `refactorbot serve` with the API and the example notes slice; stop it with SIGTERM."""
    home = tmp_path / "home"
    write_config(home, "[core]\nhealth_interval = 3600\n")
    with serve(home, env=_env(home)) as served:
        yield home, served.proc


def test_serve_exposes_the_api_and_the_cli_uses_it(serving: tuple[Path, subprocess.Popen[str]]) -> None:
    home, proc = serving
    client = ServerClient.discover(home)
    assert client is not None
    assert json.loads((home / "server.json").read_text())["pid"] == proc.pid
    slices = {row["slice_id"]: row for row in client.request("GET", "/slices")}
    assert slices["notes"]["status"] == "running"
    plugins = {row["name"]: row["status"] for row in client.request("GET", "/plugins")}
    assert plugins["refactorbot-api"] == "ok" and plugins["refactorbot-example-notes"] == "ok"

    out = subprocess.run(
        [*CLI, "call", "notes.add", "title=through the server"], env=_env(home), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["title"] == "through the server"
    listed = client.call("notes", "list", {})
    assert [n["title"] for n in listed["data"]["notes"]] == ["through the server"]
    metrics = client.request("GET", "/metrics")
    assert metrics["operations"]["notes.add"]["count"] == 1  # the CLI's call ran in the server

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not (home / "server.json").exists()


def test_dashboard_shows_the_example_page_against_serve(
    serving: tuple[Path, subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from refactorbot_dashboard.navigation import installed_pages
    from streamlit.testing.v1 import AppTest

    home, _ = serving
    client = ServerClient.discover(home)
    assert client is not None
    client.call("notes", "add", {"title": "shown on the page"})

    pages, problems = installed_pages({"RB_LOAD_PLUGINS": PLUGINS})
    assert not problems
    assert [(p.group, p.path) for p in pages] == [("notes", "notes-dashboard")]

    import refactorbot_dashboard

    app = Path(refactorbot_dashboard.__file__).with_name("app.py")
    monkeypatch.setenv("RB_DASHBOARD_API_URL", client.url)
    monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", client.token)
    monkeypatch.setenv("RB_LOAD_PLUGINS", PLUGINS)
    monkeypatch.setenv("RB_DASHBOARD_START_PAGE", "notes-dashboard")
    from refactorbot_dashboard.testing import log_in

    at = log_in(AppTest.from_file(str(app), default_timeout=30), client.token)  # the API token logs in too
    assert not at.exception, at.exception
    assert at.title[0].value == "Notes"
    assert "shown on the page" in list(at.dataframe[0].value["title"])
    at.switch_page("master_pages/overview.py").run()
    assert not at.exception
    assert "notes" in list(at.dataframe[0].value["slice"])


def test_dashboard_command_without_server(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "refactorbot_dashboard", "--home", str(tmp_path)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "refactorbot serve" in out.stderr and "Traceback" not in out.stderr


def test_dashboard_command_against_serve_logs_in_by_link_and_stops_with_sigterm(
    serving: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    import re
    import socket

    import httpx
    import psutil

    home, _ = serving
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        dashboard = subprocess.Popen(
            [*CLI, "dashboard", "--port", str(port)], env=_env(home), stdout=out, stderr=subprocess.STDOUT
        )
    streamlit: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not (link := re.search(rf"http://127\.0\.0\.1:{port}/\?token=[\w-]+", log.read_text())):
            assert dashboard.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        streamlit = psutil.Process(dashboard.pid).children(recursive=True)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/control", trust_env=False).status_code == 401  # the login page, nothing else
        login = httpx.get(link.group(0), trust_env=False)
        assert login.status_code == 303 and login.headers["location"] == "/"
        page = httpx.get(f"{url}/", cookies=login.cookies, trust_env=False)
        assert page.status_code == 200 and '<div id="root">' in page.text

        dashboard.send_signal(signal.SIGTERM)
        assert dashboard.wait(30) == 0
        _, alive = psutil.wait_procs(streamlit, timeout=30)
        assert alive == []
    finally:
        if dashboard.poll() is None:
            dashboard.kill()
            dashboard.wait(10)
        for child in streamlit:  # left only if the command failed to stop it
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


@pytest.mark.asyncio
async def test_chat_through_the_api_reaches_the_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    from refactorbot.testing import host_running
    from refactorbot.testing.model_server import ModelServer, Reply

    monkeypatch.setenv("RB_TEST_OPENROUTER_KEY", "test-key")
    plugins = ["refactorbot_api.plugin", "refactorbot_slice_agent.plugin", "refactorbot_gateway_openrouter.plugin"]
    with ModelServer() as model:
        model.script(Reply.text("hello from the model"), Reply.text("streamed in pieces", chunks=3))
        config = {
            "core": {"health_interval": 3600},
            "plugins": {"api": {"port": 0}},
            "llm": {"model": "openrouter/test-model"},
            "gateways": {
                "openrouter": {"base_url": model.base_url, "api_key_env": "RB_TEST_OPENROUTER_KEY", "max_retries": 0}
            },
        }
        async with host_running(tmp_path, plugins, config=config):
            url = json.loads((tmp_path / "server.json").read_text())["url"]
            token = (tmp_path / "api-token").read_text().strip()
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
                reply = await api.post("/chat", json={"text": "hi there", "chat_id": "c1"})
                async with api.stream("POST", "/chat/stream", json={"text": "again", "chat_id": "c1"}) as streamed:
                    assert streamed.headers["content-type"] == "application/x-ndjson"
                    events = [json.loads(line) async for line in streamed.aiter_lines() if line]
        assert reply.status_code == 200, reply.text
        assert reply.json()["text"] == "hello from the model"
        deltas = [e["delta"] for e in events if "delta" in e]
        assert len(deltas) > 1 and "".join(deltas) == "streamed in pieces"
        assert events[-1]["reply"]["text"] == "streamed in pieces" and events[-1]["reply"]["metadata"]["ok"] is True
        assert reply.json()["chat_id"] == "c1"
        assert model.requests[0]["messages"][-1] == {"role": "user", "content": "hi there"}


def test_analytics_charts_llm_spend_from_the_providers_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    import refactorbot_dashboard
    from refactorbot_api.testing import running_server
    from streamlit.testing.v1 import AppTest

    with running_server(tmp_path, ["refactorbot_slice_providers.plugin"]) as server:
        for slice_id, model, tokens, cost in [("agent", "m-large", 1000, 0.02), ("memory", "m-small", 300, 0.001)]:
            recorded = httpx.post(
                f"{server.url}/slices/providers/operations/record_call",
                json={"model": model, "slice_id": slice_id, "prompt_tokens": tokens, "cost_usd": cost},
                headers=server.headers,
            ).json()
            assert recorded["success"], recorded
        monkeypatch.setenv("RB_DASHBOARD_API_URL", server.url)
        monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", server.token)
        monkeypatch.setenv("RB_LOAD_PLUGINS", "")
        from refactorbot_dashboard.testing import log_in

        app = Path(refactorbot_dashboard.__file__).with_name("app.py")
        at = log_in(AppTest.from_file(str(app), default_timeout=30), server.token)
        at.switch_page("master_pages/analytics.py").run()
        assert not at.exception, at.exception
        spend = at.dataframe[-1].value
        assert sorted(zip(spend["slice_id"], spend["model"], spend["tokens"], strict=True)) == [
            ("agent", "m-large", 1000),
            ("memory", "m-small", 300),
        ]
        charts = at.get("vega_lite_chart") + at.get("arrow_vega_lite_chart")
        assert len(charts) >= 5  # latency, operations, errors, mean latency, tokens, cost
