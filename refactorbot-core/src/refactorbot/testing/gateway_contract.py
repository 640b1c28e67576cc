"""``GatewayContract``: the checks every LLM gateway passes against the loopback model server.

Subclass it in the gateway's tests and say how to point the gateway at a server::

    class TestLiteLLMContract(GatewayContract):
        gateway_class = LiteLLMGateway
        plugin = "refactorbot_gateway_litellm.plugin"
        model, served_model = "openai/contract-model", "contract-model"
        fallback_model, served_fallback_model = "openai/contract-backup", "contract-backup"

        def gateway_config(self, server, *, fallbacks=(), timeout=10.0):
            return {"api_base": server.base_url, "api_key_env": self.api_key_env,
                    "fallbacks": list(fallbacks), "timeout": timeout}

Every call goes through the gateway's real client over HTTP. Usage, cost and budgets are checked
through ``refactorbot-slice-providers``, which must then be installed in the test environment
(the tests say so when it is not); a subclass with ``requires_providers = False`` checks them
through small in-test hook plugins instead, so its virtualenv needs nothing else.

The gateway's own tests go in the same class and use the same fixtures: ``model_server`` (the
API key variable set) and ``self.make_gateway(model_server, **overrides)``::

    @pytest.mark.asyncio
    async def test_num_retries(self, model_server):
        model_server.script(Reply.error(500), Reply.text("second try"))
        gateway = self.make_gateway(model_server, num_retries=1)
        ...
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from refactorbot.errors import GatewayError, LLMCallRefused
from refactorbot.hookspecs import hookimpl
from refactorbot.llm import LLMCall, LLMGateway, LLMResponse
from refactorbot.testing.contracts import check_import_cost
from refactorbot.testing.host import host_running
from refactorbot.testing.model_server import ModelServer, Reply

PROVIDERS_PLUGIN = "refactorbot_slice_providers.plugin"
#: Prices the contract gives the providers slice, per million tokens.
INPUT_PRICE, OUTPUT_PRICE = 1.0, 2.0

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "files_write",
            "description": "Write a file in the workspace.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    }
]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def toml_document(config: Mapping[str, Mapping[str, Any]]) -> str:
    """Return ``config`` (``{"core": {...}, "slices": {"providers": {...}}}``) as TOML text.

    Two levels become table headers (``[slices."providers"]``); anything deeper is written inline,
    so keys like ``"openai/gpt-4o"`` and lists of tables survive.
    """
    lines: list[str] = []
    for kind, section in config.items():
        if section and all(isinstance(v, Mapping) for v in section.values()) and kind != "core":
            for name, table in section.items():
                lines.append(f"[{kind}.{json.dumps(str(name))}]")
                lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in table.items()]
        else:
            lines.append(f"[{kind}]")
            lines += [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def write_config(home: Path, config: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``config`` to ``home/refactorbot.toml`` and return the file."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "refactorbot.toml"
    path.write_text(toml_document(config), encoding="utf-8")
    return path


def providers_available() -> bool:
    """Return whether the providers slice is installed."""
    return importlib.util.find_spec("refactorbot_slice_providers") is not None


class CallRecorder:
    """A hook plugin that remembers every ``after_llm_call`` and may veto calls."""

    REFACTORBOT_API = 1

    def __init__(self, veto: str | None = None) -> None:
        self.veto = veto
        self.seen: list[LLMCall] = []
        self.results: list[tuple[LLMCall, LLMResponse]] = []

    @hookimpl
    def before_llm_call(self, call: LLMCall) -> str | None:
        """Remember the call; return the configured veto reason."""
        self.seen.append(call)
        return self.veto

    @hookimpl
    def after_llm_call(self, call: LLMCall, result: LLMResponse) -> None:
        """Remember the call and its result."""
        self.results.append((call, result))


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


class GatewayContract:
    """Subclass with the gateway, its plugin module, model names and ``gateway_config``."""

    gateway_class: ClassVar[type[LLMGateway]]
    #: The entry-point module registering the gateway.
    plugin: ClassVar[str]
    #: The model name callers use, and the name the server sees in the request body.
    model: ClassVar[str]
    served_model: ClassVar[str]
    fallback_model: ClassVar[str]
    served_fallback_model: ClassVar[str]
    #: The environment variable the gateway is configured to read its key from.
    api_key_env: ClassVar[str] = "RB_CONTRACT_API_KEY"
    api_key: ClassVar[str] = "sk-contract-not-a-real-key"
    #: Check usage, cost and budgets through the providers slice (it must be installed); with
    #: ``False``, through in-test hook plugins only, whatever is installed.
    requires_providers: ClassVar[bool] = True

    def gateway_config(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0
    ) -> dict[str, Any]:
        """Return the ``[gateways.<name>]`` table pointing the gateway at ``server`` (no retries)."""
        raise NotImplementedError

    def make_gateway(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0, **overrides: Any
    ) -> LLMGateway:
        """Return the gateway configured by ``gateway_config``, with ``overrides`` on top."""
        return self.gateway_class({**self.gateway_config(server, fallbacks=fallbacks, timeout=timeout), **overrides})

    def uses_providers(self) -> bool:
        """Return ``requires_providers``; fail the test with how to fix it when the slice is missing."""
        if self.requires_providers and not providers_available():
            pytest.fail(
                f"{type(self).__name__} checks usage, cost and budgets through the providers slice, which is not"
                " installed: install refactorbot-slice-providers (from a checkout: pip install -e"
                " plugins/refactorbot-slice-providers), or set requires_providers = False to check them"
                " through hook plugins only",
                pytrace=False,
            )
        return self.requires_providers

    @pytest.fixture
    def model_server(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
        """Yield a loopback server that insists on the contract's API key (set in the environment)."""
        monkeypatch.setenv(self.api_key_env, self.api_key)
        with ModelServer(models=[self.served_model, self.served_fallback_model], api_key=self.api_key) as server:
            yield server

    def host_config(self, server: ModelServer, **providers: Any) -> dict[str, Any]:
        """Return host configuration: the gateway, and the providers slice when ``uses_providers()``."""
        name = self.gateway_class.name
        config: dict[str, Any] = {
            "core": {"health_interval": 3600},
            "llm": {"model": self.model, "gateway": name},
            "gateways": {name: self.gateway_config(server)},
        }
        if self.uses_providers():
            section: dict[str, Any] = {
                "providers": [{"name": "contract", "gateway": name, "api_key_env": self.api_key_env}],
                "models": [
                    {
                        "name": m,
                        "provider": "contract",
                        "input_price_per_mtok": INPUT_PRICE,
                        "output_price_per_mtok": OUTPUT_PRICE,
                    }
                    for m in (self.model, self.fallback_model)
                ],
            }
            config["slices"] = {"providers": {**section, **providers}}
        return config

    def host_plugins(self, *extra: Any) -> list[Any]:
        """Return the plugins of a contract host: the gateway's, providers (``uses_providers()``), ``extra``."""
        return [self.plugin, *([PROVIDERS_PLUGIN] if self.uses_providers() else []), *extra]

    # -- the contract ---------------------------------------------------------------------------

    def test_registered_by_plugin(self) -> None:
        module = importlib.import_module(self.plugin)
        registered: list[Any] = []
        module.register_gateways(registered.append)
        assert self.gateway_class in registered
        assert getattr(module, "REFACTORBOT_API", None) == 1

    def test_import_fast_and_light(self) -> None:
        result = check_import_cost(self.plugin)
        assert not result["heavy"], f"{self.plugin} imports heavy libraries at module level: {result['heavy']}"
        assert result["ms"] < 50, f"{self.plugin} took {result['ms']:.1f} ms to import"

    @pytest.mark.asyncio
    async def test_completion(self, model_server: ModelServer) -> None:
        model_server.script(Reply.text("Hello from the loopback model.", usage=(12, 7)))
        gateway = self.make_gateway(model_server)
        try:
            result = await gateway.complete(_user("Say hello."), self.model, temperature=0.0)
        finally:
            await gateway.aclose()
        assert result.content == "Hello from the loopback model."
        assert result.tool_calls == []
        assert result.finish_reason == "stop"
        assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 7)
        assert result.gateway == self.gateway_class.name
        assert result.latency_ms > 0
        (body,) = model_server.requests
        assert body["model"] == self.served_model
        assert body["messages"] == _user("Say hello.")
        assert body.get("temperature") == 0.0
        assert model_server.headers[0]["authorization"] == f"Bearer {self.api_key}"

    @pytest.mark.asyncio
    async def test_tool_call_round_trip(self, model_server: ModelServer) -> None:
        model_server.script(
            Reply.tool_call("files_write", {"path": "notes/a.txt", "content": "x = 1\n"}, id="call_write"),
            Reply.text("Wrote notes/a.txt."),
        )
        gateway = self.make_gateway(model_server)
        messages = _user("Write a.txt")
        try:
            first = await gateway.complete(messages, self.model, tools=TOOLS)
            (call,) = first.tool_calls
            assert (call.id, call.name) == ("call_write", "files_write")
            assert call.arguments == {"path": "notes/a.txt", "content": "x = 1\n"}
            assert first.finish_reason == "tool_calls"
            messages = [
                *messages,
                {
                    "role": "assistant",
                    "content": first.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id, "content": "wrote 6 bytes"},
            ]
            second = await gateway.complete(messages, self.model, tools=TOOLS)
        finally:
            await gateway.aclose()
        assert second.content == "Wrote notes/a.txt."
        assert [t["function"]["name"] for t in model_server.requests[0]["tools"]] == ["files_write"]
        sent = model_server.requests[1]["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": "call_write", "content": "wrote 6 bytes"}
        assert sent[-2]["tool_calls"][0]["id"] == "call_write"

    @pytest.mark.asyncio
    async def test_malformed_tool_arguments_are_a_clear_error(self, model_server: ModelServer) -> None:
        model_server.script(Reply.tool_call("files_write", '{"path": "a.txt", '))
        gateway = self.make_gateway(model_server)
        try:
            with pytest.raises(GatewayError, match="files_write") as info:
                await gateway.complete(_user("go"), self.model, tools=TOOLS)
        finally:
            await gateway.aclose()
        assert "\n" not in str(info.value) and "JSON" in str(info.value)

    @pytest.mark.asyncio
    async def test_streaming_reassembles_the_same_text(self, model_server: ModelServer) -> None:
        text = "Streaming splits this sentence into several pieces on the wire."
        model_server.script(Reply.text(text, usage=(9, 11)), Reply.text(text, usage=(9, 11), chunks=6))
        gateway = self.make_gateway(model_server)
        try:
            whole = await gateway.complete(_user("stream"), self.model)
            chunks = [c async for c in gateway.stream(_user("stream"), self.model)]
        finally:
            await gateway.aclose()
        assert whole.content == text
        assert "".join(c.content for c in chunks) == text
        assert len([c for c in chunks if c.content]) >= 3
        last = chunks[-1]
        assert last.finish_reason == "stop"
        assert last.usage is not None and (last.usage.prompt_tokens, last.usage.completion_tokens) == (9, 11)
        assert model_server.requests[1]["stream"] is True

    @pytest.mark.asyncio
    async def test_streaming_reassembles_tool_calls(self, model_server: ModelServer) -> None:
        arguments = {"path": "src/app.py", "content": "print('hello, world')\n" * 3}
        model_server.script(Reply.tool_call("files_write", arguments, content="Writing it.", chunks=5))
        gateway = self.make_gateway(model_server)
        try:
            chunks = [c async for c in gateway.stream(_user("write"), self.model, tools=TOOLS)]
        finally:
            await gateway.aclose()
        calls = [call for c in chunks for call in c.tool_calls]
        assert [(c.name, c.arguments) for c in calls] == [("files_write", arguments)]
        assert "".join(c.content for c in chunks) == "Writing it."
        assert chunks[-1].finish_reason == "tool_calls"

    @pytest.mark.asyncio
    async def test_usage_and_cost_recorded(self, model_server: ModelServer, tmp_path: Path) -> None:
        model_server.script(Reply.text("priced answer", usage=(1000, 500)), Reply.text("streamed", usage=(2000, 100)))
        recorder = CallRecorder()
        write_config(tmp_path, self.host_config(model_server))
        async with host_running(tmp_path, self.host_plugins(recorder)) as host:
            result = await host.complete(LLMCall(model=self.model, messages=_user("price me"), slice_id="contract"))
            streamed = [
                c
                async for c in host.stream(
                    LLMCall(model=self.model, messages=_user("stream me"), slice_id="contract", stream=True)
                )
            ]
            assert "".join(c.content for c in streamed) == "streamed"
            recorded = [r for _, r in recorder.results]
            assert [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in recorded] == [(1000, 500), (2000, 100)]
            assert recorded[0] is result and all(r.gateway == self.gateway_class.name for r in recorded)
            if self.uses_providers():
                spend = await host.call("providers.spend", group_by=["slice", "model"])
                assert spend.success, spend.error_message
                (row,) = spend.data["rows"]
                assert (row["slice_id"], row["model"], row["calls"]) == ("contract", self.model, 2)
                assert (row["prompt_tokens"], row["completion_tokens"]) == (3000, 600)
                expected = 0.0
                for r in recorded:
                    priced = (r.usage.prompt_tokens * INPUT_PRICE + r.usage.completion_tokens * OUTPUT_PRICE) / 1e6
                    expected += priced if r.cost_usd is None else r.cost_usd
                assert row["cost_usd"] == pytest.approx(expected)
                assert spend.data["total_usd"] == pytest.approx(expected) and expected > 0

    @pytest.mark.asyncio
    @pytest.mark.parametrize("status", [429, 500])
    async def test_fallback_to_second_model(self, model_server: ModelServer, status: int) -> None:
        model_server.script(Reply.error(status, "primary unavailable"), Reply.text("answered by the fallback"))
        gateway = self.make_gateway(model_server, fallbacks=[self.fallback_model])
        try:
            result = await gateway.complete(_user("hello"), self.model)
        finally:
            await gateway.aclose()
        assert result.content == "answered by the fallback"
        served = [body["model"] for body in model_server.requests]
        assert served[0] == self.served_model and served[-1] == self.served_fallback_model
        assert result.model == self.fallback_model

    @pytest.mark.asyncio
    async def test_timeout_is_a_clear_error(self, model_server: ModelServer) -> None:
        model_server.script(Reply.timeout())
        gateway = self.make_gateway(model_server, timeout=0.5)
        started = time.perf_counter()
        try:
            with pytest.raises(GatewayError, match="timed out") as info:
                await gateway.complete(_user("hello"), self.model)
        finally:
            await gateway.aclose()
        assert time.perf_counter() - started < 8
        assert "\n" not in str(info.value) and self.model in str(info.value)

    @pytest.mark.asyncio
    async def test_http_error_is_a_clear_error(self, model_server: ModelServer) -> None:
        model_server.script(Reply.error(400, "messages: field required"))
        gateway = self.make_gateway(model_server)
        try:
            with pytest.raises(GatewayError, match="400") as info:
                await gateway.complete(_user("hello"), self.model)
        finally:
            await gateway.aclose()
        assert "\n" not in str(info.value)
        assert len(model_server.requests) == 1  # a client error is not retried

    @pytest.mark.asyncio
    async def test_missing_api_key_variable_sends_nothing(
        self, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(self.api_key_env)
        gateway = self.make_gateway(model_server)
        try:
            with pytest.raises(GatewayError, match=self.api_key_env):
                await gateway.complete(_user("hello"), self.model)
        finally:
            await gateway.aclose()
        assert model_server.requests == []

    @pytest.mark.asyncio
    async def test_budget_breach_refused_before_any_request(self, model_server: ModelServer, tmp_path: Path) -> None:
        if self.uses_providers():
            config = self.host_config(model_server, budgets={"overall": {"daily_usd": 0.0}})
            guard = CallRecorder()
        else:
            config = self.host_config(model_server)
            guard = CallRecorder(veto="budget exceeded: $0.00 daily cap")
        write_config(tmp_path, config)
        async with host_running(tmp_path, self.host_plugins(guard)) as host:
            with pytest.raises(LLMCallRefused, match="budget"):
                await host.complete(LLMCall(model=self.model, messages=_user("hello"), slice_id="contract"))
            with pytest.raises(LLMCallRefused, match="budget"):
                async for _ in host.stream(LLMCall(model=self.model, messages=_user("hello"), stream=True)):
                    pass
        assert model_server.requests == []
        assert guard.results == []
