"""A minimal gateway for tests: real HTTP to the loopback ``ModelServer`` with the standard library."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from refactorbot import LLMGateway, LLMResponse, ToolCallRequest, Usage, hookimpl


class LoopbackGateway(LLMGateway):
    """Speak OpenAI chat completions to ``config["api_base"]``."""

    name = "loopback"

    async def complete(self, messages, model, tools=None, **params) -> LLMResponse:
        body: dict[str, Any] = {"model": model, "messages": messages, **params}
        if tools:
            body["tools"] = tools
        data = await asyncio.to_thread(self._post, body)
        message = data["choices"][0]["message"]
        calls = [
            ToolCallRequest(
                id=c["id"], name=c["function"]["name"], arguments=json.loads(c["function"]["arguments"] or "{}")
            )
            for c in message.get("tool_calls") or []
        ]
        usage = data.get("usage") or {}
        return LLMResponse(
            content=message.get("content") or "",
            tool_calls=calls,
            model=data.get("model", model),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0)
            ),
            gateway=self.name,
        )

    def stream(self, messages, model, tools=None, **params):
        raise NotImplementedError("the memory tests do not stream")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.config["api_base"].rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


class LoopbackPlugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_gateways(self, register):
        register(LoopbackGateway)


loopback_plugin = LoopbackPlugin()
