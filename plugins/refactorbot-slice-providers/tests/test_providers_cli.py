"""``refactorbot models`` and ``refactorbot spend`` run in-process against the home's providers slice."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from providers_setup import KEY, KEY_ENV, PLUGIN, home_with, providers_config
from refactorbot.cli import main
from refactorbot.testing import LoopbackGateway, host_running, plugin_of
from refactorbot.testing.model_server import ModelServer


@pytest.fixture
def only_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_LOAD_PLUGINS", "refactorbot-slice-providers")
    monkeypatch.delenv("RB_HOME", raising=False)
    monkeypatch.delenv("RB_CONFIG", raising=False)


def invoke(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_models_lists_gateway_key_status_and_routes(server: ModelServer, tmp_path: Path, only_providers: None) -> None:
    home = home_with(tmp_path, providers_config(server))
    code, out = invoke(home, "models")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["MODEL", "PROVIDER", "GATEWAY", "KEY"]
    cheap = next(line for line in lines if line.startswith("loop/cheap"))
    assert "loopback (not installed)" in cheap and f"{KEY_ENV} (set)" in cheap and "simple" in cheap
    assert KEY not in out
    code, out = invoke(home, "models", "--json", "--capability", "vision")
    assert code == 0
    assert [m["name"] for m in json.loads(out)] == ["loop/strong"]


def test_models_without_configuration_shows_the_default_model(
    tmp_path: Path, only_providers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RB_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, out = invoke(tmp_path / "empty", "models")
    assert code == 0, out
    row = out.splitlines()[1].split()
    assert row[:4] == ["openai/gpt-4o-mini", "(default)", "openai", "none"]  # no gateway installed here
    assert "The default model openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set" in out
    assert "No models configured for prices and routing" in out
    monkeypatch.setenv("RB_MODEL", "deepseek/deepseek-chat")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-secret")
    code, out = invoke(tmp_path / "empty", "models", "--json")
    (model,) = json.loads(out)
    assert (model["name"], model["default"], model["configured"]) == ("deepseek/deepseek-chat", True, False)
    assert model["gateway_installed"] is False and "sk-deepseek-secret" not in out


class KeyedGateway(LoopbackGateway):
    """A gateway that knows which variable holds its models' key."""

    name = "keyed"
    prefixes = ("keyed/",)

    def key_envs(self, model: str) -> tuple[str, ...]:
        return ("RB_PROVIDERS_KEYED_KEY",)


@pytest.mark.asyncio
async def test_default_model_key_status_comes_from_its_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RB_PROVIDERS_KEYED_KEY", raising=False)
    config = {"core": {"health_interval": 3600}, "llm": {"model": "keyed/m1"}}
    async with host_running(tmp_path, [PLUGIN, plugin_of(gateways=[KeyedGateway])], config=config) as host:
        (listed,) = (await host.call("providers.list_models")).data
        assert (listed["name"], listed["gateway"], listed["gateway_installed"]) == ("keyed/m1", "keyed", True)
        assert (listed["api_key_env"], listed["key_present"]) == ("RB_PROVIDERS_KEYED_KEY", False)
        monkeypatch.setenv("RB_PROVIDERS_KEYED_KEY", "set")
        (listed,) = (await host.call("providers.list_models")).data
        assert listed["key_present"] is True
        assert (await host.call("providers.list_models", capability="tools")).data == []


@pytest.mark.asyncio
async def test_spend_table_and_json(server: ModelServer, tmp_path: Path, only_providers: None) -> None:
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN]) as host:
        for slice_id, tokens in (("agent", 1_000_000), ("agent", 500_000), ("memory", 250_000)):
            await host.call("providers.record_call", model="loop/cheap", slice_id=slice_id, prompt_tokens=tokens)
    today = datetime.fromtimestamp(time.time(), UTC).date().isoformat()
    code, out = await _in_thread(home, "spend", "--by", "slice")
    assert code == 0, out
    assert out.splitlines()[0].split() == ["SLICE", "CALLS", "TOKENS", "COST"]
    assert "agent   2      1500000  $1.5000" in out
    assert out.splitlines()[-1].split() == ["3", "$1.7500"]
    code, out = await _in_thread(home, "spend", "--json", "--since", today, "--slice", "memory")
    report = json.loads(out)
    assert [(r["day"], r["slice_id"], r["model"], r["cost_usd"]) for r in report["rows"]] == [
        (today, "memory", "loop/cheap", 0.25)
    ]
    code, out = await _in_thread(home, "spend", "--since", "2001-01-01", "--until", "2001-01-31")
    assert code == 0 and "No LLM calls recorded" in out


@pytest.mark.asyncio
async def test_spend_bad_range_is_one_line(tmp_path: Path, only_providers: None) -> None:
    code, out = await _in_thread(tmp_path / "h", "spend", "--since", "2026-02-01", "--until", "2026-01-01")
    assert code == 1
    assert "since must not be after until" in out and len(out.strip().splitlines()) == 1


async def _in_thread(home: Path, *args: str) -> tuple[int, str]:
    # the command runs its own event loop; keep it off the test's
    import asyncio

    return await asyncio.to_thread(invoke, home, *args)
