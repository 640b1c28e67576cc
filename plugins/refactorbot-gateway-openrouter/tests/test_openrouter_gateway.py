"""The gateway contract, and OpenRouter's own behaviour: request body, retries with backoff, headers, cost, configuration."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest
from refactorbot import ConfigError, GatewayError
from refactorbot.testing.gateway_contract import GatewayContract
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_gateway_openrouter.gateway import OpenRouterGateway

USER = [{"role": "user", "content": "hello"}]
DEADLINE = 60.0  # seconds; reached only by a gateway that waits when it should not


class TestOpenRouterGateway(GatewayContract):
    gateway_class = OpenRouterGateway
    plugin = "refactorbot_gateway_openrouter.plugin"
    model, served_model = "openrouter/contract/model-a", "contract/model-a"
    fallback_model, served_fallback_model = "openrouter/contract/model-b", "contract/model-b"

    def gateway_config(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0
    ) -> dict[str, Any]:
        return {
            "base_url": server.base_url,
            "api_key_env": self.api_key_env,
            "models": list(fallbacks),
            "timeout": timeout,
            "max_retries": 0,
            "backoff": 0.01,  # tests that retry stay quick
        }

    @pytest.mark.asyncio
    async def test_request_body_names_models_and_asks_for_usage(self, model_server: ModelServer) -> None:
        model_server.script(Reply.text("ok", cost=0.0031, model="anthropic/claude-sonnet"))
        gw = self.make_gateway(
            model_server, models=["openrouter/openai/gpt-4o", "meta/llama"], provider={"sort": "price"}
        )
        try:
            result = await gw.complete(USER, "openrouter/anthropic/claude-sonnet", max_tokens=50)
        finally:
            await gw.aclose()
        (body,) = model_server.requests
        assert body["model"] == "anthropic/claude-sonnet"
        assert body["models"] == ["anthropic/claude-sonnet", "openai/gpt-4o", "meta/llama"]
        assert body["usage"] == {"include": True}
        assert body["provider"] == {"sort": "price"}
        assert body["max_tokens"] == 50 and "stream" not in body
        assert result.cost_usd == pytest.approx(0.0031)
        assert result.model == "openrouter/anthropic/claude-sonnet"

    @pytest.mark.asyncio
    async def test_no_cost_in_response_means_none(self, model_server: ModelServer) -> None:
        model_server.script(Reply.text("unpriced"))
        gw = self.make_gateway(model_server)
        try:
            result = await gw.complete(USER, "openrouter/x/y")
        finally:
            await gw.aclose()
        assert result.cost_usd is None

    @pytest.mark.asyncio
    async def test_retries_429_and_5xx_honouring_retry_after_and_the_backoff_cap(
        self, model_server: ModelServer
    ) -> None:
        # The backoff alone would wait an hour before each retry: these calls end only because the
        # gateway waits what Retry-After says (0 s), and never longer than backoff_max. A gateway
        # that ignored either would still be waiting at the (generous) deadline.
        model_server.script(Reply.error(429, "slow down", headers={"Retry-After": "0"}), Reply.text("second try"))
        honours = self.make_gateway(model_server, max_retries=1, backoff=3600, backoff_max=3600)
        try:
            result = await asyncio.wait_for(honours.complete(USER, "openrouter/a/b"), DEADLINE)
        finally:
            await honours.aclose()
        assert result.content == "second try"
        model_server.script(
            Reply.error(502), Reply.error(429, "slow down", headers={"Retry-After": "3600"}), Reply.text("third try")
        )
        capped = self.make_gateway(model_server, max_retries=2, backoff=3600, backoff_max=0)
        try:
            result = await asyncio.wait_for(capped.complete(USER, "openrouter/a/b"), DEADLINE)
        finally:
            await capped.aclose()
        assert result.content == "third try"
        assert [r["model"] for r in model_server.requests] == ["a/b"] * 5

    @pytest.mark.asyncio
    async def test_retries_exhausted_then_next_model(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(503), Reply.error(503), Reply.text("from b"))
        gw = self.make_gateway(model_server, max_retries=1, models=["openrouter/x/b"])
        try:
            result = await gw.complete(USER, "openrouter/x/a")
        finally:
            await gw.aclose()
        assert [r["model"] for r in model_server.requests] == ["x/a", "x/a", "x/b"]
        assert model_server.requests[-1].get("models") is None  # the last model has nothing left to fall back to
        assert result.model == "openrouter/x/b"

    @pytest.mark.asyncio
    async def test_client_errors_are_not_retried(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(401, "bad key"))
        gw = self.make_gateway(model_server, max_retries=3, models=["openrouter/x/b"])
        try:
            with pytest.raises(GatewayError, match="HTTP 401: bad key"):
                await gw.complete(USER, "openrouter/x/a")
        finally:
            await gw.aclose()
        assert len(model_server.requests) == 1

    @pytest.mark.asyncio
    async def test_unreachable_server_is_a_clear_error(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        gw = OpenRouterGateway({"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "PATH", "backoff": 0.01})
        try:
            with pytest.raises(GatewayError, match="cannot reach http://127.0.0.1") as info:
                await gw.complete(USER, "openrouter/x/a")
        finally:
            await gw.aclose()
        assert "\n" not in str(info.value)

    @pytest.mark.asyncio
    async def test_app_attribution_headers(self, model_server: ModelServer) -> None:
        gw = self.make_gateway(model_server, app_url="https://example.org/refactorbot", app_title="refactorbot")
        try:
            await gw.complete(USER, "openrouter/x/a")
        finally:
            await gw.aclose()
        headers = model_server.headers[0]
        assert headers["http-referer"] == "https://example.org/refactorbot"
        assert headers["x-title"] == "refactorbot"

    @pytest.mark.asyncio
    async def test_stream_reports_cost_and_uses_one_connection(self, model_server: ModelServer) -> None:
        model_server.script(Reply.text("a b c d", cost=0.5, usage=(3, 4)), Reply.text("again"))
        gw = self.make_gateway(model_server)
        try:
            chunks = [c async for c in gw.stream(USER, "openrouter/x/a")]
            second = await gw.complete(USER, "openrouter/x/a")
        finally:
            await gw.aclose()
        assert chunks[-1].cost_usd == pytest.approx(0.5)
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)
        assert model_server.requests[0]["stream"] is True and model_server.requests[0]["usage"] == {"include": True}
        assert second.content == "again"

    @pytest.mark.asyncio
    async def test_stream_retries_before_the_first_byte(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(500), Reply.text("recovered"))
        gw = self.make_gateway(model_server, max_retries=1)
        try:
            text = "".join([c.content async for c in gw.stream(USER, "openrouter/x/a")])
        finally:
            await gw.aclose()
        assert text == "recovered"
        assert len(model_server.requests) == 2

    def test_defaults_and_import_without_httpx(self) -> None:
        gw = OpenRouterGateway()
        assert gw.settings.base_url == "https://openrouter.ai/api/v1"
        assert gw.settings.api_key_env == "OPENROUTER_API_KEY"
        assert OpenRouterGateway.prefixes == ("openrouter/",)
        assert gw._client is None  # nothing connects before the first call

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"api_key_env": "sk-or-v1-abc123"}, "api_key_env"),
            ({"api_key": "sk-or-v1-abc123"}, "api_key: Extra inputs"),
            ({"base_url": "openrouter.ai/api/v1"}, "base_url"),
            ({"max_retries": 11}, "max_retries"),
            ({"models": "openai/gpt-4o"}, "models"),
        ],
    )
    def test_bad_config_is_one_clear_error(self, config: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigError, match=message) as info:
            OpenRouterGateway(config)
        text = str(info.value)
        assert text.startswith("[gateways.openrouter]") and "\n" not in text and "abc123" not in text
