"""Both gateways and the providers slice together: routing, tools, cost, fallbacks and budgets end to end.

Everything is real except the model providers, replaced at the network boundary by loopback servers
speaking the OpenAI protocol (LiteLLM talks to one through ``api_base``, OpenRouter through ``base_url``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refactorbot import LLMCall, LLMCallRefused
from refactorbot.testing import LoopbackGateway, host_running, plugin_of
from refactorbot.testing.gateway_contract import TOOLS, write_config
from refactorbot.testing.model_server import ModelServer, Reply

PLUGINS = [
    "refactorbot_gateway_litellm.plugin",
    "refactorbot_gateway_openrouter.plugin",
    "refactorbot_slice_providers.plugin",
]
LOCAL_KEY_ENV, OPENROUTER_KEY_ENV = "RB_IT_LOCAL_KEY", "RB_IT_OPENROUTER_KEY"


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModelServer, ModelServer]]:
    monkeypatch.setenv(LOCAL_KEY_ENV, "sk-local-it")
    monkeypatch.setenv(OPENROUTER_KEY_ENV, "sk-or-it")
    with ModelServer(api_key="sk-local-it") as local, ModelServer(api_key="sk-or-it") as openrouter:
        yield local, openrouter


def configure(home: Path, local: ModelServer, openrouter: ModelServer, **providers: Any) -> None:
    write_config(
        home,
        {
            "core": {"health_interval": 3600},
            "llm": {"model": "openai/loop-cheap"},
            "gateways": {
                "litellm": {
                    "api_base": local.base_url,
                    "api_key_env": LOCAL_KEY_ENV,
                    "timeout": 10,
                    "models": {"openai/loop-primary": {"fallbacks": ["openai/loop-cheap"]}},
                },
                "openrouter": {"base_url": openrouter.base_url, "api_key_env": OPENROUTER_KEY_ENV, "max_retries": 0},
            },
            "slices": {
                "providers": {
                    "providers": [
                        {"name": "local", "gateway": "litellm", "api_key_env": LOCAL_KEY_ENV},
                        {"name": "openrouter", "gateway": "openrouter", "api_key_env": OPENROUTER_KEY_ENV},
                    ],
                    "models": [
                        {
                            "name": "openai/loop-cheap",
                            "provider": "local",
                            "input_price_per_mtok": 0.5,
                            "output_price_per_mtok": 1.5,
                            "capabilities": ["tools"],
                        },
                        {
                            "name": "openai/loop-primary",
                            "provider": "local",
                            "input_price_per_mtok": 3,
                            "output_price_per_mtok": 15,
                        },
                        {
                            "name": "openrouter/loop/strong",
                            "provider": "openrouter",
                            "input_price_per_mtok": 3,
                            "output_price_per_mtok": 15,
                            "capabilities": ["tools"],
                        },
                    ],
                    "routing": {"simple": "openai/loop-cheap", "planning": "openrouter/loop/strong"},
                    **providers,
                }
            },
        },
    )


def spend_rows(home: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "slices" / "providers.db") as conn:
        return conn.execute(
            "SELECT slice_id, model, gateway, prompt_tokens, completion_tokens, round(cost_usd, 9), cost_source"
            " FROM llm_calls ORDER BY id"
        ).fetchall()


@pytest.mark.asyncio
async def test_routed_models_reach_their_gateways_and_are_priced(
    servers: tuple[ModelServer, ModelServer], tmp_path: Path
) -> None:
    local, openrouter = servers
    local.script(
        Reply.tool_call("files_write", {"path": "plan.md", "content": "# plan"}, usage=(1000, 100)),
        Reply.text("file written", usage=(1200, 20)),
    )
    openrouter.script(Reply.text("1. read 2. write", usage=(2000, 300), cost=0.0105))
    configure(tmp_path, local, openrouter)
    async with host_running(tmp_path, PLUGINS) as host:
        planning = (await host.call("providers.route", task="planning")).data
        plan = await host.complete(
            LLMCall(model=planning["model"], messages=[{"role": "user", "content": "plan"}], slice_id="agent")
        )
        simple = (await host.call("providers.route", task="simple")).data
        messages: list[dict[str, Any]] = [{"role": "user", "content": "write the plan"}]
        first = await host.complete(LLMCall(model=simple["model"], messages=messages, tools=TOOLS, slice_id="agent"))
        (call,) = first.tool_calls
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "ok"},
        ]
        done = await host.complete(LLMCall(model=simple["model"], messages=messages, tools=TOOLS, slice_id="agent"))
        by_model = (await host.call("providers.spend", group_by=["model"])).data
        listed = (await host.call("providers.list_models")).data
    assert (planning["gateway"], plan.gateway, plan.content) == ("openrouter", "openrouter", "1. read 2. write")
    assert call.arguments == {"path": "plan.md", "content": "# plan"}
    assert (done.gateway, done.content) == ("litellm", "file written")
    assert [r["model"] for r in local.requests] == ["loop-cheap", "loop-cheap"]
    assert [r["model"] for r in openrouter.requests] == ["loop/strong"]
    assert spend_rows(tmp_path) == [
        ("agent", "openrouter/loop/strong", "openrouter", 2000, 300, 0.0105, "gateway"),
        ("agent", "openai/loop-cheap", "litellm", 1000, 100, round((1000 * 0.5 + 100 * 1.5) / 1e6, 9), "price_table"),
        ("agent", "openai/loop-cheap", "litellm", 1200, 20, round((1200 * 0.5 + 20 * 1.5) / 1e6, 9), "price_table"),
    ]
    assert by_model["total_usd"] == pytest.approx(0.0105 + 0.00065 + 0.00063)
    assert {m["name"]: m["gateway_installed"] for m in listed} == {
        "openai/loop-cheap": True,
        "openai/loop-primary": True,
        "openrouter/loop/strong": True,
    }


@pytest.mark.asyncio
async def test_litellm_fallback_is_priced_as_the_model_that_answered(
    servers: tuple[ModelServer, ModelServer], tmp_path: Path
) -> None:
    local, openrouter = servers
    local.script(Reply.error(429, "rate limited"), Reply.text("cheap answer", usage=(1_000_000, 0)))
    configure(tmp_path, local, openrouter)
    async with host_running(tmp_path, PLUGINS) as host:
        result = await host.complete(
            LLMCall(model="openai/loop-primary", messages=[{"role": "user", "content": "x"}], slice_id="agent")
        )
    assert (result.content, result.model) == ("cheap answer", "openai/loop-cheap")
    assert [r["model"] for r in local.requests] == ["loop-primary", "loop-cheap"]
    ((_, model, _, _, _, cost, source),) = spend_rows(tmp_path)
    assert (model, cost, source) == ("openai/loop-cheap", 0.5, "price_table")


@pytest.mark.asyncio
async def test_budgets_and_missing_keys_refuse_before_any_request(
    servers: tuple[ModelServer, ModelServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, openrouter = servers
    local.script(Reply.text("costly", usage=(1_000_000, 0)))
    configure(tmp_path, local, openrouter, budgets={"slices": {"agent": {"daily_usd": 0.25}}})
    async with host_running(tmp_path, PLUGINS) as host:
        ask = LLMCall(model="openai/loop-cheap", messages=[{"role": "user", "content": "x"}], slice_id="agent")
        await host.complete(ask)  # $0.50 spent: over the $0.25 cap
        with pytest.raises(LLMCallRefused, match="slice 'agent' spent \\$0.5000 today"):
            await host.complete(ask.model_copy())
        monkeypatch.delenv(OPENROUTER_KEY_ENV)
        with pytest.raises(LLMCallRefused, match=f"{OPENROUTER_KEY_ENV} is not set"):
            await host.complete(
                LLMCall(model="openrouter/loop/strong", messages=[{"role": "user", "content": "x"}], slice_id="memory")
            )
        budgets = (await host.call("providers.get_budgets")).data
    assert len(local.requests) == 1 and openrouter.requests == []
    assert budgets[0]["exceeded"] is True and budgets[0]["slice_id"] == "agent"
    assert len(spend_rows(tmp_path)) == 1


class CloseFails(LoopbackGateway):
    """A gateway whose connections cannot be closed."""

    name = "closefails"
    prefixes = ("closefails/",)

    async def aclose(self) -> None:
        raise RuntimeError("socket already gone")


@pytest.mark.asyncio
async def test_a_gateway_failing_to_close_is_logged_and_the_others_are_closed(
    servers: tuple[ModelServer, ModelServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local, openrouter = servers
    openrouter.script(Reply.text("hi"))
    configure(tmp_path, local, openrouter)
    async with host_running(tmp_path, [*PLUGINS, plugin_of(gateways=[CloseFails])]) as host:
        host.gateway_for(LLMCall(model="closefails/x", messages=[]))  # first in line at shutdown
        await host.complete(LLMCall(model="openrouter/loop/strong", messages=[{"role": "user", "content": "x"}]))
        reaches_openrouter = host.gateway_for(LLMCall(model="openrouter/loop/strong", messages=[]))
        assert reaches_openrouter._client is not None  # its connection pool is open
    assert reaches_openrouter._client is None  # closed although the gateway before it failed to
    failures = [r for r in caplog.records if "failed to close" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in failures] == [
        ("WARNING", "gateway closefails failed to close: RuntimeError: socket already gone")
    ]
