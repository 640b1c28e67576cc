"""The testing kit's builders: ``plugin_of`` plugins in a real host, and the loopback gateway's contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from refactorbot import (
    AtomicSlice,
    ChannelAdapter,
    DashboardPage,
    GatewayError,
    LLMCall,
    LLMCallRefused,
    OutgoingMessage,
    Tool,
    ToolContext,
    ToolResult,
    hookimpl,
    operation,
)
from refactorbot.plugins import PluginHost
from refactorbot.testing import (
    GatewayContract,
    LoopbackGateway,
    ModelServer,
    Reply,
    host_running,
    loopback_config,
    plugin_of,
)

QUIET = {"core": {"health_interval": 3600}}


class PingSlice(AtomicSlice):
    """Answer pings."""

    slice_id = "ping"
    uses_database = False

    @operation
    async def ping(self) -> str:
        """Return pong."""
        return "pong"


class Words(BaseModel):
    text: str


class CountTool(Tool):
    name = "count"
    description = "Count words."
    Params = Words

    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        return ToolResult(output=str(len(params.text.split())))


class NullChannel(ChannelAdapter):
    name = "null"

    async def connect(self) -> None:
        """Nothing to connect."""

    async def disconnect(self) -> None:
        """Nothing to disconnect."""

    async def send(self, message: OutgoingMessage) -> None:
        """Drop the message."""


def draw(api: Any) -> None:
    """Draw nothing."""


PAGE = DashboardPage(group="ping", title="Ping", render=draw)


def test_registers_exactly_what_it_was_given() -> None:
    plugin = plugin_of(
        slices=[PingSlice], tools=[CountTool], gateways=[LoopbackGateway], channels=[NullChannel], pages=[PAGE]
    )
    host = PluginHost({})
    record = host.register(plugin)
    assert record.status == "ok", record.error
    assert record.name == plugin.__name__ == ("plugin_of(PingSlice, CountTool, LoopbackGateway, NullChannel, Ping)")
    assert record.hooks == [
        "register_channels",
        "register_dashboard_pages",
        "register_gateways",
        "register_slices",
        "register_tools",
    ]
    registry = host.registry
    assert registry.slices["ping"].obj is PingSlice and registry.slices["ping"].plugin == record.name
    assert registry.tools["count"].obj is CountTool
    assert registry.gateways["loopback"].obj is LoopbackGateway
    assert registry.channels["null"].obj is NullChannel
    assert [p.obj for p in registry.pages.values()] == [PAGE]

    only_tools = host.register(plugin_of(tools=[CountTool], name="counting"))
    assert only_tools.name == "counting" and only_tools.hooks == ["register_tools"]


def test_api_declaration() -> None:
    assert plugin_of(slices=[PingSlice]).REFACTORBOT_API == 1
    assert not hasattr(plugin_of(slices=[PingSlice], api=None), "REFACTORBOT_API")
    record = PluginHost({}).register(plugin_of(slices=[PingSlice], api=[0]))
    assert record.status == "incompatible" and "API [0]" in (record.error or "")


def test_hook_functions_are_marked_on_a_copy() -> None:
    def before_operation(request: Any) -> None:
        """Observe."""

    class Policy:
        def before_tool_call(self, call: Any) -> None:
            """Observe."""

        @hookimpl(tryfirst=True)
        def after_tool_call(self, call: Any, result: Any) -> None:
            """Observe first."""

    policy = Policy()
    plugin = plugin_of(
        hooks=[before_operation, policy.before_tool_call, policy.after_tool_call],
        name="observer",
    )
    record = PluginHost({}).register(plugin)
    assert record.status == "ok", record.error
    assert record.hooks == ["after_tool_call", "before_operation", "before_tool_call"]
    assert not hasattr(before_operation, "refactorbot_impl")  # the caller's function is left alone
    assert not hasattr(Policy.before_tool_call, "refactorbot_impl")
    assert plugin.after_tool_call.refactorbot_impl["tryfirst"] is True
    assert plugin.before_tool_call.__self__ is policy

    by_name = plugin_of(hooks={"before_llm_call": lambda call: None})
    assert PluginHost({}).register(by_name).hooks == ["before_llm_call"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hooks": [lambda call: None]}, TypeError, "cannot tell which hook"),
        ({"hooks": {"startup": print}}, TypeError, "must be a function or a bound method"),
        ({"slices": [PingSlice], "hooks": {"register_slices": lambda register: None}}, ValueError, "given twice"),
    ],
)
def test_unusable_hooks_are_refused(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        plugin_of(**kwargs)


def test_unknown_hook_fails_in_the_host_like_any_plugin() -> None:
    def before_everything(request: Any) -> None:
        """Not a hook."""

    record = PluginHost({}).register(plugin_of(hooks=[before_everything], name="typo"))
    assert record.status == "failed" and "before_everything" in (record.error or "")


@pytest.mark.asyncio
async def test_plugins_and_loopback_gateway_in_a_running_host(tmp_path: Path) -> None:
    seen: list[str] = []
    answered: list[str] = []

    def before_operation(request: Any) -> None:
        seen.append(f"{request.slice_id}.{request.operation}")

    def before_llm_call(call: Any) -> str | None:
        return "no secrets" if "secret" in call.messages[-1]["content"] else None

    async def after_llm_call(call: Any, result: Any) -> None:
        answered.append(result.content)

    hooks = plugin_of(hooks=[before_operation, before_llm_call, after_llm_call], name="hooks")
    with ModelServer() as server:
        server.script(Reply.text("first answer"), Reply.text("streamed answer", usage=(4, 2)))
        config = {**QUIET, **loopback_config(server)}
        plugins = [plugin_of(slices=[PingSlice]), "refactorbot.testing.loopback", hooks]
        async with host_running(tmp_path, plugins, config=config) as host:
            assert (await host.call("ping.ping")).data == "pong"
            result = await host.complete(LLMCall(model="", messages=[{"role": "user", "content": "hi"}]))
            chunks = [
                c
                async for c in host.stream(
                    LLMCall(model="", messages=[{"role": "user", "content": "again"}], stream=True)
                )
            ]
            with pytest.raises(LLMCallRefused, match="no secrets"):
                await host.complete(LLMCall(model="", messages=[{"role": "user", "content": "a secret"}]))
    assert seen == ["ping.ping"]
    assert (result.content, result.gateway, result.model) == ("first answer", "loopback", "loopback/scripted-model")
    assert "".join(c.content for c in chunks) == "streamed answer"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 4
    assert answered == ["first answer", "streamed answer"]
    assert [r["model"] for r in server.requests] == ["scripted-model", "scripted-model"]
    assert server.requests[1]["stream"] is True


@pytest.mark.asyncio
async def test_unreachable_server_is_one_line() -> None:
    with ModelServer() as server:
        gateway = LoopbackGateway({"base_url": server.base_url})
    with pytest.raises(GatewayError, match="loopback: cannot reach http://127.0.0.1") as info:
        await gateway.complete([{"role": "user", "content": "hi"}], "loopback/m")
    assert "\n" not in str(info.value)


class TestLoopbackGatewayContract(GatewayContract):
    """The kit's gateway passes the contract every real gateway passes."""

    gateway_class = LoopbackGateway
    plugin = "refactorbot.testing.loopback"
    model, served_model = "loopback/contract-model", "contract-model"
    fallback_model, served_fallback_model = "loopback/contract-backup", "contract-backup"
    requires_providers = False  # the core is tested alone

    def gateway_config(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0
    ) -> dict[str, Any]:
        return {
            "base_url": server.base_url,
            "api_key_env": self.api_key_env,
            "fallbacks": list(fallbacks),
            "timeout": timeout,
        }


