"""Entry point of refactorbot-tools-web: registers ``web_fetch`` and ``web_search``."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_tools_web.fetch import WebFetch
from refactorbot_tools_web.search import WebSearch

REFACTORBOT_API = 1


@hookimpl
def register_tools(register: Any) -> None:
    """Register the web tools."""
    register(WebFetch)
    register(WebSearch)
