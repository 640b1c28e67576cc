"""``web_search``: ask the configured search backend (SearXNG JSON or Brave Search API)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote_plus

from pydantic import ConfigDict, Field
from refactorbot import Model, ToolContext, ToolError, ToolResult

from refactorbot_tools_web.fetch import WebWithConfig
from refactorbot_tools_web.html_text import html_to_text

MAX_RESPONSE_BYTES = 2_000_000


class SearchParams(Model):
    """Arguments of ``web_search``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=500, description="what to search for")
    max_results: int | None = Field(None, ge=1, le=50, description="how many results (default from configuration)")


class WebSearch(WebWithConfig):
    """Search the web through the configured backend."""

    name = "web_search"
    description = "Search the web and return the top results (title, URL, snippet). Use web_fetch to read a result."
    Params = SearchParams

    async def run(self, params: SearchParams, ctx: ToolContext) -> ToolResult:
        """Query the backend and return numbered results."""
        import httpx

        template = self.settings.search_url
        if not template:
            raise ToolError("web search is not configured: set [tools.web] search_url (a SearXNG or Brave endpoint)")
        count = params.max_results or self.settings.max_results
        url = template.replace("{query}", quote_plus(params.query)).replace("{count}", str(count))
        headers = {"Accept": "application/json"}
        if self.settings.search_backend == "brave" or self.settings.api_key_env:
            headers.update(self._auth())
        try:
            async with self.client() as client, client.stream("GET", url, headers=headers) as response:
                body = await _read_limited(response)
        except httpx.HTTPError as exc:
            raise ToolError(f"search backend failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ToolError(f"search backend answered HTTP {response.status_code}")
        try:
            payload = json.loads(body)
        except ValueError:
            raise ToolError("search backend did not answer JSON") from None
        results = _results(payload, self.settings.search_backend)[:count]
        if not results:
            return ToolResult(output=f"no results for {params.query!r}", data={"query": params.query, "results": []})
        lines = []
        for number, item in enumerate(results, start=1):
            lines.append(f"{number}. {item['title']}\n   {item['url']}")
            if item["snippet"]:
                lines.append(f"   {item['snippet']}")
        return ToolResult(output="\n".join(lines), data={"query": params.query, "results": results})

    def _auth(self) -> dict[str, str]:
        name = self.settings.api_key_env
        if not name:
            raise ToolError("the brave search backend needs [tools.web] api_key_env (the variable holding the key)")
        key = os.environ.get(name)
        if not key:
            raise ToolError(f"search API key missing: set the environment variable {name}")
        return {"X-Subscription-Token": key}


async def _read_limited(response: Any) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > MAX_RESPONSE_BYTES:
            raise ToolError(f"search backend answer is larger than {MAX_RESPONSE_BYTES} bytes")
    return bytes(data)


def _results(payload: Any, backend: str) -> list[dict[str, str]]:
    if not isinstance(payload, dict):
        return []
    raw = payload.get("web", {}).get("results", []) if backend == "brave" else payload.get("results", [])
    found = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not item.get("url"):
            continue
        snippet = item.get("description") if backend == "brave" else item.get("content")
        if backend == "brave" and snippet:
            snippet = html_to_text(str(snippet))[1]  # Brave marks matches with <strong>
        found.append(
            {
                "title": str(item.get("title") or item["url"]).strip(),
                "url": str(item["url"]),
                "snippet": " ".join(str(snippet or "").split())[:500],
            }
        )
    return found