CONTRACT_NEEDING_PROVIDERS = """
from refactorbot.testing import GatewayContract, LoopbackGateway


class TestNeedsProviders(GatewayContract):
    gateway_class = LoopbackGateway
    plugin = "refactorbot.testing.loopback"
    model, served_model = "loopback/contract-model", "contract-model"
    fallback_model, served_fallback_model = "loopback/contract-backup", "contract-backup"

    def gateway_config(self, server, *, fallbacks=(), timeout=10.0):
        return {"base_url": server.base_url, "api_key_env": self.api_key_env, "fallbacks": list(fallbacks),
                "timeout": timeout}
"""


def test_contract_says_when_the_providers_slice_it_requires_is_missing(tmp_path: Path) -> None:
    """In a fresh venv with only the core, the contract's cost checks fail saying what to install."""
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed on PATH to build the fresh virtualenv (pip install uv)"
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS")}
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=environ)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    core = Path(__file__).resolve().parents[1]
    install = [uv, "pip", "install", "-q", "--python", str(python), "-e", f"{core}[testing]"]
    done = subprocess.run(install, capture_output=True, text=True, env=environ, check=False)
    assert done.returncode == 0, done.stderr
    (tmp_path / "test_needs_providers.py").write_text(CONTRACT_NEEDING_PROVIDERS)
    ran = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        ]
        + ["test_needs_providers.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
        check=False,
    )
    summary = ran.stdout.strip().splitlines()[-1]
    assert ran.returncode == 1 and summary.startswith("2 failed, 12 passed"), ran.stdout[-3000:]
    failed = sorted(line.split("::")[-1].split(" ")[0] for line in ran.stdout.splitlines() if line.startswith("FAILED"))
    assert failed == ["test_budget_breach_refused_before_any_request", "test_usage_and_cost_recorded"]
    # Counted in the failure reports only: the short summary repeats the message as wide as the terminal allows.
    reports = ran.stdout.split("short test summary info")[0]
    assert reports.count("TestNeedsProviders checks usage, cost and budgets through the providers slice") == 2
    assert "set requires_providers = False" in ran.stdout


def test_build_host_config_writes_lists_of_tables(tmp_path: Path) -> None:
    """A list of mappings in ``config`` (``[[slices.providers.models]]``, say) reaches the settings as tables."""
    from refactorbot.testing import build_host

    models = [{"name": "openai/a", "input_per_mtok": 1.5, "tags": ["x", "y"]}, {"name": "b", "enabled": False}]
    host = build_host(tmp_path, [], config={"slices": {"providers": {"models": models}}}, load_installed=False)
    assert host.settings.slices["providers"]["models"] == models
