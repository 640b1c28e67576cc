"""The gateway contract, and LiteLLM's own behaviour: lazy import, prices, overrides, retries, configuration errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest
from refactorbot import ConfigError, GatewayError
from refactorbot.testing.gateway_contract import GatewayContract
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_gateway_litellm.gateway import LiteLLMGateway

USER = [{"role": "user", "content": "hello"}]


class TestLiteLLMGateway(GatewayContract):
    gateway_class = LiteLLMGateway
    plugin = "refactorbot_gateway_litellm.plugin"
    model, served_model = "openai/contract-model", "contract-model"
    fallback_model, served_fallback_model = "openai/contract-backup", "contract-backup"

    def gateway_config(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0
    ) -> dict[str, Any]:
        return {
            "api_base": server.base_url,
            "api_key_env": self.api_key_env,
            "fallbacks": list(fallbacks),
            "timeout": timeout,
            "num_retries": 0,
        }

    def test_litellm_imported_on_first_call_only_with_local_cost_map(self, model_server: ModelServer) -> None:
        script = textwrap.dedent(
            f"""
            import asyncio, json, os, sys, time
            os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
            os.environ[{self.api_key_env!r}] = {self.api_key!r}
            import refactorbot_gateway_litellm.plugin
            from refactorbot_gateway_litellm.gateway import LiteLLMGateway
            gw = LiteLLMGateway({{"api_base": {model_server.base_url!r}, "api_key_env": {self.api_key_env!r}}})
            after_import = "litellm" in sys.modules
            started = time.perf_counter()
            answer = asyncio.run(gw.complete([{{"role": "user", "content": "cold"}}], "openai/cold-model"))
            print(json.dumps({{
                "after_import": after_import,
                "after_call": "litellm" in sys.modules,
                "cost_map": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
                "content": answer.content,
                "first_call_s": time.perf_counter() - started,
            }}))
            """
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["after_import"] is False
        assert result["after_call"] is True
        assert result["cost_map"] == "True"
        assert result["content"] == "echo: cold"

    def test_missing_provider_key_fails_before_importing_litellm(self) -> None:
        script = textwrap.dedent(
            """
            import asyncio, json, os, sys
            os.environ.pop("OPENAI_API_KEY", None)
            from refactorbot import GatewayError
            from refactorbot_gateway_litellm.gateway import LiteLLMGateway
            try:
                asyncio.run(LiteLLMGateway().complete([{"role": "user", "content": "hi"}], "openai/gpt-4o-mini"))
                error = None
            except GatewayError as exc:
                error = str(exc)
            print(json.dumps({"error": error, "litellm": "litellm" in sys.modules}))
            """
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result == {
            "error": "OPENAI_API_KEY is not set (needed for model openai/gpt-4o-mini);"
            " export it or choose another model with RB_MODEL",
            "litellm": False,
        }

    def test_key_variable_of_a_model(self, monkeypatch: pytest.MonkeyPatch) -> None:
        gw = LiteLLMGateway({"models": {"team/special": {"api_key_env": "TEAM_KEY"}}})
        assert gw.key_envs("openai/gpt-4o-mini") == ("OPENAI_API_KEY",)
        assert gw.key_envs("gemini/gemini-2.0-flash") == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
        assert gw.key_envs("claude-3-5-haiku-latest") == ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
        assert gw.key_envs("team/special") == ("TEAM_KEY",)  # the configured variable wins
        assert gw.key_envs("ollama/llama3") == ()  # no key needed, none checked
        monkeypatch.delenv("GEMINI_API_KEY", raising=False)
        monkeypatch.setenv("GOOGLE_API_KEY", "set")
        assert gw.missing_key("gemini/gemini-2.0-flash") is None  # either variable will do
        monkeypatch.delenv("GOOGLE_API_KEY")
        assert gw.missing_key("gemini/gemini-2.0-flash") == (
            "GEMINI_API_KEY (or GOOGLE_API_KEY) is not set (needed for model gemini/gemini-2.0-flash);"
            " export it or choose another model with RB_MODEL"
        )

    @pytest.mark.asyncio
    async def test_cost_from_litellm_prices_for_known_models(
        self, model_server: ModelServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        model_server.script(
            Reply.text("a", usage=(1_000_000, 1_000_000)), Reply.text("b", usage=(1000, 1000)), Reply.text("c")
        )
        gw = self.make_gateway(model_server)
        known = await gw.complete(USER, "openai/gpt-4o-mini")
        with caplog.at_level(logging.INFO, logger="refactorbot_gateway_litellm"):
            unknown = await gw.complete(USER, "openai/no-such-model-anywhere")
            await gw.complete(USER, "openai/no-such-model-anywhere")
        assert known.cost_usd is not None and 0 < known.cost_usd < 10  # gpt-4o-mini: cents per million tokens
        assert unknown.cost_usd is None  # the providers slice prices it from its own table
        assert known.model == "openai/gpt-4o-mini"
        unpriced = [r.getMessage() for r in caplog.records if "no price for" in r.getMessage()]
        assert len(unpriced) == 1  # once per model, with LiteLLM's reason on the same line
        assert (
            unpriced[0].startswith("litellm: no price for openai/no-such-model-anywhere (") and "\n" not in unpriced[0]
        )

    @pytest.mark.asyncio
    async def test_provider_reported_cost_wins(self, model_server: ModelServer) -> None:
        model_server.script(Reply.text("a", usage=(10, 10), cost=0.0421))
        result = await self.make_gateway(model_server).complete(USER, "openai/gpt-4o-mini")
        assert result.cost_usd == pytest.approx(0.0421)

    @pytest.mark.asyncio
    async def test_streamed_cost_for_known_models(self, model_server: ModelServer) -> None:
        model_server.script(Reply.text("priced stream", usage=(1_000_000, 0)))
        chunks = [c async for c in self.make_gateway(model_server).stream(USER, "openai/gpt-4o-mini")]
        assert chunks[-1].cost_usd is not None and chunks[-1].cost_usd > 0
        assert model_server.requests[0]["stream_options"] == {"include_usage": True}

    @pytest.mark.asyncio
    async def test_per_model_override_sends_elsewhere(self, model_server: ModelServer) -> None:
        with ModelServer(api_key=self.api_key) as other:
            gw = self.make_gateway(
                model_server,
                models={"team/special": {"api_base": other.base_url, "model": "openai/renamed", "params": {"seed": 7}}},
            )
            result = await gw.complete(USER, "team/special")
            assert [r["model"] for r in other.requests] == ["renamed"]
            assert other.requests[0]["seed"] == 7
        assert model_server.requests == []
        assert result.content == "echo: hello"

    @pytest.mark.asyncio
    async def test_fallback_chain_of_three(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(500), Reply.error(429), Reply.text("third time"))
        gw = self.make_gateway(model_server, fallbacks=["openai/second", "openai/third"])
        result = await gw.complete(USER, "openai/first")
        assert [r["model"] for r in model_server.requests] == ["first", "second", "third"]
        assert (result.content, result.model) == ("third time", "openai/third")

    @pytest.mark.asyncio
    async def test_all_fallbacks_failing_is_one_error(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(503, "down"), Reply.error(503, "down too"))
        with pytest.raises(GatewayError, match="HTTP 503") as info:
            await self.make_gateway(model_server, fallbacks=["openai/second"]).complete(USER, "openai/first")
        assert "\n" not in str(info.value)

    @pytest.mark.asyncio
    async def test_num_retries_retries_the_same_model(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(500), Reply.text("second try"))
        result = await self.make_gateway(model_server, num_retries=1).complete(USER, "openai/flaky")
        assert result.content == "second try"
        assert [r["model"] for r in model_server.requests] == ["flaky", "flaky"]

    @pytest.mark.asyncio
    async def test_stream_http_error_is_gateway_error(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(500, "stream refused"))
        with pytest.raises(GatewayError, match="500"):
            async for _ in self.make_gateway(model_server).stream(USER, "openai/m"):
                pass

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"api_key_env": "sk-proj-abc123"}, "api_key_env"),
            ({"api_key": "sk-proj-abc123"}, "api_key: Extra inputs"),
            ({"api_base": "localhost:4000"}, "api_base"),
            ({"timeout": 0}, "timeout"),
            ({"num_retries": -1}, "num_retries"),
            ({"models": {"m": {"api_key_env": "not a name"}}}, "models.m.api_key_env"),
        ],
    )
    def test_bad_config_is_one_clear_error(self, config: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigError, match=message) as info:
            LiteLLMGateway(config)
        text = str(info.value)
        assert text.startswith("[gateways.litellm]") and "\n" not in text and "abc123" not in text

    @pytest.mark.asyncio
    async def test_router_deployments_do_not_make_unknown_models_free(self, model_server: ModelServer) -> None:
        # LiteLLM's Router registers its deployments in the global price list without prices.
        model_server.script(
            Reply.error(500), Reply.text("fallback", usage=(100, 100)), Reply.text("direct", usage=(100, 100))
        )
        gw = self.make_gateway(model_server, models={"openai/r-primary": {"fallbacks": ["openai/r-backup"]}})
        via_router = await gw.complete(USER, "openai/r-primary")
        direct = await gw.complete(USER, "openai/r-backup")
        assert via_router.model == direct.model == "openai/r-backup"
        assert via_router.cost_usd is None and direct.cost_usd is None

    @pytest.mark.asyncio
    async def test_stream_falls_back_before_the_first_chunk(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(429), Reply.text("streamed by the backup", usage=(5, 5)))
        gw = self.make_gateway(model_server, fallbacks=["openai/backup"])
        chunks = [c async for c in gw.stream(USER, "openai/primary")]
        assert "".join(c.content for c in chunks) == "streamed by the backup"
        assert [r["model"] for r in model_server.requests] == ["primary", "backup"]
        assert chunks[-1].model == "openai/backup" and chunks[-1].usage is not None
