"""OpenRouter-specific behaviour: request body, retries with backoff, headers, cost and configuration."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from refactorbot import ConfigError, GatewayError
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_gateway_openrouter.gateway import OpenRouterGateway

KEY_ENV = "RB_OPENROUTER_TEST_KEY"
KEY = "sk-or-test"
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with ModelServer(api_key=KEY) as model_server:
        yield model_server


def gateway(server: ModelServer, **config: Any) -> OpenRouterGateway:
    settings = {"base_url": server.base_url, "api_key_env": KEY_ENV, "backoff": 0.01, "timeout": 10, **config}
    return OpenRouterGateway(settings)


@pytest.mark.asyncio
async def test_request_body_names_models_and_asks_for_usage(server: ModelServer) -> None:
    server.script(Reply.text("ok", cost=0.0031, model="anthropic/claude-sonnet"))
    gw = gateway(server, models=["openrouter/openai/gpt-4o", "meta/llama"], provider={"sort": "price"})
    try:
        result = await gw.complete(USER, "openrouter/anthropic/claude-sonnet", max_tokens=50)
    finally:
        await gw.aclose()
    (body,) = server.requests
    assert body["model"] == "anthropic/claude-sonnet"
    assert body["models"] == ["anthropic/claude-sonnet", "openai/gpt-4o", "meta/llama"]
    assert body["usage"] == {"include": True}
    assert body["provider"] == {"sort": "price"}
    assert body["max_tokens"] == 50 and "stream" not in body
    assert result.cost_usd == pytest.approx(0.0031)
    assert result.model == "openrouter/anthropic/claude-sonnet"


@pytest.mark.asyncio
async def test_no_cost_in_response_means_none(server: ModelServer) -> None:
    server.script(Reply.text("unpriced"))
    gw = gateway(server)
    try:
        result = await gw.complete(USER, "openrouter/x/y")
    finally:
        await gw.aclose()
    assert result.cost_usd is None


@pytest.mark.asyncio
async def test_retries_429_and_5xx_with_backoff_then_succeeds(server: ModelServer) -> None:
    server.script(
        Reply.error(429, "slow down", headers={"Retry-After": "0"}), Reply.error(502), Reply.text("third try")
    )
    gw = gateway(server, max_retries=2)
    started = time.perf_counter()
    try:
        result = await gw.complete(USER, "openrouter/a/b")
    finally:
        await gw.aclose()
    assert result.content == "third try"
    assert [r["model"] for r in server.requests] == ["a/b", "a/b", "a/b"]
    assert time.perf_counter() - started < 2


@pytest.mark.asyncio
async def test_retries_exhausted_then_next_model(server: ModelServer) -> None:
    server.script(Reply.error(503), Reply.error(503), Reply.text("from b"))
    gw = gateway(server, max_retries=1, models=["openrouter/x/b"])
    try:
        result = await gw.complete(USER, "openrouter/x/a")
    finally:
        await gw.aclose()
    assert [r["model"] for r in server.requests] == ["x/a", "x/a", "x/b"]
    assert server.requests[-1].get("models") is None  # the last model has nothing left to fall back to
    assert result.model == "openrouter/x/b"


@pytest.mark.asyncio
async def test_client_errors_are_not_retried(server: ModelServer) -> None:
    server.script(Reply.error(401, "bad key"))
    gw = gateway(server, max_retries=3, models=["openrouter/x/b"])
    try:
        with pytest.raises(GatewayError, match="HTTP 401: bad key"):
            await gw.complete(USER, "openrouter/x/a")
    finally:
        await gw.aclose()
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_unreachable_server_is_a_clear_error() -> None:
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
async def test_app_attribution_headers(server: ModelServer) -> None:
    gw = gateway(server, app_url="https://example.org/refactorbot", app_title="refactorbot")
    try:
        await gw.complete(USER, "openrouter/x/a")
    finally:
        await gw.aclose()
    headers = server.headers[0]
    assert headers["http-referer"] == "https://example.org/refactorbot"
    assert headers["x-title"] == "refactorbot"


@pytest.mark.asyncio
async def test_stream_reports_cost_and_uses_one_connection(server: ModelServer) -> None:
    server.script(Reply.text("a b c d", cost=0.5, usage=(3, 4)), Reply.text("again"))
    gw = gateway(server)
    try:
        chunks = [c async for c in gw.stream(USER, "openrouter/x/a")]
        second = await gw.complete(USER, "openrouter/x/a")
    finally:
        await gw.aclose()
    assert chunks[-1].cost_usd == pytest.approx(0.5)
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)
    assert server.requests[0]["stream"] is True and server.requests[0]["usage"] == {"include": True}
    assert second.content == "again"


@pytest.mark.asyncio
async def test_stream_retries_before_the_first_byte(server: ModelServer) -> None:
    server.script(Reply.error(500), Reply.text("recovered"))
    gw = gateway(server, max_retries=1)
    try:
        text = "".join([c.content async for c in gw.stream(USER, "openrouter/x/a")])
    finally:
        await gw.aclose()
    assert text == "recovered"
    assert len(server.requests) == 2


def test_defaults_and_import_without_httpx() -> None:
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
def test_bad_config_is_one_clear_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        OpenRouterGateway(config)
    text = str(info.value)
    assert text.startswith("[gateways.openrouter]") and "\n" not in text and "abc123" not in text
