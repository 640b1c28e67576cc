"""refactorbot agent tools ``web_fetch`` and ``web_search`` (httpx is imported only when they run)."""

from __future__ import annotations

from refactorbot_tools_web.addresses import address_refusal
from refactorbot_tools_web.config import WebConfig
from refactorbot_tools_web.fetch import FetchParams, WebFetch
from refactorbot_tools_web.search import SearchParams, WebSearch

__all__ = ["FetchParams", "SearchParams", "WebConfig", "WebFetch", "WebSearch", "address_refusal"]
