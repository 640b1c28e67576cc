"""``web_search`` against loopback servers speaking the SearXNG and Brave JSON formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refactorbot.errors import ConfigError, ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_web import WebSearch
from web_loopback import LoopbackServer, Route


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path)


@pytest.mark.asyncio
async def test_searxng_results(server: LoopbackServer, ctx: ToolContext) -> None:
    payload = {
        "results": [
            {"title": "Refactorbot", "url": "https://example.org/rb", "content": "A plugin   host\nfor agents"},
            {"title": "", "url": "https://example.org/2", "content": ""},
            {"title": "no url"},
            {"title": "Third", "url": "https://example.org/3", "content": "three"},
        ]
    }
    server.routes["/search"] = Route(body=json.dumps(payload), headers={"Content-Type": "application/json"})
    tool = WebSearch({"search_url": f"http://127.0.0.1:{server.port}/search?q={{query}}&format=json"})
    result = await tool.run(tool.Params(query="plugin host & co", max_results=2), ctx)
    assert result.ok
    assert result.output == (
        "1. Refactorbot\n   https://example.org/rb\n   A plugin host for agents\n"
        "2. https://example.org/2\n   https://example.org/2"
    )
    assert server.hits[0]["path"] == "/search?q=plugin+host+%26+co&format=json"


@pytest.mark.asyncio
async def test_brave_results_and_key(server: LoopbackServer, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {
        "web": {"results": [{"title": "B", "url": "https://b.example/", "description": "<strong>bold</strong> text"}]}
    }
    server.routes["/res/v1/web/search"] = Route(body=json.dumps(payload), headers={"Content-Type": "application/json"})
    config = {
        "search_url": f"http://127.0.0.1:{server.port}/res/v1/web/search?q={{query}}&count={{count}}",
        "search_backend": "brave",
        "api_key_env": "RB_TEST_BRAVE_KEY",
    }
    tool = WebSearch(config)
    monkeypatch.delenv("RB_TEST_BRAVE_KEY", raising=False)
    with pytest.raises(ToolError, match="set the environment variable RB_TEST_BRAVE_KEY"):
        await tool.run(tool.Params(query="x"), ctx)
    monkeypatch.setenv("RB_TEST_BRAVE_KEY", "brave-key-123")
    result = await tool.run(tool.Params(query="x"), ctx)
    assert result.data["results"] == [{"title": "B", "url": "https://b.example/", "snippet": "bold text"}]
    assert server.hits[-1]["headers"]["X-Subscription-Token"] == "brave-key-123"
    assert server.hits[-1]["path"].endswith("count=5")


@pytest.mark.asyncio
async def test_backend_failures_are_clear(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/down"] = Route(503, body="busy")
    server.routes["/html"] = Route(body="<html>not json</html>")
    server.routes["/empty"] = Route(body='{"results": []}')
    base = f"http://127.0.0.1:{server.port}"
    for path, fragment in (("/down", "HTTP 503"), ("/html", "did not answer JSON")):
        tool = WebSearch({"search_url": base + path + "?q={query}"})
        with pytest.raises(ToolError, match=fragment):
            await tool.run(tool.Params(query="x"), ctx)
    empty = WebSearch({"search_url": base + "/empty?q={query}"})
    assert (await empty.run(empty.Params(query="nothing"), ctx)).output == "no results for 'nothing'"
    with pytest.raises(ToolError, match="not configured"):
        await WebSearch().run(WebSearch.Params(query="x"), ctx)


def test_search_url_validated() -> None:
    with pytest.raises(ConfigError, match="must contain {query}"):
        WebSearch({"search_url": "http://127.0.0.1/search"})
    with pytest.raises(ConfigError, match="http:// or https://"):
        WebSearch({"search_url": "file:///x?q={query}"})
