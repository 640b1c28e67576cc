"""``web_fetch`` and ``web_search`` pass the core's ``ToolContract`` (no network needed)."""

from __future__ import annotations

from refactorbot.testing.tool_contract import ToolContract
from refactorbot_tools_web import WebFetch, WebSearch

PLUGIN = "refactorbot_tools_web.plugin"


class TestWebFetchContract(ToolContract):
    tool_class = WebFetch
    plugin = PLUGIN
    valid_arguments = {"url": "http://127.0.0.1:9/"}  # refused by default: loopback
    invalid_arguments = [{}, {"url": ""}, {"url": "http://x", "max_chars": 1}, {"url": "http://x", "method": "POST"}]
    expect_ok = False


class TestWebSearchContract(ToolContract):
    tool_class = WebSearch
    plugin = PLUGIN
    valid_arguments = {"query": "refactorbot"}  # refused: no search_url configured
    invalid_arguments = [{}, {"query": ""}, {"query": "x", "max_results": 0}, {"query": "x" * 501}]
    expect_ok = False
