"""A tiny OpenAI-compatible gateway (httpx to the loopback model server) and the host configuration."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from refactorbot import GatewayError, LLMChunk, LLMGateway, LLMResponse, ToolCallRequest, Usage, hookimpl
from refactorbot.testing.gateway_contract import write_config
from refactorbot.testing.model_server import ModelServer

PLUGIN = "refactorbot_slice_providers.plugin"
KEY_ENV = "RB_PROVIDERS_TEST_KEY"
KEY = "sk-providers-test-secret-value"


class LoopbackGateway(LLMGateway):
    """Send chat completions to ``config['base_url']`` with the key from ``config['api_key_env']``."""

    name = "loopback"
    prefixes = ("loop/",)

    async def complete(
        self, messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> LLMResponse:
        import os

        import httpx

        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {os.environ.get(self.config['api_key_env'], '')}"}
        async with httpx.AsyncClient(base_url=self.config["base_url"], timeout=5) as client:
            response = await client.post(
                "/chat/completions", json={"model": model.removeprefix("loop/"), "messages": messages}, headers=headers
            )
        if response.status_code != 200:
            raise GatewayError(f"loopback: HTTP {response.status_code}")
        data = response.json()
        message = data["choices"][0]["message"]
        return LLMResponse(
            content=message.get("content") or "",
            tool_calls=[
                ToolCallRequest(id=c["id"], name=c["function"]["name"]) for c in message.get("tool_calls") or []
            ],
            model=model,
            usage=Usage(
                prompt_tokens=data["usage"]["prompt_tokens"], completion_tokens=data["usage"]["completion_tokens"]
            ),
            cost_usd=data["usage"].get("cost"),
            latency_ms=(time.perf_counter() - started) * 1000,
            gateway=self.name,
        )

    async def stream(
        self, messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> AsyncIterator[LLMChunk]:
        result = await self.complete(messages, model, tools, **params)
        yield LLMChunk(content=result.content, usage=result.usage, cost_usd=result.cost_usd, model=model)


class LoopbackPlugin:
    """Registers ``LoopbackGateway``."""

    REFACTORBOT_API = 1

    @hookimpl
    def register_gateways(self, register: Any) -> None:
        register(LoopbackGateway)


def providers_config(server: ModelServer, **extra: Any) -> dict[str, Any]:
    """Return a host configuration: the loopback gateway and two priced models."""
    section: dict[str, Any] = {
        "providers": [{"name": "loop", "gateway": "loopback", "api_key_env": KEY_ENV, "base_url": server.base_url}],
        "models": [
            {
                "name": "loop/cheap",
                "provider": "loop",
                "context_window": 16000,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
                "capabilities": ["tools"],
            },
            {
                "name": "loop/strong",
                "provider": "loop",
                "context_window": 200000,
                "input_price_per_mtok": 10.0,
                "output_price_per_mtok": 30.0,
                "capabilities": ["tools", "vision"],
            },
        ],
        "routing": {"simple": "loop/cheap", "planning": "loop/strong"},
        **extra,
    }
    return {
        "core": {"health_interval": 3600},
        "llm": {"model": "loop/cheap"},
        "gateways": {"loopback": {"base_url": server.base_url, "api_key_env": KEY_ENV}},
        "slices": {"providers": section},
    }


def home_with(tmp_path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` into a fresh home and return it."""
    home = tmp_path / "home"
    write_config(home, config)
    return home
